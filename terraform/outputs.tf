output "topics" {
  description = "Pub/Sub topic names."
  value = {
    ticks       = google_pubsub_topic.ticks.name
    work        = google_pubsub_topic.work.name
    dead_letter = google_pubsub_topic.dead_letter.name
  }
}

output "subscriptions" {
  description = "Pub/Sub subscription names (two pushes, one pull that keeps dead letters)."
  value = merge(
    { for k, s in google_pubsub_subscription.push : k => s.name },
    { dead_letter = google_pubsub_subscription.dead_letter.name },
  )
}

output "functions" {
  description = "Function names and the URIs the push subscriptions call."
  value = {
    for k, f in google_cloudfunctions2_function.function : k => { name = f.name, uri = f.service_config[0].uri }
  }
}

output "bucket" {
  description = "Export bucket and the prefix every object key starts with."
  value       = { name = local.export_bucket_name, root = var.pipeline.root }
}

output "firestore_database" {
  description = "Firestore database that holds the queue, watermarks, leases and manifests."
  value       = local.firestore_database
}

output "service_accounts" {
  description = "Service account e-mails by role."
  value = {
    planner   = google_service_account.planner.email
    worker    = google_service_account.worker.email
    scheduler = google_service_account.scheduler.email
    push      = google_service_account.push.email
    build     = google_service_account.build.email
  }
}

output "worker_max_instances" {
  description = "Maximum worker instances in effect (derived from the number of Cloud SQL instances unless set)."
  value       = local.worker_max_instances
}

output "work_topics" {
  description = "The work topic of each Cloud SQL instance (its shard), as the functions publish on them."
  value       = { for n, id in sort(keys(local.instances)) : id => google_pubsub_topic.work_shard["s${n}"].name }
}

output "scheduler_job" {
  description = "Cloud Scheduler job that publishes the tick."
  value       = google_cloud_scheduler_job.tick.name
}

output "backfill_command" {
  description = "Ready-to-paste backfill of one day for the first source (edit start, end, source, tables)."
  value = format(
    "gcloud pubsub topics publish %s --project %s --message '%s'",
    google_pubsub_topic.ticks.name,
    var.project_id,
    jsonencode({
      kind   = "backfill"
      start  = "2026-01-01T00:00:00Z"
      end    = "2026-01-02T00:00:00Z"
      source = var.pipeline.sources[0].name
    }),
  )
}

output "dead_letter_pull_command" {
  description = "Reads (without acknowledging) what landed in the dead-letter subscription."
  value       = "gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letter.name} --project ${var.project_id} --limit 10 --format json"
}
