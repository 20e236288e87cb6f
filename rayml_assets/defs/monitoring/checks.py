"""Warnings a person should see on the drift reports (non-blocking: a drifted day still gets reported).

The checks read only the report's own metadata, so they are ``check_specs`` of
``data_drift_report`` and ``model_drift_report`` and evaluated inside the
asset's step from the task script's materialize result: no extra step, and no
read-back of the materialization from the instance.
"""

from __future__ import annotations

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MaterializeResult,
    MetadataValue,
)

from rayml_assets.defs.common import keys

NO_DATA_DRIFT = AssetCheckSpec(
    "no_data_drift",
    asset=keys.DATA_DRIFT_REPORT,
    description="Warns when the production data drifted from the training data",
)
NO_MODEL_DEGRADATION = AssetCheckSpec(
    "no_model_degradation",
    asset=keys.MODEL_DRIFT_REPORT,
    description="Warns when accuracy from feedback degraded against the test split",
)
# What each check warns about, in its description.
WHAT = {NO_DATA_DRIFT.key: "data drift", NO_MODEL_DEGRADATION.key: "model degradation"}


def drift_check(spec: AssetCheckSpec, metadata: dict) -> AssetCheckResult:
    """The check of one report: drift on any day is a warning; the days and the p-value are in its metadata."""
    what = WHAT[spec.key]
    if "drift_days" in metadata:  # a range: every day that drifted
        drift_days = metadata.get("drift_days")
    else:
        drift_days = [metadata.get("date")] if metadata.get("is_drift") else []
    return AssetCheckResult(
        check_name=spec.name,
        passed=not drift_days,
        severity=AssetCheckSeverity.WARN,
        description=f"{what} on {', '.join(map(str, drift_days))}" if drift_days else f"no {what}",
        metadata={"drift_days": MetadataValue.json(drift_days), "p_value": float(metadata.get("p_value", 1.0) or 1.0)},
    )


def with_drift_check(spec: AssetCheckSpec, result: MaterializeResult) -> MaterializeResult:
    """``result`` plus ``spec``'s check result computed from its metadata.

    The reports are not subsettable, so their check is always selected with them.
    """
    metadata = {k: (v.value if isinstance(v, MetadataValue) else v) for k, v in (result.metadata or {}).items()}
    return MaterializeResult(
        asset_key=result.asset_key,
        metadata=result.metadata,
        check_results=[*result.check_results, drift_check(spec, metadata)],
        data_version=result.data_version,
        tags=result.tags,
    )
