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
