output "worker_max_instances" {
  description = "Worker instances in effect (derived from the two source instances)."
  value       = module.cdc.worker_max_instances
}

output "service_accounts" {
  description = "Service account e-mails by role."
  value       = module.cdc.service_accounts
}
