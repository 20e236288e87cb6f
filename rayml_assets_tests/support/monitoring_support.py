"""A tiny champion for the monitoring tests and benchmarks: no Ray, no MLflow, seconds of CPU.

``cleaned_images`` is written from the bundled training digits (split by
``image_id`` hash, a few rows excluded) and a narrow ``SmallCNN`` is trained
on its train split with plain torch.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import torch

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.contract import ChampionRef, MlflowSettings
from rayml_assets.lib.common.images import encode_png, sha256_hex
from rayml_assets.lib.monitoring.contract import ChampionMetadata
from rayml_assets.lib.monitoring.inference import Champion, decode_images, load_split
from rayml_assets.lib.training.models import SmallCNN
from rayml_assets.sample import training_digits

CLASS_LABELS = [str(i) for i in range(10)]
EXCLUDED_EVERY = 97  # a few rows flagged by cleaning: never trained on, never in a reference
BENCH_EPOCHS = 15  # the benchmarks' champion: 0.986 test accuracy (7 epochs: 0.88)


def split_of(image_id: str) -> str:
    bucket = int(image_id[:8], 16) % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")


def write_cleaned_table(lake_root: str) -> tuple[str, int]:
    """Write ``cleaned_images`` from the training digits; returns ``(uri, version)``."""
    rows = []
    now = datetime.now(timezone.utc)
    for position, digit in enumerate(training_digits()):
        data = encode_png(digit.pixels)
        image_id = sha256_hex(data)
        excluded = position % EXCLUDED_EVERY == 0
        rows.append(
            {
                "image_id": image_id,
                "source_uri": f"file:///landing/{digit.label}/digit_{digit.index:04d}.png",
                "label": digit.label,
                "width": 32,
                "height": 32,
                "format": "PNG",
                "bytes": data,
                "ingested_at": now,
                "batch_id": "fixture",
                "split": split_of(image_id),
                "excluded": excluded,
                "exclusion_reason": "outlier" if excluded else None,
                "raw_version": 0,
            }
        )
    uri = lake.table_uri(lake_root, lake.CLEANED_IMAGES)
    version = lake.overwrite(uri, pa.Table.from_pylist(rows, schema=lake.CLEANED_SCHEMA), lake.CLEANED_SCHEMA)
    return uri, version


def train_champion(cleaned_uri: str, version: int, epochs: int = 6, width: int = 8, seed: int = 0) -> Champion:
    """Train a narrow SmallCNN on the pinned train split (about 1 s of CPU per epoch)."""
    torch.manual_seed(seed)
    module = SmallCNN(len(CLASS_LABELS), in_channels=1, width=width)
    champion = Champion(module, "tiny_cnn", "1", CLASS_LABELS, version, cleaned_uri, 32, 1)
    train = load_split(champion, ("train",))
    x = torch.from_numpy(decode_images(train.images, 32, 1))
    y = torch.tensor([champion.label_index[label] for label in train.labels])
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    # Annealing to zero lets the weights (and batch-norm statistics) settle: with a
    # constant rate, test accuracy swung between 0.68 and 0.85 from one epoch to the next.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=epochs * -(-len(x) // 64))
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # such narrow convolutions run 3x faster on one thread than on two
    try:
        module.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), 64):
                batch = order[start : start + 64]
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(module(x[batch]), y[batch]).backward()
                optimizer.step()
                scheduler.step()
    finally:
        torch.set_num_threads(threads)
    module.eval()
    return champion


@functools.cache
def shared_champion(epochs: int = 7) -> tuple[str, Champion]:
    """``(lake_root, champion)`` built once per process and shared by every monitoring test file.

    Tests must treat both as read-only: nothing writes to this lake. Seven epochs
    keep the suite fast; the benchmarks train longer for a realistic champion.
    """
    root = tempfile.mkdtemp(prefix="rayml-monitoring-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    uri, version = write_cleaned_table(f"{root}/lake")
    return f"{root}/lake", train_champion(uri, version, epochs=epochs)


@functools.cache
def saved_model_uri() -> str:
    """The shared champion saved as an MLflow model folder: what a task script loads by URI."""
    import mlflow.pytorch

    lake_root, champion = shared_champion()
    path = f"{lake_root.rsplit('/', 1)[0]}/mlflow_model"
    # "pickle" keeps embed(); MLflow 3's default "pt2" export would keep forward() only.
    mlflow.pytorch.save_model(champion.module, path, serialization_format="pickle", pip_requirements=["torch"])
    return path


def champion_params(champion: Champion, model_uri: str) -> dict:
    """The champion part of a monitoring task's parameters: the ref, its metadata, where MLflow is.

    The fixture's model is saved without the metadata the platform logs, so the
    metadata travels in ``champion_metadata``; MLflow points at a sqlite store beside
    the shared lake (nothing is registered; the drift tasks log their report runs there).
    """
    lake_root, _ = shared_champion()
    return {
        "champion": ChampionRef(
            model_uri=model_uri, model_name=champion.model_name, model_version=champion.model_version
        ),
        "champion_metadata": ChampionMetadata(
            class_labels=champion.class_labels,
            delta_version=champion.delta_version,
            cleaned_table_uri=champion.cleaned_table_uri,
            image_size=champion.image_size,
            channels=champion.channels,
        ),
        # Artifacts beside it too: the drift tasks log their reports, and must not write ./mlruns.
        "mlflow": MlflowSettings(
            tracking_uri=f"sqlite:///{lake_root.rsplit('/', 1)[0]}/mlflow.db",
            artifact_location=f"{lake_root.rsplit('/', 1)[0]}/mlflow_artifacts",
        ),
    }


def accuracy(champion: Champion, split: str = "test") -> float:
    data = load_split(champion, (split,))
    with torch.inference_mode():
        logits = champion.module(torch.from_numpy(decode_images(data.images, 32, 1)))
    predicted = [champion.class_labels[i] for i in logits.argmax(1).tolist()]
    return float(np.mean([p == t for p, t in zip(predicted, data.labels)]))
