from dagster import Definitions

from rayml_assets.defs.training import assets, checks

defs = Definitions(
    assets=[assets.tuned_model, assets.registered_model, assets.champion_model],
    asset_checks=[checks.challenger_meets_min_accuracy, checks.no_failed_trials],
)
