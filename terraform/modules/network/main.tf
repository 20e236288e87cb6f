locals {
  # host/container are the two subnets Databricks injects its clusters into
  # (each node takes one address in both); endpoints holds the private endpoints.
  subnet_prefixes = {
    host      = cidrsubnet(var.address_space, 2, 0)
    container = cidrsubnet(var.address_space, 2, 1)
    endpoints = cidrsubnet(var.address_space, 4, 8)
  }
  databricks_subnets = toset(["host", "container"])

  # Azure fixes these zone names for private link, one per subresource.
  private_dns_zones = {
    dfs   = "privatelink.dfs.core.windows.net"
    blob  = "privatelink.blob.core.windows.net"
    vault = "privatelink.vaultcore.azure.net"
  }
}

resource "azurerm_virtual_network" "this" {
  name                = "${var.name_prefix}-vnet"
  resource_group_name = var.resource_group_name
  location            = var.location
  address_space       = [var.address_space]
  tags                = var.tags
}

resource "azurerm_subnet" "databricks" {
  for_each = local.databricks_subnets

  name                 = "${var.name_prefix}-${each.key}"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [local.subnet_prefixes[each.key]]
  # Clusters have no public IP: their only way out is the NAT gateway below.
  default_outbound_access_enabled = false
  # Lets the lake account name these subnets in its VNet rules.
  service_endpoints = ["Microsoft.Storage"]

  delegation {
    name = "databricks"

    service_delegation {
      name = "Microsoft.Databricks/workspaces"
      actions = [
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/virtualNetworks/subnets/prepareNetworkPolicies/action",
        "Microsoft.Network/virtualNetworks/subnets/unprepareNetworkPolicies/action",
      ]
    }
  }
}

resource "azurerm_subnet" "endpoints" {
  name                              = "${var.name_prefix}-endpoints"
  resource_group_name               = var.resource_group_name
  virtual_network_name              = azurerm_virtual_network.this.name
  address_prefixes                  = [local.subnet_prefixes.endpoints]
  default_outbound_access_enabled   = false
  private_endpoint_network_policies = "Enabled"
}

# Databricks adds the rules its clusters need to the host and container NSGs
# (network intent policy), so none are declared here.
resource "azurerm_network_security_group" "this" {
  for_each = local.subnet_prefixes

  name                = "${var.name_prefix}-${each.key}-nsg"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_subnet_network_security_group_association" "databricks" {
  for_each = local.databricks_subnets

  subnet_id                 = azurerm_subnet.databricks[each.key].id
  network_security_group_id = azurerm_network_security_group.this[each.key].id
}

resource "azurerm_subnet_network_security_group_association" "endpoints" {
  subnet_id                 = azurerm_subnet.endpoints.id
  network_security_group_id = azurerm_network_security_group.this["endpoints"].id
}

resource "azurerm_public_ip" "nat" {
  name                = "${var.name_prefix}-nat-ip"
  resource_group_name = var.resource_group_name
  location            = var.location
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = var.tags
}

resource "azurerm_nat_gateway" "this" {
  name                    = "${var.name_prefix}-nat"
  resource_group_name     = var.resource_group_name
  location                = var.location
  sku_name                = "Standard"
  idle_timeout_in_minutes = 10
  tags                    = var.tags
}

resource "azurerm_nat_gateway_public_ip_association" "this" {
  nat_gateway_id       = azurerm_nat_gateway.this.id
  public_ip_address_id = azurerm_public_ip.nat.id
}

resource "azurerm_subnet_nat_gateway_association" "databricks" {
  for_each = azurerm_subnet.databricks

  subnet_id      = each.value.id
  nat_gateway_id = azurerm_nat_gateway.this.id
}

resource "azurerm_private_dns_zone" "this" {
  for_each = local.private_dns_zones

  name                = each.value
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "this" {
  for_each = azurerm_private_dns_zone.this

  name                  = "${var.name_prefix}-${each.key}-link"
  resource_group_name   = var.resource_group_name
  private_dns_zone_name = each.value.name
  virtual_network_id    = azurerm_virtual_network.this.id
  registration_enabled  = false
  tags                  = var.tags
}

resource "azurerm_private_endpoint" "this" {
  for_each = var.private_endpoints

  name                = "${var.name_prefix}-${each.key}-pe"
  resource_group_name = var.resource_group_name
  location            = var.location
  subnet_id           = azurerm_subnet.endpoints.id
  tags                = var.tags

  private_service_connection {
    name                           = "${var.name_prefix}-${each.key}"
    private_connection_resource_id = each.value.resource_id
    subresource_names              = [each.value.subresource]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = each.value.subresource
    private_dns_zone_ids = [azurerm_private_dns_zone.this[each.value.subresource].id]
  }
}
