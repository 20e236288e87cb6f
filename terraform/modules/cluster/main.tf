locals {
  workspace_dir = "/Shared/${var.name_prefix}"

  # The one policy the rayml profile names governs both kinds of job cluster
  # DatabricksCompute submits: CPU jobs from the pool, GPU training on GPU VMs
  # (Databricks' GPU runtimes schedule one GPU per Spark task, so each
  # Ray-on-Spark worker node owns whole GPUs). Nothing here may fix a value
  # only one kind can take, or carry a default the other kind would inherit.
  policy = {
    "cluster_type"            = { type = "fixed", value = "job" }
    "spark_version"           = { type = "regex", pattern = "^[0-9]+\\.[0-9]+\\.x-(cpu|gpu)-ml-scala2\\.1[23]$" }
    "node_type_id"            = { type = "allowlist", values = concat(var.gpu_node_type_ids, var.cpu_node_type_ids), isOptional = true }
    "driver_node_type_id"     = { type = "allowlist", values = concat(var.gpu_node_type_ids, var.cpu_node_type_ids), isOptional = true }
    "instance_pool_id"        = { type = "allowlist", values = [databricks_instance_pool.cpu.id], isOptional = true }
    "driver_instance_pool_id" = { type = "allowlist", values = [databricks_instance_pool.cpu.id], isOptional = true }
    "num_workers"             = { type = "range", minValue = 0, maxValue = var.max_workers, isOptional = true }
    "autoscale.min_workers"   = { type = "range", minValue = 1, maxValue = var.max_workers, isOptional = true }
    "autoscale.max_workers"   = { type = "range", minValue = 1, maxValue = var.max_workers, isOptional = true }
    # ML runtimes with Unity Catalog need dedicated (single-user) access mode;
    # Photon does nothing for Ray or PyTorch.
    "data_security_mode" = { type = "fixed", value = "SINGLE_USER" }
    "runtime_engine"     = { type = "fixed", value = "STANDARD" }
    # Ray and MLflow stay silent, as in the local stack (rayml_assets/telemetry.py).
    "spark_env_vars.RAY_USAGE_STATS_ENABLED"  = { type = "fixed", value = "0" }
    "spark_env_vars.MLFLOW_DISABLE_TELEMETRY" = { type = "fixed", value = "true" }
    "custom_tags.environment"                 = { type = "fixed", value = var.tags["environment"] }
  }
}

# CPU jobs (ingestion, cleaning, drift) start from warm VMs; GPU training picks
# its node type instead, as a pool fixes one.
resource "databricks_instance_pool" "cpu" {
  instance_pool_name                    = "${var.name_prefix}-cpu"
  node_type_id                          = var.cpu_node_type_ids[0]
  min_idle_instances                    = var.pool_min_idle_instances
  max_capacity                          = var.pool_max_capacity
  idle_instance_autotermination_minutes = 15
  preloaded_spark_versions              = [replace(var.spark_version, "-gpu-ml-", "-cpu-ml-")]
  custom_tags                           = var.tags

  azure_attributes {
    availability       = var.spot_instances ? "SPOT_AZURE" : "ON_DEMAND_AZURE"
    spot_bid_max_price = -1
  }

  lifecycle {
    precondition {
      condition     = var.pool_max_capacity > var.max_workers
      error_message = "pool_max_capacity must exceed max_workers: the driver comes from the pool too."
    }
  }
}

resource "databricks_cluster_policy" "ml_jobs" {
  name       = "${var.name_prefix}-ml-jobs"
  definition = jsonencode(local.policy)
}

# A one-task job that proves a GPU cluster built under the policy starts Ray on
# Spark and sees its GPUs: run it after each apply.
resource "databricks_workspace_file" "ray_smoke" {
  path   = "${local.workspace_dir}/checks/ray_smoke.py"
  source = "${path.module}/files/ray_smoke.py"
}

resource "databricks_job" "ray_smoke" {
  name = "${var.name_prefix}-ray-smoke"

  job_cluster {
    job_cluster_key = "gpu"

    new_cluster {
      policy_id                   = databricks_cluster_policy.ml_jobs.id
      apply_policy_default_values = true
      spark_version               = var.spark_version
      node_type_id                = var.gpu_node_type_ids[0]
      num_workers                 = 1
    }
  }

  task {
    task_key        = "ray_smoke"
    job_cluster_key = "gpu"

    spark_python_task {
      python_file = databricks_workspace_file.ray_smoke.path
      source      = "WORKSPACE"
    }
  }
}
