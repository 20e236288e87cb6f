# uat: production-like network and access, half-size compute, zone-redundant storage.
project     = "rayml"
environment = "uat"
location    = "westeurope"

vnet_address_space         = "10.20.0.0/20"
storage_replication_type   = "ZRS"
soft_delete_retention_days = 14
storage_cmk_enabled        = false
log_retention_days         = 60
log_daily_quota_gb         = 10

spark_version           = "18.0.x-gpu-ml-scala2.13"
gpu_node_type_ids       = ["Standard_NC6s_v3"]
cpu_node_type_ids       = ["Standard_DS3_v2", "Standard_DS4_v2"]
max_workers             = 4
pool_min_idle_instances = 0
pool_max_capacity       = 5
spot_instances          = false

# Replace with your office/VPN and CI egress ranges (documentation range here).
allowed_ip_ranges = ["203.0.113.0/24"]

# Replace with the public egress of the Dagster deployment (documentation range here):
# allowed on the lake account and the workspace. [] keeps the lake private-endpoint only.
orchestrator_ip_ranges = ["198.51.100.0/28"]

group_members = {
  data_engineers = ["data-team@rayml.example"]
  ml_engineers   = ["ml-team@rayml.example"]
  viewers        = ["business-owners@rayml.example"]
}
