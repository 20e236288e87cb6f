"""What a tuning run is asked to do, as plain YAML-able models: no Ray, no torch.

:class:`TuningConfig` holds the search space (a small DSL, below), the search
algorithm, the trial scheduler (:class:`SchedulerConfig`), the stopping rules
(:class:`StopperConfig`), the wall-time budget and the per-trial resources. The Dagster
assets validate it in the Dagster process (this module is light enough for the code location); the train task
script turns it into a ``Tuner`` with :mod:`rayml_assets.lib.training.tuner`.

Search-space DSL: a hyperparameter maps to a constant, or to ONE of
``{"loguniform": [low, high]}``, ``{"uniform": [low, high]}``,
``{"quniform": [low, high, q]}``, ``{"randint": [low, high]}``,
``{"choice": [values...]}`` or ``{"grid": [values...]}``. ``grid`` is for
``search_algorithm: random`` only: a model-based search (optuna) proposes every value itself.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rayml_assets.lib.training.model_names import MODEL_NAMES

CONFIGS_DIR = Path(__file__).resolve().parent.parent.parent / "configs"
DEMO_TUNING_PATH = CONFIGS_DIR / "demo_tuning.yaml"

# Hyperparameters the worker loop understands, with the value used when the
# search space leaves one out. The search space may only name these keys.
HYPERPARAM_DEFAULTS: dict[str, object] = {
    "model": "small_cnn",
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": 64,
    "weight_decay": 5e-4,
    "optimizer": "sgd",
    "lr_schedule": "cosine",
    "label_smoothing": 0.1,  # softer targets: a few points of test accuracy on small datasets
}

# DSL name: (the ``ray.tune`` function it becomes, number of positional arguments; None = a list of values)
SAMPLERS: dict[str, tuple[str, int | None]] = {
    "loguniform": ("loguniform", 2),
    "uniform": ("uniform", 2),
    "quniform": ("quniform", 3),
    "randint": ("randint", 2),
    "choice": ("choice", None),
    "grid": ("grid_search", None),
}


def hyperparams(config: dict) -> dict:
    """The hyperparameters of a trial config, defaults filled in."""
    return {key: config.get(key, default) for key, default in HYPERPARAM_DEFAULTS.items()}


def _check_known(name: str) -> None:
    if name not in HYPERPARAM_DEFAULTS:
        raise ValueError(f"unknown hyperparameter {name!r}; known: {sorted(HYPERPARAM_DEFAULTS)}")


def _check_model(spec: Any) -> None:
    # a typo would otherwise fail only inside a trial, after Ray has started
    if isinstance(spec, dict):
        kind, values = next(iter(spec.items()))
        if kind not in ("choice", "grid"):
            raise ValueError(f"model: a constant, choice or grid of model names, got {kind!r}")
    else:
        values = [spec]
    unknown = [v for v in values if v not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"model: unknown {unknown}; known: {list(MODEL_NAMES)}")


def _check_param_spec(name: str, spec: Any, allow_grid: bool = True) -> Any:
    if not isinstance(spec, dict):
        return spec  # a constant
    if len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
        raise ValueError(f"{name}: expected one of {sorted(SAMPLERS)} as the only key, got {sorted(spec)}")
    kind, args = next(iter(spec.items()))
    if kind == "grid" and not allow_grid:
        raise ValueError(f"{name}: 'grid' is not allowed here")
    arity = SAMPLERS[kind][1]
    if not isinstance(args, list | tuple) or (arity is None and not args) or (arity is not None and len(args) != arity):
        raise ValueError(
            f"{name}: {kind} needs {'a non-empty list' if arity is None else f'{arity} numbers'}, got {args!r}"
        )
    if kind in ("loguniform", "uniform", "quniform", "randint") and not args[0] < args[1]:
        raise ValueError(f"{name}: {kind} needs low < high, got {args!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise ValueError(f"{name}: loguniform needs a positive lower bound, got {args!r}")
    return spec


def _check_space(space: dict[str, Any], allow_grid: bool = True) -> None:
    for name, spec in space.items():
        _check_known(name)
        _check_param_spec(name, spec, allow_grid)
        if name == "model":
            _check_model(spec)


class SchedulerConfig(BaseModel):
    """Trial scheduler. ``time_attr`` is always the epoch (``training_iteration``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["fifo", "asha", "pbt"] = "asha"
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: keep 1/reduction_factor of trials at each rung")
    perturbation_interval: int = Field(1, ge=1, description="PBT: epochs between exploit/explore steps")
    hyperparam_mutations: dict[str, Any] = Field(
        default_factory=dict, description="PBT: same format as search_space, no grid"
    )
    quantile_fraction: float = Field(
        0.25, gt=0, le=0.5, description="PBT: bottom fraction that copies the top fraction"
    )
    resample_probability: float = Field(0.25, ge=0, le=1, description="PBT: chance to resample instead of perturb")
    synch: bool = Field(
        False, description="PBT: wait for every trial at each perturbation (needs them all running at once)"
    )

    @field_validator("hyperparam_mutations")
    @classmethod
    def _mutations(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, spec in value.items():
            if not isinstance(spec, dict):
                raise ValueError(f"{name}: a PBT mutation needs a distribution or a choice, got {spec!r}")
        _check_space(value, allow_grid=False)
        return value


class StopperConfig(BaseModel):
    """Settings of :class:`~rayml_assets.lib.training.stopper.PlateauTargetBudgetStopper`; a rule left None is off."""

    model_config = ConfigDict(extra="forbid")

    patience: int | None = Field(None, ge=1, description="stop a trial after this many epochs without improvement")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as an improvement")
    target: float | None = Field(None, description="stop a trial once its metric reaches this value")
    epoch_budget: int | None = Field(
        None, ge=1, description="stop the experiment after this many epochs over all trials"
    )


class TuningConfig(BaseModel):
    """Everything a tuning run needs besides the data and where to write. Plain, YAML-able."""

    model_config = ConfigDict(extra="forbid")

    search_space: dict[str, Any] = Field(default_factory=dict, description="hyperparameter -> constant or {kind: args}")
    num_samples: int = Field(1, ge=1, description="random: samples per grid point; optuna: trials")
    search_algorithm: Literal["random", "optuna"] = Field(
        "random", description="random: Tune's random/grid sampling; optuna: Optuna's TPE, learning from past trials"
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="end the whole tuning run after this much wall time (None: no budget)"
    )
    metric: str = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    max_epochs: int = Field(5, ge=1)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    stopper: StopperConfig = Field(default_factory=StopperConfig)
    max_concurrent_trials: int | None = Field(None, ge=1, description="None: as many as the cluster's CPUs allow")
    num_workers: int = Field(2, ge=1, description="DDP workers per trial")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float | None = Field(None, ge=0, description="None: 1 when the cluster has GPUs, else 0")
    trainer_cpus: float = Field(0.0, ge=0, description="CPUs for each trial's coordinator")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how a trial's DDP workers are placed over nodes (Ray placement group strategy)"
    )
    image_size: int | None = Field(None, ge=8, description="None: from the data (lib/training/input_shape.py)")
    channels: Literal[1, 3] | None = Field(None, description="None: 3 when the images have colour, else 1")
    augment: bool = True
    seed: int = 0
    max_failures: int = Field(
        1, ge=-1, description="retries of a failed trial (a lost node...) from its last checkpoint; -1: no limit"
    )
    keep_checkpoints: int = Field(
        2, ge=1, description="best checkpoints kept per trial (the latest is always kept; PBT keeps at least 3)"
    )
    pretrained_weights_path: str | None = None
    sample_fraction: float = Field(1.0, gt=0, le=1, description="train on this stable share of the rows (the profile's)")

    @field_validator("search_space")
    @classmethod
    def _space(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_space(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TuningConfig:
        if self.scheduler.type == "pbt" and not self.scheduler.hyperparam_mutations:
            raise ValueError("scheduler pbt needs hyperparam_mutations")
        if self.scheduler.type == "asha" and self.scheduler.grace_period > self.max_epochs:
            raise ValueError("scheduler.grace_period must not exceed max_epochs")
        if self.search_algorithm == "optuna":
            grids = [k for k, v in self.search_space.items() if isinstance(v, dict) and "grid" in v]
            if grids:
                raise ValueError(
                    f"search_space {grids}: grid is not supported by search_algorithm optuna "
                    "(it proposes every value itself); use choice"
                )
            if self.scheduler.type == "pbt":
                raise ValueError(
                    "scheduler pbt needs search_algorithm random: Ray's PBT refuses other searchers "
                    "(it mutates the hyperparameters itself)"
                )
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> TuningConfig:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))

    def fingerprint(self) -> str:
        # where trials run is not what they learn: a new placement resumes the same experiment
        return hashlib.sha256(self.model_dump_json(exclude={"placement_strategy"}).encode()).hexdigest()

    def num_trials(self) -> int:
        """Trials the search asks for: grid points × num_samples (random), num_samples (optuna)."""
        if self.search_algorithm == "optuna":
            return self.num_samples
        grid = math.prod(
            len(spec["grid"]) for spec in self.search_space.values() if isinstance(spec, dict) and "grid" in spec
        )
        return grid * self.num_samples


def demo_tuning() -> TuningConfig:
    """The demo search (``configs/demo_tuning.yaml``): ≥0.95 test accuracy on digits, 2 CPUs, a few minutes."""
    return TuningConfig.from_yaml(DEMO_TUNING_PATH)


def default_experiment_name(table_uri: str, version: int, config: TuningConfig) -> str:
    """Deterministic per (data, config): re-materialising the same thing resumes it."""
    digest = hashlib.sha256(f"{table_uri}@{version}:{config.fingerprint()}".encode()).hexdigest()[:12]
    return f"tune-v{version}-{digest}"
