"""A real multi-node Ray cluster on this machine: a head plus worker nodes, each its own raylet and node id.

``ray.cluster_utils.Cluster`` runs in a process of its own (``python -m
rayml_assets_tests.training.multinode_cluster``): the nodes inherit ITS environment
(token authentication on, with the token), and nothing of it leaks into the test
process, which joins by address like a user's Dagster process would. The process
prints one JSON line (address, node ids), then obeys ``kill <i>`` (worker ``i`` dies
at once, no drain: a lost VM), ``add`` (one more worker) and ``quit`` on stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Recognisable, so a test can prove it is never logged or sent anywhere.
FAKE_TOKEN = "rayml-fake-token-5c0ffee5c0ffee5c0ffee5c0ffee5c0f"
# Dead nodes are noticed in ~3 s, not Ray's default ~30 s.
HEALTH_CHECK = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


@dataclass
class ClusterHandle:
    address: str
    head: str
    workers: list[str]
    proc: subprocess.Popen = field(repr=False)
    killed: list[str] = field(default_factory=list)

    def _ask(self, command: str) -> dict:
        self.proc.stdin.write(f"{command}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def kill_worker(self, node_id: str | None = None) -> str:
        """Kill a worker node (default: the first live one) at once, no drain; returns its node id."""
        node_id = node_id or self.live_workers()[0]
        self.killed.append(self._ask(f"kill {self.workers.index(node_id)}")["killed"])
        return node_id

    def add_worker(self) -> str:
        self.workers.append(self._ask("add")["added"])
        return self.workers[-1]

    def live_workers(self) -> list[str]:
        return [w for w in self.workers if w not in self.killed]


def cluster_env(token: str | None) -> dict[str, str]:
    """The cluster's environment: token auth on with ``token``, or off; the caller's token variables dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token" if token else "disabled")
    if token:
        env["RAY_AUTH_TOKEN"] = token
    return env


@contextmanager
def multinode_cluster(
    workers: int = 1, cpus: int = 2, token: str | None = FAKE_TOKEN, timeout_s: float = 90
) -> Iterator[ClusterHandle]:
    """A head and ``workers`` worker nodes of ``cpus`` logical CPUs each; token auth on unless ``token`` is None."""
    proc = subprocess.Popen(
        [sys.executable, "-m", __name__, "--workers", str(workers), "--cpus", str(cpus)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=cluster_env(token),
    )
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Ray cluster process exited with {proc.wait(timeout_s)} before it was up")
        info = json.loads(line)
        yield ClusterHandle(info["address"], info["head"], info["workers"], proc)
    finally:
        try:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.wait(timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


def _serve(workers: int, cpus: int) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": cpus, "include_dashboard": False, "_system_config": HEALTH_CHECK},
    )
    nodes = [cluster.add_node(num_cpus=cpus) for _ in range(workers)]
    cluster.wait_for_nodes()
    workers = [n.node_id for n in nodes]
    print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id, "workers": workers}), flush=True)
    try:
        for command in sys.stdin:
            words = command.split()
            if words[:1] == ["kill"]:
                node = nodes[int(words[1])]
                cluster.remove_node(node, allow_graceful=False)
                print(json.dumps({"killed": node.node_id}), flush=True)
            elif words[:1] == ["add"]:
                nodes.append(cluster.add_node(num_cpus=cpus))
                cluster.wait_for_nodes()
                print(json.dumps({"added": nodes[-1].node_id}), flush=True)
            elif words[:1] == ["quit"]:
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    _serve(args.workers, args.cpus)
