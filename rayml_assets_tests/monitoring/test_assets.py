"""The monitoring assets as Dagster runs them, with the task script replaced by a recorded answer.

What is checked: the typed parameters each asset sends (the pinned champion,
MLflow settings as the training side sends them, one step per asset), and the
drift warnings, evaluated inside the report's own step from its metadata.
"""

from __future__ import annotations

from typing import Any

import pytest
from dagster import AssetCheckSeverity, MaterializeResult, materialize

from rayml_assets.defs.common import keys
from rayml_assets.defs.monitoring import assets as monitoring_assets
from rayml_assets.lib.monitoring.contract import DriftTaskParams, ExplainTaskParams
from rayml_assets.resources.compute import ComputeResource
from rayml_assets.resources.mlflow import MlflowResource
from rayml_assets.resources.storage import LakeResource, LandingResource, WorkspaceResource

SENT: list[tuple[str, dict]] = []  # (task, extras) of every FakeCompute.run


class _Answered:
    def __init__(self, metadata: dict):
        self.metadata = metadata

    def get_materialize_result(self) -> MaterializeResult:
        return MaterializeResult(metadata=self.metadata)


class FakeCompute(ComputeResource):
    """Records what the asset sends and answers with the metadata a task script would report."""

    answer: dict[str, Any] = {}

    def run(self, context, task, extras=None, env=None):
        SENT.append((task, dict(extras or {})))
        return _Answered(self.answer)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> MlflowResource:
    """A registry whose 'champion' alias points at version 1 of 'digits'."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    store = MlflowResource(tracking_uri=uri, registry_uri=uri, model_name="digits", experiment_name="monitoring_test")
    client = store.settings().client()
    client.create_registered_model("digits")
    version = client.create_model_version("digits", source=str(root / "model"))
    client.set_registered_model_alias("digits", "champion", version.version)
    return store


def resources(tmp_path, mlflow_store, answer: dict) -> dict:
    return {
        "compute": FakeCompute(answer=answer),
        "lake_store": LakeResource(lake_root=str(tmp_path / "lake")),
        "landing": LandingResource(
            images_uri=str(tmp_path / "images"),
            production_uri=str(tmp_path / "prod"),
            feedback_uri=str(tmp_path / "fb"),
        ),
        "workspace": WorkspaceResource(
            reports_root=str(tmp_path / "reports"),
            scratch_root=str(tmp_path / "scratch"),
            checkpoint_root=str(tmp_path / "checkpoints"),
        ),
        "mlflow_store": mlflow_store,
    }


def run_report(asset, tmp_path, mlflow_store, answer: dict, day: str = "2026-01-03", **kwargs):
    SENT.clear()
    result = materialize([asset], resources=resources(tmp_path, mlflow_store, answer), partition_key=day, **kwargs)
    assert result.success
    ((task, extras),) = SENT
    assert task == "drift"
    return result, DriftTaskParams.from_extras(extras)


def checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_drift_report_sends_typed_params_and_warns_in_its_own_step(tmp_path, mlflow_store):
    answer = {"date": "2026-01-03", "is_drift": True, "min_p_value": 0.001}
    result, params = run_report(monitoring_assets.data_drift_report, tmp_path, mlflow_store, answer)
    assert params.step.kind == "data_drift" and params.dates == ["2026-01-03"]
    assert params.step.reports_root == str(tmp_path / "reports") and params.lake.root == str(tmp_path / "lake")
    assert params.champion.model_uri == "models:/digits/1" and params.champion.model_version == "1"
    assert params.mlflow == mlflow_store.settings()  # the same MLflow settings the training tasks get
    assert params.asset_key == "data_drift_report"

    evaluation = checks(result)["no_data_drift"]
    assert evaluation.passed is False and evaluation.severity == AssetCheckSeverity.WARN
    assert evaluation.description == "data drift on 2026-01-03"
    assert evaluation.metadata["drift_days"].value == ["2026-01-03"]
    assert evaluation.metadata["p_value"].value == 1.0
    # One step: the check ran with the materialization, not after it.
    assert [e.step_key for e in result.get_step_success_events()] == ["data_drift_report"]


def test_config_overrides_reach_the_step(tmp_path, mlflow_store):
    config = {"ops": {"data_drift_report": {"config": {"p_val": 0.01, "n_permutations": 20}}}}
    answer = {"date": "2026-01-03"}
    _, params = run_report(monitoring_assets.data_drift_report, tmp_path, mlflow_store, answer, run_config=config)
    assert (params.step.drift.p_val, params.step.drift.n_permutations) == (0.01, 20)
    assert params.step.drift.reference_size == 1000  # what is not overridden keeps the contract's default


def test_a_clean_range_passes_and_a_drifted_range_names_its_days(tmp_path, mlflow_store):
    answer = {"date": "2026-01-03", "is_drift": False}
    clean, _ = run_report(monitoring_assets.data_drift_report, tmp_path, mlflow_store, answer)
    assert checks(clean)["no_data_drift"].passed is True
    assert checks(clean)["no_data_drift"].description == "no data drift"
    backfill = {"date": "2026-01-03", "is_drift": False, "drift_days": ["2026-01-01", "2026-01-02"]}
    ranged, _ = run_report(monitoring_assets.data_drift_report, tmp_path, mlflow_store, backfill)
    evaluation = checks(ranged)["no_data_drift"]
    assert evaluation.passed is False and evaluation.description == "data drift on 2026-01-01, 2026-01-02"


def test_model_drift_report_warns_on_degradation(tmp_path, mlflow_store):
    answer = {"date": "2026-01-03", "is_drift": True, "p_value": 0.002}
    result, params = run_report(monitoring_assets.model_drift_report, tmp_path, mlflow_store, answer)
    assert params.step.kind == "model_drift" and params.step.feedback_root == str(tmp_path / "fb")
    evaluation = checks(result)["no_model_degradation"]
    assert evaluation.passed is False and evaluation.severity == AssetCheckSeverity.WARN
    assert evaluation.description == "model degradation on 2026-01-03"
    assert evaluation.metadata["p_value"].value == 0.002


def test_selecting_the_report_selects_its_check(tmp_path, mlflow_store):
    answer = {"date": "2026-01-03", "is_drift": True}
    result, _ = run_report(
        monitoring_assets.data_drift_report, tmp_path, mlflow_store, answer, selection=[keys.DATA_DRIFT_REPORT]
    )
    assert checks(result)["no_data_drift"].passed is False


def test_predictions_and_shap_send_their_contracts(tmp_path, mlflow_store):
    _, params = run_report(monitoring_assets.predictions, tmp_path, mlflow_store, {"date": "2026-01-03"})
    assert params.step.kind == "predictions" and params.step.production_root == str(tmp_path / "prod")

    SENT.clear()
    assert materialize([monitoring_assets.shap_report], resources=resources(tmp_path, mlflow_store, {})).success
    ((task, extras),) = SENT
    shap = ExplainTaskParams.from_extras(extras)
    assert task == "explain" and shap.target_dir == f"{tmp_path}/reports/shap/digits/v1"
    assert (shap.explain.per_class, shap.explain.top_misclassified) == (2, 8)
    assert shap.champion.mlflow_run_id is None  # the fixture's version has no run: nothing to log artifacts to


def test_no_champion_fails_before_the_task_runs(tmp_path, mlflow_store):
    store = MlflowResource(**{**mlflow_store.model_dump(), "model_name": "never_registered"})
    SENT.clear()
    result = materialize(
        [monitoring_assets.predictions],
        resources={**resources(tmp_path, mlflow_store, {}), "mlflow_store": store},
        partition_key="2026-01-03",
        raise_on_error=False,
    )
    assert not result.success and SENT == []
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no model has the alias 'champion'" in failure.step_failure_data.error.message
