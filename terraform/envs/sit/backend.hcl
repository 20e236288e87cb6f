# Remote state of sit, in its own storage account (root/backend.tf adds Entra ID auth, no access keys).
#   terraform -chdir=terraform/root init -reconfigure -backend-config=../envs/sit/backend.hcl
resource_group_name  = "rayml-sit-tfstate-rg"
storage_account_name = "raymlsittfstate"
container_name       = "tfstate"
key                  = "rayml-sit.tfstate"
