"""Profiles: the same code promoted through local → sit → uat → prod, only config differs.

A profile is a YAML file in ``rayml_assets/profiles/``. Values may reference
``${RAYML_HOME}`` (the local stack's root folder) or any other environment
variable; secrets are never written in a profile, they come from ``EnvVar``.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROFILES_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "local"


class ProfileError(ValueError):
    """A profile name is unknown or its file is malformed."""


class DatabricksSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spark_version: str = "16.4.x-gpu-ml-scala2.12"
    node_type_id: str = "Standard_DS3_v2"
    gpu_node_type_id: str = "Standard_NC6s_v3"
    min_workers: int = 1
    max_workers: int = 2
    serverless: bool = False
    workspace_wheel_dir: str = "/Workspace/Shared/rayml_assets/wheels"
    policy_id: str | None = None
    instance_pool_id: str | None = None
    # How the orchestrator authenticates: a personal access token (DATABRICKS_TOKEN) or an
    # Azure service principal (AZURE_CLIENT_ID/SECRET/TENANT_ID). Only the env var names
    # live here; the values are read by dagster.EnvVar when a run starts.
    auth: Literal["pat", "azure_client_secret"] = "pat"
    # Unity Catalog volume (/Volumes/<catalog>/<schema>/<volume>) for Pipes context and
    # messages; serverless compute has no DBFS, so it is required when serverless is true.
    pipes_volume_path: str | None = None


class AzureMonitorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str
    rule_id: str
    stream_name: str


class Profile(BaseModel):
    """Where the lake, MLflow and compute live for one environment."""

    model_config = ConfigDict(extra="forbid")

    name: str
    lake_root: str
    landing_uri: str
    production_landing_uri: str
    feedback_landing_uri: str
    reports_root: str
    checkpoint_root: str
    mlflow_tracking_uri: str
    mlflow_registry_uri: str
    mlflow_artifact_root: str | None = None
    compute: Literal["local", "databricks"] = "local"
    # How a run executes its steps. None: "in_process" with local compute (one process loads the
    # code location once; the heavy steps are Pipes subprocesses anyway), "multiprocess" with
    # Databricks (steps wait on remote runs, so independent ones overlap).
    executor: Literal["in_process", "multiprocess"] | None = None
    sample_fraction: float = Field(1.0, gt=0.0, le=1.0)
    search_space: Literal["small", "full"] = "full"
    taxonomy: list[str] | None = None
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    databricks: DatabricksSettings | None = None
    azure_monitor: AzureMonitorSettings | None = None

    @property
    def is_local(self) -> bool:
        return self.compute == "local"

    @property
    def run_executor(self) -> Literal["in_process", "multiprocess"]:
        return self.executor or ("in_process" if self.is_local else "multiprocess")


def rayml_home() -> Path:
    return Path(os.environ.get("RAYML_HOME", ".rayml")).resolve()


def profile_name() -> str:
    return os.environ.get("RAYML_PROFILE", DEFAULT_PROFILE)


def _expand(value, env: dict[str, str]):
    if isinstance(value, str):
        return string.Template(value).safe_substitute(env)
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    return value


def load_profile(name: str | None = None) -> Profile:
    name = name or profile_name()
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ProfileError(f"unknown RAYML_PROFILE {name!r}; known profiles: {known}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"profile {path} must be a mapping, got {type(raw).__name__}")
    env = {**os.environ, "RAYML_HOME": str(rayml_home())}
    try:
        return Profile(name=name, **_expand(raw, env))
    except (ValidationError, TypeError) as exc:
        raise ProfileError(f"profile {path} is malformed: {exc}") from exc
