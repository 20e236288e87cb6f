"""The training assets' checks, evaluated inside their asset's step from the metadata it reports.

- ``challenger_beats_baseline`` (blocking) on ``registered_model``: the challenger's test
  accuracy beats the better classical baseline (logistic regression, SVC, fitted on the same
  pinned train split and scored on the same test rows) by ``baseline_margin``, and reaches
  ``min_accuracy`` when one is set (:func:`~rayml_assets.lib.training.promotion.passes_gate`).
  A failure fails the step, so ``champion_model`` does not run and the ``champion`` alias
  stays where it is.
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
from rayml_assets.lib.training.promotion import passes_gate

CHALLENGER_BEATS_BASELINE = AssetCheckSpec(
    "challenger_beats_baseline",
    asset=keys.REGISTERED_MODEL,
    blocking=True,
    description="Gates the champion alias: the challenger's test accuracy must beat the better classical "
    "baseline (logistic regression or SVC on the same splits) by baseline_margin, and reach min_accuracy "
    "when set; otherwise champion_model does not run and the alias stays",
)
NO_FAILED_TRIALS = AssetCheckSpec(
    "no_failed_trials", asset=keys.TUNED_MODEL, description="Every trial finished without an error"
)


def _challenger_beats_baseline(meta: Mapping[str, Any]) -> AssetCheckResult:
    accuracy, baseline, margin = (float(meta[k]) for k in ("test_accuracy", "baseline_accuracy", "baseline_margin"))
    floor = float(meta["min_accuracy"]) if "min_accuracy" in meta else None  # absent: no floor
    shown = {"min_accuracy": floor} if floor is not None else {}
    return AssetCheckResult(
        asset_key=CHALLENGER_BEATS_BASELINE.asset_key,
        check_name=CHALLENGER_BEATS_BASELINE.name,
        passed=passes_gate(accuracy, baseline, margin, floor),
        severity=AssetCheckSeverity.ERROR,
        description=str(meta["decision"]),
        metadata={
            "test_accuracy": accuracy,
            "baseline_model": str(meta["baseline_model"]),
            "baseline_accuracy": baseline,
            "baseline_lift": accuracy - baseline,
            "baseline_margin": margin,
            **shown,
            "model_version": meta["model_version"],
        },
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
    CHALLENGER_BEATS_BASELINE.key: _challenger_beats_baseline,
    NO_FAILED_TRIALS.key: _no_failed_trials,
}


def check_results(context: AssetExecutionContext, metadata: Mapping[str, Any]) -> list[AssetCheckResult]:
    """The results of the checks this step runs (those the run selected), from its asset's metadata."""
    values = {k: (v.value if isinstance(v, MetadataValue) else v) for k, v in metadata.items()}
    return [evaluate(values) for key, evaluate in _EVALUATE.items() if key in context.selected_asset_check_keys]
