"""Which tasks start Ray on Spark, and with arguments Ray's own checks accept (no workspace needed)."""

import inspect

import pytest

from rayml_assets.lib.monitoring.contract import DriftTaskParams, ExplainTaskParams
from rayml_assets.lib.training.contract import TrainTaskParams
from rayml_assets.resources.compute import available_tasks
from rayml_assets_tests.support.compute_runs import databricks_compute

CONTRACTS = {"train": TrainTaskParams, "drift": DriftTaskParams, "explain": ExplainTaskParams}


def test_ray_tasks_are_the_tasks_whose_contract_takes_ray_settings():
    compute = databricks_compute()
    assert set(CONTRACTS) == set(available_tasks())  # a new task script must be listed here
    for task, contract in CONTRACTS.items():
        uses_ray = "ray" in contract.model_fields
        assert (task in compute.ray_tasks) == uses_ray, task
        assert ("ray_on_spark" in compute.remote_extras(task, {})) == uses_ray, task


@pytest.mark.parametrize("gpu_tasks", [["train"], []], ids=["gpu-nodes", "cpu-nodes"])
def test_default_sizing_passes_rays_own_checks(gpu_tasks, real_ray_on_spark_check):
    from ray.util.spark import setup_ray_cluster

    spec = databricks_compute(gpu_tasks=gpu_tasks).remote_extras("train", {})["ray_on_spark"]
    named = {n for n, p in inspect.signature(setup_ray_cluster).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(spec) <= named  # its **kwargs would swallow a misspelt name
    assert spec == {"min_worker_nodes": 1, "max_worker_nodes": 2}
    real_ray_on_spark_check(spec)


def test_a_gpu_count_alone_is_what_ray_refuses(real_ray_on_spark_check):
    """The sizing CPU tasks used to get; Ray 2.60 refuses it before it starts anything."""
    with pytest.raises(ValueError, match="must be.*set together or unset together"):
        real_ray_on_spark_check({"min_worker_nodes": 1, "max_worker_nodes": 2, "num_gpus_worker_node": 0})
    real_ray_on_spark_check({"max_worker_nodes": 2, "num_cpus_worker_node": 4, "num_gpus_worker_node": 0})


def test_an_assets_own_sizing_is_checked_before_anything_is_submitted():
    compute = databricks_compute()
    own = {"max_worker_nodes": 4, "num_cpus_worker_node": 4, "num_gpus_worker_node": 1}
    assert compute.remote_extras("train", {"ray_on_spark": own})["ray_on_spark"] == own
    with pytest.raises(ValueError, match="num_gpus_worker_node alone"):
        compute.remote_extras("train", {"ray_on_spark": {"max_worker_nodes": 4, "num_gpus_worker_node": 0}})
    # a task that does not use Ray gets no Ray on Spark, even when an asset sends a sizing
    assert "ray_on_spark" not in compute.remote_extras("drift", {"ray_on_spark": own})


@pytest.mark.parametrize(
    ("token_secret", "expected"),
    [
        (None, {"RAY_AUTH_MODE": "disabled"}),
        ("rayml-sit/ray-auth-token", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "{{secrets/rayml-sit/ray-auth-token}}"}),
    ],
    ids=["default", "token-from-secret-scope"],
)
def test_the_task_cluster_carries_one_ray_auth_setting_to_driver_and_executors(token_secret, expected):
    """Ray 2.60's default token auth, unset on the executors, refuses the worker node (InvalidAuthToken):
    spark_env_vars reach the driver and every executor, so the setting lives there."""
    compute = databricks_compute(ray_auth_token_secret=token_secret)
    env = compute.new_cluster("train").spark_env_vars
    assert {k: env[k] for k in expected} == expected
    assert ("RAY_AUTH_TOKEN" in env) == bool(token_secret)


def test_a_ray_token_secret_is_a_scope_and_key_not_a_value():
    with pytest.raises(ValueError, match="ray_auth_token_secret"):
        databricks_compute(ray_auth_token_secret="{{secrets/a/b}}")
