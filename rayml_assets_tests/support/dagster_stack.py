"""A real local Dagster deployment for tests: code server, webserver and daemon on 127.0.0.1.

The code location is served once by ``dagster code-server``; the webserver and
the daemon both reach it over gRPC, so the (heavy) definitions load once, and
the daemon can be killed and restarted while the code server keeps serving.
The instance is ``deploy/dagster.yaml`` in a temporary DAGSTER_HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "rayml_assets"
# Cloud credentials never reach the local stack (nor its runs).
_SECRET_PREFIXES = ("DATABRICKS_", "AZURE_", "AWS_", "GOOGLE_")
RELOAD_LOCATION = "mutation($n: String!) { reloadRepositoryLocation(repositoryLocationName: $n) { __typename } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_PREFIXES)}
    env.update(extra)
    return env


def wait_for(what: str, check, timeout: float, every: float = 1.0, on_timeout=None):
    """Poll ``check`` until it returns something truthy; fail with ``what`` (and the logs) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
        time.sleep(every)


class DagsterStack:
    def __init__(self, root: Path, module: str, rayml_home: Path, **env: str):
        self.root = root
        self.home = root / "dagster_home"
        self.home.mkdir(parents=True)
        shutil.copy(REPO / "deploy" / "dagster.yaml", self.home / "dagster.yaml")
        # Create the SQLite storages here, once: processes that start together on an empty
        # DAGSTER_HOME race their schema migrations ("alembic_version has more than one head").
        from dagster import DagsterInstance

        DagsterInstance.from_config(str(self.home)).dispose()
        self.module = module
        self.env = clean_env(DAGSTER_HOME=str(self.home), RAYML_HOME=str(rayml_home), RAYML_PROFILE="local", **env)
        self.grpc_port, self.web_port = free_port(), free_port()
        self.workspace = root / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n  - grpc_server:\n"
            f"      host: 127.0.0.1\n      port: {self.grpc_port}\n      location_name: {LOCATION}\n"
        )
        self.procs: dict[str, subprocess.Popen] = {}
        self.url = f"http://127.0.0.1:{self.web_port}"

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own handle
            self.procs[name] = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (last 3000 chars)\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.root.glob("*.log"))
        )

    def start(self, daemon: bool = True, timeout: float = 240) -> DagsterStack:
        self._spawn("code_server", "dagster", "code-server", "start", "-m", self.module, "-h", "127.0.0.1",
                    "-p", str(self.grpc_port), "--location-name", LOCATION)
        self._spawn(
            "webserver", "dagster-webserver", "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.web_port)
        )
        if daemon:
            self.start_daemon()
        wait_for("the code location to load in the webserver", self._location_loaded, timeout, 2, self.logs)
        return self

    def start_daemon(self) -> None:
        self._spawn("daemon", "dagster-daemon", "run", "-w", str(self.workspace))

    def kill_daemon(self) -> None:
        """SIGKILL, like a crashed host: the daemon gets no chance to tidy up."""
        proc = self.procs.pop("daemon")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:  # the code server takes its time; its group holds run processes too
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def __enter__(self) -> DagsterStack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ GraphQL

    def graphql(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]

    def _location_loaded(self) -> bool:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{self.logs()}"
        try:
            data = self.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
                " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
            )
        except OSError:
            return False  # webserver not listening yet
        for entry in data["workspaceOrError"]["locationEntries"]:
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                # The webserver may have asked before the code server listened: reload and look again.
                self.graphql(RELOAD_LOCATION, n=entry["name"])
                return False
            if entry["loadStatus"] != "LOADED" or loaded.get("__typename") != "RepositoryLocation":
                return False
        return True

    def runs(self, **run_filter) -> list[dict]:
        data = self.graphql(
            "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results {"
            " runId jobName status tags { key value } } } } }",
            f=run_filter,
        )
        runs = data["runsOrError"]["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return runs

    def wait_for_runs(self, count: int, timeout: float, **run_filter) -> list[dict]:
        """Wait until ``count`` runs match and all have finished; fail on any failure."""

        def finished():
            runs = self.runs(**run_filter)
            failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
            assert not failed, f"runs failed: {failed}\n{self.logs()}"
            return runs if len(runs) >= count and all(r["status"] == "SUCCESS" for r in runs) else None

        return wait_for(f"{count} successful runs matching {run_filter}", finished, timeout, 2, self.logs)
