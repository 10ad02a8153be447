variable "project_id" {
  description = "Project that hosts the pipeline (functions, topics, Firestore, buckets, scheduler)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6-30 chars: lowercase letters, digits, hyphens)."
  }
}

variable "labels" {
  description = "Labels added to every labelled resource (functions, topics, subscriptions, buckets, repository), next to app = \"cloudsql-cdc\" and prefix = name_prefix."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "labels: keys start with a lowercase letter; keys and values are at most 63 lowercase letters, digits, underscores or hyphens."
  }
}

variable "region" {
  description = "Region for the functions, the scheduler job and (unless overridden) buckets and Firestore."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like europe-west1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name. The default gives the names of the interface contract: cdc-ticks, cdc-work, cdc-dead-letter, ..."
  type        = string
  default     = "cdc"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name_prefix))
    error_message = "name_prefix must be 2-12 chars, lowercase letters, digits and hyphens, starting with a letter (service account ids are limited to 30 chars)."
  }
}

variable "create_bucket" {
  description = "Create the export bucket. false: use the existing bucket named by bucket_name."
  type        = bool
  default     = true
}

variable "bucket_name" {
  description = "Export bucket name. null with create_bucket = true: <project>-<name_prefix>-exports."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid Cloud Storage bucket name."
  }
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the export bucket with every export in it. false (default): destroy stops with an error while the bucket holds objects; see README \"Tear down\" for keeping it."
  type        = bool
  default     = false
}

variable "bucket_location" {
  description = "Location of the created buckets. null: the region."
  type        = string
  default     = null
}

variable "export_retention_days" {
  description = "Delete exported objects this many days after creation. null: keep them forever."
  type        = number
  default     = null

  validation {
    condition     = var.export_retention_days == null || try(var.export_retention_days >= 1, false)
    error_message = "export_retention_days must be null or at least 1."
  }
}

variable "pack_retention_days" {
  description = "Delete pack objects (<root>/packs/: one export of many windows, split into the windows' own objects by the worker, which may not delete) this many days after creation; they are kept only so that a split cut short can be finished."
  type        = number
  default     = 7

  validation {
    condition     = try(var.pack_retention_days >= 1, false)
    error_message = "pack_retention_days must be at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Versioning is on for both buckets; overwritten or deleted object versions are removed after this many days."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "create_firestore_database" {
  description = "Create the Firestore database (native mode). false: use the existing native-mode database named by firestore_database."
  type        = bool
  default     = true
}

variable "firestore_database" {
  description = "Firestore database id; \"(default)\" is the project's default database."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be \"(default)\" or a database id (4-63 chars, lowercase letters, digits, hyphens)."
  }
}

variable "firestore_location" {
  description = "Location of a created Firestore database (a region such as europe-west1 or a multi-region such as eur3). null: the region."
  type        = string
  default     = null
}

variable "tick_schedule" {
  description = "Cron schedule (UTC) of the Cloud Scheduler job that publishes the tick. Ticks are cheap and idempotent; each source's own interval decides what is due."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.tick_schedule))) == 5
    error_message = "tick_schedule must be a five-field cron expression."
  }
}

variable "paused" {
  description = "Pause the tick job (no new windows are planned; work already queued still drains)."
  type        = bool
  default     = false
}

variable "runtime" {
  description = "Cloud Functions Python runtime."
  type        = string
  default     = "python312"

  validation {
    condition     = contains(["python311", "python312"], var.runtime)
    error_message = "runtime must be python311 or python312."
  }
}

variable "function_memory" {
  description = "Memory of each function instance (Cloud Run notation, e.g. 256Mi, 512Mi, 1Gi)."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.function_memory))
    error_message = "function_memory must look like 512Mi or 1Gi."
  }
}

variable "planner_timeout_seconds" {
  description = "Planner function timeout."
  type        = number
  default     = 300

  validation {
    condition     = var.planner_timeout_seconds >= 60 && var.planner_timeout_seconds <= 540
    error_message = "planner_timeout_seconds must be between 60 and 540."
  }
}

variable "worker_timeout_seconds" {
  description = "Worker function timeout. The worker stops polling at its own budget (config worker.budget_seconds, 300 by default) and re-publishes itself, well before this."
  type        = number
  default     = 540

  validation {
    condition     = var.worker_timeout_seconds >= 120 && var.worker_timeout_seconds <= 540
    error_message = "worker_timeout_seconds must be between 120 and 540 (the push ack deadline is 600 s)."
  }
}

variable "planner_max_instances" {
  description = "Maximum planner instances. One is enough: ticks are rare and planning is idempotent."
  type        = number
  default     = 1

  validation {
    condition     = var.planner_max_instances >= 1 && var.planner_max_instances <= 10
    error_message = "planner_max_instances must be between 1 and 10."
  }
}

variable "worker_max_instances" {
  description = "Maximum worker instances. null (default): derived from the number of distinct Cloud SQL instances in pipeline.sources, ceil(2 x instances / worker_concurrency) + 1, so that every chain can be pushed its invocation and its continuation at once. Fewer make pushes get 429 from Cloud Run, which counts as a delivery attempt (a check warns at plan time)."
  type        = number
  default     = null

  validation {
    condition     = var.worker_max_instances == null || try(var.worker_max_instances >= 1 && var.worker_max_instances <= 100, false)
    error_message = "worker_max_instances must be null (derived from the Cloud SQL instances and worker_concurrency) or 1-100. Trade-off: the worker must serve 2 requests per Cloud SQL instance at once (max instances x worker_concurrency); below that, pushes are refused and retried with 10-600 s backoff and may reach the dead-letter topic."
  }
}

variable "worker_concurrency" {
  description = "Requests one worker instance serves at once (max_instance_request_concurrency). Chains mostly wait on the Admin API, so one instance carries several. Above 1 the worker gets 1 vCPU (required by Cloud Run functions) and functions-framework as many threads."
  type        = number
  default     = 8

  validation {
    condition     = try(var.worker_concurrency >= 1 && var.worker_concurrency <= 80 && floor(var.worker_concurrency) == var.worker_concurrency, false)
    error_message = "worker_concurrency must be a whole number from 1 to 80 (Cloud Run allows up to 1000; the documentation advises starting around 8 for Python: each request is a thread of one process)."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message to a function before Pub/Sub moves it to the dead-letter topic (5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub limits)."
  }
}

variable "alerts" {
  description = "Which alert policies to create. Each is one condition, billed by Cloud Monitoring at $1.50 per condition per month (plus $0.35 per million time series read); false removes it. errors: ERROR records the functions log themselves (failed exports, gaps, bad messages; not lag, not retries). dead_letters: a message gave up after max_delivery_attempts. lag: a table lags past lag_alert_seconds. absent: no freshness report for 30 minutes (planner not running). repairs: a verification re-exported a window whose rows changed after export. schema_drift: a source table's columns changed."
  type = object({
    errors       = optional(bool, true)
    dead_letters = optional(bool, true)
    lag          = optional(bool, true)
    absent       = optional(bool, true)
    repairs      = optional(bool, true)
    schema_drift = optional(bool, true)
  })
  default = {}
}

variable "alert_email" {
  description = "Address that receives alerts (function errors, dead letters). null: the alert policies exist without a notification channel."
  type        = string
  default     = null

  validation {
    condition     = var.alert_email == null || can(regex("^[^@ ]+@[^@ ]+\\.[^@ ]+$", var.alert_email))
    error_message = "alert_email must be an e-mail address or null."
  }
}

variable "pipeline" {
  description = <<-EOT
    The pipeline configuration (the CDC_CONFIG document of the interface contract) without the parts
    Terraform owns: project, region, bucket, firestore.database and topics are filled in here.
    Optional fields left out (null) are omitted from the document, so the code's defaults apply.
  EOT
  type = object({
    root              = optional(string, "cdc")
    firestore_prefix  = optional(string, "cdc_")
    layout            = optional(map(string))
    backfill          = optional(object({ max_windows = number }))
    worker            = optional(map(number))
    lag_alert_seconds = optional(number)
    sources = list(object({
      name        = string
      instance    = string
      database    = string
      schema      = optional(string)
      interval    = string
      settle      = optional(string)
      catchup_cap = optional(number)
      start       = optional(string)
      offload     = optional(bool)
      # Template of the per-window schema query (default schema.sql).
      schema_template = optional(string)
      csv = optional(object({
        escape               = optional(string)
        quote                = optional(string)
        fields_terminated_by = optional(string)
        gzip                 = optional(bool)
      }))
      tables = list(object({
        name             = string
        template         = optional(string)
        watermark_column = optional(string)
        params           = optional(map(any))
      }))
    }))
    # worker.pack of the config (shared/core/packing.py): catch-up and backfill windows of a table exported together.
    pack = optional(object({
      max_windows             = optional(number)
      target_bytes            = optional(number)
      op_overhead_seconds     = optional(number)
      export_bytes_per_second = optional(number)
      overhead_share          = optional(number)
    }))
  })

  validation {
    condition     = length(var.pipeline.sources) > 0
    error_message = "pipeline.sources must name at least one source."
  }

  validation {
    condition     = length(distinct([for s in var.pipeline.sources : s.name])) == length(var.pipeline.sources)
    error_message = "pipeline.sources[*].name must be unique."
  }

  validation {
    condition     = alltrue([for s in var.pipeline.sources : can(regex("^[a-z][a-z0-9.:-]*[a-z0-9]:[a-z][a-z0-9-]*$", s.instance))])
    error_message = "pipeline.sources[*].instance must be \"project:instance\"."
  }

  validation {
    condition     = alltrue([for s in var.pipeline.sources : length(s.tables) > 0])
    error_message = "every pipeline source needs at least one table."
  }

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_./-]*[a-z0-9]$", var.pipeline.root))
    error_message = "pipeline.root must be an object-key prefix without leading or trailing slash."
  }

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_]*$", var.pipeline.firestore_prefix))
    error_message = "pipeline.firestore_prefix must be letters, digits and underscores."
  }
}

variable "image_versions_kept" {
  description = "Function images kept per function in the Artifact Registry repository (the cleanup policy deletes older ones after 7 days)."
  type        = number
  default     = 3

  validation {
    condition     = var.image_versions_kept >= 1
    error_message = "image_versions_kept must be at least 1 (the running image)."
  }
}
