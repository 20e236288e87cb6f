output "account_id" {
  description = "Resource ID of the lake storage account."
  value       = azurerm_storage_account.lake.id
}

output "container_urls" {
  description = "abfss:// URL of each container, keyed by container name."
  value = {
    for name, container in azurerm_storage_container.this :
    name => "abfss://${container.name}@${azurerm_storage_account.lake.primary_dfs_host}"
  }
}

output "access_connector_id" {
  description = "Resource ID of the Unity Catalog access connector."
  value       = azurerm_databricks_access_connector.unity_catalog.id
}

output "access_connector_principal_id" {
  description = "Object ID of the access connector's managed identity."
  value       = azurerm_databricks_access_connector.unity_catalog.identity[0].principal_id
}
