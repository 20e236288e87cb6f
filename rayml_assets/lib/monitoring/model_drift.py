"""Model drift (needs feedback) of one production day against the champion's test accuracy.

A Fisher exact test of the day's correct / incorrect counts against the
champion's correctness on the test split of its pinned dataset version
(``drift_inputs.reference_correctness``), one-sided (``alternative='less'``:
only a drop in accuracy is drift).

As for data drift, the statistic comes from a backend behind a protocol:
:class:`AlibiModelDriftBackend` (alibi-detect's ``FETDrift``, BSL 1.1) or
:class:`ScipyModelDriftBackend` (``scipy.stats.fisher_exact``), chosen by
``DriftConfig.backend``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from rayml_assets.lib.monitoring.contract import DriftConfig
from rayml_assets.lib.monitoring.drift_results import DriftTestResult, ModelDriftResult
from rayml_assets.lib.monitoring.inference import Champion
from rayml_assets.lib.monitoring.production import FeedbackJoin, partition_key

FET_NAME, FET_METHOD = "fet_accuracy", "Fisher exact test on correct/incorrect (less)"


@runtime_checkable
class ModelDriftBackend(Protocol):
    name: str

    def fit(self, reference_correct: np.ndarray) -> None: ...

    def test(self, correct: np.ndarray) -> DriftTestResult: ...


class AlibiModelDriftBackend:
    """alibi-detect's ``FETDrift`` on correct (1) / incorrect (0), one-sided 'less'."""

    name = "alibi"

    def __init__(self, config: DriftConfig):
        self.config = config

    def fit(self, reference_correct: np.ndarray) -> None:
        from alibi_detect.cd import FETDrift

        self.n_reference = len(reference_correct)
        self._fet = FETDrift(reference_correct.astype(np.int64)[:, None], p_val=self.config.p_val, alternative="less")

    def test(self, correct: np.ndarray) -> DriftTestResult:
        out = self._fet.predict(correct.astype(np.int64)[:, None])["data"]
        p = float(out["p_val"][0])
        return DriftTestResult(
            FET_NAME,
            FET_METHOD,
            p,
            self.config.p_val,
            bool(out["is_drift"]),
            float(out["distance"][0]),
            None,
            self.n_reference,
            len(correct),
        )


class ScipyModelDriftBackend:
    """``scipy.stats.fisher_exact`` on the same 2x2 table alibi-detect's FETDrift builds."""

    name = "scipy"

    def __init__(self, config: DriftConfig):
        self.config = config

    def fit(self, reference_correct: np.ndarray) -> None:
        self._ref_correct, self.n_reference = int(reference_correct.sum()), len(reference_correct)

    def test(self, correct: np.ndarray) -> DriftTestResult:
        from scipy.stats import fisher_exact

        n, hits = len(correct), int(correct.sum())
        odds, p = fisher_exact(
            [[hits, self._ref_correct], [n - hits, self.n_reference - self._ref_correct]], alternative="less"
        )
        return DriftTestResult(
            FET_NAME,
            FET_METHOD,
            float(p),
            self.config.p_val,
            bool(p < self.config.p_val),
            float(odds),
            None,
            self.n_reference,
            n,
        )


MODEL_BACKENDS: dict[str, Callable[[DriftConfig], ModelDriftBackend]] = {
    "alibi": AlibiModelDriftBackend,
    "scipy": ScipyModelDriftBackend,
}


def detect_model_drift(
    champion: Champion,
    joined: FeedbackJoin,
    reference_correct: np.ndarray,
    config: DriftConfig = DriftConfig(),
    backend: ModelDriftBackend | None = None,
) -> ModelDriftResult:
    """Compare the day's accuracy from feedback with the test-split accuracy.

    A day without usable feedback is a ``no_feedback`` result (not drift, not an
    error): feedback often lags predictions by days, and the partition is
    simply re-run when it lands.
    """
    ref_acc = float(reference_correct.mean()) if len(reference_correct) else math.nan
    common = dict(
        date=partition_key(joined.key),
        threshold=config.p_val,
        reference_accuracy=ref_acc,
        n_reference=len(reference_correct),
        feedback=joined.summary(),
        model_name=champion.model_name,
        model_version=champion.model_version,
        delta_version=champion.delta_version,
    )
    if joined.n_matched == 0:
        return ModelDriftResult(
            status="no_feedback",
            is_drift=False,
            p_value=None,
            production_accuracy=None,
            n_production=0,
            odds_ratio=None,
            backend=config.backend,
            **common,
        )
    if backend is None:
        backend = MODEL_BACKENDS[config.backend](config)
        backend.fit(reference_correct)
    result = backend.test(joined.correct)
    return ModelDriftResult(
        status="ok",
        is_drift=result.is_drift,
        p_value=result.p_value,
        production_accuracy=joined.accuracy,
        n_production=joined.n_matched,
        odds_ratio=result.distance,
        backend=backend.name,
        **common,
    )
