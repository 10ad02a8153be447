locals {
  function_env = {
    CDC_CONFIG           = jsonencode(local.cdc_config)
    GOOGLE_CLOUD_PROJECT = var.project_id
  }

  # Worker size. Each Cloud SQL instance has one chain, and a chain's invocation mostly waits on the
  # Admin API, so one function instance carries several: it serves worker_concurrency requests at once.
  # A chain may need two requests at a time (its invocation, plus its continuation or a wake-up that
  # arrives while the invocation winds down), so the capacity (max instances x concurrency) is two
  # requests per Cloud SQL instance, plus one spare function instance. Below it, pushes are refused
  # with 429, count as delivery attempts and can reach the dead-letter topic.
  worker_requests_needed = 2 * length(local.instances)
  worker_max_instances = coalesce(
    var.worker_max_instances,
    ceil(local.worker_requests_needed / var.worker_concurrency) + 1,
  )
  # Concurrency above 1 needs 1 vCPU or more (confirmed from the Cloud Run functions documentation, page
  # "Concurrency"); 1 vCPU needs at least 512Mi (confirmed: Cloud Run's vCPU and memory table), checked on
  # function_memory below.
  worker_cpu = var.worker_concurrency > 1 ? "1" : null

  # The two functions, their topic and their identity. One resource of each kind iterates this map.
  functions = {
    planner = {
      description   = "Plans due, missed and backfill windows into the Firestore queue and wakes the workers."
      topic         = "ticks"
      timeout       = var.planner_timeout_seconds
      max_instances = var.planner_max_instances
      concurrency   = 1
      cpu           = null
      account       = google_service_account.planner.email
    }
    worker = {
      description   = "Runs the export chain of one Cloud SQL instance per message: export, poll, record, re-publish."
      topic         = "work"
      timeout       = var.worker_timeout_seconds
      max_instances = local.worker_max_instances
      concurrency   = var.worker_concurrency
      cpu           = local.worker_cpu
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
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = each.value.account
    # THREADS: functions-framework's gunicorn threads, equal to the concurrency (the documentation's
    # recommendation for Python: enough threads to serve the concurrent requests).
    environment_variables = merge(local.function_env, { THREADS = tostring(each.value.concurrency) })
  }

  # The build account and its grants are created in the same apply: wait for IAM to propagate.
  depends_on = [
    google_project_service.enabled,
    time_sleep.build_grants_propagate,
  ]
}

# A smaller worker is allowed (a cost choice) but delays exports: say so at plan time.
check "worker_capacity_covers_source_instances" {
  assert {
    condition     = local.worker_max_instances * var.worker_concurrency >= local.worker_requests_needed
    error_message = "The worker serves ${local.worker_max_instances * var.worker_concurrency} requests at once (worker_max_instances ${local.worker_max_instances} x worker_concurrency ${var.worker_concurrency}), below the ${local.worker_requests_needed} that ${length(local.instances)} Cloud SQL instances need (2 each): pushes will be refused with 429, count as delivery attempts and may reach the dead-letter topic, and chains run late."
  }
}

# 1 vCPU (needed for concurrency above 1) runs with at least 512Mi.
check "worker_memory_fits_its_cpu" {
  assert {
    condition     = local.worker_cpu == null || (endswith(var.function_memory, "Gi") || tonumber(trimsuffix(var.function_memory, "Mi")) >= 512)
    error_message = "function_memory ${var.function_memory} is below 512Mi, the least Cloud Run allows with 1 vCPU (needed for worker_concurrency ${var.worker_concurrency} > 1): raise it or set worker_concurrency = 1."
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
