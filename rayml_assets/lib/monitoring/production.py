"""Landing formats of the monitoring side: daily production images and label feedback.

Layout (any fsspec URI: a plain path, ``file://``, ``abfss://``, ``s3://`` ...)::

    {production_landing}/{YYYY-MM-DD}/<anything>.png|.jpg|...    one folder per day (IMAGE_SUFFIXES)
    {feedback_landing}/{YYYY-MM-DD}.csv                           one CSV per day

A day folder is exactly one daily partition key of ``predictions`` and of the
drift reports. A feedback CSV has the columns ``image_id`` or ``uri`` (or both,
one filled per row), ``true_label`` and ``observed_at`` (ISO 8601). ``uri`` is
either the image's full URI (as stored in ``predictions.source_uri``) or its
path relative to the production landing root (``2026-01-05/img_00001.png``).
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads where feedback is joined, not with the sensors
    import numpy as np

    from rayml_assets.lib.common.storage_options import StorageSettings

from rayml_assets.lib.common.listing import file_uri, visible_path
from rayml_assets.lib.common.listing import filesystem as _fs

# The formats ingest accepts (image_limits.DEFAULT_ALLOWED_FORMATS); a camera's MPO is a JPEG.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".mpo", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_MAX_FILES_PER_DAY = 50_000
_KEY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KEY_IN_PATH_RE = re.compile(r"(?:^|/)(\d{4}-\d{2}-\d{2})(?:/|\.csv$)")


class ProductionLandingError(ValueError):
    """A production day cannot be listed (bad key, too many files)."""


class FeedbackError(ValueError):
    """A feedback CSV is malformed: unreadable, missing columns or a bad row."""


# ---------------------------------------------------------------- partition keys


def partition_key(value: str | date | datetime) -> str:
    """The canonical ``YYYY-MM-DD`` key; rejects anything that is not a real calendar day."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or not _KEY_RE.match(value):
        raise ProductionLandingError(f"partition key must look like YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise ProductionLandingError(f"partition key {value!r} is not a calendar day") from exc


def production_day_uri(production_root: str, key: str) -> str:
    return f"{production_root.rstrip('/')}/{partition_key(key)}"


def feedback_uri(feedback_root: str, key: str) -> str:
    return f"{feedback_root.rstrip('/')}/{partition_key(key)}.csv"


def partition_key_from_path(path: str) -> str | None:
    """The day a landed file belongs to: its ``YYYY-MM-DD/`` folder or ``YYYY-MM-DD.csv`` name.

    Sensors use this to turn new files into partition requests. The last match
    wins, so a date-like folder higher up in the root does not confuse it.
    """
    matches = _KEY_IN_PATH_RE.findall(path.replace("\\", "/"))
    for candidate in reversed(matches):
        try:
            return partition_key(candidate)
        except ProductionLandingError:
            continue
    return None


def relative_uri(source_uri: str, key: str) -> str:
    """``{key}/<path inside the day folder>``, the landing-root-relative form used by feedback."""
    at = source_uri.rfind(f"/{key}/")
    return source_uri[at + 1 :] if at >= 0 else source_uri


# ---------------------------------------------------------------- production images


@dataclass(frozen=True)
class ProductionFile:
    source_uri: str  # full URI with protocol, what predictions.source_uri stores
    path: str  # the fsspec path to read


def list_partition_keys(root: str, feedback: bool = False, storage: StorageSettings | None = None) -> list[str]:
    """Days present under a landing root, sorted: day folders, or ``<day>.csv`` files with ``feedback``."""
    fs, path = _fs(root, storage)
    if not fs.isdir(path):
        return []
    keys = set()
    for entry in fs.ls(path, detail=True):
        name = posixpath.basename(entry["name"].rstrip("/"))
        if feedback:
            wanted = entry.get("type") != "directory" and name.endswith(".csv")
            name = name.removesuffix(".csv")
        else:
            wanted = entry.get("type") == "directory"
        if wanted and _KEY_RE.match(name):
            try:
                keys.add(partition_key(name))
            except ProductionLandingError:
                continue  # 2026-13-45: looks like a day, is not one
    return sorted(keys)


def list_production_files(
    production_root: str,
    key: str,
    max_files: int = DEFAULT_MAX_FILES_PER_DAY,
    storage: StorageSettings | None = None,
) -> list[ProductionFile]:
    """The day's images in sorted order; a missing day folder is an empty day, not an error.

    Bounded: more than ``max_files`` images raises instead of silently dropping
    part of the day (raise the bound, or split the day upstream).
    """
    fs, day = _fs(production_day_uri(production_root, key), storage)
    if not fs.isdir(day):
        return []
    files: list[ProductionFile] = []
    for path in sorted(fs.find(day, withdirs=False)):
        if not visible_path(posixpath.relpath(path, day)):
            continue  # hidden files (.DS_Store, partial uploads) are not data
        if not path.lower().endswith(IMAGE_SUFFIXES):
            continue
        if len(files) >= max_files:
            raise ProductionLandingError(
                f"{production_day_uri(production_root, key)} holds more than max_files={max_files} images"
            )
        files.append(ProductionFile(file_uri(fs, path), path))
    return files


# ---------------------------------------------------------------- feedback


@dataclass(frozen=True)
class FeedbackRow:
    line: int  # 1-based line number in the CSV (header is line 1)
    image_id: str
    uri: str
    true_label: str
    observed_at: datetime


@dataclass
class Feedback:
    key: str
    uri: str
    rows: list[FeedbackRow] = field(default_factory=list)
    found: bool = True  # False: no feedback file for this day (not an error)


_KEY_COLUMNS = ("image_id", "uri")
_REQUIRED = ("true_label", "observed_at")


def _parse_time(value: str, line: int) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise FeedbackError(f"line {line}: observed_at {value!r} is not an ISO 8601 timestamp") from exc
    # Naive timestamps are taken as UTC so rows from different writers compare.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_feedback(text: str, key: str = "", uri: str = "") -> Feedback:
    """Validate a feedback CSV's text. Every problem names the line it is on."""
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise FeedbackError(f"{uri or 'feedback'}: unreadable CSV: {exc}") from exc
    missing = [c for c in _REQUIRED if c not in header]
    if missing or not any(c in header for c in _KEY_COLUMNS):
        need = list(missing) + ([] if any(c in header for c in _KEY_COLUMNS) else ["image_id or uri"])
        raise FeedbackError(f"{uri or 'feedback'}: missing columns {need}; header is {header}")
    rows: list[FeedbackRow] = []
    try:
        for raw in reader:
            line = reader.line_num
            if None in raw:
                raise FeedbackError(f"line {line}: more fields than the header has")
            cells = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(cells.values()):
                continue  # a blank line
            image_id, ref = cells.get("image_id", ""), cells.get("uri", "")
            if not image_id and not ref:
                raise FeedbackError(f"line {line}: neither image_id nor uri is set")
            if not cells["true_label"]:
                raise FeedbackError(f"line {line}: true_label is empty")
            rows.append(FeedbackRow(line, image_id, ref, cells["true_label"], _parse_time(cells["observed_at"], line)))
    except csv.Error as exc:
        raise FeedbackError(f"{uri or 'feedback'}: unreadable CSV near line {reader.line_num}: {exc}") from exc
    return Feedback(key=key, uri=uri, rows=rows)


def read_feedback(feedback_root: str, key: str, storage: StorageSettings | None = None) -> Feedback:
    """The day's feedback; ``found=False`` with no rows when no CSV landed for that day."""
    uri = feedback_uri(feedback_root, key)
    fs, path = _fs(uri, storage)
    if not fs.exists(path):
        return Feedback(key=key, uri=uri, found=False)
    try:
        text = fs.cat_file(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedbackError(f"{uri}: not UTF-8 text: {exc}") from exc
    return parse_feedback(text, key=key, uri=uri)


@dataclass
class FeedbackJoin:
    """Feedback of one day matched to that day's predictions."""

    key: str
    n_feedback_rows: int
    n_predictions: int
    n_matched: int  # distinct predicted images that got feedback
    n_duplicates: int  # rows superseded by a later observation of the same image
    n_unknown: int  # rows naming an image that was not predicted that day
    unknown_examples: list[str]
    correct: np.ndarray  # bool per matched image, in image_id order
    true_labels: list[str]
    predicted_labels: list[str]

    @property
    def n_correct(self) -> int:
        return int(self.correct.sum())

    @property
    def accuracy(self) -> float | None:
        return float(self.correct.mean()) if self.n_matched else None

    def summary(self) -> dict:
        return {
            "date": self.key,
            "n_feedback_rows": self.n_feedback_rows,
            "n_predictions": self.n_predictions,
            "n_matched": self.n_matched,
            "n_correct": self.n_correct,
            "n_duplicates": self.n_duplicates,
            "n_unknown": self.n_unknown,
            "unknown_examples": self.unknown_examples,
            "accuracy": self.accuracy,
        }


def _as_bool_array(values: list[bool]) -> np.ndarray:
    import numpy as np

    return np.array(values, dtype=bool)


def join_feedback(
    feedback: Feedback,
    image_ids: Iterable[str],
    source_uris: Iterable[str],
    predicted_labels: Iterable[str],
    max_examples: int = 5,
) -> FeedbackJoin:
    """Resolve each feedback row to a predicted image, keep the latest observation per image.

    Rows by ``uri`` and rows by ``image_id`` that name the same image are
    duplicates of each other too. Unknown images are counted, never fatal:
    feedback often arrives for images a different day's batch held.
    """
    predicted: dict[str, str] = {}
    by_uri: dict[str, str] = {}
    for image_id, uri, label in zip(image_ids, source_uris, predicted_labels):
        predicted.setdefault(image_id, label)
        by_uri.setdefault(uri, image_id)
        by_uri.setdefault(relative_uri(uri, feedback.key), image_id)

    latest: dict[str, FeedbackRow] = {}
    unknown: list[str] = []
    duplicates = 0
    for row in feedback.rows:
        image_id = row.image_id if row.image_id else by_uri.get(row.uri, "")
        if image_id not in predicted:
            unknown.append(row.image_id or row.uri)
            continue
        kept = latest.get(image_id)
        if kept is not None:
            duplicates += 1
            if row.observed_at < kept.observed_at:
                continue  # ties go to the later line: a correction appended to the file wins
        latest[image_id] = row

    ids = sorted(latest)
    true_labels = [latest[i].true_label for i in ids]
    preds = [predicted[i] for i in ids]
    return FeedbackJoin(
        key=feedback.key,
        n_feedback_rows=len(feedback.rows),
        n_predictions=len(predicted),
        n_matched=len(ids),
        n_duplicates=duplicates,
        n_unknown=len(unknown),
        unknown_examples=unknown[:max_examples],
        correct=_as_bool_array([t == p for t, p in zip(true_labels, preds)]),
        true_labels=true_labels,
        predicted_labels=preds,
    )


def join_feedback_table(feedback: Feedback, predictions: Mapping[str, list]) -> FeedbackJoin:
    """:func:`join_feedback` over a predictions column mapping (``pa.Table.to_pydict()``)."""
    return join_feedback(feedback, predictions["image_id"], predictions["source_uri"], predictions["predicted_label"])
