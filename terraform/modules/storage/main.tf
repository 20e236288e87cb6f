locals {
  # Storage account names allow 3-24 lowercase letters and digits, no dashes.
  account_name = substr(replace("${var.name_prefix}lake", "-", ""), 0, 24)
  # One container per kind of data; the rayml profile points at each of them.
  containers = toset(["lake", "landing", "reports", "checkpoints", "mlflow"])

  # Storage IP rules take no /31 or /32 prefix: such ranges become single addresses.
  ip_rules = flatten([
    for cidr in var.orchestrator_ip_ranges :
    tonumber(split("/", cidr)[1]) >= 31 ? [for i in range(pow(2, 32 - tonumber(split("/", cidr)[1]))) : cidrhost(cidr, i)] : [cidr]
  ])
}

resource "azurerm_storage_account" "lake" {
  #checkov:skip=CKV_AZURE_206:Geo-replication is an environment value (replication_type): prod uses RAGZRS; sit and uat hold re-creatable test data on ZRS.
  #checkov:skip=CKV_AZURE_33:The account serves no queues; its blob logs go to Log Analytics through a diagnostic setting (monitoring module).
  #checkov:skip=CKV_AZURE_59:Public network access is on only when orchestrator_ip_ranges is set, so Dagster outside the VNet can reach the lake; network_rules still deny everything but those ranges, the Databricks subnets and the access connector.
  #checkov:skip=CKV2_AZURE_33:The dfs and blob private endpoints are created by the network module from env main.tf; checkov does not link them across modules.
  name                     = local.account_name
  resource_group_name      = var.resource_group_name
  location                 = var.location
  account_tier             = "Standard"
  account_kind             = "StorageV2"
  account_replication_type = var.replication_type
  # ADLS Gen2: a real hierarchical namespace for Delta tables (atomic renames, abfss://).
  is_hns_enabled                  = true
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  # Open only for the orchestrator's ranges; without them, private endpoints only.
  public_network_access_enabled     = length(var.orchestrator_ip_ranges) > 0
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  infrastructure_encryption_enabled = true
  tags                              = var.tags

  identity {
    type = "SystemAssigned"
  }

  blob_properties {
    delete_retention_policy {
      days = var.soft_delete_retention_days
    }

    container_delete_retention_policy {
      days = var.soft_delete_retention_days
    }
  }

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices", "Logging", "Metrics"]
    # Dagster's ingest, cleaning, evaluation and registration run outside the VNet.
    ip_rules = local.ip_rules
    # The clusters' subnets (service endpoint); the private endpoints serve them too.
    virtual_network_subnet_ids = var.databricks_subnet_ids

    # Unity Catalog reaches the account through its access connector, not the VNet.
    private_link_access {
      endpoint_resource_id = azurerm_databricks_access_connector.unity_catalog.id
    }
  }
}

# Created through Azure Resource Manager (storage_account_id), so Terraform
# needs no data-plane access to the account (it is not in orchestrator_ip_ranges).
resource "azurerm_storage_container" "this" {
  #checkov:skip=CKV2_AZURE_21:azurerm_log_analytics_storage_insights needs the account's shared key, which is disabled; blob read/write/delete logs reach Log Analytics through the blobServices diagnostic setting (monitoring module).
  for_each = local.containers

  name                  = each.key
  storage_account_id    = azurerm_storage_account.lake.id
  container_access_type = "private"
}

# Unity Catalog's storage credential is this connector's managed identity.
resource "azurerm_databricks_access_connector" "unity_catalog" {
  name                = "${var.name_prefix}-uc-connector"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_role_assignment" "customer_managed_key" {
  count = var.customer_managed_key == null ? 0 : 1

  scope                = var.customer_managed_key.key_vault_id
  role_definition_name = "Key Vault Crypto Service Encryption User"
  principal_id         = azurerm_storage_account.lake.identity[0].principal_id
}

resource "azurerm_storage_account_customer_managed_key" "this" {
  count = var.customer_managed_key == null ? 0 : 1

  storage_account_id = azurerm_storage_account.lake.id
  key_vault_id       = var.customer_managed_key.key_vault_id
  key_name           = var.customer_managed_key.key_name

  depends_on = [azurerm_role_assignment.customer_managed_key]
}
