"""Data drift and model drift of one production day against the champion's training data.

- **Data drift** (label-free): MMD two-sample permutation test on the champion's
  penultimate-layer embeddings, reference = a seeded sample of the training split
  at the model's pinned Delta version; plus tests on the model's predictions
  (chi-squared on predicted labels, optionally K-S on each softmax output).
  The tests share one family-wise level ``p_val`` (Bonferroni).
- **Model drift** (needs feedback): Fisher exact test of the day's correct /
  incorrect counts against the champion's correctness on the test split,
  one-sided (``alternative='less'``: accuracy got worse).

The statistics come from a backend behind two small protocols. The default,
:class:`AlibiDriftBackend` / :class:`AlibiModelDriftBackend`, uses alibi-detect,
which is licensed BSL 1.1 (not OSI open source). :class:`ScipyDriftBackend` /
:class:`ScipyModelDriftBackend` compute the same tests with torch and scipy only,
so a deployment that cannot accept the BSL swaps ``DriftConfig.backend``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from rayml_assets.lib.monitoring.inference import (
    DEFAULT_BATCH_SIZE,
    Champion,
    EmptyPartitionError,
    load_split,
    predict_images,
)
from rayml_assets.lib.monitoring.production import FeedbackJoin, partition_key

PREDICTION_TESTS = ("chi2", "ks")


@dataclass(frozen=True)
class DriftConfig:
    """Knobs of both drift reports; the defaults are what the daily schedule runs."""

    p_val: float = 0.05  # family-wise significance level of a report
    n_permutations: int = 100  # MMD permutation test; p-value resolution is 1/n_permutations
    # The splits of the pinned dataset that form the data-drift reference. Held-out
    # ("val", "test") is the alternative when a model memorises its training set.
    reference_splits: tuple[str, ...] = ("train",)
    reference_size: int = 1000  # reference images sampled (seeded) for the MMD / prediction tests
    # MMD costs O((reference + production)^2 * n_permutations): a seeded subsample of
    # this many production images keeps a 4,000-image day in seconds without losing power.
    max_production: int | None = 1000
    prediction_tests: tuple[str, ...] = ("chi2",)  # label-free tests on the predictions
    model_reference_size: int | None = None  # test-split images for the accuracy reference (None: all)
    backend: str = "alibi"  # "alibi" (BSL 1.1) or "scipy" (BSD/MIT stack)
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        unknown = set(self.prediction_tests) - set(PREDICTION_TESTS)
        if unknown:
            raise ValueError(f"unknown prediction tests {sorted(unknown)}; choose from {PREDICTION_TESTS}")
        if not 0 < self.p_val < 1:
            raise ValueError(f"p_val must be in (0, 1), got {self.p_val}")
        if self.backend not in DATA_BACKENDS:
            raise ValueError(f"unknown drift backend {self.backend!r}; choose from {sorted(DATA_BACKENDS)}")

    @property
    def n_tests(self) -> int:
        return 1 + len(self.prediction_tests)

    @property
    def per_test_p_val(self) -> float:
        return self.p_val / self.n_tests  # Bonferroni across the report's tests

    @classmethod
    def from_dict(cls, values: dict | None) -> DriftConfig:
        values = dict(values or {})
        for key in ("prediction_tests", "reference_splits"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class DriftTestResult:
    name: str  # "mmd_embeddings", "chi2_predicted_labels", "ks_softmax", "fet_accuracy"
    method: str
    p_value: float
    threshold: float  # p-value below which this test flags drift (after correction)
    is_drift: bool
    distance: float  # MMD^2, chi2 statistic, max K-S statistic, odds ratio
    distance_threshold: float | None  # MMD^2 above which drift is flagged (permutation quantile)
    n_reference: int
    n_production: int


@dataclass
class DataDriftResult:
    date: str
    status: str  # "ok"
    is_drift: bool
    p_val: float
    tests: list[DriftTestResult]
    n_reference: int
    n_production: int  # images of the day (MMD may test a subsample, see tests)
    model_name: str
    model_version: str
    delta_version: int
    backend: str

    @property
    def min_p_value(self) -> float:
        return min(t.p_value for t in self.tests)

    def test(self, name: str) -> DriftTestResult:
        return next(t for t in self.tests if t.name == name)

    def to_dict(self) -> dict:
        return {"kind": "data_drift", **asdict(self), "min_p_value": self.min_p_value}


@dataclass
class ModelDriftResult:
    date: str
    status: str  # "ok", or "no_feedback" when no feedback row matched a prediction
    is_drift: bool
    p_value: float | None
    threshold: float
    reference_accuracy: float
    production_accuracy: float | None
    n_reference: int
    n_production: int  # predicted images with feedback
    odds_ratio: float | None
    feedback: dict  # FeedbackJoin.summary(): rows, duplicates, unknown images
    model_name: str
    model_version: str
    delta_version: int
    backend: str

    def to_dict(self) -> dict:
        return {"kind": "model_drift", **asdict(self)}


# ---------------------------------------------------------------- backends


@dataclass
class DriftInputs:
    embeddings: np.ndarray  # [N, D] penultimate features
    probabilities: np.ndarray  # [N, K] softmax outputs

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


@runtime_checkable
class DataDriftBackend(Protocol):
    name: str

    def fit(self, reference: DriftInputs) -> None: ...

    def test(self, production: DriftInputs) -> list[DriftTestResult]: ...


@runtime_checkable
class ModelDriftBackend(Protocol):
    name: str

    def fit(self, reference_correct: np.ndarray) -> None: ...

    def test(self, correct: np.ndarray) -> DriftTestResult: ...


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fix torch's RNG (the permutations) for one call without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _subsample(x: DriftInputs, limit: int | None, seed: int) -> DriftInputs:
    if limit is None or len(x) <= limit:
        return x
    keep = np.sort(np.random.default_rng(seed).choice(len(x), size=limit, replace=False))
    return DriftInputs(x.embeddings[keep], x.probabilities[keep])


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
        sample = _subsample(production, self.config.max_production, self.config.seed)
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
            "fet_accuracy",
            "Fisher exact test on correct/incorrect (less)",
            p,
            self.config.p_val,
            bool(out["is_drift"]),
            float(out["distance"][0]),
            None,
            self.n_reference,
            len(correct),
        )


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
        sample = _subsample(production, cfg.max_production, cfg.seed)
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
            "fet_accuracy",
            "Fisher exact test on correct/incorrect (less)",
            float(p),
            self.config.p_val,
            bool(p < self.config.p_val),
            float(odds),
            None,
            self.n_reference,
            n,
        )


DATA_BACKENDS: dict[str, Callable[[DriftConfig], DataDriftBackend]] = {
    "alibi": AlibiDriftBackend,
    "scipy": ScipyDriftBackend,
}
MODEL_BACKENDS: dict[str, Callable[[DriftConfig], ModelDriftBackend]] = {
    "alibi": AlibiModelDriftBackend,
    "scipy": ScipyModelDriftBackend,
}


# ---------------------------------------------------------------- references


@dataclass
class DataReference:
    inputs: DriftInputs
    image_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)


def data_reference(champion: Champion, config: DriftConfig = DriftConfig()) -> DataReference:
    """Champion embeddings and predictions of a seeded sample of ``config.reference_splits``.

    Build it once and reuse it for every day of a backfill.
    """
    data = load_split(champion, config.reference_splits, limit=config.reference_size, seed=config.seed)
    if not len(data):
        raise EmptyPartitionError(
            f"no {'/'.join(config.reference_splits)} images in {champion.cleaned_table_uri}@v{champion.delta_version}"
        )
    probs, embeds = predict_images(champion, data.images, config.batch_size)
    return DataReference(DriftInputs(embeds, probs), data.image_ids)


def reference_correctness(champion: Champion, config: DriftConfig = DriftConfig()) -> np.ndarray:
    """Whether the champion classifies each test-split image correctly: the accuracy the model shipped with."""
    test = load_split(champion, ("test",), limit=config.model_reference_size, seed=config.seed)
    if not len(test):
        raise EmptyPartitionError(f"no test images in {champion.cleaned_table_uri}@v{champion.delta_version}")
    probs, _ = predict_images(champion, test.images, config.batch_size)
    index = champion.label_index
    truth = np.array([index.get(label, -1) for label in test.labels])
    return probs.argmax(axis=1) == truth


# ---------------------------------------------------------------- detection


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
