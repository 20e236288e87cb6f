locals {
  # Well-known application ID of the AzureDatabricks first-party app, the
  # identity that reads Key Vault-backed secret scopes.
  azure_databricks_app_id = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
}

data "azurerm_client_config" "current" {}

data "azuread_service_principal" "azure_databricks" {
  client_id = local.azure_databricks_app_id
}

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV2_AZURE_32:The vault's private endpoint is created by the network module from env main.tf; checkov does not link it across modules.
  name                = "${var.name_prefix}-kv"
  resource_group_name = var.resource_group_name
  location            = var.location
  tenant_id           = data.azurerm_client_config.current.tenant_id
  # Premium for HSM-backed keys (the storage CMK).
  sku_name                      = "premium"
  enable_rbac_authorization     = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = false
  tags                          = var.tags

  # AzureServices lets the Databricks control plane read the scope's secrets.
  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
  }
}

resource "azurerm_role_assignment" "azure_databricks" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = data.azuread_service_principal.azure_databricks.object_id
}

resource "databricks_secret_scope" "this" {
  name = "${var.name_prefix}-kv"

  keyvault_metadata {
    resource_id = azurerm_key_vault.this.id
    dns_name    = azurerm_key_vault.this.vault_uri
  }

  depends_on = [azurerm_role_assignment.azure_databricks]
}

# The identity running Terraform creates the key, so it needs the crypto role.
resource "azurerm_role_assignment" "runner_crypto_officer" {
  count = var.storage_cmk_enabled ? 1 : 0

  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Crypto Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_key_vault_key" "storage" {
  #checkov:skip=CKV_AZURE_40:The rotation policy renews the key before it expires each year; a fixed expiration_date would stop the lake account's encryption on that day.
  count = var.storage_cmk_enabled ? 1 : 0

  name         = "${var.name_prefix}-storage-cmk"
  key_vault_id = azurerm_key_vault.this.id
  key_type     = "RSA-HSM"
  key_size     = 3072
  key_opts     = ["wrapKey", "unwrapKey"]

  rotation_policy {
    expire_after         = "P365D"
    notify_before_expiry = "P30D"

    automatic {
      time_before_expiry = "P45D"
    }
  }

  depends_on = [azurerm_role_assignment.runner_crypto_officer]
}
