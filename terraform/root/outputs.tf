# `terraform output -json | python -m rayml_assets.profile_from_terraform --env <env>`
# turns these into rayml_assets/profiles/<env>.yaml (docs/infrastructure.md).

output "environment" {
  description = "Environment these outputs describe."
  value       = var.environment
}

output "workspace_url" {
  description = "Databricks workspace URL (DATABRICKS_HOST)."
  value       = module.workspace.workspace_url
}

output "storage_paths" {
  description = "abfss:// root of the environment's data in each container (lake, landing, reports, checkpoints, mlflow)."
  value       = local.storage_paths
}

output "logs_ingestion_endpoint" {
  description = "Data collection endpoint the log handler posts to."
  value       = module.monitoring.logs_ingestion_endpoint
}

output "data_collection_rule_immutable_id" {
  description = "Immutable ID of the data collection rule for pipeline and training logs."
  value       = module.monitoring.data_collection_rule_immutable_id
}

output "logs_stream_name" {
  description = "Stream of the data collection rule the logs go to."
  value       = module.monitoring.stream_name
}

output "databricks_compute" {
  description = "Runtime, node types, worker limit, GPU policy and pool for job clusters."
  value       = module.cluster.compute
}

output "databricks_jobs" {
  description = "IDs of the Terraform-defined jobs (ray-smoke: run it after each apply)."
  value       = module.cluster.job_ids
}

output "workspace_dir" {
  description = "Workspace folder of the environment."
  value       = module.access.workspace_dir
}

output "pipeline_identity" {
  description = "Client and tenant ID of the pipeline service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID)."
  value       = module.access.pipeline_identity
}

output "unity_catalog" {
  description = "Catalog, registered model and volume paths (landing, checkpoints, reports, pipes) of the environment."
  value = {
    catalog          = module.access.catalog_name
    registered_model = module.access.registered_model_name
    volumes          = module.access.volume_paths
  }
}

output "mlflow_experiment_name" {
  description = "Workspace path of the training experiment."
  value       = module.access.mlflow_experiment_name
}

output "secret_scope" {
  description = "Key Vault-backed Databricks secret scope (clusters read {{secrets/<scope>/<key>}} from it)."
  value       = module.secrets.secret_scope_name
}
