"""Sensors, the daily schedule and the jobs they launch (docs/automation.md)."""

from dagster import Definitions

from rayml_assets.defs.automation import jobs
from rayml_assets.defs.automation.schedules import daily_monitoring_schedule
from rayml_assets.defs.automation.sensors import (
    drift_retrain_sensor,
    feedback_sensor,
    landing_sensor,
    production_sensor,
)

defs = Definitions(
    jobs=[jobs.ingest_landing_job, jobs.retrain_job, jobs.production_job, jobs.feedback_job, jobs.daily_monitoring_job],
    sensors=[landing_sensor, production_sensor, feedback_sensor, drift_retrain_sensor],
    schedules=[daily_monitoring_schedule],
)
