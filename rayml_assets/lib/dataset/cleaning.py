"""Cleaning: flag duplicates, outliers, invalid and badly exposed or blurry images.

The analysis runs behind ``CleaningBackend`` so that fastdup (CC BY-NC-ND) can be
replaced by an open-source backend: a backend only reports *findings*; the
decision of what to exclude, and why, is made here by ``decide_exclusions``.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pyarrow as pa

from rayml_assets.lib.common import lake
from rayml_assets.lib.dataset.cleaning_backend import (  # noqa: F401 - re-exported for callers
    CleaningBackend,
    CleaningThresholds,
    FastdupBackend,
    Findings,
    ImageFile,
    ImageStats,
    PixelMatch,
    backend_named,
)


class ExclusionReason(str, Enum):
    INVALID = "invalid"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    TOO_BLURRY = "too_blurry"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    OUTLIER = "outlier"


def _quality_reason(stats: ImageStats, t: CleaningThresholds) -> tuple[ExclusionReason, str] | None:
    # A dark or bright mean alone is no fault: thin white strokes on black have a mean near 10.
    flat = f"contrast {stats.contrast:.1f} < {t.exposure_contrast}" if stats.contrast < t.exposure_contrast else None
    if stats.mean < t.dark_mean and flat:
        return ExclusionReason.TOO_DARK, f"mean intensity {stats.mean:.1f} < {t.dark_mean}, {flat}"
    if stats.mean > t.bright_mean and flat:
        return ExclusionReason.TOO_BRIGHT, f"mean intensity {stats.mean:.1f} > {t.bright_mean}, {flat}"
    if stats.blur < t.blur_min:
        return ExclusionReason.TOO_BLURRY, f"blur {stats.blur:.1f} < {t.blur_min}"
    return None


def _closer(m: PixelMatch, other: PixelMatch) -> bool:
    return (m.identical, -m.distance) > (other.identical, -other.distance)


def _components(ids: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Union-find: each id → the smallest id of its connected component (deterministic)."""
    parent = {i: i for i in ids}

    def root(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i: root(i) for i in parent}


def decide_exclusions(
    image_ids: list[str], findings: Findings, t: CleaningThresholds
) -> dict[str, tuple[ExclusionReason, str]]:
    """image_id → (reason, detail) for each excluded image.

    Invalid and badly exposed images go first; duplicate clusters are formed over
    the rest, so each cluster keeps a usable representative (its smallest id).
    """
    excluded: dict[str, tuple[ExclusionReason, str]] = {}
    for image_id in image_ids:
        if image_id in findings.invalid:
            excluded[image_id] = (ExclusionReason.INVALID, findings.invalid[image_id])
        elif image_id in findings.stats and (reason := _quality_reason(findings.stats[image_id], t)):
            excluded[image_id] = reason

    usable = [i for i in image_ids if i not in excluded]
    usable_set = set(usable)
    matches = [
        m for m in findings.duplicates
        if (m.identical or m.distance <= t.near_duplicate_distance) and m.a in usable_set and m.b in usable_set
    ]
    representative = _components(usable, ((m.a, m.b) for m in matches))
    closest: dict[str, PixelMatch] = {}  # each excluded copy's closest match: identical beats any distance
    for m in matches:
        for member in (m.a, m.b):
            best = closest.get(member)
            if representative[member] != member and (best is None or _closer(m, best)):
                closest[member] = m
    for image_id, m in closest.items():
        kept = representative[image_id]
        if m.identical:
            excluded[image_id] = (ExclusionReason.EXACT_DUPLICATE, f"identical pixels; kept {kept}")
        else:
            excluded[image_id] = (ExclusionReason.NEAR_DUPLICATE, f"pixel distance {m.distance:.3f}; kept {kept}")

    lonely = sorted(
        (sim, image_id)
        for image_id in usable
        if image_id not in excluded and (sim := findings.nearest_similarity.get(image_id)) is not None and sim < t.outlier_similarity
    )
    for sim, image_id in lonely[: math.ceil(t.outlier_max_share * len(image_ids))]:
        excluded[image_id] = (ExclusionReason.OUTLIER, f"nearest neighbour similarity {sim:.3f} < {t.outlier_similarity}")
    return excluded


SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def assign_split(image_id: str, val_fraction: float = 0.1, test_fraction: float = 0.1) -> str:
    """A pure function of the content hash: an image never changes split as the data grows."""
    bucket = int(image_id[:8], 16) / 0x1_0000_0000
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "val"
    return "train"


@dataclass
class CleaningResult:
    delta_version: int
    raw_version: int
    total: int
    kept: int
    reasons: Counter
    splits: Counter
    labels: Counter  # kept images per label: the taxonomy the model learns
    excluded_examples: list[tuple[str, str, str, bytes]]  # (image_id, label, reason, bytes)
    content_hash: str


_EXT = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "GIF": "gif", "TIFF": "tif", "WEBP": "webp"}


def _export_images(raw_uri: str, raw_version: int, image_dir: Path, storage_options) -> list[ImageFile]:
    image_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for batch in lake.iter_batches(raw_uri, raw_version, ["image_id", "format", "bytes"], storage_options=storage_options):
        for image_id, fmt, data in zip(*(batch.column(c).to_pylist() for c in ("image_id", "format", "bytes"))):
            path = image_dir / f"{image_id}.{_EXT.get(fmt, 'png')}"
            path.write_bytes(data)
            files.append(ImageFile(image_id, path))
    return files


def _cleaned_batches(
    raw_uri: str, raw_version: int, excluded: dict, fractions: tuple[float, float], storage_options
) -> Iterator[pa.RecordBatch]:
    # The dataset is opened here, outside write_deltalake: opening a table from inside
    # the writer's async runtime (this generator runs there) panics in delta-rs.
    dataset = lake.dataset_at(raw_uri, raw_version, storage_options)
    return _label_batches(dataset, excluded, fractions, raw_version)


def _label_batches(dataset, excluded: dict, fractions: tuple[float, float], raw_version: int) -> Iterator[pa.RecordBatch]:
    for batch in dataset.to_batches(columns=[f.name for f in lake.RAW_SCHEMA], batch_size=512):
        ids = batch.column("image_id").to_pylist()
        verdicts = [excluded.get(i) for i in ids]
        yield pa.RecordBatch.from_arrays(
            list(batch.columns)
            + [
                pa.array([assign_split(i, *fractions) for i in ids], pa.string()),
                pa.array([v is not None for v in verdicts], pa.bool_()),
                pa.array([f"{v[0].value}: {v[1]}" if v else None for v in verdicts], pa.string()),
                pa.array([raw_version] * len(ids), pa.int64()),
            ],
            schema=lake.CLEANED_SCHEMA,
        )


def clean(
    raw_uri: str,
    raw_version: int,
    cleaned_uri: str,
    work_dir: Path,
    backend: CleaningBackend,
    thresholds: CleaningThresholds = CleaningThresholds(),
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    commit_tags: dict[str, str] | None = None,
    examples_per_reason: int = 6,
    storage_options: dict | None = None,
) -> CleaningResult:
    """Write a new snapshot version of ``cleaned_uri`` from ``raw_uri`` at ``raw_version``."""
    from deltalake import CommitProperties, write_deltalake

    from rayml_assets.lib.dataset.ingest import content_hash

    shutil.rmtree(work_dir, ignore_errors=True)
    images = _export_images(raw_uri, raw_version, work_dir / "images", storage_options)
    findings = backend.analyze(images, work_dir, thresholds) if images else Findings()
    excluded = decide_exclusions([img.image_id for img in images], findings, thresholds)

    reader = pa.RecordBatchReader.from_batches(
        lake.CLEANED_SCHEMA, _cleaned_batches(raw_uri, raw_version, excluded, (val_fraction, test_fraction), storage_options)
    )
    tags = {"rayml.tag": f"cleaned-from-raw-v{raw_version}", "rayml.raw_version": str(raw_version),
            "rayml.cleaning_backend": backend.name, **(commit_tags or {})}
    write_deltalake(
        cleaned_uri, reader, mode="overwrite", schema_mode="overwrite", writer_properties=lake.writer_properties(lake.CLEANED_SCHEMA),
        commit_properties=CommitProperties(custom_metadata=tags), storage_options=storage_options,
    )
    version = lake.open_table(cleaned_uri, storage_options=storage_options).version()

    summary = lake.read_at(cleaned_uri, version, ["image_id", "label", "split", "excluded"], storage_options=storage_options)
    ids, labels, split_col = (summary.column(c).to_pylist() for c in ("image_id", "label", "split"))
    kept_mask = [not e for e in summary.column("excluded").to_pylist()]
    label_of = dict(zip(ids, labels))
    path_of = {img.image_id: img.path for img in images}
    examples: list[tuple[str, str, str, bytes]] = []
    per_reason: Counter = Counter()
    for image_id in sorted(excluded):
        reason = excluded[image_id][0].value
        if per_reason[reason] < examples_per_reason:
            per_reason[reason] += 1
            examples.append((image_id, label_of[image_id], reason, path_of[image_id].read_bytes()))
    return CleaningResult(
        delta_version=version,
        raw_version=raw_version,
        total=summary.num_rows,
        kept=sum(kept_mask),
        reasons=Counter(reason.value for reason, _ in excluded.values()),
        splits=Counter(s for s, k in zip(split_col, kept_mask) if k),
        labels=Counter(label for label, k in zip(labels, kept_mask) if k),
        excluded_examples=examples,
        content_hash=content_hash([f"{i}:{s}:{k}" for i, s, k in zip(ids, split_col, kept_mask)]),
    )
