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

variable "retention_days" {
  description = "Days logs stay in the Log Analytics workspace."
  type        = number

  validation {
    condition     = var.retention_days >= 30 && var.retention_days <= 730
    error_message = "retention_days must be between 30 and 730."
  }
}

variable "daily_quota_gb" {
  description = "Daily ingestion cap of the Log Analytics workspace in GB (-1 for none)."
  type        = number
}

variable "diagnostic_targets" {
  description = "Resources whose diagnostic logs and metrics go to the workspace, keyed by purpose."
  type        = map(string)
}
