"""Links a browser opens: storage URLs and MLflow artifact views (the cloud profiles' MLflow UI: infra/test_profiles_from_terraform.py)."""

import pytest

from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.common.links import mlflow_artifacts_url, storage_url
from rayml_assets.lib.monitoring.report_runs import report_links
from rayml_assets.lib.monitoring.reports import report_dir
from rayml_assets.settings import ProfileError, load_profile

HOST = "https://adb-1234567890123456.7.azuredatabricks.net"


@pytest.mark.parametrize(
    "uri, url",
    [
        ("abfss://reports@raymlsit.dfs.core.windows.net/sit/data_drift/2026-01-03/report.html",
         "https://raymlsit.blob.core.windows.net/reports/sit/data_drift/2026-01-03/report.html"),
        ("abfss://reports@raymlsit.dfs.core.windows.net/", "https://raymlsit.blob.core.windows.net/reports"),
        ("abfs://reports@raymlsit.dfs.core.windows.net/a b.png", "https://raymlsit.blob.core.windows.net/reports/a%20b.png"),
        ("/home/me/.rayml/reports/data_drift/2026-01-03/report.html", None),  # locally: the MLflow run link
        ("file:///tmp/report.html", None),
        ("s3://bucket/report.html", None),
        (None, None),
    ],
)
def test_storage_url(uri, url):
    assert storage_url(uri) == url


def test_artifact_view_in_the_open_source_ui_and_on_databricks():
    local = MlflowSettings(tracking_uri="sqlite:///m.db", ui_url="http://127.0.0.1:5000/")
    assert local.artifacts_url("1", "abc") == "http://127.0.0.1:5000/#/experiments/1/runs/abc/artifacts"
    assert local.artifacts_url("1", "abc", "shap_report") == (
        "http://127.0.0.1:5000/#/experiments/1/runs/abc/artifacts/shap_report"
    )
    assert local.run_url("1", "abc") == "http://127.0.0.1:5000/#/experiments/1/runs/abc"
    workspace = MlflowSettings(tracking_uri="databricks", ui_url=HOST)
    assert workspace.artifacts_url("42", "r") == f"{HOST}/ml/experiments/42/runs/r/artifacts"
    # DATABRICKS_HOST may be given without its scheme
    assert mlflow_artifacts_url("adb-1.azuredatabricks.net", "databricks", "42", "r") == (
        "https://adb-1.azuredatabricks.net/ml/experiments/42/runs/r/artifacts"
    )
    assert MlflowSettings(tracking_uri="databricks").artifacts_url("42", "r") is None  # no UI, no link


def test_a_cloud_reports_root_links_the_report_and_its_run():
    settings = MlflowSettings(tracking_uri="databricks", ui_url=HOST)
    html = f"{report_dir('abfss://reports@raymlsit.dfs.core.windows.net/sit', 'data_drift', '2026-01-03')}/report.html"
    links = report_links(settings, "42", "r1", "data_drift_report", html)
    assert links == {
        "mlflow_run_id": "r1",
        "mlflow_run_url": {"raw_value": f"{HOST}/ml/experiments/42/runs/r1/artifacts/data_drift_report", "type": "url"},
        "report_url": {
            "raw_value": "https://raymlsit.blob.core.windows.net/reports/sit/data_drift/2026-01-03/report.html",
            "type": "url",
        },
    }
    assert "report_url" not in report_links(settings, "42", "r1", "data_drift_report", "/tmp/reports/report.html")


def test_a_defaulted_variable_is_still_refused_when_it_is_a_secret(tmp_path, monkeypatch):
    monkeypatch.setattr("rayml_assets.settings.PROFILES_DIR", tmp_path)
    base = "lake_root: /l\nlanding_uri: /i\nproduction_landing_uri: /p\nfeedback_landing_uri: /f\n" \
        "reports_root: /r\ncheckpoint_root: /c\nmlflow_tracking_uri: sqlite:///m.db\nmlflow_registry_uri: sqlite:///m.db\n"
    (tmp_path / "opt.yaml").write_text(base + "mlflow_ui_url: ${RAYML_NO_SUCH_UI:-http://127.0.0.1:5000}\n")
    monkeypatch.delenv("RAYML_NO_SUCH_UI", raising=False)
    assert load_profile("opt").mlflow_ui_url == "http://127.0.0.1:5000"
    monkeypatch.setenv("RAYML_NO_SUCH_UI", "http://mlflow:5000")
    assert load_profile("opt").mlflow_ui_url == "http://mlflow:5000"
    (tmp_path / "leaky.yaml").write_text(base + "mlflow_ui_url: ${DATABRICKS_TOKEN:-x}\n")
    with pytest.raises(ProfileError, match="a secret"):
        load_profile("leaky")
