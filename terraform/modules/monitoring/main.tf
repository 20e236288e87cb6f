locals {
  table_name  = "RaymlLogs_CL"
  stream_name = "Custom-${local.table_name}"
  # One column per field of the records AzureMonitorHandler sends
  # (rayml_assets/observability/azure_monitor.py); a test keeps them in step.
  log_columns = {
    TimeGenerated = "datetime"
    Level         = "string"
    Logger        = "string"
    Message       = "string"
    Environment   = "string"
    Host          = "string"
    ProcessId     = "int"
    RunId         = "string"
    StepKey       = "string"
    Exception     = "string"
  }
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.name_prefix}-logs"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = var.retention_days
  daily_quota_gb      = var.daily_quota_gb
  tags                = var.tags
}

# azurerm cannot create a custom (_CL) table, so it goes through the ARM API.
resource "azapi_resource" "logs_table" {
  type      = "Microsoft.OperationalInsights/workspaces/tables@2022-10-01"
  name      = local.table_name
  parent_id = azurerm_log_analytics_workspace.this.id

  body = {
    properties = {
      plan            = "Analytics"
      retentionInDays = var.retention_days
      schema = {
        name    = local.table_name
        columns = [for name, type in local.log_columns : { name = name, type = type }]
      }
    }
  }
}

resource "azurerm_monitor_data_collection_endpoint" "this" {
  name                = "${var.name_prefix}-dce"
  resource_group_name = var.resource_group_name
  location            = var.location
  # Loggers outside the VNet (the Dagster daemon, CI) ship logs too; every
  # upload still needs an Entra token with Monitoring Metrics Publisher on the rule.
  public_network_access_enabled = true
  tags                          = var.tags
}

resource "azurerm_monitor_data_collection_rule" "logs" {
  name                        = "${var.name_prefix}-logs-dcr"
  resource_group_name         = var.resource_group_name
  location                    = var.location
  data_collection_endpoint_id = azurerm_monitor_data_collection_endpoint.this.id
  tags                        = var.tags

  destinations {
    log_analytics {
      name                  = "logs"
      workspace_resource_id = azurerm_log_analytics_workspace.this.id
    }
  }

  stream_declaration {
    stream_name = local.stream_name

    dynamic "column" {
      for_each = local.log_columns

      content {
        name = column.key
        type = column.value
      }
    }
  }

  data_flow {
    streams       = [local.stream_name]
    destinations  = ["logs"]
    transform_kql = "source"
    output_stream = local.stream_name
  }

  depends_on = [azapi_resource.logs_table]
}

data "azurerm_monitor_diagnostic_categories" "this" {
  for_each = var.diagnostic_targets

  resource_id = each.value
}

# Every log category and metric each target offers goes to the workspace.
resource "azurerm_monitor_diagnostic_setting" "this" {
  for_each = var.diagnostic_targets

  name                       = "${var.name_prefix}-${each.key}-diag"
  target_resource_id         = each.value
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  dynamic "enabled_log" {
    for_each = data.azurerm_monitor_diagnostic_categories.this[each.key].log_category_types

    content {
      category = enabled_log.value
    }
  }

  dynamic "enabled_metric" {
    for_each = data.azurerm_monitor_diagnostic_categories.this[each.key].metrics

    content {
      category = enabled_metric.value
    }
  }
}
