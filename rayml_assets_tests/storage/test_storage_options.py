"""One storage configuration, one mapping per client, and no secret value anywhere it could be seen."""

import os

import pytest

from rayml_assets.lib.common import storage_options as so
from rayml_assets.lib.common.contract import LakeSettings
from rayml_assets.resources.compute import check_no_secrets
from rayml_assets_tests.common.test_profile_safety import FAKE_SECRET, _write

SP = so.StorageSettings(auth="service_principal", account_name="raymlsitlake")


@pytest.fixture
def sp_env(monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", FAKE_SECRET)


def test_delta_gets_object_store_keys(sp_env):
    assert dict(so.delta_options(SP)) == {
        "azure_storage_account_name": "raymlsitlake",
        "azure_storage_client_id": "00000000-0000-0000-0000-000000000001",
        "azure_storage_tenant_id": "00000000-0000-0000-0000-000000000000",
        "azure_storage_client_secret": FAKE_SECRET,
    }
    assert so.delta_options(so.StorageSettings()) is None  # a local lake: nothing to pass


def test_fsspec_gets_adlfs_kwargs(sp_env, monkeypatch):
    assert dict(so.fsspec_kwargs(SP)) == {
        "account_name": "raymlsitlake", "client_id": "00000000-0000-0000-0000-000000000001",
        "tenant_id": "00000000-0000-0000-0000-000000000000", "client_secret": FAKE_SECRET,
    }
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token")
    workload = so.fsspec_kwargs(SP.model_copy(update={"auth": "workload_identity"}))
    assert type(workload["credential"]).__name__ == "WorkloadIdentityCredential"
    managed = so.fsspec_kwargs(SP.model_copy(update={"auth": "managed_identity"}))
    assert type(managed["credential"]).__name__ == "ManagedIdentityCredential"
    assert so.filesystem("/tmp/x", SP)[1] == "/tmp/x"  # a local path is opened without Azure kwargs


def test_pyarrow_checkpoints_wrap_adlfs(sp_env):
    from pyarrow.fs import PyFileSystem

    path, fs = so.checkpoint_storage("abfss://checkpoints@raymlsitlake.dfs.core.windows.net/sit/ray_results", SP)
    assert path == "checkpoints/sit/ray_results" and isinstance(fs, PyFileSystem)
    assert fs.handler.fs.account_name == "raymlsitlake"
    assert so.checkpoint_storage("/local/ray_results", SP) == ("/local/ray_results", None)


def test_checkpoint_filesystem_pickles_without_the_secret(sp_env, monkeypatch):
    """Ray pickles it to each trial worker and into tuner.pkl: the worker rebuilds it from its own env."""
    import pickle

    _, fs = so.checkpoint_storage("abfss://checkpoints@raymlsitlake.dfs.core.windows.net/sit/ray_results", SP)
    data = pickle.dumps(fs)
    assert FAKE_SECRET.encode() not in data
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "the-worker-s-own-secret")
    assert pickle.loads(data).handler.fs.client_secret == "the-worker-s-own-secret"


def test_the_azure_client_libraries_are_installed():
    """Defect 2: fsspec knew no abfss:// (no adlfs), and MLflow's ADLS store had no client library."""
    import fsspec
    from mlflow.store.artifact.azure_data_lake_artifact_repo import AzureDataLakeArtifactRepository  # noqa: F401

    assert type(fsspec.filesystem("abfss", account_name="raymlsitlake")).__module__.startswith("adlfs")
    import azure.storage.filedatalake  # noqa: F401  what that store imports when it is used


def test_mlflow_env_is_scoped(sp_env, monkeypatch):
    monkeypatch.setenv("RAYML_SP_SECRET", "other-secret-value")
    settings = SP.model_copy(update={"key_var": "RAYML_SP_SECRET"})
    with so.mlflow_artifact_env(settings):
        assert os.environ["AZURE_CLIENT_SECRET"] == "other-secret-value"
    assert os.environ["AZURE_CLIENT_SECRET"] == FAKE_SECRET  # put back as it was
    monkeypatch.setenv("RAYML_CS", f"AccountName=a;AccountKey={FAKE_SECRET}")
    cs = so.StorageSettings(auth="connection_string_env", key_var="RAYML_CS")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with so.mlflow_artifact_env(cs):
        assert os.environ["AZURE_STORAGE_CONNECTION_STRING"].endswith(FAKE_SECRET)
    assert "AZURE_STORAGE_CONNECTION_STRING" not in os.environ


def test_no_secret_in_repr_payload_or_error(sp_env, monkeypatch):
    for options in (so.delta_options(SP), so.fsspec_kwargs(SP), so.mlflow_env(SP)):
        assert FAKE_SECRET not in repr(options) and FAKE_SECRET not in f"{options}"
    lake = LakeSettings(root="abfss://lake@raymlsitlake.dfs.core.windows.net/sit", storage=SP)
    check_no_secrets(extras={"lake": lake.to_extras()})  # names of variables only
    assert FAKE_SECRET not in str(lake.to_extras()) and lake.delta_options()["azure_storage_client_secret"] == FAKE_SECRET
    monkeypatch.delenv("AZURE_CLIENT_SECRET")
    with pytest.raises(so.StorageError, match="needs the environment variable AZURE_CLIENT_SECRET"):
        so.delta_options(SP)


def test_profile_storage_section_is_typed_and_names_variables(tmp_path, monkeypatch):
    from rayml_assets.settings import ProfileError, load_profile

    monkeypatch.setattr("rayml_assets.settings.PROFILES_DIR", tmp_path)
    _write(tmp_path, "cloud", storage="{auth: service_principal, account_name: raymlsitlake, key_var: RAYML_SP}")
    assert load_profile("cloud").storage == SP.model_copy(update={"key_var": "RAYML_SP"})
    monkeypatch.setenv("AZURE_CLIENT_SECRET", FAKE_SECRET)
    _write(tmp_path, "leaky", storage="{auth: service_principal, account_name: a, key_var: '${AZURE_CLIENT_SECRET}'}")
    with pytest.raises(ProfileError) as raised:  # a value, not a name: refused without echoing it
        load_profile("leaky")
    assert FAKE_SECRET not in str(raised.value)
    _write(tmp_path, "typo", storage="{auth: password}")
    with pytest.raises(ProfileError, match="storage.auth"):
        load_profile("typo")
