"""Observability: shipping pipeline and training logs to Azure Monitor."""

from rayml_assets.observability.azure_monitor import (
    AzureMonitorHandler,
    attach_to_root_logger,
    azure_monitor_logger,
    dagster_logger_run_config,
    dagster_loggers,
    handler_from_profile,
)

__all__ = [
    "AzureMonitorHandler",
    "attach_to_root_logger",
    "azure_monitor_logger",
    "dagster_logger_run_config",
    "dagster_loggers",
    "handler_from_profile",
]
