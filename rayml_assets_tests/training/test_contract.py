"""The train task's contract: what ``tuned_model`` sends is what ``train_task.py`` validates.

The round trip goes the real way: a Dagster step hands ``params.to_extras()`` to
``LocalCompute`` (a ``PipesSubprocessClient``), the task script opens Pipes with
``task_runtime`` and validates ``TrainTaskParams.from_extras(pipes.extras)``
(``pipes_scripts/train_task.py``: the real script's contract, without Ray).
"""

import json

import pytest
from dagster import AssetExecutionContext, Config, MaterializeResult, asset, materialize
from pydantic import ValidationError

from rayml_assets.lib.common.contract import RAY_KEY, LakeSettings, MlflowSettings, RaySettings
from rayml_assets.lib.common.pipes_runtime import ray_with_address
from rayml_assets.lib.training.contract import TrainTaskParams
from rayml_assets.lib.training.tuning_config import TuningConfig
from rayml_assets.resources.compute import ComputeResource, LocalCompute

PROBES = "rayml_assets_tests.training.pipes_scripts"


def _params(tmp_path) -> TrainTaskParams:
    """Every field set, nested models away from their defaults."""
    return TrainTaskParams(
        lake=LakeSettings(root=str(tmp_path / "lake"), storage_options={"azure_storage_use_emulator": "true"}),
        cleaned_version=7,
        tuning=TuningConfig(
            search_space={"lr": {"loguniform": [0.01, 0.2]}, "batch_size": {"grid": [16, 32]}, "momentum": 0.85},
            num_samples=2,
            max_epochs=4,
            scheduler={"type": "asha", "grace_period": 2, "reduction_factor": 3},
            stopper={"patience": 2, "target": 0.99},
            num_workers=1,
            sample_fraction=0.5,
        ),
        mlflow=MlflowSettings.local(tmp_path / "home", experiment_name="contract").model_copy(
            update={"ui_url": "http://127.0.0.1:5000"}
        ),
        ray=RaySettings(address="ray://head:10001", num_cpus=3),
        checkpoint_root=str(tmp_path / "ray_results"),
        reports_dir=str(tmp_path / "reports"),
        experiment_name="tune-contract",
        dagster_run_id="run-1",
        asset_key="tuned_model",
        git_sha="abc123",
    )


class SendConfig(Config):
    extras_json: str


@asset(key="tuned_model")
def send(context: AssetExecutionContext, config: SendConfig, compute: ComputeResource) -> MaterializeResult:
    """What tuned_model does with its params, minus building them: any extras, to the 'train' task."""
    return compute.run(context, task="train", extras=json.loads(config.extras_json)).get_materialize_result()


def _send(extras: dict, instance):
    return materialize(
        [send],
        instance=instance,
        resources={"compute": LocalCompute(profile="local", tasks_package=PROBES)},
        run_config={"ops": {"tuned_model": {"config": {"extras_json": json.dumps(extras)}}}},
        raise_on_error=False,
    )


def _task_script_errors(instance, run_id: str) -> list:
    """The exceptions the task script reported when Pipes closed (the engine events Dagster records for them)."""
    return [
        entry.dagster_event.engine_event_data.error
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None and "closed with exception" in (entry.user_message or "")
    ]


def test_params_round_trip_through_the_pipes_task_script(tmp_path, instance):
    params = _params(tmp_path)
    result = _send(params.to_extras(), instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node("tuned_model")
    received = materialization.metadata["params"].value
    assert received == params.to_extras()
    assert TrainTaskParams.from_extras(received) == params
    assert materialization.metadata["trials_run"].value == params.tuning.num_trials() == 4


def test_an_unknown_key_fails_validation_in_the_task_script(tmp_path, instance):
    extras = {**_params(tmp_path).to_extras(), "ray_address": "auto"}  # the old flat key
    result = _send(extras, instance)
    assert not result.success and not result.asset_materializations_for_node("tuned_model")
    [error] = _task_script_errors(instance, result.run_id)
    assert error.cls_name == "ValidationError" and "TrainTaskParams" in error.message
    assert "ray_address" in error.message and "Extra inputs are not permitted" in error.message


@pytest.mark.parametrize(
    "rename",
    [
        # the old flat keys of TrainJobParams
        lambda e: {**{k: v for k, v in e.items() if k != "mlflow"}, "mlflow_tracking_uri": e["mlflow"]["tracking_uri"]},
        lambda e: {**{k: v for k, v in e.items() if k != RAY_KEY}, "ray_address": None, "ray_num_cpus": 2},
        # a renamed nested field, and an unknown one in the tuning config
        lambda e: {**e, "mlflow": {**{k: v for k, v in e["mlflow"].items() if k != "experiment_name"}, "exp": "x"}},
        lambda e: {**e, RAY_KEY: {"adress": "auto"}},
        lambda e: {**e, "tuning": {**e["tuning"], "num_trials": 3}},
        # a required field left out
        lambda e: {k: v for k, v in e.items() if k != "cleaned_version"},
    ],
)
def test_renamed_unknown_or_missing_keys_fail_validation(tmp_path, rename):
    extras = _params(tmp_path).to_extras()
    with pytest.raises(ValidationError):
        TrainTaskParams.from_extras(rename(extras))


def test_the_runtime_can_point_the_task_at_ray_on_spark(tmp_path):
    # On a Databricks task cluster, task_runtime writes Ray on Spark's address into extras["ray"].
    params = _params(tmp_path)
    extras = params.to_extras()
    extras[RAY_KEY] = ray_with_address(extras, "127.0.0.1:6379", override=True)
    assert TrainTaskParams.from_extras(extras).ray == RaySettings(address="127.0.0.1:6379", num_cpus=3)
    # ...and LocalCompute does not replace the address the asset set (None included: a local Ray).
    local = {**params.to_extras(), RAY_KEY: {"address": None}}
    local[RAY_KEY] = ray_with_address(local, "auto", override=False)
    assert TrainTaskParams.from_extras(local).ray.address is None
