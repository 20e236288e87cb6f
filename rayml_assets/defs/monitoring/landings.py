"""Where monitoring data enters: the production and feedback landings, observed by their sensors."""

from dagster import AssetSpec

from rayml_assets.defs.common import keys

production_landing = AssetSpec(
    keys.PRODUCTION_LANDING,
    group_name="monitoring",
    kinds={"files"},
    description="Production images, one YYYY-MM-DD/ folder per day (the landing resource's production_uri). "
    "production_sensor records what it finds as observations.",
)
feedback_landing = AssetSpec(
    keys.FEEDBACK_LANDING,
    group_name="monitoring",
    kinds={"files"},
    description="Feedback labels, one YYYY-MM-DD.csv per day (the landing resource's feedback_uri). "
    "feedback_sensor records what it finds as observations.",
)
