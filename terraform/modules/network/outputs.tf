output "virtual_network_id" {
  description = "ID of the VNet the Databricks workspace is injected into."
  value       = azurerm_virtual_network.this.id
}

output "databricks_subnets" {
  description = "Name and NSG association of the host and container subnets."
  value = {
    for key in local.databricks_subnets : key => {
      name               = azurerm_subnet.databricks[key].name
      nsg_association_id = azurerm_subnet_network_security_group_association.databricks[key].id
    }
  }
}

output "databricks_subnet_ids" {
  description = "IDs of the host and container subnets (the lake account's VNet rules)."
  value       = [for subnet in azurerm_subnet.databricks : subnet.id]
}
