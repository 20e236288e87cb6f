"""Ray as a typed resource: where the tuning job's Ray cluster is.

The job scripts run in their own process (a Pipes subprocess, or a Databricks task),
so this resource does not hold a connection: it hands the job the address to join,
or the size of the local cluster to start. The job starts Ray with telemetry off and
shuts it down when it exits (``rayml_assets.lib.training.tuning.init_ray``).

- ``address=None``: a local Ray in the job process, with ``num_cpus`` logical CPUs.
- ``address="auto"``: join the cluster on this machine (``ray start --head``).
- ``address="ray://head:10001"``: join a remote cluster through Ray Client: this is
  how a user scales out without changing code.
"""

from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field


class RayResource(ConfigurableResource):
    address: Optional[str] = Field(None, description="None: start a local Ray; 'auto' or 'ray://host:port' to join one")
    num_cpus: Optional[int] = Field(None, description="Logical CPUs of a local Ray (may exceed the cores); None: all cores")

    def job_extras(self) -> dict:
        return {"ray_address": self.address, "ray_num_cpus": self.num_cpus}
