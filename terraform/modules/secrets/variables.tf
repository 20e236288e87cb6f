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

variable "storage_cmk_enabled" {
  description = "Create an HSM-backed key that encrypts the lake storage account."
  type        = bool
}
