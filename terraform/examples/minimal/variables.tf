variable "project_id" {
  description = "Project that hosts the pipeline and the Cloud SQL instance."
  type        = string
}

variable "region" {
  description = "Region of the functions, buckets and Firestore."
  type        = string
  default     = "europe-west1"
}

variable "instance" {
  description = "Cloud SQL instance name (in project_id)."
  type        = string
}

variable "database" {
  description = "Database to export from."
  type        = string
}

variable "start" {
  description = "First window to export (RFC 3339, on the hour)."
  type        = string
  default     = "2026-01-01T00:00:00Z"
}

variable "alert_email" {
  description = "Address that receives alerts; null: no notification channel."
  type        = string
  default     = null
}
