"""Ray on a real Spark cluster: pip's pyspark in ``local-cluster`` mode (a master, a worker JVM and
its executors, Java 17), started with the environment a Databricks task cluster gets from the
profile (``spark_env_vars``, on the driver and on every executor), then ``ray_on_spark`` exactly as
a task script runs it, and a Ray Train trial on that Ray cluster.

Starting the Ray-on-Spark cluster takes about 90 s here, so one module-scoped cluster serves the
test. What the Databricks runtime gives a cluster and pip's pyspark does not is set by the fixture:
``PYSPARK_PYTHON`` (the executors' interpreter) and the virtualenv's ``bin`` on ``PATH`` (Ray on
Spark runs the ``ray`` CLI in the executors), and the secret scope resolving the
``{{secrets/<scope>/<key>}}`` reference the way Databricks does when the cluster starts.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import ray

from rayml_assets.lib.common.pipes_runtime import ray_on_spark
from rayml_assets.lib.common.contract import RaySettings
from rayml_assets.lib.training.tuner import connect, run_tuning
from rayml_assets.lib.training.tuning_config import TuningConfig
from rayml_assets_tests.support.compute_runs import databricks_compute
from rayml_assets_tests.support.training_fixtures import write_digits_table

SECRET_SCOPE = {"rayml-sit/ray-auth-token": "rayfaketoken-0123456789abcdef"}  # a recognisable fake
MASTER = "local-cluster[1,2,3072]"  # one Spark worker with 2 cores: one Ray worker node


def _reload_ray_auth() -> None:
    """Ray reads RAY_AUTH_MODE and the token once per process; a task process has them from its start."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _resolve_secret_references(env: dict[str, str]) -> dict[str, str]:
    """What Databricks does to ``spark_env_vars`` values when the cluster starts."""
    return {k: re.sub(r"\{\{secrets/([^}]+)\}\}", lambda m: SECRET_SCOPE[m.group(1)], v) for k, v in env.items()}


@pytest.fixture(scope="module")
def compute():
    # Only Ray's authentication here: the storage login's references are tested in common/test_compute.py.
    return databricks_compute(ray_auth_token_secret="rayml-sit/ray-auth-token", storage_secret_refs={})


@pytest.fixture(scope="module")
def task_cluster(compute):
    """A Spark cluster whose driver and executors carry the task cluster's ``spark_env_vars``."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    runtime = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYSPARK_PYTHON": sys.executable}
    env = {**_resolve_secret_references(compute.spark_env_vars()), **runtime}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _reload_ray_auth()
    builder = SparkSession.builder.master(MASTER).config("spark.driver.memory", "1g").config("spark.ui.enabled", "false")
    for key, value in env.items():
        builder = builder.config(f"spark.executorEnv.{key}", value)
    spark = builder.getOrCreate()
    try:
        yield env
    finally:
        spark.stop()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        _reload_ray_auth()


def test_two_ddp_trials_train_on_ray_on_spark_with_the_task_clusters_auth(compute, task_cluster, tmp_path, capfd):
    assert task_cluster["RAY_AUTH_MODE"] == "token" and task_cluster["RAY_AUTH_TOKEN"] == SECRET_SCOPE["rayml-sit/ray-auth-token"]
    assert "{{secrets/rayml-sit/ray-auth-token}}" in compute.spark_env_vars().values()  # the request holds a reference only
    uri, version = write_digits_table(str(tmp_path / "lake"), n=200, image_size=16)
    spec = compute.remote_extras("train", {})["ray_on_spark"]
    with ray_on_spark(spec) as address:
        try:
            _, auth = connect(RaySettings(address=address))  # as the train task joins it
            assert auth.mode == "token"
            nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            assert len(nodes) >= 2, "a Ray head on the driver and a Ray worker node in a Spark executor"
            config = TuningConfig(
                search_space={"lr": {"grid": [0.05, 0.1]}, "batch_size": 32}, max_epochs=1, image_size=16,
                channels=1, num_workers=2, cpus_per_worker=1, trainer_cpus=0, scheduler={"type": "fifo"},
            )  # 2 trials, each a 2-worker DDP run, through the normal training code
            result = run_tuning(config, table_uri=uri, version=version, storage_path=str(tmp_path / "ray_results"))
        finally:
            ray.shutdown()
    assert len(result.trials) == 2 and result.num_errored == 0
    for trial in result.trials:
        assert trial.last_epoch == 1 and trial.best_checkpoint_path
        assert trial.best_checkpoint_metrics["world_size"] == 2  # a 2-rank DDP run
        assert set(trial.worker_nodes) <= set(nodes)
    out, err = capfd.readouterr()
    assert SECRET_SCOPE["rayml-sit/ray-auth-token"] not in out + err
