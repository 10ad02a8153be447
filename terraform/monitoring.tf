# Errors the functions log (failed exports, gaps beyond the catch-up cap, lag beyond
# lag_alert_seconds, malformed messages) and anything that reaches the dead-letter topic.

resource "google_logging_metric" "function_errors" {
  project     = var.project
  name        = "${var.name_prefix}_function_errors"
  description = "ERROR (or worse) log entries of the CDC planner and worker."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(\"${google_cloudfunctions2_function.planner.name}\" OR \"${google_cloudfunctions2_function.worker.name}\")",
    "severity>=ERROR",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == null ? 0 : 1

  project      = var.project
  display_name = "${var.name_prefix} CDC alerts"
  type         = "email"
  labels       = { email_address = var.alert_email }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "function_errors" {
  project               = var.project
  display_name          = "${var.name_prefix} CDC: function errors"
  combiner              = "OR"
  notification_channels = google_monitoring_notification_channel.email[*].id

  conditions {
    display_name = "ERROR log entries"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.function_errors.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The CDC functions logged an error. Read the log entries of ${google_cloudfunctions2_function.planner.name} and ${google_cloudfunctions2_function.worker.name}; see terraform/README.md."
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project
  display_name          = "${var.name_prefix} CDC: dead letters"
  combiner              = "OR"
  notification_channels = google_monitoring_notification_channel.email[*].id

  conditions {
    display_name = "messages waiting in ${google_pubsub_subscription.dead_letter.name}"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A message failed ${var.max_delivery_attempts} deliveries and was moved to ${google_pubsub_topic.dead_letter.name}. Pull it from ${google_pubsub_subscription.dead_letter.name}; see terraform/README.md."
  }

  depends_on = [google_project_service.enabled]
}
