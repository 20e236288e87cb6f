"""The Dagster side of log shipping: a run logger for ``Definitions(loggers=...)``.

Apart from :mod:`azure_monitor` because the task scripts attach its handler on a cluster,
where dagster is not installed (the cluster dependency set).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import dagster

from rayml_assets.observability.azure_monitor import AzureMonitorHandler

if TYPE_CHECKING:
    from rayml_assets.settings import Profile


@dagster.logger(
    config_schema={
        "endpoint": dagster.Field(str, description="Logs ingestion URL of the data collection endpoint."),
        "rule_id": dagster.Field(str, description="Immutable ID of the data collection rule."),
        "stream_name": dagster.Field(str, description="Stream declared by the rule, e.g. Custom-RaymlLogs_CL."),
        "environment": dagster.Field(str, is_required=False, default_value=""),
        "batch_size": dagster.Field(int, is_required=False, default_value=500),
        "buffer_size": dagster.Field(int, is_required=False, default_value=10_000),
        "log_level": dagster.Field(str, is_required=False, default_value="INFO"),
    },
    description="Ships the run's logs to Azure Monitor through the Logs Ingestion API.",
)
def azure_monitor_logger(init_context: dagster.InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    run_logger = logging.Logger("rayml_assets.azure_monitor", level=config["log_level"].upper())
    # The logging module closes (and so flushes) every handler at interpreter exit.
    run_logger.addHandler(
        AzureMonitorHandler(
            config["endpoint"],
            config["rule_id"],
            config["stream_name"],
            environment=config["environment"],
            batch_size=config["batch_size"],
            buffer_size=config["buffer_size"],
        )
    )
    return run_logger


def dagster_loggers(profile: Profile) -> dict[str, dagster.LoggerDefinition]:
    """Loggers for ``Definitions(loggers=...)``: console plus Azure Monitor when the profile has it.

    Empty when the profile ships no logs, so Dagster keeps its default console logger.
    """
    settings = profile.azure_monitor
    if settings is None:
        return {}
    return {
        "console": dagster.colored_console_logger,
        "azure_monitor": azure_monitor_logger.configured({**settings.model_dump(), "environment": profile.name}),
    }


def dagster_logger_run_config(profile: Profile) -> dict[str, Any]:
    """Run config that switches those loggers on.

    Dagster starts only the loggers a run's config names, so jobs, schedules and
    sensors carry this (``define_asset_job(config=...)``, ``RunRequest(run_config=...)``).
    """
    return {"loggers": {name: {} for name in dagster_loggers(profile)}} if profile.azure_monitor else {}
