"""A classical baseline on the challenger's own data: what a tuned network must beat to be worth promoting.

Two untuned scikit-learn classifiers, logistic regression and an RBF SVC (``SVC()``'s defaults), on
"tiny images": the model's own pixels (``delta_stream`` decoding at the model's ``image_size`` and
``channels``, the model's label indices) area-averaged to at most ``MAX_SIDE`` x ``MAX_SIDE``,
flattened and standardised. They are fitted on the pinned train split and scored on the whole test
split of the same Delta version, the rows ``evaluate`` scores the challenger on, so the two
accuracies compare like for like.

Why these choices: raw downsampled pixels with a linear and a kernel model are the textbook
classical baseline for image classification; area averaging (``adaptive_avg_pool2d``) is the
anti-aliased downsample (every pixel counts); 16x16 keeps a shape's layout while keeping the
features (256 per channel) cheap for lbfgs and the RBF kernel; per-pixel standardisation is what
both estimators expect (lbfgs converges, ``gamma="scale"`` weighs every pixel alike).

Bounded as the data grows: the train split is read as ``image_id`` and ``label`` only to count the
classes, again (only when there are more than ``max_train_rows`` rows) to keep the chosen ids, and
once more decoding only the chosen rows. The sample is stratified (each class keeps its share, at least one
row) and stable (the rows of a class with the smallest hash of their ``image_id``, so the same version
always gives the same sample). The test split is streamed in batches and only counted, never held.
The result says how many train rows were fitted on out of how many the split holds.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow.dataset as pads
import torch
import torch.nn.functional as F
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch.utils.data import DataLoader

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import decode_to_array
from rayml_assets.lib.training.delta_stream import DataSpec, DeltaImageStream, in_sample, split_filter

LOGREG, SVC_RBF = "logreg", "svc"
MAX_SIDE = 16
MAX_TRAIN_ROWS = 10_000
TRAIN_SPLIT, TEST_SPLIT = "train", "test"
_ID_BATCH_ROWS = 65536
_PIXEL_BATCH_ROWS = 256


@dataclass(frozen=True)
class BaselineResult:
    """Test accuracy of each baseline, and what they were fitted on."""

    logreg_accuracy: float
    svc_accuracy: float
    train_rows: int  # rows fitted on
    train_rows_in_split: int  # rows the train split holds: more than train_rows when the cap applied
    max_train_rows: int
    test_rows: int
    side: int  # the pixels are side x side per channel
    logreg_fit_seconds: float
    svc_fit_seconds: float

    @property
    def best_model(self) -> str:
        """The better baseline; logistic regression on a tie (the simpler one)."""
        return LOGREG if self.logreg_accuracy >= self.svc_accuracy else SVC_RBF

    @property
    def best_accuracy(self) -> float:
        return max(self.logreg_accuracy, self.svc_accuracy)

    @property
    def sampled(self) -> bool:
        return self.train_rows < self.train_rows_in_split

    def to_dict(self) -> dict:
        return {**asdict(self), "best_model": self.best_model, "best_accuracy": self.best_accuracy}


def sample_key(image_id: str) -> int:
    """Orders a class's rows for the sample; bits the split ([0:8]) and ``in_sample`` ([8:16]) do not use."""
    return int(image_id[16:24], 16)


def quotas(counts: dict[str, int], cap: int) -> dict[str, int]:
    """Rows per class for a stratified sample of ``cap`` rows: each class its share, at least one row.

    Largest remainder, so the quotas add up to ``min(cap, total)`` exactly (to the number of classes
    when there are more classes than ``cap``: every class keeps one row).
    """
    total = sum(counts.values())
    if total <= cap:
        return dict(counts)
    shares = {label: cap * n / total for label, n in counts.items()}
    quota = {label: min(n, max(1, int(shares[label]))) for label, n in counts.items()}
    while sum(quota.values()) > cap:  # the one-row floor overshot: take it back from the largest classes
        largest = max(quota, key=lambda label: (quota[label], label))
        if quota[largest] <= 1:
            break
        quota[largest] -= 1
    for label in sorted(counts, key=lambda label: (int(shares[label]) - shares[label], label)):
        if sum(quota.values()) >= cap:
            break
        if quota[label] < counts[label]:
            quota[label] += 1
    return quota


def _ids_and_labels(spec: DataSpec, storage_options: dict | None) -> Iterator[tuple[str, str]]:
    known = set(spec.class_labels)
    for batch in lake.iter_batches(
        spec.table_uri, spec.version, ["image_id", "label"], filter=split_filter(TRAIN_SPLIT),
        batch_size=_ID_BATCH_ROWS, storage_options=storage_options,
    ):
        for image_id, label in zip(*(batch.column(i).to_pylist() for i in range(2))):
            if label in known and in_sample(image_id, spec.sample_fraction):
                yield image_id, label


def sample_train_ids(spec: DataSpec, cap: int, storage_options: dict | None = None) -> tuple[set[str] | None, int, int]:
    """``(ids, sampled rows, rows in split)`` of the stable stratified sample; ids ``None``: take every row."""
    counts = Counter(label for _, label in _ids_and_labels(spec, storage_options))
    total = sum(counts.values())
    if total <= cap:
        return None, total, total
    quota = quotas(counts, cap)
    kept: dict[str, list[tuple[int, str]]] = {label: [] for label in quota}  # max-heaps of (-key, id)
    ids: set[str] = set()  # what the heaps hold: a row written twice is kept once
    for image_id, label in _ids_and_labels(spec, storage_options):
        if image_id in ids:
            continue
        heap, item = kept[label], (-sample_key(image_id), image_id)
        if len(heap) < quota[label]:
            heapq.heappush(heap, item)
            ids.add(image_id)
        elif item > heap[0]:  # a smaller key than the largest one kept
            ids.discard(heapq.heapreplace(heap, item)[1])
            ids.add(image_id)
    return ids, len(ids), total


def features(x: torch.Tensor, side: int) -> np.ndarray:
    """Square ``[N, C, H, H]`` pixels area-averaged to at most ``side`` x ``side``, flattened to ``[N, C*s*s]``."""
    if x.shape[-1] > side:
        x = F.adaptive_avg_pool2d(x, side)
    return x.reshape(len(x), -1).numpy()


def _train_matrix(
    spec: DataSpec, ids: set[str] | None, rows: int, side: int, storage_options: dict | None
) -> tuple[np.ndarray, np.ndarray]:
    """The sampled train rows as features and label indices, decoded batch by batch into one array."""
    index = {label: i for i, label in enumerate(spec.class_labels)}
    filt = split_filter(TRAIN_SPLIT)
    if ids is not None:
        filt = filt & pads.field("image_id").isin(sorted(ids))
    wanted = set(ids) if ids is not None else None  # a row copied under one id is taken once

    def take(image_id: str, label: str) -> bool:
        if label not in index or not in_sample(image_id, spec.sample_fraction):
            return False
        if wanted is None:
            return True
        if image_id not in wanted:
            return False
        wanted.discard(image_id)
        return True

    x, y, n = None, np.empty(rows, dtype=np.int64), 0
    for batch in lake.iter_batches(
        spec.table_uri, spec.version, ["image_id", "label", "bytes"], filter=filt,
        batch_size=_PIXEL_BATCH_ROWS, storage_options=storage_options,
    ):
        picked = [
            (label, blob)
            for image_id, label, blob in zip(*(batch.column(i).to_pylist() for i in range(3)))
            if take(image_id, label)
        ][: rows - n]
        if not picked:
            continue
        # The same decoding as DeltaImageStream: the pixels the model trained on.
        pixels = torch.from_numpy(np.stack([decode_to_array(b, spec.image_size, spec.channels) for _, b in picked]))
        chunk = features(pixels, side)
        if x is None:
            x = np.empty((rows, chunk.shape[1]), dtype=np.float32)
        x[n : n + len(chunk)], y[n : n + len(chunk)] = chunk, [index[label] for label, _ in picked]
        n += len(chunk)
    if x is None:
        raise ValueError(f"none of the sampled train rows of {spec.table_uri}@v{spec.version} could be read")
    return x[:n], y[:n]


def _fit(estimator, x: np.ndarray, y: np.ndarray):
    started = time.perf_counter()
    if len(np.unique(y)) < 2:  # both estimators refuse a single class: predict it, as they would
        estimator = DummyClassifier(strategy="most_frequent")
    estimator.fit(x, y)
    return estimator, time.perf_counter() - started


def fit_baseline(
    spec: DataSpec,
    *,
    max_train_rows: int = MAX_TRAIN_ROWS,
    side: int = MAX_SIDE,
    batch_size: int = 512,
    storage_options: dict | None = None,
) -> BaselineResult:
    """Fit both baselines on ``spec``'s train split (sampled to ``max_train_rows``), score them on its test split."""
    if max_train_rows < 1:
        raise ValueError(f"max_train_rows must be >= 1, got {max_train_rows}")
    ids, rows, in_split = sample_train_ids(spec, max_train_rows, storage_options)
    if rows == 0:
        raise ValueError(f"split {TRAIN_SPLIT!r} of {spec.table_uri}@v{spec.version} has no rows to fit a baseline on")
    x, y = _train_matrix(spec, ids, rows, side, storage_options)
    # max_iter: lbfgs's default 100 stops short on a few hundred pixel features; the rest is untuned.
    logreg, logreg_s = _fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), x, y)
    svc, svc_s = _fit(make_pipeline(StandardScaler(), SVC()), x, y)

    # Unknown labels kept (as evaluate keeps them): same rows, same denominator; they never match.
    stream = DeltaImageStream(spec, TEST_SPLIT, unknown_labels="keep", storage_options=storage_options)
    n = logreg_right = svc_right = 0
    for pixels, labels in DataLoader(stream, batch_size=batch_size):
        chunk, truth = features(pixels, side), labels.numpy()
        n += len(truth)
        logreg_right += int((logreg.predict(chunk) == truth).sum())
        svc_right += int((svc.predict(chunk) == truth).sum())
    if n == 0:
        raise ValueError(f"split {TEST_SPLIT!r} of {spec.table_uri}@v{spec.version} has no rows")
    return BaselineResult(
        logreg_accuracy=logreg_right / n,
        svc_accuracy=svc_right / n,
        train_rows=len(y),
        train_rows_in_split=in_split,
        max_train_rows=max_train_rows,
        test_rows=n,
        side=min(side, spec.image_size),
        logreg_fit_seconds=logreg_s,
        svc_fit_seconds=svc_s,
    )
