"""CONTRACT TESTS: task-cluster runs, the real ``PipesDatabricksClient`` against the fake workspace.

Pipes goes over DBFS, Ray on Spark is recorded by the emulated driver, and every request
is held to the SDK's definition of its endpoint (``support/fake_databricks.py``).
"""

import hashlib
import json

import pytest
from dagster import AssetExecutionContext, DagsterExecutionInterruptedError, asset
from databricks.sdk.service.jobs import JobsAPI

from rayml_assets.resources.compute import ComputeResource
from rayml_assets_tests.databricks.conftest import KEY_VAULT_SECRET, KEY_VAULT_SECRET_SHA256, ray_calls
from rayml_assets_tests.databricks.tasks.big_report_task import BIG_BYTES
from rayml_assets_tests.support.compute_runs import (
    DATABRICKS_TEST_TASKS,
    databricks_compute,
    fail_asset,
    materialize_logged,
    materialized_metadata,
    report_asset,
)

pytestmark = pytest.mark.contract


@asset
def big_asset(context: AssetExecutionContext, compute: ComputeResource):
    return compute.run(context, task="big_report", extras={"seed": 7}).get_materialize_result()


def test_contract_submit_poll_success_returns_metadata_and_logs(fake, deployed, capfd):
    """CONTRACT: submit -> PENDING -> RUNNING -> TERMINATED/SUCCESS, Pipes over DBFS, Ray on Spark."""
    result, text = materialize_logged(report_asset, databricks_compute(ray_tasks=["report"]))
    assert result.success, text
    (run,) = fake.runs.values()
    assert run.seen_states == ["PENDING", "RUNNING", "TERMINATING", "TERMINATED/SUCCESS"]
    assert fake.bad_auth == []

    meta = materialized_metadata(result, "report_asset")
    assert meta["echo"] == 42
    assert meta["on_databricks"] is True
    assert meta["rayml_profile"] == "sit"
    assert meta["token_in_env"] is False
    # the task read the storage secret from the scope; the request and the logs hold only its reference
    assert meta["storage_secret_sha256"] == KEY_VAULT_SECRET_SHA256
    assert KEY_VAULT_SECRET not in json.dumps(run.submission) + text
    assert "{{secrets/rayml-sit-kv/pipeline-client-secret}}" in json.dumps(run.submission)
    # Ray on Spark's address: the emulated driver's stand-in head on this machine
    assert meta["ray_address"] != "None" and f"Ray on Spark started at {meta['ray_address']}" in text
    # runtime keys consumed; the script sees its own extras and the effective extras["ray"]
    assert meta["extras_keys"] == "echo,ray"
    assert meta["Databricks Job Run URL"] == f"{fake.url}/#job/0/run/{run.run_id}"
    assert f"Databricks run {run.run_id} submitted: {fake.url}/#job/0/run/" in text
    assert "report.py logged through pipes" in text
    captured = capfd.readouterr()
    assert "report.py says hello on stdout" in captured.out + captured.err
    assert "report.py says hello on stderr" in captured.out + captured.err

    task = run.task
    env_vars = task["new_cluster"]["spark_env_vars"]
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(env_vars)
    assert fake.token not in json.dumps(run.submission)
    assert task["libraries"] == [{"whl": deployed.wheel}]
    assert task["spark_python_task"]["python_file"] == deployed.scripts["report"]
    assert run.submission["run_name"].startswith("rayml_assets sit report")
    assert [c["event"] for c in ray_calls(fake)] == ["setup", "shutdown"]
    # no per-worker size: one Ray worker per Spark worker, with all its CPUs and GPUs
    assert ray_calls(fake)[0] == {"event": "setup", "min_worker_nodes": 1, "max_worker_nodes": 2}
    assert list((fake.dbfs_root / "tmp").iterdir()) == []  # Pipes cleaned up its DBFS temp folders


def test_contract_ray_on_spark_as_asked_passes_rays_own_checks(fake, deployed, real_ray_on_spark_check):
    """CONTRACT: what the driver asked Ray on Spark for, checked by Ray 2.60's own code."""
    result, text = materialize_logged(report_asset, databricks_compute(ray_tasks=["report"], gpu_tasks=[]))
    assert result.success, text
    setup, _ = ray_calls(fake)
    real_ray_on_spark_check({k: v for k, v in setup.items() if k != "event"})


def test_contract_a_task_that_does_not_use_ray_starts_none(fake, deployed):
    """CONTRACT: drift and explain are not ray_tasks; such a task starts no Ray on Spark."""
    result, text = materialize_logged(report_asset, databricks_compute())  # ray_tasks: ["train"]
    assert result.success, text
    assert ray_calls(fake) == []
    meta = materialized_metadata(result, "report_asset")
    assert meta["extras_keys"] == "echo" and meta["ray_address"] == "None"


def test_contract_a_message_over_one_dbfs_read_arrives_whole(fake, deployed):
    """CONTRACT: a Pipes chunk over the 1 MB a DBFS read returns (the API default is 0.5 MB)."""
    compute = databricks_compute(tasks_package=DATABRICKS_TEST_TASKS)
    result, text = materialize_logged(big_asset, compute)
    assert result.success, text
    meta = materialized_metadata(result, "big_asset")
    assert len(meta["big"]) == BIG_BYTES
    assert hashlib.sha256(meta["big"].encode()).hexdigest() == meta["big_sha256"]
    chunk_reads = [p for m, p in fake.requests if p == "/api/2.0/dbfs/read"]
    assert len(chunk_reads) >= 2  # in 1 MB pieces: every one within the limit (no violation)


def test_contract_failed_remote_run_surfaces_error_and_logs(fake, deployed):
    """CONTRACT: a script that raises fails the asset with its message, trace and run URL."""
    result, text = materialize_logged(fail_asset, databricks_compute(ray_tasks=["fail"]))
    assert not result.success
    (run,) = fake.runs.values()
    assert run.seen_states[-1] == "TERMINATED/FAILED"
    assert "fail.py: the training data is empty (test failure)" in text
    assert "fail.py is about to fail" in text  # its Pipes log arrived before the failure
    assert f"Databricks run: {fake.url}/#job/0/run/{run.run_id}" in text
    assert "[fail trace]" in text  # from runs/get-output
    assert [c["event"] for c in ray_calls(fake)] == ["setup", "shutdown"]  # shut down on failure too


def test_contract_missing_wheel_fails_before_the_script(fake):
    """CONTRACT: nothing deployed -> the run fails at library install, and says so."""
    result, text = materialize_logged(report_asset, databricks_compute())
    assert not result.success
    assert "Library installation failed" in text


def test_contract_interrupted_dagster_run_cancels_databricks_run(fake, deployed, monkeypatch):
    """CONTRACT: when the Dagster run is interrupted while polling, the Databricks run is cancelled.

    Dagster raises DagsterExecutionInterruptedError inside the step when the run is
    terminated; here it is raised from the first poll that sees RUNNING, where it would land.
    """
    fake.hang = True
    real_get_run = JobsAPI.get_run
    interrupted = []

    def get_run(self, run_id, **kwargs):
        run = real_get_run(self, run_id, **kwargs)
        if run.state.life_cycle_state.value == "RUNNING" and not interrupted:
            interrupted.append(run_id)
            raise DagsterExecutionInterruptedError()
        return run

    monkeypatch.setattr(JobsAPI, "get_run", get_run)
    result, _ = materialize_logged(report_asset, databricks_compute())
    assert not result.success
    (run,) = fake.runs.values()
    assert interrupted == [run.run_id]
    assert ("POST", "/api/2.2/jobs/runs/cancel") in fake.requests
    assert run.seen_states[-1] == "TERMINATED/CANCELED"
