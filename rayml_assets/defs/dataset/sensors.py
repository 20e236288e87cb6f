"""The landing sensor: new or changed landed images request raw_images (docs/automation.md)."""

from __future__ import annotations

from dagster import RunRequest, SensorEvaluationContext, SensorResult

from rayml_assets.defs.common import keys
from rayml_assets.defs.common.file_sensor import file_sensor, file_tags, watching_sensor
from rayml_assets.defs.dataset.jobs import ingest_landing_job
from rayml_assets.resources.storage import LandingResource

WHOLE_LANDING = ""  # the landing sensor's single pending key


@watching_sensor(
    ingest_landing_job,
    "New or changed files in the image landing request raw_images (which ingests the whole landing).",
)
def landing_sensor(context: SensorEvaluationContext, landing: LandingResource) -> SensorResult:
    return file_sensor(
        context,
        landing.images_uri,
        lambda path: (WHOLE_LANDING, None),
        ingest_landing_job.name,
        lambda _, files: RunRequest(run_key=f"landing:{files.key}", tags=file_tags(files)),
        keys.IMAGE_LANDING,
        run_reads_everything=True,  # raw_images ingests the whole landing
        storage=landing.storage_settings(),
    )


