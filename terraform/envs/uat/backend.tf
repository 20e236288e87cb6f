# Remote state of uat, in its own storage account; Entra ID auth, no access keys.
terraform {
  backend "azurerm" {
    resource_group_name  = "rayml-uat-tfstate-rg"
    storage_account_name = "raymluattfstate"
    container_name       = "tfstate"
    key                  = "rayml-uat.tfstate"
    use_azuread_auth     = true
  }
}
