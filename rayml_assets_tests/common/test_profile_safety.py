"""Profiles are named, fail at load on an unset variable, and never carry or leak a secret."""

import pytest

from rayml_assets.lib.common import secrets
from rayml_assets.resources.compute import SecretInPayloadError, check_no_secrets
from rayml_assets.settings import ProfileError, load_profile

FAKE_SECRET = "fake-secret-7f3a9c1e5b"  # recognisable: it must appear in no error


@pytest.fixture
def profiles_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("rayml_assets.settings.PROFILES_DIR", tmp_path)
    return tmp_path


def _write(folder, name: str, **values) -> None:
    base = {
        "lake_root": "/l", "landing_uri": "/i", "production_landing_uri": "/p", "feedback_landing_uri": "/f",
        "reports_root": "/r", "checkpoint_root": "/c", "mlflow_tracking_uri": "sqlite:///m.db",
        "mlflow_registry_uri": "sqlite:///m.db",
    }
    (folder / f"{name}.yaml").write_text("\n".join(f"{k}: {v}" for k, v in {**base, **values}.items()) + "\n")


@pytest.mark.parametrize("name", ["../../somewhere/x", "/etc/passwd", "sit/../local", "..", "a b", ""])
def test_a_profile_name_that_is_a_path_is_refused(name, tmp_path, monkeypatch):
    outside = tmp_path / "somewhere"
    outside.mkdir()
    _write(outside, "x")
    with pytest.raises(ProfileError, match="not a profile name|unknown RAYML_PROFILE"):
        load_profile(name or "..")


def test_an_unset_variable_fails_at_load_naming_it(profiles_dir, monkeypatch):
    monkeypatch.delenv("RAYML_NO_SUCH_ACCOUNT", raising=False)
    _write(profiles_dir, "cloud", lake_root="abfss://lake@${RAYML_NO_SUCH_ACCOUNT}.dfs.core.windows.net/x")
    with pytest.raises(ProfileError, match=r"lake_root names \$\{RAYML_NO_SUCH_ACCOUNT\}, which is not set"):
        load_profile("cloud")
    monkeypatch.setenv("RAYML_NO_SUCH_ACCOUNT", "acct")
    assert load_profile("cloud").lake_root == "abfss://lake@acct.dfs.core.windows.net/x"


DATABRICKS = {"mlflow_tracking_uri": "databricks", "mlflow_registry_uri": "databricks-uc"}


@pytest.mark.parametrize(
    "names, error",
    [
        ({"mlflow_experiment_name": "rayml_assets", "model_name": "c.s.m"}, "absolute workspace path"),
        ({"mlflow_experiment_name": "/Shared/x/exp", "model_name": "ml.classifier"}, "catalog.schema.model"),
        ({"mlflow_experiment_name": "/Shared/x/exp"}, "catalog.schema.model"),  # the one-level default
    ],
)
def test_databricks_registry_names_are_checked_when_the_profile_loads(profiles_dir, names, error):
    _write(profiles_dir, "cloud", **DATABRICKS, **names)
    with pytest.raises(ProfileError, match=error):
        load_profile("cloud")
    _write(profiles_dir, "cloud", **DATABRICKS, mlflow_experiment_name="/Shared/x/exp", model_name="c.s.m")
    assert load_profile("cloud").model_name == "c.s.m"


@pytest.mark.parametrize(
    "variable",
    ["DATABRICKS_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_CONNECTION_STRING", "DATABRICKS_PAT", "MY_SAS"],
)
def test_a_profile_cannot_expand_a_secret_and_the_error_does_not_show_it(profiles_dir, monkeypatch, variable):
    monkeypatch.setenv(variable, FAKE_SECRET)
    _write(profiles_dir, "leaky", mlflow_tracking_uri=f"https://u:${{{variable}}}@mlflow")
    with pytest.raises(ProfileError) as err:
        load_profile("leaky")
    assert variable in str(err.value) and "a secret" in str(err.value)
    assert FAKE_SECRET not in str(err.value)


def test_a_secret_shaped_value_is_refused_whatever_its_variable_is_called(profiles_dir, monkeypatch):
    monkeypatch.setenv("RAYML_LAKE", f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={FAKE_SECRET}")
    _write(profiles_dir, "shaped", lake_root="${RAYML_LAKE}")
    with pytest.raises(ProfileError, match="RAYML_LAKE.*a secret") as err:
        load_profile("shaped")
    assert FAKE_SECRET not in str(err.value)


def test_a_validation_error_never_quotes_a_secret_from_the_environment(profiles_dir, monkeypatch):
    # The value is not a secret by name, so it expands; pydantic then quotes it in its error.
    monkeypatch.setenv("RAYML_DEBUG_PASSWORD", FAKE_SECRET)
    monkeypatch.setenv("RAYML_WORKERS", FAKE_SECRET)
    _write(profiles_dir, "typo", ray_num_cpus="${RAYML_WORKERS}")
    with pytest.raises(ProfileError, match="malformed") as err:
        load_profile("typo")
    assert FAKE_SECRET not in str(err.value) and secrets.MASK in str(err.value)


@pytest.mark.parametrize(
    "key", ["storage_account_key", "connection_string", "databricks_pat", "sas", "azure_conn_str", "api_token"]
)
def test_the_payload_guard_knows_keys_connection_strings_and_tokens(key):
    with pytest.raises(SecretInPayloadError, match="looks like a secret"):
        check_no_secrets(extras={"cfg": {key: "x"}})


@pytest.mark.parametrize(
    "value",
    [
        f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={FAKE_SECRET};EndpointSuffix=core.windows.net",
        "https://a.blob.core.windows.net/c?sv=2022-11-02&sig=abc%3D",
        "dapi" + "0123456789abcdef" * 2,
    ],
)
def test_the_payload_guard_knows_a_secret_by_its_shape(value):
    with pytest.raises(SecretInPayloadError, match="shaped like a secret"):
        check_no_secrets(extras={"harmless_name": value})


def test_ordinary_names_stay_allowed():
    check_no_secrets(extras={"max_tokens": 5, "tokenizer": "bpe", "secretary": "ok", "path": "/x", "pattern": "p"})
    assert not secrets.is_secret_name("PYTHONPATH") and not secrets.is_secret_name("PWD")
