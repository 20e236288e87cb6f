variable "name_prefix" {
  description = "Prefix of every resource name, <project>-<env>."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group that holds the environment."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "tags" {
  description = "Tags set on every resource."
  type        = map(string)
}

variable "virtual_network_id" {
  description = "VNet the workspace's clusters are injected into."
  type        = string
}

variable "subnets" {
  description = "The delegated host and container subnets, with their NSG associations (network module output)."
  type = object({
    host = object({
      name               = string
      nsg_association_id = string
    })
    container = object({
      name               = string
      nsg_association_id = string
    })
  })
}
