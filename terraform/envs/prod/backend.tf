# Remote state of prod, in its own storage account; Entra ID auth, no access keys.
terraform {
  backend "azurerm" {
    resource_group_name  = "rayml-prod-tfstate-rg"
    storage_account_name = "raymlprodtfstate"
    container_name       = "tfstate"
    key                  = "rayml-prod.tfstate"
    use_azuread_auth     = true
  }
}
