"""Production and feedback sensors: a day's landed files request that day's monitoring (docs/automation.md)."""

from __future__ import annotations

from dagster import RunRequest, SensorEvaluationContext, SensorResult

from rayml_assets.defs.common import keys
from rayml_assets.defs.common.file_sensor import MakeRequest, file_sensor, file_tags, watching_sensor
from rayml_assets.defs.common.partitions import DAILY
from rayml_assets.defs.monitoring.jobs import feedback_job, production_job
from rayml_assets.lib.monitoring.production import IMAGE_SUFFIXES, ProductionLandingError, partition_key
from rayml_assets.resources.storage import LandingResource


def _day(name: str) -> tuple[str | None, str | None]:
    try:
        key = partition_key(name)
    except ProductionLandingError:
        return None, f"{name!r} is not a YYYY-MM-DD day"
    if key < DAILY.get_first_partition_key():
        return None, f"{name!r} is before the first partition {DAILY.get_first_partition_key()}"
    return key, None


def production_day(path: str) -> tuple[str | None, str | None]:
    """``2026-01-05/x.png`` → the day; other files in a day folder are ignored."""
    top, sep, _ = path.partition("/")
    if not sep:
        return None, f"{path!r} is not inside a YYYY-MM-DD/ folder"
    key, problem = _day(top)
    if key is None or not path.lower().endswith(IMAGE_SUFFIXES):
        return None, problem
    return key, None


def feedback_day(path: str) -> tuple[str | None, str | None]:
    """``2026-01-05.csv`` → the day."""
    if "/" in path or not path.endswith(".csv"):
        return None, f"{path!r} is not a top-level YYYY-MM-DD.csv"
    return _day(path.removesuffix(".csv"))


@watching_sensor(
    production_job,
    "Images in a production YYYY-MM-DD/ folder request that day's predictions and data_drift_report, "
    "once the day has ended (a daily partition exists from the next day on).",
)
def production_sensor(context: SensorEvaluationContext, landing: LandingResource) -> SensorResult:
    return file_sensor(
        context,
        landing.production_uri,
        production_day,
        production_job.name,
        lambda day, files: RunRequest(run_key=f"production:{day}:{files.key}", partition_key=day, tags=file_tags(files)),
        keys.PRODUCTION_LANDING,
        storage=landing.storage_settings(),
    )


def _feedback_request(context: SensorEvaluationContext) -> MakeRequest:
    def make(day: str, files: FileSet) -> RunRequest:
        have_predictions = day in context.instance.get_materialized_partitions(keys.PREDICTIONS)
        return RunRequest(
            run_key=f"feedback:{day}:{files.key}",
            partition_key=day,
            asset_selection=[keys.MODEL_DRIFT_REPORT] if have_predictions else [keys.PREDICTIONS, keys.MODEL_DRIFT_REPORT],
            tags=file_tags(files),
        )

    return make


@watching_sensor(
    feedback_job,
    "A new or changed feedback YYYY-MM-DD.csv requests that day's model_drift_report "
    "(and its predictions, when that partition was never materialized).",
)
def feedback_sensor(context: SensorEvaluationContext, landing: LandingResource) -> SensorResult:
    return file_sensor(
        context, landing.feedback_uri, feedback_day, feedback_job.name, _feedback_request(context), keys.FEEDBACK_LANDING,
        storage=landing.storage_settings(),
    )


