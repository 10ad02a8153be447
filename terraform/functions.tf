locals {
  function_env = {
    CDC_CONFIG           = jsonencode(local.cdc_config)
    GOOGLE_CLOUD_PROJECT = var.project
  }
}

# Both functions are deployed without an event trigger: Pub/Sub reaches them through the push
# subscriptions in pubsub.tf (OIDC-authenticated, with retry and dead-letter policies). The entry
# points are decorated with @functions_framework.cloud_event, which functions-framework honours over
# the deployment's signature type, and it turns the raw push body into a CloudEvent.
resource "google_cloudfunctions2_function" "planner" {
  project     = var.project
  location    = var.region
  name        = "${var.name_prefix}-planner"
  description = "Plans due, missed and backfill windows into the Firestore queue and wakes the workers."
  labels      = local.labels

  build_config {
    runtime     = var.runtime
    entry_point = "planner"
    # The entry module is not main.py at the archive root; the Python buildpack reads this at build time.
    environment_variables = { GOOGLE_FUNCTION_SOURCE = local.function_entry_source }
    service_account       = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory                 = var.function_memory
    timeout_seconds                  = var.planner_timeout_seconds
    min_instance_count               = 0
    max_instance_count               = var.planner_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.planner.email
    environment_variables            = local.function_env
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

resource "google_cloudfunctions2_function" "worker" {
  project     = var.project
  location    = var.region
  name        = "${var.name_prefix}-worker"
  description = "Runs the export chain of one Cloud SQL instance per message: export, poll, record, re-publish."
  labels      = local.labels

  build_config {
    runtime               = var.runtime
    entry_point           = "worker"
    environment_variables = { GOOGLE_FUNCTION_SOURCE = local.function_entry_source }
    service_account       = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory                 = var.function_memory
    timeout_seconds                  = var.worker_timeout_seconds
    min_instance_count               = 0
    max_instance_count               = var.worker_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.worker.email
    environment_variables            = local.function_env
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}
