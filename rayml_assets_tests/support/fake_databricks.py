"""CONTRACT-TEST FAKE of the Databricks REST API -- test code only, never shipped.

A real ``databricks.sdk.WorkspaceClient`` (host ``http://127.0.0.1:<port>``, a PAT) talks
HTTP to this server, so the real ``PipesDatabricksClient`` / ``PipesDatabricksServerlessClient``
code, the SDK's request encoding and its error mapping all run as they would against a
workspace. Implemented, to the shape of the public API docs:

- Jobs 2.2: ``runs/submit``, ``runs/get``, ``runs/cancel``, ``runs/get-output``;
- DBFS 2.0: ``mkdirs``, ``put``, ``read``, ``get-status``, ``list``, ``delete``;
- Workspace 2.0: ``mkdirs``, ``import`` (multipart);
- Files 2.0 (Unity Catalog volumes): ``fs/files`` and ``fs/directories``.

A submitted ``spark_python_task`` is "run" by starting ``fake_databricks_driver`` (an
emulated driver, see there) on the uploaded script, with the task's ``spark_env_vars`` or
CLI parameters, ``DATABRICKS_RUNTIME_VERSION`` set and DBFS backed by a local folder. The
run's life cycle is PENDING -> RUNNING -> TERMINATING -> TERMINATED with SUCCESS, FAILED
(the script's stderr becomes ``runs/get-output``'s error and trace) or CANCELED.

What it cannot show -- cluster start, library install, Spark, GPUs, permissions -- is listed
in docs/databricks.md.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _not_found(what: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{what} does not exist")


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

    def set_state(self, life_cycle: str, result: str | None = None, message: str = "") -> None:
        self.life_cycle_state, self.result_state, self.state_message = life_cycle, result, message
        self.seen_states.append(life_cycle if result is None else f"{life_cycle}/{result}")


class FakeDatabricks:
    """The workspace's state plus the HTTP server in front of it."""

    def __init__(self, root: Path, token: str = "dapi-contract-test", hang: bool = False):
        self.root = root
        self.token = token
        self.hang = hang  # runs stay RUNNING until cancelled
        self.dbfs_root = root / "dbfs"
        self.workspace_root = root / "workspace"
        self.volumes_root = root / "volumes"
        self.ray_log = root / "ray_on_spark.jsonl"
        for d in (self.dbfs_root, self.workspace_root, self.volumes_root):
            d.mkdir(parents=True, exist_ok=True)
        self.runs: dict[int, FakeRun] = {}
        self.requests: list[tuple[str, str]] = []
        self.bad_auth: list[str] = []
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeDatabricks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for run in self.runs.values():
            if run.process and run.process.poll() is None:
                run.process.kill()
        self.server.shutdown()
        self.server.server_close()

    # -- paths ----------------------------------------------------------------------------

    def dbfs(self, path: str) -> Path:
        return self.dbfs_root / path.removeprefix("dbfs:").lstrip("/")

    def workspace(self, path: str) -> Path:
        return self.workspace_root / path.lstrip("/")

    def volume(self, path: str) -> Path:
        if not path.startswith("/Volumes/"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{path} is not a /Volumes path")
        return self.volumes_root / path.removeprefix("/Volumes/")

    # -- jobs -----------------------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        (task,) = body["tasks"]
        with self._lock:
            run = FakeRun(run_id=next(self._ids), task_run_id=next(self._ids), submission=body)
            self.runs[run.run_id] = run
        run.set_state("PENDING")
        threading.Thread(target=self._drive, args=(run, task), daemon=True).start()
        return {"run_id": run.run_id}

    def _missing_dependency(self, run: FakeRun, task: dict[str, Any]) -> str | None:
        wheels = [lib["whl"] for lib in task.get("libraries", []) if "whl" in lib]
        for env in run.submission.get("environments", []):
            wheels += env.get("spec", {}).get("dependencies", [])
        for whl in wheels:
            if not self.workspace(whl).is_file():
                return f"Library installation failed: {whl} not found"
        return None

    def _drive(self, run: FakeRun, task: dict[str, Any]) -> None:
        time.sleep(0.2)
        if missing := self._missing_dependency(run, task):
            run.set_state("INTERNAL_ERROR", "FAILED", missing)
            return
        run.set_state("RUNNING")
        if self.hang:
            run.cancel_requested.wait(60)
            run.set_state("TERMINATING")
            time.sleep(0.2)
            run.set_state("TERMINATED", "CANCELED", "Run cancelled.")
            return
        spark_task = task["spark_python_task"]
        script = self.workspace(spark_task["python_file"])
        # A task cluster starts clean: only what the task itself carries is in the environment.
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        env.update(task.get("new_cluster", {}).get("spark_env_vars", {}))
        env.update(
            DATABRICKS_RUNTIME_VERSION="16.4",
            FAKE_DBFS_ROOT=str(self.dbfs_root),
            FAKE_VOLUMES_ROOT=str(self.volumes_root),
            FAKE_RAY_LOG=str(self.ray_log),
            PYTHONPATH=str(REPO_ROOT),
        )
        cmd = [sys.executable, "-m", "rayml_assets_tests.support.fake_databricks_driver", str(script)]
        run.process = subprocess.Popen(
            [*cmd, *spark_task.get("parameters", [])],
            env=env,
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
        task = run.submission["tasks"][0]
        return {
            "run_id": run.run_id,
            "run_name": run.submission.get("run_name"),
            "state": state,
            "run_page_url": f"{self.url}/#job/0/run/{run.run_id}",
            "tasks": [{"run_id": run.task_run_id, "task_key": task["task_key"], "state": state}],
        }

    def run_by_task(self, task_run_id: int) -> FakeRun:
        for run in self.runs.values():
            if run.task_run_id == task_run_id:
                return run
        raise _not_found(f"task run {task_run_id}")

    def cancel(self, run_id: int) -> None:
        run = self.runs[run_id]
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
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.fake.requests.append((method, path))
        try:
            if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
                self.fake.bad_auth.append(path)
                raise ApiError(401, "UNAUTHENTICATED", "invalid access token")
            result = self._route(method, path, query, raw)
        except ApiError as exc:
            body = json.dumps({"error_code": exc.code, "message": exc.message}).encode()
            return self._send(exc.status, body, "application/json")
        if isinstance(result, bytes):
            return self._send(200, result, "application/octet-stream")
        return self._send(200, json.dumps(result or {}).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, raw: bytes) -> dict[str, Any]:
        return json.loads(raw or b"{}")

    def _route(self, method: str, path: str, query: dict[str, str], raw: bytes):
        fake = self.fake
        if path.startswith("/api/2.0/fs/"):
            return self._files(method, path, query, raw)
        route = (method, path)
        if route == ("POST", "/api/2.2/jobs/runs/submit"):
            return fake.submit(self._json(raw))
        if route == ("GET", "/api/2.2/jobs/runs/get"):
            run = fake.runs.get(int(query["run_id"]))
            if run is None:
                raise _not_found(f"run {query['run_id']}")
            return fake.run_json(run)
        if route == ("POST", "/api/2.2/jobs/runs/cancel"):
            fake.cancel(int(self._json(raw)["run_id"]))
            return {}
        if route == ("GET", "/api/2.2/jobs/runs/get-output"):
            run = fake.run_by_task(int(query["run_id"]))
            return {**run.output, "metadata": {"run_id": run.task_run_id}}
        if path.startswith("/api/2.0/dbfs/"):
            return self._dbfs(path.rsplit("/", 1)[1], query, raw)
        if route == ("POST", "/api/2.0/workspace/mkdirs"):
            fake.workspace(self._json(raw)["path"]).mkdir(parents=True, exist_ok=True)
            return {}
        if route == ("POST", "/api/2.0/workspace/import"):
            return self._workspace_import(raw)
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"no fake for {method} {path}")

    def _dbfs(self, op: str, query: dict[str, str], raw: bytes):
        args = {**query, **(self._json(raw) if raw else {})}
        target = self.fake.dbfs(args["path"])
        if op == "mkdirs":
            target.mkdir(parents=True, exist_ok=True)
            return {}
        if op == "put":
            if target.exists() and not args.get("overwrite"):
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{args['path']} exists")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(args["contents"]))
            return {}
        if op == "delete":
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            return {}
        if not target.exists():
            raise _not_found(args["path"])
        if op == "read":
            data = target.read_bytes()
            return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}
        if op == "get-status":
            return self._dbfs_info(args["path"], target)
        if op == "list":
            return {
                "files": [
                    self._dbfs_info(f"{args['path'].rstrip('/')}/{p.name}", p)
                    for p in sorted(target.iterdir())
                ]
            }
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"no fake for dbfs/{op}")

    @staticmethod
    def _dbfs_info(path: str, target: Path) -> dict[str, Any]:
        stat = target.stat()
        return {
            "path": path,
            "is_dir": target.is_dir(),
            "file_size": 0 if target.is_dir() else stat.st_size,
            "modification_time": int(stat.st_mtime * 1000),
        }

    def _workspace_import(self, raw: bytes):
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw
        )
        fields = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
        path = fields["path"].get_content().strip()
        target = self.fake.workspace(path)
        if target.exists() and fields.get("overwrite") is None:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{path} exists")
        if not target.parent.is_dir():
            raise _not_found(f"parent folder of {path}")
        target.write_bytes(fields["content"].get_payload(decode=True))
        return {}

    def _files(self, method: str, path: str, query: dict[str, str], raw: bytes):
        kind, _, volume_path = path.removeprefix("/api/2.0/fs/").partition("/")
        target = self.fake.volume("/" + volume_path)
        if kind == "directories":
            if method == "PUT":
                target.mkdir(parents=True, exist_ok=True)
                return {}
            if not target.is_dir():
                raise _not_found("/" + volume_path)
            if method == "DELETE":
                target.rmdir()
                return {}
            return {
                "contents": [
                    {"path": f"/{volume_path}/{p.name}", "name": p.name, "is_directory": p.is_dir()}
                    for p in sorted(target.iterdir())
                ]
            }
        if method == "PUT":
            if target.exists() and query.get("overwrite") == "false":
                raise ApiError(409, "ALREADY_EXISTS", "/" + volume_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(raw)
            return {}
        if not target.is_file():
            raise _not_found("/" + volume_path)
        if method == "DELETE":
            target.unlink()
            return {}
        return target.read_bytes()
