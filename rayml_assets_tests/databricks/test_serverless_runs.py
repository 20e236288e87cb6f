"""CONTRACT TESTS: serverless runs, the real ``PipesDatabricksServerlessClient`` against the fake.

The task gets a serverless environment instead of a cluster, nothing but its CLI
parameters (the Pipes bootstrap), and Pipes goes over a Unity Catalog volume.
"""

import json

import pytest
from dagster import AssetExecutionContext, asset

from rayml_assets.lib.common.contract import ENV_KEY
from rayml_assets.resources.compute import ComputeResource
from rayml_assets_tests.databricks.conftest import KEY_VAULT_SECRET, KEY_VAULT_SECRET_SHA256, ray_calls
from rayml_assets_tests.support.compute_runs import (
    DATABRICKS_TEST_TASKS,
    databricks_compute,
    materialize_logged,
    materialized_metadata,
    report_asset,
)

pytestmark = pytest.mark.contract
VOLUME = "/Volumes/main/rayml/pipes"


@asset
def entry_asset(context: AssetExecutionContext, compute: ComputeResource):
    # the Ray settings a training asset sends under the sit profile (ray_address: auto)
    extras = {"echo": 5, "ray": {"address": "auto"}}
    return compute.run(context, task="entry_report", extras=extras).get_materialize_result()


def _serverless(**overrides):
    return databricks_compute(serverless=True, pipes_volume_path=VOLUME, **overrides)


def test_contract_serverless_task_entry_script_reports_through_pipes(fake, deployed):
    """CONTRACT: a task_entry script (as drift and explain are) starts on its Pipes CLI
    arguments, and its results come back over the volume; the profile's Ray address does not
    reach it."""
    result, text = materialize_logged(entry_asset, _serverless(tasks_package=DATABRICKS_TEST_TASKS))
    assert result.success, text
    (run,) = fake.runs.values()
    assert run.seen_states[-1] == "TERMINATED/SUCCESS"
    parameters = run.task["spark_python_task"]["parameters"]
    assert parameters[0::2] == ["--dagster-pipes-context", "--dagster-pipes-messages"]
    meta = materialized_metadata(result, "entry_asset")
    assert meta["echo"] == 5 and meta["on_databricks"] is True
    assert meta["rayml_profile"] == "sit"  # env travelled in extras
    assert meta["ray_address"] == "None"
    assert "ray address 'auto' dropped" in text
    assert "entry_report.py got echo=5" in text
    assert ray_calls(fake) == []
    assert list(fake.volume(f"{VOLUME}/tmp").iterdir()) == []  # Pipes cleaned up on the volume


def test_contract_serverless_run_over_unity_catalog_volume(fake, deployed):
    """CONTRACT: serverless submit with a serverless environment; Pipes over a UC volume and CLI args."""
    result, text = materialize_logged(report_asset, _serverless(ray_tasks=["report"]))
    assert result.success, text
    (run,) = fake.runs.values()
    task = run.task
    assert "new_cluster" not in task and task["environment_key"] == "rayml"
    assert "--dagster-pipes-context" in task["spark_python_task"]["parameters"]
    (env,) = run.submission["environments"]
    assert env["spec"]["dependencies"] == [deployed.wheel]
    meta = materialized_metadata(result, "report_asset")
    assert meta["echo"] == 42 and meta["rayml_profile"] == "sit"
    assert meta["extras_keys"] == "echo"
    assert meta["ray_address"] == "None"  # no Ray on Spark on serverless, even for a ray task
    assert meta["token_in_env"] is False
    # the task read the storage secret from the scope; the request and the logs hold only its reference
    assert meta["storage_secret_sha256"] == KEY_VAULT_SECRET_SHA256
    assert KEY_VAULT_SECRET not in json.dumps(run.submission) + text
    # serverless gets its env in the Pipes extras: the reference travels there, and dbutils reads it
    env = _serverless().remote_extras("report", {})[ENV_KEY]
    assert env["AZURE_CLIENT_SECRET"] == "{{secrets/rayml-sit-kv/pipeline-client-secret}}"
    assert ("GET", "/api/2.0/secrets/get") in fake.requests
    assert ray_calls(fake) == []
