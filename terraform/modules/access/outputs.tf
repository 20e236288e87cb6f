output "pipeline_identity" {
  description = "Client and tenant ID of the pipeline service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID)."
  value = {
    client_id = azuread_service_principal.pipeline.client_id
    tenant_id = azuread_service_principal.pipeline.application_tenant_id
  }
}

output "catalog_name" {
  description = "Unity Catalog catalog of the environment."
  value       = databricks_catalog.this.name
}

output "registered_model_name" {
  description = "Full Unity Catalog name of the registered image classifier."
  value       = databricks_registered_model.classifier.id
}

output "volume_paths" {
  description = "/Volumes path of each external volume."
  value       = { for key, volume in databricks_volume.this : key => volume.volume_path }
}

output "mlflow_experiment_name" {
  description = "Workspace path of the training experiment."
  value       = databricks_mlflow_experiment.training.name
}

output "workspace_dir" {
  description = "Workspace folder of the environment (wheels, job files, experiments)."
  value       = databricks_directory.this.path
}
