locals {
  # The naming convention: every resource is <project>-<env>-<purpose>.
  name_prefix = "${var.project}-${var.environment}"
  tags        = merge(var.tags, { project = var.project, environment = var.environment, managed_by = "terraform" })
  # Each environment's data sits under /<env> in every container, as the rayml profiles expect.
  storage_paths = { for name, url in module.storage.container_urls : name => "${url}/${var.environment}" }
}

resource "azurerm_resource_group" "this" {
  name     = "${local.name_prefix}-rg"
  location = var.location
  tags     = local.tags
}

module "network" {
  source = "../modules/network"

  name_prefix         = local.name_prefix
  resource_group_name = azurerm_resource_group.this.name
  location            = var.location
  tags                = local.tags
  address_space       = var.vnet_address_space
  private_endpoints = {
    lake-dfs  = { resource_id = module.storage.account_id, subresource = "dfs" }
    lake-blob = { resource_id = module.storage.account_id, subresource = "blob" }
    vault     = { resource_id = module.secrets.key_vault_id, subresource = "vault" }
  }
}

module "workspace" {
  source = "../modules/workspace"

  name_prefix         = local.name_prefix
  resource_group_name = azurerm_resource_group.this.name
  location            = var.location
  tags                = local.tags
  virtual_network_id  = module.network.virtual_network_id
  subnets             = module.network.databricks_subnets
}

module "secrets" {
  source = "../modules/secrets"

  name_prefix         = local.name_prefix
  resource_group_name = azurerm_resource_group.this.name
  location            = var.location
  tags                = local.tags
  storage_cmk_enabled = var.storage_cmk_enabled
}

module "storage" {
  source = "../modules/storage"

  name_prefix                = local.name_prefix
  resource_group_name        = azurerm_resource_group.this.name
  location                   = var.location
  tags                       = local.tags
  replication_type           = var.storage_replication_type
  soft_delete_retention_days = var.soft_delete_retention_days
  customer_managed_key       = module.secrets.storage_customer_managed_key
  orchestrator_ip_ranges     = var.orchestrator_ip_ranges
  databricks_subnet_ids      = module.network.databricks_subnet_ids
}

module "monitoring" {
  source = "../modules/monitoring"

  name_prefix         = local.name_prefix
  resource_group_name = azurerm_resource_group.this.name
  location            = var.location
  tags                = local.tags
  retention_days      = var.log_retention_days
  daily_quota_gb      = var.log_daily_quota_gb
  diagnostic_targets = {
    databricks = module.workspace.workspace_id
    lake       = module.storage.account_id
    lake-blob  = "${module.storage.account_id}/blobServices/default"
    key-vault  = module.secrets.key_vault_id
  }
}

module "cluster" {
  source = "../modules/cluster"

  name_prefix             = local.name_prefix
  tags                    = local.tags
  spark_version           = var.spark_version
  gpu_node_type_ids       = var.gpu_node_type_ids
  cpu_node_type_ids       = var.cpu_node_type_ids
  max_workers             = var.max_workers
  pool_min_idle_instances = var.pool_min_idle_instances
  pool_max_capacity       = var.pool_max_capacity
  spot_instances          = var.spot_instances
}

module "access" {
  source = "../modules/access"

  name_prefix                   = local.name_prefix
  storage_account_id            = module.storage.account_id
  key_vault_id                  = module.secrets.key_vault_id
  data_collection_rule_id       = module.monitoring.data_collection_rule_id
  access_connector_id           = module.storage.access_connector_id
  access_connector_principal_id = module.storage.access_connector_principal_id
  container_urls                = module.storage.container_urls
  storage_paths                 = local.storage_paths
  secret_scope_name             = module.secrets.secret_scope_name
  cluster_policy_id             = module.cluster.policy_id
  instance_pool_id              = module.cluster.instance_pool_id
  job_ids                       = module.cluster.job_ids
  group_members                 = var.group_members
  allowed_ip_ranges             = var.allowed_ip_ranges
  orchestrator_ip_ranges        = var.orchestrator_ip_ranges
}
