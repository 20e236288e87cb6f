variable "name_prefix" {
  description = "Prefix of every resource name, <project>-<env>."
  type        = string
}

variable "storage_account_id" {
  description = "Resource ID of the lake storage account."
  type        = string
}

variable "key_vault_id" {
  description = "Resource ID of the Key Vault behind the secret scope."
  type        = string
}

variable "data_collection_rule_id" {
  description = "Resource ID of the data collection rule the pipeline publishes logs to."
  type        = string
}

variable "access_connector_id" {
  description = "Resource ID of the Unity Catalog access connector."
  type        = string
}

variable "access_connector_principal_id" {
  description = "Object ID of the access connector's managed identity."
  type        = string
}

variable "container_urls" {
  description = "abfss:// URL of each storage container, keyed by container name."
  type        = map(string)
}

variable "storage_paths" {
  description = "abfss:// root of this environment's data in each container, keyed by container name."
  type        = map(string)
}

variable "secret_scope_name" {
  description = "Key Vault-backed secret scope the pipeline and engineers read."
  type        = string
}

variable "cluster_policy_id" {
  description = "ID of the cluster policy rayml job clusters run under."
  type        = string
}

variable "instance_pool_id" {
  description = "ID of the CPU instance pool."
  type        = string
}

variable "job_ids" {
  description = "Databricks job IDs, keyed by purpose."
  type        = map(string)
}

variable "group_members" {
  description = "Workspace user names (e-mail) in each group."
  type = object({
    data_engineers = list(string)
    ml_engineers   = list(string)
    viewers        = list(string)
  })
}

variable "allowed_ip_ranges" {
  description = "CIDRs of people and CI allowed to reach the workspace UI and REST API."
  type        = list(string)

  validation {
    condition     = length(var.allowed_ip_ranges) > 0 && alltrue([for cidr in var.allowed_ip_ranges : can(cidrhost(cidr, 0))])
    error_message = "allowed_ip_ranges needs at least one CIDR; an empty allow list would lock everyone out."
  }
}

variable "orchestrator_ip_ranges" {
  description = "Egress CIDRs of the Dagster deployment, added to the workspace IP access list."
  type        = list(string)

  validation {
    condition     = alltrue([for cidr in var.orchestrator_ip_ranges : can(cidrnetmask(cidr))])
    error_message = "orchestrator_ip_ranges must be IPv4 CIDRs."
  }
}
