"""The compute resources, the task runtime and deploy, without a workspace.

- unit tests of the Databricks task each profile submits (no I/O);
- the LOCAL path for real: test-only Pipes scripts (``rayml_assets_tests/support/pipes_scripts``)
  run through ``LocalCompute`` inside ``dagster.materialize``.

The CONTRACT TESTS of the Databricks path (the real Pipes clients and ``WorkspaceClient``
against a fake of the REST API) are in ``rayml_assets_tests/databricks``.
"""

import json

import pytest
from dagster import AssetExecutionContext, Definitions, asset
from dagster_databricks import PipesDatabricksClient
from dagster_databricks.pipes import PipesDatabricksServerlessClient
from dagster_pipes import PipesContext

from rayml_assets import deploy as deploy_mod
from rayml_assets.lib.common import pipes_runtime as runtime
from rayml_assets.lib.common import task_entry
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
    DatabricksCompute,
    DatabricksCredentialsError,
    ServerlessRayAddressError,
    credentials_for,
)
from rayml_assets.settings import DatabricksSettings, ProfileError, load_profile
from rayml_assets.telemetry import TELEMETRY_OFF
from rayml_assets_tests.support.compute_runs import (
    TEST_TASKS,
    FakeContext,
    NoNetworkClient,
    databricks_compute,
    fail_asset,
    materialize_logged,
    materialized_metadata,
    report_asset,
)

REMOTE_PROFILES = ["sit", "uat", "prod"]
SECRET_ENV = {
    "DATABRICKS_TOKEN": "dapi-super-secret-0001",
    "AZURE_CLIENT_SECRET": "azure-super-secret-0002",
}


# ---------------------------------------------------------------------------------------
# unit: the submitted task, per profile
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REMOTE_PROFILES)
def test_profile_task_uses_runtime_nodes_autoscale_wheel(name, monkeypatch):
    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)
    # The pipeline principal's ids, which the orchestrator exports (the profile's header names them).
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000")
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
    assert train.spark_python_task.python_file == f"/Workspace/Shared/rayml-{name}/tasks/train.py"
    assert cluster.spark_env_vars["RAYML_PROFILE"] == name
    for key, value in TELEMETRY_OFF.items():
        assert cluster.spark_env_vars[key] == value
    # The cluster's storage login: the secret by scope reference, from the profile Terraform generated.
    assert cluster.spark_env_vars["AZURE_CLIENT_SECRET"] == f"{{{{secrets/rayml-{name}-kv/pipeline-client-secret}}}}"

    drift = compute.submit_task("drift").new_cluster
    # The CPU tasks run in the environment's pool (its nodes are node_type_id), under its policy.
    assert (drift.instance_pool_id, drift.node_type_id) == (settings.instance_pool_id, None)
    assert drift.policy_id == cluster.policy_id == settings.policy_id
    assert drift.spark_version == settings.spark_version.replace("-gpu-ml-", "-cpu-ml-")

    as_json = json.dumps([train.as_dict(), compute.remote_extras("train", {})])
    assert "DATABRICKS_TOKEN" not in as_json  # the orchestrator's login stays with it
    for secret in SECRET_ENV.values():
        assert secret not in as_json


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
    compute = databricks_compute(serverless=True, pipes_volume_path="/Volumes/main/rayml/pipes")
    task = compute.submit_task("drift")
    assert task.new_cluster is None and task.libraries is None
    assert task.environment_key == "rayml"
    (environment,) = compute.submit_args(FakeContext(), "drift")["environments"]
    assert environment.environment_key == "rayml"
    assert environment.spec.dependencies == [compute.wheel_path]
    extras = compute.remote_extras("drift", {"x": 1}, {"EXTRA": "1"})
    assert "ray_on_spark" not in extras  # no Spark cluster to host Ray
    assert extras["rayml_env"]["RAYML_PROFILE"] == "sit" and extras["rayml_env"]["EXTRA"] == "1"
    client = compute.pipes_client(workspace_client=NoNetworkClient())
    assert isinstance(client, PipesDatabricksServerlessClient)
    assert client.volume_path == "/Volumes/main/rayml/pipes"


def test_serverless_tasks_get_no_ray_address():
    """Serverless has no Spark to host Ray on and no Ray cluster to join."""
    compute = databricks_compute(serverless=True, pipes_volume_path="/Volumes/main/rayml/pipes")
    # "auto", the profiles' address (Ray on Spark on a task cluster), is dropped there
    extras = compute.remote_extras("train", {"ray": {"address": "auto", "num_cpus": 2}})
    assert extras["ray"] == {"address": None, "num_cpus": 2}
    assert "ray_on_spark" not in extras
    with pytest.raises(ServerlessRayAddressError, match="serverless, which cannot join the Ray cluster at 'ray://head"):
        compute.remote_extras("train", {"ray": {"address": "ray://head:10001"}})
    assert compute.remote_extras("drift", {"ray": {"address": None}})["ray"] == {"address": None}


def test_serverless_needs_a_volume():
    profile = load_profile("sit").model_copy(
        update={"databricks": DatabricksSettings(serverless=True)}
    )
    with pytest.raises(ProfileError, match="pipes_volume_path"):
        compute_for_profile(profile)


def test_pool_serves_cpu_jobs_and_policy_applies():
    compute = databricks_compute(instance_pool_id="pool-1", policy_id="policy-1")
    drift = compute.submit_task("drift").new_cluster
    assert drift.instance_pool_id == "pool-1" and drift.node_type_id is None
    train = compute.submit_task("train").new_cluster
    assert train.instance_pool_id is None and train.node_type_id == compute.cluster.gpu_node_type_id
    assert train.policy_id == "policy-1" and train.apply_policy_default_values is True
    assert isinstance(compute.pipes_client(NoNetworkClient()), PipesDatabricksClient)


SCOPE_REFS = {"AZURE_CLIENT_SECRET": "rayml-sit-kv/pipeline-client-secret"}  # terraform/modules/secrets' scope


def _with_storage_refs(refs):
    profile = load_profile("sit")  # storage.auth service_principal
    return profile.model_copy(update={"databricks": profile.databricks.model_copy(update={"storage_secret_refs": refs})})


def test_task_cluster_storage_credentials_are_secret_references_never_values(monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "azure-super-secret-0002")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client-id-0001")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-id-0001")
    compute = compute_for_profile(_with_storage_refs(SCOPE_REFS))
    train = compute.submit_task("train")
    env = train.new_cluster.spark_env_vars
    assert env["AZURE_CLIENT_SECRET"] == "{{secrets/rayml-sit-kv/pipeline-client-secret}}"
    # the ids are not secret: the orchestrator's own, the names the task's storage settings read
    assert (env["AZURE_CLIENT_ID"], env["AZURE_TENANT_ID"]) == ("client-id-0001", "tenant-id-0001")
    payload = json.dumps([train.as_dict(), compute.submit_args(FakeContext(), "train"), compute.remote_extras("train", {})])
    assert "azure-super-secret-0002" not in payload

    # an id named in the refs is a reference too, and then need not be in the orchestrator's env
    monkeypatch.delenv("AZURE_TENANT_ID")
    refs = {**SCOPE_REFS, "AZURE_TENANT_ID": "rayml-sit-kv/pipeline-tenant-id"}
    env = compute_for_profile(_with_storage_refs(refs)).spark_env_vars()
    assert env["AZURE_TENANT_ID"] == "{{secrets/rayml-sit-kv/pipeline-tenant-id}}"


def test_task_cluster_storage_refuses_a_secret_without_a_reference(monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_ID", "client-id-0001")
    monkeypatch.delenv("AZURE_TENANT_ID", raising=False)
    with pytest.raises(ProfileError, match=r"storage_secret_refs\[AZURE_CLIENT_SECRET\]"):
        compute_for_profile(_with_storage_refs({"AZURE_CLIENT_ID": "rayml-sit-kv/pipeline-client-id"})).spark_env_vars()
    with pytest.raises(ProfileError, match="needs AZURE_TENANT_ID"):
        compute_for_profile(_with_storage_refs(SCOPE_REFS)).spark_env_vars()
    for bad in ({"AZURE_CLIENT_SECRET": "{{secrets/a/b}}"}, {"AZURE_CLIENT_SECRET": "the-value"}, {"lower": "a/b"}):
        with pytest.raises(ValueError, match="storage_secret_refs"):
            DatabricksSettings(storage_secret_refs=bad)


def test_azure_service_principal_credentials_come_from_env_vars():
    creds = credentials_for("azure_client_secret")
    assert creds.token is None
    assert creds.azure_credentials.azure_client_secret.env_var_name == "AZURE_CLIENT_SECRET"
    assert credentials_for("pat").token.env_var_name == "DATABRICKS_TOKEN"


@pytest.mark.parametrize("compute", [LocalCompute(tasks_package=TEST_TASKS), databricks_compute()])
def test_unknown_task_is_a_typed_error(compute):
    with pytest.raises(UnknownTaskError, match=r"'trian'.*known tasks: \['fail', 'report'\]"):
        compute.run(FakeContext(), task="trian", extras={})


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
        compute.run(FakeContext(), task="report", extras={"cfg": {"api_token": "x"}})
    with pytest.raises(SecretInPayloadError, match="secret from the environment"):
        compute.run(FakeContext(), task="report", extras={"auth": [SECRET_ENV["DATABRICKS_TOKEN"]]})
    with pytest.raises(SecretInPayloadError, match="AZURE_CLIENT_SECRET"):
        compute.run(FakeContext(), task="report", extras={}, env={"AZURE_CLIENT_SECRET": "x"})
    check_no_secrets(extras={"max_tokens": 5, "tokenizer": "bpe", "secretary": "ok"})


def test_definitions_validate_without_credentials_and_run_names_missing_env(monkeypatch):
    for key in ("DATABRICKS_HOST", "DATABRICKS_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    compute = compute_for_profile(load_profile("sit"))
    Definitions.validate_loadable(
        Definitions(assets=[report_asset], resources={"compute": compute})
    )
    result, text = materialize_logged(report_asset, compute)
    assert not result.success
    assert "DATABRICKS_HOST" in text


def test_empty_token_is_reported_not_sent(monkeypatch):
    # importing dagster_databricks leaves DATABRICKS_TOKEN="" behind when it was unset
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_TOKEN", "")
    result, text = materialize_logged(report_asset, databricks_compute(auth="pat"))
    assert not result.success
    assert "Databricks credentials missing: set DATABRICKS_HOST, DATABRICKS_TOKEN" in text


def test_runtime_picks_pipes_io_for_each_launcher(monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert runtime.pipes_io() == {}
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    monkeypatch.setattr("sys.argv", ["train.py"])
    io = runtime.pipes_io()
    assert type(io["context_loader"]).__name__ == "PipesDbfsContextLoader"
    assert type(io["message_writer"]).__name__ == "PipesDbfsMessageWriter"
    monkeypatch.setattr("sys.argv", ["train.py", "--dagster-pipes-context", "e30="])
    io = runtime.pipes_io()
    assert type(io["params_loader"]).__name__ == "PipesCliArgsParamsLoader"
    assert type(io["context_loader"]).__name__ == "PipesUnityCatalogVolumesContextLoader"
    assert type(io["message_writer"]).__name__ == "PipesUnityCatalogVolumesMessageWriter"
    # the CLI bootstrap decides, whatever the serverless runtime calls itself
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION")
    assert type(runtime.pipes_io()["params_loader"]).__name__ == "PipesCliArgsParamsLoader"


def test_task_entry_lets_the_pipes_cli_bootstrap_through(tmp_path):
    """The serverless client starts a script with --dagster-pipes-context/--dagster-pipes-messages."""
    argv = ["--dagster-pipes-context", "e30=", "--dagster-pipes-messages", "e30="]
    assert task_entry._cli_extras(argv) is None  # not by hand: dagster_pipes reads them
    extras = tmp_path / "extras.json"
    extras.write_text('{"echo": 1}')
    assert task_entry._cli_extras(["--extras", str(extras)]) == {"echo": 1}
    with pytest.raises(SystemExit):
        task_entry._cli_extras(["--extras-file", str(extras)])  # a mistyped option still fails


def test_runtime_outside_dagster_yields_no_ray_address(monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("DAGSTER_PIPES_CONTEXT", raising=False)
    monkeypatch.setattr(PipesContext, "_instance", None)  # the singleton must not leak
    with pytest.warns(Warning), runtime.task_runtime() as (_, ray_address):
        assert ray_address is None


# ---------------------------------------------------------------------------------------
# the LOCAL path, for real
# ---------------------------------------------------------------------------------------


def test_local_compute_runs_script_and_returns_metadata():
    compute = LocalCompute(profile="local", tasks_package=TEST_TASKS, ray_address=None)
    result, text = materialize_logged(report_asset, compute)
    assert result.success
    meta = materialized_metadata(result, "report_asset")
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
    result, text = materialize_logged(report_pinned_ray_asset, compute)
    assert result.success, text
    meta = materialized_metadata(result, "report_pinned_ray_asset")
    assert meta["extras_keys"] == "echo,ray"
    assert meta["ray_address"] == "ray://head:10001"  # the asset's, not the resource's "auto"


def test_local_compute_failing_script_fails_asset_with_its_message():
    result, text = materialize_logged(fail_asset, LocalCompute(tasks_package=TEST_TASKS))
    assert not result.success
    assert "fail.py: the training data is empty (test failure)" in text
    assert "ValueError" in text


# ---------------------------------------------------------------------------------------
# deploy, without a workspace (against the fake: rayml_assets_tests/databricks)
# ---------------------------------------------------------------------------------------


def test_deploy_without_credentials_fails_before_building(monkeypatch, capsys):
    for key in ("DATABRICKS_HOST", "DATABRICKS_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(deploy_mod, "build_wheel", _must_not_build)
    assert deploy_mod.main(["--env", "sit"]) == 2  # sit logs in as the pipeline service principal
    assert "Databricks credentials missing: set DATABRICKS_HOST, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID" in (
        capsys.readouterr().err
    )
    with pytest.raises(DatabricksCredentialsError):
        deploy_mod.workspace_client_from_env("azure_client_secret")


def test_deploy_refuses_a_wheel_the_compute_would_not_find(tmp_path):
    stale = tmp_path / wheel_filename("0.0.0-stale")
    stale.write_bytes(b"")
    with pytest.raises(deploy_mod.DeployError, match="not the wheel the compute resource submits"):
        deploy_mod.deploy("sit", client=NoNetworkClient(), wheel=stale)


def test_deploy_of_a_local_profile_is_refused():
    assert deploy_mod.main(["--env", "local", "--dry-run"]) == 2


def _must_not_build(*args, **kwargs):
    raise AssertionError("deploy built a wheel before checking credentials")
