# Remote state of uat, in its own storage account (root/backend.tf adds Entra ID auth, no access keys).
#   terraform -chdir=terraform/root init -reconfigure -backend-config=../envs/uat/backend.hcl
resource_group_name  = "rayml-uat-tfstate-rg"
storage_account_name = "raymluattfstate"
container_name       = "tfstate"
key                  = "rayml-uat.tfstate"
