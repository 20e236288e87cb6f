"""The smoke command without a workspace: it says what to set and exits 0 (its runs: test_mission_flow.py)."""

import pytest

from rayml_assets import smoke_databricks


@pytest.mark.parametrize("env", ["sit", "prod"])
def test_smoke_without_credentials_skips_with_the_names_to_set(env, monkeypatch, capsys):
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    assert smoke_databricks.main(["--env", env]) == 0
    out = capsys.readouterr().out
    assert out.startswith("skipped: set DATABRICKS_HOST and AZURE_CLIENT_ID and AZURE_CLIENT_SECRET and AZURE_TENANT_ID")


def test_smoke_with_a_host_but_no_secret_still_skips(monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.1.azuredatabricks.net")
    monkeypatch.setenv("AZURE_CLIENT_ID", "id")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant")
    monkeypatch.delenv("AZURE_CLIENT_SECRET", raising=False)
    assert smoke_databricks.main(["--env", "sit"]) == 0
    assert capsys.readouterr().out.startswith("skipped: set AZURE_CLIENT_SECRET ")


def test_smoke_refuses_a_profile_without_databricks(capsys):
    assert smoke_databricks.main(["--env", "local"]) == 1
    assert "not Databricks" in capsys.readouterr().err
