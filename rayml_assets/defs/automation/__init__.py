"""Sensors, schedules and the jobs they launch.

``defs`` holds everything. Its parts exist so the code location can register
what already resolves: a job resolves only once its assets are defined.
"""

from dagster import Definitions

from rayml_assets.defs.automation import jobs
from rayml_assets.defs.automation.schedules import daily_monitoring_schedule
from rayml_assets.defs.automation.sensors import (
    drift_retrain_sensor,
    feedback_sensor,
    landing_sensor,
    production_sensor,
)

# Targets raw_images, cleaned_images, tuned_model, registered_model.
training_side_defs = Definitions(
    jobs=[jobs.ingest_landing_job, jobs.retrain_job],
    sensors=[landing_sensor, drift_retrain_sensor],
)
# Targets predictions, data_drift_report, model_drift_report.
monitoring_side_defs = Definitions(
    jobs=[jobs.production_job, jobs.feedback_job, jobs.daily_monitoring_job],
    sensors=[production_sensor, feedback_sensor],
    schedules=[daily_monitoring_schedule],
)
defs = Definitions.merge(training_side_defs, monitoring_side_defs)
