"""Pipes job script of ``shap_report``: SHAP explanations of the champion on its pinned test split.

    python -m rayml_assets.lib.monitoring.explain_task                         # launched by a Pipes client
    python -m rayml_assets.lib.monitoring.explain_task --extras extras.json    # by hand, prints the metadata

Extras: the champion keys of :func:`rayml_assets.lib.monitoring.inference.champion_from_extras`
(``model_uri``, ``model_name``, ``model_version``, ``class_labels``,
``delta_version``, ``cleaned_table_uri``, optional ``tracking_uri``,
``registry_uri``, ``image_size``, ``channels``), plus:

- ``reports_root``: files go to ``{reports_root}/shap/{model_name}/v{model_version}``,
  unless ``output_dir`` is given;
- ``explain_config``: optional dict of ``ExplainConfig`` fields (per_class,
  top_misclassified, background_size, nsamples, max_test_images, cols, seed);
- ``mlflow_run_id``: optional; the report folder is also logged as artifacts
  (``shap_report/``) of that run, next to the model it explains.
"""

from __future__ import annotations

from rayml_assets.lib.monitoring.explain import ExplainConfig, explain_champion
from rayml_assets.lib.monitoring.inference import champion_from_extras
from rayml_assets.lib.monitoring.reports import markdown_table
from rayml_assets.lib.common.task_entry import Log, main, typed


def output_dir(extras: dict) -> str:
    if extras.get("output_dir"):
        return extras["output_dir"]
    if not extras.get("reports_root"):
        raise ValueError("shap job needs extras 'reports_root' or 'output_dir'")
    return f"{extras['reports_root'].rstrip('/')}/shap/{extras['model_name']}/v{extras['model_version']}"


def run(extras: dict, log: Log = print) -> dict:
    champion = champion_from_extras(extras)
    config = ExplainConfig.from_dict(extras.get("explain_config"))
    target = output_dir(extras)
    log(
        f"explaining {champion.model_name} v{champion.model_version}"
        f" on cleaned_images v{champion.delta_version} test split"
    )
    result = explain_champion(champion, target, config)
    summary = result.summary
    log(
        f"explained {summary['n_explained']} images ({summary['n_misclassified_explained']} misclassified)"
        f" in {summary['seconds']} s"
    )
    if extras.get("mlflow_run_id"):
        from mlflow.tracking import MlflowClient

        # Artifacts are logged from a local folder; a cloud output_dir is already durable storage.
        MlflowClient(tracking_uri=extras.get("tracking_uri")).log_artifacts(
            extras["mlflow_run_id"], result.output_dir, "shap_report"
        )
        log(f"logged the report to MLflow run {extras['mlflow_run_id']}")
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
        "class_summary_plot": typed(result.class_summary_png, "path"),
        "class_summary_csv": typed(result.class_summary_csv, "path"),
        "summary_json": typed(result.summary_json, "path"),
        "summary": typed(f"**SHAP on {summary['n_explained']} test images**\n\n{table}", "md"),
    }


if __name__ == "__main__":
    main(run)
