"""The monitoring task contracts through the real Pipes extras path, and what they refuse.

Each model goes out as an asset would send it (``params.to_extras()`` into
``dagster.open_pipes_session``) and comes back through ``dagster_pipes`` in
``task_entry.main``, the entry of every monitoring task script, which validates
it with the same model. No model is loaded: the task is an echo.
"""

from __future__ import annotations

import json
import os

import pytest
from dagster import (
    DailyPartitionsDefinition,
    PipesTempFileContextInjector,
    PipesTempFileMessageReader,
    asset,
    materialize,
    open_pipes_session,
)
from dagster_pipes import PipesContext
from pydantic import ValidationError

from rayml_assets.lib.common import task_entry
from rayml_assets.lib.common.contract import ChampionRef, LakeSettings, MlflowSettings
from rayml_assets.lib.common.pipes_runtime import RAY_ADDRESS_KEY
from rayml_assets.lib.monitoring.contract import (
    ChampionMetadata,
    DataDriftStep,
    DriftConfig,
    DriftTaskParams,
    ExplainConfig,
    ExplainTaskParams,
    ModelDriftStep,
    PredictStep,
)

DAY = "2026-01-05"
CHAMPION = ChampionRef(model_uri="models:/digits/3", model_name="digits", model_version="3", mlflow_run_id="abc123")
MLFLOW = MlflowSettings(tracking_uri="sqlite:///tmp/mlflow.db", registry_uri="sqlite:///tmp/mlflow.db")
STEPS = {
    "predictions": PredictStep(production_root="/landing/production", max_files=10),
    "data_drift": DataDriftStep(
        reports_root="/reports", drift=DriftConfig(p_val=0.01, prediction_tests=("chi2", "ks"))
    ),
    "model_drift": ModelDriftStep(feedback_root="/landing/feedback", reports_root="/reports"),
}


def drift_params(kind: str, **more) -> DriftTaskParams:
    return DriftTaskParams(
        step=STEPS[kind],
        dates=[DAY],
        champion=CHAMPION,
        champion_metadata=ChampionMetadata(class_labels=["0", "1"], delta_version=4),
        mlflow=MLFLOW,
        lake=LakeSettings(root="/lake"),
        asset_key="echoed",
        **more,
    )


def explain_params() -> ExplainTaskParams:
    explain = ExplainConfig(per_class=1)
    return ExplainTaskParams(champion=CHAMPION, mlflow=MLFLOW, reports_root="/reports", explain=explain)


def echo(params, log) -> dict:
    """A task that reports the parameters it received."""
    log(f"received {type(params).__name__}")
    return {"params": task_entry.typed(params.to_extras(), "json")}


def through_pipes(model, extras: dict, partition_key: str | None = None, raise_on_error: bool = True):
    """Send ``extras`` from an asset through Pipes to ``task_entry.main(echo, model)``; the run's result."""

    @asset(name="echoed", partitions_def=DailyPartitionsDefinition(start_date="2026-01-01") if partition_key else None)
    def echoed(context):  # no annotation: this module's are strings, which Dagster cannot resolve
        with open_pipes_session(
            context=context,
            context_injector=PipesTempFileContextInjector(),
            message_reader=PipesTempFileMessageReader(),
            extras=extras,
        ) as session:
            saved = dict(os.environ)
            # What the subprocess client does for a child process: the bootstrap goes in env vars.
            os.environ.update(session.get_bootstrap_env_vars())
            try:
                task_entry.main(echo, model, argv=[])
            finally:
                PipesContext._instance = None  # the "process" ends: a later one opens its own context
                os.environ.clear()
                os.environ.update(saved)
        yield from session.get_results()

    return materialize([echoed], partition_key=partition_key, raise_on_error=raise_on_error)


def received(result):
    (materialization,) = result.asset_materializations_for_node("echoed")
    return materialization.metadata["params"].value


@pytest.mark.parametrize("kind", sorted(STEPS))
def test_drift_params_round_trip_through_pipes(rayml_home, kind):
    params = drift_params(kind)
    # The compute resource adds where Ray is to every task's extras; the drift task does not declare it.
    got = received(through_pipes(DriftTaskParams, {**params.to_extras(), RAY_ADDRESS_KEY: None}, partition_key=DAY))
    assert got == params.to_extras()
    assert DriftTaskParams.from_extras(got) == params
    assert DriftTaskParams.from_extras(got).step.kind == kind


def test_dates_default_to_the_partition_range(rayml_home):
    extras = drift_params("data_drift").to_extras()
    del extras["dates"]
    got = received(through_pipes(DriftTaskParams, extras, partition_key=DAY))
    assert got["dates"] == [DAY]


def test_explain_params_round_trip_through_pipes(rayml_home):
    params = explain_params()
    got = received(through_pipes(ExplainTaskParams, params.to_extras()))
    assert got == params.to_extras()
    assert ExplainTaskParams.from_extras(got) == params
    assert ExplainTaskParams.from_extras(got).target_dir == "/reports/shap/digits/v3"


def test_renamed_keys_fail_the_task_run(rayml_home):
    """The pre-contract extras (flat, ``task`` and ``tracking_uri``) fail validation in the task, not later."""
    extras = drift_params("data_drift").to_extras()
    old = {**{k: v for k, v in extras.items() if k not in ("step", "mlflow")}, "task": "data_drift", **extras["step"]}
    old["tracking_uri"] = MLFLOW.tracking_uri
    result = through_pipes(DriftTaskParams, old, partition_key=DAY, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.to_string()  # with its cause: the task's own error
    assert "Extra inputs are not permitted" in message and "tracking_uri" in message and "task" in message


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda e: {**e, "task": "data_drift"}, "task"),  # the old dispatch key
        (lambda e: {**e, "mlflow": {**e["mlflow"], "mlflow_tracking_uri": "x"}}, "mlflow_tracking_uri"),
        (lambda e: {**e, "champion": {**e["champion"], "version": "3"}}, "version"),
        (lambda e: {**e, "step": {**e["step"], "drift_config": {}}}, "drift_config"),
        (lambda e: {**e, "step": {**e["step"], "drift": {"pval": 0.1}}}, "pval"),
        (lambda e: {**e, "step": {**e["step"], "kind": "predict"}}, "kind"),  # not a step
        (lambda e: {**e, "step": {"kind": "model_drift", "reports_root": "/r"}}, "feedback_root"),  # a step's root
        (lambda e: {**e, "dates": ["2026-1-5"]}, "dates"),
        (lambda e: {**e, "dates": []}, "dates"),
        (lambda e: {k: v for k, v in e.items() if k != "mlflow"}, "mlflow"),
    ],
)
def test_drift_params_refuse_unknown_renamed_and_missing_keys(change, where):
    extras = drift_params("data_drift").to_extras()
    with pytest.raises(ValidationError, match=where):
        DriftTaskParams.from_extras(change(extras))


def test_explain_params_refuse_unknown_keys_and_need_a_target():
    extras = explain_params().to_extras()
    with pytest.raises(ValidationError, match="explain_config"):
        ExplainTaskParams.from_extras({**extras, "explain_config": {}})
    with pytest.raises(ValidationError, match="tracking_uri"):
        ExplainTaskParams.from_extras({**extras, "tracking_uri": MLFLOW.tracking_uri})
    with pytest.raises(ValidationError, match="reports_root or output_dir"):
        ExplainTaskParams.from_extras({k: v for k, v in extras.items() if k != "reports_root"})
    assert ExplainTaskParams.from_extras({**extras, "output_dir": "/elsewhere"}).target_dir == "/elsewhere"


def test_by_hand_extras_file_is_validated_the_same_way(tmp_path, capsys):
    path = tmp_path / "extras.json"
    params = drift_params("model_drift")
    path.write_text(json.dumps(params.to_extras()))
    task_entry.main(echo, DriftTaskParams, argv=["--extras", str(path)])
    assert json.loads(capsys.readouterr().out)["params"]["raw_value"] == params.to_extras()
    path.write_text(json.dumps({**params.to_extras(), "task": "model_drift"}))
    with pytest.raises(ValidationError, match="task"):
        task_entry.main(echo, DriftTaskParams, argv=["--extras", str(path)])
