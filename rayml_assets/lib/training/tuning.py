"""AutoML with Ray Tune over Ray Train DDP trials, driven by a plain config.

Pattern: ``Tuner(TorchTrainer(...))`` with legacy Ray Train (V1). Each trial is
one DDP run of :func:`rayml_assets.lib.training.training.train_loop_per_worker`, placed
as ONE placement group of ``num_workers`` bundles (plus ``trainer_cpus`` for the
coordinator, default 0 because it only waits on the workers). A trial therefore
gets all its CPUs at once or waits; no trial can hold half of what it needs,
which is how a Tune function trainable that starts a TorchTrainer inside
(1 CPU for the function, then the workers) dead-locks a small cluster. Why V1
at all: see :mod:`rayml_assets.lib.training.training` and docs/training.md.

Resume: an experiment lives at ``{storage_path}/{experiment_name}``. Running
again with the same name restores it with ``Tuner.restore(resume_errored=True)``:
finished trials are not trained again, unfinished and errored ones continue
from their last checkpoint. A fingerprint file pins the experiment to one
``(table, version, config)`` so a name is never reused for other data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow.fs as pafs
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rayml_assets.lib.training.training import (
    HYPERPARAM_DEFAULTS,
    DataSpec,
    discover_labels,
    hyperparams,
    pin_train_v1,
    ray_runtime_env,
    train_loop_per_worker,
)

pin_train_v1()  # before the first import of ray.train below

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.train import ScalingConfig  # noqa: E402
from ray.train.torch import TorchConfig, TorchTrainer  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining  # noqa: E402
from ray.tune.search.basic_variant import BasicVariantGenerator  # noqa: E402

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
FINGERPRINT_FILE = "rayml_tuning.json"
CURVE_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "world_size",
    "train_samples_per_s",
    "epoch_time_s",
)

_SAMPLERS: dict[str, tuple[Callable, int | None]] = {
    # name: (tune constructor, number of positional arguments; None = a list of values)
    "loguniform": (tune.loguniform, 2),
    "uniform": (tune.uniform, 2),
    "quniform": (tune.quniform, 3),
    "randint": (tune.randint, 2),
    "choice": (tune.choice, None),
    "grid": (tune.grid_search, None),
}


def _check_param_spec(name: str, spec: Any, allow_grid: bool = True) -> Any:
    if not isinstance(spec, dict):
        return spec  # a constant
    if len(spec) != 1 or next(iter(spec)) not in _SAMPLERS:
        raise ValueError(f"{name}: expected one of {sorted(_SAMPLERS)} as the only key, got {sorted(spec)}")
    kind, args = next(iter(spec.items()))
    if kind == "grid" and not allow_grid:
        raise ValueError(f"{name}: 'grid' is not allowed here")
    arity = _SAMPLERS[kind][1]
    if not isinstance(args, list | tuple) or (arity is None and not args) or (arity is not None and len(args) != arity):
        raise ValueError(
            f"{name}: {kind} needs {'a non-empty list' if arity is None else f'{arity} numbers'}, got {args!r}"
        )
    if kind in ("loguniform", "uniform", "quniform", "randint") and not args[0] < args[1]:
        raise ValueError(f"{name}: {kind} needs low < high, got {args!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise ValueError(f"{name}: loguniform needs a positive lower bound, got {args!r}")
    return spec


def to_tune_domain(spec: Any) -> Any:
    """``{"loguniform": [1e-4, 1e-2]}`` → ``tune.loguniform(1e-4, 1e-2)``; a constant stays itself."""
    if not isinstance(spec, dict):
        return spec
    kind, args = next(iter(spec.items()))
    constructor, arity = _SAMPLERS[kind]
    return constructor(list(args)) if arity is None else constructor(*args)


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
            _check_known(name)
            if not isinstance(spec, dict):
                raise ValueError(f"{name}: a PBT mutation needs a distribution or a choice, got {spec!r}")
            _check_param_spec(name, spec, allow_grid=False)
        return value


class StopperConfig(BaseModel):
    """:class:`PlateauTargetBudgetStopper` settings; every rule is off when left ``None``."""

    model_config = ConfigDict(extra="forbid")

    patience: int | None = Field(None, ge=1, description="stop a trial after this many epochs without improvement")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as an improvement")
    target: float | None = Field(None, description="stop a trial once its metric reaches this value")
    time_budget_s: float | None = Field(None, gt=0, description="stop the experiment after this much wall time")
    epoch_budget: int | None = Field(
        None, ge=1, description="stop the experiment after this many epochs over all trials"
    )


def _check_known(name: str) -> None:
    if name not in HYPERPARAM_DEFAULTS:
        raise ValueError(f"unknown hyperparameter {name!r}; known: {sorted(HYPERPARAM_DEFAULTS)}")


class TuningConfig(BaseModel):
    """Everything a tuning run needs besides the data and where to write. Plain, YAML-able."""

    model_config = ConfigDict(extra="forbid")

    search_space: dict[str, Any] = Field(default_factory=dict, description="hyperparameter -> constant or {kind: args}")
    num_samples: int = Field(1, ge=1, description="samples per grid point")
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
    image_size: int = Field(32, ge=8)
    channels: Literal[1, 3] = 1
    augment: bool = True
    seed: int = 0
    max_failures: int = Field(1, ge=0, description="retries of a failed trial from its last checkpoint")
    keep_checkpoints: int = Field(2, ge=1, description="best checkpoints kept per trial (the latest is always kept)")
    pretrained_weights_path: str | None = None
    sample_fraction: float = Field(1.0, gt=0, le=1, description="train on this stable share of the rows (the profile's)")

    @field_validator("search_space")
    @classmethod
    def _space(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, spec in value.items():
            _check_known(name)
            _check_param_spec(name, spec)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TuningConfig:
        if self.scheduler.type == "pbt" and not self.scheduler.hyperparam_mutations:
            raise ValueError("scheduler pbt needs hyperparam_mutations")
        if self.scheduler.type == "asha" and self.scheduler.grace_period > self.max_epochs:
            raise ValueError("scheduler.grace_period must not exceed max_epochs")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> TuningConfig:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def num_trials(self) -> int:
        """Trials the search space expands to (grid points × num_samples)."""
        grid = math.prod(
            len(spec["grid"]) for spec in self.search_space.values() if isinstance(spec, dict) and "grid" in spec
        )
        return grid * self.num_samples


DEMO_TUNING_PATH = CONFIGS_DIR / "demo_tuning.yaml"


def demo_tuning() -> TuningConfig:
    """The demo search (``configs/demo_tuning.yaml``): ≥0.95 test accuracy on digits, 2 CPUs, a few minutes."""
    return TuningConfig.from_yaml(DEMO_TUNING_PATH)


class PlateauTargetBudgetStopper(tune.Stopper):
    """Stops a trial on a plateau or at a target, and the whole experiment on a budget.

    - plateau: ``patience`` results in a row without beating the trial's best by ``min_delta``;
    - target: the metric reaches ``target`` (``>=`` for max, ``<=`` for min);
    - time budget: ``time_budget_s`` of wall time since the first result of this session
      (a restored experiment gets a fresh budget: the stopper is not checkpointed by Tune);
    - epoch budget: ``epoch_budget`` epochs summed over trials (each trial's highest
      ``training_iteration``, so resumed trials are not double counted).

    ``reasons`` maps each stopped trial to ``"plateau"`` or ``"target"``;
    ``stop_all_reason`` names the budget that ended the experiment.
    """

    def __init__(
        self,
        metric: str,
        mode: str = "max",
        patience: int | None = None,
        min_delta: float = 0.0,
        target: float | None = None,
        time_budget_s: float | None = None,
        epoch_budget: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min, got {mode!r}")
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
        self.target, self.time_budget_s, self.epoch_budget, self.clock = target, time_budget_s, epoch_budget, clock
        self._best: dict[str, float] = {}
        self._stale: dict[str, int] = {}
        self._iterations: dict[str, int] = {}
        self._started: float | None = None
        self.reasons: dict[str, str] = {}
        self.stop_all_reason: str | None = None

    @classmethod
    def from_config(cls, config: TuningConfig) -> PlateauTargetBudgetStopper:
        return cls(config.metric, config.mode, **config.stopper.model_dump())

    def _improves(self, value: float, best: float) -> bool:
        return value > best + self.min_delta if self.mode == "max" else value < best - self.min_delta

    def __call__(self, trial_id: str, result: Mapping) -> bool:
        if self._started is None:
            self._started = self.clock()
        self._iterations[trial_id] = max(self._iterations.get(trial_id, 0), int(result.get("training_iteration", 1)))
        value = result.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.target is not None and (value >= self.target if self.mode == "max" else value <= self.target):
            self.reasons[trial_id] = "target"
            return True
        best = self._best.get(trial_id)
        if best is None or self._improves(value, best):
            self._best[trial_id], self._stale[trial_id] = value, 0
            return False
        self._stale[trial_id] += 1
        if self.patience is not None and self._stale[trial_id] >= self.patience:
            self.reasons[trial_id] = "plateau"
            return True
        return False

    def stop_all(self) -> bool:
        if (
            self.time_budget_s is not None
            and self._started is not None
            and self.clock() - self._started >= self.time_budget_s
        ):
            self.stop_all_reason = "time_budget"
        elif self.epoch_budget is not None and sum(self._iterations.values()) >= self.epoch_budget:
            self.stop_all_reason = "epoch_budget"
        return self.stop_all_reason is not None


@dataclass(frozen=True)
class TrialEvent:
    """What a progress sink receives: one epoch result, or a trial's end."""

    kind: Literal["result", "complete", "error"]
    trial_id: str
    hyperparams: dict
    metrics: dict
    error: str = ""  # for kind "error": the last line of the trial's error


# Tune pickles RunConfig callbacks into the experiment, and a restored
# experiment brings back the pickled ones. The callback therefore holds only a
# key; the live sink (e.g. pipes.log.info) is looked up here at call time.
_PROGRESS_SINKS: dict[str, Callable[[TrialEvent], None]] = {}
# Experiments whose fit() was stopped by SIGINT/SIGUSR1. Tune then returns a
# normal-looking ResultGrid without the trials its searcher had not created yet.
_INTERRUPTED: set[str] = set()


def _note_interrupt(key: str, tune_handler: Callable, signum, frame) -> None:
    _INTERRUPTED.add(key)
    tune_handler(signum, frame)


class _ProgressCallback(tune.Callback):
    def __init__(self, sink_key: str):
        self.sink_key = sink_key

    def setup(self, **info):
        # Tune installed its graceful-stop handlers just before calling this;
        # wrap them to remember that the run was interrupted.
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGUSR1):
            tune_handler = signal.getsignal(signum)
            if callable(tune_handler):
                signal.signal(signum, functools.partial(_note_interrupt, self.sink_key, tune_handler))

    def _emit(self, kind: str, trial, metrics: Mapping, error: str = "") -> None:
        sink = _PROGRESS_SINKS.get(self.sink_key)
        if sink is None:
            return
        hp = hyperparams(trial.config.get("train_loop_config", {}))
        picked = {k: metrics[k] for k in (*CURVE_KEYS, "training_iteration", "restored_from") if k in metrics}
        try:
            sink(TrialEvent(kind, trial.trial_id, hp, picked, error))
        except Exception:  # progress reporting must never fail a tuning run
            log.exception("progress sink failed")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._emit("result", trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._emit("complete", trial, trial.last_result or {})

    def on_trial_error(self, iteration, trials, trial, **info):
        self._emit("error", trial, trial.last_result or {}, _last_error_line(trial))


def _last_error_line(trial) -> str:
    """The innermost exception line of a failed trial (its cause, for a user reading the run log)."""
    # The trial's local error file is written before this callback; the copy in storage may come later.
    path = trial.error_file
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:  # an unreadable error file must not hide the failure itself
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


@dataclass
class TrialSummary:
    trial_id: str
    hyperparams: dict
    status: Literal["TERMINATED", "ERROR"]
    epochs_trained: int  # epochs this trial ran itself
    last_epoch: int  # epoch index reached, counting epochs inherited from a checkpoint (PBT)
    stopped_early: bool
    best_val_accuracy: float | None
    best_checkpoint_path: str | None
    best_checkpoint_metrics: dict | None  # what was reported with the best checkpoint
    restored_from: list[str]
    history: list[dict] = field(repr=False)
    error: str | None = None


class TuningInterrupted(RuntimeError):
    """Tune stopped before every trial finished (SIGINT/SIGUSR1): run again to resume."""

    def __init__(self, experiment_path: str, unfinished: int):
        super().__init__(
            f"tuning interrupted with {unfinished} unfinished trial(s); re-run to resume {experiment_path}"
        )
        self.experiment_path = experiment_path
        self.unfinished = unfinished


@dataclass
class TuningResult:
    experiment_name: str
    experiment_path: str
    table_uri: str
    version: int
    class_labels: list[str]
    metric: str
    mode: str
    max_epochs: int
    trials: list[TrialSummary]
    restored: bool
    best_trial_id: str | None = None
    best_params: dict | None = None
    best_val_accuracy: float | None = None
    best_checkpoint_path: str | None = None

    @property
    def num_trials(self) -> int:
        return len(self.trials)

    @property
    def num_stopped_early(self) -> int:
        return sum(t.stopped_early for t in self.trials)

    @property
    def num_errored(self) -> int:
        return sum(t.status == "ERROR" for t in self.trials)

    @property
    def epochs_used(self) -> int:
        return sum(t.epochs_trained for t in self.trials)

    @property
    def epochs_full(self) -> int:
        """Epochs if every trial had run to ``max_epochs`` (the no-early-stopping cost)."""
        return self.num_trials * self.max_epochs

    def learning_curves(self, metric: str = "val_accuracy") -> dict[str, list[tuple[int, float]]]:
        return {
            t.trial_id: [(int(r["epoch"]), float(r[metric])) for r in t.history if metric in r] for t in self.trials
        }

    def summary(self) -> dict:
        """A JSON-able digest for metadata and logs (no histories)."""
        return {
            "experiment_path": self.experiment_path,
            "table_uri": self.table_uri,
            "delta_version": self.version,
            "best_trial_id": self.best_trial_id,
            "best_params": self.best_params,
            "best_val_accuracy": self.best_val_accuracy,
            "best_checkpoint_path": self.best_checkpoint_path,
            "num_trials": self.num_trials,
            "num_stopped_early": self.num_stopped_early,
            "num_errored": self.num_errored,
            "epochs_used": self.epochs_used,
            "epochs_full": self.epochs_full,
            "restored": self.restored,
        }


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
) -> dict:
    """Start or join Ray with the runtime env tuning needs; returns the cluster's resources.

    ``num_cpus`` is the LOGICAL CPU count of a local cluster and may exceed the
    physical cores (each DDP worker then runs 1 torch thread). Ray 2.60 turns on
    token auth for local clusters: other processes (``ray status``) need the token.
    """
    if ray.is_initialized():
        env_vars = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
        if env_vars.get("RAY_TRAIN_V2_ENABLED") != "0":
            raise RuntimeError(
                "Ray was initialised without rayml's runtime env: "
                "use init_ray() or ray.init(runtime_env=ray_runtime_env())"
            )
    else:
        kwargs: dict[str, Any] = {"include_dashboard": False, "runtime_env": ray_runtime_env()}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory)
        ray.init(**kwargs)
    return ray.cluster_resources()


def default_experiment_name(table_uri: str, version: int, config: TuningConfig) -> str:
    """Deterministic per (data, config): re-materialising the same thing resumes it."""
    digest = hashlib.sha256(f"{table_uri}@{version}:{config.fingerprint()}".encode()).hexdigest()[:12]
    return f"tune-v{version}-{digest}"


def _abs_storage(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _fingerprint_matches(experiment_path: str, fingerprint: dict) -> None:
    fs, fs_path = pafs.FileSystem.from_uri(experiment_path)
    try:
        with fs.open_input_stream(f"{fs_path}/{FINGERPRINT_FILE}") as f:
            stored = json.loads(f.read())
    except FileNotFoundError:
        return  # experiment made by hand: trust the caller
    if stored != fingerprint:
        raise ValueError(
            f"experiment {experiment_path} was run for {stored}, not {fingerprint}: use another experiment name"
        )


def _write_fingerprint(experiment_path: str, fingerprint: dict) -> None:
    fs, fs_path = pafs.FileSystem.from_uri(experiment_path)
    fs.create_dir(fs_path, recursive=True)
    with fs.open_output_stream(f"{fs_path}/{FINGERPRINT_FILE}") as f:
        f.write(json.dumps(fingerprint, sort_keys=True).encode())


def build_trainer(
    config: TuningConfig, use_gpu: bool, train_loop_config: dict | None = None, run_config=None
) -> TorchTrainer:
    """One trial's DDP trainer (``train_loop_config``/``run_config`` only when fitted on its own, outside Tune)."""
    per_worker: dict[str, float] = {"CPU": config.cpus_per_worker}
    if use_gpu:
        per_worker["GPU"] = config.gpus_per_worker or 1.0
    return TorchTrainer(
        train_loop_per_worker,
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=use_gpu,
            resources_per_worker=per_worker,
            trainer_resources={"CPU": config.trainer_cpus},
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        train_loop_config=train_loop_config,
        run_config=run_config,
    )


def _scheduler(config: TuningConfig):
    s = config.scheduler
    if s.type == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=config.max_epochs,
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
        )
    if s.type == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=s.perturbation_interval,
            hyperparam_mutations={
                "train_loop_config": {k: to_tune_domain(v) for k, v in s.hyperparam_mutations.items()}
            },
            quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability,
            synch=s.synch,
        )
    return FIFOScheduler()


def param_space(config: TuningConfig, spec: DataSpec) -> dict:
    """Tune's ``param_space``: fixed settings plus the sampled hyperparameters."""
    fixed = {
        "data": spec.to_dict(),
        "max_epochs": config.max_epochs,
        "seed": config.seed,
        "augment": config.augment,
        "threads_per_worker": max(1, int(config.cpus_per_worker)),
        "pretrained_weights_path": config.pretrained_weights_path,
    }
    return {"train_loop_config": {**fixed, **{k: to_tune_domain(v) for k, v in config.search_space.items()}}}


def run_tuning(
    config: TuningConfig,
    *,
    table_uri: str,
    version: int,
    storage_path: str,
    experiment_name: str | None = None,
    class_labels: list[str] | tuple[str, ...] | None = None,
    on_event: Callable[[TrialEvent], None] | None = None,
    callbacks: list[tune.Callback] | None = None,
    storage_options: dict | None = None,
) -> TuningResult:
    """Tune ``config`` on ``table_uri@version``; resume the experiment if it exists.

    ``on_event`` gets every epoch result and trial end in the driver (progress
    logs). ``callbacks`` are extra Tune callbacks; they are pickled into the
    experiment, and a restored experiment keeps the first run's ones.
    Raises :class:`TuningInterrupted` when Tune was stopped before the end.
    """
    if not ray.is_initialized():
        init_ray()
    use_gpu = (
        config.gpus_per_worker > 0 if config.gpus_per_worker is not None else ray.cluster_resources().get("GPU", 0) > 0
    )
    name = experiment_name or default_experiment_name(table_uri, version, config)
    storage_path = _abs_storage(storage_path)
    experiment_path = f"{storage_path.rstrip('/')}/{name}"
    fingerprint = {"table_uri": table_uri, "version": int(version), "config": config.fingerprint()}
    restored = tune.Tuner.can_restore(experiment_path)
    if restored:
        _fingerprint_matches(experiment_path, fingerprint)
    labels = tuple(class_labels) if class_labels else discover_labels(table_uri, version, storage_options)
    if len(labels) < 2:
        raise ValueError(f"{table_uri}@v{version} has {len(labels)} class(es) among non-excluded rows; need 2+")
    spec = DataSpec(table_uri, int(version), labels, config.image_size, config.channels, config.sample_fraction)
    trainer = build_trainer(config, use_gpu)
    if restored:
        log.info("restoring tuning experiment %s", experiment_path)
        tuner = tune.Tuner.restore(experiment_path, trainable=trainer, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainer,
            param_space=param_space(config, spec),
            tune_config=tune.TuneConfig(
                metric=config.metric,
                mode=config.mode,
                scheduler=_scheduler(config),
                # the cap goes on the generator: Tune ignores TuneConfig.max_concurrent_trials
                # when a search_alg (needed here for its seed) is given
                search_alg=BasicVariantGenerator(
                    random_state=config.seed, max_concurrent=config.max_concurrent_trials or 0
                ),
                num_samples=config.num_samples,
                # Never reuse trial actors: a reused legacy TrainTrainable keeps training
                # with the FIRST trial's train_loop_config (seen on Ray 2.60).
                reuse_actors=False,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage_path,
                stop=PlateauTargetBudgetStopper.from_config(config),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=config.keep_checkpoints,
                    checkpoint_score_attribute=config.metric,
                    checkpoint_score_order=config.mode,
                ),
                failure_config=tune.FailureConfig(max_failures=config.max_failures),
                callbacks=[_ProgressCallback(name), *(callbacks or [])],
                verbose=0,
            ),
        )
        _write_fingerprint(experiment_path, fingerprint)

    if on_event is not None:
        _PROGRESS_SINKS[name] = on_event
    _INTERRUPTED.discard(name)
    try:
        grid = tuner.fit()
    finally:
        _PROGRESS_SINKS.pop(name, None)
    unfinished = len(grid) - grid.num_terminated - grid.num_errors
    if name in _INTERRUPTED or unfinished:
        # trials the searcher had not created yet are not in the grid at all
        raise TuningInterrupted(experiment_path, unfinished + max(0, config.num_trials() - len(grid)))
    return summarize(grid, config, spec, name, experiment_path, restored)


def _best_checkpoint(result, metric: str, mode: str) -> tuple[str | None, dict | None]:
    # sorted by path, so ties go to the earliest checkpoint on every run (resume included)
    scored = sorted(
        ((ckpt, m) for ckpt, m in (result.best_checkpoints or []) if m.get(metric) is not None),
        key=lambda pair: pair[0].path,
    )
    if not scored:
        return None, None
    ckpt, metrics = (max if mode == "max" else min)(scored, key=lambda pair: pair[1][metric])
    return ckpt.path, dict(metrics)


def _row_hyperparams(row: Mapping) -> dict:
    """Hyperparameters from a flattened result row (``config/train_loop_config/lr`` ...)."""
    prefix = "config/train_loop_config/"
    found = {k[len(prefix) :]: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k.startswith(prefix)}
    return hyperparams(found)


def summarize(
    grid, config: TuningConfig, spec: DataSpec, name: str, experiment_path: str, restored: bool
) -> TuningResult:
    """Turn Tune's ResultGrid into a :class:`TuningResult` (pure bookkeeping, no training).

    Identity and hyperparameters come from each trial's own result rows: after a
    PBT exploit, ``Result.metrics``/``Result.config`` hold the donor's last result.
    """
    trials = []
    for result in grid:
        df = result.metrics_dataframe
        rows = df.sort_values("training_iteration").to_dict("records") if df is not None and len(df) else []
        history = [{k: row[k] for k in (*CURVE_KEYS, "restored_from") if k in row} for row in rows]
        trial_id = rows[0]["trial_id"] if rows else Path(result.path).name
        last_epoch = int(history[-1].get("epoch", 0)) if history else 0
        val_accuracies = [float(r["val_accuracy"]) for r in history if r.get("val_accuracy") is not None]
        checkpoint_path, checkpoint_metrics = _best_checkpoint(result, config.metric, config.mode)
        trials.append(
            TrialSummary(
                trial_id=trial_id,
                hyperparams=_row_hyperparams(rows[-1]) if rows else hyperparams({}),
                status="ERROR" if result.error else "TERMINATED",
                epochs_trained=len(history),
                last_epoch=last_epoch,
                stopped_early=result.error is None and last_epoch < config.max_epochs,
                best_val_accuracy=max(val_accuracies) if val_accuracies else None,
                best_checkpoint_path=checkpoint_path,
                best_checkpoint_metrics=checkpoint_metrics,
                restored_from=sorted(
                    {r["restored_from"] for r in history if r.get("restored_from") and r["restored_from"] != trial_id}
                ),
                history=history,
                error=str(result.error) if result.error else None,
            )
        )
    out = TuningResult(
        experiment_name=name,
        experiment_path=experiment_path,
        table_uri=spec.table_uri,
        version=spec.version,
        class_labels=list(spec.class_labels),
        metric=config.metric,
        mode=config.mode,
        max_epochs=config.max_epochs,
        trials=trials,
        restored=restored,
    )
    trials.sort(key=lambda t: t.trial_id)  # deterministic order: ties go to the first trial
    scored = [t for t in trials if t.best_checkpoint_metrics is not None]
    if scored:
        pick = max if config.mode == "max" else min
        best = pick(scored, key=lambda t: t.best_checkpoint_metrics[config.metric])
        # the config that produced the best checkpoint (PBT may have changed it since)
        checkpoint_config = (best.best_checkpoint_metrics.get("config") or {}).get("train_loop_config")
        out.best_params = hyperparams(checkpoint_config) if checkpoint_config else best.hyperparams
        out.best_trial_id, out.best_checkpoint_path = best.trial_id, best.best_checkpoint_path
        out.best_val_accuracy = best.best_checkpoint_metrics.get("val_accuracy")
    return out
