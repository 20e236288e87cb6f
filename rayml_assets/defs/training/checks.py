"""The training assets' checks, evaluated inside their asset's step from the metadata it reports.

- ``challenger_meets_min_accuracy`` (blocking) on ``registered_model``: the challenger's
  test accuracy reaches ``min_accuracy``. A failure fails the step, so ``champion_model``
  does not run and the ``champion`` alias stays where it is.
- ``no_failed_trials`` (warning) on ``tuned_model``: every trial finished without an error.

Both read nothing but their asset's own metadata, so they are ``check_specs`` of the
asset (no extra step, no read-back of the materialization from the instance).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
)

from rayml_assets.defs.common import keys

CHALLENGER_MEETS_MIN_ACCURACY = AssetCheckSpec(
    "challenger_meets_min_accuracy",
    asset=keys.REGISTERED_MODEL,
    blocking=True,
    description="The challenger's test accuracy reaches min_accuracy; blocks the champion alias from moving",
)
NO_FAILED_TRIALS = AssetCheckSpec(
    "no_failed_trials", asset=keys.TUNED_MODEL, description="Every trial finished without an error"
)


def _challenger_meets_min_accuracy(meta: Mapping[str, Any]) -> AssetCheckResult:
    accuracy, minimum = float(meta["test_accuracy"]), float(meta["min_accuracy"])
    return AssetCheckResult(
        asset_key=CHALLENGER_MEETS_MIN_ACCURACY.asset_key,
        check_name=CHALLENGER_MEETS_MIN_ACCURACY.name,
        passed=accuracy >= minimum,
        severity=AssetCheckSeverity.ERROR,
        metadata={"test_accuracy": accuracy, "min_accuracy": minimum, "model_version": meta["model_version"]},
    )


def _no_failed_trials(meta: Mapping[str, Any]) -> AssetCheckResult:
    errored = int(meta.get("trials_errored", 0))
    return AssetCheckResult(
        asset_key=NO_FAILED_TRIALS.asset_key,
        check_name=NO_FAILED_TRIALS.name,
        passed=errored == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"trials_errored": errored, "trials_run": int(meta["trials_run"])},
    )


_EVALUATE: dict[AssetCheckKey, Callable[[Mapping[str, Any]], AssetCheckResult]] = {
    CHALLENGER_MEETS_MIN_ACCURACY.key: _challenger_meets_min_accuracy,
    NO_FAILED_TRIALS.key: _no_failed_trials,
}


def check_results(context: AssetExecutionContext, metadata: Mapping[str, Any]) -> list[AssetCheckResult]:
    """The results of the checks this step runs (those the run selected), from its asset's metadata."""
    values = {k: (v.value if isinstance(v, MetadataValue) else v) for k, v in metadata.items()}
    return [evaluate(values) for key, evaluate in _EVALUATE.items() if key in context.selected_asset_check_keys]
