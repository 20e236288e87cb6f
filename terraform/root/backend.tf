# Partial backend: each environment's state location comes from envs/<env>/backend.hcl
#   terraform -chdir=terraform/root init -reconfigure -backend-config=../envs/<env>/backend.hcl
# Entra ID auth is fixed here so no environment can fall back to storage account keys.
terraform {
  backend "azurerm" {
    use_azuread_auth = true
  }
}
