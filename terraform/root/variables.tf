variable "project" {
  description = "Project name, the first part of every resource name."
  type        = string
}

variable "environment" {
  description = "Environment name, the second part of every resource name."
  type        = string

  validation {
    condition     = contains(["sit", "uat", "prod"], var.environment)
    error_message = "environment must be sit, uat or prod."
  }
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "tags" {
  description = "Extra tags set on every resource (project and environment are added)."
  type        = map(string)
  default     = {}
}

variable "vnet_address_space" {
  description = "CIDR of the environment's VNet (/20 or larger)."
  type        = string
}

variable "storage_replication_type" {
  description = "Replication of the lake storage account."
  type        = string
}

variable "soft_delete_retention_days" {
  description = "Days deleted blobs and containers stay recoverable."
  type        = number
}

variable "storage_cmk_enabled" {
  description = "Encrypt the lake account with a customer-managed key from the Key Vault."
  type        = bool
}

variable "log_retention_days" {
  description = "Days logs stay in Log Analytics."
  type        = number
}

variable "log_daily_quota_gb" {
  description = "Daily Log Analytics ingestion cap in GB (-1 for none)."
  type        = number
}

variable "spark_version" {
  description = "Databricks GPU ML runtime of training clusters."
  type        = string
}

variable "gpu_node_type_ids" {
  description = "GPU VM sizes allowed for training clusters; the first is the default."
  type        = list(string)
}

variable "cpu_node_type_ids" {
  description = "CPU VM sizes allowed for job clusters; the first backs the instance pool."
  type        = list(string)
}

variable "max_workers" {
  description = "Most workers a cluster may have."
  type        = number
}

variable "pool_min_idle_instances" {
  description = "CPU instances kept warm in the pool."
  type        = number
}

variable "pool_max_capacity" {
  description = "Most instances in the pool."
  type        = number
}

variable "spot_instances" {
  description = "Back the pool with spot VMs."
  type        = bool
}

variable "allowed_ip_ranges" {
  description = "CIDRs of people and CI (office/VPN, CI egress) allowed to reach the workspace UI and REST API."
  type        = list(string)
}

variable "orchestrator_ip_ranges" {
  description = "Public egress CIDRs of the Dagster deployment: allowed on the lake account and on the workspace IP access list. Empty: the lake takes private-endpoint traffic only (Dagster inside a peered network). Validated once, by modules/storage."
  type        = list(string)
}

variable "group_members" {
  description = "Workspace user names in each group."
  type = object({
    data_engineers = list(string)
    ml_engineers   = list(string)
    viewers        = list(string)
  })
}
