"""The monitoring jobs the production and feedback sensors, the schedule and backfills launch."""

from dagster import AssetSelection, DefaultScheduleStatus, build_schedule_from_partitioned_job, define_asset_job

from rayml_assets.defs.common import keys

# Partitioning is inferred from the (daily) assets selected.
production_job = define_asset_job(
    "production_job",
    selection=AssetSelection.assets(keys.PREDICTIONS, keys.DATA_DRIFT_REPORT),
    description="A day's predictions and data drift (requested by production_sensor).",
)
feedback_job = define_asset_job(
    "feedback_job",
    selection=AssetSelection.assets(keys.PREDICTIONS, keys.MODEL_DRIFT_REPORT),
    description="A day's model drift, with its predictions when they are missing (requested by feedback_sensor).",
)
daily_monitoring_job = define_asset_job(
    "daily_monitoring_job",
    selection=AssetSelection.assets(keys.PREDICTIONS, keys.DATA_DRIFT_REPORT, keys.MODEL_DRIFT_REPORT),
    description="All monitoring of one day: the schedule's and backfills' job.",
)

# Stopped by default: production_sensor and feedback_sensor already request each day as its files
# land, so a running schedule would compute every day twice. Start it where landings are not watched.
daily_monitoring_schedule = build_schedule_from_partitioned_job(
    daily_monitoring_job,
    name="daily_monitoring_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description="At 02:00 UTC, run predictions and both drift reports for the day that just ended.",
)
