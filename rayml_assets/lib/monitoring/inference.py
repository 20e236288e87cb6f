"""Batch inference by the champion model, and the data it is compared against.

Everything here takes a :class:`Champion`: the model module plus the exact
Delta version of ``cleaned_images`` it was trained on, so the drift reference and
the SHAP test images are the pixels that model saw, not today's table.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import torch

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.contract import ChampionRef, MlflowSettings
from rayml_assets.lib.common.image_limits import DEFAULT_ALLOWED_FORMATS, DEFAULT_MAX_PIXELS
from rayml_assets.lib.common.images import ImageRejected, decode_to_array, sha256_hex
from rayml_assets.lib.common.storage_options import StorageSettings
from rayml_assets.lib.dataset.file_checks import DEFAULT_MAX_FILE_BYTES, read_checked
from rayml_assets.lib.monitoring.contract import DEFAULT_BATCH_SIZE, ChampionMetadata
from rayml_assets.lib.monitoring.production import DEFAULT_MAX_FILES_PER_DAY, list_production_files, partition_key

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
SKIPPED_EXAMPLES = 10  # skipped files named in the metadata; the count covers them all


class NoChampionError(LookupError):
    """No model version carries the ``champion`` alias yet."""

    def __init__(self, detail: str = ""):
        message = f"no model has the alias '{CHAMPION_ALIAS}' yet — materialize registered_model first"
        super().__init__(f"{message} ({detail})" if detail else message)


class EmptyPartitionError(ValueError):
    """A daily partition has no data to test (no images, or no predictions)."""


@dataclass
class Champion:
    module: torch.nn.Module  # forward(x) -> logits, embed(x) -> penultimate features
    model_name: str
    model_version: str
    class_labels: list[str]
    delta_version: int  # version of cleaned_images the model was trained on
    cleaned_table_uri: str
    image_size: int = 32
    channels: int = 1

    def __post_init__(self) -> None:
        self.model_version = str(self.model_version)
        self.class_labels = [str(c) for c in self.class_labels]
        self.module.eval()  # dropout/batch-norm in inference mode, once and for all

    @property
    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.class_labels)}


def require_champion(champion: Champion | None) -> Champion:
    if champion is None:
        raise NoChampionError()
    return champion


# ---------------------------------------------------------------- forward passes


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, max(1, batch_size)):
        yield slice(start, min(start + batch_size, n))


def predict_arrays(
    module: torch.nn.Module, x: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``[N, K]`` and embeddings ``[N, D]`` of decoded images ``[N, C, H, W]``."""
    module.eval()
    probs, embeds = [], []
    with torch.inference_mode():
        for part in _batches(len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[part], dtype=np.float32))
            probs.append(torch.softmax(module(batch), dim=1).numpy())
            embeds.append(module.embed(batch).reshape(len(batch), -1).numpy())
    if not probs:
        # Shapes of an empty result still need K and D: one dummy pass finds them.
        dummy = torch.zeros((1, *x.shape[1:]), dtype=torch.float32)
        with torch.inference_mode():
            k, d = module(dummy).shape[1], module.embed(dummy).reshape(1, -1).shape[1]
        return np.zeros((0, k), np.float32), np.zeros((0, d), np.float32)
    return np.concatenate(probs).astype(np.float32), np.concatenate(embeds).astype(np.float32)


def decode_images(images: Sequence[bytes], image_size: int, channels: int) -> np.ndarray:
    if not images:
        return np.zeros((0, channels, image_size, image_size), np.float32)
    return np.stack([decode_to_array(b, image_size, channels) for b in images])


def _concat(
    module: torch.nn.Module, outputs: list[tuple[np.ndarray, np.ndarray]], empty: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if not outputs:
        return predict_arrays(module, empty)
    return np.concatenate([p for p, _ in outputs]), np.concatenate([e for _, e in outputs])


def predict_images(
    champion: Champion, images: Sequence[bytes], batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, K], embeddings [N, D])`` for encoded images, decoded batch by batch."""
    size, channels = champion.image_size, champion.channels
    outputs = [
        predict_arrays(champion.module, decode_images(images[part], size, channels), batch_size)
        for part in _batches(len(images), batch_size)
    ]
    return _concat(champion.module, outputs, decode_images([], size, channels))


# ---------------------------------------------------------------- the predictions table


class SkippedFile(NamedTuple):
    source_uri: str
    reason: str  # a RejectReason value: what ingest would have quarantined it as
    detail: str


@dataclass
class DayPredictions:
    date: str
    table: pa.Table  # PREDICTIONS_SCHEMA; zero rows for an empty day
    embeddings: np.ndarray  # [N, D], aligned with the table rows
    n_files: int
    skipped: list[SkippedFile] = field(default_factory=list)  # unreadable or undecodable files

    @property
    def is_empty(self) -> bool:
        return self.table.num_rows == 0

    def skipped_summary(self, max_examples: int = SKIPPED_EXAMPLES) -> dict:
        """How many files were skipped, by reason, and the first few with their reasons."""
        return {
            "n_skipped": len(self.skipped),
            "skipped_by_reason": dict(sorted(Counter(s.reason for s in self.skipped).items())),
            "skipped_files": [s._asdict() for s in self.skipped[:max_examples]],
        }


def predictions_table(
    champion: Champion,
    date: str,
    source_uris: Sequence[str],
    images: Sequence[bytes],
    probabilities: np.ndarray,
    predicted_at: datetime | None = None,
) -> pa.Table:
    """Rows of ``predictions`` for one day; ``image_id`` is the sha256 of the bytes."""
    if not (len(source_uris) == len(images) == len(probabilities)):
        raise ValueError("source_uris, images and probabilities must have the same length")
    top = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, int)
    labels = champion.class_labels
    if probabilities.shape[1:] and probabilities.shape[1] != len(labels):
        raise ValueError(f"model gives {probabilities.shape[1]} outputs for {len(labels)} class labels")
    n = len(images)
    when = predicted_at or datetime.now(timezone.utc)
    return pa.Table.from_pydict(
        {
            "image_id": [sha256_hex(b) for b in images],
            "source_uri": list(source_uris),
            "date": [partition_key(date)] * n,
            "model_name": [champion.model_name] * n,
            "model_version": [champion.model_version] * n,
            "predicted_label": [labels[i] for i in top],
            "confidence": probabilities.max(axis=1).astype(np.float32) if n else np.zeros(0, np.float32),
            "probabilities": [row.astype(np.float32) for row in probabilities],
            "bytes": list(images),
            "predicted_at": [when] * n,
        },
        schema=lake.PREDICTIONS_SCHEMA,
    )


def predict_day(
    champion: Champion,
    production_root: str,
    date: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_files: int = DEFAULT_MAX_FILES_PER_DAY,
    on_progress: Callable[[int, int], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    storage: StorageSettings | None = None,
) -> DayPredictions:
    """Predict every image landed for ``date``. An empty day gives an empty table, not an error.

    Production data is not validated on landing, so each file passes ingest's checks
    here: one that ingest would quarantine (special file, too large, bomb, corrupt,
    disallowed format) is skipped with its reason; one bad upload must not block the day.
    """
    key = partition_key(date)
    files = list_production_files(production_root, key, max_files, storage)
    uris: list[str] = []
    images: list[bytes] = []
    skipped: list[SkippedFile] = []
    outputs: list[tuple[np.ndarray, np.ndarray]] = []
    limits = {"allowed_formats": DEFAULT_ALLOWED_FORMATS, "max_pixels": max_pixels}
    for part in _batches(len(files), batch_size):
        arrays = []
        for f in files[part]:
            try:
                data = read_checked(f.source_uri, max_file_bytes, storage)
                arrays.append(decode_to_array(data, champion.image_size, champion.channels, **limits))
            except ImageRejected as exc:
                skipped.append(SkippedFile(f.source_uri, exc.reason.value, exc.detail))
                continue
            uris.append(f.source_uri)
            images.append(data)
        if arrays:
            outputs.append(predict_arrays(champion.module, np.stack(arrays), batch_size))
        if on_progress:
            on_progress(part.stop, len(files))
    p, e = _concat(champion.module, outputs, decode_images([], champion.image_size, champion.channels))
    return DayPredictions(key, predictions_table(champion, key, uris, images, p), e, len(files), skipped)


def write_predictions(predictions_uri: str, day: DayPredictions, storage_options: dict | None = None) -> int:
    """Replace the day's partition of ``predictions`` (idempotent re-runs); returns the Delta version."""
    return lake.overwrite(
        predictions_uri,
        day.table,
        lake.PREDICTIONS_SCHEMA,
        metadata={"date": day.date, "rows": str(day.table.num_rows)},
        predicate=f"date = '{partition_key(day.date)}'",
        storage_options=storage_options,
    )


def read_predictions(
    predictions_uri: str, date: str, columns: list[str] | None = None, storage_options: dict | None = None
) -> pa.Table:
    """The day's rows of ``predictions`` (latest version); empty when the table or day is absent."""
    schema = lake.PREDICTIONS_SCHEMA
    if columns:
        schema = pa.schema([schema.field(c) for c in columns])
    if not lake.exists(predictions_uri, storage_options):
        return schema.empty_table()
    table = lake.read_at(
        predictions_uri,
        None,
        columns=columns,
        filter=pads.field("date") == partition_key(date),
        storage_options=storage_options,
    )
    return table.sort_by("source_uri") if "source_uri" in table.column_names else table


def probabilities_matrix(table: pa.Table, n_classes: int) -> np.ndarray:
    """The ``probabilities`` list column as a dense ``[N, K]`` float32 array."""
    if table.num_rows == 0:
        return np.zeros((0, n_classes), np.float32)
    flat = pc.list_flatten(table.column("probabilities")).to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(table.num_rows, n_classes)


# ---------------------------------------------------------------- the pinned dataset


@dataclass
class LabelledImages:
    image_ids: list[str]
    labels: list[str]
    images: list[bytes]

    def __len__(self) -> int:
        return len(self.image_ids)


def load_split(
    champion: Champion,
    splits: Sequence[str],
    limit: int | None = None,
    seed: int = 0,
    storage_options: dict | None = None,
) -> LabelledImages:
    """Images of ``splits`` in ``cleaned_images`` at the champion's pinned Delta version.

    Excluded rows are left out (the model never trained on them). Rows are
    ordered by ``image_id`` before a seeded sample of ``limit``, so the same
    version and seed always give the same images whatever the file layout.
    """
    table = lake.read_at(
        champion.cleaned_table_uri,
        champion.delta_version,
        columns=["image_id", "label", "bytes"],
        filter=pads.field("split").isin(list(splits)) & (pads.field("excluded") == False),  # noqa: E712
        storage_options=storage_options,
    ).sort_by("image_id")
    n = table.num_rows
    if limit is not None and n > limit:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
        table = table.take(pa.array(keep))
    return LabelledImages(
        table.column("image_id").to_pylist(),
        [str(v) for v in table.column("label").to_pylist()],
        table.column("bytes").to_pylist(),
    )


# ---------------------------------------------------------------- loading inside a task script


def load_module(model_uri: str, mlflow_settings: MlflowSettings) -> tuple[torch.nn.Module, dict]:
    """The ``nn.Module`` behind a model URI, and the metadata logged with it (may be empty).

    The platform logs models in MLflow 3's ``pt2`` format plus rebuildable weights
    (``lib.training.tracking.log_model``): ``torch.export`` keeps only ``forward``, so
    the module is rebuilt with ``load_logged_model``. A model logged as a pickled
    module (``serialization_format='pickle'``) loads with ``mlflow.pytorch``.
    """
    import mlflow.pytorch

    # heavy (Ray): only where a model is loaded
    from rayml_assets.lib.training.tracking import load_logged_model, mlflow_uris

    try:
        return load_logged_model(model_uri, mlflow_settings)
    except FileNotFoundError:
        with mlflow_uris(mlflow_settings):
            return mlflow.pytorch.load_model(model_uri, map_location="cpu"), {}


def load_champion(
    ref: ChampionRef, mlflow_settings: MlflowSettings, given: ChampionMetadata = ChampionMetadata()
) -> Champion:
    """Load the pinned champion ``ref.model_uri`` (``models:/name/3``, ``models:/name@champion``, a path).

    Fields of ``given`` left ``None`` come from the metadata logged with the model.
    An empty ``model_uri`` (the caller found no champion), a missing registered
    model or alias becomes :class:`NoChampionError`, so a monitoring run before
    the first registration fails with a clear message.
    """
    if not ref.model_uri:
        raise NoChampionError("no model_uri was passed to the task")
    from mlflow.exceptions import MlflowException

    try:
        module, meta = load_module(ref.model_uri, mlflow_settings)
    except MlflowException as exc:
        # "Registered model ... not found" / "Registered model alias ... not found." (the
        # latter comes as INVALID_PARAMETER_VALUE); other registry failures stay as they are.
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in exc.message.lower():
            raise NoChampionError(f"{ref.model_uri}: {exc.message}") from exc
        raise
    if not callable(getattr(module, "embed", None)):
        raise TypeError(f"{ref.model_uri} loads without an embed() method; drift detection needs the penultimate layer")

    def pick(value, key: str, default=None):
        value = meta.get(key, default) if value is None else value
        if value is None:
            raise ValueError(f"{ref.model_uri}: {key} is neither given nor logged with the model")
        return value

    return Champion(
        module=module,
        model_name=ref.model_name,
        model_version=ref.model_version,
        class_labels=list(pick(given.class_labels, "class_labels")),
        delta_version=int(pick(given.delta_version, "delta_version")),
        cleaned_table_uri=pick(given.cleaned_table_uri, "table_uri"),
        image_size=int(pick(given.image_size, "image_size", 32)),
        channels=int(pick(given.channels, "channels", 1)),
    )
