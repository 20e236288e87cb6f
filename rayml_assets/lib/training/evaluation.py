"""Classification quality of a model on one split of a pinned Delta version, DDP-aware."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from rayml_assets.lib.training.delta_stream import UNKNOWN_LABEL, DataSpec, DeltaImageStream


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
