"""Data drift (label-free) of one production day against the champion's training data.

An MMD two-sample permutation test on the champion's penultimate-layer
embeddings, reference = a seeded sample of the training split at the model's
pinned Delta version (``drift_inputs.data_reference``); plus tests on the
model's predictions (chi-squared on predicted labels, optionally K-S on each
softmax output). The tests share one family-wise level ``p_val`` (Bonferroni).

The statistics come from a backend behind the :class:`DataDriftBackend`
protocol. The default, :class:`AlibiDriftBackend`, uses alibi-detect, which is
licensed BSL 1.1 (not OSI open source). :class:`ScipyDriftBackend` computes the
same tests with torch and scipy only, so a deployment that cannot accept the BSL
sets ``DriftConfig.backend = "scipy"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from rayml_assets.lib.monitoring.contract import DriftConfig
from rayml_assets.lib.monitoring.drift_inputs import DataReference, DriftInputs
from rayml_assets.lib.monitoring.drift_results import DataDriftResult, DriftTestResult
from rayml_assets.lib.monitoring.inference import Champion, EmptyPartitionError
from rayml_assets.lib.monitoring.production import partition_key


@runtime_checkable
class DataDriftBackend(Protocol):
    name: str

    def fit(self, reference: DriftInputs) -> None: ...

    def test(self, production: DriftInputs) -> list[DriftTestResult]: ...


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fix torch's RNG (the permutations) for one call without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class _DataBackendBase:
    """What both data backends share: turning one test's numbers into a DriftTestResult."""

    reference: DriftInputs

    def __init__(self, config: DriftConfig):
        self.config = config

    def _result(
        self,
        name: str,
        method: str,
        p: float,
        stat: float,
        n: int,
        threshold: float | None = None,
        dist_threshold: float | None = None,
    ) -> DriftTestResult:
        threshold = self.config.per_test_p_val if threshold is None else threshold
        return DriftTestResult(
            name,
            method,
            float(p),
            float(threshold),
            bool(p < threshold),
            float(stat),
            None if dist_threshold is None else float(dist_threshold),
            len(self.reference),
            n,
        )

    # One builder per test, so both backends name and describe each test the same way.
    def _mmd_result(self, p: float, mmd2: float, n: int, mmd2_threshold: float) -> DriftTestResult:
        return self._result("mmd_embeddings", "MMD permutation test on embeddings", p, mmd2, n, dist_threshold=mmd2_threshold)

    def _chi2_result(self, p: float, stat: float, n: int) -> DriftTestResult:
        return self._result("chi2_predicted_labels", "chi-squared on predicted labels", p, stat, n)

    def _ks_result(self, p: float, distance: float, n: int, threshold: float) -> DriftTestResult:
        return self._result("ks_softmax", "K-S per softmax output, Bonferroni", p, distance, n, threshold=threshold)


class AlibiDriftBackend(_DataBackendBase):
    """alibi-detect's ``MMDDrift(backend='pytorch')``, ``ChiSquareDrift`` and ``KSDrift``."""

    name = "alibi"

    def fit(self, reference: DriftInputs) -> None:
        from alibi_detect.cd import ChiSquareDrift, KSDrift, MMDDrift

        self.reference = reference
        alpha = self.config.per_test_p_val
        # The kernel bandwidth comes from the reference (median heuristic), once per fit.
        self._mmd = MMDDrift(
            reference.embeddings,
            backend="pytorch",
            p_val=alpha,
            n_permutations=self.config.n_permutations,
            device="cpu",
        )
        self._chi2 = (
            ChiSquareDrift(reference.predicted[:, None], p_val=alpha)
            if "chi2" in self.config.prediction_tests
            else None
        )
        # KSDrift applies its own Bonferroni over the K softmax columns.
        self._ks = KSDrift(reference.probabilities, p_val=alpha) if "ks" in self.config.prediction_tests else None

    def test(self, production: DriftInputs) -> list[DriftTestResult]:
        sample = production.subsample(self.config.max_production, self.config.seed)
        with _seeded(self.config.seed):
            p, mmd2, mmd2_threshold = self._mmd.score(sample.embeddings)
        results = [self._mmd_result(p, mmd2, len(sample), mmd2_threshold)]
        if self._chi2 is not None:
            out = self._chi2.predict(production.predicted[:, None])["data"]
            results.append(self._chi2_result(out["p_val"][0], out["distance"][0], len(production)))
        if self._ks is not None:
            out = self._ks.predict(production.probabilities)["data"]
            results.append(self._ks_result(out["p_val"].min(), out["distance"].max(), len(production), out["threshold"]))
        return results


def mmd2_permutation_test(
    x: torch.Tensor, y: torch.Tensor, n_permutations: int, p_val: float
) -> tuple[float, float, float]:
    """Unbiased MMD^2 with a Gaussian RBF (median-heuristic bandwidth from ``x``) and its permutation p-value.

    Same statistic, bandwidth and permutation scheme as alibi-detect's pytorch
    MMD, so the open backend answers the same question.
    """
    z = torch.cat([x, y]).double()
    d2 = torch.cdist(z, z).pow(2)
    n_ref = len(x)
    # Median of the off-diagonal reference distances: sigma^2 = median / 2, as alibi-detect does.
    ref_d2 = d2[:n_ref, :n_ref].flatten().sort().values
    sigma = (0.5 * ref_d2[n_ref + (n_ref * n_ref - n_ref) // 2 - 1]).sqrt().clamp_min(1e-12)
    k = torch.exp(-d2 / (2 * sigma**2))
    k.fill_diagonal_(0)

    def stat(idx: torch.Tensor | None) -> torch.Tensor:
        km = k if idx is None else k[idx][:, idx]
        m = len(z) - n_ref
        kxx, kyy, kxy = km[:n_ref, :n_ref], km[n_ref:, n_ref:], km[:n_ref, n_ref:]
        return kxx.sum() / (n_ref * (n_ref - 1)) + kyy.sum() / (m * (m - 1)) - 2 * kxy.mean()

    observed = stat(None)
    permuted = torch.stack([stat(torch.randperm(len(z))) for _ in range(n_permutations)])
    p = (observed <= permuted).double().mean().item()
    threshold = permuted.sort(descending=True).values[int(p_val * n_permutations)].item()
    return p, observed.item(), threshold


class ScipyDriftBackend(_DataBackendBase):
    """The same data drift tests without alibi-detect: torch MMD, scipy chi-squared and K-S."""

    name = "scipy"

    def fit(self, reference: DriftInputs) -> None:
        self.reference = reference
        self._ref_embeddings = torch.from_numpy(reference.embeddings)

    def test(self, production: DriftInputs) -> list[DriftTestResult]:
        from scipy.stats import chi2_contingency, ks_2samp

        cfg = self.config
        sample = production.subsample(cfg.max_production, cfg.seed)
        with _seeded(cfg.seed):
            p, mmd2, mmd2_threshold = mmd2_permutation_test(
                self._ref_embeddings, torch.from_numpy(sample.embeddings), cfg.n_permutations, cfg.per_test_p_val
            )
        results = [self._mmd_result(p, mmd2, len(sample), mmd2_threshold)]
        if "chi2" in cfg.prediction_tests:
            classes = np.union1d(self.reference.predicted, production.predicted)
            table = np.stack(
                [
                    (self.reference.predicted[:, None] == classes).sum(0),
                    (production.predicted[:, None] == classes).sum(0),
                ]
            )
            stat, p_chi2, _, _ = chi2_contingency(table)
            results.append(self._chi2_result(p_chi2, stat, len(production)))
        if "ks" in cfg.prediction_tests:
            k = production.probabilities.shape[1]
            # Asymptotic p-values, as alibi-detect computes them (exact is slow for large days).
            tests = [
                ks_2samp(self.reference.probabilities[:, j], production.probabilities[:, j], method="asymp")
                for j in range(k)
            ]
            p_min, distance = min(t.pvalue for t in tests), max(t.statistic for t in tests)
            results.append(self._ks_result(p_min, distance, len(production), cfg.per_test_p_val / k))
        return results


DATA_BACKENDS: dict[str, Callable[[DriftConfig], DataDriftBackend]] = {
    "alibi": AlibiDriftBackend,
    "scipy": ScipyDriftBackend,
}


def detect_data_drift(
    champion: Champion,
    date: str,
    production: DriftInputs,
    reference: DataReference,
    config: DriftConfig = DriftConfig(),
    backend: DataDriftBackend | None = None,
) -> DataDriftResult:
    """Test one day's production inputs against the reference. Raises on an empty day.

    Pass the same fitted ``backend`` for several days to fit the reference once.
    """
    key = partition_key(date)
    if len(production) == 0:
        raise EmptyPartitionError(f"no production images for {key}: nothing to test for drift")
    if backend is None:
        backend = DATA_BACKENDS[config.backend](config)
        backend.fit(reference.inputs)
    tests = backend.test(production)
    return DataDriftResult(
        date=key,
        status="ok",
        is_drift=any(t.is_drift for t in tests),
        p_val=config.p_val,
        tests=tests,
        n_reference=len(reference),
        n_production=len(production),
        model_name=champion.model_name,
        model_version=champion.model_version,
        delta_version=champion.delta_version,
        backend=backend.name,
    )
