"""The Tune side of a search, built from a :class:`TuningConfig`: param space, search algorithm, scheduler.

Used for a fresh ``Tuner`` only: a restored experiment brings back its pickled
searcher and scheduler with their state (Optuna's study, ASHA's rungs), so a
resumed search goes on learning from the trials it already saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rayml_assets.lib.training.ray_env import pin_train_v1
from rayml_assets.lib.training.tuning_config import SAMPLERS, TuningConfig

if TYPE_CHECKING:  # delta_stream imports torch
    from rayml_assets.lib.training.delta_stream import DataSpec

pin_train_v1()  # before the first import of ray.tune (which imports ray.train)

from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining  # noqa: E402
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchAlgorithm  # noqa: E402
from ray.tune.search.basic_variant import BasicVariantGenerator  # noqa: E402

# Ray warns that PBT with num_to_keep <= 2 can delete a donor's checkpoint
# before the trial exploiting it has restored from it (our flaky PBT test).
PBT_MIN_CHECKPOINTS = 3


def to_tune_domain(spec: Any) -> Any:
    """``{"loguniform": [1e-4, 1e-2]}`` → ``tune.loguniform(1e-4, 1e-2)``; a constant stays itself."""
    if not isinstance(spec, dict):
        return spec
    kind, args = next(iter(spec.items()))
    function, arity = SAMPLERS[kind]
    constructor = getattr(tune, function)
    return constructor(list(args)) if arity is None else constructor(*args)


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


def search_algorithm(config: TuningConfig) -> SearchAlgorithm | Searcher:
    """Random/grid sampling, or Optuna's TPE; seeded from ``config.seed``, capped at ``max_concurrent_trials``."""
    cap = config.max_concurrent_trials
    if config.search_algorithm == "random":
        # the cap goes on the generator: Tune ignores TuneConfig.max_concurrent_trials
        # when a search_alg (needed here for its seed) is given
        return BasicVariantGenerator(random_state=config.seed, max_concurrent=cap or 0)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    # TPE samples at random for its first n_startup_trials (Optuna's default 10 is the
    # whole run at our sizes): a third of the trials, at least 2, at most that default.
    startup = max(2, min(10, config.num_samples // 3))
    searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=startup))
    return ConcurrencyLimiter(searcher, max_concurrent=cap) if cap else searcher


def scheduler(config: TuningConfig):
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


def checkpoint_config(config: TuningConfig) -> tune.CheckpointConfig:
    keep = config.keep_checkpoints
    if config.scheduler.type == "pbt":
        keep = max(keep, PBT_MIN_CHECKPOINTS)
    return tune.CheckpointConfig(
        num_to_keep=keep, checkpoint_score_attribute=config.metric, checkpoint_score_order=config.mode
    )
