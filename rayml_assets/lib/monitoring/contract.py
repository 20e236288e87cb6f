"""The typed contracts of the monitoring task scripts, and the knobs they carry.

An asset in ``defs/monitoring/assets.py`` builds one model and sends
``params.to_extras()``; the task script validates ``pipes.extras`` with the same
model (``rayml_assets.lib.common.task_entry.main``):

- :class:`DriftTaskParams` for ``drift_task.py``: one ``step`` of the daily
  monitoring (``predictions``, ``data_drift`` or ``model_drift``), each step
  with the roots it needs;
- :class:`ExplainTaskParams` for ``explain_task.py``.

Both carry the pinned champion (:class:`ChampionRef`) and where MLflow is
(:class:`MlflowSettings`); the drift task also where the lake is (:class:`LakeSettings`). This module imports neither torch nor MLflow, so the
code location can build the models.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from rayml_assets.lib.common.contract import ChampionRef, Contract, LakeSettings, MlflowSettings
from rayml_assets.lib.common.storage_options import StorageSettings
from rayml_assets.lib.monitoring.production import DEFAULT_MAX_FILES_PER_DAY, partition_key

DEFAULT_BATCH_SIZE = 256
PREDICTION_TESTS = ("chi2", "ks")
# Implemented in data_drift.DATA_BACKENDS and model_drift.MODEL_BACKENDS (a test keeps them in step).
DRIFT_BACKENDS = ("alibi", "scipy")

PartitionKey = Annotated[str, AfterValidator(partition_key)]


class DriftConfig(Contract):
    """Knobs of both drift reports; the defaults are what the daily schedule runs."""

    p_val: float = 0.05  # family-wise significance level of a report
    n_permutations: int = Field(100, ge=1)  # MMD permutation test; p-value resolution is 1/n_permutations
    # The splits of the pinned dataset that form the data-drift reference. Held-out
    # ("val", "test") is the alternative when a model memorises its training set.
    reference_splits: tuple[str, ...] = ("train",)
    reference_size: int = Field(1000, ge=1)  # reference images sampled (seeded) for the MMD / prediction tests
    # MMD costs O((reference + production)^2 * n_permutations): a seeded subsample of
    # this many production images keeps a 4,000-image day in seconds without losing power.
    max_production: int | None = Field(1000, ge=1)
    prediction_tests: tuple[str, ...] = ("chi2",)  # label-free tests on the predictions
    model_reference_size: int | None = Field(None, ge=1)  # test-split images for the accuracy reference (None: all)
    backend: str = "alibi"  # "alibi" (BSL 1.1) or "scipy" (BSD/MIT stack)
    seed: int = 0
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)

    @field_validator("prediction_tests")
    @classmethod
    def _known_tests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(PREDICTION_TESTS)
        if unknown:
            raise ValueError(f"unknown prediction tests {sorted(unknown)}; choose from {PREDICTION_TESTS}")
        return value

    @field_validator("p_val")
    @classmethod
    def _level(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"p_val must be in (0, 1), got {value}")
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in DRIFT_BACKENDS:
            raise ValueError(f"unknown drift backend {value!r}; choose from {sorted(DRIFT_BACKENDS)}")
        return value

    @property
    def n_tests(self) -> int:
        return 1 + len(self.prediction_tests)

    @property
    def per_test_p_val(self) -> float:
        return self.p_val / self.n_tests  # Bonferroni across the report's tests


class ExplainConfig(Contract):
    """Knobs of the SHAP report."""

    per_class: int = Field(2, ge=0)  # random test images explained per true class
    top_misclassified: int = Field(8, ge=0)  # highest-confidence wrong predictions explained
    background_size: int = Field(64, ge=1)  # training images the expected gradients integrate from
    nsamples: int = Field(64, ge=1)  # gradient samples per explained image (SHAP noise ~ 1/sqrt(nsamples))
    max_test_images: int | None = Field(2000, ge=1)  # test images scored to find the misclassified ones
    cols: int = Field(6, ge=1)  # grid columns
    seed: int = 0
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)

    @model_validator(mode="after")
    def _explains_something(self) -> ExplainConfig:
        if self.per_class + self.top_misclassified == 0:
            raise ValueError("per_class and top_misclassified must be >= 0, and not both 0")
        return self


class ChampionMetadata(Contract):
    """What the model's logged metadata says about it, given explicitly.

    A ``None`` field is read from the metadata logged with the model
    (``lib.training.tracking.log_model``); a model saved without it (a pickled
    test fixture, a model from elsewhere) needs them here.
    """

    class_labels: list[str] | None = None  # labels in output order
    delta_version: int | None = Field(None, ge=0)  # the cleaned_images version the model trained on
    cleaned_table_uri: str | None = None
    image_size: int | None = Field(None, ge=1)  # model input; default 32
    channels: int | None = Field(None, ge=1)  # default 1


# ---------------------------------------------------------------- drift_task.py


class PredictStep(Contract):
    """Batch inference over each day's production images into the ``predictions`` table."""

    kind: Literal["predictions"] = "predictions"
    production_root: str  # the production landing root
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    max_files: int = Field(DEFAULT_MAX_FILES_PER_DAY, ge=1)  # bound on the files of one day


class DataDriftStep(Contract):
    """The day's predicted images against the reference sample of the pinned training data."""

    kind: Literal["data_drift"] = "data_drift"
    reports_root: str  # reports go to {reports_root}/data_drift/{date}/
    drift: DriftConfig = DriftConfig()


class ModelDriftStep(Contract):
    """The day's accuracy from feedback against the pinned test split."""

    kind: Literal["model_drift"] = "model_drift"
    feedback_root: str  # the feedback landing root
    reports_root: str  # reports go to {reports_root}/model_drift/{date}/
    drift: DriftConfig = DriftConfig()


DriftStep = Annotated[PredictStep | DataDriftStep | ModelDriftStep, Field(discriminator="kind")]


class DriftTaskParams(Contract):
    """What ``drift_task.py`` needs for one step of the daily monitoring over ``dates``."""

    step: DriftStep
    # The drift steps log each day's report folder to one MLflow run of mlflow.experiment_name per
    # report and day (lib/monitoring/report_runs.py) and link it: mlflow_run_url, report_url.
    # Partition keys YYYY-MM-DD. Under Pipes, task_entry.main fills in the step's partition range when absent.
    dates: list[PartitionKey] = Field(min_length=1)
    champion: ChampionRef
    champion_metadata: ChampionMetadata = ChampionMetadata()
    mlflow: MlflowSettings
    lake: LakeSettings  # the predictions table lives at {lake.root}/predictions
    asset_key: str | None = None  # which asset the metadata is for, when a step materializes several


# ---------------------------------------------------------------- explain_task.py


class ExplainTaskParams(Contract):
    """What ``explain_task.py`` needs: the champion, where its report goes, the SHAP knobs.

    The report folder is also logged to the champion's MLflow run
    (``champion.mlflow_run_id``) as ``shap_report/`` when the run is known, and the
    metadata links its artifact view (``mlflow_run_url``; ``mlflow.ui_url`` set).
    """

    champion: ChampionRef
    champion_metadata: ChampionMetadata = ChampionMetadata()
    mlflow: MlflowSettings
    reports_root: str | None = None  # files go to {reports_root}/shap/{model_name}/v{model_version} ...
    output_dir: str | None = None  # ... unless this is given
    explain: ExplainConfig = ExplainConfig()
    storage: StorageSettings | None = None  # how the report folder is reached (variable names only)

    @model_validator(mode="after")
    def _has_a_target(self) -> ExplainTaskParams:
        if not (self.output_dir or self.reports_root):
            raise ValueError("the explain task needs reports_root or output_dir")
        return self

    @property
    def target_dir(self) -> str:
        if self.output_dir:
            return self.output_dir
        ref = self.champion
        return f"{self.reports_root.rstrip('/')}/shap/{ref.model_name}/v{ref.model_version}"
