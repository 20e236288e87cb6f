"""CONTRACT TESTS: logging in (PAT, Azure service principal) and deploying into the fake workspace."""

import io
import json

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.environments import ARM_DATABRICKS_RESOURCE_ID
from databricks.sdk.errors import Unauthenticated

from rayml_assets import deploy as deploy_mod
from rayml_assets.resources.compute import available_tasks, compute_for_profile
from rayml_assets.settings import load_profile
from rayml_assets_tests.support.compute_runs import TEST_TASKS, databricks_compute, materialize_logged, report_asset

pytestmark = pytest.mark.contract


def test_contract_deploy_uploads_wheel_and_task_scripts(fake, pat, wheel):
    """CONTRACT: deploy puts the wheel and every task script where the compute resource looks."""
    client = deploy_mod.workspace_client_from_env("pat")
    result = deploy_mod.deploy("sit", client=client, wheel=wheel)
    assert result.wheel == compute_for_profile(load_profile("sit")).wheel_path
    assert fake.workspace(result.wheel).read_bytes() == wheel.read_bytes()
    assert set(result.scripts) == set(available_tasks())
    for task, path in result.scripts.items():
        assert fake.workspace(path).read_text() == available_tasks()[task].read_text()
    assert fake.bad_auth == []


def test_contract_upload_to_unity_catalog_volume(fake, pat, wheel):
    """CONTRACT: a /Volumes wheel dir goes through the Files API instead of the workspace API."""
    client = deploy_mod.workspace_client_from_env("pat")
    target = f"/Volumes/main/rayml/wheels/{wheel.name}"
    deploy_mod.upload(client, wheel, target)
    assert fake.volume(target).read_bytes() == wheel.read_bytes()


def test_contract_azure_service_principal_deploys_and_runs(fake, azure_sp, wheel):
    """CONTRACT: auth azure_client_secret: Entra ID client credentials from the fake's token
    endpoint, for deploy and for a run; the secret goes to the token endpoint only."""
    client = deploy_mod.workspace_client_from_env("azure_client_secret")
    assert client.config.auth_type == "azure-client-secret"
    deployed = deploy_mod.deploy("sit", client=client, wheel=wheel, tasks_package=TEST_TASKS)
    result, text = materialize_logged(report_asset, databricks_compute(auth="azure_client_secret"))
    assert result.success, text
    assert fake.bad_auth == []
    resources = {resource for _, resource in fake.auth.logins}
    assert resources == {ARM_DATABRICKS_RESOURCE_ID, fake.auth.management_resource}
    assert {client_id for client_id, _ in fake.auth.logins} == {azure_sp.client_id}
    (run,) = fake.runs.values()
    assert run.task["spark_python_task"]["python_file"] == deployed.scripts["report"]
    assert azure_sp.client_secret not in json.dumps(run.submission) + text


def test_contract_a_wrong_client_secret_is_refused_without_showing_it(fake, azure_sp, monkeypatch):
    """CONTRACT: Entra ID refuses the secret; the run fails saying so, and never prints the secret."""
    wrong = "contract-test-wrong-secret-0004"
    monkeypatch.setenv("AZURE_CLIENT_SECRET", wrong)
    result, text = materialize_logged(report_asset, databricks_compute(auth="azure_client_secret"))
    assert not result.success
    assert "invalid_client" in text and "AADSTS7000215" in text
    assert wrong not in text and azure_sp.client_secret not in text
    assert fake.runs == {} and fake.auth.logins == []


def test_contract_a_token_for_another_resource_is_not_a_login(fake, azure_sp, pat):
    """CONTRACT: only a token issued for the Azure Databricks resource opens the workspace API."""
    answer = fake.auth.token(
        f"/aad/{azure_sp.tenant_id}/oauth2/token",
        f"grant_type=client_credentials&client_id={azure_sp.client_id}"
        f"&client_secret={azure_sp.client_secret}&resource={fake.auth.management_resource}".encode(),
    )
    client = WorkspaceClient(host=fake.url, token=answer["access_token"])
    with pytest.raises(Unauthenticated):
        client.files.upload("/Volumes/main/rayml/pipes/x", io.BytesIO(b"x"))
    assert fake.bad_auth == ["/api/2.0/fs/files/Volumes/main/rayml/pipes/x"]
