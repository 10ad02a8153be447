# Freshness: on every tick the planner logs each table's lag behind the tick's clock (shared/app/planner.py):
# message "table lag" at INFO, or "table lag over threshold" at ERROR once the lag exceeds the config's
# lag_alert_seconds, with jsonPayload fields source, table, lag_seconds, threshold_seconds.
# The threshold lives in the pipeline config only; these alerts count the planner's verdicts instead of
# repeating it. Dead letters are alerted on in monitoring.tf.

locals {
  planner_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${google_cloudfunctions2_function.function["planner"].name}\"",
  ])
  table_lag_labels = {
    source = "EXTRACT(jsonPayload.source)"
    table  = "EXTRACT(jsonPayload.table)"
  }
}

resource "google_logging_metric" "table_lag" {
  project         = var.project_id
  name            = "${var.name_prefix}_table_lag"
  description     = "Lag of each table's watermark behind the planner's clock, in seconds, logged on every tick."
  filter          = "${local.planner_log_filter} AND jsonPayload.message=(\"table lag\" OR \"table lag over threshold\")"
  value_extractor = "EXTRACT(jsonPayload.lag_seconds)"

  label_extractors = local.table_lag_labels

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"

    labels {
      key         = "source"
      value_type  = "STRING"
      description = "Pipeline source name."
    }
    labels {
      key         = "table"
      value_type  = "STRING"
      description = "Table name."
    }
  }

  # 60 s to ~12 days: 2x per bucket.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 2
      scale              = 60
    }
  }
}

resource "google_logging_metric" "table_lag_over_threshold" {
  project     = var.project_id
  name        = "${var.name_prefix}_table_lag_over_threshold"
  description = "Planner ticks on which a table lagged past lag_alert_seconds."
  filter      = "${local.planner_log_filter} AND severity>=ERROR AND jsonPayload.message=\"table lag over threshold\""

  label_extractors = local.table_lag_labels

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "source"
      value_type  = "STRING"
      description = "Pipeline source name."
    }
    labels {
      key         = "table"
      value_type  = "STRING"
      description = "Table name."
    }
  }
}

resource "google_monitoring_alert_policy" "table_lag" {
  count = var.alerts.lag ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name_prefix} CDC: table lag over threshold"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = google_monitoring_notification_channel.email[*].id

  conditions {
    display_name = "a table's watermark lags past lag_alert_seconds"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.table_lag_over_threshold.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.source", "metric.label.table"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A table's export lags past lag_alert_seconds (the alert names source and table). Run `cdc status` for failed tasks, the export in flight and the last error; `cdc retry --failed` re-queues failed tasks. See docs/operations.md."
  }

  depends_on = [google_project_service.enabled, time_sleep.log_metrics_propagate]
}

# The planner logs lag on every tick: when no lag arrives for 30 minutes the planner is not running
# (scheduler paused or broken, function failing at cold start). Disabled while the scheduler is paused.
resource "google_monitoring_alert_policy" "table_lag_absent" {
  count = var.alerts.absent ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name_prefix} CDC: no freshness reports"
  combiner              = "OR"
  severity              = "WARNING"
  enabled               = !var.paused
  notification_channels = google_monitoring_notification_channel.email[*].id

  conditions {
    display_name = "no table lag logged by the planner for 30 minutes"
    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.table_lag.name}\" AND resource.type=\"cloud_run_revision\""
      duration = "1800s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_COUNT"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The planner has not logged any table lag for 30 minutes: check the tick job (${google_cloud_scheduler_job.tick.name}) and the planner's logs. See docs/operations.md."
  }

  depends_on = [google_project_service.enabled, time_sleep.log_metrics_propagate]
}
