output "policy_id" {
  description = "ID of the cluster policy every rayml job cluster runs under."
  value       = databricks_cluster_policy.ml_jobs.id
}

output "instance_pool_id" {
  description = "ID of the CPU instance pool."
  value       = databricks_instance_pool.cpu.id
}

output "job_ids" {
  description = "IDs of the jobs this module defines, keyed by purpose."
  value       = { ray-smoke = databricks_job.ray_smoke.id }
}

output "compute" {
  description = "Cluster settings the rayml profile needs (DatabricksSettings)."
  value = {
    spark_version    = var.spark_version
    gpu_node_type_id = var.gpu_node_type_ids[0]
    cpu_node_type_id = var.cpu_node_type_ids[0]
    max_workers      = var.max_workers
    policy_id        = databricks_cluster_policy.ml_jobs.id
    instance_pool_id = databricks_instance_pool.cpu.id
  }
}
