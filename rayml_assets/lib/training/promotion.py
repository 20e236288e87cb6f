"""The promotion rules, as pure functions, and the one alias move they allow. No MLflow imported here.

- :func:`beats_baseline`: the challenger beats the better classical baseline, strictly and by a margin;
- :func:`meets_floor`: the optional absolute floor ``min_accuracy``;
- :func:`passes_gate`: both, the blocking check on ``registered_model``, whatever the champion's accuracy;
- :func:`should_promote`: the challenger beats the champion, strictly and by a margin;
- :func:`decide_promotion`: the gate and the champion together, with a reason a person can read;
- :func:`promote`: moves the ``champion`` alias when the decision says so.

A challenger that fails the gate is never promoted, so a model no better than the baseline
never becomes champion, even if ``champion_model`` runs without the check. Both the check and
``champion_model`` run in the Dagster process, so this module stays light (MLflow loads only
inside :meth:`MlflowSettings.client`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rayml_assets.lib.common.contract import MlflowSettings

CHALLENGER = "challenger"
CHAMPION = "champion"


def _is_score(accuracy: float | None) -> bool:
    return accuracy is not None and not math.isnan(accuracy)


def _check_margin(name: str, margin: float) -> None:
    if margin < 0:
        raise ValueError(f"{name} must be >= 0, got {margin}")


def should_promote(challenger_acc: float, champion_acc: float | None, margin: float = 0.0) -> bool:
    """True when the challenger beats the champion by at least ``margin`` (and strictly).

    No champion yet means there is nothing to beat. NaN never wins.
    """
    _check_margin("promotion_margin", margin)
    if not _is_score(challenger_acc):
        return False
    if champion_acc is None:
        return True
    if math.isnan(champion_acc):
        return True  # a champion that cannot be scored is no bar
    return challenger_acc > champion_acc and challenger_acc - champion_acc >= margin


def beats_baseline(challenger_acc: float, baseline_acc: float, margin: float = 0.0) -> bool:
    """True when the challenger beats the baseline by at least ``margin`` (and strictly).

    Unlike a champion, a baseline that has no score is no pass: nothing shows the challenger is better.
    """
    _check_margin("baseline_margin", margin)
    if not (_is_score(challenger_acc) and _is_score(baseline_acc)):
        return False
    return challenger_acc > baseline_acc and challenger_acc - baseline_acc >= margin


def meets_floor(accuracy: float | None, min_accuracy: float | None = None) -> bool:
    """The optional absolute floor; ``None``: no floor (a NaN accuracy still fails)."""
    return _is_score(accuracy) and (min_accuracy is None or accuracy >= min_accuracy)


def passes_gate(
    challenger_acc: float, baseline_acc: float, baseline_margin: float = 0.0, min_accuracy: float | None = None
) -> bool:
    """The blocking gate: beats the better baseline by ``baseline_margin`` and meets the floor, if any."""
    return beats_baseline(challenger_acc, baseline_acc, baseline_margin) and meets_floor(challenger_acc, min_accuracy)


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    gate_passed: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None
    baseline_model: str
    baseline_accuracy: float
    promotion_margin: float
    baseline_margin: float
    min_accuracy: float | None

    @property
    def baseline_lift(self) -> float:
        """Challenger minus the better baseline (negative: the baseline is better)."""
        return self.challenger_accuracy - self.baseline_accuracy


def decide_promotion(
    challenger_acc: float,
    champion_acc: float | None,
    *,
    baseline_model: str,
    baseline_accuracy: float,
    promotion_margin: float = 0.0,
    baseline_margin: float = 0.0,
    min_accuracy: float | None = None,
) -> PromotionDecision:
    """The gate, then the champion, with a reason a person can read in the asset metadata."""
    baseline = f"baseline {baseline_model} {baseline_accuracy:.4f}"
    lift = challenger_acc - baseline_accuracy
    gate_passed = passes_gate(challenger_acc, baseline_accuracy, baseline_margin, min_accuracy)
    if not beats_baseline(challenger_acc, baseline_accuracy, baseline_margin):
        reason = (
            f"fails the gate: test accuracy {challenger_acc:.4f} does not beat {baseline} "
            f"by baseline_margin {baseline_margin:.4f} (lift {lift:+.4f})"
        )
    elif not meets_floor(challenger_acc, min_accuracy):
        reason = f"fails the gate: test accuracy {challenger_acc:.4f} is below min_accuracy {min_accuracy:.4f}"
    elif not should_promote(challenger_acc, champion_acc, promotion_margin):
        reason = f"beats {baseline} by {lift:.4f} but not champion {champion_acc:.4f} by {promotion_margin:.4f}"
    elif champion_acc is None:
        reason = f"no champion yet; beats {baseline} by {lift:.4f}"
    else:
        gain = challenger_acc - champion_acc
        reason = f"beats champion {champion_acc:.4f} by {gain:.4f} and {baseline} by {lift:.4f}"
    return PromotionDecision(
        promote=gate_passed and should_promote(challenger_acc, champion_acc, promotion_margin),
        gate_passed=gate_passed,
        reason=reason,
        challenger_accuracy=challenger_acc,
        champion_accuracy=champion_acc,
        baseline_model=baseline_model,
        baseline_accuracy=baseline_accuracy,
        promotion_margin=promotion_margin,
        baseline_margin=baseline_margin,
        min_accuracy=min_accuracy,
    )


def promote(settings: MlflowSettings, model_name: str, version: str, decision: PromotionDecision) -> bool:
    """Point ``champion`` at ``version`` if ``decision.promote``; returns whether it moved."""
    if not decision.promote:
        return False
    settings.client().set_registered_model_alias(model_name, CHAMPION, str(version))
    return True
