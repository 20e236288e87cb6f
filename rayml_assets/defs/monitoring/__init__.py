from dagster import Definitions

from rayml_assets.defs.monitoring import assets, checks

defs = Definitions(
    assets=[assets.predictions, assets.data_drift_report, assets.model_drift_report, assets.shap_report],
    asset_checks=[checks.no_data_drift, checks.no_model_degradation],
)
