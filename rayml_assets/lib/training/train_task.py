"""The Pipes task script of ``tuned_model``: Ray Tune over Ray Train DDP, tracked in MLflow.

Run by ``PipesSubprocessClient`` locally (``python -m rayml_assets.lib.training.train_task``)
or as a Databricks task. Everything comes from ``pipes.extras``, validated as
:class:`~rayml_assets.lib.training.contract.TrainTaskParams`; progress goes to
``pipes.log``; the result is one ``report_asset_materialization``. Re-running
with the same data and config resumes the same Tune experiment and MLflow
parent run (nothing finished is trained again). SIGTERM (a cancelled Dagster run) stops Tune gracefully so the
experiment state is saved for that resume.
"""

from __future__ import annotations

import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dagster_pipes import PipesContext

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.common.previews import read_preview
from rayml_assets.lib.common.pipes_runtime import task_runtime
from rayml_assets.lib.common.storage_options import write_bytes
from rayml_assets.lib.training.contract import TrainTaskParams
from rayml_assets.lib.training.input_shape import InputShape, with_input_shape
from rayml_assets.lib.training.tracking import TAG_LOST_NODES, TuningTracker, plot_learning_curves
from rayml_assets.lib.training.tuner import connect, run_tuning
from rayml_assets.lib.training.tuning_config import default_experiment_name
from rayml_assets.lib.training.tuning_result import NodeLostError, TrialEvent, TuningInterrupted, TuningResult


@dataclass
class TrainTaskOutput:
    result: TuningResult
    parent_run_id: str
    model_uri: str
    metadata: dict


def _log_event(pipes: PipesContext, event: TrialEvent) -> None:
    m = event.metrics
    if event.kind == "result":
        pipes.log.info(
            f"trial {event.trial_id} epoch {m.get('epoch')}: val_accuracy={m.get('val_accuracy', float('nan')):.4f} "
            f"train_loss={m.get('train_loss', float('nan')):.4f} world_size={m.get('world_size')} "
            f"({m.get('train_samples_per_s', 0):.0f} samples/s) on {m.get('num_nodes')} node(s) {event.hyperparams}"
        )
    elif event.kind == "complete":
        pipes.log.info(f"trial {event.trial_id} finished after epoch {m.get('epoch')}")
    elif event.kind == "recover":
        pipes.log.warning(
            f"trial {event.trial_id} failed after epoch {m.get('epoch')} ({event.error}); "
            "restarting it from its last checkpoint (max_failures)"
        )
    else:
        pipes.log.warning(f"trial {event.trial_id} failed at epoch {m.get('epoch')}: {event.error}")


def _metadata(
    settings: MlflowSettings,
    tracker: TuningTracker,
    parent_run_id: str,
    result: TuningResult,
    model_uri: str,
    curves_png: str,
    preview: str,
    table_uri: str,
    shape: InputShape,
) -> dict:
    metadata = {
        "mlflow_run_id": parent_run_id,
        "mlflow_experiment_id": tracker.experiment_id,
        "best_params": {"raw_value": result.best_params, "type": "json"},
        "best_val_accuracy": {"raw_value": result.best_val_accuracy, "type": "float"},
        "trials_run": {"raw_value": result.num_trials, "type": "int"},
        "trials_stopped_early": {"raw_value": result.num_stopped_early, "type": "int"},
        "trials_errored": {"raw_value": result.num_errored, "type": "int"},
        "epochs_used": {"raw_value": result.epochs_used, "type": "int"},
        "epochs_full_grid": {"raw_value": result.epochs_full, "type": "int"},
        "epochs_used_fraction": {"raw_value": result.epochs_used / max(1, result.epochs_full), "type": "float"},
        "learning_curves_png": {"raw_value": curves_png, "type": "path"},
        "preview": {"raw_value": preview, "type": "md"},
        "best_model_uri": model_uri,
        "best_checkpoint_path": {"raw_value": result.best_checkpoint_path, "type": "path"},
        "class_labels": {"raw_value": result.class_labels, "type": "json"},
        "num_classes": {"raw_value": len(result.class_labels), "type": "int"},
        "image_size": {"raw_value": shape.image_size, "type": "int"},
        "channels": {"raw_value": shape.channels, "type": "int"},
        "input_shape": shape.describe(),
        "delta_version": {"raw_value": result.version, "type": "int"},
        "cleaned_table_uri": table_uri,
        "tune_experiment_path": {"raw_value": result.experiment_path, "type": "path"},
        "resumed_experiment": {"raw_value": result.restored, "type": "bool"},
        "trial_restarts": {"raw_value": result.trial_restarts, "type": "int"},
        "trial_nodes": {"raw_value": {t.trial_id: t.worker_nodes for t in result.trials}, "type": "json"},
        "search_algorithm": result.search_algorithm,
        "time_budget_s": result.time_budget_s,  # None: no budget
        "stopped_by_time_budget": {"raw_value": result.stopped_by_time_budget, "type": "bool"},
        "wall_time_s": {"raw_value": result.wall_time_s, "type": "float"},
    }
    url = settings.run_url(tracker.experiment_id, parent_run_id)
    if url:
        metadata["mlflow_run_url"] = {"raw_value": url, "type": "url"}
    return metadata


def main(pipes: PipesContext) -> TrainTaskOutput:
    params = TrainTaskParams.from_extras(pipes.extras)
    config, settings = params.tuning, params.mlflow
    table_uri = params.lake.table_uri(lake.CLEANED_IMAGES)
    name = params.experiment_name or default_experiment_name(table_uri, params.cleaned_version, config)
    config, shape = with_input_shape(config, table_uri, params.cleaned_version, params.lake.delta_options())
    pipes.log.info(f"input shape: {shape.describe()}")
    resources, auth = connect(params.ray)
    where = f"the Ray cluster at {params.ray.address} ({auth.describe()})" if params.ray.address else "a local Ray"
    pipes.log.info(f"tuning {name} on {table_uri}@v{params.cleaned_version} with {where}; resources {resources}")
    if params.ray.address and "://" not in params.checkpoint_root:
        pipes.log.info(f"checkpoints go to {params.checkpoint_root}: every Ray node must see it at that path")

    tracker = TuningTracker(settings, params.lake)
    parent_run_id = tracker.start_parent(
        name,
        tags={
            "dagster_run_id": params.dagster_run_id,
            "asset_key": params.asset_key,
            "delta_version": params.cleaned_version,
            "git_sha": params.git_sha,
            "cleaned_table_uri": table_uri,
        },
    )
    try:
        result = run_tuning(
            config,
            table_uri=table_uri,
            version=params.cleaned_version,
            storage_path=params.checkpoint_root,
            lake=params.lake,
            experiment_name=name,
            on_event=lambda event: _log_event(pipes, event),
        )
        lost = result.lost_node_error(config.max_failures)
        if lost is None and result.best_checkpoint_path is None:
            raise RuntimeError(f"no trial of {name} produced a checkpoint: {[t.error for t in result.trials]}")
        tracker.log_tuning(parent_run_id, result, config)
        if lost is not None:  # the trials are on record; no model from a run the cluster cut short
            raise lost
        # MLflow logs a local file; the report folder may be on abfss://.
        with tempfile.TemporaryDirectory() as folder:
            local = plot_learning_curves(result, Path(folder) / f"{name}_learning_curves.png")
            tracker.log_artifact(parent_run_id, local, "tuning")
            curves_png = write_bytes(f"{params.reports_dir.rstrip('/')}/tuning/{local.name}", local.read_bytes(),
                                     params.lake.storage)
        model_uri = tracker.log_best_model(parent_run_id, result.best_checkpoint_path)
    except TuningInterrupted:
        tracker.finish(parent_run_id, "KILLED")
        raise
    except NodeLostError as exc:
        tracker.finish(parent_run_id, "FAILED", {TAG_LOST_NODES: ",".join(sorted(exc.lost_nodes))})
        raise
    except BaseException:
        tracker.finish(parent_run_id, "FAILED")
        raise
    tracker.finish(parent_run_id)

    preview = read_preview(curves_png, "learning curves (x: stopped early)", params.lake.storage)
    metadata = _metadata(settings, tracker, parent_run_id, result, model_uri, curves_png, preview, table_uri, shape)
    pipes.log.info(
        f"best {result.best_trial_id} val_accuracy={result.best_val_accuracy:.4f}; {result.num_trials} trials, "
        f"{result.num_stopped_early} stopped early, {result.epochs_used}/{result.epochs_full} epochs"
    )
    pipes.report_asset_materialization(metadata=metadata, data_version=name, asset_key=params.asset_key)
    return TrainTaskOutput(result, parent_run_id, model_uri, metadata)


def _graceful_sigterm() -> None:
    # Tune saves its experiment state on SIGUSR1 (as on Ctrl+C); a cancelled
    # Dagster run sends SIGTERM, which would otherwise lose the last snapshot.
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGUSR1))


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars would flood the Pipes log
    _graceful_sigterm()
    with task_runtime() as (context, _ray_address):  # on Databricks, Ray on Spark's address is in extras["ray"]
        main(context)
