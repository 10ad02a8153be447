# One Cloud SQL instance, one table, exported hourly. Copy this directory, set terraform.tfvars, apply.
terraform {
  required_version = ">= 1.5.0"

  # For anything shared, keep the state in a versioned GCS bucket:
  # backend "gcs" {
  #   bucket = "my-terraform-state"
  #   prefix = "cloudsql-cdc"
  # }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

module "cdc" {
  source = "../.."

  project_id  = var.project_id
  region      = var.region
  alert_email = var.alert_email

  pipeline = {
    sources = [
      {
        name     = "shop"
        instance = "${var.project_id}:${var.instance}"
        database = var.database
        interval = "1h"
        settle   = "5m"
        start    = var.start
        tables   = [{ name = "orders", template = "orders.sql", watermark_column = "event_timestamp" }]
      },
    ]
  }
}

# If the project already has a (default) Firestore database (or after a destroy), adopt it:
# import {
#   to = module.cdc.google_firestore_database.cdc[0]
#   id = "projects/my-project/databases/(default)"
# }
