"""Pipes job script of the daily monitoring assets: ``predictions``, ``data_drift_report``, ``model_drift_report``.

    python -m rayml_assets.lib.monitoring.drift_task                         # launched by a Pipes client
    python -m rayml_assets.lib.monitoring.drift_task --extras extras.json    # by hand, prints the metadata

Extras (JSON values):

=====================  =============================================================
``task``               ``"predictions"``, ``"data_drift"`` or ``"model_drift"``
``date`` / ``dates``   partition key(s) ``YYYY-MM-DD``; default: the Pipes partition range
``model_uri``          MLflow URI of the champion (``models:/<name>@champion``); empty → NoChampionError
``model_name``,        registry name and version, recorded in every row and report
``model_version``
``class_labels``       list of labels in output order
``delta_version``,     the pinned ``cleaned_images`` version and table URI the model trained on
``cleaned_table_uri``
``tracking_uri``,      MLflow tracking / registry URIs (optional)
``registry_uri``
``image_size``,        model input (default 32, 1)
``channels``
``lake_root``          the ``predictions`` table lives at ``{lake_root}/predictions``
``storage_options``    Delta storage options for a cloud lake (optional)
``production_root``    task predictions: the production landing root
``batch_size``,        task predictions: inference batch (256); bound on files per day (50,000)
``max_files``
``feedback_root``      task model_drift: the feedback landing root
``reports_root``       tasks data_drift / model_drift: where reports are written
``drift_config``       optional dict of ``DriftConfig`` fields (p_val, n_permutations, ...)
``asset_key``          only when the step materializes several assets
=====================  =============================================================
"""

from __future__ import annotations

from collections.abc import Callable

from rayml_assets.lib.common import lake
from rayml_assets.lib.monitoring.drift import (
    DATA_BACKENDS,
    DriftConfig,
    DriftInputs,
    data_reference,
    detect_data_drift,
    detect_model_drift,
    reference_correctness,
)
from rayml_assets.lib.monitoring.inference import (
    DEFAULT_BATCH_SIZE,
    Champion,
    champion_from_extras,
    predict_day,
    predict_images,
    read_predictions,
    write_predictions,
)
from rayml_assets.lib.monitoring.production import DEFAULT_MAX_FILES_PER_DAY, join_feedback_table, read_feedback
from rayml_assets.lib.monitoring.reports import ReportFiles, write_data_drift_report, write_model_drift_report
from rayml_assets.lib.common.task_entry import Log, clean_metadata, dates_from, main, typed

TASKS = ("predictions", "data_drift", "model_drift")
THUMBNAILS = 24


def _require(extras: dict, *keys: str) -> None:
    missing = [k for k in keys if not extras.get(k)]
    if missing:
        raise ValueError(f"task {extras.get('task')!r} needs extras {missing}")


def _predictions_uri(extras: dict) -> str:
    return lake.table_uri(extras["lake_root"], lake.PREDICTIONS)


def _report_metadata(files: ReportFiles) -> dict:
    return {
        "html_report": typed(files.html, "path"),
        "result_json": typed(files.result_json, "path"),
        **{f"{name}_plot": typed(uri, "path") for name, uri in files.plots.items()},
        "summary": typed(files.markdown, "md"),
    }


def predictions_task(extras: dict, champion: Champion, dates: list[str], log: Log) -> list[dict]:
    _require(extras, "production_root", "lake_root")
    uri, options = _predictions_uri(extras), extras.get("storage_options")
    out = []
    for day in dates:
        result = predict_day(
            champion,
            extras["production_root"],
            day,
            batch_size=int(extras.get("batch_size") or DEFAULT_BATCH_SIZE),
            max_files=int(extras.get("max_files") or DEFAULT_MAX_FILES_PER_DAY),
            on_progress=lambda done, total, day=day: log(f"{day}: predicted {done}/{total} files"),
        )
        version = write_predictions(uri, result, options)
        for source_uri, why in result.skipped:
            log(f"{day}: skipped undecodable {source_uri}: {why}")
        log(f"{day}: wrote {result.table.num_rows} predictions (Delta version {version})")
        out.append(
            {
                "date": day,
                "dagster/row_count": result.table.num_rows,
                "n_files": result.n_files,
                "n_skipped": len(result.skipped),
                "skipped_files": typed([u for u, _ in result.skipped][:50], "json"),
                "predictions_version": version,
                "table_uri": typed(uri, "path"),
                "is_empty": result.is_empty,
            }
        )
    return out


def data_drift_task(extras: dict, champion: Champion, dates: list[str], log: Log) -> list[dict]:
    _require(extras, "lake_root", "reports_root")
    config = DriftConfig.from_dict(extras.get("drift_config"))
    reference = backend = None
    out = []
    for day in dates:
        rows = read_predictions(_predictions_uri(extras), day, ["source_uri", "bytes"], extras.get("storage_options"))
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
            result, extras["reports_root"], reference.inputs, production, images[:THUMBNAILS]
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
                **_report_metadata(files),
            }
        )
    return out


def model_drift_task(extras: dict, champion: Champion, dates: list[str], log: Log) -> list[dict]:
    _require(extras, "lake_root", "feedback_root", "reports_root")
    config = DriftConfig.from_dict(extras.get("drift_config"))
    reference = reference_correctness(champion, config)
    log(f"reference accuracy {reference.mean():.3f} on {len(reference)} test images")
    out = []
    for day in dates:
        rows = read_predictions(
            _predictions_uri(extras), day, ["image_id", "source_uri", "predicted_label"], extras.get("storage_options")
        )
        feedback = read_feedback(extras["feedback_root"], day)
        joined = join_feedback_table(feedback, rows.to_pydict())
        if not feedback.found:
            log(f"{day}: no feedback file at {feedback.uri}")
        if joined.n_duplicates or joined.n_unknown:
            log(
                f"{day}: {joined.n_duplicates} duplicate feedback rows (latest kept),"
                f" {joined.n_unknown} for unknown images"
            )
        result = detect_model_drift(champion, joined, reference, config)
        files = write_model_drift_report(result, extras["reports_root"])
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
                **_report_metadata(files),
            }
        )
    return out


TASK_FUNCTIONS: dict[str, Callable[[dict, Champion, list[str], Log], list[dict]]] = {
    "predictions": predictions_task,
    "data_drift": data_drift_task,
    "model_drift": model_drift_task,
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


def run(extras: dict, log: Log = print) -> dict:
    task = extras.get("task")
    if task not in TASK_FUNCTIONS:
        raise ValueError(f"extras 'task' must be one of {TASKS}, got {task!r}")
    dates = dates_from(extras)
    champion = champion_from_extras(extras)
    log(f"{task}: {len(dates)} day(s) {dates[0]}..{dates[-1]} with {champion.model_name} v{champion.model_version}")
    metadata = combine(TASK_FUNCTIONS[task](extras, champion, dates, log))
    return {
        **metadata,
        "model_name": champion.model_name,
        "model_version": champion.model_version,
        "delta_version": champion.delta_version,
    }


if __name__ == "__main__":
    main(run)
