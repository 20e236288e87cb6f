output "key_vault_id" {
  description = "Resource ID of the Key Vault."
  value       = azurerm_key_vault.this.id
}

output "secret_scope_name" {
  description = "Name of the Key Vault-backed Databricks secret scope."
  value       = databricks_secret_scope.this.name
}

output "storage_customer_managed_key" {
  description = "Key that encrypts the lake account, or null when storage_cmk_enabled is false."
  value = var.storage_cmk_enabled ? {
    key_vault_id = azurerm_key_vault.this.id
    key_name     = azurerm_key_vault_key.storage[0].name
  } : null
}
