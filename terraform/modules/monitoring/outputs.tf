output "logs_ingestion_endpoint" {
  description = "Logs ingestion URL of the data collection endpoint."
  value       = azurerm_monitor_data_collection_endpoint.this.logs_ingestion_endpoint
}

output "data_collection_rule_id" {
  description = "Resource ID of the data collection rule (scope of the publisher role)."
  value       = azurerm_monitor_data_collection_rule.logs.id
}

output "data_collection_rule_immutable_id" {
  description = "Immutable ID of the data collection rule, the rule_id of the Logs Ingestion API."
  value       = azurerm_monitor_data_collection_rule.logs.immutable_id
}

output "stream_name" {
  description = "Stream the pipeline's logs are sent to."
  value       = local.stream_name
}
