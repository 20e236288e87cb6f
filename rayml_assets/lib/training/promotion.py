"""The promotion rules, as pure functions, and the one alias move they allow. No MLflow imported here.

- :func:`should_promote`: the challenger beats the champion, strictly and by a margin;
- :func:`passes_gate`: the minimum test accuracy, whatever the champion's;
- :func:`decide_promotion`: both together, with a reason a person can read;
- :func:`promote`: moves the ``champion`` alias when the decision says so.

The ``registered_model`` asset's blocking check gates on the same decision, and
``champion_model`` calls :func:`promote`; both run in the Dagster process, so this
module stays light (MLflow loads only inside :meth:`MlflowSettings.client`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rayml_assets.lib.common.contract import MlflowSettings

CHALLENGER = "challenger"
CHAMPION = "champion"


def should_promote(challenger_acc: float, champion_acc: float | None, margin: float = 0.0) -> bool:
    """True when the challenger beats the champion by at least ``margin`` (and strictly).

    No champion yet means there is nothing to beat. NaN never wins.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if challenger_acc is None or math.isnan(challenger_acc):
        return False
    if champion_acc is None:
        return True
    if math.isnan(champion_acc):
        return True  # a champion that cannot be scored is no bar
    return challenger_acc > champion_acc and challenger_acc - champion_acc >= margin


def passes_gate(accuracy: float | None, min_accuracy: float) -> bool:
    """The minimum-quality gate, whatever the champion's accuracy."""
    return accuracy is not None and not math.isnan(accuracy) and accuracy >= min_accuracy


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None
    margin: float
    min_accuracy: float


def decide_promotion(
    challenger_acc: float, champion_acc: float | None, margin: float = 0.0, min_accuracy: float = 0.0
) -> PromotionDecision:
    """Both rules together, with a reason a person can read in the asset metadata."""
    if not passes_gate(challenger_acc, min_accuracy):
        promote, reason = False, f"test accuracy {challenger_acc:.4f} is below the gate {min_accuracy:.4f}"
    elif not should_promote(challenger_acc, champion_acc, margin):
        promote, reason = False, f"does not beat champion {champion_acc:.4f} by margin {margin:.4f}"
    elif champion_acc is None:
        promote, reason = True, "no champion yet"
    else:
        promote, reason = True, f"beats champion {champion_acc:.4f} by {challenger_acc - champion_acc:.4f}"
    return PromotionDecision(promote, reason, challenger_acc, champion_acc, margin, min_accuracy)


def promote(settings: MlflowSettings, model_name: str, version: str, decision: PromotionDecision) -> bool:
    """Point ``champion`` at ``version`` if ``decision.promote``; returns whether it moved."""
    if not decision.promote:
        return False
    settings.client().set_registered_model_alias(model_name, CHAMPION, str(version))
    return True
