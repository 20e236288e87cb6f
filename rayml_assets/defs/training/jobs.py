"""The job drift_retrain_sensor launches."""

from dagster import AssetSelection, define_asset_job

from rayml_assets.defs.common import keys

retrain_job = define_asset_job(
    "retrain_job",
    selection=AssetSelection.assets(keys.CLEANED_IMAGES, keys.TUNED_MODEL, keys.REGISTERED_MODEL, keys.CHAMPION_MODEL),
    description="Re-clean, re-tune and register a challenger, which champion_model promotes if it wins "
    "(requested by drift_retrain_sensor).",
)
