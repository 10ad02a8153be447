resource "google_firestore_database" "cdc" {
  count = var.create_firestore_database ? 1 : 0

  project                           = var.project_id
  name                              = var.firestore_database
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # `terraform destroy` only forgets the database: it stays, with the pipeline's state in it. The next
  # apply of the same configuration would then fail with 409 (already exists): set
  # create_firestore_database = false, or import it in the root (README, "Tear down and apply again").
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.enabled]
}

# Composite indexes for every query on the tasks collection that names more than one field
# (tests/test_firestore_indexes.py records the queries the code issues and checks each is served here).
# Single-field queries (state, low, source, error != null) use Firestore's automatic single-field indexes.
locals {
  task_indexes = {
    # The worker's hot query: instance == X and state == "pending" order by order_key (also `cdc status`'s next task).
    tasks_pending_by_instance = ["instance", "state", "order_key"]
    # Open tasks of an instance (has_open_tasks, the chain's recovery of in-flight tasks).
    tasks_by_instance_state = ["instance", "state"]
    # Done tasks whose watermark/manifest bookkeeping has not run yet.
    tasks_unfinalized = ["instance", "state", "finalized"]
    # `cdc status`: a source's pending tasks, counted by aggregation.
    tasks_by_source_state = ["source", "state"]
    # The chain's live windows wherever they were queued (claim-time priority): window start >= the live window's.
    tasks_pending_live = ["instance", "state", "low", "order_key"]
    # `cdc status`: tasks in flight (state in submitting, running), ordered by the time their claim wrote.
    tasks_in_flight = ["state", "submitted_at"]
  }
}

resource "google_firestore_index" "tasks" {
  for_each = local.task_indexes

  project     = var.project_id
  database    = local.firestore_database
  collection  = "${var.pipeline.firestore_prefix}tasks"
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value
      order      = "ASCENDING"
    }
  }

  depends_on = [google_project_service.enabled]
}

# The worker's index was a resource of its own before the others joined it.
moved {
  from = google_firestore_index.tasks_pending_by_instance
  to   = google_firestore_index.tasks["tasks_pending_by_instance"]
}
