"""Tuning end to end on a real local Ray cluster, real MLflow (sqlite) and a real Delta table.

One Ray cluster serves the whole module. The ASHA run goes through the Pipes
task script (``lib/training/train_task.py``) with a real Pipes context writing to
files, so the same run also proves the MLflow layout and the materialization metadata.
The search algorithms, the time budget and the pure config/stopper tests are in ``test_search.py``.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path

import mlflow
import pytest
import ray
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from rayml_assets.lib.common.contract import LakeSettings, MlflowSettings
from rayml_assets.lib.training.checkpoints import load_checkpoint_model
from rayml_assets.lib.training.contract import TrainTaskParams
from rayml_assets.lib.training.tracking import TAG_EXPERIMENT, TAG_ROLE, load_logged_model, mlflow_uris
from rayml_assets.lib.training.tuner import init_ray, run_tuning
from rayml_assets.lib.training.tuning_config import TuningConfig
from rayml_assets.lib.training.tuning_result import TuningInterrupted
from rayml_assets_tests.support.train_task_runs import run_pipes_task
from rayml_assets_tests.support.training_fixtures import write_digits_table

IMAGE_SIZE = 16
SEARCH = {"lr": {"loguniform": [0.02, 0.3]}, "momentum": {"uniform": [0.8, 0.95]}, "batch_size": {"grid": [8, 16]}}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ray_cluster():
    # 4 logical CPUs on 2 cores: two 2-worker trials at once, one torch thread per worker.
    resources = init_ray(num_cpus=4, object_store_memory=256 * 2**20)
    yield resources
    ray.shutdown()


@pytest.fixture(scope="module")
def workdir():
    # Not tmp_path_factory: concurrent pytest sessions on this machine prune
    # each other's /tmp/pytest-of-* folders, and this module runs for minutes.
    with tempfile.TemporaryDirectory(prefix="rayml-tuning-") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def digits(workdir):
    # version 0 is a smaller snapshot: training must read the pinned version 1
    write_digits_table(str(workdir / "lake"), n=100, image_size=IMAGE_SIZE)
    uri, version = write_digits_table(str(workdir / "lake"), n=500, image_size=IMAGE_SIZE)
    assert version == 1
    return uri, version


@pytest.fixture(scope="module")
def mlflow_settings(workdir) -> MlflowSettings:
    return MlflowSettings.local(workdir / "home", experiment_name="test-tuning")


@pytest.fixture(scope="module")
def asha_params(ray_cluster, digits, workdir, mlflow_settings) -> TrainTaskParams:
    config = TuningConfig(
        search_space=SEARCH,
        num_samples=2,
        max_epochs=2,
        image_size=IMAGE_SIZE,
        num_workers=2,
        cpus_per_worker=1,
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    return TrainTaskParams(
        lake=LakeSettings(root=str(workdir / "lake")),
        cleaned_version=digits[1],
        tuning=config,
        mlflow=mlflow_settings.model_copy(update={"ui_url": "http://127.0.0.1:5000"}),
        checkpoint_root=str(workdir / "ray_results"),
        reports_dir=str(workdir / "reports"),
        dagster_run_id="run-1",
        asset_key="tuned_model",
        git_sha="abc123",
    )


@pytest.fixture(scope="module")
def asha_task(asha_params, workdir):
    return run_pipes_task(workdir, asha_params, "asha")


def _materialization(messages: list[dict]) -> dict:
    [report] = [m for m in messages if m["method"] == "report_asset_materialization"]
    return report["params"]


# ---------------------------------------------------------------- ASHA + DDP through the Pipes task script


def test_asha_runs_four_ddp_trials_and_stops_some_early(asha_task):
    output, _ = asha_task
    result = output.result
    assert result.num_trials == 4 and result.num_errored == 0
    for trial in result.trials:
        assert trial.history, trial.trial_id
        assert {row["world_size"] for row in trial.history} == {2}, "every trial must be a 2-worker DDP run"
        # each trial trains with its own config (cosine schedule: epoch 1 runs at the base lr)
        assert trial.history[0]["lr"] == pytest.approx(trial.hyperparams["lr"])
    assert result.num_stopped_early >= 1
    assert result.epochs_used < result.epochs_full == 8
    assert any(t.last_epoch == 2 for t in result.trials)


def test_best_checkpoint_is_the_best_trial_and_loads(asha_task, digits):
    result = asha_task[0].result
    best = max(result.trials, key=lambda t: t.best_checkpoint_metrics["val_accuracy"])
    assert result.best_trial_id == best.trial_id
    assert result.best_params == best.hyperparams and result.best_params["batch_size"] in (8, 16)
    model, meta = load_checkpoint_model(result.best_checkpoint_path)
    assert meta["delta_version"] == digits[1] and meta["table_uri"] == digits[0]
    assert meta["class_labels"] == [str(d) for d in range(10)]
    assert result.best_val_accuracy == pytest.approx(best.best_checkpoint_metrics["val_accuracy"])


def test_pipes_logs_each_trial_and_reports_the_materialization(asha_task):
    output, messages = asha_task
    logs = [m["params"]["message"] for m in messages if m["method"] == "log"]
    for trial in output.result.trials:
        assert any(f"trial {trial.trial_id} epoch 1" in line for line in logs)
    report = _materialization(messages)
    metadata = report["metadata"]
    assert report["data_version"] == output.result.experiment_name
    assert metadata["search_algorithm"]["raw_value"] == "random" and metadata["time_budget_s"]["raw_value"] is None
    assert metadata["stopped_by_time_budget"]["raw_value"] is False and metadata["wall_time_s"]["raw_value"] > 0
    assert metadata["trials_run"]["raw_value"] == 4
    assert metadata["trials_stopped_early"]["raw_value"] == output.result.num_stopped_early
    assert metadata["epochs_used"]["raw_value"] < metadata["epochs_full_grid"]["raw_value"]
    assert metadata["best_model_uri"]["raw_value"].startswith("models:/")
    assert metadata["mlflow_run_url"]["raw_value"].endswith(output.parent_run_id)
    assert json.loads(json.dumps(metadata["best_params"]["raw_value"])) == output.result.best_params
    png = Path(metadata["learning_curves_png"]["raw_value"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlflow_parent_child_runs_dataset_and_model(asha_task, mlflow_settings, digits):
    output, _ = asha_task
    client = mlflow_settings.client()
    parent = client.get_run(output.parent_run_id)
    assert parent.data.tags["dagster_run_id"] == "run-1" and parent.data.tags["asset_key"] == "tuned_model"
    assert parent.data.tags["delta_version"] == str(digits[1]) and parent.data.tags["git_sha"] == "abc123"
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search_algorithm"] == "random" and parent.data.params["time_budget_s"] == "None"
    [dataset_input] = parent.inputs.dataset_inputs
    assert dataset_input.dataset.name == f"cleaned_images@v{digits[1]}"
    assert json.loads(dataset_input.dataset.source) == {"path": digits[0], "delta_table_version": digits[1]}

    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.info.run_id}'"
    )
    assert len(children) == 4
    by_trial = {t.trial_id: t for t in output.result.trials}
    for child in children:
        trial = by_trial[child.data.tags["rayml.trial_id"]]
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert sorted(steps) == [row["epoch"] for row in trial.history]
        assert float(child.data.params["lr"]) == pytest.approx(trial.hyperparams["lr"])

    model, meta = load_logged_model(output.model_uri, mlflow_settings)
    assert meta["class_labels"] == [str(d) for d in range(10)] and meta["delta_version"] == digits[1]
    assert hasattr(model, "embed")
    assert "class_labels.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    with mlflow_uris(mlflow_settings):
        info = mlflow.models.get_model_info(output.model_uri)
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, IMAGE_SIZE, IMAGE_SIZE]
    assert info.saved_input_example_info is not None
    assert info.metadata["class_labels"] == meta["class_labels"]


def test_rerunning_a_finished_task_restores_it_without_training(asha_task, asha_params, workdir, mlflow_settings):
    first, _ = asha_task
    results = sorted(Path(first.result.experiment_path).glob("*/result.json"))
    before = {p: p.read_bytes() for p in results}
    again, messages = run_pipes_task(workdir, asha_params.model_copy(update={"dagster_run_id": "run-2"}), "asha-again")
    assert again.result.restored
    assert {t.trial_id: t.epochs_trained for t in again.result.trials} == {
        t.trial_id: t.epochs_trained for t in first.result.trials
    }
    assert {p: p.read_bytes() for p in results} == before, "no trial may train again"
    assert not [
        m
        for m in messages
        if m["method"] == "log" and " epoch " in m["params"]["message"] and "trial " in m["params"]["message"]
    ]
    # the same MLflow parent run and model; no duplicate child runs
    assert again.parent_run_id == first.parent_run_id and again.model_uri == first.model_uri
    client = mlflow_settings.client()
    assert client.get_run(first.parent_run_id).data.tags["dagster_run_id"] == "run-2"
    parents = client.search_runs(
        [client.get_run(first.parent_run_id).info.experiment_id],
        f"tags.`{TAG_EXPERIMENT}` = '{first.result.experiment_name}' and tags.`{TAG_ROLE}` = 'parent'",
    )
    assert len(parents) == 1
    children = client.search_runs(
        [parents[0].info.experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{first.parent_run_id}'"
    )
    assert len(children) == 4


# ---------------------------------------------------------------- PBT


def test_pbt_exploits_a_better_trials_checkpoint(ray_cluster, digits, workdir):
    # synch: both trials reach each perturbation point before PBT ranks them, so the worse one
    # copies the better one's checkpoint. Two points (after epochs 1 and 2): Ray's PBT now and then
    # ranks a point before the donor has a checkpoint and skips that exploit.
    config = TuningConfig(
        search_space={"lr": {"grid": [0.001, 0.2]}, "batch_size": 16},
        max_epochs=3,
        image_size=IMAGE_SIZE,
        num_workers=1,
        scheduler={
            "type": "pbt",
            "perturbation_interval": 1,
            "quantile_fraction": 0.5,
            "synch": True,
            "hyperparam_mutations": {"lr": {"loguniform": [0.001, 0.3]}},
        },
    )
    result = run_tuning(
        config, table_uri=digits[0], version=digits[1], storage_path=str(workdir / "ray_results"), experiment_name="pbt"
    )
    assert result.num_trials == 2 and result.num_errored == 0
    ids = {t.trial_id for t in result.trials}
    exploited = [t for t in result.trials if t.restored_from]
    assert exploited, "PBT never copied a checkpoint between trials"
    for trial in exploited:
        assert set(trial.restored_from) <= ids - {trial.trial_id}
        # after the exploit the trial continues from the donor's epoch, not from scratch (the rows say where
        # it started; not last_epoch: Tune now and then drops an exploited trial's final row)
        restored_rows = [r for r in trial.history if r.get("restored_from") in trial.restored_from]
        assert restored_rows and all(r["start_epoch"] >= 1 for r in restored_rows)
        # ...with a perturbed or resampled copy of the donor's learning rate
        assert trial.hyperparams["lr"] not in (0.001, 0.2)


# ---------------------------------------------------------------- resume after an interruption


@pytest.mark.parametrize(
    "search",
    [
        {"search_space": {"lr": {"grid": [0.05, 0.1]}, "batch_size": 32}},
        # the restored Optuna study knows the finished trial and proposes only the missing one
        {
            "search_algorithm": "optuna",
            "search_space": {"lr": {"choice": [0.05, 0.1]}, "batch_size": 32},
            "num_samples": 2,
        },
    ],
    ids=["random", "optuna"],
)
def test_resume_after_interruption_does_not_retrain_finished_trials(ray_cluster, digits, workdir, search):
    config = TuningConfig(
        **search,
        max_epochs=1,
        image_size=IMAGE_SIZE,
        num_workers=1,
        max_concurrent_trials=1,
        scheduler={"type": "fifo"},
    )
    kwargs = {
        "table_uri": digits[0],
        "version": digits[1],
        "storage_path": str(workdir / "ray_results"),
        "experiment_name": f"resume-{config.search_algorithm}",
    }
    finished: list[str] = []

    def interrupt_after_first(event):
        if event.kind == "complete" and not finished:
            finished.append(event.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)  # what Tune does on Ctrl+C / a cancelled run

    with pytest.raises(TuningInterrupted) as interrupted:
        run_tuning(config, on_event=interrupt_after_first, **kwargs)
    assert interrupted.value.unfinished >= 1
    [done] = finished
    [done_dir] = [p for p in Path(interrupted.value.experiment_path).glob("TorchTrainer_*") if done in p.name]
    before = (done_dir / "result.json").read_bytes()

    events = []
    result = run_tuning(config, on_event=events.append, **kwargs)
    assert result.restored and result.num_trials == 2 and result.num_errored == 0
    assert (done_dir / "result.json").read_bytes() == before
    assert {e.trial_id for e in events if e.kind == "result"} == {t.trial_id for t in result.trials} - {done}
    assert all(t.epochs_trained == 1 for t in result.trials)

    # the name is pinned to its data and config: reusing it for another config is refused
    with pytest.raises(ValueError, match="another experiment name"):
        run_tuning(config.model_copy(update={"max_epochs": 2}), **kwargs)
