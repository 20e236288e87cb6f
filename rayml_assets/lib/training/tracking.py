"""MLflow layout of a tuning run, written with the plain ``mlflow`` client.

Layout (one MLflow experiment, ``MlflowSettings.experiment_name``):

- a **parent run** per tuning experiment, tagged ``dagster_run_id``, ``asset_key``,
  ``delta_version``, ``git_sha`` and ``rayml.tune_experiment``; it holds the
  dataset input ``cleaned_images@v{version}`` (a Delta source), the tuning
  config, the summary metrics, the learning-curve plot and the best model;
- a **child run** per trial (``mlflow.parentRunId``), with the trial's
  hyperparameters and per-epoch metrics logged at ``step=epoch``.

Child runs are written from the driver *after* ``Tuner.fit`` returns, from
the trials' persisted histories, rather than live from a Tune callback:
Tune pickles RunConfig callbacks into the experiment and a restored run
brings back the pickled ones, and the sqlite store wants a single writer. The
after-the-fact pass is idempotent (runs are found by tag, only missing
epochs are logged), so an interrupted and resumed tuning ends with exactly one
complete child run per trial. Live progress goes to the Dagster logs instead.

The best model is logged in MLflow 3's safe ``pt2`` format (serving, pyfunc)
plus our own ``weights.pt`` + ``model_meta.json`` as extra files:
``torch.export`` drops every method but ``forward``, so
:func:`load_logged_model` rebuilds the real ``nn.Module`` (with ``embed``) from
those, with no pickle involved.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from importlib.metadata import version as installed_version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the task script runs in subprocesses and on clusters
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.dataset as pads  # noqa: E402
import torch  # noqa: E402
from mlflow.data.delta_dataset_source import DeltaDatasetSource  # noqa: E402
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID  # noqa: E402

from rayml_assets.lib.common import lake  # noqa: E402
from rayml_assets.lib.common.contract import LakeSettings, MlflowSettings  # noqa: E402
from rayml_assets.lib.common.mlflow_search import tag_equals  # noqa: E402
from rayml_assets.lib.training.checkpoints import load_checkpoint_model  # noqa: E402
from rayml_assets.lib.training.models import build_model  # noqa: E402
from rayml_assets.lib.training.tuning_config import TuningConfig  # noqa: E402
from rayml_assets.lib.training.tuning_result import TrialSummary, TuningResult  # noqa: E402

TAG_EXPERIMENT = "rayml.tune_experiment"
TAG_ROLE = "rayml.role"
TAG_TRIAL = "rayml.trial_id"
TAG_BEST_CHECKPOINT = "rayml.best_checkpoint"
TAG_BEST_MODEL_URI = "rayml.best_model_uri"
TAG_LOST_NODES = "rayml.lost_nodes"
MODEL_ARTIFACT = "model"
WEIGHTS_FILE = "weights.pt"
MODEL_META_FILE = "model_meta.json"
CLASS_LABELS_FILE = "class_labels.json"
EPOCH_METRICS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "train_samples_per_s",
    "epoch_time_s",
    "num_nodes",
    "start_epoch",
)
_BATCH = 900  # log_batch accepts at most 1000 metrics


@contextmanager
def mlflow_uris(settings: MlflowSettings) -> Iterator[None]:
    """Point mlflow's fluent API (log_model, load_model, register_model) at ``settings`` for a block."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri or settings.tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def _chunks(items: list, size: int = _BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def split_label_counts(table_uri: str, version: int, storage_options: dict | None = None) -> pd.DataFrame:
    """Rows per (split, label) of the non-excluded data at ``version``: the dataset's MLflow profile."""
    counts: dict[tuple[str, str], int] = {}
    for batch in lake.iter_batches(
        table_uri,
        version,
        ["split", "label"],
        filter=pads.field("excluded") == False,  # noqa: E712
        batch_size=65536,
        storage_options=storage_options,
    ):
        for key, n in batch.to_pandas().value_counts(["split", "label"]).items():
            counts[key] = counts.get(key, 0) + int(n)
    rows = [{"split": s, "label": label, "rows": n} for (s, label), n in sorted(counts.items())]
    return pd.DataFrame(rows, columns=["split", "label", "rows"])


def plot_learning_curves(result: TuningResult, path: str | Path, metric: str = "val_accuracy") -> Path:
    """One line per trial of ``metric`` by epoch; the best trial drawn bold, a trial the scheduler
    stopped early ends in a cross."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5))
    stopped = {t.trial_id for t in result.trials if t.stopped_early}
    for trial_id, curve in result.learning_curves(metric).items():
        if curve:
            epochs, values = zip(*curve)
            best = trial_id == result.best_trial_id
            if trial_id in stopped:
                ax.plot(epochs[-1], values[-1], marker="x", markersize=10, color="black", zorder=3)
            ax.plot(
                epochs,
                values,
                marker="o",
                linewidth=2.5 if best else 1,
                alpha=1 if best else 0.6,
                label=trial_id + (" (best)" if best else " (stopped early)" if trial_id in stopped else ""),
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(
        f"{result.experiment_name}: {result.num_trials} trials, {result.epochs_used}/{result.epochs_full} epochs"
    )
    ax.grid(alpha=0.3)
    if result.num_trials <= 16:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class TuningTracker:
    """Writes one tuning experiment's parent run, child runs and best model.

    ``lake`` reaches the table and the checkpoints where they are on cloud storage."""

    def __init__(self, settings: MlflowSettings, lake: LakeSettings | None = None):
        self.settings = settings
        self.storage_options = lake.delta_options() if lake else None
        self.storage = lake.storage if lake else None
        self.client = settings.client()
        self.experiment_id = settings.ensure_experiment()

    def _find_runs(self, filter_string: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=1000)

    def start_parent(self, tune_experiment: str, tags: dict[str, str], run_name: str | None = None) -> str:
        """The parent run of ``tune_experiment``: reused when it exists, so a resumed tuning keeps one parent."""
        tags = {k: str(v) for k, v in tags.items() if v is not None}
        found = self._find_runs(
            f"{tag_equals(TAG_EXPERIMENT, tune_experiment)} and {tag_equals(TAG_ROLE, 'parent')}"
        )
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name or tune_experiment,
            tags={**tags, TAG_EXPERIMENT: tune_experiment, TAG_ROLE: "parent"},
        )
        return run.info.run_id

    def log_dataset(self, run_id: str, table_uri: str, version: int) -> None:
        """The pinned Delta version as the run's training input ``cleaned_images@v{version}``."""
        profile = split_label_counts(table_uri, version, self.storage_options)
        digest = hashlib.sha256(f"{table_uri}@{version}\n{profile.to_csv(index=False)}".encode()).hexdigest()[:16]
        dataset = mlflow.data.from_pandas(
            profile,
            source=DeltaDatasetSource(path=table_uri, delta_table_version=int(version)),
            name=f"{lake.CLEANED_IMAGES}@v{version}",
            digest=digest,
        )
        self.client.log_inputs(
            run_id, [DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])]
        )

    def _logged_params(self, run_id: str) -> dict:
        return self.client.get_run(run_id).data.params

    def log_trial(self, parent_run_id: str, trial: TrialSummary) -> str:
        """Find or create the trial's child run and log the epochs it does not have yet."""
        found = self._find_runs(
            f"{tag_equals(MLFLOW_PARENT_RUN_ID, parent_run_id)} and {tag_equals(TAG_TRIAL, trial.trial_id)}"
        )
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = self.client.create_run(
                self.experiment_id,
                run_name=trial.trial_id,
                tags={MLFLOW_PARENT_RUN_ID: parent_run_id, TAG_TRIAL: trial.trial_id, TAG_ROLE: "trial"},
            ).info.run_id
        # Params are immutable in MLflow; after a PBT perturbation the final
        # config differs from the first one, so only unseen keys are logged.
        logged = self._logged_params(run_id)
        params = [Param(k, str(v)) for k, v in trial.hyperparams.items() if k not in logged]
        done = {m.step for m in self.client.get_metric_history(run_id, "val_accuracy")}
        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(key, float(row[key]), timestamp, int(row["epoch"]))
            for row in trial.history
            if int(row["epoch"]) not in done
            for key in EPOCH_METRICS
            if row.get(key) is not None
        ]
        tags = [
            RunTag("status", trial.status),
            RunTag("stopped_early", str(trial.stopped_early).lower()),
            RunTag("epochs_trained", str(trial.epochs_trained)),
            RunTag("restored_from", ",".join(trial.restored_from)),
            RunTag("restarts", str(trial.restarts)),
            RunTag("worker_nodes", ",".join(trial.worker_nodes)),
        ]
        self.client.log_batch(run_id, params=params, tags=tags)
        for chunk in _chunks(metrics):
            self.client.log_batch(run_id, metrics=chunk)
        self.client.set_terminated(run_id, "FINISHED" if trial.status == "TERMINATED" else "FAILED")
        return run_id

    def log_tuning(self, parent_run_id: str, result: TuningResult, config: TuningConfig) -> dict[str, str]:
        """Dataset input, tuning config, summary metrics and one child run per trial."""
        self.log_dataset(parent_run_id, result.table_uri, result.version)
        children = {trial.trial_id: self.log_trial(parent_run_id, trial) for trial in result.trials}
        logged = self._logged_params(parent_run_id)
        params = {
            "scheduler": config.scheduler.type,
            "num_samples": config.num_samples,
            "max_epochs": config.max_epochs,
            "num_workers": config.num_workers,
            "metric": config.metric,
            "class_labels": json.dumps(result.class_labels),
            "image_size": config.image_size,
            "channels": config.channels,
            "search_algorithm": config.search_algorithm,
            "time_budget_s": config.time_budget_s,
        }
        summary = {
            "num_trials": result.num_trials,
            "num_stopped_early": result.num_stopped_early,
            "num_errored": result.num_errored,
            "epochs_used": result.epochs_used,
            "epochs_full": result.epochs_full,
            "trial_restarts": result.trial_restarts,
        }
        if result.best_val_accuracy is not None:
            summary["best_val_accuracy"] = result.best_val_accuracy
        timestamp = int(time.time() * 1000)
        self.client.log_batch(
            parent_run_id,
            params=[Param(k, str(v)) for k, v in params.items() if k not in logged],
            metrics=[Metric(k, float(v), timestamp, 0) for k, v in summary.items()],
            tags=[
                RunTag("best_trial_id", result.best_trial_id or ""),
                RunTag("best_params", json.dumps(result.best_params or {})),
            ],
        )
        self.client.log_dict(parent_run_id, config.model_dump(mode="json"), "tuning/config.json")
        self.client.log_dict(parent_run_id, result.summary(), "tuning/summary.json")
        return children

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_best_model(self, parent_run_id: str, checkpoint_path: str) -> str:
        """Log the checkpoint's model on the parent run; the same checkpoint is logged once."""
        tags = self.client.get_run(parent_run_id).data.tags
        if tags.get(TAG_BEST_CHECKPOINT) == checkpoint_path and tags.get(TAG_BEST_MODEL_URI):
            return tags[TAG_BEST_MODEL_URI]
        model, meta = load_checkpoint_model(checkpoint_path, self.storage)
        model_uri = log_model(self.settings, parent_run_id, model, meta)
        self.client.log_batch(
            parent_run_id, tags=[RunTag(TAG_BEST_CHECKPOINT, checkpoint_path), RunTag(TAG_BEST_MODEL_URI, model_uri)]
        )
        return model_uri

    def finish(self, run_id: str, status: str = "FINISHED", tags: dict[str, str] | None = None) -> None:
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, status)


def log_model(settings: MlflowSettings, run_id: str, model: torch.nn.Module, meta: dict) -> str:
    """Log ``model`` (pt2 + rebuildable weights) with signature, input example and class labels; returns its URI."""
    model = model.eval()
    labels = list(meta["class_labels"])
    # Batch of 2: with a batch of 1, torch.export specialises the batch dimension to 1.
    example = np.zeros((2, meta["channels"], meta["image_size"], meta["image_size"]), dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(example)).numpy()
    model_meta = {
        k: meta[k]
        for k in ("model", "class_labels", "channels", "image_size", "table_uri", "delta_version", "hyperparams")
        if k in meta
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            WEIGHTS_FILE: lambda p: torch.save(model.state_dict(), p),
            MODEL_META_FILE: lambda p: Path(p).write_text(json.dumps(model_meta, indent=2, sort_keys=True)),
            CLASS_LABELS_FILE: lambda p: Path(p).write_text(json.dumps(labels)),
        }
        for name, write in files.items():
            write(Path(tmp) / name)
        with mlflow_uris(settings), mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            info = mlflow.pytorch.log_model(
                model,
                name=MODEL_ARTIFACT,
                signature=infer_signature(example, logits),
                input_example=example,
                serialization_format="pt2",
                extra_files=[str(Path(tmp) / name) for name in files],
                metadata={
                    "class_labels": labels,
                    "delta_version": meta.get("delta_version"),
                    "table_uri": meta.get("table_uri"),
                },
                # explicit pins: inferring them would load the model in a subprocess
                pip_requirements=[f"{pkg}=={installed_version(pkg).split('+')[0]}" for pkg in ("torch", "torchvision")],
            )
            mlflow.log_dict(labels, CLASS_LABELS_FILE)
    return info.model_uri


def load_logged_model(model_uri: str, settings: MlflowSettings | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a logged model as our ``nn.Module`` (``forward`` and ``embed``), eval mode, plus its metadata.

    ``model_uri`` may be ``models:/m-...``, ``models:/<name>/<version>`` or
    ``models:/<name>@champion``. Loads weights only (no pickle).
    """
    with mlflow_uris(settings) if settings else nullcontext(), tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)) / "extra_files"
        meta = json.loads((local / MODEL_META_FILE).read_text())
        state = torch.load(local / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model = build_model(meta["model"], len(meta["class_labels"]), meta["channels"])
    model.load_state_dict(state)
    return model.eval(), meta
