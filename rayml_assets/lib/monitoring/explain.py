"""SHAP explanations of the champion on the test split of its pinned dataset version.

``shap.GradientExplainer`` (expected gradients) attributes the predicted class's
logit to input pixels, against a seeded background sample of the training
split. Explained images are ``per_class`` random test images of every class plus
the ``top_misclassified`` wrong predictions made with the highest confidence,
the corner cases a reviewer wants to see first.

Outputs in ``output_dir`` (any fsspec URI)::

    attributions.png            grid: image + signed attribution overlay, titled true/pred
    class_summary.csv           per class: examples, misclassified, mean |attribution|
    class_summary.png           mean |attribution| heatmap of every class, side by side
    class_heatmaps/<label>.png  the same heatmap, one file per class
    summary.json                the summary dict returned in ExplainResult.summary
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from rayml_assets.lib.monitoring.contract import ExplainConfig
from rayml_assets.lib.monitoring.inference import (
    Champion,
    EmptyPartitionError,
    decode_images,
    load_split,
    predict_arrays,
)
from rayml_assets.lib.common.storage_options import StorageSettings, write_bytes
from rayml_assets.lib.monitoring.reports import DPI, figure_png

CELL_INCHES = (2.0, 2.2)  # width, height of one grid cell: 200 x 220 px at DPI 100


@dataclass
class ExplainResult:
    output_dir: str
    grid_png: str
    class_summary_csv: str
    class_summary_png: str
    class_heatmaps: dict[str, str]  # class label -> PNG URI
    summary_json: str
    summary: dict


def select_examples(
    true_idx: np.ndarray,
    pred_idx: np.ndarray,
    confidence: np.ndarray,
    n_classes: int,
    per_class: int,
    top_misclassified: int,
    seed: int = 0,
) -> list[tuple[int, str]]:
    """``(row, reason)`` pairs: ``per_class`` seeded picks of each class, then the most confident mistakes.

    A row is never picked twice; a misclassified image already picked for its
    class keeps the reason ``misclassified``.
    """
    rng = np.random.default_rng(seed)
    wrong = np.flatnonzero((pred_idx != true_idx) & (true_idx >= 0))
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:top_misclassified]
    taken = set(wrong.tolist())
    chosen: list[tuple[int, str]] = []
    for c in range(n_classes):
        rows = np.array([r for r in np.flatnonzero(true_idx == c) if r not in taken], dtype=int)
        picks = np.sort(rng.choice(rows, size=min(per_class, len(rows)), replace=False)) if len(rows) else rows
        chosen += [(int(r), "per_class") for r in picks]
    return chosen + [(int(r), "misclassified") for r in wrong]


@contextmanager
def _numpy_seed(seed: int):
    # shap seeds numpy's global RNG; give the caller its state back afterwards.
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def shap_attributions(
    module: torch.nn.Module, x: np.ndarray, background: np.ndarray, nsamples: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Attributions ``[N, C, H, W]`` of each image's top predicted class, and that class index ``[N]``."""
    import shap

    module.eval()
    with _numpy_seed(seed), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        explainer = shap.GradientExplainer(module, torch.from_numpy(background))
        values, ranks = explainer.shap_values(torch.from_numpy(x), nsamples=nsamples, ranked_outputs=1, rseed=seed)
    values = np.asarray(values)
    return values[..., 0].astype(np.float32), np.asarray(ranks)[:, 0]


def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    return (image[0], "gray") if image.shape[0] == 1 else (image.transpose(1, 2, 0), None)


def attribution_grid(
    images: np.ndarray, attributions: np.ndarray, titles: Sequence[str], wrong: Sequence[bool], cols: int
) -> bytes:
    """One cell per image: the image, the signed attribution (red +, blue -) over it, a title."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(cols * CELL_INCHES[0], rows * CELL_INCHES[1]), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, attr, title, bad in zip(axes, images, attributions, titles, wrong):
        pixels, cmap = _display(image)
        signed = attr.sum(axis=0)
        # A robust symmetric scale: one extreme pixel should not wash the map out.
        limit = float(np.percentile(np.abs(signed), 99)) or 1e-12
        ax.imshow(pixels, cmap=cmap, vmin=0, vmax=1)
        ax.imshow(signed, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.55)
        ax.set_title(title, fontsize=8, color="red" if bad else "black")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, wspace=0.1, hspace=0.35)
    return figure_png(fig)


def _heatmap(ax, heat: np.ndarray, label: str, count: int) -> None:
    ax.axis("off")
    if count:
        ax.imshow(heat, cmap="magma")
    ax.set_title(f"class {label} (n={count})", fontsize=8)


def class_heatmap_png(heat: np.ndarray, label: str, count: int) -> bytes:
    fig = Figure(figsize=(2.5, 2.7), dpi=DPI)
    _heatmap(fig.subplots(), heat, label, count)
    return figure_png(fig)


def class_overview_png(heats: np.ndarray, labels: Sequence[str], counts: Sequence[int], cols: int) -> bytes:
    cols = max(1, min(cols, len(labels)))
    rows = math.ceil(len(labels) / cols)
    fig = Figure(figsize=(cols * CELL_INCHES[0], rows * CELL_INCHES[1]), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, heat, label, count in zip(axes, heats, labels, counts):
        _heatmap(ax, heat, label, count)
    fig.suptitle("mean |SHAP attribution| per true class")
    return figure_png(fig)


def class_summary(
    attributions: np.ndarray, true_idx: np.ndarray, pred_idx: np.ndarray, labels: Sequence[str]
) -> tuple[list[dict], np.ndarray]:
    """One row per class (every class, even with no examples) and its mean |attribution| map ``[K, H, W]``."""
    height, width = attributions.shape[-2:]
    heats = np.zeros((len(labels), height, width), np.float32)
    rows = []
    for c, label in enumerate(labels):
        mask = true_idx == c
        magnitude = np.abs(attributions[mask]).sum(axis=1)  # [n, H, W], channels summed
        if mask.any():
            heats[c] = magnitude.mean(axis=0)
        rows.append(
            {
                "class": label,
                "n_examples": int(mask.sum()),
                "n_misclassified": int((mask & (pred_idx != true_idx)).sum()),
                "mean_abs_attribution": float(magnitude.mean()) if mask.any() else None,
                "max_mean_abs_attribution": float(heats[c].max()) if mask.any() else None,
            }
        )
    return rows, heats


def _csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def explain_champion(
    champion: Champion, output_dir: str, config: ExplainConfig = ExplainConfig(), storage: StorageSettings | None = None
) -> ExplainResult:
    """Explain the champion on its pinned test split and write the report files."""
    started = time.perf_counter()
    test = load_split(champion, ("test",), limit=config.max_test_images, seed=config.seed)
    background = load_split(champion, ("train",), limit=config.background_size, seed=config.seed)
    if not len(test) or not len(background):
        raise EmptyPartitionError(
            f"{champion.cleaned_table_uri}@v{champion.delta_version} has {len(test)} test"
            f" and {len(background)} training images"
        )
    size, channels, labels = champion.image_size, champion.channels, champion.class_labels
    x = decode_images(test.images, size, channels)
    probs, _ = predict_arrays(champion.module, x, config.batch_size)
    true_idx = np.array([champion.label_index.get(label, -1) for label in test.labels])
    pred_idx, confidence = probs.argmax(axis=1), probs.max(axis=1)

    chosen = select_examples(
        true_idx, pred_idx, confidence, len(labels), config.per_class, config.top_misclassified, config.seed
    )
    rows = np.array([r for r, _ in chosen], dtype=int)
    attr, explained_class = shap_attributions(
        champion.module, x[rows], decode_images(background.images, size, channels), config.nsamples, config.seed
    )
    titles = [f"true {test.labels[r]} / pred {labels[pred_idx[r]]} ({confidence[r]:.2f})" for r in rows]
    wrong = [bool(pred_idx[r] != true_idx[r]) for r in rows]
    per_class, heats = class_summary(attr, true_idx[rows], pred_idx[rows], labels)
    counts = [row["n_examples"] for row in per_class]

    out = output_dir.rstrip("/")
    grid = write_bytes(f"{out}/attributions.png", attribution_grid(x[rows], attr, titles, wrong, config.cols), storage)
    table = write_bytes(f"{out}/class_summary.csv", _csv(per_class), storage)
    overview = write_bytes(f"{out}/class_summary.png", class_overview_png(heats, labels, counts, config.cols), storage)
    heatmaps = {
        label: write_bytes(f"{out}/class_heatmaps/{label}.png", class_heatmap_png(heats[c], label, counts[c]), storage)
        for c, label in enumerate(labels)
    }
    summary = {
        "model_name": champion.model_name,
        "model_version": champion.model_version,
        "delta_version": champion.delta_version,
        "n_test_scored": len(test),
        "test_accuracy": float(np.mean(pred_idx == true_idx)),
        "n_explained": len(rows),
        "n_misclassified_explained": int(sum(wrong)),
        "explained": [
            {
                "image_id": test.image_ids[r],
                "reason": reason,
                "true": test.labels[r],
                "pred": labels[pred_idx[r]],
                "explained_class": labels[int(k)],
                "confidence": float(confidence[r]),
            }
            for (r, reason), k in zip(chosen, explained_class)
        ],
        "per_class": per_class,
        "config": config.model_dump(mode="json"),
        "seconds": round(time.perf_counter() - started, 3),
    }
    summary_json = write_bytes(f"{out}/summary.json", json.dumps(summary, indent=2).encode(), storage)
    return ExplainResult(out, grid, table, overview, heatmaps, summary_json, summary)
