# Completeness beyond the settle delay (README, "Completeness"): the worker logs a WARNING for every window a
# verification found changed and re-exported ("verification repaired a window: ..."), and one per column that
# changed between two consecutive schema snapshots ("schema drift: column added|removed|retyped"; ERROR when an
# export selects the column). Each is counted here and alertable; var.alerts turns each policy off.

resource "google_logging_metric" "verification_repairs" {
  project     = var.project_id
  name        = "${var.name_prefix}_verification_repairs"
  description = "Windows a verification found changed after export and re-exported as a new generation."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${google_cloudfunctions2_function.function["worker"].name}\"",
    "logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\"",
    "severity>=WARNING",
    "jsonPayload.message:\"verification repaired a window\"",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_logging_metric" "schema_drift" {
  project     = var.project_id
  name        = "${var.name_prefix}_schema_drift"
  description = "Columns added, removed or retyped between two consecutive windows' schema snapshots."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${google_cloudfunctions2_function.function["worker"].name}\"",
    "logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\"",
    "severity>=WARNING",
    "jsonPayload.message:\"schema drift:\"",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_alert_policy" "verification_repairs" {
  count = var.alerts.repairs ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name_prefix} CDC: windows repaired by verification"
  combiner              = "OR"
  notification_channels = google_monitoring_notification_channel.email[*].id

  conditions {
    display_name = "windows re-exported because rows changed after export"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.verification_repairs.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A verification found rows that changed after their window was exported (late commits, back-dated rows, deletes) and re-exported the window as a new generation; the new manifest version names the previous one and why. Nothing is lost; frequent repairs mean the settle delay is too short. See README, Completeness."
  }

  depends_on = [google_project_service.enabled, time_sleep.log_metrics_propagate]
}

resource "google_monitoring_alert_policy" "schema_drift" {
  count = var.alerts.schema_drift ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name_prefix} CDC: schema drift"
  combiner              = "OR"
  notification_channels = google_monitoring_notification_channel.email[*].id

  conditions {
    display_name = "columns added, removed or retyped"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.schema_drift.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A source table's columns changed between two windows; the manifest of the first window after the change lists each change under schema_drift. A removed or retyped column that an export selects is also logged at ERROR: its CSV changed shape."
  }

  depends_on = [google_project_service.enabled, time_sleep.log_metrics_propagate]
}
