"""Where heavy work runs: the ``compute`` resource.

Every heavy asset calls one Pipes task script from ``rayml_assets/jobs/`` through this
resource, so the asset code is identical whether the script runs here or on Databricks:

    invocation = compute.run(context, task="train", extras={"delta_version": 3})
    return invocation.get_materialize_result()

- :class:`LocalCompute` (default) runs ``python -m rayml_assets.jobs.<task>`` with
  ``dagster.PipesSubprocessClient``.
- :class:`DatabricksCompute` submits the same script (uploaded by ``rayml_assets.deploy``)
  as a one-off Databricks task task with ``dagster_databricks.PipesDatabricksClient`` on a
  new task cluster, or ``PipesDatabricksServerlessClient`` on serverless compute.

Either way the script's logs, metadata and errors come back through Pipes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pkgutil
import posixpath
import re
import sys
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    Config,
    ConfigurableResource,
    DagsterExecutionInterruptedError,
    EnvVar,
    OpExecutionContext,
    PipesClientCompletedInvocation,
    PipesSubprocessClient,
)
from dagster._core.errors import DagsterPipesExecutionError
from dagster_databricks import DatabricksClientResource, PipesDatabricksClient, PipesDbfsMessageReader
from dagster_databricks.pipes import (
    PipesDatabricksServerlessClient,
    PipesUnityCatalogVolumesMessageReader,
)
from dagster_databricks.resources import AzureServicePrincipalCredentials
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service import compute as dbcompute
from databricks.sdk.service import jobs
from pydantic import Field

from rayml_assets.lib.common.pipes_runtime import ENV_KEY, RAY_ADDRESS_KEY, RAY_ON_SPARK_KEY
from rayml_assets.settings import DatabricksSettings, Profile, ProfileError
from rayml_assets.telemetry import TELEMETRY_OFF

# Pipes task scripts live beside their domain's logic: rayml_assets/lib/<domain>/<name>_task.py.
DEFAULT_TASKS_PACKAGE = "rayml_assets.lib"
TASK_SUFFIX = "_task"
PROJECT_NAME = "rayml_assets"
SERVERLESS_ENVIRONMENT_KEY = "rayml"
# The repo root (or site-packages): where `rayml_assets` and `rayml_assets_tests` are found.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# Non-secret variables a task script may need; nothing else is sent on purpose.
LOCAL_ENV_WHITELIST = (*TELEMETRY_OFF, "RAYML_HOME", "RAYML_STORAGE_ACCOUNT", "PYTHONPATH")
REMOTE_ENV_WHITELIST = ("RAYML_STORAGE_ACCOUNT",)
# A key with one of these words is refused in extras/env: secrets travel only as EnvVar.
# Whole words, so that e.g. ``max_tokens`` or ``tokenizer`` stay allowed.
_SECRET_WORDS = re.compile(
    r"(?:^|[^A-Z0-9])(?:TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PRIVATE_KEY|API_KEY|ACCESS_KEY)"
    r"(?:$|[^A-Z0-9])"
)

CREDENTIAL_ENV_VARS = {
    "pat": ("DATABRICKS_HOST", "DATABRICKS_TOKEN"),
    "azure_client_secret": (
        "DATABRICKS_HOST",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
    ),
}


class UnknownTaskError(ValueError):
    """The named task has no script in the tasks package."""


class SecretInPayloadError(ValueError):
    """Extras or env would carry a secret to the task script."""


class DatabricksCredentialsError(RuntimeError):
    """The environment lacks the Databricks credentials the profile's ``auth`` needs."""


Context = AssetExecutionContext | OpExecutionContext


# ---------------------------------------------------------------------------------------
# helpers shared by the resources and by rayml_assets.deploy
# ---------------------------------------------------------------------------------------


def _task_modules(package: str) -> dict[str, tuple[str, Path]]:
    """Task name -> (module, file) for every ``*_task`` module under ``package``, at any depth."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownTaskError(f"tasks package {package!r} cannot be imported")
    found = {}
    for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=f"{package}."):
        leaf = info.name.rsplit(".", 1)[-1]
        if not info.ispkg and leaf.endswith(TASK_SUFFIX):
            found[leaf[: -len(TASK_SUFFIX)]] = (info.name, Path(info.module_finder.path) / f"{leaf}.py")
    return dict(sorted(found.items()))


def available_tasks(package: str = DEFAULT_TASKS_PACKAGE) -> dict[str, Path]:
    """Task name -> script file of every Pipes task script (``<name>_task.py``) under ``package``."""
    return {name: path for name, (_, path) in _task_modules(package).items()}


def task_module(task: str, package: str = DEFAULT_TASKS_PACKAGE) -> str:
    """The module ``python -m`` runs for ``task``; an unknown name is an :class:`UnknownTaskError`."""
    found = _task_modules(package)
    if task not in found:
        raise UnknownTaskError(
            f"unknown compute task {task!r}: {package} has no script for it; known tasks: {sorted(found)}"
        )
    return found[task][0]


def check_task(task: str, package: str = DEFAULT_TASKS_PACKAGE) -> Path:
    task_module(task, package)
    return available_tasks(package)[task]


def project_version() -> str:
    """The version the wheel is built with: pyproject.toml in a checkout, else the installed dist."""
    pyproject = PACKAGE_ROOT / "pyproject.toml"
    if pyproject.is_file():
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    return importlib.metadata.version(PROJECT_NAME)


def wheel_filename(version: str) -> str:
    return f"{PROJECT_NAME}-{version}-py3-none-any.whl"


def workspace_wheel_path(settings: DatabricksSettings, version: str) -> str:
    return posixpath.join(settings.workspace_wheel_dir, wheel_filename(version))


def workspace_tasks_dir(settings: DatabricksSettings) -> str:
    """Task scripts live beside the wheels folder: ``<wheel_dir>/../tasks``."""
    return posixpath.join(posixpath.dirname(settings.workspace_wheel_dir.rstrip("/")), "tasks")


def credentials_for(auth: str) -> DatabricksClientResource:
    """Databricks credentials read only from the environment, when a run starts."""
    if auth == "azure_client_secret":
        return DatabricksClientResource(
            host=EnvVar("DATABRICKS_HOST"),
            azure_credentials=AzureServicePrincipalCredentials(
                azure_client_id=EnvVar("AZURE_CLIENT_ID"),
                azure_client_secret=EnvVar("AZURE_CLIENT_SECRET"),
                azure_tenant_id=EnvVar("AZURE_TENANT_ID"),
            ),
        )
    return DatabricksClientResource(host=EnvVar("DATABRICKS_HOST"), token=EnvVar("DATABRICKS_TOKEN"))


def credentials_error(auth: str, missing: list[str] | None = None) -> DatabricksCredentialsError:
    names = ", ".join(missing or CREDENTIAL_ENV_VARS[auth])
    return DatabricksCredentialsError(
        f"Databricks credentials missing: set {names} "
        f"(profile auth is {auth!r}; see docs/databricks.md)"
    )


def require_credentials(auth: str) -> None:
    """Fail early, by env var name, when the environment cannot authenticate."""
    missing = [name for name in CREDENTIAL_ENV_VARS[auth] if not os.environ.get(name)]
    if missing:
        raise credentials_error(auth, missing)


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
    """Refuse secret-looking keys, and values equal to a secret in this process's environment."""
    secret_values = {v for k, v in os.environ.items() if v and _SECRET_WORDS.search(k.upper())}
    for name, payload in payloads.items():
        for path, value in _leaves(payload or {}):
            if _SECRET_WORDS.search(path.upper()):
                raise SecretInPayloadError(f"{name} key {path!r} looks like a secret; use EnvVar")
            if isinstance(value, str) and value in secret_values:
                raise SecretInPayloadError(f"{name} value at {path!r} is a secret from the environment")


def _whitelisted_env(keys: tuple[str, ...]) -> dict[str, str]:
    return {k: os.environ[k] for k in keys if k in os.environ}


# ---------------------------------------------------------------------------------------
# the resource interface
# ---------------------------------------------------------------------------------------


class ComputeResource(ConfigurableResource):
    """Runs one task script of ``jobs_package`` through Dagster Pipes.

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
        extras.setdefault(RAY_ADDRESS_KEY, self.ray_address)
        # The child imports this same checkout, wherever the Dagster process was started.
        pythonpath = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p
        )
        child_env = {
            **TELEMETRY_OFF,
            **_whitelisted_env(LOCAL_ENV_WHITELIST),
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


class DatabricksClusterConfig(Config, DatabricksSettings):
    """The profile's ``databricks:`` block, as Dagster config (same fields, same defaults)."""


class _RunReporting:
    """Makes a remote run findable and a remote failure readable from the Dagster run.

    dagster-databricks only reports the run URL after success, and on failure only the
    run's state message; here the URL is logged as soon as the run exists and a failure
    carries the task's error, trace and log tail (from ``jobs.get_run_output``), which is
    all there is when the script dies before Pipes opens (say, a bad wheel).
    """

    client: Any

    def _poll_til_success(self, context: Context, run_id: int) -> None:
        run = self.client.jobs.get_run(run_id)
        context.log.info(f"[rayml] Databricks run {run_id} submitted: {run.run_page_url}")
        try:
            super()._poll_til_success(context, run_id)  # type: ignore[misc]
        except DagsterPipesExecutionError as exc:
            detail = _failed_task_output(self.client, run_id)
            if detail:
                context.log.error(f"[rayml] Databricks run {run_id} failed:\n{detail}")
            raise DagsterPipesExecutionError(
                f"{exc}\nDatabricks run: {run.run_page_url}\n{detail}".rstrip()
            ) from exc


    def _poll_til_terminating(self, run_id: int) -> None:
        super()._poll_til_terminating(run_id)  # type: ignore[misc]
        # Only reached after an interrupt cancelled the run. dagster-databricks 0.29.27's
        # single-task run() swallows the interrupt there, and the step would then succeed
        # with no results; re-raise so the Dagster run ends interrupted, as it should.
        raise DagsterExecutionInterruptedError(
            f"Databricks run {run_id} cancelled: the Dagster run was interrupted"
        )


def _failed_task_output(client, run_id: int, tail: int = 4000) -> str:
    try:
        run = client.jobs.get_run(run_id)
        parts = []
        for task in run.tasks or []:
            out = client.jobs.get_run_output(task.run_id)
            for label, text in (
                ("error", out.error),
                ("trace", out.error_trace),
                ("logs", out.logs),
            ):
                if text:
                    parts.append(f"[{task.task_key} {label}]\n{text[-tail:]}")
        return "\n".join(parts)
    except DatabricksError as exc:  # the original failure matters more than this lookup
        return f"(could not fetch the task output: {exc})"


class _ClusterPipesClient(_RunReporting, PipesDatabricksClient):
    pass


class _ServerlessPipesClient(_RunReporting, PipesDatabricksServerlessClient):
    pass


def _runtime_flavour(spark_version: str, gpu: bool) -> str:
    """The GPU or CPU build of the same ML runtime: a GPU runtime will not start on CPU nodes."""
    want, other = ("-gpu-ml-", "-cpu-ml-") if gpu else ("-cpu-ml-", "-gpu-ml-")
    return spark_version.replace(other, want)


class DatabricksCompute(ComputeResource):
    """Submits the task script as a one-off Databricks task task and follows it through Pipes.

    The ``WorkspaceClient`` is built from ``credentials`` only inside :meth:`run`, so loading
    the definitions needs no credentials.
    """

    cluster: DatabricksClusterConfig
    credentials: DatabricksClientResource
    wheel_version: str = Field(description="Version of the deployed rayml_assets wheel.")
    gpu_tasks: list[str] = Field(["train"], description="Tasks that get gpu_node_type_id.")
    serverless_environment_version: str = "2"
    poll_interval_seconds: float = 10.0
    message_poll_interval_seconds: float = 10.0
    timeout_seconds: int = Field(0, description="Databricks run timeout; 0 means none.")

    # -- the submitted task (pure: unit-tested without a workspace) ----------------------

    @property
    def wheel_path(self) -> str:
        return workspace_wheel_path(self.cluster, self.wheel_version)

    def script_path(self, task: str) -> str:
        return posixpath.join(workspace_tasks_dir(self.cluster), f"{task}.py")

    def spark_env_vars(self) -> dict[str, str]:
        return {
            **TELEMETRY_OFF,
            **_whitelisted_env(REMOTE_ENV_WHITELIST),
            "RAYML_PROFILE": self.profile,
        }

    def new_cluster(self, task: str, env: Mapping[str, str] | None = None) -> dbcompute.ClusterSpec:
        c = self.cluster
        gpu = task in self.gpu_tasks
        # A pool fixes the node type, so it serves the CPU jobs; GPU jobs pick their node type.
        pool = c.instance_pool_id if not gpu else None
        return dbcompute.ClusterSpec(
            spark_version=_runtime_flavour(c.spark_version, gpu),
            node_type_id=None if pool else (c.gpu_node_type_id if gpu else c.node_type_id),
            instance_pool_id=pool,
            driver_instance_pool_id=pool,
            autoscale=dbcompute.AutoScale(min_workers=c.min_workers, max_workers=c.max_workers),
            policy_id=c.policy_id,
            apply_policy_default_values=True if c.policy_id else None,
            spark_env_vars={**self.spark_env_vars(), **(env or {})},
            custom_tags={"project": PROJECT_NAME, "rayml_task": task, "rayml_profile": self.profile},
        )

    def submit_task(self, task: str, env: Mapping[str, str] | None = None) -> jobs.SubmitTask:
        python_task = jobs.SparkPythonTask(
            python_file=self.script_path(task), source=jobs.Source.WORKSPACE
        )
        if self.cluster.serverless:
            # Serverless takes no cluster spec and no env vars: the wheel comes from the
            # task environment and Pipes bootstraps through the script's CLI arguments.
            return jobs.SubmitTask(
                task_key=task,
                spark_python_task=python_task,
                environment_key=SERVERLESS_ENVIRONMENT_KEY,
            )
        return jobs.SubmitTask(
            task_key=task,
            spark_python_task=python_task,
            new_cluster=self.new_cluster(task, env),
            libraries=[dbcompute.Library(whl=self.wheel_path)],
        )

    def submit_args(self, context: Context, task: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "run_name": f"{PROJECT_NAME} {self.profile} {task} (dagster run {context.run_id[:8]})",
            # One token per call: the SDK's retries of this same submit never start a 2nd run.
            "idempotency_token": uuid.uuid4().hex,
        }
        if self.timeout_seconds:
            args["timeout_seconds"] = self.timeout_seconds
        if self.cluster.serverless:
            args["environments"] = [
                jobs.JobEnvironment(
                    environment_key=SERVERLESS_ENVIRONMENT_KEY,
                    spec=dbcompute.Environment(
                        environment_version=self.serverless_environment_version,
                        dependencies=[self.wheel_path],
                    ),
                )
            ]
        return args

    def remote_extras(
        self, task: str, extras: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        # spark_env_vars cover a task cluster; serverless only gets what travels in extras.
        out = {**extras, ENV_KEY: {**self.spark_env_vars(), **(env or {})}}
        if not self.cluster.serverless:
            # Ray on Spark spans the task cluster's workers; a task may pass its own sizing.
            out.setdefault(
                RAY_ON_SPARK_KEY,
                {
                    "min_worker_nodes": self.cluster.min_workers,
                    "max_worker_nodes": self.cluster.max_workers,
                    "num_gpus_worker_node": None if task in self.gpu_tasks else 0,
                },
            )
        return out

    # -- running --------------------------------------------------------------------------

    def pipes_client(self, workspace_client) -> PipesDatabricksClient | PipesDatabricksServerlessClient:
        if self.cluster.serverless:
            volume = self.cluster.pipes_volume_path
            if not volume:
                raise ProfileError("serverless compute needs databricks.pipes_volume_path")
            return _ServerlessPipesClient(
                client=workspace_client,
                volume_path=volume,
                message_reader=PipesUnityCatalogVolumesMessageReader(
                    client=workspace_client,
                    volume_path=volume,
                    interval=self.message_poll_interval_seconds,
                ),
                poll_interval_seconds=self.poll_interval_seconds,
            )
        return _ClusterPipesClient(
            client=workspace_client,
            # stdout/stderr travel as Pipes messages, so no cluster log delivery is needed.
            message_reader=PipesDbfsMessageReader(
                client=workspace_client,
                interval=self.message_poll_interval_seconds,
                include_stdio_in_messages=True,
            ),
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def run(self, context, task, extras=None, env=None) -> PipesClientCompletedInvocation:
        _, extras, env = self._checked(task, extras, env)
        creds = self.credentials
        # Importing dagster_databricks sets DATABRICKS_TOKEN="" when it is unset, and an
        # empty token would silently fall back to the SDK's default auth chain.
        if not (creds.host and (creds.token or creds.azure_credentials)):
            raise credentials_error(self.cluster.auth)
        workspace_client = creds.get_client().workspace_client
        return self.pipes_client(workspace_client).run(
            context=context,
            extras=self.remote_extras(task, extras, env),
            task=self.submit_task(task, env),
            submit_args=self.submit_args(context, task),
        )


def compute_for_profile(profile: Profile) -> ComputeResource:
    """The compute resource a profile asks for (used by ``definitions.py``)."""
    if profile.is_local:
        return LocalCompute(profile=profile.name, ray_address=profile.ray_address)
    if profile.databricks is None:
        raise ProfileError(f"profile {profile.name!r} has compute: databricks but no databricks: block")
    settings = profile.databricks
    if settings.serverless and not settings.pipes_volume_path:
        raise ProfileError(
            f"profile {profile.name!r}: serverless compute needs databricks.pipes_volume_path"
        )
    return DatabricksCompute(
        profile=profile.name,
        cluster=DatabricksClusterConfig(**settings.model_dump()),
        credentials=credentials_for(settings.auth),
        wheel_version=project_version(),
    )
