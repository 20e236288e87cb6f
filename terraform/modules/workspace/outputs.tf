output "workspace_id" {
  description = "Azure resource ID of the workspace."
  value       = azurerm_databricks_workspace.this.id
}

output "workspace_url" {
  description = "URL of the workspace (DATABRICKS_HOST)."
  value       = "https://${azurerm_databricks_workspace.this.workspace_url}"
}
