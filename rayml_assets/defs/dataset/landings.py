"""Where the images enter: the landing, observed by landing_sensor, upstream of raw_images."""

from dagster import AssetSpec

from rayml_assets.defs.common import keys

image_landing = AssetSpec(
    keys.IMAGE_LANDING,
    group_name="dataset",
    kinds={"files"},
    description="Labelled images as <label>/<file> folders or a uri,label manifest (the landing resource's "
    "images_uri). landing_sensor records what it finds as observations.",
)
