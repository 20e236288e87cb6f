"""rayml_assets: an image-classification ML platform as a Dagster asset graph."""

from rayml_assets.telemetry import disable_telemetry

disable_telemetry()
