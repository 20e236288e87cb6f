"""``tuned_model`` on a real multi-node Ray cluster with token authentication on, and a node lost mid-run.

The cluster (``multinode_cluster``: a head and a worker node, 2 logical CPUs each) runs in
its own process with a fake token; the Dagster side joins it by address only, with the
token from a file (CLI test) or from ``RAY_AUTH_TOKEN`` (the others). Trials report the
Ray node id of every DDP rank, which is how the tests see where they ran. Slow (a few
minutes for the module, each test well under two), so marked ``slow``; not skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from dagster import AssetMaterialization, DagsterInstance, materialize
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import serialize_value

from rayml_assets.definitions import resources_for
from rayml_assets.defs.common import keys
from rayml_assets.defs.training.assets import registered_model, tuned_model
from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.training.checkpoints import load_checkpoint_model
from rayml_assets.lib.training.delta_stream import DataSpec
from rayml_assets.lib.training.evaluation import evaluate
from rayml_assets.lib.training.tracking import TAG_BEST_MODEL_URI, TAG_LOST_NODES, TAG_ROLE
from rayml_assets.resources.ray import RayResource
from rayml_assets_tests.support.dagster_stack import BIN, REPO, clean_env
from rayml_assets_tests.support.training_fixtures import write_digits_table
from rayml_assets_tests.training.multinode_cluster import FAKE_TOKEN, multinode_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

IMAGE_SIZE = 16
TUNING = {
    "search_space": {"lr": 0.05, "batch_size": 16},
    "max_epochs": 2,
    "image_size": IMAGE_SIZE,
    "num_workers": 2,
    "cpus_per_worker": 1,
    "scheduler": {"type": "fifo"},
}


@pytest.fixture(scope="module")
def cluster():
    with multinode_cluster(workers=1, cpus=2) as handle:
        yield handle


@pytest.fixture
def live_cluster(cluster):
    """The module's cluster with a live worker node: a test before may have killed it."""
    if not cluster.live_workers():
        cluster.add_worker()
    return cluster


def _cleaned(profile, instance, n: int) -> tuple[str, int]:
    uri, version = write_digits_table(profile.lake_root, n=n, image_size=IMAGE_SIZE)
    instance.report_runless_asset_event(AssetMaterialization(keys.CLEANED_IMAGES, metadata={"delta_version": version}))
    return uri, version


def _ops_config(**tuning) -> dict:
    return {"tuned_model": {"config": {"tuning_yaml": yaml.safe_dump({**TUNING, **tuning})}}}


def _event_log(instance, run_id: str) -> str:
    return "\n".join(serialize_value(record) for record in instance.all_logs(run_id))


def _trial_lines(instance, run_id: str) -> str:
    """The run's trial progress lines: what a failed assertion should show."""
    messages = [entry.user_message for entry in instance.all_logs(run_id)]
    return "\n".join(m for m in messages if "trial " in m or "node" in m)[-4000:]


def _mlflow_text(settings: MlflowSettings) -> str:
    client = settings.client()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return json.dumps([[r.data.params, r.data.tags, r.data.metrics] for r in runs])


def _parent_run(settings: MlflowSettings):
    client = settings.client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    [parent] = client.search_runs(experiments, f"tags.`{TAG_ROLE}` = 'parent'")
    return client, parent


# ---------------------------------------------------------------- the CLI, token from a file, across 2 nodes


def test_cli_tunes_one_trial_across_two_nodes_and_reads_the_checkpoint_back(
    live_cluster, profile, rayml_home, tmp_path
):
    token_file = tmp_path / "ray_token"
    token_file.write_text(FAKE_TOKEN)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home)))
    uri, version = _cleaned(profile, instance, n=300)
    # As a user does it: their own profile, extending local, names the cluster and the token file.
    user_profile = tmp_path / "my_cluster.yaml"
    user_profile.write_text(
        f"extends: local\nray_address: '{live_cluster.address}'\nray_auth_token_path: '{token_file}'\n"
    )
    run_config = {"ops": _ops_config(placement_strategy="STRICT_SPREAD")}
    env = clean_env(RAYML_HOME=str(rayml_home), DAGSTER_HOME=str(dagster_home), RAYML_PROFILE_FILE=str(user_profile))
    env = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}  # the file is the only way in
    command = ["dagster", "asset", "materialize", "-m", "rayml_assets.definitions", "--select", "tuned_model"]
    proc = subprocess.run(
        [str(BIN / command[0]), *command[1:], "--config-json", json.dumps(run_config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=220,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    record = instance.get_latest_materialization_event(keys.TUNED_MODEL)
    metadata = record.asset_materialization.metadata
    [trial_nodes] = metadata["trial_nodes"].value.values()
    assert sorted(trial_nodes) == sorted([live_cluster.head, live_cluster.live_workers()[0]]), (
        "STRICT_SPREAD: the trial's 2 DDP workers ran on the head and on the worker node"
    )
    # the best checkpoint is in the profile's checkpoint_root, and the evaluation code reads it from there
    checkpoint = Path(metadata["best_checkpoint_path"].value)
    assert checkpoint.is_relative_to(Path(profile.checkpoint_root).resolve())
    model, meta = load_checkpoint_model(checkpoint)
    spec = DataSpec(uri, version, tuple(meta["class_labels"]), IMAGE_SIZE, 1)
    assert evaluate(model, spec, "test").n > 0
    # the token is nowhere: not in the output, the event log, the metadata nor MLflow
    everything = [proc.stdout, proc.stderr, _event_log(instance, record.run_id), _mlflow_text(_settings(profile))]
    assert str(token_file) in proc.stdout + proc.stderr, "the log names the token file it used"
    assert not [text for text in everything if FAKE_TOKEN in text]


def _settings(profile) -> MlflowSettings:
    return MlflowSettings(tracking_uri=profile.mlflow_tracking_uri, registry_uri=profile.mlflow_registry_uri)


# ---------------------------------------------------------------- a node lost mid-run


@contextmanager
def kill_worker_after_first_checkpoint(cluster, root: str, killed: list[str], replace: bool) -> Iterator[None]:
    """Kill the live worker node once a trial has saved its epoch-1 checkpoint (it is then mid-epoch 2).

    ``replace``: then add a new worker node, as an autoscaler or a replacement VM would.
    """
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if list(Path(root).glob("*/*/checkpoint_000000/meta.json")):
                time.sleep(0.3)  # let the checkpoint finish landing in storage
                killed.append(cluster.kill_worker())
                if replace:
                    killed.append(cluster.add_worker())
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(30)


def _tune_while_a_node_dies(cluster, profile, instance, monkeypatch, replace: bool, **tuning):
    monkeypatch.setenv("RAY_AUTH_TOKEN", FAKE_TOKEN)  # the other route: the Dagster process's environment
    _cleaned(profile, instance, n=1000)
    resources = {**resources_for(profile), "ray_cluster": RayResource(address=cluster.address)}
    killed: list[str] = []
    with kill_worker_after_first_checkpoint(cluster, profile.checkpoint_root, killed, replace):
        result = materialize(
            [tuned_model, registered_model],
            resources=resources,
            instance=instance,
            selection=[keys.TUNED_MODEL, keys.REGISTERED_MODEL],
            # STRICT_SPREAD: the trial surely has a rank on the worker node (SPREAD may pack both on the head)
            run_config={"ops": _ops_config(max_epochs=4, placement_strategy="STRICT_SPREAD", **tuning)},
            raise_on_error=False,
        )
    assert killed, "the worker node was never killed: no checkpoint appeared"
    return result, killed


def test_a_lost_node_restarts_the_trial_from_its_checkpoint_and_mlflow_counts_it(
    live_cluster, profile, instance, monkeypatch
):
    result, (killed, replacement) = _tune_while_a_node_dies(
        live_cluster, profile, instance, monkeypatch, replace=True, max_failures=1
    )
    progress = _trial_lines(instance, result.run_id)
    # registration runs; whether a 4-epoch model beats the baseline (the blocking gate) is not this test's question
    failed_steps = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failed_steps in ([], ["registered_model"]), progress
    if failed_steps:
        [gate] = [c for c in result.get_asset_check_evaluations() if c.check_name == "challenger_beats_baseline"]
        assert not gate.passed, progress
    [materialization] = result.asset_materializations_for_node("tuned_model")
    metadata = materialization.metadata
    assert metadata["trial_restarts"].value == 1 and metadata["trials_errored"].value == 0, progress
    [nodes] = metadata["trial_nodes"].value.values()
    assert sorted(nodes) == sorted([live_cluster.head, killed, replacement]), f"head+lost, then head+new\n{progress}"

    client, parent = _parent_run(_settings(profile))
    assert parent.data.metrics["trial_restarts"] == 1 and parent.info.status == "FINISHED"
    [child] = client.search_runs([parent.info.experiment_id], f"tags.`{TAG_ROLE}` = 'trial'")
    assert child.data.tags["restarts"] == "1"
    # Tune may drop the result rows from before a restart, so the proof is the attempt's own start
    start = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "start_epoch")}
    assert start[4] >= 1, f"the last attempt resumed from a checkpoint, not from scratch\n{progress}"
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
    assert len(steps) == len(set(steps)) and max(steps) == 4, f"no epoch trained twice\n{progress}"
    logs = _event_log(instance, result.run_id)
    assert "restarting it from its last checkpoint" in logs and FAKE_TOKEN not in logs
    assert result.asset_materializations_for_node("registered_model")


def test_without_retries_a_lost_node_fails_the_run_naming_it_and_registers_nothing(
    live_cluster, profile, instance, monkeypatch
):
    result, [killed] = _tune_while_a_node_dies(
        live_cluster, profile, instance, monkeypatch, replace=False, max_failures=0
    )
    assert not result.success
    [failure] = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failure == "tuned_model"
    # what the run's log shows: the task's error, naming the lost node
    logs = _event_log(instance, result.run_id)
    assert "NodeLostError: trial(s) " in logs and f"Ray node(s) {killed}" in logs and "max_failures=0" in logs
    assert not result.asset_materializations_for_node("tuned_model")
    assert not result.asset_materializations_for_node("registered_model")

    client, parent = _parent_run(_settings(profile))
    assert parent.info.status == "FAILED" and parent.data.tags[TAG_LOST_NODES] == killed
    assert TAG_BEST_MODEL_URI not in parent.data.tags
    assert not client.search_registered_models()


# ---------------------------------------------------------------- auth refused, and a cluster without auth

CONNECT = """
import json, sys
from rayml_assets.lib.common.contract import RaySettings
from rayml_assets.lib.training.tuner import connect
try:
    connect(RaySettings.model_validate_json(sys.argv[1]))
    import ray
    print(json.dumps({"nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def _connect(settings: dict, home: Path, **env: str) -> dict:
    home.mkdir(exist_ok=True)  # no ~/.ray/auth_token of this machine's user
    # RAY_NUM_REDIS_GET_RETRIES: a refused join gives up after 2 s, not 20
    clean = clean_env(HOME=str(home), RAY_NUM_REDIS_GET_RETRIES="2", **env)
    clean = {k: v for k, v in clean.items() if not k.startswith("RAY_AUTH") or k in env}
    proc = subprocess.run(
        [sys.executable, "-c", CONNECT, json.dumps(settings)], cwd=REPO, env=clean, capture_output=True, text=True,
        timeout=120,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_join_without_the_token_is_refused_with_a_typed_error_and_a_cluster_without_auth_just_works(
    live_cluster, tmp_path
):
    refused = _connect({"address": live_cluster.address}, tmp_path / "home")
    assert refused["error"] == "RayAuthError"
    for needed in (live_cluster.address, "RAY_AUTH_MODE is 'disabled'", "RAY_AUTH_TOKEN", "ray_auth_token_path"):
        assert needed in refused["message"]
    wrong = _connect({"address": live_cluster.address}, tmp_path / "home", RAY_AUTH_TOKEN="not-the-token")
    assert wrong["error"] == "RayAuthError" and "refused the token from RAY_AUTH_TOKEN" in wrong["message"]
    assert FAKE_TOKEN not in json.dumps([refused, wrong])

    with multinode_cluster(workers=1, cpus=1, token=None) as open_cluster:
        joined = _connect({"address": open_cluster.address}, tmp_path / "home")
        assert joined["nodes"] == sorted([open_cluster.head, *open_cluster.workers])
        # a token where none is needed does no harm (Ray ignores it)
        with_token = _connect({"address": open_cluster.address}, tmp_path / "home", RAY_AUTH_TOKEN=FAKE_TOKEN)
        assert with_token["nodes"] == joined["nodes"]
