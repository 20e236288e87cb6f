"""A light code location for the daemon tests: the real landing sensor and raw_images, plus a daily probe.

``rayml_assets.definitions`` imports torch, MLflow and Ray (about 15 s of CPU per
process, and every run is a new process). This location loads in a few seconds,
so the restart and backfill tests exercise the real mechanism in little time.
"""

from dagster import AssetExecutionContext, Definitions, MaterializeResult, asset, in_process_executor

from rayml_assets.defs.dataset.jobs import ingest_landing_job
from rayml_assets.defs.dataset.sensors import landing_sensor
from rayml_assets.defs.dataset.assets import raw_images
from rayml_assets.defs.common.partitions import DAILY
from rayml_assets.resources.storage import DatasetPolicy, LakeResource, LandingResource
from rayml_assets.settings import load_profile


@asset(partitions_def=DAILY)
def daily_probe(context: AssetExecutionContext) -> MaterializeResult:
    """Stands in for the daily drift reports in the backfill test: same partitions, no model needed."""
    return MaterializeResult(metadata={"day": context.partition_key, "is_drift": False})


profile = load_profile()
defs = Definitions(
    assets=[raw_images, daily_probe],
    jobs=[ingest_landing_job],
    sensors=[landing_sensor],
    executor=in_process_executor,  # one process per run, not one more per step: halves a run's start-up
    resources={
        "lake_store": LakeResource(lake_root=profile.lake_root),
        "landing": LandingResource(
            images_uri=profile.landing_uri,
            production_uri=profile.production_landing_uri,
            feedback_uri=profile.feedback_landing_uri,
        ),
        "dataset_policy": DatasetPolicy(taxonomy=profile.taxonomy),
    },
)
