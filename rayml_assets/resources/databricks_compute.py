"""Databricks compute: the ``compute`` resource of the ``compute: databricks`` profiles.

:class:`DatabricksCompute` submits a Pipes task script (uploaded by ``rayml_assets.deploy``)
as a one-time Databricks run (``jobs/runs/submit``) with
``dagster_databricks.PipesDatabricksClient`` on a new task cluster, or with
``PipesDatabricksServerlessClient`` on serverless compute, and follows it through Pipes.

This module imports ``dagster_databricks`` and ``databricks.sdk``; only
:func:`rayml_assets.resources.compute.compute_for_profile` (for a Databricks profile),
``rayml_assets.deploy`` and the tests import it.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Mapping
from typing import Any

from dagster import Config, DagsterExecutionInterruptedError, EnvVar, PipesClientCompletedInvocation
from dagster._core.errors import DagsterPipesExecutionError
from dagster_databricks import DatabricksClientResource, PipesDatabricksClient, PipesDbfsMessageReader
from dagster_databricks.pipes import (
    PipesDatabricksServerlessClient,
    PipesUnityCatalogVolumesMessageReader,
)
from dagster_databricks.resources import AzureServicePrincipalCredentials
from databricks.sdk.errors import DatabricksError
from databricks.sdk.mixins.files import DbfsExt
from databricks.sdk.service import compute as dbcompute
from databricks.sdk.service import jobs
from pydantic import Field

from rayml_assets.lib.common.contract import ENV_KEY, RAY_KEY, RAY_ON_SPARK_KEY
from rayml_assets.lib.common.pipes_runtime import check_ray_on_spark, ray_address, ray_on_spark_auth_env, ray_with_address
from rayml_assets.resources.compute import (
    PROJECT_NAME,
    REMOTE_ENV_WHITELIST,
    ComputeResource,
    Context,
    project_version,
    wheel_filename,
    whitelisted_env,
)
from rayml_assets.settings import DatabricksSettings, Profile, ProfileError
from rayml_assets.telemetry import TELEMETRY_OFF

SERVERLESS_ENVIRONMENT_KEY = "rayml"

CREDENTIAL_ENV_VARS = {
    "pat": ("DATABRICKS_HOST", "DATABRICKS_TOKEN"),
    "azure_client_secret": ("DATABRICKS_HOST", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"),
}


class DatabricksCredentialsError(RuntimeError):
    """The environment lacks the Databricks credentials the profile's ``auth`` needs."""


class ServerlessRayAddressError(ValueError):
    """A serverless task was sent a Ray cluster to join; serverless compute has none."""


# "auto" joins the Ray of the machine the task runs on: on a task cluster that is Ray on
# Spark, on serverless there is none, so it is dropped there (the profiles set it).
AUTO_RAY_ADDRESS = "auto"


# ---------------------------------------------------------------------------------------
# where deployed code lives, and credentials: shared with rayml_assets.deploy
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# the resource
# ---------------------------------------------------------------------------------------


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


class _DbfsMessageReader(PipesDbfsMessageReader):
    """Reads each Pipes message chunk whole.

    dagster-databricks 0.29.27 reads a chunk with one ``dbfs.read`` of the API's default
    length (0.5 MB; 1 MB at most), so a larger chunk, which one big metadata value makes,
    arrives cut and does not parse. ``DbfsExt`` reads in 1 MB pieces up to the file's size.
    """

    def __init__(self, *, client, **kwargs):
        super().__init__(client=client, **kwargs)
        self._dbfs = DbfsExt(client.api_client)

    def download_messages_chunk(self, index: int, params) -> str | None:
        try:
            with self._dbfs.download(posixpath.join(params["path"], f"{index}.json")) as chunk:
                return chunk.read().decode("utf-8")
        except OSError:  # not written yet (NotFound is an OSError), as upstream treats it
            return None


def _runtime_flavour(spark_version: str, gpu: bool) -> str:
    """The GPU or CPU build of the same ML runtime: a GPU runtime will not start on CPU nodes."""
    want, other = ("-gpu-ml-", "-cpu-ml-") if gpu else ("-cpu-ml-", "-gpu-ml-")
    return spark_version.replace(other, want)


class DatabricksCompute(ComputeResource):
    """Submits the task script as a one-time Databricks run and follows it through Pipes.

    The ``WorkspaceClient`` is built from ``credentials`` only inside :meth:`run`, so loading
    the definitions needs no credentials.
    """

    cluster: DatabricksClusterConfig
    credentials: DatabricksClientResource
    wheel_version: str = Field(description="Version of the deployed rayml_assets wheel.")
    gpu_tasks: list[str] = Field(["train"], description="Task scripts that get gpu_node_type_id and the GPU runtime.")
    ray_tasks: list[str] = Field(
        ["train"],
        description="Task scripts that get Ray on Spark over their task cluster; the others "
        "(drift, explain) do not use Ray and start none.",
    )
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
            **whitelisted_env(REMOTE_ENV_WHITELIST),
            **ray_on_spark_auth_env(self.cluster.ray_auth_token_secret),
            "RAYML_PROFILE": self.profile,
        }

    def new_cluster(self, task: str, env: Mapping[str, str] | None = None) -> dbcompute.ClusterSpec:
        c = self.cluster
        gpu = task in self.gpu_tasks
        # A pool fixes the node type, so it serves the CPU tasks; GPU tasks pick their node type.
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

    def ray_on_spark_spec(self, extras: Mapping[str, Any]) -> dict[str, Any]:
        """``setup_ray_cluster`` arguments: the asset's own, else the cluster's autoscale range.

        The default sets no per-worker size, so each Spark worker hosts one Ray worker with
        all its CPUs and GPUs (none on CPU nodes), which suits GPU and CPU clusters alike.
        """
        spec = extras.get(RAY_ON_SPARK_KEY) or {
            "min_worker_nodes": self.cluster.min_workers,
            "max_worker_nodes": self.cluster.max_workers,
        }
        return check_ray_on_spark(spec)  # a bad sizing fails here, not after a cluster start

    def remote_extras(
        self, task: str, extras: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        # spark_env_vars cover a task cluster; serverless only gets what travels in extras.
        out = {**extras, ENV_KEY: {**self.spark_env_vars(), **(env or {})}}
        out.pop(RAY_ON_SPARK_KEY, None)
        if self.cluster.serverless:
            address = ray_address(extras)
            if address not in (None, AUTO_RAY_ADDRESS):
                raise ServerlessRayAddressError(
                    f"task {task!r} runs on Databricks serverless, which cannot join the Ray "
                    f"cluster at {address!r}: use a task cluster (serverless: false) or no ray address"
                )
            if address is not None:
                out[RAY_KEY] = ray_with_address(extras, None, override=True)
        elif task in self.ray_tasks:
            out[RAY_ON_SPARK_KEY] = self.ray_on_spark_spec(extras)
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
            message_reader=_DbfsMessageReader(
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
        remote_extras = self.remote_extras(task, extras, env)
        if self.cluster.serverless and ray_address(extras):
            context.log.warning(
                f"[rayml] {task} runs on serverless, which has no Ray cluster: ray address "
                f"{ray_address(extras)!r} dropped; a Ray in the task is local to its driver"
            )
        workspace_client = creds.get_client().workspace_client
        return self.pipes_client(workspace_client).run(
            context=context,
            extras=remote_extras,
            task=self.submit_task(task, env),
            submit_args=self.submit_args(context, task),
        )


def databricks_compute_for_profile(profile: Profile) -> DatabricksCompute:
    """The :class:`DatabricksCompute` of a ``compute: databricks`` profile."""
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
