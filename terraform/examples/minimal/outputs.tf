output "functions" {
  description = "Function names and URIs."
  value       = module.cdc.functions
}

output "bucket" {
  description = "Export bucket and root prefix."
  value       = module.cdc.bucket
}
