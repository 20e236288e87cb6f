"""The cleaned table as a training input: a pinned Delta version streamed per DDP rank.

The cleaned table is never loaded by the driver. Each DDP rank streams the
pinned Delta version in Arrow record batches, keeps the rows whose
``image_id`` hashes to its rank, decodes them and shuffles through a bounded
buffer. All ranks train on the same number of samples per epoch (the smallest
shard), otherwise DDP would hang waiting for a rank that ran out of batches.
Cloud credentials are never put in the Tune config (Tune writes it to disk): the
spec carries the task's lake settings (variable names only), and each worker turns
them into delta-rs options from its own environment.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import pyarrow.dataset as pads
import torch
from torch.utils.data import IterableDataset, get_worker_info

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import decode_to_array
from rayml_assets.lib.common.contract import LakeSettings

UNKNOWN_LABEL = -1


@dataclass(frozen=True)
class DataSpec:
    """Which pixels a model trains on: a pinned Delta version and its label set."""

    table_uri: str
    version: int
    class_labels: tuple[str, ...]
    image_size: int = 32
    channels: int = 1
    sample_fraction: float = 1.0  # sit/uat train on a stable sample of the rows
    lake: dict | None = None  # LakeSettings as a dict: names of variables, no values

    def delta_options(self) -> dict | None:
        """delta-rs options for the table, resolved from this process's environment."""
        return LakeSettings(**self.lake).delta_options() if self.lake else None

    def to_dict(self) -> dict:
        return {**asdict(self), "class_labels": list(self.class_labels)}

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        return cls(**{**d, "class_labels": tuple(d["class_labels"])})


def split_filter(split: str) -> pads.Expression:
    return (pads.field("split") == split) & (pads.field("excluded") == False)  # noqa: E712


def discover_labels(table_uri: str, version: int, storage_options: dict | None = None) -> tuple[str, ...]:
    """Sorted labels of the non-excluded rows at ``version``, streamed (labels column only)."""
    labels: set[str] = set()
    for batch in lake.iter_batches(
        table_uri,
        version,
        ["label"],
        filter=pads.field("excluded") == False,
        batch_size=65536,  # noqa: E712
        storage_options=storage_options,
    ):
        labels.update(batch.column(0).unique().to_pylist())
    labels.discard(None)
    return tuple(sorted(labels))


def in_sample(image_id: str, fraction: float) -> bool:
    """A stable sample keyed on other hash bits than the split, so every split is sampled alike."""
    return fraction >= 1.0 or int(image_id[8:16], 16) / 0x1_0000_0000 < fraction


def shard_of(image_id: str, world_size: int) -> int:
    """Stable rank of a row, independent of file layout and scan order."""
    return zlib.crc32(image_id.encode()) % world_size


def shard_sizes(spec: DataSpec, split: str, world_size: int, storage_options: dict | None = None) -> list[int]:
    """Rows per rank for ``split``, read from the ``image_id`` column only."""
    sizes = [0] * world_size
    for batch in lake.iter_batches(
        spec.table_uri,
        spec.version,
        ["image_id"],
        filter=split_filter(split),
        batch_size=65536,
        storage_options=storage_options,
    ):
        for image_id in batch.column(0).to_pylist():
            if in_sample(image_id, spec.sample_fraction):
                sizes[shard_of(image_id, world_size)] += 1
    return sizes


class DeltaImageStream(IterableDataset):
    """Stream one split of a pinned Delta version as ``(image[C,H,W], label_index)``.

    ``rank``/``world_size`` select this DDP rank's rows; ``limit`` caps the
    samples per epoch (equal across ranks for training); ``shuffle`` randomises
    fragment order and passes rows through a ``shuffle_buffer``-sized buffer,
    seeded by ``(seed, epoch, rank)`` so runs are reproducible.
    Labels unknown to ``spec.class_labels`` raise, or map to ``UNKNOWN_LABEL``
    when ``unknown_labels="keep"`` (evaluating an older model on newer data).
    """

    def __init__(
        self,
        spec: DataSpec,
        split: str,
        *,
        rank: int = 0,
        world_size: int = 1,
        limit: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        shuffle_buffer: int = 2048,
        read_batch_rows: int = 256,
        unknown_labels: str = "error",
        storage_options: dict | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.spec, self.split, self.rank, self.world_size = spec, split, rank, world_size
        self.limit, self.shuffle, self.seed, self.epoch = limit, shuffle, seed, epoch
        self.shuffle_buffer, self.read_batch_rows = max(1, shuffle_buffer), read_batch_rows
        self.unknown_labels, self.storage_options = unknown_labels, storage_options
        self._index = {label: i for i, label in enumerate(spec.class_labels)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _label_index(self, label: str) -> int:
        index = self._index.get(label)
        if index is None:
            if self.unknown_labels != "keep":
                raise ValueError(f"label {label!r} is not one of the model's classes {self.spec.class_labels}")
            return UNKNOWN_LABEL
        return index

    def _rows(self) -> Iterator[tuple[str, bytes]]:
        filt = split_filter(self.split)
        fragments = list(
            lake.dataset_at(self.spec.table_uri, self.spec.version, self.storage_options).get_fragments(filter=filt)
        )
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epoch}").shuffle(fragments)
        for fragment in fragments:
            for batch in fragment.to_batches(
                columns=["image_id", "label", "bytes"], filter=filt, batch_size=self.read_batch_rows
            ):
                ids, labels, blobs = (batch.column(i).to_pylist() for i in range(3))
                for image_id, label, blob in zip(ids, labels, blobs):
                    if shard_of(image_id, self.world_size) == self.rank and in_sample(image_id, self.spec.sample_fraction):
                        yield label, blob

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        worker = get_worker_info()
        if worker is not None and worker.num_workers > 1:
            # Sharding is per DDP rank; DataLoader sub-processes would repeat rows.
            raise ValueError("DeltaImageStream is meant for DataLoader(num_workers=0)")
        rng = random.Random(f"{self.seed}:{self.epoch}:{self.rank}")
        buffer: list[tuple[torch.Tensor, int]] = []
        emitted = 0
        for label, blob in self._rows():
            if self.limit is not None and emitted >= self.limit:
                return
            sample = (
                torch.from_numpy(decode_to_array(blob, self.spec.image_size, self.spec.channels)),
                self._label_index(label),
            )
            if not self.shuffle:
                emitted += 1
                yield sample
                continue
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                # swap-remove a random element: O(1) and uniform over the buffer
                j = rng.randrange(len(buffer))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                emitted += 1
                yield buffer.pop()
        rng.shuffle(buffer)
        for sample in buffer:
            if self.limit is not None and emitted >= self.limit:
                return
            emitted += 1
            yield sample
