"""Where heavy work runs: the ``compute`` resource.

Every heavy asset calls one Pipes task script (``rayml_assets/lib/<domain>/<name>_task.py``)
through this resource, so the asset code is identical whether the script runs here or on
Databricks:

    invocation = compute.run(context, task="train", extras={"delta_version": 3})
    return invocation.get_materialize_result()

- :class:`LocalCompute` (default) runs ``python -m rayml_assets.lib.<domain>.<name>_task``
  with ``dagster.PipesSubprocessClient``.
- :class:`~rayml_assets.resources.databricks_compute.DatabricksCompute` submits the same
  script (uploaded by ``rayml_assets.deploy``) as a one-time Databricks run; that module,
  and with it ``dagster_databricks`` and ``databricks.sdk``, is imported only when a
  profile asks for Databricks compute (:func:`compute_for_profile`).

Either way the script's logs, metadata and errors come back through Pipes.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    OpExecutionContext,
    PipesClientCompletedInvocation,
    PipesSubprocessClient,
)
from pydantic import Field

from rayml_assets.lib.common import secrets
from rayml_assets.lib.common.contract import RAY_KEY
from rayml_assets.lib.common.pipes_runtime import ray_with_address
from rayml_assets.settings import Profile
from rayml_assets.telemetry import TELEMETRY_OFF

# Pipes task scripts live beside their domain's logic: rayml_assets/lib/<domain>/<name>_task.py.
DEFAULT_TASKS_PACKAGE = "rayml_assets.lib"
TASK_SUFFIX = "_task"
PROJECT_NAME = "rayml_assets"
# The repo root (or site-packages): where `rayml_assets` and `rayml_assets_tests` are found.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# Non-secret variables a task script may need; nothing else is sent on purpose.
LOCAL_ENV_WHITELIST = (*TELEMETRY_OFF, "RAYML_HOME", "RAYML_PROFILE_FILE", "RAYML_STORAGE_ACCOUNT", "PYTHONPATH")
REMOTE_ENV_WHITELIST = ("RAYML_STORAGE_ACCOUNT",)
class UnknownTaskError(ValueError):
    """The named task has no script in the tasks package."""


class DuplicateTaskError(ValueError):
    """Two modules under the tasks package define the same task name."""


class SecretInPayloadError(ValueError):
    """Extras or env would carry a secret to the task script."""


Context = AssetExecutionContext | OpExecutionContext


# ---------------------------------------------------------------------------------------
# task discovery and payload checks, shared by every resource and by rayml_assets.deploy
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _task_modules(package: str) -> dict[str, tuple[str, Path]]:
    """Task name -> (module, file) for every ``*_task`` module under ``package``, at any depth.

    Walked once per process. Two domains defining the same task name is an error, because
    ``compute.run(task=...)`` and the workspace ``tasks/`` folder key scripts by name alone.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownTaskError(f"tasks package {package!r} cannot be imported")
    found: dict[str, tuple[str, Path]] = {}
    for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=f"{package}."):
        leaf = info.name.rsplit(".", 1)[-1]
        if info.ispkg or not leaf.endswith(TASK_SUFFIX):
            continue
        name = leaf[: -len(TASK_SUFFIX)]
        if name in found:
            raise DuplicateTaskError(f"task {name!r} is defined twice: {found[name][0]} and {info.name}")
        found[name] = (info.name, Path(info.module_finder.path) / f"{leaf}.py")
    return dict(sorted(found.items()))


def available_tasks(package: str = DEFAULT_TASKS_PACKAGE) -> dict[str, Path]:
    """Task name -> script file of every Pipes task script (``<name>_task.py``) under ``package``."""
    return {name: path for name, (_, path) in _task_modules(package).items()}


def _find_task(task: str, package: str) -> tuple[str, Path]:
    found = _task_modules(package)
    if task not in found:
        raise UnknownTaskError(
            f"unknown compute task {task!r}: {package} has no script for it; known tasks: {sorted(found)}"
        )
    return found[task]


def task_module(task: str, package: str = DEFAULT_TASKS_PACKAGE) -> str:
    """The module ``python -m`` runs for ``task``; an unknown name is an :class:`UnknownTaskError`."""
    return _find_task(task, package)[0]


def check_task(task: str, package: str = DEFAULT_TASKS_PACKAGE) -> Path:
    """The script file of ``task``; an unknown name is an :class:`UnknownTaskError`."""
    return _find_task(task, package)[1]


def project_version() -> str:
    """The version the wheel is built with: pyproject.toml in a checkout, else the installed dist."""
    pyproject = PACKAGE_ROOT / "pyproject.toml"
    if pyproject.is_file():
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    return importlib.metadata.version(PROJECT_NAME)


def wheel_filename(version: str) -> str:
    return f"{PROJECT_NAME}-{version}-py3-none-any.whl"


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def check_no_secrets(**payloads: Mapping[str, Any] | None) -> None:
    """Refuse secret-looking keys, values equal to a secret in this process's environment, and
    values shaped like a secret (a connection string, a personal access token)."""
    known = secrets.secret_values()
    for name, payload in payloads.items():
        for path, value in _leaves(payload or {}):
            if secrets.is_secret_name(path):
                raise SecretInPayloadError(f"{name} key {path!r} looks like a secret; use EnvVar")
            if isinstance(value, str) and value in known:
                raise SecretInPayloadError(f"{name} value at {path!r} is a secret from the environment")
            if isinstance(value, str) and secrets.looks_like_secret(value):
                raise SecretInPayloadError(f"{name} value at {path!r} is shaped like a secret; use EnvVar")


def whitelisted_env(keys: tuple[str, ...]) -> dict[str, str]:
    return {k: os.environ[k] for k in keys if k in os.environ}


# ---------------------------------------------------------------------------------------
# the resource interface
# ---------------------------------------------------------------------------------------


class ComputeResource(ConfigurableResource):
    """Runs one task script of ``tasks_package`` through Dagster Pipes.

    Subclasses decide where; the call and the result are the same everywhere.
    """

    profile: str = Field("local", description="RAYML_PROFILE the task script loads.")
    tasks_package: str = Field(
        DEFAULT_TASKS_PACKAGE, description="Package whose ``*_task`` modules are the Pipes task scripts."
    )

    def run(
        self,
        context: Context,
        task: str,
        extras: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> PipesClientCompletedInvocation:
        raise NotImplementedError

    def known_tasks(self) -> list[str]:
        return list(available_tasks(self.tasks_package))

    def _checked(self, task: str, extras, env) -> tuple[Path, dict[str, Any], dict[str, str]]:
        script = check_task(task, self.tasks_package)
        check_no_secrets(extras=extras, env=env)
        return script, dict(extras or {}), dict(env or {})


class LocalCompute(ComputeResource):
    """Runs the task script as a subprocess of the Dagster step, with a local (or given) Ray."""

    ray_address: str | None = Field(
        None, description="Ray cluster for the script; None lets the script start a local Ray."
    )

    def run(self, context, task, extras=None, env=None) -> PipesClientCompletedInvocation:
        _, extras, env = self._checked(task, extras, env)
        # The task's Ray settings get this resource's address unless the asset set one.
        extras[RAY_KEY] = ray_with_address(extras, self.ray_address, override=False)
        # The child imports this same checkout, wherever the Dagster process was started.
        pythonpath = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p
        )
        child_env = {
            **TELEMETRY_OFF,
            **whitelisted_env(LOCAL_ENV_WHITELIST),
            "RAYML_PROFILE": self.profile,
            "PYTHONPATH": pythonpath,
            **env,
        }
        # PipesSubprocessClient always layers these over the parent's own environment.
        client = PipesSubprocessClient(env=child_env)
        return client.run(
            context=context,
            command=[sys.executable, "-m", task_module(task, self.tasks_package)],
            extras=extras,
        )


def compute_for_profile(profile: Profile) -> ComputeResource:
    """The compute resource a profile asks for (used by ``definitions.py``).

    The Databricks module (``dagster_databricks``, ``databricks.sdk``) is imported only here,
    for a profile with ``compute: databricks``: a local code location never loads it.
    """
    if profile.is_local:
        return LocalCompute(profile=profile.name, ray_address=profile.ray_address)
    from rayml_assets.resources.databricks_compute import databricks_compute_for_profile

    return databricks_compute_for_profile(profile)
