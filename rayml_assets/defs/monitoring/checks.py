"""Warnings a person should see on the monitoring assets (non-blocking: a drifted day still gets reported)."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from rayml_assets.defs.common.lineage import upstream_metadata
from rayml_assets.defs.monitoring.assets import data_drift_report, model_drift_report


def _drift_check(context: AssetCheckExecutionContext, key, what: str) -> AssetCheckResult:
    meta = upstream_metadata(context, key)
    drift_days = meta.get("drift_days") if "drift_days" in meta else ([meta.get("date")] if meta.get("is_drift") else [])
    return AssetCheckResult(
        passed=not drift_days,
        severity=AssetCheckSeverity.WARN,
        description=f"{what} on {', '.join(map(str, drift_days))}" if drift_days else f"no {what}",
        metadata={"drift_days": MetadataValue.json(drift_days), "p_value": float(meta.get("p_value", 1.0) or 1.0)},
    )


@asset_check(asset=data_drift_report, description="Warns when the production data drifted from the training data")
def no_data_drift(context: AssetCheckExecutionContext) -> AssetCheckResult:
    return _drift_check(context, data_drift_report.key, "data drift")


@asset_check(asset=model_drift_report, description="Warns when accuracy from feedback degraded against the test split")
def no_model_degradation(context: AssetCheckExecutionContext) -> AssetCheckResult:
    return _drift_check(context, model_drift_report.key, "model degradation")
