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

# The worker's hot query: tasks where instance == X and state == "pending" order by order_key.
resource "google_firestore_index" "tasks_pending_by_instance" {
  project     = var.project_id
  database    = local.firestore_database
  collection  = "${var.pipeline.firestore_prefix}tasks"
  query_scope = "COLLECTION"

  fields {
    field_path = "instance"
    order      = "ASCENDING"
  }
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "order_key"
    order      = "ASCENDING"
  }

  depends_on = [google_project_service.enabled]
}
