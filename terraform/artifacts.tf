# The functions' container images. Without a repository of our own they land in gcf-artifacts, which
# has no cleanup policy: every deploy would leave two images behind for good.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Holds only images built from this repository's public source; a customer-managed key adds cost and an outage mode for nothing secret.
  project                = var.project_id
  location               = var.region
  repository_id          = "${var.name_prefix}-functions"
  description            = "Container images of the CDC functions (built by Cloud Functions)."
  format                 = "DOCKER"
  labels                 = local.labels
  cleanup_policy_dry_run = false

  # Keep the newest images of each function (the running one and a few to roll back to) ...
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_versions_kept
    }
  }

  # ... and delete everything else after a week.
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "604800s"
    }
  }

  depends_on = [google_project_service.enabled]
}
