# Two Cloud SQL instances (one in another project), several tables, labels, an alert address, and only
# the alerts that page someone. The worker size is derived: two instances, three workers at most.
terraform {
  required_version = ">= 1.5.0"
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
  name_prefix = "cdc"
  labels      = { team = "data", env = "prod" }
  alert_email = var.alert_email
  # Each alert is one condition at $1.50 a month: keep the ones someone acts on.
  alerts                = { absent = false }
  export_retention_days = 400

  pipeline = {
    root              = "cdc"
    lag_alert_seconds = 7200
    sources = [
      {
        name     = "shop"
        instance = "${var.project_id}:shop-pg"
        database = "shop"
        schema   = "public"
        interval = "1h"
        settle   = "5m"
        start    = "2026-01-01T00:00:00Z"
        csv      = { gzip = true }
        tables = [
          { name = "orders", template = "orders.sql", watermark_column = "event_timestamp" },
          { name = "payments", template = "payments.sql", watermark_column = "event_timestamp" },
        ]
      },
      {
        name     = "billing"
        instance = "${var.billing_project_id}:billing-pg"
        database = "billing"
        interval = "1d"
        settle   = "30m"
        start    = "2026-01-01T00:00:00Z"
        tables   = [{ name = "invoices", template = "orders.sql", watermark_column = "event_timestamp" }]
      },
    ]
  }
}
