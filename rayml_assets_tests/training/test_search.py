"""The search: random/grid or Optuna TPE, the wall-time budget, and the config and stopper they come from.

The Ray tests share ``test_tuning.py``'s module fixtures (a 4-logical-CPU local
cluster, the tiny digits Delta table) and stay small: 1-worker trials, a few epochs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from rayml_assets.lib.training.checkpoints import load_checkpoint_model
from rayml_assets.lib.training.model_names import MODEL_NAMES
from rayml_assets.lib.training.search import (
    PBT_MIN_CHECKPOINTS,
    checkpoint_config,
    search_algorithm,
    to_tune_domain,
)
from rayml_assets.lib.training.stopper import PlateauTargetBudgetStopper, take_budget_stop
from rayml_assets.lib.training.tuner import run_tuning
from rayml_assets.lib.training.tuning_config import TuningConfig, default_experiment_name
from rayml_assets_tests.training.test_tuning import IMAGE_SIZE, digits, ray_cluster, workdir  # noqa: F401 (fixtures)

OPTUNA_SPACE = {
    "lr": {"loguniform": [0.02, 0.3]},
    "momentum": {"uniform": [0.8, 0.95]},
    "batch_size": {"choice": [8, 16]},
    "weight_decay": {"quniform": [0.0, 0.001, 0.0005]},
}


def _run(config: TuningConfig, digits, workdir, name: str, **kwargs):
    return run_tuning(
        config,
        table_uri=digits[0],
        version=digits[1],
        storage_path=str(workdir / "ray_results"),
        experiment_name=name,
        **kwargs,
    )


def _optuna_study(experiment_path: str):
    # Tune saves the base searcher (OptunaSearch's __dict__) beside the experiment state
    newest = max(Path(experiment_path).glob("searcher-state-*.pkl"))
    return pickle.loads(newest.read_bytes())["_ot_study"]


# ---------------------------------------------------------------- Optuna with ASHA (Ray)


def test_optuna_with_asha_proposes_every_trial_inside_the_space(ray_cluster, digits, workdir):
    config = TuningConfig(
        search_algorithm="optuna",
        search_space=OPTUNA_SPACE,
        num_samples=4,
        max_epochs=2,
        image_size=IMAGE_SIZE,
        num_workers=1,
        max_concurrent_trials=2,
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    result = _run(config, digits, workdir, "optuna-asha")
    assert result.search_algorithm == "optuna" and result.summary()["search_algorithm"] == "optuna"
    assert result.num_trials == 4 and result.num_errored == 0 and result.best_checkpoint_path
    for trial in result.trials:
        hp = trial.hyperparams
        assert 0.02 <= hp["lr"] <= 0.3 and 0.8 <= hp["momentum"] <= 0.95 and hp["batch_size"] in (8, 16)
        assert min(abs(hp["weight_decay"] - q) for q in (0.0, 0.0005, 0.001)) < 1e-12
        assert trial.history[0]["lr"] == pytest.approx(hp["lr"])  # trained with what Optuna proposed
    # every trial came from Optuna's study, which was told each trial's result
    study = _optuna_study(result.experiment_path)
    assert sorted(t.params["train_loop_config/lr"] for t in study.trials) == pytest.approx(
        sorted(t.hyperparams["lr"] for t in result.trials)
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4


# ---------------------------------------------------------------- the time budget (Ray)


def test_time_budget_ends_the_search_early_and_keeps_the_best_checkpoint(ray_cluster, digits, workdir):
    # far more work than the budget: 3 trials one at a time, 40 epochs each
    config = TuningConfig(
        search_space={"lr": {"grid": [0.05, 0.1, 0.2]}, "batch_size": 16},
        max_epochs=40,
        image_size=IMAGE_SIZE,
        num_workers=1,
        max_concurrent_trials=1,
        scheduler={"type": "fifo"},
        time_budget_s=20,
    )
    result = _run(config, digits, workdir, "time-budget")
    assert result.stopped_by_time_budget and result.budget_stop == "time_budget"
    assert result.summary()["stopped_by_time_budget"] is True and result.summary()["time_budget_s"] == 20
    assert 20 <= result.wall_time_s < 20 + 30
    assert result.num_errored == 0 and result.epochs_used < config.num_trials() * config.max_epochs
    _, meta = load_checkpoint_model(result.best_checkpoint_path)
    assert meta["delta_version"] == digits[1]

    # the ended search stays finished: a restore trains nothing and still reports the budget
    again = _run(config, digits, workdir, "time-budget")
    assert again.restored and again.stopped_by_time_budget
    assert {t.trial_id: t.epochs_trained for t in again.trials} == {t.trial_id: t.epochs_trained for t in result.trials}
    assert again.best_checkpoint_path == result.best_checkpoint_path


# ---------------------------------------------------------------- search pieces (no cluster)


def _first_proposal(config: TuningConfig) -> dict:
    searcher = search_algorithm(config)
    space = {"train_loop_config": {k: to_tune_domain(v) for k, v in config.search_space.items()}}
    searcher.set_search_properties(config.metric, config.mode, space)
    return searcher.suggest("trial-0")


def test_optuna_searcher_is_seeded_and_capped():
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    config = TuningConfig(search_algorithm="optuna", search_space=OPTUNA_SPACE, num_samples=6, seed=7)
    assert isinstance(search_algorithm(config), OptunaSearch)
    capped = search_algorithm(_with(config, max_concurrent_trials=2))
    assert isinstance(capped, ConcurrencyLimiter) and capped.max_concurrent == 2
    assert isinstance(capped.searcher, OptunaSearch)
    assert _first_proposal(config) == _first_proposal(config) != _first_proposal(_with(config, seed=8))
    assert isinstance(search_algorithm(TuningConfig()), BasicVariantGenerator)


def test_pbt_keeps_at_least_three_checkpoints_per_trial():
    pbt = TuningConfig(scheduler={"type": "pbt", "hyperparam_mutations": {"lr": {"uniform": [0.01, 0.1]}}})
    assert checkpoint_config(pbt).num_to_keep == PBT_MIN_CHECKPOINTS == 3
    assert checkpoint_config(_with(pbt, keep_checkpoints=5)).num_to_keep == 5
    assert checkpoint_config(TuningConfig()).num_to_keep == 2  # ASHA/FIFO keep what the config says


# ---------------------------------------------------------------- the stopper (pure)


def _feed(stopper, trial, values, start=1):
    return [stopper(trial, {"val_accuracy": v, "training_iteration": i}) for i, v in enumerate(values, start)]


def test_stopper_stops_a_trial_on_a_plateau():
    stopper = PlateauTargetBudgetStopper("val_accuracy", patience=2, min_delta=0.01)
    assert _feed(stopper, "a", [0.5, 0.6, 0.605, 0.61]) == [False, False, False, True]
    assert stopper.reasons == {"a": "plateau"}
    # another trial still improving is left alone
    assert _feed(stopper, "b", [0.1, 0.2, 0.3, 0.4]) == [False] * 4
    assert not stopper.stop_all()


def test_stopper_stops_at_target_and_honours_min_mode():
    stopper = PlateauTargetBudgetStopper("val_accuracy", target=0.9)
    assert _feed(stopper, "a", [0.5, 0.91]) == [False, True]
    assert stopper.reasons["a"] == "target"
    loss = PlateauTargetBudgetStopper("val_loss", mode="min", target=0.2, patience=1)
    assert loss("t", {"val_loss": 0.5}) is False
    assert loss("t", {"val_loss": 0.4}) is False
    assert loss("t", {"val_loss": 0.45}) is True and loss.reasons["t"] == "plateau"
    assert loss("u", {"val_loss": 0.1}) is True and loss.reasons["u"] == "target"


class _Clock:
    """A clock the test moves; module-level, so a stopper holding it can be pickled."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_stopper_budgets_end_the_experiment():
    clock = _Clock(100.0)
    stopper = PlateauTargetBudgetStopper("val_accuracy", time_budget_s=60, key="budget-test", clock=clock)
    assert not stopper.stop_all()  # the budget starts when Tune first asks, before any result
    clock.now = 159.0
    assert not stopper.stop_all()
    clock.now = 160.0
    assert stopper.stop_all() and stopper.budget_stop == "time_budget"
    assert take_budget_stop("budget-test") == "time_budget" and take_budget_stop("budget-test") is None
    # Tune pickles the stopper with the experiment: a restore starts a fresh budget
    restored = pickle.loads(pickle.dumps(stopper))  # its own copy of the clock, at 160
    assert not restored.stop_all() and restored.budget_stop is None
    restored.clock.now = 219.0
    assert not restored.stop_all()
    restored.clock.now = 220.0
    assert restored.stop_all() and restored.budget_stop == "time_budget"
    take_budget_stop("budget-test")

    epochs = PlateauTargetBudgetStopper("val_accuracy", epoch_budget=5)
    _feed(epochs, "a", [0.1, 0.2, 0.3])
    _feed(epochs, "b", [0.1])
    assert not epochs.stop_all()
    _feed(epochs, "b", [0.2], start=2)
    _feed(epochs, "b", [0.2], start=2)  # a repeated iteration (resume) is not counted twice
    assert epochs.stop_all() and epochs.budget_stop == "epoch_budget"


def test_stopper_takes_the_time_budget_from_the_top_level_config():
    stopper = PlateauTargetBudgetStopper.from_config(
        TuningConfig(time_budget_s=30, stopper={"patience": 2}), key="experiment"
    )
    assert (stopper.time_budget_s, stopper.patience, stopper.key) == (30, 2, "experiment")


def test_stopper_ignores_results_without_the_metric():
    stopper = PlateauTargetBudgetStopper("val_accuracy", patience=1, target=0.5)
    assert stopper("a", {"training_iteration": 1}) is False
    assert stopper("a", {"val_accuracy": float("nan"), "training_iteration": 2}) is False


# ---------------------------------------------------------------- config (pure)


def test_config_parses_every_kind_of_search_space():
    config = TuningConfig(
        search_space={
            "lr": {"loguniform": [1e-4, 1e-2]},
            "model": {"choice": ["small_cnn", "resnet18"]},
            "batch_size": {"grid": [32, 64]},
            "momentum": {"uniform": [0.8, 0.99]},
            "weight_decay": 1e-4,
        },
        num_samples=3,
    )
    assert config.num_trials() == 6
    assert TuningConfig.model_validate(config.model_dump(mode="json")) == config
    assert config.fingerprint() != TuningConfig(search_space=config.search_space, num_samples=4).fingerprint()


@pytest.mark.parametrize(
    "bad",
    [
        {"search_space": {"learning_rate": {"uniform": [0.1, 0.2]}}},  # unknown hyperparameter
        {"search_space": {"lr": {"loguniform": [0, 1]}}},
        {"search_space": {"lr": {"uniform": [0.2, 0.1]}}},
        {"search_space": {"lr": {"normal": [0, 1]}}},
        {"search_space": {"model": {"choice": []}}},
        {"scheduler": {"type": "pbt"}},  # no mutations
        {"scheduler": {"type": "pbt", "hyperparam_mutations": {"lr": {"grid": [0.1, 0.2]}}}},
        {"scheduler": {"type": "asha", "grace_period": 9}, "max_epochs": 3},
        {"scheduler": {"type": "hyperband"}},
        {"num_workers": 0},
        {"unexpected": 1},
        {"time_budget_s": 0},
        {"stopper": {"time_budget_s": 60}},  # the budget is the top-level time_budget_s
    ],
)
def test_config_rejects_mistakes(bad):
    with pytest.raises(ValueError):
        TuningConfig.model_validate(bad)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"search_algorithm": "optuna", "search_space": {"batch_size": {"grid": [8, 16]}}}, "use choice"),
        ({"search_algorithm": "hyperopt"}, "'random' or 'optuna'"),
        (
            {
                "search_algorithm": "optuna",
                "scheduler": {"type": "pbt", "hyperparam_mutations": {"lr": {"uniform": [0.01, 0.1]}}},
            },
            "pbt needs search_algorithm random",
        ),
        ({"search_space": {"model": "vgg11"}}, r"unknown \['vgg11'\]; known: \['small_cnn'"),
        ({"search_space": {"model": {"choice": ["small_cnn", "resnet"]}}}, r"unknown \['resnet'\]"),
        ({"search_space": {"model": {"uniform": [0, 1]}}}, "constant, choice or grid of model names"),
    ],
)
def test_config_explains_search_mistakes(bad, says):
    with pytest.raises(ValueError, match=says):
        TuningConfig.model_validate(bad)


def _with(config: TuningConfig, **changes) -> TuningConfig:
    return TuningConfig.model_validate({**config.model_dump(), **changes})


def test_fingerprint_and_trial_count_follow_the_search():
    base = TuningConfig(search_space={"lr": {"uniform": [0.01, 0.1]}, "batch_size": {"choice": [8, 16]}}, num_samples=4)
    optuna, budget = _with(base, search_algorithm="optuna"), _with(base, time_budget_s=60)
    assert len({c.fingerprint() for c in (base, optuna, budget)}) == 3
    assert default_experiment_name("t", 1, base) != default_experiment_name("t", 1, optuna)
    assert optuna.num_trials() == 4
    assert TuningConfig(search_space={"model": {"grid": list(MODEL_NAMES[:2])}}, num_samples=3).num_trials() == 6


def test_demo_config_is_valid_and_small_enough_for_two_cpus():
    from rayml_assets.lib.training.tuning_config import demo_tuning

    demo = demo_tuning()
    assert demo.num_workers * demo.cpus_per_worker + demo.trainer_cpus <= 2
    assert demo.search_space["model"] == "small_cnn" or "small_cnn" in demo.search_space["model"].get("choice", [])
