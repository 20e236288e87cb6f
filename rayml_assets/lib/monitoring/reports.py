"""Plots and self-contained HTML for the daily drift reports.

Layout under ``reports_root`` (any fsspec URI)::

    data_drift/{date}/result.json        the day's DataDriftResult
    data_drift/{date}/embeddings_pca.png reference vs production, 2-D PCA of the embeddings
    data_drift/{date}/p_values.png       every test's p-value for all days <= date
    data_drift/{date}/report.html        all of the above, images embedded (base64)
    model_drift/{date}/result.json       the day's ModelDriftResult
    model_drift/{date}/accuracy.png      feedback accuracy for all days <= date
    model_drift/{date}/report.html

The over-time plots read every ``result.json`` of the kind up to the day, so a
backfill that runs days out of order still draws each day's history as of that
day. Figures are drawn on bare ``Figure`` objects (no pyplot state), so this is
safe in threads and never opens a window.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from rayml_assets.lib.common.storage_options import StorageSettings, filesystem, write_bytes
from rayml_assets.lib.monitoring.drift_inputs import DriftInputs
from rayml_assets.lib.monitoring.drift_results import DataDriftResult, ModelDriftResult
from rayml_assets.lib.monitoring.production import partition_key

DATA_DRIFT = "data_drift"
MODEL_DRIFT = "model_drift"
RESULT_FILE = "result.json"
DPI = 100


@dataclass
class ReportFiles:
    directory: str
    result_json: str
    plots: dict[str, str]  # name -> URI of a PNG
    html: str
    markdown: str  # summary table for Dagster metadata


def report_dir(reports_root: str, kind: str, date: str) -> str:
    return f"{reports_root.rstrip('/')}/{kind}/{partition_key(date)}"


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value):
    """NaN is not JSON: store it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def load_history(reports_root: str, kind: str, up_to: str, storage: StorageSettings | None = None) -> list[dict]:
    """Every stored ``result.json`` of ``kind`` dated on or before ``up_to``, oldest first."""
    up_to = partition_key(up_to)
    fs, root = filesystem(f"{reports_root.rstrip('/')}/{kind}", storage)
    if not fs.isdir(root):
        return []
    history = []
    for path in sorted(fs.glob(f"{root}/*/{RESULT_FILE}")):
        day = path.rstrip("/").split("/")[-2]
        if day <= up_to:
            history.append(json.loads(fs.cat_file(path)))
    return sorted(history, key=lambda r: r["date"])


# ---------------------------------------------------------------- plots


def pca_2d(reference: np.ndarray, production: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project both sets on the reference's first two principal components."""
    mean = reference.mean(axis=0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    basis = vt[:2].T
    if basis.shape[1] < 2:  # one-dimensional embeddings: pad a zero axis
        basis = np.pad(basis, ((0, 0), (0, 2 - basis.shape[1])))
    return (reference - mean) @ basis, (production - mean) @ basis


def embedding_plot(
    reference: np.ndarray, production: np.ndarray, title: str, max_points: int = 1000, seed: int = 0
) -> bytes:
    rng = np.random.default_rng(seed)

    def sample(x: np.ndarray) -> np.ndarray:
        return x if len(x) <= max_points else x[np.sort(rng.choice(len(x), max_points, replace=False))]

    ref2, prod2 = pca_2d(sample(reference), sample(production))
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ax.scatter(ref2[:, 0], ref2[:, 1], s=8, alpha=0.4, c="tab:gray", label=f"reference (n={len(reference)})")
    ax.scatter(prod2[:, 0], prod2[:, 1], s=8, alpha=0.6, c="tab:orange", label=f"production (n={len(production)})")
    ax.set(title=title, xlabel="PC 1 (reference)", ylabel="PC 2 (reference)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def _mark_drift(ax, dates: list[str], values: list[float], drift: list[bool]) -> None:
    hits = [(d, v) for d, v, flag in zip(dates, values, drift) if flag]
    if hits:
        ax.scatter(*zip(*hits), s=60, facecolors="none", edgecolors="red", linewidths=1.5, label="drift", zorder=3)


def _date_axis(ax) -> None:
    # Dates are categorical x values (one tick per reported day, gaps are not days).
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)


def p_value_plot(history: list[dict]) -> bytes:
    """p-value of each test per day on a log axis, with its (Bonferroni) threshold."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    names = sorted({t["name"] for r in history for t in r.get("tests", [])})
    for name in names:
        rows = [(r["date"], t) for r in history for t in r["tests"] if t["name"] == name]
        dates = [d for d, _ in rows]
        # A permutation p-value of 0 means "below 1/n_permutations": draw it at the floor.
        values = [max(t["p_value"], 1e-6) for _, t in rows]
        (line,) = ax.plot(dates, values, marker="o", markersize=3, label=name)
        ax.axhline(rows[-1][1]["threshold"], color=line.get_color(), linestyle="--", linewidth=0.8)
        _mark_drift(ax, dates, values, [t["is_drift"] for _, t in rows])
    ax.set_yscale("log")
    ax.set(title="Data drift: p-value per day (dashed: threshold)", ylabel="p-value")
    _date_axis(ax)
    if names:
        unique = dict(zip(*reversed(ax.get_legend_handles_labels())))  # one "drift" entry, not one per test
        ax.legend(unique.values(), unique.keys(), loc="lower left", fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def accuracy_plot(history: list[dict]) -> bytes:
    """Feedback accuracy per day against the champion's test-split accuracy."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    rows = [r for r in history if r.get("production_accuracy") is not None]
    dates = [r["date"] for r in rows]
    values = [r["production_accuracy"] for r in rows]
    ax.plot(dates, values, marker="o", markersize=3, label="production (feedback)")
    if history and history[-1].get("reference_accuracy") is not None:
        ax.axhline(history[-1]["reference_accuracy"], color="tab:gray", linestyle="--", label="test split at training")
    _mark_drift(ax, dates, values, [r["is_drift"] for r in rows])
    ax.set_ylim(0, 1.02)
    ax.set(title="Model drift: accuracy per day", ylabel="accuracy")
    _date_axis(ax)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


# ---------------------------------------------------------------- markdown and HTML


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "**yes**" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def data_drift_markdown(result: DataDriftResult) -> str:
    rows = [
        (t.name, t.p_value, t.threshold, t.distance, t.n_reference, t.n_production, t.is_drift) for t in result.tests
    ]
    table = markdown_table(("test", "p-value", "threshold", "statistic", "n ref", "n prod", "drift"), rows)
    verdict = "DRIFT" if result.is_drift else "no drift"
    return f"**{result.date}: {verdict}** (family-wise p_val={result.p_val}, backend {result.backend})\n\n{table}"


def model_drift_markdown(result: ModelDriftResult) -> str:
    fb = result.feedback
    rows = [
        ("status", result.status),
        ("reference accuracy (test split)", result.reference_accuracy),
        ("production accuracy (feedback)", result.production_accuracy),
        ("p-value (FET, less)", result.p_value),
        ("threshold", result.threshold),
        ("images with feedback", result.n_production),
        ("feedback rows", fb.get("n_feedback_rows")),
        ("duplicate rows (older dropped)", fb.get("n_duplicates")),
        ("rows for unknown images", fb.get("n_unknown")),
        ("drift", result.is_drift),
    ]
    return f"**{result.date}: {'DRIFT' if result.is_drift else 'no drift'}**\n\n" + markdown_table(
        ("metric", "value"), rows
    )


def _img(data: bytes, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _html_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v).strip('*'))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.drift{color:#b00020}.ok{color:#1b5e20}.thumbs img{margin:2px;image-rendering:pixelated;border:1px solid #ddd}"""


def html_page(
    title: str,
    is_drift: bool,
    subtitle: str,
    tables: Sequence[str],
    images: dict[str, bytes],
    thumbnails: Sequence[bytes] = (),
) -> str:
    verdict = '<h2 class="drift">Drift detected</h2>' if is_drift else '<h2 class="ok">No drift</h2>'
    figures = "".join(
        f"<figure>{_img(data, name)}<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, data in images.items()
    )
    thumbs = ""
    if thumbnails:
        thumbs = (
            '<h3>Sample of the day\'s images</h3><div class="thumbs">'
            + "".join(_img(t, "production image", 48) for t in thumbnails)
            + "</div>"
        )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>{verdict}{''.join(tables)}{figures}{thumbs}</body></html>"
    )


def _model_line(result: DataDriftResult | ModelDriftResult) -> str:
    return (
        f"model {result.model_name} v{result.model_version}, "
        f"cleaned_images v{result.delta_version}, backend {result.backend}"
    )


def _store_result(directory: str, result: dict, storage: StorageSettings | None) -> str:
    """Written before the plots, so the over-time plot of the day includes the day."""
    return write_bytes(
        f"{directory}/{RESULT_FILE}", json.dumps(_clean(result), indent=2, default=_json_default).encode(), storage
    )


def _save(
    directory: str, result_json: str, plots: dict[str, bytes], page: str, markdown: str, storage: StorageSettings | None
) -> ReportFiles:
    uris = {name: write_bytes(f"{directory}/{name}.png", data, storage) for name, data in plots.items()}
    page_uri = write_bytes(f"{directory}/report.html", page.encode(), storage)
    return ReportFiles(directory, result_json, uris, page_uri, markdown)


def write_data_drift_report(
    result: DataDriftResult,
    reports_root: str,
    reference: DriftInputs,
    production: DriftInputs,
    thumbnails: Sequence[bytes] = (),
    storage: StorageSettings | None = None,
) -> ReportFiles:
    directory = report_dir(reports_root, DATA_DRIFT, result.date)
    result_json = _store_result(directory, result.to_dict(), storage)
    history = load_history(reports_root, DATA_DRIFT, result.date, storage)
    plots = {
        "embeddings_pca": embedding_plot(
            reference.embeddings, production.embeddings, f"Embeddings {result.date}: reference vs production"
        ),
        "p_values": p_value_plot(history),
    }
    rows = [
        (
            t.name,
            t.method,
            t.p_value,
            t.threshold,
            t.distance,
            t.distance_threshold,
            t.n_reference,
            t.n_production,
            t.is_drift,
        )
        for t in result.tests
    ]
    table = _html_table(
        ("test", "method", "p-value", "threshold", "statistic", "statistic threshold", "n ref", "n prod", "drift"), rows
    )
    page = html_page(
        f"Data drift report {result.date}", result.is_drift, _model_line(result), [table], plots, thumbnails
    )
    return _save(directory, result_json, plots, page, data_drift_markdown(result), storage)


def write_model_drift_report(
    result: ModelDriftResult, reports_root: str, storage: StorageSettings | None = None
) -> ReportFiles:
    directory = report_dir(reports_root, MODEL_DRIFT, result.date)
    result_json = _store_result(directory, result.to_dict(), storage)
    plots = {"accuracy": accuracy_plot(load_history(reports_root, MODEL_DRIFT, result.date, storage))}
    fb = result.feedback
    rows = [
        (
            result.status,
            result.reference_accuracy,
            result.production_accuracy,
            result.p_value,
            result.n_production,
            fb.get("n_feedback_rows"),
            fb.get("n_duplicates"),
            fb.get("n_unknown"),
            result.is_drift,
        )
    ]
    table = _html_table(
        (
            "status",
            "reference accuracy",
            "production accuracy",
            "p-value",
            "images with feedback",
            "feedback rows",
            "duplicates",
            "unknown images",
            "drift",
        ),
        rows,
    )
    page = html_page(f"Model drift report {result.date}", result.is_drift, _model_line(result), [table], plots)
    return _save(directory, result_json, plots, page, model_drift_markdown(result), storage)
