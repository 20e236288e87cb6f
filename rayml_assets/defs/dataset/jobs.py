"""The job the landing sensor launches."""

from dagster import AssetSelection, define_asset_job

from rayml_assets.defs.common import keys

ingest_landing_job = define_asset_job(
    "ingest_landing_job",
    selection=AssetSelection.assets(keys.RAW_IMAGES),
    description="Ingest the landing folder into raw_images (requested by landing_sensor).",
    # The sensor also requests files rewritten in place, which only a stat per file finds.
    config={"ops": {keys.RAW_IMAGES.path[-1]: {"config": {"check_every_file": True}}}},
)
