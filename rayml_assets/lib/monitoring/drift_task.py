"""Pipes task script of the daily monitoring assets: ``predictions``, ``data_drift_report``, ``model_drift_report``.

    python -m rayml_assets.lib.monitoring.drift_task                         # launched by a Pipes client
    python -m rayml_assets.lib.monitoring.drift_task --extras extras.json    # by hand, prints the metadata

The extras are a :class:`~rayml_assets.lib.monitoring.contract.DriftTaskParams`:
``step`` picks the work by its ``kind`` (``predictions``, ``data_drift`` or
``model_drift``) and carries that step's roots and knobs; ``dates``, the pinned
``champion``, ``mlflow`` and ``lake`` are shared. Without ``dates``, a
partitioned Pipes step processes its partition key range. Each day's drift report
folder is also logged to MLflow (``report_runs``) and linked from the metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.previews import plots_preview
from rayml_assets.lib.common.task_entry import Log, clean_metadata, main, typed
from rayml_assets.lib.monitoring.contract import DataDriftStep, DriftTaskParams, ModelDriftStep, PredictStep
from rayml_assets.lib.monitoring.data_drift import DATA_BACKENDS, detect_data_drift
from rayml_assets.lib.monitoring.drift_inputs import DriftInputs, data_reference, reference_correctness
from rayml_assets.lib.monitoring.inference import (
    Champion,
    load_champion,
    predict_day,
    predict_images,
    read_predictions,
    write_predictions,
)
from rayml_assets.lib.monitoring.model_drift import detect_model_drift
from rayml_assets.lib.monitoring.production import join_feedback_table, read_feedback
from rayml_assets.lib.monitoring.report_runs import log_report
from rayml_assets.lib.monitoring.reports import ReportFiles, write_data_drift_report, write_model_drift_report

THUMBNAILS = 24


def _predictions_uri(params: DriftTaskParams) -> str:
    return params.lake.table_uri(lake.PREDICTIONS)


DATA_DRIFT_ROLE, MODEL_DRIFT_ROLE = "data_drift_report", "model_drift_report"


def _report_metadata(params: DriftTaskParams, role: str, day: str, files: ReportFiles, champion: Champion) -> dict:
    tags = {"rayml.model_name": champion.model_name, "rayml.model_version": str(champion.model_version)}
    return {
        **log_report(params.mlflow, role, day, files.directory, files.html, tags, params.lake.storage),
        "html_report": typed(files.html, "path"),
        "result_json": typed(files.result_json, "path"),
        **{f"{name}_plot": typed(uri, "path") for name, uri in files.plots.items()},
        "summary": typed(files.markdown, "md"),
        "preview": typed(plots_preview(files.plots, params.lake.storage), "md"),  # shown inline in the UI
    }


def predictions_step(params: DriftTaskParams, step: PredictStep, champion: Champion, log: Log) -> list[dict]:
    uri, options = _predictions_uri(params), params.lake.delta_options()
    out = []
    for day in params.dates:
        result = predict_day(
            champion,
            step.production_root,
            day,
            batch_size=step.batch_size,
            max_files=step.max_files,
            on_progress=lambda done, total, day=day: log(f"{day}: predicted {done}/{total} files"),
            storage=params.lake.storage,
        )
        version = write_predictions(uri, result, options)
        for bad in result.skipped:
            log(f"{day}: skipped {bad.source_uri}: {bad.reason}: {bad.detail}")
        skipped = result.skipped_summary()
        log(f"{day}: wrote {result.table.num_rows} predictions (Delta version {version})")
        out.append(
            {
                "date": day,
                "dagster/row_count": result.table.num_rows,
                "n_files": result.n_files,
                "n_skipped": skipped["n_skipped"],
                "skipped_by_reason": typed(skipped["skipped_by_reason"], "json"),
                "skipped_files": typed(skipped["skipped_files"], "json"),  # the first few, with reasons
                "predictions_version": version,
                "table_uri": typed(uri, "path"),
                "is_empty": result.is_empty,
            }
        )
    return out


def data_drift_step(params: DriftTaskParams, step: DataDriftStep, champion: Champion, log: Log) -> list[dict]:
    config = step.drift
    reference = backend = None
    out = []
    for day in params.dates:
        rows = read_predictions(_predictions_uri(params), day, ["source_uri", "bytes"], params.lake.delta_options())
        if rows.num_rows == 0:
            log(f"{day}: no predictions, nothing to test")
            out.append({"date": day, "status": "no_data", "is_drift": False, "n_production": 0})
            continue
        if reference is None:  # built once, shared by every day of a backfill
            reference = data_reference(champion, config)
            backend = DATA_BACKENDS[config.backend](config)
            backend.fit(reference.inputs)
            log(
                f"reference: {len(reference)} images of {'/'.join(config.reference_splits)}"
                f" at cleaned_images v{champion.delta_version}"
            )
        images = rows.column("bytes").to_pylist()
        # Re-embedded with the current champion: the day may have been predicted by an older one.
        probs, embeds = predict_images(champion, images, config.batch_size)
        production = DriftInputs(embeds, probs)
        result = detect_data_drift(champion, day, production, reference, config, backend)
        files = write_data_drift_report(
            result, step.reports_root, reference.inputs, production, images[:THUMBNAILS], params.lake.storage
        )
        log(f"{day}: data drift={result.is_drift} (min p={result.min_p_value:.3g}), report {files.html}")
        out.append(
            {
                "date": day,
                "status": result.status,
                "is_drift": result.is_drift,
                "min_p_value": result.min_p_value,
                **{f"p_value_{t.name}": t.p_value for t in result.tests},
                "mmd2": result.test("mmd_embeddings").distance,
                "n_production": result.n_production,
                "n_reference": result.n_reference,
                "backend": result.backend,
                **_report_metadata(params, DATA_DRIFT_ROLE, day, files, champion),
            }
        )
    return out


def model_drift_step(params: DriftTaskParams, step: ModelDriftStep, champion: Champion, log: Log) -> list[dict]:
    config = step.drift
    reference = reference_correctness(champion, config)
    log(f"reference accuracy {reference.mean():.3f} on {len(reference)} test images")
    out = []
    for day in params.dates:
        rows = read_predictions(
            _predictions_uri(params), day, ["image_id", "source_uri", "predicted_label"], params.lake.delta_options()
        )
        feedback = read_feedback(step.feedback_root, day, params.lake.storage)
        joined = join_feedback_table(feedback, rows.to_pydict())
        if not feedback.found:
            log(f"{day}: no feedback file at {feedback.uri}")
        if joined.n_duplicates or joined.n_unknown:
            log(
                f"{day}: {joined.n_duplicates} duplicate feedback rows (latest kept),"
                f" {joined.n_unknown} for unknown images"
            )
        result = detect_model_drift(champion, joined, reference, config)
        files = write_model_drift_report(result, step.reports_root, params.lake.storage)
        log(f"{day}: model drift={result.is_drift} accuracy={result.production_accuracy} (status {result.status})")
        out.append(
            {
                "date": day,
                "status": result.status,
                "is_drift": result.is_drift,
                "p_value": result.p_value,
                "production_accuracy": result.production_accuracy,
                "reference_accuracy": result.reference_accuracy,
                "n_with_feedback": result.n_production,
                "n_feedback_rows": joined.n_feedback_rows,
                "n_duplicates": joined.n_duplicates,
                "n_unknown": joined.n_unknown,
                "feedback_found": feedback.found,
                **_report_metadata(params, MODEL_DRIFT_ROLE, day, files, champion),
            }
        )
    return out


# One function per step kind; each returns one metadata dict per day.
STEPS: dict[str, Callable[[DriftTaskParams, Any, Champion, Log], list[dict]]] = {
    "predictions": predictions_step,
    "data_drift": data_drift_step,
    "model_drift": model_drift_step,
}


def combine(per_day: list[dict]) -> dict:
    """One day: its metadata as is. A range: the last day's metadata plus what every day found."""
    if len(per_day) == 1:
        return clean_metadata(per_day[0])
    last = clean_metadata(per_day[-1])
    summaries = [d["summary"]["raw_value"] for d in per_day if isinstance(d.get("summary"), dict)]
    overview = [{k: v for k, v in d.items() if not isinstance(v, dict)} for d in per_day]
    combined = {**last, "dates": typed([d["date"] for d in per_day], "json"), "per_day": typed(overview, "json")}
    if any("is_drift" in d for d in per_day):
        combined["drift_days"] = typed([d["date"] for d in per_day if d.get("is_drift")], "json")
    if all("dagster/row_count" in d for d in per_day):
        combined["dagster/row_count"] = sum(d["dagster/row_count"] for d in per_day)
    if summaries:
        combined["summary"] = typed("\n\n".join(summaries), "md")
    return combined


def run(params: DriftTaskParams, log: Log = print) -> dict:
    step, dates = params.step, params.dates
    champion = load_champion(params.champion, params.mlflow, params.champion_metadata)
    log(f"{step.kind}: {len(dates)} day(s) {dates[0]}..{dates[-1]}"
        f" with {champion.model_name} v{champion.model_version}")
    metadata = combine(STEPS[step.kind](params, step, champion, log))
    return {
        **metadata,
        "model_name": champion.model_name,
        "model_version": champion.model_version,
        "delta_version": champion.delta_version,
    }


if __name__ == "__main__":
    main(run, DriftTaskParams)
