# Least privilege: one service account per function, one for the scheduler, one that Pub/Sub uses to
# authenticate its pushes, one that builds the functions. Every grant is on the narrowest resource the
# API allows, with an IAM condition where the grant has to sit on the project. No basic roles, and no
# project-wide service-account-user or token-creator grants.

resource "google_service_account" "planner" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-planner"
  display_name = "CDC planner function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "worker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-worker"
  display_name = "CDC worker function"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "CDC tick publisher (Cloud Scheduler)"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-push"
  display_name = "CDC Pub/Sub push identity (invokes the functions)"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "CDC function builds (Cloud Build)"
  depends_on   = [google_project_service.enabled]
}

# The Pub/Sub service agent, created explicitly (it may not exist yet in a fresh project, and its
# e-mail is not ours to spell). Beta-only resource in provider 6.x.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.enabled]
}

locals {
  pubsub_service_agent = google_project_service_identity.pubsub.member

  firestore_condition = {
    title      = "cdc-firestore-database"
    expression = "resource.name == \"projects/${var.project_id}/databases/${local.firestore_database}\""
  }

  # Project-level roles of the build account. Cloud Functions copies the source into its own
  # gcf-v2-sources-<number>-<region> bucket, which the build reads; the condition keeps the
  # build account out of every other bucket. Images go to our repository (artifacts.tf), granted there.
  build_roles = {
    "roles/logging.logWriter" = null
    "roles/storage.objectViewer" = {
      title      = "gcf-v2-sources-only"
      expression = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-\")"
    }
  }

  # Export objects, manifests and schema files: everything the pipeline writes is under <root>/.
  root_prefix_condition = {
    title      = "cdc-root-prefix"
    expression = "resource.name.startsWith(\"${local.export_objects_prefix}\")"
  }

  # The named source instances of one project, as an IAM condition expression.
  instance_names = {
    for project in local.instance_projects : project => join(" || ", [
      for id, i in local.instances : "resource.name == \"projects/${i.project}/instances/${i.name}\"" if i.project == project
    ])
  }
}

# --- planner: Firestore, publish work -------------------------------------------------------------

resource "google_project_iam_member" "planner_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.planner.member

  condition {
    title      = local.firestore_condition.title
    expression = local.firestore_condition.expression
  }
}

resource "google_pubsub_topic_iam_member" "planner_publishes_work" {
  project = var.project_id
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.planner.member
}

resource "google_pubsub_topic_iam_member" "planner_publishes_work_shards" {
  for_each = local.work_shards

  project = var.project_id
  topic   = google_pubsub_topic.work_shard[each.key].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.planner.member
}

# --- worker: export from the named instances, Firestore, objects under the root, publish work ---

# instances.export on the named instances only: Cloud SQL evaluates it on the instance
# (resource.type sqladmin.googleapis.com/Instance), so the condition can name them.
resource "google_project_iam_custom_role" "exporter" {
  for_each = local.instance_projects

  project     = each.value
  role_id     = "${replace(var.name_prefix, "-", "_")}_cloudsql_exporter"
  title       = "CDC Cloud SQL exporter"
  description = "instances.export on the instances the binding's condition names; nothing else of Cloud SQL Admin."
  permissions = ["cloudsql.instances.export"]
}

resource "google_project_iam_member" "worker_exports" {
  for_each = local.instance_projects

  project = each.value
  role    = google_project_iam_custom_role.exporter[each.value].id
  member  = google_service_account.worker.member

  condition {
    title      = "cdc-source-instances"
    expression = "resource.type == \"sqladmin.googleapis.com/Instance\" && (${local.instance_names[each.value]})"
  }
}

# operations.get / operations.list (polling the export) are authorised with cloudsql.instances.get.
# Their request path is projects/P/operations/..., and IAM conditions in Cloud SQL only know the
# Instance and BackupRun resource types (terraform-google-sql-db#616): whether the check is made on
# the instance or on the project is not documented. So this grant holds on the named instances and on
# any check that is not about an instance (the project), and still on no other instance: at worst it
# lets the worker read the operation records of other instances in the project, never their settings.
resource "google_project_iam_custom_role" "operations_reader" {
  for_each = local.instance_projects

  project     = each.value
  role_id     = "${replace(var.name_prefix, "-", "_")}_cloudsql_operations_reader"
  title       = "CDC Cloud SQL operations reader"
  description = "cloudsql.instances.get, which operations.get/list require, for polling exports of the named instances."
  permissions = ["cloudsql.instances.get"]
}

resource "google_project_iam_member" "worker_polls_operations" {
  for_each = local.instance_projects

  project = each.value
  role    = google_project_iam_custom_role.operations_reader[each.value].id
  member  = google_service_account.worker.member

  condition {
    title      = "cdc-source-instances-and-operations"
    expression = "resource.type != \"sqladmin.googleapis.com/Instance\" || (${local.instance_names[each.value]})"
  }
}

resource "google_project_iam_member" "worker_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.worker.member

  condition {
    title      = local.firestore_condition.title
    expression = local.firestore_condition.expression
  }
}

# Manifests: the worker writes each manifest to a new, versioned key and never replaces an object,
# so create is enough (no storage.objects.delete, which overwriting would need).
resource "google_storage_bucket_iam_member" "worker_creates_objects" {
  bucket = local.export_bucket_name
  role   = "roles/storage.objectCreator"
  member = google_service_account.worker.member

  condition {
    title      = local.root_prefix_condition.title
    expression = local.root_prefix_condition.expression
  }
}

# Schema files, manifests, verification of exported objects: get under the root. storage.objects.list
# is checked on the bucket; without it a missing object answers 403 instead of 404, and the worker
# tells "not exported yet" from "denied" by that.
resource "google_storage_bucket_iam_member" "worker_reads_objects" {
  bucket = local.export_bucket_name
  role   = "roles/storage.objectViewer"
  member = google_service_account.worker.member

  condition {
    title      = "cdc-root-prefix-and-listing"
    expression = "resource.type == \"storage.googleapis.com/Bucket\" || resource.name.startsWith(\"${local.export_objects_prefix}\")"
  }
}

resource "google_pubsub_topic_iam_member" "worker_publishes_work" {
  project = var.project_id
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.worker.member
}

resource "google_pubsub_topic_iam_member" "worker_publishes_work_shards" {
  for_each = local.work_shards

  project = var.project_id
  topic   = google_pubsub_topic.work_shard[each.key].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.worker.member
}

# --- Cloud SQL instances: their own service accounts write the export objects -------------------

data "google_sql_database_instance" "source" {
  for_each = local.instances

  project = each.value.project
  name    = each.value.name

  depends_on = [google_project_service.enabled]
}

# Since 2024 a Cloud SQL export needs storage.objects.delete as well as create on the destination
# ("permissions missing are: [storage.objects.delete]", terraform-google-sql-db#599, fixed there in
# #656 with objectAdmin). objectAdmin is the smallest predefined role with both; the condition keeps
# it to objects under <root>/.
resource "google_storage_bucket_iam_member" "instance_writes_exports" {
  for_each = local.instances

  bucket = local.export_bucket_name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${data.google_sql_database_instance.source[each.key].service_account_email_address}"

  condition {
    title      = local.root_prefix_condition.title
    expression = local.root_prefix_condition.expression
  }
}

# --- scheduler: publish ticks ---------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "scheduler_publishes_ticks" {
  project = var.project_id
  topic   = google_pubsub_topic.ticks.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.scheduler.member
}

# --- push identity: invoke the two functions (their Cloud Run services), nothing else ------------

resource "google_cloud_run_v2_service_iam_member" "push_invokes" {
  for_each = local.functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

moved {
  from = google_cloud_run_v2_service_iam_member.push_invokes_planner
  to   = google_cloud_run_v2_service_iam_member.push_invokes["planner"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.push_invokes_worker
  to   = google_cloud_run_v2_service_iam_member.push_invokes["worker"]
}

# --- Pub/Sub service agent: sign push tokens, forward dead letters --------------------------------

resource "google_service_account_iam_member" "pubsub_agent_mints_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# Forwarding to the dead-letter topic acknowledges the message on its source subscription.
resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks" {
  for_each = local.functions

  project      = var.project_id
  subscription = local.subscription_names[each.key]
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent

  depends_on = [google_pubsub_subscription.push]
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_work_shards" {
  for_each = local.work_shards

  project      = var.project_id
  subscription = google_pubsub_subscription.work_shard[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

moved {
  from = google_pubsub_subscription_iam_member.pubsub_agent_acks_planner
  to   = google_pubsub_subscription_iam_member.pubsub_agent_acks["planner"]
}

moved {
  from = google_pubsub_subscription_iam_member.pubsub_agent_acks_worker
  to   = google_pubsub_subscription_iam_member.pubsub_agent_acks["worker"]
}

# IAM is eventually consistent: a push subscription created right after its token grant can fail its
# first pushes; give the grant time before the subscriptions start pushing.
resource "time_sleep" "pubsub_agent_grants_propagate" {
  create_duration = "60s"

  depends_on = [
    google_service_account_iam_member.pubsub_agent_mints_push_tokens,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters,
  ]
}

# --- build account ----------------------------------------------------------------------------------

resource "google_project_iam_member" "build" {
  for_each = local.build_roles

  project = var.project_id
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

resource "google_artifact_registry_repository_iam_member" "build_writes_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# The build account and its grants are new in the first apply; a build started the same second
# fails on permissions IAM has not propagated yet.
resource "time_sleep" "build_grants_propagate" {
  create_duration = "60s"

  depends_on = [
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
    google_artifact_registry_repository_iam_member.build_writes_images,
  ]
}
