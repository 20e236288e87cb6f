"""Asset jobs the sensors and the schedule launch.

Targets are named by ``AssetKey`` so this module does not import the asset
modules: a job only resolves when its assets are in the Definitions.
"""

from dagster import AssetKey, AssetSelection, define_asset_job

RAW_IMAGES = AssetKey("raw_images")
CLEANED_IMAGES = AssetKey("cleaned_images")
TUNED_MODEL = AssetKey("tuned_model")
REGISTERED_MODEL = AssetKey("registered_model")
CHAMPION_MODEL = AssetKey("champion_model")
PREDICTIONS = AssetKey("predictions")
DATA_DRIFT_REPORT = AssetKey("data_drift_report")
MODEL_DRIFT_REPORT = AssetKey("model_drift_report")

ingest_landing_job = define_asset_job(
    "ingest_landing_job",
    selection=AssetSelection.assets(RAW_IMAGES),
    description="Ingest the landing folder into raw_images (requested by landing_sensor).",
    # The sensor also requests files rewritten in place, which only a stat per file finds.
    config={"ops": {RAW_IMAGES.path[-1]: {"config": {"check_every_file": True}}}},
)
retrain_job = define_asset_job(
    "retrain_job",
    selection=AssetSelection.assets(CLEANED_IMAGES, TUNED_MODEL, REGISTERED_MODEL, CHAMPION_MODEL),
    description="Re-clean, re-tune and register a challenger, which champion_model promotes if it wins "
    "(requested by drift_retrain_sensor).",
)
# Partitioning is inferred from the (daily) assets selected.
production_job = define_asset_job(
    "production_job",
    selection=AssetSelection.assets(PREDICTIONS, DATA_DRIFT_REPORT),
    description="A day's predictions and data drift (requested by production_sensor).",
)
feedback_job = define_asset_job(
    "feedback_job",
    selection=AssetSelection.assets(PREDICTIONS, MODEL_DRIFT_REPORT),
    description="A day's model drift, with its predictions when they are missing (requested by feedback_sensor).",
)
daily_monitoring_job = define_asset_job(
    "daily_monitoring_job",
    selection=AssetSelection.assets(PREDICTIONS, DATA_DRIFT_REPORT, MODEL_DRIFT_REPORT),
    description="All monitoring of one day: the schedule's and backfills' job.",
)
