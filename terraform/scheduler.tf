# The tick. The job calls the Pub/Sub publish API as its own service account, which may publish to
# the ticks topic and nothing else (a pubsub_target would publish as the Cloud Scheduler service
# agent, whose rights are project-wide and not ours to narrow).
resource "google_cloud_scheduler_job" "tick" {
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-tick"
  description      = "Publishes {\"kind\":\"tick\"} to ${google_pubsub_topic.ticks.name}; the planner plans what is due."
  schedule         = var.tick_schedule
  time_zone        = "Etc/UTC"
  paused           = var.paused
  attempt_deadline = "30s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "5s"
    max_backoff_duration = "60s"
  }

  http_target {
    http_method = "POST"
    uri         = "https://pubsub.googleapis.com/v1/${google_pubsub_topic.ticks.id}:publish"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ messages = [{ data = base64encode(jsonencode({ kind = "tick" })) }] }))

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/pubsub"
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_pubsub_topic_iam_member.scheduler_publishes_ticks,
  ]
}
