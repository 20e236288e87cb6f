# Remote state of sit, in its own storage account; Entra ID auth, no access keys.
terraform {
  backend "azurerm" {
    resource_group_name  = "rayml-sit-tfstate-rg"
    storage_account_name = "raymlsittfstate"
    container_name       = "tfstate"
    key                  = "rayml-sit.tfstate"
    use_azuread_auth     = true
  }
}
