locals {
  # Names. With the default prefix they are exactly the names of the interface contract.
  topic_names = {
    ticks       = "${var.name_prefix}-ticks"
    work        = "${var.name_prefix}-work"
    dead_letter = "${var.name_prefix}-dead-letter"
  }
  subscription_names = {
    planner     = "${var.name_prefix}-ticks-planner"
    worker      = "${var.name_prefix}-work-worker"
    dead_letter = "${var.name_prefix}-dead-letter-keep"
  }

  bucket_location    = coalesce(var.bucket_location, var.region)
  export_bucket_name = var.create_bucket ? google_storage_bucket.exports[0].name : var.bucket_name
  source_bucket_name = "${var.project_id}-${var.name_prefix}-fn-source"
  firestore_database = var.create_firestore_database ? google_firestore_database.cdc[0].name : var.firestore_database

  # Source instances, keyed by "project:instance" as written in the pipeline config.
  instances = {
    for id in distinct([for s in var.pipeline.sources : s.instance]) : id => {
      project = regex("^(.*):([^:]+)$", id)[0]
      name    = regex("^(.*):([^:]+)$", id)[1]
    }
  }
  # Work-topic shards: one topic, pushed to the worker by a subscription of its own, per Cloud SQL instance
  # (its position among the sorted instances, as shared/core/sharding.py computes it), so that every chain is
  # pushed while the others run, here as on the local stack, whose Pub/Sub emulator pushes 2 requests at a
  # time per subscription and does not apply subscription filters.
  work_shards = {
    for n, id in sort(keys(local.instances)) : "s${n}" => {
      topic        = "${local.topic_names.work}-s${n}"
      subscription = "${local.topic_names.work}-s${n}-worker"
    }
  }
  # Projects that hold source instances: the worker's export role is created in each of them.
  instance_projects = toset([for i in local.instances : i.project])

  # The CDC_CONFIG document. Null optional fields are dropped so that the code's defaults apply.
  pipeline_sources = [
    for s in var.pipeline.sources : merge(
      { for k, v in s : k => v if v != null && !contains(["csv", "tables"], k) },
      { for k, v in { csv = s.csv == null ? null : { for ck, cv in s.csv : ck => cv if cv != null } } : k => v if v != null },
      { tables = [for t in s.tables : { for k, v in t : k => v if v != null }] },
    )
  ]
  # worker settings, with pipeline.pack as worker.pack (a map of numbers cannot hold it).
  pipeline_worker = var.pipeline.worker == null && var.pipeline.pack == null ? null : merge(
    var.pipeline.worker == null ? {} : var.pipeline.worker,
    var.pipeline.pack == null ? {} : { pack = { for k, v in var.pipeline.pack : k => v if v != null } },
  )
  pipeline_optional = {
    for k, v in {
      layout            = var.pipeline.layout
      backfill          = var.pipeline.backfill
      worker            = local.pipeline_worker
      lag_alert_seconds = var.pipeline.lag_alert_seconds
    } : k => v if v != null
  }
  cdc_config = merge(local.pipeline_optional, {
    project   = var.project_id
    region    = var.region
    bucket    = local.export_bucket_name
    root      = var.pipeline.root
    firestore = { database = local.firestore_database, prefix = var.pipeline.firestore_prefix }
    topics    = { ticks = google_pubsub_topic.ticks.name, work = google_pubsub_topic.work.name }
    sources   = local.pipeline_sources
  })

  # Object keys the pipeline writes start with this; IAM conditions on the export bucket use it.
  export_objects_prefix = "projects/_/buckets/${local.export_bucket_name}/objects/${var.pipeline.root}/"

  # Function source: only what the functions import. The archive holds these paths relative to the
  # repository root, so functions/main.py, shared/, templates/ and requirements.txt sit at its root.
  # tests/test_terraform_archive.py rebuilds the archive from these two lists.
  source_root    = abspath("${path.module}/..")
  source_include = ["functions/**/*.py", "shared/**/*.py", "templates/**", "requirements.txt"]
  # Operator tooling (the `cdc` command) and test fakes never ship: shared/ops and shared/testing.
  source_exclude = ["**/__pycache__/**", "**/*.pyc", "**/.*", "shared/ops/**", "shared/testing/**"]
  source_files = sort(setsubtract(
    flatten([for p in local.source_include : tolist(fileset(local.source_root, p))]),
    flatten([for p in local.source_exclude : tolist(fileset(local.source_root, p))]),
  ))
  function_entry_source = "functions/main.py"

  labels = merge(var.labels, { app = "cloudsql-cdc", prefix = var.name_prefix })
}

# Needs the Cloud Resource Manager API, enabled in the same apply.
data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.enabled]
}
