# Least privilege: one service account per function, one for the scheduler, one that Pub/Sub uses to
# authenticate its pushes, one that builds the functions. Every grant is on the narrowest resource the
# API allows, with an IAM condition where the grant has to sit on the project. No basic roles, and no
# project-wide service-account-user or token-creator grants.

resource "google_service_account" "planner" {
  project      = var.project
  account_id   = "${var.name_prefix}-planner"
  display_name = "CDC planner function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "worker" {
  project      = var.project
  account_id   = "${var.name_prefix}-worker"
  display_name = "CDC worker function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "scheduler" {
  project      = var.project
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "CDC tick publisher (Cloud Scheduler)"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "push" {
  project      = var.project
  account_id   = "${var.name_prefix}-push"
  display_name = "CDC Pub/Sub push identity (invokes the functions)"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "build" {
  project      = var.project
  account_id   = "${var.name_prefix}-build"
  display_name = "CDC function builds (Cloud Build)"
  depends_on   = [google_project_service.enabled]
}

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  firestore_condition = {
    title      = "cdc-firestore-database"
    expression = "resource.name == \"projects/${var.project}/databases/${local.firestore_database}\""
  }

  # Project-level roles of the build account. Cloud Functions copies the source into its own
  # gcf-v2-sources-<number>-<region> bucket, which the build reads; the condition keeps the
  # build account out of every other bucket.
  build_roles = {
    "roles/logging.logWriter"       = null
    "roles/artifactregistry.writer" = null
    "roles/storage.objectViewer" = {
      title      = "gcf-v2-sources-only"
      expression = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-\")"
    }
  }
}

# --- planner: Firestore, publish work -------------------------------------------------------------

resource "google_project_iam_member" "planner_firestore" {
  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.planner.member

  condition {
    title      = local.firestore_condition.title
    expression = local.firestore_condition.expression
  }
}

resource "google_pubsub_topic_iam_member" "planner_publishes_work" {
  project = var.project
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.planner.member
}

# --- worker: export from the named instances, Firestore, objects under the root, publish work ---

resource "google_project_iam_custom_role" "exporter" {
  for_each = local.instance_projects

  project     = each.value
  role_id     = "${replace(var.name_prefix, "-", "_")}_cloudsql_exporter"
  title       = "CDC Cloud SQL exporter"
  description = "instances.export plus operations.get/list on the instances the binding's condition names; nothing else of Cloud SQL Admin."
  # operations.get and operations.list are authorised with cloudsql.instances.get.
  permissions = ["cloudsql.instances.export", "cloudsql.instances.get"]
}

resource "google_project_iam_member" "worker_exports" {
  for_each = local.instance_projects

  project = each.value
  role    = google_project_iam_custom_role.exporter[each.value].id
  member  = google_service_account.worker.member

  condition {
    title = "cdc-source-instances"
    expression = format(
      "resource.type == \"sqladmin.googleapis.com/Instance\" && (%s)",
      join(" || ", [
        for id, i in local.instances : "resource.name == \"projects/${i.project}/instances/${i.name}\""
        if i.project == each.value
      ]),
    )
  }
}

resource "google_project_iam_member" "worker_firestore" {
  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.worker.member

  condition {
    title      = local.firestore_condition.title
    expression = local.firestore_condition.expression
  }
}

resource "google_storage_bucket_iam_member" "worker_creates_objects" {
  bucket = local.export_bucket_name
  role   = "roles/storage.objectCreator"
  member = google_service_account.worker.member

  condition {
    title      = "cdc-root-prefix"
    expression = "resource.name.startsWith(\"${local.export_objects_prefix}\")"
  }
}

resource "google_storage_bucket_iam_member" "worker_reads_objects" {
  bucket = local.export_bucket_name
  role   = "roles/storage.objectViewer"
  member = google_service_account.worker.member

  # Listing is authorised on the bucket itself, reading on objects under the root.
  condition {
    title      = "cdc-root-prefix-and-listing"
    expression = "resource.type == \"storage.googleapis.com/Bucket\" || resource.name.startsWith(\"${local.export_objects_prefix}\")"
  }
}

resource "google_pubsub_topic_iam_member" "worker_publishes_work" {
  project = var.project
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.worker.member
}

# --- Cloud SQL instances: their own service accounts write the export objects -------------------

data "google_sql_database_instance" "source" {
  for_each = local.instances

  project = each.value.project
  name    = each.value.name
}

resource "google_storage_bucket_iam_member" "instance_writes_exports" {
  for_each = local.instances

  bucket = local.export_bucket_name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${data.google_sql_database_instance.source[each.key].service_account_email_address}"

  condition {
    title      = "cdc-root-prefix"
    expression = "resource.name.startsWith(\"${local.export_objects_prefix}\")"
  }
}

# --- scheduler: publish ticks ---------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "scheduler_publishes_ticks" {
  project = var.project
  topic   = google_pubsub_topic.ticks.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.scheduler.member
}

# --- push identity: invoke the two functions (their Cloud Run services), nothing else ------------

resource "google_cloud_run_v2_service_iam_member" "push_invokes_planner" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.planner.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

resource "google_cloud_run_v2_service_iam_member" "push_invokes_worker" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.worker.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# --- Pub/Sub service agent: sign push tokens, forward dead letters --------------------------------

resource "google_service_account_iam_member" "pubsub_agent_mints_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_planner" {
  project      = var.project
  subscription = google_pubsub_subscription.planner.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_worker" {
  project      = var.project
  subscription = google_pubsub_subscription.worker.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- build account ----------------------------------------------------------------------------------

resource "google_project_iam_member" "build" {
  for_each = local.build_roles

  project = var.project
  role    = each.key
  member  = google_service_account.build.member

  dynamic "condition" {
    for_each = each.value == null ? [] : [each.value]
    content {
      title      = condition.value.title
      expression = condition.value.expression
    }
  }
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}
