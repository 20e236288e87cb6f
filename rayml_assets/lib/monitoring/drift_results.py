"""What the drift reports find: one result per test, and one per day and report.

Plain dataclasses; ``to_dict()`` is what a report's ``result.json`` holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
