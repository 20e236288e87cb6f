"""The daily monitoring schedule: yesterday's partition of every monitoring asset."""

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from rayml_assets.defs.automation.jobs import daily_monitoring_job

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
