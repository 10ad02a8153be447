variable "project_id" {
  description = "Project that hosts the pipeline (and the shop instance)."
  type        = string
}

variable "billing_project_id" {
  description = "Project that holds the billing instance."
  type        = string
}

variable "region" {
  description = "Region of the functions, buckets and Firestore."
  type        = string
  default     = "europe-west1"
}

variable "alert_email" {
  description = "Address that receives alerts."
  type        = string
}
