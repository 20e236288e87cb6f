"""SHAP explanations with real shap on the tiny champion: selection, files, shapes, determinism, task script."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.monitoring import explain_task as explain_job
from rayml_assets.lib.monitoring.contract import ExplainConfig, ExplainTaskParams
from rayml_assets.lib.monitoring.explain import CELL_INCHES, explain_champion, select_examples, shap_attributions
from rayml_assets.lib.monitoring.inference import decode_images, load_split
from rayml_assets.lib.monitoring.reports import DPI
from rayml_assets_tests.support.monitoring_support import champion_params, saved_model_uri, shared_champion

CONFIG = ExplainConfig(per_class=1, top_misclassified=3, background_size=16, nsamples=16, cols=5)
CELL_PX = (round(CELL_INCHES[0] * DPI), round(CELL_INCHES[1] * DPI))


def png_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_selection_takes_each_class_then_the_most_confident_mistakes():
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, -1])
    pred = np.array([0, 1, 0, 1, 0, 2, 2, 0, 0])
    conf = np.array([0.9, 0.8, 0.7, 0.9, 0.95, 0.6, 0.5, 0.4, 0.99])
    chosen = select_examples(true, pred, conf, n_classes=3, per_class=1, top_misclassified=2, seed=3)
    rows = [r for r, _ in chosen]
    assert len(rows) == len(set(rows))  # never twice
    assert [(r, why) for r, why in chosen if why == "misclassified"] == [(4, "misclassified"), (1, "misclassified")]
    assert [true[r] for r, why in chosen if why == "per_class"] == [0, 1, 2]
    assert 8 not in rows  # an unknown true label is never "misclassified"
    assert chosen == select_examples(true, pred, conf, 3, 1, 2, seed=3)
    with pytest.raises(ValueError):
        ExplainConfig(per_class=0, top_misclassified=0)


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    _, champion = shared_champion()
    return champion, explain_champion(champion, str(tmp_path_factory.mktemp("shap")), CONFIG)


def test_report_files_have_the_expected_shapes(explained):
    champion, result = explained
    summary = result.summary
    n = summary["n_explained"]
    reasons = [e["reason"] for e in summary["explained"]]
    assert reasons.count("per_class") == len(champion.class_labels) * CONFIG.per_class
    assert 1 <= reasons.count("misclassified") <= CONFIG.top_misclassified  # a 5-epoch model makes mistakes
    assert n == len(reasons)
    cols = min(CONFIG.cols, n)
    assert png_size(result.grid_png) == (cols * CELL_PX[0], math.ceil(n / cols) * CELL_PX[1])
    labels = champion.class_labels
    assert png_size(result.class_summary_png) == (
        CONFIG.cols * CELL_PX[0],
        math.ceil(len(labels) / CONFIG.cols) * CELL_PX[1],
    )
    assert set(result.class_heatmaps) == set(labels)
    assert all(png_size(p) == (250, 270) for p in result.class_heatmaps.values())


def test_per_class_table_has_every_class(explained):
    champion, result = explained
    with open(result.class_summary_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["class"] for r in rows] == champion.class_labels
    assert sum(int(r["n_examples"]) for r in rows) == result.summary["n_explained"]
    assert all(float(r["mean_abs_attribution"]) > 0 for r in rows if int(r["n_examples"]))
    assert json.loads(Path(result.summary_json).read_text())["per_class"][0]["class"] == champion.class_labels[0]


def test_misclassified_examples_are_the_most_confident_mistakes(explained):
    _, result = explained
    wrong = [e for e in result.summary["explained"] if e["reason"] == "misclassified"]
    assert wrong and all(e["true"] != e["pred"] for e in wrong)
    assert [e["confidence"] for e in wrong] == sorted((e["confidence"] for e in wrong), reverse=True)
    assert all(e["explained_class"] == e["pred"] for e in result.summary["explained"])  # the top class is explained


def test_attributions_are_deterministic_and_leave_the_callers_rng_alone():
    _, champion = shared_champion()
    x = decode_images(load_split(champion, ("test",), limit=2).images, 32, 1)
    background = decode_images(load_split(champion, ("train",), limit=8).images, 32, 1)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first, classes = shap_attributions(champion.module, x, background, nsamples=8, seed=5)
    assert np.array_equal(np.random.get_state()[1], before)
    again, _ = shap_attributions(champion.module, x, background, nsamples=8, seed=5)
    assert first.shape == (2, 1, 32, 32) and classes.shape == (2,)
    assert np.isfinite(first).all() and np.abs(first).sum() > 0
    np.testing.assert_array_equal(first, again)


def test_explain_task_reports_paths_and_a_summary(tmp_path):
    _, champion = shared_champion()
    given = champion_params(champion, saved_model_uri())
    # The champion's run, as registration leaves it: the report goes there and the metadata links it.
    mlflow = MlflowSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "artifacts"),
        ui_url="http://127.0.0.1:5000",
    )
    client = mlflow.client()
    run = client.create_run(client.create_experiment("shap", artifact_location=mlflow.artifact_location))
    params = ExplainTaskParams(
        reports_root=str(tmp_path),
        explain=ExplainConfig(per_class=1, top_misclassified=1, background_size=8, nsamples=8),
        **{**given, "mlflow": mlflow, "champion": given["champion"].model_copy(update={"mlflow_run_id": run.info.run_id})},
    )
    metadata = explain_job.run(params, lambda _: None)
    run_id, experiment = run.info.run_id, run.info.experiment_id
    assert metadata["mlflow_run_url"] == {
        "raw_value": f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}/artifacts/shap_report",
        "type": "url",
    }
    assert "attributions.png" in {Path(a.path).name for a in client.list_artifacts(run_id, "shap_report")}
    assert "report_url" not in metadata  # local files: the run link is the way
    grid = Path(metadata["attributions_grid"]["raw_value"])
    assert grid.is_file() and grid.parent == tmp_path / "shap" / champion.model_name / f"v{champion.model_version}"
    assert metadata["summary"]["type"] == "md" and "| 9 |" in metadata["summary"]["raw_value"]
    assert metadata["n_explained"] >= len(champion.class_labels) and metadata["seconds_per_image"] > 0
