"""AutoML with Ray Tune over Ray Train DDP trials: start Ray, build the ``Tuner``, run or resume it.

Pattern: ``Tuner(TorchTrainer(...))`` with legacy Ray Train (V1). Each trial is
one DDP run of :func:`rayml_assets.lib.training.worker.train_loop_per_worker`, placed
as ONE placement group of ``num_workers`` bundles (plus ``trainer_cpus`` for the
coordinator, default 0 because it only waits on the workers). A trial therefore
gets all its CPUs at once or waits; no trial can hold half of what it needs,
which is how a Tune function trainable that starts a TorchTrainer inside
(1 CPU for the function, then the workers) dead-locks a small cluster. Why V1
at all: see :mod:`rayml_assets.lib.training.ray_env` and docs/training.md.

Resume: an experiment lives at ``{storage_path}/{experiment_name}``. Running
again with the same name restores it with ``Tuner.restore(resume_errored=True)``:
finished trials are not trained again, unfinished and errored ones continue
from their last checkpoint. A fingerprint file pins the experiment to one
``(table, version, config)`` so a name is never reused for other data. A budget
that ended the search is recorded beside it, so a later restore (which has
nothing left to train) still reports it.

Storage: ``storage_path`` is a local folder or an Azure URI. On Azure, Ray gets the container
path on a pyarrow filesystem built from the profile's ``storage:`` settings
(:func:`~rayml_assets.lib.common.storage_options.checkpoint_storage`); the experiment files, the
restore and the best-checkpoint URI all go through that one filesystem.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pyarrow.fs as pafs

from rayml_assets.lib.common.contract import LakeSettings, RaySettings
from rayml_assets.lib.common.storage_options import StorageSettings, checkpoint_storage
from rayml_assets.lib.training import ray_auth
from rayml_assets.lib.training.delta_stream import DataSpec, discover_labels
from rayml_assets.lib.training.input_shape import with_input_shape
from rayml_assets.lib.training.progress import ProgressCallback, reporting, was_interrupted
from rayml_assets.lib.training.ray_env import pin_train_v1, ray_runtime_env
from rayml_assets.lib.training.search import checkpoint_config, param_space, scheduler, search_algorithm
from rayml_assets.lib.training.stopper import PlateauTargetBudgetStopper, take_budget_stop
from rayml_assets.lib.training.tuning_config import TuningConfig, default_experiment_name
from rayml_assets.lib.training.tuning_result import TrialEvent, TuningInterrupted, TuningResult, summarize
from rayml_assets.lib.training.worker import train_loop_per_worker

pin_train_v1()  # before the first import of ray.train below

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.train import ScalingConfig  # noqa: E402
from ray.train.torch import TorchConfig, TorchTrainer  # noqa: E402

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "rayml_tuning.json"
BUDGET_STOP_FILE = "rayml_budget_stop.json"


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
) -> dict:
    """Start or join Ray with the runtime env tuning needs; returns the cluster's resources.

    ``num_cpus`` is the LOGICAL CPU count of a local cluster and may exceed the
    physical cores (each DDP worker then runs 1 torch thread). Ray 2.60 turns on
    token auth for local clusters: other processes (``ray status``) need the token.
    """
    if ray.is_initialized():
        env_vars = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
        if env_vars.get("RAY_TRAIN_V2_ENABLED") != "0":
            raise RuntimeError(
                "Ray was initialised without rayml's runtime env: "
                "use init_ray() or ray.init(runtime_env=ray_runtime_env())"
            )
    else:
        kwargs: dict[str, Any] = {"include_dashboard": False, "runtime_env": ray_runtime_env()}
        if address:
            kwargs["address"] = address
        else:
            # "local": always a new cluster; a bare ray.init() would join whichever cluster
            # RAY_ADDRESS or /tmp/ray/ray_current_cluster names (another user's `ray start`).
            kwargs.update(address="local", num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory)
        ray.init(**kwargs)
    return ray.cluster_resources()


def connect(settings: RaySettings) -> tuple[dict, ray_auth.JoinAuth]:
    """:func:`init_ray` for a task's :class:`RaySettings`: join ``address`` with the auth it needs, or start one.

    A join refused for authentication raises :class:`~rayml_assets.lib.training.ray_auth.RayAuthError`
    (what was tried and what to set), never a bare ``ConnectionError``.
    """
    auth = ray_auth.join_auth(settings)
    if auth.env or auth.unset:
        ray_auth.apply(auth)
        # Ray caches RAY_AUTH_MODE and the token at import; re-read them as ray.init would in a fresh process
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    try:
        return init_ray(settings.address, settings.num_cpus), auth
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        if settings.address and (isinstance(exc, ray.exceptions.AuthenticationError) or _refused(settings.address)):
            raise auth.refused(exc) from exc
        raise


def _refused(address: str) -> bool:
    """Whether the GCS at ``address`` refuses this process's token: ``ray.init`` says only ``ConnectionError``."""
    if "://" in address or address == "auto":
        return False  # Ray Client, or an address found on this machine: no GCS address to ask
    from ray._raylet import GcsClient  # raises AuthenticationError at once, where ray.init retries

    try:
        GcsClient(address=address).cluster_id
    except ray.exceptions.AuthenticationError:
        return True
    except Exception:  # unreachable, or another failure: the original error stands
        return False
    return False


class ExperimentStore:
    """Where an experiment lives: Ray's ``(storage_path, storage_filesystem)`` and the URI a user reads."""

    def __init__(self, storage_uri: str, name: str, storage: StorageSettings | None = None):
        storage_uri = storage_uri if "://" in storage_uri else os.path.abspath(storage_uri)
        self.storage_uri, self.name = storage_uri.rstrip("/"), name
        storage_path, self.filesystem = checkpoint_storage(self.storage_uri, storage)
        self.storage_path = storage_path.rstrip("/")
        self.path = f"{self.storage_path}/{name}"  # in self.filesystem (None: Ray resolves it)
        self.uri = f"{self.storage_uri}/{name}"

    def uri_of(self, path: str) -> str:
        """The URI of a path Ray reports (a checkpoint) in this storage."""
        if self.filesystem is not None and path.startswith(self.storage_path):
            return self.storage_uri + path[len(self.storage_path):]
        return path

    def _file(self, file: str) -> tuple[pafs.FileSystem, str]:
        if self.filesystem is not None:
            return self.filesystem, f"{self.path}/{file}"
        fs, fs_path = pafs.FileSystem.from_uri(self.path)
        return fs, f"{fs_path}/{file}"

    def read_json(self, file: str) -> Any:
        fs, path = self._file(file)
        try:
            with fs.open_input_stream(path) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def write_json(self, file: str, value: Any) -> None:
        fs, path = self._file(file)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as f:
            f.write(json.dumps(value, sort_keys=True).encode())

    def can_restore(self) -> bool:
        return tune.Tuner.can_restore(self.path, storage_filesystem=self.filesystem)

    def check_fingerprint(self, fingerprint: dict) -> None:
        stored = self.read_json(FINGERPRINT_FILE)
        if stored is not None and stored != fingerprint:  # no file: experiment made by hand, trust the caller
            raise ValueError(
                f"experiment {self.uri} was run for {stored}, not {fingerprint}: use another experiment name"
            )


def build_trainer(
    config: TuningConfig, use_gpu: bool, train_loop_config: dict | None = None, run_config=None
) -> TorchTrainer:
    """One trial's DDP trainer (``train_loop_config``/``run_config`` only when fitted on its own, outside Tune)."""
    per_worker: dict[str, float] = {"CPU": config.cpus_per_worker}
    if use_gpu:
        per_worker["GPU"] = config.gpus_per_worker or 1.0
    return TorchTrainer(
        train_loop_per_worker,
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=use_gpu,
            resources_per_worker=per_worker,
            trainer_resources={"CPU": config.trainer_cpus},
            placement_strategy=config.placement_strategy,
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        train_loop_config=train_loop_config,
        run_config=run_config,
    )


def _new_tuner(config: TuningConfig, trainer: TorchTrainer, spec: DataSpec, store: ExperimentStore, callbacks):
    return tune.Tuner(
        trainer,
        param_space=param_space(config, spec),
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            scheduler=scheduler(config),
            search_alg=search_algorithm(config),
            num_samples=config.num_samples,
            # Never reuse trial actors: a reused legacy TrainTrainable keeps training
            # with the FIRST trial's train_loop_config (seen on Ray 2.60).
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=store.name,
            storage_path=store.storage_path,
            storage_filesystem=store.filesystem,
            stop=PlateauTargetBudgetStopper.from_config(config, key=store.name),
            checkpoint_config=checkpoint_config(config),
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            callbacks=[ProgressCallback(store.name), *(callbacks or [])],
            verbose=0,
        ),
    )


def run_tuning(
    config: TuningConfig,
    *,
    table_uri: str,
    version: int,
    storage_path: str,
    experiment_name: str | None = None,
    class_labels: list[str] | tuple[str, ...] | None = None,
    on_event: Callable[[TrialEvent], None] | None = None,
    callbacks: list[tune.Callback] | None = None,
    lake: LakeSettings | None = None,
) -> TuningResult:
    """Tune ``config`` on ``table_uri@version``; resume the experiment if it exists.

    ``lake`` says how to reach the table and ``storage_path`` (a folder or an Azure URI) on cloud
    storage; the trial workers get it too (names of variables only) and resolve it themselves.

    ``on_event`` gets every epoch result and trial end in the driver (progress
    logs). ``callbacks`` are extra Tune callbacks; they are pickled into the
    experiment, and a restored experiment keeps the first run's ones.
    Raises :class:`TuningInterrupted` when Tune was stopped before the end; a
    budget (``time_budget_s``, ``stopper.epoch_budget``) ending it is a normal
    end, with the best checkpoint so far (``TuningResult.budget_stop``).
    """
    if not ray.is_initialized():
        init_ray()
    use_gpu = (
        config.gpus_per_worker > 0 if config.gpus_per_worker is not None else ray.cluster_resources().get("GPU", 0) > 0
    )
    storage_options = lake.delta_options() if lake else None
    config, _ = with_input_shape(config, table_uri, version, storage_options)  # unchanged when the config sets it
    name = experiment_name or default_experiment_name(table_uri, version, config)
    store = ExperimentStore(storage_path, name, lake.storage if lake else None)
    fingerprint = {"table_uri": table_uri, "version": int(version), "config": config.fingerprint()}
    restored = store.can_restore()
    if restored:
        store.check_fingerprint(fingerprint)
    labels = tuple(class_labels) if class_labels else discover_labels(table_uri, version, storage_options)
    if len(labels) < 2:
        raise ValueError(f"{table_uri}@v{version} has {len(labels)} class(es) among non-excluded rows; need 2+")
    spec = DataSpec(
        table_uri, int(version), labels, config.image_size, config.channels, config.sample_fraction,
        lake.model_dump() if lake else None,
    )
    trainer = build_trainer(config, use_gpu)
    if restored:
        log.info("restoring tuning experiment %s", store.uri)
        tuner = tune.Tuner.restore(
            store.path, trainable=trainer, resume_unfinished=True, resume_errored=True,
            storage_filesystem=store.filesystem,
        )
    else:
        tuner = _new_tuner(config, trainer, spec, store, callbacks)
        store.write_json(FINGERPRINT_FILE, fingerprint)

    take_budget_stop(name)  # one left by an earlier fit() of this experiment in this process
    started = time.monotonic()
    with reporting(name, on_event):
        grid = tuner.fit()
    wall_time_s = time.monotonic() - started
    budget_stop = take_budget_stop(name)
    unfinished = len(grid) - grid.num_terminated - grid.num_errors
    if was_interrupted(name) or unfinished:
        # trials the searcher had not created yet are not in the grid at all
        raise TuningInterrupted(store.uri, unfinished + max(0, config.num_trials() - len(grid)))
    if budget_stop:
        store.write_json(BUDGET_STOP_FILE, budget_stop)
    elif restored:  # a budget-ended search stays finished, so this restore trained nothing: report that budget
        budget_stop = store.read_json(BUDGET_STOP_FILE)
    result = summarize(grid, config, spec, name, store.uri, restored, store.uri_of)
    result.budget_stop, result.wall_time_s = budget_stop, wall_time_s
    result.lost_nodes = lost_nodes(result)
    return result


def lost_nodes(result: TuningResult, wait_s: float = 30.0) -> dict[str, str]:
    """Node id -> address of the nodes that errored trials ran on and the cluster has marked dead.

    A trial sees its dead peer (a reset gloo connection, an unavailable actor) before
    the GCS's health check marks the node dead (about 15 s with Ray's defaults), so
    this waits up to ``wait_s`` when an errored trial used a node besides the driver's.
    """
    errored = [t for t in result.trials if t.status == "ERROR" and t.worker_nodes]
    used = {node for t in errored for node in t.worker_nodes}
    elsewhere = used - {ray.get_runtime_context().get_node_id()}
    deadline = time.monotonic() + wait_s
    while used:
        dead = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes() if not n["Alive"]}
        found = {node: dead[node] for node in used if node in dead}
        if found or not elsewhere or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
    return {}
