# Topics. Messages are small JSON documents; Google-managed encryption is adequate for them.
resource "google_pubsub_topic" "ticks" {
  #checkov:skip=CKV_GCP_83:Tick and backfill messages carry only window bounds and table names; a customer-managed key adds cost and an outage mode for no protected data.
  project                    = var.project
  name                       = local.topic_names.ticks
  message_retention_duration = "86400s"
  labels                     = local.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "work" {
  #checkov:skip=CKV_GCP_83:Work messages carry only a Cloud SQL instance name; a customer-managed key adds cost and an outage mode for no protected data.
  project                    = var.project
  name                       = local.topic_names.work
  message_retention_duration = "86400s"
  labels                     = local.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are copies of tick, backfill and work messages (window bounds and instance names only).
  project = var.project
  name    = local.topic_names.dead_letter
  labels  = local.labels

  depends_on = [google_project_service.enabled]
}

# Push subscriptions managed here (not by a Cloud Functions event trigger), because the trigger's
# own subscription cannot have a dead-letter policy. See README.md, "Why our own push subscriptions".
resource "google_pubsub_subscription" "planner" {
  project                    = var.project
  name                       = local.subscription_names.planner
  topic                      = google_pubsub_topic.ticks.id
  ack_deadline_seconds       = 600
  message_retention_duration = "86400s"
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  push_config {
    # The topic in the path makes functions-framework derive the right CloudEvent source.
    push_endpoint = "${google_cloudfunctions2_function.planner.service_config[0].uri}/projects/${var.project}/topics/${google_pubsub_topic.ticks.name}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.planner.service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invokes_planner,
    google_service_account_iam_member.pubsub_agent_mints_push_tokens,
  ]
}

resource "google_pubsub_subscription" "worker" {
  project                    = var.project
  name                       = local.subscription_names.worker
  topic                      = google_pubsub_topic.work.id
  ack_deadline_seconds       = 600
  message_retention_duration = "86400s"
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.worker.service_config[0].uri}/projects/${var.project}/topics/${google_pubsub_topic.work.name}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.worker.service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invokes_worker,
    google_service_account_iam_member.pubsub_agent_mints_push_tokens,
  ]
}

# Keeps what lands in the dead-letter topic for an operator to read (31 days, the maximum).
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project
  name                       = local.subscription_names.dead_letter
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "2678400s"
  retain_acked_messages      = false
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}
