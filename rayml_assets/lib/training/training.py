"""Distributed training core: Delta streaming dataset, the Ray Train worker loop, evaluation.

Ray pattern
-----------
Ray 2.60 turns Ray Train V2 on by default. With V2, the documented way to tune
is a Tune *function* trainable that launches a ``TorchTrainer`` per trial; on
this stack that hung on the second trial (``PlacementGroupCleaner: Failed to
query Ray Train Controller actor state``). We therefore pin the legacy
(V1) Train API with ``RAY_TRAIN_V2_ENABLED=0`` and hand a ``TorchTrainer``
straight to ``Tuner``: every trial is one DDP run whose coordinator lives in the
trial actor, schedulers (ASHA, PBT) and checkpoint hand-over between trials
are native, and ``Tuner.restore`` resumes it. The flag is read when
``ray.train`` is imported, in the driver *and* in every Ray worker process, so

- :func:`pin_train_v1` sets it in ``os.environ``; :mod:`rayml_assets.lib.training.tuning`
  calls it before its own ``import ray.train`` and it refuses to go on if
  ``ray.train`` was already imported with V2 on;
- :func:`ray_runtime_env` carries it to the workers (``ray.init(runtime_env=...)``).

This module imports Ray only inside the worker loop, so evaluation, checkpoint
loading and the registry stay light (no Ray in the Dagster process).

See docs/training.md for the resource arithmetic (logical CPUs per trial).

Data
----
The cleaned table is never loaded by the driver. Each DDP rank streams the
pinned Delta version in Arrow record batches, keeps the rows whose
``image_id`` hashes to its rank, decodes them and shuffles through a bounded
buffer. All ranks train on the same number of samples per epoch (the smallest
shard), otherwise DDP would hang waiting for a rank that ran out of batches.
Cloud credentials are never put in the Tune config (Tune writes it to disk):
deltalake reads them from the workers' environment.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

V2_FLAG = "RAY_TRAIN_V2_ENABLED"
# The V1 path is a deliberate choice (module docstring): its per-call
# deprecation warnings would drown the training logs.
TRAIN_ENV = {V2_FLAG: "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}


def pin_train_v1() -> None:
    """Select Ray Train V1 for this process; call before anything imports ``ray.train``."""
    if "ray.train" in sys.modules and os.environ.get(V2_FLAG) != "0":
        raise RuntimeError(
            "ray.train was imported with Ray Train V2 enabled before rayml_assets.lib.training.tuning; "
            f"set {V2_FLAG}=0 before importing ray.train (see docs/training.md)"
        )
    os.environ.update(TRAIN_ENV)


import numpy as np
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import decode_to_array
from rayml_assets.lib.training.models import build_model

STATE_FILE = "state.pt"
META_FILE = "meta.json"
UNKNOWN_LABEL = -1

# Hyperparameters the worker loop understands, with the value used when the
# search space leaves one out. The search space may only name these keys.
HYPERPARAM_DEFAULTS: dict[str, object] = {
    "model": "small_cnn",
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": 64,
    "weight_decay": 5e-4,
    "optimizer": "sgd",
    "lr_schedule": "cosine",
}


def ray_runtime_env() -> dict:
    """The runtime env every Ray worker of a tuning job needs (V1 Train, no telemetry)."""
    return {"env_vars": {**TRAIN_ENV, "RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0")}}


@dataclass(frozen=True)
class DataSpec:
    """Which pixels a model trains on: a pinned Delta version and its label set."""

    table_uri: str
    version: int
    class_labels: tuple[str, ...]
    image_size: int = 32
    channels: int = 1
    sample_fraction: float = 1.0  # sit/uat train on a stable sample of the rows

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


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    max_degrees: float = 10.0,
    max_translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
) -> torch.Tensor:
    """Small random rotation/shift/scale per image, done for the whole batch at once."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    s = scale[0] + torch.rand(n, generator=generator) * (scale[1] - scale[0])
    # affine_grid works in [-1, 1] coordinates: a shift of f * width is 2f there
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * max_translate)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


@dataclass
class EvalResult:
    """Classification quality on one split; ``confusion[i][j]`` = true i predicted j."""

    split: str
    n: int
    accuracy: float
    loss: float
    class_labels: list[str]
    confusion: list[list[int]]
    per_class_precision: dict[str, float] = field(default_factory=dict)
    per_class_recall: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def confusion_metrics(confusion: np.ndarray, class_labels: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-class precision (column-wise) and recall (row-wise); 0.0 where undefined."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    return (
        {label: float(p) for label, p in zip(class_labels, precision)},
        {label: float(r) for label, r in zip(class_labels, recall)},
    )


def evaluate(
    model: torch.nn.Module,
    spec: DataSpec,
    split: str,
    *,
    batch_size: int = 256,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str | None = None,
    storage_options: dict | None = None,
) -> EvalResult:
    """Accuracy, loss, per-class precision/recall and confusion matrix on ``split``.

    Under DDP each rank scores its own shard and the counts are summed with one
    all-reduce, so ranks may hold different numbers of rows. Rows whose label
    the model does not know count as wrong and stay out of the confusion matrix.
    """
    net = getattr(model, "module", model)  # DDP's forward syncs buffers: a collective we must avoid
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    c = len(spec.class_labels)
    confusion = torch.zeros(c * c, dtype=torch.float64)
    loss_sum = n = correct = 0.0
    stream = DeltaImageStream(
        spec, split, rank=rank, world_size=world_size, unknown_labels="keep", storage_options=storage_options
    )
    with torch.no_grad():
        for x, y in DataLoader(stream, batch_size=batch_size):
            logits = net(x.to(device)).cpu()
            pred = logits.argmax(1)
            known = y != UNKNOWN_LABEL
            n += len(y)
            correct += float((pred[known] == y[known]).sum())
            if known.any():
                loss_sum += float(F.cross_entropy(logits[known], y[known], reduction="sum"))
                confusion += torch.bincount(y[known] * c + pred[known], minlength=c * c).double()
    totals = torch.cat([confusion, torch.tensor([loss_sum, n, correct], dtype=torch.float64)])
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        on_device = totals.to(device)
        dist.all_reduce(on_device)
        totals = on_device.cpu()
    net.train(was_training)
    confusion, (loss_sum, n, correct) = totals[: c * c].view(c, c), totals[c * c :].tolist()
    if n == 0:
        raise ValueError(f"split {split!r} of {spec.table_uri}@v{spec.version} has no rows")
    labels = list(spec.class_labels)
    precision, recall = confusion_metrics(confusion.numpy(), labels)
    return EvalResult(
        split=split,
        n=int(n),
        accuracy=correct / n,
        loss=loss_sum / n,
        class_labels=labels,
        confusion=confusion.long().tolist(),
        per_class_precision=precision,
        per_class_recall=recall,
    )


def hyperparams(config: dict) -> dict:
    """The hyperparameters of a trial config, defaults filled in."""
    return {key: config.get(key, default) for key, default in HYPERPARAM_DEFAULTS.items()}


def _lr_at(hp: dict, epoch: int, max_epochs: int) -> float:
    if hp["lr_schedule"] == "cosine":
        return float(hp["lr"]) * 0.5 * (1 + math.cos(math.pi * epoch / max_epochs))
    return float(hp["lr"])


def _make_optimizer(hp: dict, params) -> torch.optim.Optimizer:
    if hp["optimizer"] == "sgd":
        momentum = float(hp["momentum"])
        return torch.optim.SGD(
            params, lr=float(hp["lr"]), momentum=momentum, nesterov=momentum > 0, weight_decay=float(hp["weight_decay"])
        )
    if hp["optimizer"] == "adamw":
        return torch.optim.AdamW(
            params, lr=float(hp["lr"]), betas=(float(hp["momentum"]), 0.999), weight_decay=float(hp["weight_decay"])
        )
    raise ValueError(f"unknown optimizer {hp['optimizer']!r}")


def _set_hyperparams(optimizer: torch.optim.Optimizer, hp: dict, lr: float) -> None:
    # After a PBT exploit the optimizer state comes from the donor trial, but
    # lr/momentum must be this trial's (possibly perturbed) values.
    for group in optimizer.param_groups:
        group["lr"] = lr
        if "momentum" in group:
            group["momentum"] = float(hp["momentum"])
        if "betas" in group:
            group["betas"] = (float(hp["momentum"]), group["betas"][1])


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    meta: dict,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int = 0,
) -> Path:
    """Write ``state.pt`` (weights, optimizer, epoch) and ``meta.json`` (how to rebuild the model)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    net = getattr(model, "module", model)
    state = {"model": net.state_dict(), "epoch": epoch}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    torch.save(state, directory / STATE_FILE)
    (directory / META_FILE).write_text(json.dumps({**meta, "epoch": epoch}, indent=2, sort_keys=True))
    return directory


def read_checkpoint(directory: str | Path) -> tuple[dict, dict]:
    """``(state, meta)`` of a checkpoint directory, loaded without unpickling code."""
    directory = Path(directory)
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    return state, json.loads((directory / META_FILE).read_text())


def load_checkpoint_model(directory: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint in eval mode, plus its metadata (class labels, data version...).

    ``directory`` may be remote (``abfss://``, ``s3://``...): it is copied down first.
    """
    if "://" in str(directory) and not str(directory).startswith("file://"):
        with tempfile.TemporaryDirectory() as tmp:
            pafs.copy_files(str(directory), tmp)
            state, meta = read_checkpoint(tmp)
    else:
        state, meta = read_checkpoint(str(directory).removeprefix("file://"))
    model = build_model(meta["model"], len(meta["class_labels"]), meta["channels"])
    model.load_state_dict(state["model"])
    return model.eval(), meta


def train_loop_per_worker(config: dict) -> None:
    """One DDP rank of one trial. ``config`` = hyperparameters + ``data`` + ``max_epochs`` + ``seed``...

    Reports ``val_accuracy`` and friends once per epoch with a checkpoint from
    rank 0, and resumes from ``ray.train.get_checkpoint()`` (fault-tolerance
    retries, ``Tuner.restore`` and PBT exploits all come through there).
    """
    pin_train_v1()  # a no-op in workers started with ray_runtime_env(); guards anything else
    import ray.train  # here, not at module level: evaluation and the registry do not need Ray
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))
    spec = DataSpec.from_dict(config["data"])
    hp = hyperparams(config)
    max_epochs, seed = int(config["max_epochs"]), int(config.get("seed", 0))
    device = ray.train.torch.get_device()
    torch.manual_seed(seed)  # DDP broadcasts rank 0's initial weights anyway

    model = build_model(hp["model"], len(spec.class_labels), spec.channels, config.get("pretrained_weights_path"))
    start_epoch, optimizer_state, restored_from = 0, None, ""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, meta = read_checkpoint(directory)
        model.load_state_dict(state["model"])
        start_epoch, optimizer_state = int(state["epoch"]), state.get("optimizer")
        restored_from = meta.get("trial_id", "")
    model = ray.train.torch.prepare_model(model)
    optimizer = _make_optimizer(hp, model.parameters())
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    quota = min(shard_sizes(spec, "train", world))
    if quota == 0:
        raise ValueError(f"a rank has no training rows in {spec.table_uri}@v{spec.version}; use fewer workers")
    batch_size = int(hp["batch_size"])
    augment = bool(config.get("augment", True))
    generator = torch.Generator().manual_seed(seed * 7919 + rank)
    meta = {
        "model": hp["model"],
        "class_labels": list(spec.class_labels),
        "channels": spec.channels,
        "image_size": spec.image_size,
        "table_uri": spec.table_uri,
        "delta_version": spec.version,
        "hyperparams": hp,
        "trial_id": ctx.get_trial_id() or "",
    }

    for epoch in range(start_epoch, max_epochs):
        lr = _lr_at(hp, epoch, max_epochs)
        _set_hyperparams(optimizer, hp, lr)
        model.train()
        stream = DeltaImageStream(
            spec, "train", rank=rank, world_size=world, limit=quota, shuffle=True, seed=seed, epoch=epoch
        )
        sums = torch.zeros(3, dtype=torch.float64)  # loss, correct, seen
        started = time.perf_counter()
        for x, y in DataLoader(stream, batch_size=batch_size):
            if augment:
                x = random_affine(x, generator)
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.tensor(
                [loss.item() * len(y), (logits.argmax(1) == y).sum().item(), len(y)], dtype=torch.float64
            )
        train_time = time.perf_counter() - started
        if world > 1:
            reduced = sums.to(device)
            dist.all_reduce(reduced)
            sums = reduced.cpu()
        val = evaluate(model, spec, "val", rank=rank, world_size=world, device=device)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(sums[0] / sums[2]),
            "train_accuracy": float(sums[1] / sums[2]),
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "lr": lr,
            "world_size": world,
            "train_samples": int(sums[2]),
            "train_samples_per_s": float(sums[2]) / train_time,
            "epoch_time_s": time.perf_counter() - started,
            "restored_from": restored_from,
        }
        with tempfile.TemporaryDirectory() as tmp:
            # Legacy Train copies the checkpoint into storage inside report(),
            # so the temporary directory may go away right after.
            report_checkpoint = None
            if rank == 0:
                save_checkpoint(tmp, model, meta, optimizer, epoch + 1)
                report_checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=report_checkpoint)
