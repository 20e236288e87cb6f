"""Pipes task script of ``shap_report``: SHAP explanations of the champion on its pinned test split.

    python -m rayml_assets.lib.monitoring.explain_task                         # launched by a Pipes client
    python -m rayml_assets.lib.monitoring.explain_task --extras extras.json    # by hand, prints the metadata

The extras are an :class:`~rayml_assets.lib.monitoring.contract.ExplainTaskParams`:
the pinned ``champion``, ``mlflow``, where the files go (``reports_root`` or
``output_dir``) and the ``explain`` knobs. When the champion's MLflow run is
known (``champion.mlflow_run_id``), the report folder is also logged as its
artifacts (``shap_report/``), next to the model it explains, and the metadata links
its artifact view (``mlflow_run_url``) and, on cloud storage, the grid (``report_url``).
"""

from __future__ import annotations

from rayml_assets.lib.common.task_entry import Log, main, typed
from rayml_assets.lib.common.links import storage_url
from rayml_assets.lib.common.previews import read_preview
from rayml_assets.lib.monitoring.contract import ExplainTaskParams
from rayml_assets.lib.monitoring.explain import explain_champion
from rayml_assets.lib.monitoring.inference import load_champion
from rayml_assets.lib.monitoring.report_runs import log_folder, report_links
from rayml_assets.lib.monitoring.reports import markdown_table

SHAP_ARTIFACTS = "shap_report"


def run(params: ExplainTaskParams, log: Log = print) -> dict:
    champion = load_champion(params.champion, params.mlflow, params.champion_metadata)
    log(
        f"explaining {champion.model_name} v{champion.model_version}"
        f" on cleaned_images v{champion.delta_version} test split"
    )
    result = explain_champion(champion, params.target_dir, params.explain, params.storage)
    summary = result.summary
    log(
        f"explained {summary['n_explained']} images ({summary['n_misclassified_explained']} misclassified)"
        f" in {summary['seconds']} s"
    )
    run_id = params.champion.mlflow_run_id
    storage = storage_url(result.grid_png)
    links = {"report_url": typed(storage, "url")} if storage else {}
    if run_id:
        log_folder(params.mlflow, run_id, result.output_dir, SHAP_ARTIFACTS, params.storage)
        experiment = params.mlflow.client().get_run(run_id).info.experiment_id
        links = report_links(params.mlflow, experiment, run_id, SHAP_ARTIFACTS, result.grid_png)
        log(f"logged the report to MLflow run {run_id}")
    rows = [
        (r["class"], r["n_examples"], r["n_misclassified"], r["mean_abs_attribution"]) for r in summary["per_class"]
    ]
    table = markdown_table(("class", "examples", "misclassified", "mean abs attribution"), rows)
    return {
        "model_name": champion.model_name,
        "model_version": champion.model_version,
        "delta_version": champion.delta_version,
        "test_accuracy": summary["test_accuracy"],
        "n_test_scored": summary["n_test_scored"],
        "n_explained": summary["n_explained"],
        "n_misclassified_explained": summary["n_misclassified_explained"],
        "seconds_per_image": summary["seconds"] / max(1, summary["n_explained"]),
        "attributions_grid": typed(result.grid_png, "path"),
        "preview": typed(read_preview(result.grid_png, "attributions of the corner cases", params.storage), "md"),
        "class_summary_plot": typed(result.class_summary_png, "path"),
        "class_summary_csv": typed(result.class_summary_csv, "path"),
        "summary_json": typed(result.summary_json, "path"),
        "summary": typed(f"**SHAP on {summary['n_explained']} test images**\n\n{table}", "md"),
        **links,
    }


if __name__ == "__main__":
    main(run, ExplainTaskParams)
