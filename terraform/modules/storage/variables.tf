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

variable "replication_type" {
  description = "Replication of the lake account (LRS, ZRS, GZRS, RAGZRS)."
  type        = string

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.replication_type)
    error_message = "replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "soft_delete_retention_days" {
  description = "Days deleted blobs and containers stay recoverable."
  type        = number

  validation {
    condition     = var.soft_delete_retention_days >= 7 && var.soft_delete_retention_days <= 365
    error_message = "soft_delete_retention_days must be between 7 and 365."
  }
}

variable "customer_managed_key" {
  description = "Key Vault key that encrypts the account (secrets module output); null keeps Microsoft-managed keys."
  type = object({
    key_vault_id = string
    key_name     = string
  })
  default = null
}

variable "orchestrator_ip_ranges" {
  description = "Public IPv4 CIDRs the orchestrator (Dagster, outside the VNet) reaches the lake from; empty closes the account to public networks (private endpoints only)."
  type        = list(string)

  validation {
    condition = alltrue([
      for cidr in var.orchestrator_ip_ranges :
      can(regex("^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$", cidr)) && can(cidrnetmask(cidr)) && try(cidrhost(cidr, 0) == split("/", cidr)[0], false)
    ])
    error_message = "orchestrator_ip_ranges must be IPv4 CIDRs written from their network address, e.g. 203.0.113.0/24 or 198.51.100.7/32."
  }

  validation {
    condition = alltrue([
      for cidr in var.orchestrator_ip_ranges : try(
        tonumber(split("/", cidr)[1]) >= 8 && !anytrue([
          for private in ["10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"] :
          cidrsubnet("${split("/", cidr)[0]}/${split("/", private)[1]}", 0, 0) == private
        ]),
      true)
    ])
    error_message = "orchestrator_ip_ranges must be public ranges of /8 or smaller: storage IP rules ignore private addresses (reach the lake through a private endpoint instead)."
  }
}

variable "databricks_subnet_ids" {
  description = "IDs of the Databricks host and container subnets (network module output), allowed as VNet rules."
  type        = list(string)
}
