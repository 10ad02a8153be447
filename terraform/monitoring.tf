# Alerts. Each policy is one condition: $1.50 per condition per month in Cloud Monitoring, plus
# $0.35 per million time series its evaluation reads (a handful here). var.alerts turns each off.
#
# "errors": ERROR records the functions log themselves (failed exports, gaps beyond the catch-up cap,
# malformed messages). Only shared/core/logs.py writes these: one JSON object per line on stdout,
# whose `severity` Cloud Logging lifts into the entry and whose other fields become jsonPayload.
# Not counted: Cloud Run's request log (a 5xx for every retryable failure, which the code logs at
# WARNING and re-raises for Pub/Sub to retry), tracebacks on stderr (textPayload), and the planner's
# "table lag over threshold", which has its own alert in freshness.tf.
# Errors the functions log (failed exports, gaps beyond the catch-up cap, lag beyond
# lag_alert_seconds, malformed messages) and anything that reaches the dead-letter topic.

resource "google_logging_metric" "function_errors" {
  project     = var.project_id
  name        = "${var.name_prefix}_function_errors"
  description = "ERROR (or worse) structured records the CDC planner and worker log themselves."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(${join(" OR ", [for f in google_cloudfunctions2_function.function : "\"${f.name}\""])})",
    "logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\"",
    "severity>=ERROR",
    "jsonPayload.message:*",
    "NOT jsonPayload.message=\"table lag over threshold\"",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# An alert policy on a log-based metric created in the same apply fails with "Cannot find metric(s)"
# until Monitoring knows the metric (hashicorp/terraform-provider-google#11102, open; the API says it
# can take up to 10 minutes, in practice about one). Every policy on a log-based metric waits for this.
resource "time_sleep" "log_metrics_propagate" {
  create_duration = "90s"

  triggers = {
    function_errors          = google_logging_metric.function_errors.id
    table_lag                = google_logging_metric.table_lag.id
    table_lag_over_threshold = google_logging_metric.table_lag_over_threshold.id
    verification_repairs     = google_logging_metric.verification_repairs.id
    schema_drift             = google_logging_metric.schema_drift.id
  }
}

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == null ? 0 : 1

  project      = var.project_id
  display_name = "${var.name_prefix} CDC alerts"
  type         = "email"
  labels       = { email_address = var.alert_email }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "function_errors" {
  count = var.alerts.errors ? 1 : 0

  project               = var.project_id
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
    content   = "The CDC functions logged an error. Read the ERROR entries of ${join(" and ", [for f in google_cloudfunctions2_function.function : f.name])}; `cdc status` shows failed tasks. See terraform/README.md."
  }

  depends_on = [google_project_service.enabled, time_sleep.log_metrics_propagate]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  count = var.alerts.dead_letters ? 1 : 0

  project               = var.project_id
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
