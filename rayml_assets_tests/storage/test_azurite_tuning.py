"""Tuning with the lake, the Ray checkpoints and the reports on Azure URIs, against Azurite.

The training task script runs as on a cluster: the trial workers read the pinned Delta version
from the container, Ray writes its experiment and checkpoints there through the profile's
storage settings, a second run restores the experiment from the container without training,
and the best checkpoint loads back from its ``abfss://`` URI. No credential is pickled into
the experiment (Tune writes ``tuner.pkl`` beside the checkpoints).
"""

import pickle

import pytest
import ray
from deltalake import write_deltalake

from rayml_assets.lib.common import lake
from rayml_assets.lib.common import storage_options as so
from rayml_assets.lib.common.contract import LakeSettings, MlflowSettings
from rayml_assets.lib.training.checkpoints import load_checkpoint_model
from rayml_assets.lib.training.contract import TrainTaskParams
from rayml_assets.lib.training.tuner import init_ray
from rayml_assets.lib.training.tuning_config import TuningConfig
from rayml_assets_tests.storage.conftest import EMULATOR_KEY
from rayml_assets_tests.support.train_task_runs import run_pipes_task
from rayml_assets_tests.support.training_fixtures import digits_table

IMAGE_SIZE = 16


@pytest.fixture
def azure_ray(azure_storage):
    # started after azure_storage has set the connection string: the workers inherit it, as
    # Databricks nodes get theirs from the cluster's spark_env_vars
    init_ray(num_cpus=2, object_store_memory=128 * 2**20)
    yield
    ray.shutdown()


def _params(azurite, storage, prefix, tmp_path, run_id: str) -> TrainTaskParams:
    config = TuningConfig(
        search_space={"lr": 0.1, "batch_size": {"grid": [16, 32]}},
        max_epochs=2, image_size=IMAGE_SIZE, num_workers=1, cpus_per_worker=1,
    )
    return TrainTaskParams(
        lake=LakeSettings(root=azurite.uri("lake", f"{prefix}/lake"), storage=storage),
        cleaned_version=0,
        tuning=config,
        mlflow=MlflowSettings.local(tmp_path / "home", experiment_name="azurite-tuning"),
        checkpoint_root=azurite.uri("checkpoints", f"{prefix}/ray_results"),
        reports_dir=azurite.uri("reports", prefix),
        dagster_run_id=run_id, asset_key="tuned_model", git_sha="abc123",
    )


def test_tuning_checkpoints_and_restores_in_the_container(azurite, azure_storage, azure_prefix, azure_ray, tmp_path):
    params = _params(azurite, azure_storage, azure_prefix, tmp_path, "run-1")
    table = params.lake.table_uri(lake.CLEANED_IMAGES)
    write_deltalake(table, digits_table(300, IMAGE_SIZE), storage_options=so.delta_options(azure_storage))

    first, messages = run_pipes_task(tmp_path, params, "first")
    result = first.result
    assert result.num_trials == 2 and result.num_errored == 0
    assert result.experiment_path.startswith(params.checkpoint_root + "/")
    assert result.best_checkpoint_path.startswith(result.experiment_path + "/")

    blob_fs, root = so.filesystem(params.checkpoint_root, azure_storage)
    stored = blob_fs.find(root)
    assert any(path.endswith("/tuner.pkl") for path in stored)
    assert sum(path.endswith("/state.pt") for path in stored) >= 2, "every trial checkpoints into the container"
    for path in stored:  # the experiment, the checkpoints and what Tune pickled carry no credential
        assert EMULATOR_KEY.encode() not in blob_fs.cat_file(path), path
    assert EMULATOR_KEY not in str(messages)
    assert EMULATOR_KEY.encode() not in pickle.dumps(so.checkpoint_storage(params.checkpoint_root, azure_storage)[1])

    model, meta = load_checkpoint_model(result.best_checkpoint_path, azure_storage)
    assert meta["table_uri"] == table and meta["delta_version"] == 0 and meta["image_size"] == IMAGE_SIZE
    curves = first.metadata["learning_curves_png"]["raw_value"]
    assert curves.startswith(params.reports_dir + "/tuning/")
    curves_fs, curves_path = so.filesystem(curves, azure_storage)
    assert curves_fs.cat_file(curves_path)[:4] == b"\x89PNG"

    again, _ = run_pipes_task(tmp_path, params.model_copy(update={"dagster_run_id": "run-2"}), "again")
    assert again.result.restored
    assert {t.trial_id: t.epochs_trained for t in again.result.trials} == {
        t.trial_id: t.epochs_trained for t in result.trials
    }
    assert again.result.best_checkpoint_path == result.best_checkpoint_path
