"""Ray as a typed resource: where the tuning task's Ray cluster is.

The task scripts run in their own process (a Pipes subprocess, or a Databricks task),
so this resource does not hold a connection: it hands the task the
:class:`~rayml_assets.lib.common.contract.RaySettings` to join a cluster, or the size
of the local cluster to start. The task starts Ray with telemetry off and shuts it
down when it exits (``rayml_assets.lib.training.tuner.init_ray``).

- ``address=None``: a local Ray in the task process, with ``num_cpus`` logical CPUs.
- ``address="auto"``: join the cluster on this machine (``ray start --head``).
- ``address="head:6379"``: join a cluster's GCS from a machine that can reach it (KubeRay,
  a VM head node); ``ray://head:10001`` goes through Ray Client.

Token authentication (on by default for ``ray start --head``): the task reads the token
from ``RAY_AUTH_TOKEN`` in its environment or from the file ``auth_token_path``; only the
path travels (``lib.training.ray_auth``). On a Databricks task cluster the Pipes runtime
replaces the address with the Ray on Spark cluster it starts (``extras["ray"]["address"]``).
"""

from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field

from rayml_assets.lib.common.contract import RaySettings


class RayResource(ConfigurableResource):
    address: Optional[str] = Field(
        None, description="None: start a local Ray; 'auto', 'host:port' or 'ray://host:port' to join one"
    )
    num_cpus: Optional[int] = Field(None, description="Logical CPUs of a local Ray (may exceed the cores); None: all cores")
    auth_mode: Optional[str] = Field(
        None,
        description="'token' or 'disabled' when joining (the profile's ray_auth_mode); None: token if one is found",
    )
    auth_token_path: Optional[str] = Field(
        None,
        description="File holding the cluster's token, a path and never the token (the profile's ray_auth_token_path)",
    )

    def settings(self) -> RaySettings:
        return RaySettings(
            address=self.address, num_cpus=self.num_cpus, auth_mode=self.auth_mode, auth_file=self.auth_token_path
        )
