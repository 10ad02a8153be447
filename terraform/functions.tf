locals {
  function_env = {
    CDC_CONFIG           = jsonencode(local.cdc_config)
    GOOGLE_CLOUD_PROJECT = var.project_id
  }

  # Worker size: one chain per Cloud SQL instance (a Firestore lease guards it, and an instance runs
  # one export at a time), plus one so that a chain handing over to its fresh message is not refused
  # while the previous invocation winds down. Overridable; see the variable's trade-off.
  worker_max_instances = coalesce(var.worker_max_instances, length(local.instances) + 1)

  # The two functions, their topic and their identity. One resource of each kind iterates this map.
  functions = {
    planner = {
      description   = "Plans due, missed and backfill windows into the Firestore queue and wakes the workers."
      topic         = "ticks"
      timeout       = var.planner_timeout_seconds
      max_instances = var.planner_max_instances
      account       = google_service_account.planner.email
    }
    worker = {
      description   = "Runs the export chain of one Cloud SQL instance per message: export, poll, record, re-publish."
      topic         = "work"
      timeout       = var.worker_timeout_seconds
      max_instances = local.worker_max_instances
      account       = google_service_account.worker.email
    }
  }
}

# Both functions are deployed without an event trigger: Pub/Sub reaches them through the push
# subscriptions in pubsub.tf (OIDC-authenticated, with retry and dead-letter policies). The entry
# points are decorated with @functions_framework.cloud_event, which functions-framework honours over
# the deployment's signature type, and it turns the raw push body into a CloudEvent.
resource "google_cloudfunctions2_function" "function" {
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-${each.key}"
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime     = var.runtime
    entry_point = each.key
    # The entry module is not main.py at the archive root; the Python buildpack reads this at build time.
    environment_variables = { GOOGLE_FUNCTION_SOURCE = local.function_entry_source }
    service_account       = google_service_account.build.id
    # Our own repository, so that the images get a cleanup policy (artifacts.tf).
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory                 = var.function_memory
    timeout_seconds                  = each.value.timeout
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = each.value.account
    environment_variables            = local.function_env
  }

  # The build account and its grants are created in the same apply: wait for IAM to propagate.
  depends_on = [
    google_project_service.enabled,
    time_sleep.build_grants_propagate,
  ]
}

# Fewer workers than instances is allowed (a cost choice) but delays exports: say so at plan time.
check "worker_instances_cover_source_instances" {
  assert {
    condition     = local.worker_max_instances >= length(local.instances)
    error_message = "worker_max_instances (${local.worker_max_instances}) is below the number of Cloud SQL instances (${length(local.instances)}): their chains will queue behind each other and exports run late."
  }
}

moved {
  from = google_cloudfunctions2_function.planner
  to   = google_cloudfunctions2_function.function["planner"]
}

moved {
  from = google_cloudfunctions2_function.worker
  to   = google_cloudfunctions2_function.function["worker"]
}
