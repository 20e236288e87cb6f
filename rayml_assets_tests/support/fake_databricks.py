"""CONTRACT-TEST FAKE of the Databricks REST API -- test code only, never shipped.

This is a contract test double: a real ``databricks.sdk.WorkspaceClient`` (host
``http://127.0.0.1:<port>``) talks HTTP to this server, so the real
``PipesDatabricksClient`` / ``PipesDatabricksServerlessClient`` code, the SDK's request
encoding, its auth and its error mapping all run as they would against a workspace. What
the fake holds the client to:

- every request is parsed with the databricks-sdk's own definition of its endpoint
  (``fake_databricks_api``): an unknown field or one the SDK's dataclasses would not keep
  is a contract violation, and so is an answer of the fake's that they would not read;
- DBFS's 1 MB limits per read and per block, and the Files API on ``/Volumes`` paths only
  (``fake_databricks_storage``);
- a PAT, or an Azure service principal's Entra ID token from the fake's token endpoint
  (``fake_databricks_auth``).

Every violation is answered as the service would (HTTP 400) and kept in
:attr:`FakeDatabricks.violations`; the tests' fixture fails a test that leaves any, even
where the client swallows the error (the Pipes readers ignore every ``OSError``).

Endpoints: Jobs 2.2 ``runs/submit|get|cancel|get-output``; DBFS 2.0; Workspace 2.0
``mkdirs`` and ``import``; the Files API; Secrets 2.0 ``get`` (what dbutils calls). A submitted ``spark_python_task`` is "run" by
starting ``fake_databricks_driver`` (an emulated driver) on the uploaded script, in a Python
with the run's wheels installed and not the repository (``fake_databricks_envs``): on a task
cluster with its ``spark_env_vars`` (``{{secrets/<scope>/<key>}}`` references resolved from the
fake's secret scopes, as Databricks does when a cluster starts), on serverless with nothing but
its CLI parameters and a dbutils that reads those scopes through the Secrets API.
The run goes PENDING -> RUNNING -> TERMINATING -> TERMINATED with SUCCESS, FAILED (the
script's stderr becomes ``runs/get-output``'s error and trace) or CANCELED.

What it cannot show -- cluster start, library install, Spark, GPUs, permissions -- is listed
in docs/databricks.md.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from rayml_assets_tests.support.fake_databricks_api import (
    ApiError,
    ContractViolation,
    check_response,
    find_endpoint,
    not_found,
    parse_request,
)
from rayml_assets_tests.support.fake_databricks_auth import Auth, ServicePrincipal, TokenError
from rayml_assets_tests.support.fake_databricks_envs import DriverEnvs
from rayml_assets_tests.support.fake_databricks_storage import Raw, Storage

CLUSTER_RUNTIME_VERSION = "18.0"
_SECRET_REFERENCE = re.compile(r"\{\{secrets/([^/{}]+)/([^/{}]+)\}\}")


@dataclass
class FakeRun:
    run_id: int
    task_run_id: int
    submission: dict[str, Any]
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    seen_states: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    output: dict[str, Any] = field(default_factory=dict)
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def task(self) -> dict[str, Any]:
        return self.submission["tasks"][0]

    def set_state(self, life_cycle: str, result: str | None = None, message: str = "") -> None:
        self.life_cycle_state, self.result_state, self.state_message = life_cycle, result, message
        self.seen_states.append(life_cycle if result is None else f"{life_cycle}/{result}")


class FakeDatabricks(Storage):
    """The workspace's state plus the HTTP server in front of it."""

    def __init__(
        self,
        root: Path,
        driver_envs: DriverEnvs,
        token: str = "dapi-contract-test",
        hang: bool = False,
        principal: ServicePrincipal = ServicePrincipal(),
    ):
        super().__init__(root)
        self.root = root
        self.driver_envs = driver_envs
        self.token = token
        self.hang = hang  # runs stay RUNNING until cancelled
        self.ray_log = root / "ray_on_spark.jsonl"
        self.runs: dict[int, FakeRun] = {}
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.secret_scopes: dict[str, dict[str, str]] = {}  # scope -> key -> value (a Key Vault-backed scope)
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.auth = Auth(self.url, token, principal)
        self.handlers.update(
            {
                "JobsAPI.submit": self.submit,
                "JobsAPI.get_run": lambda a: self.run_json(self._run(a["run_id"])),
                "JobsAPI.cancel_run": lambda a: self.cancel(self._run(a["run_id"])),
                "JobsAPI.get_run_output": self._run_output,
                "SecretsAPI.get_secret": lambda a: {"key": a["key"], "value": self._secret_b64(a["scope"], a["key"])},
            }
        )
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def bad_auth(self) -> list[str]:
        return self.auth.bad_auth

    def __enter__(self) -> FakeDatabricks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for run in self.runs.values():
            if run.process and run.process.poll() is None:
                run.process.kill()
        self.server.shutdown()
        self.server.server_close()

    # -- secrets --------------------------------------------------------------------------

    def put_secret(self, scope: str, key: str, value: str) -> None:
        self.secret_scopes.setdefault(scope, {})[key] = value

    def _secret(self, scope: str, key: str) -> str:
        if key not in self.secret_scopes.get(scope, {}):
            raise not_found(f"secret {key!r} in scope {scope!r}")
        return self.secret_scopes[scope][key]

    def _secret_b64(self, scope: str, key: str) -> str:
        """A secret's value as the API sends it (base64 of its bytes)."""
        return base64.b64encode(self._secret(scope, key).encode()).decode()

    def resolve_references(self, env: dict[str, str]) -> dict[str, str]:
        """``spark_env_vars`` as a started cluster sees them: each secret reference replaced by its value."""
        return {name: _SECRET_REFERENCE.sub(lambda m: self._secret(*m.groups()), value) for name, value in env.items()}

    # -- jobs -----------------------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        tasks, environments = body.get("tasks") or [], body.get("environments") or []
        if len(tasks) != 1 or "spark_python_task" not in tasks[0]:
            raise ContractViolation("the fake runs one spark_python_task per submit")
        (task,) = tasks
        keys = {env["environment_key"] for env in environments}
        if "new_cluster" not in task and task.get("environment_key") not in keys:
            raise ContractViolation(f"task {task['task_key']!r}: no new_cluster and no environment of its environment_key")
        with self._lock:
            run = FakeRun(run_id=next(self._ids), task_run_id=next(self._ids), submission=body)
            self.runs[run.run_id] = run
        run.set_state("PENDING")
        threading.Thread(target=self._drive, args=(run,), daemon=True).start()
        return {"run_id": run.run_id}

    def _run(self, run_id: int) -> FakeRun:
        if run_id not in self.runs:
            raise not_found(f"run {run_id}")
        return self.runs[run_id]

    def _run_output(self, a: dict[str, Any]) -> dict[str, Any]:
        for run in self.runs.values():
            if run.task_run_id == a["run_id"]:
                return {**run.output, "metadata": {"run_id": run.task_run_id}}
        raise not_found(f"task run {a['run_id']}")

    def _wheels(self, run: FakeRun) -> list[str]:
        """The workspace paths of the wheels the run installs: the task's libraries, the serverless environment's dependencies."""
        wheels = [lib["whl"] for lib in run.task.get("libraries", []) if "whl" in lib]
        for env in run.submission.get("environments", []):
            wheels += env.get("spec", {}).get("dependencies", [])
        return wheels

    def _missing_dependency(self, run: FakeRun) -> str | None:
        for whl in self._wheels(run):
            if not self.workspace(whl).is_file():
                return f"Library installation failed: {whl} not found"
        return None

    def _driver_env(self, run: FakeRun) -> dict[str, str]:
        """A task cluster starts clean: only what the task itself carries is in its environment."""
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        if "new_cluster" in run.task:
            env.update(self.resolve_references(run.task["new_cluster"].get("spark_env_vars", {})),
                       DATABRICKS_RUNTIME_VERSION=CLUSTER_RUNTIME_VERSION)
        else:  # serverless takes no env vars; its runtime names the environment version
            (spec,) = [e["spec"] for e in run.submission["environments"] if e["environment_key"] == run.task["environment_key"]]
            env["DATABRICKS_RUNTIME_VERSION"] = f"client.{spec.get('environment_version', '1')}"
        # the runtime's own credentials for dbutils (the driver builds it, then drops them from the environment)
        env.update(FAKE_DBUTILS_HOST=self.url, FAKE_DBUTILS_TOKEN=self.token)
        env.update(
            FAKE_DBFS_ROOT=str(self.dbfs_root),
            FAKE_VOLUMES_ROOT=str(self.volumes_root),
            FAKE_RAY_LOG=str(self.ray_log),
        )
        return env

    def _drive(self, run: FakeRun) -> None:
        time.sleep(0.2)
        if missing := self._missing_dependency(run):
            run.set_state("INTERNAL_ERROR", "FAILED", missing)
            return
        try:
            driver_env = self._driver_env(run)
        except ApiError as exc:  # a cluster does not start with a secret reference it cannot resolve
            run.set_state("INTERNAL_ERROR", "FAILED", f"cluster start failed: {exc.message}")
            return
        run.set_state("RUNNING")
        if self.hang:
            run.cancel_requested.wait(60)
            run.set_state("TERMINATING")
            time.sleep(0.2)
            run.set_state("TERMINATED", "CANCELED", "Run cancelled.")
            return
        spark_task = run.task["spark_python_task"]
        script = self.workspace(spark_task["python_file"])
        driver = self.driver_envs.command([self.workspace(whl) for whl in self._wheels(run)])
        run.process = subprocess.Popen(
            [*driver, str(script), *spark_task.get("parameters", [])],
            env=driver_env,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = run.process.communicate()
        run.set_state("TERMINATING")
        if run.cancel_requested.is_set():
            run.set_state("TERMINATED", "CANCELED", "Run cancelled.")
        elif run.process.returncode == 0:
            run.output = {"logs": stdout}
            run.set_state("TERMINATED", "SUCCESS", "")
        else:
            last = stderr.strip().splitlines()[-1] if stderr.strip() else "non-zero exit"
            run.output = {"error": last, "error_trace": stderr, "logs": stdout}
            run.set_state("TERMINATED", "FAILED", "Workload failed, see run output for details")

    def run_json(self, run: FakeRun) -> dict[str, Any]:
        state = {"life_cycle_state": run.life_cycle_state, "state_message": run.state_message}
        if run.result_state:
            state["result_state"] = run.result_state
        return {
            "run_id": run.run_id,
            "run_name": run.submission.get("run_name"),
            "state": state,
            "run_page_url": f"{self.url}/#job/0/run/{run.run_id}",
            "tasks": [{"run_id": run.task_run_id, "task_key": run.task["task_key"], "state": state}],
        }

    def cancel(self, run: FakeRun) -> None:
        run.cancel_requested.set()
        if run.process and run.process.poll() is None:
            run.process.terminate()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeDatabricks
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output quiet
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fake.requests.append((method, path))
        try:
            if fake.auth.is_token_request(path):
                return self._send_json(200, fake.auth.token(path, raw))
            fake.auth.check(self.headers, path)
            endpoint = find_endpoint(method, path)
            result = fake.handlers[endpoint.name](parse_request(endpoint, path, query, self.headers, raw))
            if isinstance(result, Raw):
                return self._send(200, result.body, result.headers)
            check_response(endpoint, result)
        except TokenError as exc:
            return self._send_json(400, exc.body)
        except ApiError as exc:
            if isinstance(exc, ContractViolation):
                fake.violations.append(f"{method} {path}: {exc.code}: {exc.message}")
            return self._send_json(exc.status, {"error_code": exc.code, "message": exc.message})
        self._send_json(200, result or {})

    def _send_json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
