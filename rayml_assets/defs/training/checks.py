"""The promotion gate: a challenger below the minimum accuracy blocks champion_model."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from rayml_assets.defs.common.lineage import upstream_metadata
from rayml_assets.defs.training.assets import registered_model, tuned_model


@asset_check(
    asset=registered_model,
    blocking=True,
    description="The challenger's test accuracy reaches min_accuracy; blocks the champion alias from moving",
)
def challenger_meets_min_accuracy(context: AssetCheckExecutionContext) -> AssetCheckResult:
    meta = upstream_metadata(context, registered_model.key)
    accuracy, minimum = float(meta["test_accuracy"]), float(meta["min_accuracy"])
    return AssetCheckResult(
        passed=accuracy >= minimum,
        severity=AssetCheckSeverity.ERROR,
        metadata={"test_accuracy": accuracy, "min_accuracy": minimum, "model_version": meta["model_version"]},
    )


@asset_check(asset=tuned_model, description="Every trial finished without an error")
def no_failed_trials(context: AssetCheckExecutionContext) -> AssetCheckResult:
    meta = upstream_metadata(context, tuned_model.key)
    errored = int(meta.get("trials_errored", 0))
    return AssetCheckResult(
        passed=errored == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"trials_errored": errored, "trials_run": int(meta["trials_run"])},
    )
