"""CONTRACT-TEST emulation of a Databricks driver running a ``spark_python_task`` -- test only.

``python -m rayml_assets_tests.support.fake_databricks_driver <script.py> [task parameters...]``

Runs the script as Databricks would (as ``__main__``, parameters in ``sys.argv``) after
swapping the things only a real cluster has:

- the DBFS FUSE mount ``/dbfs`` and the Unity Catalog ``/Volumes`` mount -> the fake
  workspace's folders (``FAKE_DBFS_ROOT``, ``FAKE_VOLUMES_ROOT``); a file written there
  appears whole when it is closed, as a FUSE upload does, so a reader on the API side
  never sees half a Pipes message chunk;
- the driver's SparkSession (which ``PipesDbfsMessageWriter`` asks for cluster log
  settings) -> none, cluster log delivery off;
- the runtime's own ``dbutils`` (``databricks.sdk.runtime.dbutils``, authenticated by the notebook
  context) -> the SDK's ``RemoteDbUtils`` on the fake workspace, built from credentials the fake
  hands the driver (``FAKE_DBUTILS_*``) and then removed from the environment, so
  ``dbutils.secrets.get`` goes through the real SDK to the fake's Secrets API;
- ``ray.util.spark.setup_ray_cluster`` / ``shutdown_ray_cluster`` -> recorders appending
  their calls to ``FAKE_RAY_LOG``, so a test can see how Ray on Spark was asked for (a
  stub ``ray.util.spark`` module: a driver here has no Spark for Ray to start on; the
  recorded kwargs go through Ray's own argument checks in the test process, see
  ``real_ray_on_spark_check`` in rayml_assets_tests/databricks/conftest.py). In place of
  the Spark workers, setup starts a real Ray head on this machine (``ray.cluster_utils.Cluster``,
  this machine's CPUs, the run's ``RAY_AUTH_MODE``) and returns its GCS address, so a task
  joins a Ray cluster by address as it does on Databricks; shutdown stops that head. What
  is not emulated: Ray nodes in Spark executors, their sizing and their start time.

It runs in the Python of the fake's ``DriverEnvs``: ``rayml_assets`` is the run's wheel.
Everything else -- the script, ``rayml_assets.lib.common.pipes_runtime``, the real dagster_pipes
loaders and writers -- runs unchanged.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import sys
import tempfile
import types
from contextlib import contextmanager

import dagster_pipes

import rayml_assets.lib.common.pipes_runtime as runtime

RAY_LOG = os.environ["FAKE_RAY_LOG"]


def _dbfs(path: str) -> str:
    return os.path.join(os.environ["FAKE_DBFS_ROOT"], path.lstrip("/"))


def _volumes(path: str) -> str:
    return os.path.join(os.environ["FAKE_VOLUMES_ROOT"], path.removeprefix("/Volumes/"))


class _MountedChannel(dagster_pipes.PipesBufferedFilesystemMessageWriterChannel):
    """The real channel; each chunk lands under its name only once written (see above)."""

    def upload_messages_chunk(self, payload, index: int) -> None:
        final = os.path.join(self._path, f"{index}.json")
        with open(f"{final}.part", "w", encoding="utf-8") as f:
            f.write(payload.read())
        os.replace(f"{final}.part", final)


def _mounted_io(mount):
    """load_context / make_channel of the real classes, reading the mount from ``mount``."""

    @contextmanager
    def load_context(self, params):
        with open(mount(params["path"]), encoding="utf-8") as f:
            yield json.load(f)

    def make_channel(self, params):
        return _MountedChannel(path=mount(params["path"]), interval=self.interval)

    return load_context, make_channel


def _record(event: str, **kwargs) -> None:
    with open(RAY_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps({"event": event, **kwargs}) + "\n")


_heads = []


def _setup_ray_cluster(**kwargs):
    _record("setup", **kwargs)
    from ray.cluster_utils import Cluster

    # A short temp dir: Ray's socket paths must fit in 107 bytes, and /tmp/ray is shared with other Rays.
    head_args = {"num_cpus": max(2, os.cpu_count() or 1), "include_dashboard": False, "temp_dir": tempfile.mkdtemp(prefix="rfd")}
    _heads.append((Cluster(initialize_head=True, head_node_args=head_args), head_args["temp_dir"]))
    return _heads[-1][0].address, None


def _shutdown_ray_cluster():
    _record("shutdown")
    import ray

    ray.shutdown()
    head, temp_dir = _heads.pop()
    head.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


(
    dagster_pipes.PipesDbfsContextLoader.load_context,
    dagster_pipes.PipesDbfsMessageWriter.make_channel,
) = _mounted_io(_dbfs)
(
    dagster_pipes.PipesUnityCatalogVolumesContextLoader.load_context,
    dagster_pipes.PipesUnityCatalogVolumesMessageWriter.make_channel,
) = _mounted_io(_volumes)
dagster_pipes.PipesDbfsMessageWriter.get_opened_extras = lambda self: {}
runtime.spark_session = lambda: None
# Speed only: stdout/stderr capture waits ~2 s per stream for `tee` on close, which is
# nothing on a cluster but most of a contract test's time here.
dagster_pipes.PipesStdioLogWriterChannel.WAIT_FOR_TEE_SECONDS = 0.2
dagster_pipes.PipesDefaultLogWriter.__init__.__defaults__ = (0.2,)
ray_spark = types.ModuleType("ray.util.spark")
ray_spark.setup_ray_cluster = _setup_ray_cluster
ray_spark.shutdown_ray_cluster = _shutdown_ray_cluster
# Imports of ray.util.spark take it from sys.modules; ray and ray.util stay the real ones.
sys.modules["ray.util.spark"] = ray_spark


def _runtime_dbutils() -> types.ModuleType:
    from databricks.sdk.config import Config
    from databricks.sdk.dbutils import RemoteDbUtils

    module = types.ModuleType("databricks.sdk.runtime")
    config = Config(host=os.environ.pop("FAKE_DBUTILS_HOST"), token=os.environ.pop("FAKE_DBUTILS_TOKEN"), auth_type="pat")
    module.dbutils = RemoteDbUtils(config)
    return module


sys.modules["databricks.sdk.runtime"] = _runtime_dbutils()

if __name__ == "__main__":
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
