# Remote state of prod, in its own storage account (root/backend.tf adds Entra ID auth, no access keys).
#   terraform -chdir=terraform/root init -reconfigure -backend-config=../envs/prod/backend.hcl
resource_group_name  = "rayml-prod-tfstate-rg"
storage_account_name = "raymlprodtfstate"
container_name       = "tfstate"
key                  = "rayml-prod.tfstate"
