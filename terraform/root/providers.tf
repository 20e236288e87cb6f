terraform {
  required_version = ">= 1.6"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.31"
    }
    azuread = {
      source  = "hashicorp/azuread"
      version = "~> 3.0"
    }
    azapi = {
      source  = "Azure/azapi"
      version = "~> 2.0"
    }
    databricks = {
      source  = "databricks/databricks"
      version = "~> 1.60"
    }
  }
}

# The subscription comes from ARM_SUBSCRIPTION_ID, credentials from the Azure
# CLI or ARM_* variables; nothing secret lives in this repository.
provider "azurerm" {
  # Shared keys are disabled on the lake account, so storage calls use Entra ID.
  storage_use_azuread = true

  features {
    key_vault {
      # Purge protection is on: a deleted vault must wait out its retention.
      purge_soft_delete_on_destroy = false
    }
  }
}

provider "azuread" {}

provider "azapi" {}

# Workspace-level provider; Entra ID auth (Azure CLI or ARM_* variables) is
# required to create the Key Vault-backed secret scope.
provider "databricks" {
  host                        = module.workspace.workspace_url
  azure_workspace_resource_id = module.workspace.workspace_id
}
