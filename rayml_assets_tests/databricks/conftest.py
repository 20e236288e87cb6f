"""Fixtures of the Databricks contract tests: the fake workspace, a deploy into it, logins, Ray's own rule."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from types import SimpleNamespace

import dagster._core.pipes.utils as pipes_utils
import pytest
from databricks.sdk.config import Config

from rayml_assets import deploy as deploy_mod
from rayml_assets.resources.compute import available_tasks
from rayml_assets.resources.databricks_compute import workspace_tasks_dir
from rayml_assets.settings import load_profile
from rayml_assets_tests.support.compute_runs import DATABRICKS_TEST_TASKS, TEST_TASKS
from rayml_assets_tests.support.fake_databricks import FakeDatabricks
from rayml_assets_tests.support.fake_databricks_envs import DriverEnvs


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    """The project wheel, built once per session (about 5 s here)."""
    return deploy_mod.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def driver_envs(tmp_path_factory):
    """The emulated drivers' Pythons, one per deployed wheel, shared by the session's fakes."""
    return DriverEnvs(tmp_path_factory.mktemp("driver_envs"))


# A recognisable fake secret in the fake's Key Vault-backed scope: never in a request, a log or metadata.
KEY_VAULT_SECRET = "rayml-fake-key-vault-secret-5f3a9c"
KEY_VAULT_SECRET_SHA256 = hashlib.sha256(KEY_VAULT_SECRET.encode()).hexdigest()


@contextmanager
def fake_workspace(root, driver_envs: DriverEnvs, mp: pytest.MonkeyPatch):
    """The fake workspace, logged in as the cloud profiles are (``auth: azure_client_secret``:
    the pipeline service principal's OAuth client credentials against the fake's Entra ID);
    fails on any contract violation when it closes."""
    # the Pipes reader waits this long for a closed message that a cancelled run never sends
    mp.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)
    with FakeDatabricks(root, driver_envs) as server:
        # the sit profile's storage_secret_refs; a value of its own, so a test sees where a task's came from
        server.put_secret("rayml-sit-kv", "pipeline-client-secret", KEY_VAULT_SECRET)
        mp.setenv("DATABRICKS_HOST", server.url)
        mp.delenv("DATABRICKS_TOKEN", raising=False)  # the SDK refuses two logins at once
        principal = server.auth.principal
        mp.setenv("AZURE_CLIENT_ID", principal.client_id)
        mp.setenv("AZURE_CLIENT_SECRET", principal.client_secret)
        mp.setenv("AZURE_TENANT_ID", principal.tenant_id)
        # 127.0.0.1 is in no Azure DNS zone: name the Azure cloud whose Entra ID is the fake.
        mp.setattr(Config, "databricks_environment", server.auth.azure_environment())
        yield server
    assert server.violations == [], "requests the real Databricks API refuses"


@pytest.fixture
def fake(tmp_path, monkeypatch, driver_envs):
    """A fake workspace per test (:func:`fake_workspace`); a test fails on any contract violation."""
    with fake_workspace(tmp_path / "workspace", driver_envs, monkeypatch) as server:
        yield server


@pytest.fixture
def azure_sp(fake):
    """The fake's Azure service principal, the login of the ``fake`` fixture."""
    return fake.auth.principal


@pytest.fixture
def pat(fake, monkeypatch):
    """A personal access token instead of the service principal (``auth: pat`` profiles)."""
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
    return fake.token


@pytest.fixture
def deployed(fake, wheel):
    """The wheel and every test task script in the fake workspace, as `make deploy` puts them."""
    client = deploy_mod.workspace_client_from_env(load_profile("sit").databricks.auth)
    result = deploy_mod.deploy("sit", client=client, wheel=wheel, tasks_package=TEST_TASKS)
    tasks_dir = workspace_tasks_dir(load_profile("sit").databricks)
    for task, path in available_tasks(DATABRICKS_TEST_TASKS).items():
        result.scripts[task] = f"{tasks_dir}/{task}.py"
        deploy_mod.upload(client, path, result.scripts[task])
    return result


def ray_calls(fake: FakeDatabricks) -> list[dict]:
    """The emulated driver's record of the ``ray.util.spark`` calls, in order."""
    if not fake.ray_log.exists():
        return []
    return [json.loads(line) for line in fake.ray_log.read_text().splitlines()]


class _Checked(Exception):
    """Ray on Spark got past its argument checks: here the real setup would start nodes."""


@pytest.fixture
def real_ray_on_spark_check(monkeypatch):
    """Run Ray's own ``setup_ray_cluster`` argument checks (ray/util/spark/cluster_init.py).

    Ray's Spark session becomes a stand-in Databricks cluster (DBR 18.0, stage scheduling,
    workers of 8 CPUs); the call stops where Ray would size memory and start nodes. The
    returned function raises Ray's own error for arguments Ray refuses.
    """
    from ray.util.spark import cluster_init, setup_ray_cluster

    worker = SimpleNamespace(collect=lambda: [(8, 0, 32 * 2**30)])
    context = SimpleNamespace(
        master="spark://driver:7077",
        getConf=lambda: SimpleNamespace(get=lambda key, default=None: default),
        parallelize=lambda *a: SimpleNamespace(map=lambda f: worker),
    )
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    monkeypatch.setattr(cluster_init, "get_spark_session", lambda: SimpleNamespace(sparkContext=context))
    monkeypatch.setattr(cluster_init, "_install_sigterm_signal", lambda: None)
    monkeypatch.setattr(cluster_init, "_create_resource_profile", lambda cpus, gpus: None)

    def stop(*args, **kwargs):
        raise _Checked

    monkeypatch.setattr(cluster_init, "get_avail_mem_per_ray_worker_node", stop)

    def check(kwargs: dict) -> None:
        try:
            setup_ray_cluster(**kwargs)
        except _Checked:
            return
        raise AssertionError("Ray on Spark went past the point this check stops at")

    return check
