# Topics. Messages are small JSON documents; Google-managed encryption is adequate for them.
resource "google_pubsub_topic" "ticks" {
  #checkov:skip=CKV_GCP_83:Tick and backfill messages carry only window bounds and table names; a customer-managed key adds cost and an outage mode for no protected data.
  project                    = var.project_id
  name                       = local.topic_names.ticks
  message_retention_duration = "86400s"
  labels                     = local.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "work" {
  #checkov:skip=CKV_GCP_83:Work messages carry only a Cloud SQL instance name; a customer-managed key adds cost and an outage mode for no protected data.
  project                    = var.project_id
  name                       = local.topic_names.work
  message_retention_duration = "86400s"
  labels                     = local.labels

  depends_on = [google_project_service.enabled]
}

# One work topic per Cloud SQL instance (locals.tf, work_shards): the chains publish their continuations on
# their own shard; the planner wakes each instance on its shard. The `work` topic above stays, with its own
# subscription, for messages published there (the operator's `cdc`, a revision still rolling out).
resource "google_pubsub_topic" "work_shard" {
  #checkov:skip=CKV_GCP_83:Work messages carry only a Cloud SQL instance name; a customer-managed key adds cost and an outage mode for no protected data.
  for_each = local.work_shards

  project                    = var.project_id
  name                       = each.value.topic
  message_retention_duration = "86400s"
  labels                     = local.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are copies of tick, backfill and work messages (window bounds and instance names only).
  project = var.project_id
  name    = local.topic_names.dead_letter
  labels  = local.labels

  depends_on = [google_project_service.enabled]
}

locals {
  # The topics the two push subscriptions read, by the key local.functions names them with.
  push_topics = {
    ticks = { id = google_pubsub_topic.ticks.id, name = google_pubsub_topic.ticks.name }
    work  = { id = google_pubsub_topic.work.id, name = google_pubsub_topic.work.name }
  }
}

# Push subscriptions managed here (not by a Cloud Functions event trigger), because the trigger's
# own subscription cannot have a dead-letter policy. See README.md, "Why our own push subscriptions".
# One per function: cdc-ticks-planner and cdc-work-worker.
resource "google_pubsub_subscription" "push" {
  for_each = local.functions

  project                    = var.project_id
  name                       = local.subscription_names[each.key]
  topic                      = local.push_topics[each.value.topic].id
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
    push_endpoint = "${google_cloudfunctions2_function.function[each.key].service_config[0].uri}/projects/${var.project_id}/topics/${local.push_topics[each.value.topic].name}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.function[each.key].service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invokes,
    google_service_account_iam_member.pubsub_agent_mints_push_tokens,
    time_sleep.pubsub_agent_grants_propagate,
  ]
}

moved {
  from = google_pubsub_subscription.planner
  to   = google_pubsub_subscription.push["planner"]
}

moved {
  from = google_pubsub_subscription.worker
  to   = google_pubsub_subscription.push["worker"]
}

# The worker's push subscription on each shard: the same settings as its subscription on the work topic.
resource "google_pubsub_subscription" "work_shard" {
  for_each = local.work_shards

  project                    = var.project_id
  name                       = each.value.subscription
  topic                      = google_pubsub_topic.work_shard[each.key].id
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
    push_endpoint = "${google_cloudfunctions2_function.function["worker"].service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.work_shard[each.key].name}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.function["worker"].service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invokes,
    google_service_account_iam_member.pubsub_agent_mints_push_tokens,
    time_sleep.pubsub_agent_grants_propagate,
  ]
}

# Keeps what lands in the dead-letter topic for an operator to read (31 days, the maximum).
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
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
