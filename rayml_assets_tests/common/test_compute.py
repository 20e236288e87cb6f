"""The compute resources, the task runtime and deploy.

Three kinds of test live here:

- unit tests of the Databricks task each profile submits (no I/O);
- the LOCAL path for real: test-only Pipes scripts (``rayml_assets_tests/support/pipes_scripts``)
  run through ``LocalCompute`` inside ``dagster.materialize``;
- CONTRACT TESTS (``test_contract_*``, marker ``contract``): the real
  ``PipesDatabricksClient`` / ``PipesDatabricksServerlessClient`` and a real
  ``databricks.sdk.WorkspaceClient`` against ``FakeDatabricks``, a fake of the Databricks
  REST API on 127.0.0.1 that "runs" submitted tasks with an emulated driver. They show the
  submit / poll / cancel path, Pipes over DBFS and UC volumes, failure reporting and
  deploy, to the shape of the public API. They cannot show what only a workspace can
  (cluster start, library install, Spark, GPUs, permissions): see docs/databricks.md.
"""


import inspect
import json

import dagster._core.pipes.utils as pipes_utils
import pytest
from dagster import (
    AssetExecutionContext,
    DagsterExecutionInterruptedError,
    DagsterInstance,
    Definitions,
    asset,
    materialize,
)
from dagster_databricks import PipesDatabricksClient
from dagster_databricks.pipes import PipesDatabricksServerlessClient
from dagster_pipes import PipesContext
from databricks.sdk.service.jobs import JobsAPI

from rayml_assets import deploy as deploy_mod
from rayml_assets.lib.common import pipes_runtime as runtime
from rayml_assets.resources.compute import (
    ComputeResource,
    DuplicateTaskError,
    LocalCompute,
    SecretInPayloadError,
    UnknownTaskError,
    available_tasks,
    check_no_secrets,
    compute_for_profile,
    project_version,
    wheel_filename,
)
from rayml_assets.resources.databricks_compute import (
    DatabricksClusterConfig,
    DatabricksCompute,
    DatabricksCredentialsError,
    credentials_for,
)
from rayml_assets.settings import DatabricksSettings, ProfileError, load_profile
from rayml_assets.telemetry import TELEMETRY_OFF
from rayml_assets_tests.support.fake_databricks import FakeDatabricks

TEST_TASKS = "rayml_assets_tests.support.pipes_scripts"
REMOTE_PROFILES = ["sit", "uat", "prod"]
SECRET_ENV = {
    "DATABRICKS_TOKEN": "dapi-super-secret-0001",
    "AZURE_CLIENT_SECRET": "azure-super-secret-0002",
}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


@asset
def report_asset(context: AssetExecutionContext, compute: ComputeResource):
    return compute.run(context, task="report", extras={"echo": 42}).get_materialize_result()


@asset
def fail_asset(context: AssetExecutionContext, compute: ComputeResource):
    return compute.run(context, task="fail", extras={}).get_materialize_result()


def _materialize(asset_def, compute: ComputeResource):
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [asset_def], resources={"compute": compute}, instance=instance, raise_on_error=False
    )
    # Everything a person sees in the run's log: messages, and errors with their causes.
    lines = []
    for entry in instance.all_logs(result.run_id):
        lines.append(entry.user_message)
        error = getattr(entry.dagster_event and entry.dagster_event.event_specific_data, "error", None)
        if error is not None:
            lines.append(error.to_string())
    return result, "\n".join(lines)


def _metadata(result, node: str) -> dict:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def _databricks_compute(profile: str = "sit", **cluster_overrides) -> DatabricksCompute:
    settings = load_profile(profile).databricks.model_copy(update=cluster_overrides)
    return DatabricksCompute(
        profile=profile,
        cluster=DatabricksClusterConfig(**settings.model_dump()),
        credentials=credentials_for(settings.auth),
        wheel_version=project_version(),
        tasks_package=TEST_TASKS,
        poll_interval_seconds=0.1,
        message_poll_interval_seconds=0.1,
    )


# ---------------------------------------------------------------------------------------
# unit: the submitted task, per profile
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REMOTE_PROFILES)
def test_profile_task_uses_runtime_nodes_autoscale_wheel(name, monkeypatch):
    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)
    profile = load_profile(name)
    compute = compute_for_profile(profile)
    assert isinstance(compute, DatabricksCompute)
    settings = profile.databricks
    wheel = f"{settings.workspace_wheel_dir}/{wheel_filename(project_version())}"

    train = compute.submit_task("train")
    cluster = train.new_cluster
    assert cluster.spark_version == settings.spark_version  # the GPU ML runtime
    assert "-gpu-ml-" in cluster.spark_version
    assert cluster.node_type_id == settings.gpu_node_type_id
    assert (cluster.autoscale.min_workers, cluster.autoscale.max_workers) == (
        settings.min_workers,
        settings.max_workers,
    )
    assert [lib.whl for lib in train.libraries] == [wheel]
    assert train.spark_python_task.python_file.endswith(f"/{name}/tasks/train.py")
    assert cluster.spark_env_vars["RAYML_PROFILE"] == name
    for key, value in TELEMETRY_OFF.items():
        assert cluster.spark_env_vars[key] == value

    drift = compute.submit_task("drift").new_cluster
    assert drift.node_type_id == settings.node_type_id
    assert drift.spark_version == settings.spark_version.replace("-gpu-ml-", "-cpu-ml-")

    as_json = json.dumps([train.as_dict(), compute.remote_extras("train", {})])
    for secret_name, secret in SECRET_ENV.items():
        assert secret not in as_json and secret_name not in as_json


def test_profiles_differ_only_in_config():
    computes = {name: compute_for_profile(load_profile(name)) for name in REMOTE_PROFILES}
    max_workers = {name: c.cluster.max_workers for name, c in computes.items()}
    assert max_workers == {"sit": 2, "uat": 4, "prod": 8}
    wheel_dirs = {c.wheel_path.rsplit("/", 1)[0] for c in computes.values()}
    assert len(wheel_dirs) == 3  # one deploy location per environment


def test_local_profile_runs_locally():
    compute = compute_for_profile(load_profile("local"))
    assert isinstance(compute, LocalCompute)
    assert compute.profile == "local"


def test_serverless_variant_uses_environment_and_volume():
    compute = _databricks_compute(serverless=True, pipes_volume_path="/Volumes/main/rayml/pipes")
    task = compute.submit_task("drift")
    assert task.new_cluster is None and task.libraries is None
    assert task.environment_key == "rayml"
    (environment,) = compute.submit_args(_FakeContext(), "drift")["environments"]
    assert environment.environment_key == "rayml"
    assert environment.spec.dependencies == [compute.wheel_path]
    extras = compute.remote_extras("drift", {"x": 1}, {"EXTRA": "1"})
    assert "ray_on_spark" not in extras  # no Spark cluster to host Ray
    assert extras["rayml_env"]["RAYML_PROFILE"] == "sit" and extras["rayml_env"]["EXTRA"] == "1"
    client = compute.pipes_client(workspace_client=_NoNetworkClient())
    assert isinstance(client, PipesDatabricksServerlessClient)
    assert client.volume_path == "/Volumes/main/rayml/pipes"


def test_serverless_needs_a_volume():
    profile = load_profile("sit").model_copy(
        update={"databricks": DatabricksSettings(serverless=True)}
    )
    with pytest.raises(ProfileError, match="pipes_volume_path"):
        compute_for_profile(profile)


def test_pool_serves_cpu_jobs_and_policy_applies():
    compute = _databricks_compute(instance_pool_id="pool-1", policy_id="policy-1")
    drift = compute.submit_task("drift").new_cluster
    assert drift.instance_pool_id == "pool-1" and drift.node_type_id is None
    train = compute.submit_task("train").new_cluster
    assert train.instance_pool_id is None and train.node_type_id == compute.cluster.gpu_node_type_id
    assert train.policy_id == "policy-1" and train.apply_policy_default_values is True
    assert isinstance(compute.pipes_client(_NoNetworkClient()), PipesDatabricksClient)


def test_ray_on_spark_sizing_matches_real_ray_signature():
    import ray.util.spark

    params = inspect.signature(ray.util.spark.setup_ray_cluster).parameters
    compute = _databricks_compute()
    for task in ("train", "drift"):
        spec = compute.remote_extras(task, {})["ray_on_spark"]
        assert set(spec) <= set(params), f"{set(spec) - set(params)} not accepted by Ray"
    assert compute.remote_extras("drift", {})["ray_on_spark"]["num_gpus_worker_node"] == 0
    assert compute.remote_extras("train", {})["ray_on_spark"]["max_worker_nodes"] == 2


def test_azure_service_principal_credentials_come_from_env_vars():
    creds = credentials_for("azure_client_secret")
    assert creds.token is None
    assert creds.azure_credentials.azure_client_secret.env_var_name == "AZURE_CLIENT_SECRET"
    assert credentials_for("pat").token.env_var_name == "DATABRICKS_TOKEN"


@pytest.mark.parametrize("compute", [LocalCompute(tasks_package=TEST_TASKS), _databricks_compute()])
def test_unknown_task_is_a_typed_error(compute):
    with pytest.raises(UnknownTaskError, match=r"'trian'.*known tasks: \['fail', 'report'\]"):
        compute.run(_FakeContext(), task="trian", extras={})


def test_the_real_tasks_are_one_per_domain_script():
    assert {name: path.parent.name for name, path in available_tasks().items()} == {
        "drift": "monitoring",
        "explain": "monitoring",
        "train": "training",
    }


def test_a_task_name_defined_in_two_domains_is_an_error(tmp_path, monkeypatch):
    for domain in ("alpha", "beta"):
        (tmp_path / "dup_tasks" / domain).mkdir(parents=True)
        (tmp_path / "dup_tasks" / domain / "__init__.py").write_text("")
        (tmp_path / "dup_tasks" / domain / "score_task.py").write_text("")
    (tmp_path / "dup_tasks" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DuplicateTaskError, match=r"'score'.*dup_tasks\.alpha\.score_task.*dup_tasks\.beta"):
        available_tasks("dup_tasks")


def test_secrets_never_travel_in_extras_or_env(monkeypatch):
    monkeypatch.setenv("DATABRICKS_TOKEN", SECRET_ENV["DATABRICKS_TOKEN"])
    compute = LocalCompute(tasks_package=TEST_TASKS)
    with pytest.raises(SecretInPayloadError, match="api_token"):
        compute.run(_FakeContext(), task="report", extras={"cfg": {"api_token": "x"}})
    with pytest.raises(SecretInPayloadError, match="secret from the environment"):
        compute.run(_FakeContext(), task="report", extras={"auth": [SECRET_ENV["DATABRICKS_TOKEN"]]})
    with pytest.raises(SecretInPayloadError, match="AZURE_CLIENT_SECRET"):
        compute.run(_FakeContext(), task="report", extras={}, env={"AZURE_CLIENT_SECRET": "x"})
    check_no_secrets(extras={"max_tokens": 5, "tokenizer": "bpe", "secretary": "ok"})


def test_definitions_validate_without_credentials_and_run_names_missing_env(monkeypatch):
    for key in ("DATABRICKS_HOST", "DATABRICKS_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    compute = compute_for_profile(load_profile("sit"))
    Definitions.validate_loadable(
        Definitions(assets=[report_asset], resources={"compute": compute})
    )
    result, text = _materialize(report_asset, compute)
    assert not result.success
    assert "DATABRICKS_HOST" in text


def test_empty_token_is_reported_not_sent(monkeypatch):
    # importing dagster_databricks leaves DATABRICKS_TOKEN="" behind when it was unset
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_TOKEN", "")
    result, text = _materialize(report_asset, _databricks_compute())
    assert not result.success
    assert "Databricks credentials missing: set DATABRICKS_HOST, DATABRICKS_TOKEN" in text


def test_runtime_picks_pipes_io_for_each_launcher(monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert runtime.pipes_io() == {}
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    monkeypatch.setattr("sys.argv", ["train.py"])
    io = runtime.pipes_io()
    assert type(io["context_loader"]).__name__ == "PipesDbfsContextLoader"
    assert type(io["message_writer"]).__name__ == "PipesDbfsMessageWriter"
    monkeypatch.setattr("sys.argv", ["train.py", "--dagster-pipes-context", "e30="])
    io = runtime.pipes_io()
    assert type(io["params_loader"]).__name__ == "PipesCliArgsParamsLoader"
    assert type(io["context_loader"]).__name__ == "PipesUnityCatalogVolumesContextLoader"
    assert type(io["message_writer"]).__name__ == "PipesUnityCatalogVolumesMessageWriter"


def test_runtime_outside_dagster_yields_no_ray_address(monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("DAGSTER_PIPES_CONTEXT", raising=False)
    monkeypatch.setattr(PipesContext, "_instance", None)  # the singleton must not leak
    with pytest.warns(Warning), runtime.task_runtime() as (_, ray_address):
        assert ray_address is None


class _FakeContext:
    """Just enough context for code paths that fail before Pipes starts."""

    run_id = "00000000-0000-0000-0000-000000000000"


class _NoNetworkClient:
    """Stands in for a WorkspaceClient where only construction happens."""

    api_client = None


# ---------------------------------------------------------------------------------------
# the LOCAL path, for real
# ---------------------------------------------------------------------------------------


def test_local_compute_runs_script_and_returns_metadata():
    compute = LocalCompute(profile="local", tasks_package=TEST_TASKS, ray_address=None)
    result, text = _materialize(report_asset, compute)
    assert result.success
    meta = _metadata(result, "report_asset")
    assert meta["echo"] == 42
    assert meta["extras_keys"] == "echo,ray"  # the Ray address travels in extras["ray"]
    assert meta["ray_address"] == "None"  # caller starts a local Ray
    assert meta["on_databricks"] is False
    assert meta["rayml_profile"] == "local"
    assert meta["ray_usage_stats"] == "0"
    assert "report.py logged through pipes" in text


@asset
def report_pinned_ray_asset(context: AssetExecutionContext, compute: ComputeResource):
    extras = {"echo": 7, "ray": {"address": "ray://head:10001", "num_cpus": 2}}
    return compute.run(context, task="report", extras=extras).get_materialize_result()


def test_local_compute_keeps_the_ray_address_the_asset_set():
    compute = LocalCompute(profile="local", tasks_package=TEST_TASKS, ray_address="auto")
    result, text = _materialize(report_pinned_ray_asset, compute)
    assert result.success, text
    meta = _metadata(result, "report_pinned_ray_asset")
    assert meta["extras_keys"] == "echo,ray"
    assert meta["ray_address"] == "ray://head:10001"  # the asset's, not the resource's "auto"


def test_local_compute_failing_script_fails_asset_with_its_message():
    result, text = _materialize(fail_asset, LocalCompute(tasks_package=TEST_TASKS))
    assert not result.success
    assert "fail.py: the training data is empty (test failure)" in text
    assert "ValueError" in text


# ---------------------------------------------------------------------------------------
# CONTRACT TESTS against FakeDatabricks
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    """The project wheel, built once per session (about 5 s here)."""
    return deploy_mod.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def fake(tmp_path, monkeypatch):
    # the Pipes reader waits this long for a closed message that a cancelled run never sends
    monkeypatch.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)
    with FakeDatabricks(tmp_path / "workspace") as server:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", server.token)
        yield server


@pytest.fixture
def deployed(fake, wheel):
    """The wheel and the test task scripts deployed into the fake workspace, as `make deploy` does."""
    client = deploy_mod.workspace_client_from_env("pat")
    return deploy_mod.deploy("sit", client=client, wheel=wheel, tasks_package=TEST_TASKS)


def _ray_calls(fake: FakeDatabricks) -> list[dict]:
    if not fake.ray_log.exists():
        return []
    return [json.loads(line) for line in fake.ray_log.read_text().splitlines()]


@pytest.mark.contract
def test_contract_submit_poll_success_returns_metadata_and_logs(fake, deployed, capfd):
    """CONTRACT: submit -> PENDING -> RUNNING -> TERMINATED/SUCCESS, Pipes over DBFS."""
    result, text = _materialize(report_asset, _databricks_compute())
    assert result.success, text
    (run,) = fake.runs.values()
    assert run.seen_states == ["PENDING", "RUNNING", "TERMINATING", "TERMINATED/SUCCESS"]
    assert fake.bad_auth == []

    meta = _metadata(result, "report_asset")
    assert meta["echo"] == 42
    assert meta["on_databricks"] is True
    assert meta["rayml_profile"] == "sit"
    assert meta["secret_in_env"] is False
    assert meta["ray_address"] == "127.0.0.1:6379"  # Ray on Spark's address
    # runtime keys consumed; the script sees its own extras and the effective extras["ray"]
    assert meta["extras_keys"] == "echo,ray"
    assert meta["Databricks Job Run URL"] == f"{fake.url}/#job/0/run/{run.run_id}"
    assert f"Databricks run {run.run_id} submitted: {fake.url}/#job/0/run/" in text
    assert "report.py logged through pipes" in text
    captured = capfd.readouterr()
    assert "report.py says hello on stdout" in captured.out + captured.err
    assert "report.py says hello on stderr" in captured.out + captured.err

    (task,) = run.submission["tasks"]
    env_vars = task["new_cluster"]["spark_env_vars"]
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(env_vars)
    assert fake.token not in json.dumps(run.submission)
    assert task["libraries"] == [{"whl": deployed.wheel}]
    assert task["spark_python_task"]["python_file"] == deployed.scripts["report"]
    assert run.submission["run_name"].startswith("rayml_assets sit report")
    assert [c["event"] for c in _ray_calls(fake)] == ["setup", "shutdown"]
    assert _ray_calls(fake)[0] == {
        "event": "setup",
        "min_worker_nodes": 1,
        "max_worker_nodes": 2,
        "num_gpus_worker_node": 0,
    }
    # Pipes cleaned up its DBFS temp folders
    assert list((fake.dbfs_root / "tmp").iterdir()) == []


@pytest.mark.contract
def test_contract_failed_remote_run_surfaces_error_and_logs(fake, deployed):
    """CONTRACT: a script that raises fails the asset with its message, trace and run URL."""
    result, text = _materialize(fail_asset, _databricks_compute())
    assert not result.success
    (run,) = fake.runs.values()
    assert run.seen_states[-1] == "TERMINATED/FAILED"
    assert "fail.py: the training data is empty (test failure)" in text
    assert "fail.py is about to fail" in text  # its Pipes log arrived before the failure
    assert f"Databricks run: {fake.url}/#job/0/run/{run.run_id}" in text
    assert "[fail trace]" in text  # from runs/get-output
    assert [c["event"] for c in _ray_calls(fake)] == ["setup", "shutdown"]


@pytest.mark.contract
def test_contract_missing_wheel_fails_before_the_script(fake):
    """CONTRACT: nothing deployed -> the run fails at library install, and says so."""
    result, text = _materialize(report_asset, _databricks_compute())
    assert not result.success
    assert "Library installation failed" in text


@pytest.mark.contract
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
    result, _ = _materialize(report_asset, _databricks_compute())
    assert not result.success
    (run,) = fake.runs.values()
    assert interrupted == [run.run_id]
    assert ("POST", "/api/2.2/jobs/runs/cancel") in fake.requests
    assert run.seen_states[-1] == "TERMINATED/CANCELED"


@pytest.mark.contract
def test_contract_serverless_run_over_unity_catalog_volume(fake, deployed):
    """CONTRACT: serverless submit with a serverless environment; Pipes over a UC volume and CLI args."""
    compute = _databricks_compute(serverless=True, pipes_volume_path="/Volumes/main/rayml/pipes")
    result, text = _materialize(report_asset, compute)
    assert result.success, text
    (run,) = fake.runs.values()
    (task,) = run.submission["tasks"]
    assert "new_cluster" not in task and task["environment_key"] == "rayml"
    assert "--dagster-pipes-context" in task["spark_python_task"]["parameters"]
    (env,) = run.submission["environments"]
    assert env["spec"]["dependencies"] == [deployed.wheel]
    meta = _metadata(result, "report_asset")
    assert meta["echo"] == 42 and meta["rayml_profile"] == "sit"  # env travelled in extras
    assert meta["extras_keys"] == "echo"
    assert meta["ray_address"] == "None"  # no Ray on Spark on serverless
    assert _ray_calls(fake) == []


@pytest.mark.contract
def test_contract_deploy_uploads_wheel_and_task_scripts(fake, wheel):
    """CONTRACT: deploy puts the wheel and every task script where the compute resource looks."""
    client = deploy_mod.workspace_client_from_env("pat")
    result = deploy_mod.deploy("sit", client=client, wheel=wheel)
    assert result.wheel == compute_for_profile(load_profile("sit")).wheel_path
    assert fake.workspace(result.wheel).read_bytes() == wheel.read_bytes()
    assert set(result.scripts) == set(available_tasks())
    for task, path in result.scripts.items():
        assert fake.workspace(path).read_text() == available_tasks()[task].read_text()
    assert fake.bad_auth == []


@pytest.mark.contract
def test_contract_upload_to_unity_catalog_volume(fake, wheel):
    """CONTRACT: a /Volumes wheel dir goes through the Files API instead of the workspace API."""
    client = deploy_mod.workspace_client_from_env("pat")
    target = f"/Volumes/main/rayml/wheels/{wheel.name}"
    deploy_mod.upload(client, wheel, target)
    assert fake.volume(target).read_bytes() == wheel.read_bytes()


def test_deploy_without_credentials_fails_before_building(monkeypatch, capsys):
    for key in ("DATABRICKS_HOST", "DATABRICKS_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(deploy_mod, "build_wheel", _must_not_build)
    assert deploy_mod.main(["--env", "sit"]) == 2
    assert "Databricks credentials missing: set DATABRICKS_HOST, DATABRICKS_TOKEN" in (
        capsys.readouterr().err
    )
    with pytest.raises(DatabricksCredentialsError):
        deploy_mod.workspace_client_from_env("azure_client_secret")


def test_deploy_refuses_a_wheel_the_compute_would_not_find(tmp_path):
    stale = tmp_path / wheel_filename("0.0.0-stale")
    stale.write_bytes(b"")
    with pytest.raises(deploy_mod.DeployError, match="not the wheel the compute resource submits"):
        deploy_mod.deploy("sit", client=_NoNetworkClient(), wheel=stale)


def test_deploy_of_a_local_profile_is_refused():
    assert deploy_mod.main(["--env", "local", "--dry-run"]) == 2


def _must_not_build(*args, **kwargs):
    raise AssertionError("deploy built a wheel before checking credentials")
