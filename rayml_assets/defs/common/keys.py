"""Every asset key, declared once: the asset decorators, jobs and sensors all name these.

Keys of assets stored as Delta tables are the table names of ``lib.common.tables``.
"""

from dagster import AssetKey

from rayml_assets.lib.common import tables

RAW_IMAGES = AssetKey(tables.RAW_IMAGES)
CLEANED_IMAGES = AssetKey(tables.CLEANED_IMAGES)
TUNED_MODEL = AssetKey("tuned_model")
REGISTERED_MODEL = AssetKey("registered_model")
CHAMPION_MODEL = AssetKey("champion_model")
PREDICTIONS = AssetKey(tables.PREDICTIONS)
DATA_DRIFT_REPORT = AssetKey("data_drift_report")
MODEL_DRIFT_REPORT = AssetKey("model_drift_report")
SHAP_REPORT = AssetKey("shap_report")
# Where data enters: external assets, observed by the sensors that watch them.
IMAGE_LANDING = AssetKey("image_landing")
PRODUCTION_LANDING = AssetKey("production_landing")
FEEDBACK_LANDING = AssetKey("feedback_landing")
