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

variable "address_space" {
  description = "CIDR of the VNet (a /20 or larger); the subnets are carved out of it."
  type        = string

  validation {
    condition     = can(cidrhost(var.address_space, 0)) && tonumber(split("/", var.address_space)[1]) <= 20
    error_message = "address_space must be an IPv4 CIDR of /20 or larger."
  }
}

variable "private_endpoints" {
  description = "Private endpoints to create, keyed by purpose; subresource is one of dfs, blob or vault."
  type = map(object({
    resource_id = string
    subresource = string
  }))

  validation {
    condition     = alltrue([for pe in values(var.private_endpoints) : contains(["dfs", "blob", "vault"], pe.subresource)])
    error_message = "Each private endpoint's subresource must be dfs, blob or vault."
  }
}
