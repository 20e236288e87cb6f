"""The one entry helper every task script uses instead of a bare ``open_dagster_pipes()``.

    from rayml_assets.lib.common.pipes_runtime import task_runtime

    def main() -> None:
        with task_runtime() as (pipes, ray_address):
            ...  # ray.init(address=ray_address) or a local Ray when it is None
            pipes.report_asset_materialization(metadata={...})

    if __name__ == "__main__":
        main()

It picks the Pipes I/O that matches how the script was launched (see
``rayml_assets.resources.compute`` and ``rayml_assets.resources.databricks_compute``):

- locally (``PipesSubprocessClient``): the default env-var params, temp-file context and
  messages; ``ray_address`` is ``extras["ray"]["address"]`` (None: start a local Ray);
- on a Databricks task cluster (``PipesDatabricksClient``, ``DATABRICKS_RUNTIME_VERSION``
  set): DBFS context and messages, and a Ray cluster started over the Spark workers with
  ``ray.util.spark.setup_ray_cluster`` sized by the ``ray_on_spark`` extra, shut down at
  the end; ``ray_address`` is that cluster;
- on Databricks serverless (``PipesDatabricksServerlessClient``, which passes the Pipes
  bootstrap as CLI arguments): Unity Catalog volume context and messages; serverless has
  no Spark cluster to host Ray and no Ray to join (``DatabricksCompute`` sends no
  address), so ``ray_address`` is None: a Ray inside the task, if it uses one.

Only a task sent a ``ray_on_spark`` extra starts Ray on Spark (``DatabricksCompute.ray_tasks``).

The runtime's own extras (``rayml_env``, ``ray_on_spark``: the keys of
``lib.common.contract``) are removed from ``pipes.extras`` once used, and the Ray on
Spark address is written to ``pipes.extras["ray"]["address"]`` when there is one, so a
script validates ``pipes.extras`` with its strict contract, whose ``ray`` field is a
:class:`~rayml_assets.lib.common.contract.RaySettings`.

An exception in the body is reported to Dagster through Pipes (the asset fails with the
script's message and traceback) and re-raised, so the process exits non-zero.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster_pipes import (
    PipesCliArgsParamsLoader,
    PipesContext,
    PipesDbfsContextLoader,
    PipesDbfsMessageWriter,
    PipesUnityCatalogVolumesContextLoader,
    PipesUnityCatalogVolumesMessageWriter,
    open_dagster_pipes,
)

from rayml_assets.lib.common.contract import ENV_KEY, RAY_KEY, RAY_ON_SPARK_KEY
from rayml_assets.telemetry import disable_telemetry

# ENV_KEY: non-secret env vars sent as extras (serverless tasks take no env vars of their own).
# RAY_KEY: the task's Ray settings (RaySettings); only its ``address`` is filled in here.
ADDRESS = "address"
# The former top-level Ray address key: nothing sets it any more. Kept only while
# lib.common.task_entry.RUNTIME_KEYS still lists it; drop it with that last importer.
RAY_ADDRESS_KEY = "ray_address"


def ray_address(extras: Mapping[str, Any]) -> str | None:
    """``extras["ray"]["address"]``; None (start a local Ray) when either is absent."""
    return (extras.get(RAY_KEY) or {}).get(ADDRESS)


def ray_with_address(extras: Mapping[str, Any], address: str | None, *, override: bool) -> dict[str, Any]:
    """A copy of ``extras["ray"]`` holding ``address``: always with ``override``, else only where none is set."""
    ray = dict(extras.get(RAY_KEY) or {})
    if override or ADDRESS not in ray:
        ray[ADDRESS] = address
    return ray


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def pipes_io() -> dict[str, Any]:
    """Keyword arguments for ``open_dagster_pipes`` that match the launching client."""
    cli = PipesCliArgsParamsLoader()
    # The CLI bootstrap comes first: only the serverless client passes it, and it does not
    # depend on how the serverless runtime names itself in DATABRICKS_RUNTIME_VERSION.
    if cli.is_dagster_pipes_process():
        return {
            "params_loader": cli,
            "context_loader": PipesUnityCatalogVolumesContextLoader(),
            "message_writer": PipesUnityCatalogVolumesMessageWriter(),
        }
    if not on_databricks():
        return {}
    return {
        "context_loader": PipesDbfsContextLoader(),
        "message_writer": PipesDbfsMessageWriter(),
    }


def spark_session():
    """The driver's SparkSession: the DBFS message writer and Ray on Spark both need one,
    and a ``spark_python_task`` script does not get one by itself."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


# Ray on Spark (ray/util/spark/cluster_init.py) refuses one of these without the other:
# set both to size each Ray worker, or neither for one Ray worker per Spark worker with
# all of its CPUs and GPUs.
PAIRED_RAY_ON_SPARK_ARGS = ("num_cpus_worker_node", "num_gpus_worker_node")


def secret_reference(scope_key: str) -> str:
    """The ``{{secrets/<scope>/<key>}}`` reference of a secret-scope entry: Databricks resolves it in a
    task cluster's ``spark_env_vars`` when the cluster starts, so the value is never in the job payload.
    Serverless takes no env vars: :func:`apply_env` reads it there."""
    return "{{secrets/" + scope_key + "}}"


_SECRET_REFERENCE = re.compile(r"\{\{secrets/([^/{}]+)/([^/{}]+)\}\}")


def apply_env(env: Mapping[str, str]) -> None:
    """Set the variables of the extras' env that this process lacks (a serverless task has none of
    its own). A secret reference among them is read from its scope with the runtime's ``dbutils``,
    as Databricks resolves the same reference in a task cluster's ``spark_env_vars``."""
    for name, value in env.items():
        if name in os.environ:
            continue
        reference = _SECRET_REFERENCE.fullmatch(value)
        os.environ[name] = _read_secret(*reference.groups()) if reference else value


def _read_secret(scope: str, key: str) -> str:
    from databricks.sdk.runtime import dbutils  # the notebook context's own on Databricks

    return dbutils.secrets.get(scope=scope, key=key)


def ray_on_spark_auth_env(token_secret: str | None) -> dict[str, str]:
    """The Ray auth variables a task cluster's ``spark_env_vars`` carry to the driver and every executor.

    Ray 2.60 turns token authentication on by default, and a Ray worker node started in an executor
    with another setting than the head on the driver is refused (``InvalidAuthToken``), so both get
    the same: the token from a secret scope (:func:`secret_reference`), or authentication off on the
    run's own single-user cluster.
    """
    if token_secret:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secret_reference(token_secret)}
    return {"RAY_AUTH_MODE": "disabled"}


def check_ray_on_spark(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ``setup_ray_cluster`` keyword arguments of ``spec`` (None values dropped), or a
    ValueError when they break Ray's both-or-neither rule for the per-worker sizes."""
    kwargs = {k: v for k, v in spec.items() if v is not None}
    given = [k for k in PAIRED_RAY_ON_SPARK_ARGS if k in kwargs]
    if len(given) == 1:
        raise ValueError(
            f"ray_on_spark sets {given[0]} alone: Ray on Spark takes "
            f"{' and '.join(PAIRED_RAY_ON_SPARK_ARGS)} together or neither"
        )
    return kwargs


@contextmanager
def ray_on_spark(spec: Mapping[str, Any]) -> Iterator[str]:
    from ray.util.spark import setup_ray_cluster, shutdown_ray_cluster

    address, _ = setup_ray_cluster(**check_ray_on_spark(spec))
    try:
        yield address
    finally:
        shutdown_ray_cluster()


def _ship_logs(pipes) -> None:
    """Send this task's logs to Azure Monitor when its profile configures it (no-op locally)."""
    from rayml_assets.observability.azure_monitor import attach_to_root_logger
    from rayml_assets.settings import load_profile

    run_id = pipes.run_id if isinstance(pipes, PipesContext) else ""
    attach_to_root_logger(load_profile(), run_id=run_id or "")


@contextmanager
def task_runtime() -> Iterator[tuple[PipesContext, str | None]]:
    """Open Pipes for this launch and yield ``(pipes, ray_address)``."""
    disable_telemetry()
    io = pipes_io()
    if isinstance(io.get("message_writer"), PipesDbfsMessageWriter):
        spark_session()
    with open_dagster_pipes(**io) as pipes:
        # Outside Dagster open_dagster_pipes returns a mock; treat it as "no extras".
        extras = pipes.extras if isinstance(pipes, PipesContext) else {}
        # The runtime's own keys are consumed here (the extras dict is the parsed context),
        # so a script's strict contract sees its own parameters (Ray settings included) only.
        apply_env(extras.pop(ENV_KEY, None) or {})
        _ship_logs(pipes)
        spec = extras.pop(RAY_ON_SPARK_KEY, None)
        if on_databricks() and spec:
            with ray_on_spark(spec) as address:
                pipes.log.info(f"Ray on Spark started at {address}")
                extras[RAY_KEY] = ray_with_address(extras, address, override=True)
                yield pipes, address
        else:
            yield pipes, ray_address(extras)
