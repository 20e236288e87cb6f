"""Data and model drift with real alibi-detect on a tiny trained champion, reports, and the Pipes task script."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from rayml_assets import sample_stream
from rayml_assets.lib.common.contract import ChampionRef, LakeSettings, MlflowSettings
from rayml_assets.lib.monitoring import drift_task as drift_job
from rayml_assets.lib.monitoring.contract import (
    DRIFT_BACKENDS,
    DataDriftStep,
    DriftConfig,
    DriftTaskParams,
    ModelDriftStep,
    PredictStep,
)
from rayml_assets.lib.monitoring.data_drift import DATA_BACKENDS, AlibiDriftBackend, DataDriftBackend, detect_data_drift
from rayml_assets.lib.monitoring.drift_inputs import DriftInputs, data_reference, reference_correctness
from rayml_assets.lib.monitoring.inference import EmptyPartitionError, NoChampionError, predict_day, probabilities_matrix
from rayml_assets.lib.monitoring.model_drift import (
    MODEL_BACKENDS,
    ModelDriftBackend,
    ScipyModelDriftBackend,
    detect_model_drift,
)
from rayml_assets.lib.monitoring.production import Feedback, join_feedback_table, read_feedback
from rayml_assets.lib.monitoring.reports import load_history, write_data_drift_report, write_model_drift_report
from rayml_assets_tests.support.monitoring_support import champion_params, saved_model_uri, shared_champion

PER_DAY = 150
CLEAN, DUPLICATES, ROTATION, UNKNOWN, CLASS_MIX = 0, 1, 2, 3, 8
CONFIG = DriftConfig(reference_size=400, n_permutations=50)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    lake_root, champion = shared_champion()
    root = tmp_path_factory.mktemp("drift")
    production, feedback = str(root / "production"), str(root / "feedback")
    days = sample_stream.write_stream(production, feedback, days=CLASS_MIX + 1, start="2026-01-01", per_day=PER_DAY)
    predicted = {
        i: predict_day(champion, production, days[i].date) for i in (CLEAN, DUPLICATES, ROTATION, UNKNOWN, CLASS_MIX)
    }
    return {
        "champion": champion,
        "root": root,
        "production": production,
        "feedback": feedback,
        "dates": [d.date for d in days],
        "predicted": predicted,
        "reference": data_reference(champion, CONFIG),
    }


def inputs(env, day: int) -> DriftInputs:
    result = env["predicted"][day]
    return DriftInputs(result.embeddings, probabilities_matrix(result.table, len(env["champion"].class_labels)))


def data_drift(env, day: int, config: DriftConfig = CONFIG):
    return detect_data_drift(env["champion"], env["dates"][day], inputs(env, day), env["reference"], config)


def test_backends_implement_the_protocols():
    assert isinstance(AlibiDriftBackend(CONFIG), DataDriftBackend)
    assert isinstance(ScipyModelDriftBackend(CONFIG), ModelDriftBackend)
    with pytest.raises(ValueError, match="unknown prediction tests"):
        DriftConfig(prediction_tests=("mmd",))
    with pytest.raises(ValueError, match="unknown drift backend"):
        DriftConfig(backend="evidently")
    # The contract's list of backends is what both backend registries implement.
    assert sorted(DATA_BACKENDS) == sorted(MODEL_BACKENDS) == sorted(DRIFT_BACKENDS)


def test_clean_day_passes_and_drifted_days_are_detected(env):
    clean = data_drift(env, CLEAN)
    assert clean.status == "ok" and not clean.is_drift, clean.tests
    assert [t.name for t in clean.tests] == ["mmd_embeddings", "chi2_predicted_labels"]
    assert all(t.threshold == pytest.approx(CONFIG.p_val / 2) for t in clean.tests)  # Bonferroni over 2 tests
    assert clean.n_reference == 400 and clean.n_production == PER_DAY
    rotated = data_drift(env, ROTATION)
    assert rotated.is_drift and rotated.test("mmd_embeddings").is_drift
    assert rotated.test("mmd_embeddings").distance > rotated.test("mmd_embeddings").distance_threshold
    mixed = data_drift(env, CLASS_MIX)
    assert mixed.is_drift and mixed.test("chi2_predicted_labels").p_value < 1e-4


def test_fixed_seed_gives_identical_results(env):
    first, again = data_drift(env, CLEAN), data_drift(env, CLEAN)
    assert first.to_dict() == again.to_dict()


def test_open_backend_answers_like_alibi(env):
    scipy_config = DriftConfig(reference_size=400, n_permutations=50, backend="scipy", prediction_tests=("chi2", "ks"))
    alibi_config = DriftConfig(reference_size=400, n_permutations=50, prediction_tests=("chi2", "ks"))
    for day in (CLEAN, ROTATION):
        ours, theirs = data_drift(env, day, scipy_config), data_drift(env, day, alibi_config)
        assert ours.backend == "scipy" and theirs.backend == "alibi"
        assert ours.is_drift == theirs.is_drift
        for a, b in zip(ours.tests, theirs.tests):
            assert a.name == b.name
            assert a.distance == pytest.approx(b.distance, rel=1e-3, abs=1e-5)  # same statistic and bandwidth
            if a.name != "mmd_embeddings":  # MMD p-values differ only by permutation draws
                assert a.p_value == pytest.approx(b.p_value, rel=1e-3, abs=1e-12)


def test_an_empty_day_is_a_typed_error(env):
    empty = DriftInputs(np.zeros((0, 128), np.float32), np.zeros((0, 10), np.float32))
    with pytest.raises(EmptyPartitionError, match="no production images for 2026-02-01"):
        detect_data_drift(env["champion"], "2026-02-01", empty, env["reference"], CONFIG)


def model_drift(env, day: int, reference: np.ndarray, feedback: Feedback | None = None):
    feedback = feedback or read_feedback(env["feedback"], env["dates"][day])
    table = env["predicted"][day].table.select(["image_id", "source_uri", "predicted_label"])
    return detect_model_drift(env["champion"], join_feedback_table(feedback, table.to_pydict()), reference, CONFIG)


def test_model_drift_from_feedback(env):
    reference = reference_correctness(env["champion"], CONFIG)
    rotated = model_drift(env, ROTATION, reference)
    assert rotated.status == "ok" and rotated.is_drift
    assert rotated.production_accuracy < rotated.reference_accuracy - 0.2
    assert rotated.n_production == round(PER_DAY * 0.5) and rotated.p_value < 0.01
    clean = model_drift(env, CLEAN, reference)
    assert not clean.is_drift and clean.p_value > CONFIG.p_val
    # Bad input does not crash: duplicates and unknown images are counted.
    assert model_drift(env, DUPLICATES, reference).feedback["n_duplicates"] == 2
    assert model_drift(env, UNKNOWN, reference).feedback["n_unknown"] == 1
    silent = model_drift(env, CLEAN, reference, Feedback(env["dates"][CLEAN], "none", found=False))
    assert silent.status == "no_feedback" and not silent.is_drift and silent.p_value is None


def _embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_reports_write_result_plots_and_self_contained_html(env, tmp_path):
    reports = str(tmp_path / "reports")
    # Out of order, as a backfill may run: each day's history stops at that day.
    for day in (ROTATION, CLEAN):
        files = write_data_drift_report(
            data_drift(env, day),
            reports,
            env["reference"].inputs,
            inputs(env, day),
            env["predicted"][day].table.column("bytes").to_pylist()[:4],
        )
    assert [r["date"] for r in load_history(reports, "data_drift", env["dates"][CLEAN])] == [env["dates"][CLEAN]]
    assert len(load_history(reports, "data_drift", env["dates"][ROTATION])) == 2
    assert json.loads(Path(files.result_json).read_text())["is_drift"] is False
    assert set(files.plots) == {"embeddings_pca", "p_values"}
    page = Path(files.html).read_text()
    pngs = _embedded_pngs(page)
    assert len(pngs) == 2 + 4 and all(p.startswith(b"\x89PNG") for p in pngs)
    assert pngs[0] == Path(files.plots["embeddings_pca"]).read_bytes()
    assert "| mmd_embeddings |" in files.markdown and "no drift" in files.markdown

    reference = reference_correctness(env["champion"], CONFIG)
    model_files = write_model_drift_report(model_drift(env, ROTATION, reference), reports)
    assert Path(model_files.plots["accuracy"]).read_bytes().startswith(b"\x89PNG")
    assert "DRIFT" in model_files.markdown and len(_embedded_pngs(Path(model_files.html).read_text())) == 1


@pytest.fixture(scope="module")
def task_params(env):
    """Predictions of two days (one of them drifted) and an empty one, written by the task script itself."""
    _, champion = shared_champion()
    drift = DriftConfig(reference_size=400, n_permutations=50)
    reports = str(env["root"] / "reports")
    dates = [env["dates"][CLEAN], env["dates"][ROTATION], "2026-02-01"]
    params = DriftTaskParams(
        step=PredictStep(production_root=env["production"]),
        dates=dates,
        lake=LakeSettings(root=str(env["root"] / "lake")),
        **champion_params(champion, saved_model_uri()),
    )
    metadata = drift_job.run(params, lambda _: None)
    assert metadata["dagster/row_count"] == 2 * PER_DAY
    assert [d["is_empty"] for d in metadata["per_day"]["raw_value"]] == [False, False, True]
    steps = {
        "data_drift": DataDriftStep(reports_root=reports, drift=drift),
        "model_drift": ModelDriftStep(feedback_root=env["feedback"], reports_root=reports, drift=drift),
    }
    return params, steps, dates


def test_task_script_runs_the_daily_steps(task_params):
    params, steps, dates = task_params
    data = drift_job.run(params.model_copy(update={"step": steps["data_drift"]}))
    assert data["drift_days"]["raw_value"] == [dates[1]]
    assert [d["status"] for d in data["per_day"]["raw_value"]] == ["ok", "ok", "no_data"]
    model = drift_job.run(params.model_copy(update={"step": steps["model_drift"], "dates": [dates[1]]}))
    assert model["is_drift"] is True and model["n_with_feedback"] == round(PER_DAY * 0.5)
    assert Path(model["html_report"]["raw_value"]).is_file() and model["summary"]["type"] == "md"
    # Each day's report has one run; materializing a day again reuses it.
    again = drift_job.run(params.model_copy(update={"step": steps["model_drift"], "dates": [dates[1]]}))
    assert again["mlflow_run_id"] == model["mlflow_run_id"]
    runs = params.mlflow.client().search_runs(
        [model_run_experiment(params, model["mlflow_run_id"])], "tags.`rayml.role` = 'model_drift_report'"
    )
    assert [r.info.run_id for r in runs] == [model["mlflow_run_id"]]
    assert "mlflow_run_id" in data["per_day"]["raw_value"][0]


def model_run_experiment(params, run_id: str) -> str:
    return params.mlflow.client().get_run(run_id).info.experiment_id


def test_task_script_under_dagster_pipes(task_params):
    """The real plumbing: a partitioned asset runs the script through PipesSubprocessClient."""
    from dagster import DailyPartitionsDefinition, PipesSubprocessClient, asset, materialize

    params, steps, dates = task_params
    # The open backend keeps alibi-detect's 12 s import out of the child; alibi is tested in-process above.
    scipy = DriftConfig(reference_size=400, n_permutations=50, backend="scipy")
    step = steps["data_drift"].model_copy(update={"drift": scipy})
    ui = params.mlflow.model_copy(update={"ui_url": "http://127.0.0.1:5000"})
    extras = params.model_copy(update={"step": step, "mlflow": ui}).to_extras()
    del extras["dates"]  # the script takes the step's partition range

    # No annotations: this module's are strings, which Dagster cannot resolve for a local function.
    @asset(partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"), required_resource_keys={"pipes"})
    def data_drift_report(context):
        return context.resources.pipes.run(
            command=[sys.executable, "-m", "rayml_assets.lib.monitoring.drift_task"],
            context=context,
            extras=extras,
        ).get_materialize_result()

    result = materialize([data_drift_report], resources={"pipes": PipesSubprocessClient()}, partition_key=dates[1])
    assert result.success
    (materialization,) = result.asset_materializations_for_node("data_drift_report")
    metadata = materialization.metadata
    assert metadata["is_drift"].value is True and metadata["date"].value == dates[1]
    assert Path(metadata["html_report"].value).is_file()
    assert "mmd_embeddings" in metadata["summary"].value and metadata["backend"].value == "scipy"

    # The day's report folder is in its own MLflow run, linked at its artifact view.
    client, run_id = ui.client(), metadata["mlflow_run_id"].value
    run = client.get_run(run_id)
    assert (run.data.tags["rayml.role"], run.data.tags["rayml.date"]) == ("data_drift_report", dates[1])
    assert metadata["mlflow_run_url"].value == (
        f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run_id}/artifacts/data_drift_report"
    )
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "data_drift_report")}
    assert {"report.html", "result.json", Path(metadata["p_values_plot"].value).name} <= logged
    assert "report_url" not in metadata  # a local report opens through the MLflow run


def test_task_without_a_champion_fails_clearly(tmp_path):
    from mlflow.tracking import MlflowClient

    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    params = DriftTaskParams(
        step=DataDriftStep(reports_root=str(tmp_path / "reports")),
        dates=["2026-01-01"],
        champion=ChampionRef(model_uri="models:/digits@champion", model_name="digits", model_version="1"),
        mlflow=MlflowSettings(tracking_uri=tracking, registry_uri=tracking),
        lake=LakeSettings(root=str(tmp_path / "lake")),
    )
    with pytest.raises(NoChampionError, match="materialize registered_model first"):
        drift_job.run(params)  # no registered model at all
    MlflowClient(tracking, tracking).create_registered_model("digits")
    with pytest.raises(NoChampionError, match="alias"):
        drift_job.run(params)  # registered, but nothing promoted to champion
