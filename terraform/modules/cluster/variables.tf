variable "name_prefix" {
  description = "Prefix of every resource name, <project>-<env>."
  type        = string
}

variable "tags" {
  description = "Tags of the environment; the pool's VMs carry them all, every cluster its environment tag."
  type        = map(string)

  validation {
    condition     = contains(keys(var.tags), "environment")
    error_message = "tags must include environment."
  }
}

variable "spark_version" {
  description = "Databricks GPU ML runtime, e.g. 18.0.x-gpu-ml-scala2.13 (Runtime 18 LTS ML); CPU jobs run its -cpu-ml- build."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.x-gpu-ml-scala2\\.1[23]$", var.spark_version))
    error_message = "spark_version must be a GPU ML runtime such as 18.0.x-gpu-ml-scala2.13."
  }
}

variable "gpu_node_type_ids" {
  description = "GPU VM sizes training clusters may use; the first is the profile's default."
  type        = list(string)

  validation {
    condition     = length(var.gpu_node_type_ids) > 0
    error_message = "gpu_node_type_ids needs at least one VM size."
  }
}

variable "cpu_node_type_ids" {
  description = "CPU VM sizes clusters may use; the first backs the instance pool."
  type        = list(string)

  validation {
    condition     = length(var.cpu_node_type_ids) > 0
    error_message = "cpu_node_type_ids needs at least one VM size."
  }
}

variable "max_workers" {
  description = "Most workers any cluster under the policy may have."
  type        = number

  validation {
    condition     = var.max_workers >= 1
    error_message = "max_workers must be at least 1."
  }
}

variable "pool_min_idle_instances" {
  description = "CPU instances kept warm in the pool (0 to pay only while jobs run)."
  type        = number
}

variable "pool_max_capacity" {
  description = "Most instances the pool may hold, drivers included."
  type        = number
}

variable "spot_instances" {
  description = "Back the pool with spot VMs."
  type        = bool
}
