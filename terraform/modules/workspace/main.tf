resource "azurerm_databricks_workspace" "this" {
  #checkov:skip=CKV_AZURE_158:The front end stays public so Dagster and CI outside the VNet can submit Pipes jobs; the access module limits it to allowed_ip_ranges and orchestrator_ip_ranges with an IP access list. Clusters have no public IP (secure cluster connectivity).
  #checkov:skip=CKV2_AZURE_48:No data lives in the DBFS root: tables, checkpoints, reports and MLflow artifacts are in the lake account (customer-managed key in prod) and Unity Catalog volumes; the root is infrastructure-encrypted.
  name                = "${var.name_prefix}-dbw"
  resource_group_name = var.resource_group_name
  location            = var.location
  # Premium: Unity Catalog, cluster policies, IP access lists and Key Vault-backed scopes need it.
  sku                                   = "premium"
  managed_resource_group_name           = "${var.name_prefix}-dbw-managed-rg"
  public_network_access_enabled         = true
  network_security_group_rules_required = "AllRules"
  infrastructure_encryption_enabled     = true
  tags                                  = var.tags

  custom_parameters {
    no_public_ip                                         = true
    virtual_network_id                                   = var.virtual_network_id
    public_subnet_name                                   = var.subnets.host.name
    private_subnet_name                                  = var.subnets.container.name
    public_subnet_network_security_group_association_id  = var.subnets.host.nsg_association_id
    private_subnet_network_security_group_association_id = var.subnets.container.nsg_association_id
  }
}
