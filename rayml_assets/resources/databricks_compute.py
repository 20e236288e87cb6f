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

from dagster import Config, EnvVar, PipesClientCompletedInvocation
from dagster_databricks import DatabricksClientResource, PipesDatabricksClient
from dagster_databricks.pipes import (
    PipesDatabricksServerlessClient,
    PipesUnityCatalogVolumesMessageReader,
)
from dagster_databricks.resources import AzureServicePrincipalCredentials
from databricks.sdk.service import compute as dbcompute
from databricks.sdk.service import jobs
from pydantic import Field

from rayml_assets.lib.common.contract import ENV_KEY, RAY_KEY, RAY_ON_SPARK_KEY
from rayml_assets.lib.common.pipes_runtime import (
    check_ray_on_spark,
    ray_address,
    ray_on_spark_auth_env,
    ray_with_address,
    secret_reference,
)
from rayml_assets.lib.common.storage_options import StorageSettings
from rayml_assets.resources.compute import (
    PROJECT_NAME,
    REMOTE_ENV_WHITELIST,
    ComputeResource,
    Context,
    project_version,
    wheel_filename,
    whitelisted_env,
)
from rayml_assets.resources.databricks_pipes import ClusterPipesClient, DbfsMessageReader, ServerlessPipesClient
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


class StorageConfig(Config, StorageSettings):
    """The profile's ``storage:`` block, as Dagster config: names only, no values."""


def storage_cluster_env(storage: StorageSettings, refs: Mapping[str, str]) -> dict[str, str]:
    """The storage variables of a task cluster's ``spark_env_vars``, under the names the task reads.

    Opt-in through ``databricks.storage_secret_refs``: without it the cluster gets none from here.
    With a service principal the client secret must be a secret-scope reference; the client and
    tenant ids are a reference too where one is named, else the orchestrator's own (not secret)."""
    env = {name: secret_reference(ref) for name, ref in refs.items()}
    if not refs or storage.auth != "service_principal":
        return env
    if storage.key_variable() not in refs:
        raise ProfileError(f"storage auth service_principal on a task cluster needs "
                           f"databricks.storage_secret_refs[{storage.key_variable()}] (a scope/key, never the value)")
    for name in (storage.client_id_var, storage.tenant_id_var):
        if name not in env:
            if not os.environ.get(name):
                raise ProfileError(f"the task cluster's storage needs {name}: set it or name it in storage_secret_refs")
            env[name] = os.environ[name]
    return env


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
    storage: StorageConfig = Field(default_factory=StorageConfig, description="The profile's storage: section.")
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
            **storage_cluster_env(self.storage, self.cluster.storage_secret_refs),
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
            return ServerlessPipesClient(
                client=workspace_client,
                volume_path=volume,
                message_reader=PipesUnityCatalogVolumesMessageReader(
                    client=workspace_client,
                    volume_path=volume,
                    interval=self.message_poll_interval_seconds,
                ),
                poll_interval_seconds=self.poll_interval_seconds,
            )
        return ClusterPipesClient(
            client=workspace_client,
            # stdout/stderr travel as Pipes messages, so no cluster log delivery is needed.
            message_reader=DbfsMessageReader(
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
        storage=StorageConfig(**profile.storage.model_dump()),
        credentials=credentials_for(settings.auth),
        wheel_version=project_version(),
    )
