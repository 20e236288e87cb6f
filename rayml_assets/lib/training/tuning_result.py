"""What a tuning run produced: per-trial summaries, the best checkpoint, and the digest for metadata.

Pure bookkeeping over Tune's ``ResultGrid`` (no Ray or torch imported here), so
tracking and tests can use these types without starting anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rayml_assets.lib.training.tuning_config import TuningConfig, hyperparams

if TYPE_CHECKING:  # delta_stream imports torch
    from rayml_assets.lib.training.delta_stream import DataSpec

CURVE_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "world_size",
    "train_samples_per_s",
    "epoch_time_s",
    "num_nodes",
)
# per-epoch values kept in a trial's history beside the curves (not plotted)
HISTORY_TAGS = ("restored_from", "worker_nodes", "nodes_seen", "start_epoch")


@dataclass(frozen=True)
class TrialEvent:
    """What a progress sink receives: one epoch result, or a trial's end."""

    kind: Literal["result", "complete", "error", "recover"]
    trial_id: str
    hyperparams: dict
    metrics: dict
    error: str = ""  # for kinds "error" and "recover": the last line of the trial's error


class TuningInterrupted(RuntimeError):
    """Tune stopped before every trial finished (SIGINT/SIGUSR1): run again to resume."""

    def __init__(self, experiment_path: str, unfinished: int):
        super().__init__(
            f"tuning interrupted with {unfinished} unfinished trial(s); re-run to resume {experiment_path}"
        )
        self.experiment_path = experiment_path
        self.unfinished = unfinished


class NodeLostError(RuntimeError):
    """Trials failed because Ray nodes left the cluster, and ``max_failures`` allowed no further restart."""

    def __init__(self, lost_nodes: dict[str, str], trial_ids: list[str], max_failures: int):
        nodes = ", ".join(f"{node_id} ({address})" for node_id, address in sorted(lost_nodes.items()))
        super().__init__(
            f"trial(s) {', '.join(trial_ids)} failed: Ray node(s) {nodes} left the cluster while they trained, and "
            f"max_failures={max_failures} allowed no (further) restart from their last checkpoint; no model was "
            "logged. Raise the tuning config's max_failures, or re-materialise to resume from the checkpoints."
        )
        self.lost_nodes, self.trial_ids = lost_nodes, trial_ids


@dataclass
class TrialSummary:
    trial_id: str
    hyperparams: dict
    status: Literal["TERMINATED", "ERROR"]
    epochs_trained: int  # epochs this trial ran itself
    last_epoch: int  # epoch index reached, counting epochs inherited from a checkpoint (PBT)
    stopped_early: bool
    best_val_accuracy: float | None
    best_checkpoint_path: str | None
    best_checkpoint_metrics: dict | None  # what was reported with the best checkpoint
    restored_from: list[str]
    history: list[dict] = field(repr=False)
    error: str | None = None
    worker_nodes: list[str] = field(default_factory=list)  # Ray node ids its DDP ranks ran on, first seen first
    failures: int = 0  # times Tune saw it fail (a lost node, a crash), the last one included when ERROR

    @property
    def restarts(self) -> int:
        """Times it was restarted from its last checkpoint after a failure."""
        return max(0, self.failures - (self.status == "ERROR"))


@dataclass
class TuningResult:
    experiment_name: str
    experiment_path: str
    table_uri: str
    version: int
    class_labels: list[str]
    metric: str
    mode: str
    max_epochs: int
    trials: list[TrialSummary]
    restored: bool
    search_algorithm: str = "random"
    time_budget_s: float | None = None
    budget_stop: Literal["time_budget", "epoch_budget"] | None = None  # the budget that ended the search, if one did
    wall_time_s: float | None = None  # this call's fit(), restores included
    best_trial_id: str | None = None
    best_params: dict | None = None
    best_val_accuracy: float | None = None
    best_checkpoint_path: str | None = None
    lost_nodes: dict[str, str] = field(default_factory=dict)  # node id -> address, of errored trials' dead nodes

    def lost_node_error(self, max_failures: int) -> NodeLostError | None:
        """The error to fail the run with when trials errored on nodes the cluster lost."""
        hit = [t.trial_id for t in self.trials if t.status == "ERROR" and set(t.worker_nodes) & set(self.lost_nodes)]
        return NodeLostError(self.lost_nodes, hit, max_failures) if hit else None

    @property
    def num_trials(self) -> int:
        return len(self.trials)

    @property
    def stopped_by_time_budget(self) -> bool:
        return self.budget_stop == "time_budget"

    @property
    def num_stopped_early(self) -> int:
        return sum(t.stopped_early for t in self.trials)

    @property
    def num_errored(self) -> int:
        return sum(t.status == "ERROR" for t in self.trials)

    @property
    def epochs_used(self) -> int:
        return sum(t.epochs_trained for t in self.trials)

    @property
    def epochs_full(self) -> int:
        """Epochs if every trial had run to ``max_epochs`` (the no-early-stopping cost)."""
        return self.num_trials * self.max_epochs

    @property
    def trial_restarts(self) -> int:
        return sum(t.restarts for t in self.trials)

    def learning_curves(self, metric: str = "val_accuracy") -> dict[str, list[tuple[int, float]]]:
        return {
            t.trial_id: [(int(r["epoch"]), float(r[metric])) for r in t.history if metric in r] for t in self.trials
        }

    def summary(self) -> dict:
        """A JSON-able digest for metadata and logs (no histories)."""
        return {
            "experiment_path": self.experiment_path,
            "table_uri": self.table_uri,
            "delta_version": self.version,
            "best_trial_id": self.best_trial_id,
            "best_params": self.best_params,
            "best_val_accuracy": self.best_val_accuracy,
            "best_checkpoint_path": self.best_checkpoint_path,
            "num_trials": self.num_trials,
            "num_stopped_early": self.num_stopped_early,
            "num_errored": self.num_errored,
            "epochs_used": self.epochs_used,
            "epochs_full": self.epochs_full,
            "restored": self.restored,
            "trial_restarts": self.trial_restarts,
            "search_algorithm": self.search_algorithm,
            "time_budget_s": self.time_budget_s,
            "budget_stop": self.budget_stop,
            "stopped_by_time_budget": self.stopped_by_time_budget,
            "wall_time_s": self.wall_time_s,
        }


def _best_checkpoint(result, metric: str, mode: str) -> tuple[str | None, dict | None]:
    # sorted by path, so ties go to the earliest checkpoint on every run (resume included)
    scored = sorted(
        ((ckpt, m) for ckpt, m in (result.best_checkpoints or []) if m.get(metric) is not None),
        key=lambda pair: pair[0].path,
    )
    if not scored:
        return None, None
    ckpt, metrics = min(scored, key=lambda pair: _rank(pair[1], metric, mode))
    return ckpt.path, dict(metrics)


def _rank(metrics: Mapping, metric: str, mode: str) -> tuple[float, float]:
    """Sort key, best first: the metric, then the lower val_loss. A saturated val accuracy (1.0 from
    mid-training on) would otherwise pick the first checkpoint to reach it, before the lr has decayed."""
    value = float(metrics[metric])
    return (-value if mode == "max" else value, float(metrics.get("val_loss", 0.0)))


def _row_hyperparams(row: Mapping) -> dict:
    """Hyperparameters from a flattened result row (``config/train_loop_config/lr`` ...)."""
    prefix = "config/train_loop_config/"
    found = {k[len(prefix) :]: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k.startswith(prefix)}
    return hyperparams(found)


def _nodes(history: list[dict]) -> list[str]:
    lists = (str(row.get(key) or "") for row in history for key in ("worker_nodes", "nodes_seen"))
    return list(dict.fromkeys(node for nodes in lists for node in nodes.split(",") if node))


def _tune_trials(grid) -> list:
    # A Result carries neither its trial id nor its failures; the Trial objects behind the grid do.
    return getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or []


def summarize(
    grid, config: TuningConfig, spec: DataSpec, name: str, experiment_path: str, restored: bool,
    uri_of: Callable[[str], str] = str,
) -> TuningResult:
    """Turn Tune's ResultGrid into a :class:`TuningResult` (pure bookkeeping, no training).

    ``uri_of`` turns a checkpoint's path in Ray's storage filesystem into the URI a reader opens.

    Identity and hyperparameters come from each trial's own result rows: after a
    PBT exploit, ``Result.metrics``/``Result.config`` hold the donor's last result.
    """
    trials, tune_trials = [], _tune_trials(grid)
    failures = {t.trial_id: int(getattr(t, "num_failures", 0)) for t in tune_trials}
    # a PBT exploit at the last epoch can leave a trial without result rows of its own
    ids_by_path = {t.path: t.trial_id for t in tune_trials}
    for result in grid:
        df = result.metrics_dataframe
        rows = df.sort_values("training_iteration").to_dict("records") if df is not None and len(df) else []
        history = [{k: row[k] for k in (*CURVE_KEYS, *HISTORY_TAGS) if k in row} for row in rows]
        trial_id = rows[0]["trial_id"] if rows else ids_by_path.get(result.path, Path(result.path).name)
        last_epoch = int(history[-1].get("epoch", 0)) if history else 0
        val_accuracies = [float(r["val_accuracy"]) for r in history if r.get("val_accuracy") is not None]
        checkpoint_path, checkpoint_metrics = _best_checkpoint(result, config.metric, config.mode)
        trials.append(
            TrialSummary(
                trial_id=trial_id,
                hyperparams=_row_hyperparams(rows[-1]) if rows else hyperparams({}),
                status="ERROR" if result.error else "TERMINATED",
                epochs_trained=len(history),
                last_epoch=last_epoch,
                stopped_early=result.error is None and last_epoch < config.max_epochs,
                best_val_accuracy=max(val_accuracies) if val_accuracies else None,
                best_checkpoint_path=uri_of(checkpoint_path) if checkpoint_path else None,
                best_checkpoint_metrics=checkpoint_metrics,
                restored_from=sorted(
                    {r["restored_from"] for r in history if r.get("restored_from") and r["restored_from"] != trial_id}
                ),
                history=history,
                error=str(result.error) if result.error else None,
                worker_nodes=_nodes(history),
                failures=failures.get(trial_id, 0),
            )
        )
    out = TuningResult(
        experiment_name=name,
        experiment_path=experiment_path,
        table_uri=spec.table_uri,
        version=spec.version,
        class_labels=list(spec.class_labels),
        metric=config.metric,
        mode=config.mode,
        max_epochs=config.max_epochs,
        trials=trials,
        restored=restored,
        search_algorithm=config.search_algorithm,
        time_budget_s=config.time_budget_s,
    )
    trials.sort(key=lambda t: t.trial_id)  # deterministic order: ties go to the first trial
    scored = [t for t in trials if t.best_checkpoint_metrics is not None]
    if scored:
        best = min(scored, key=lambda t: _rank(t.best_checkpoint_metrics, config.metric, config.mode))
        # the config that produced the best checkpoint (PBT may have changed it since)
        checkpoint_config = (best.best_checkpoint_metrics.get("config") or {}).get("train_loop_config")
        out.best_params = hyperparams(checkpoint_config) if checkpoint_config else best.hyperparams
        out.best_trial_id, out.best_checkpoint_path = best.trial_id, best.best_checkpoint_path
        out.best_val_accuracy = best.best_checkpoint_metrics.get("val_accuracy")
    return out
