"""Profiles: the same code promoted through local → sit → uat → prod, only config differs.

A profile is a YAML file in ``rayml_assets/profiles/``. Values may reference
``${RAYML_HOME}`` (the local stack's root folder) or any other environment
variable (``${VAR:-default}`` where it may be unset); secrets are never written
in a profile, they come from ``EnvVar``.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rayml_assets.lib.common import secrets
from rayml_assets.lib.common.storage_options import StorageSettings

PROFILES_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "local"
# A user's own profile file, outside the package (same schema; may start with ``extends: local``).
PROFILE_FILE_ENV = "RAYML_PROFILE_FILE"


class ProfileError(ValueError):
    """A profile name is unknown or its file is malformed."""


# "<scope>/<key>" of a Databricks secret-scope entry.
_SECRET_REF = r"^[\w.-]+/[\w.-]+$"


class DatabricksSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spark_version: str = "18.0.x-gpu-ml-scala2.13"  # Databricks Runtime 18 LTS ML (docs/databricks.md)
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
    # Ray on Spark authentication, the same on the driver and every executor (spark_env_vars):
    # "<scope>/<key>" of a secret holding the Ray token (sent as a {{secrets/...}} reference,
    # never the value), or None for RAY_AUTH_MODE=disabled on the run's own task cluster.
    ray_auth_token_secret: str | None = Field(None, pattern=_SECRET_REF)
    # The storage credentials of a task cluster (storage.auth service_principal): variable name ->
    # "<scope>/<key>", e.g. {AZURE_CLIENT_SECRET: rayml-sit-kv/pipeline-client-secret} (the scope of
    # terraform/modules/secrets). Sent as {{secrets/...}} references; the secret is never a value.
    storage_secret_refs: dict[str, str] = {}

    @field_validator("storage_secret_refs")
    @classmethod
    def _refs_not_values(cls, refs: dict[str, str]) -> dict[str, str]:
        # Dagster config takes no constrained mapping types, so the patterns are checked here.
        for name, ref in refs.items():
            if not (re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) and re.fullmatch(_SECRET_REF, ref)):
                raise ValueError(f"storage_secret_refs[{name}] must map a variable name to a scope/key")
        return refs


class AzureMonitorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str
    rule_id: str
    stream_name: str


_UC_NAME = re.compile(r"[^.\s]+\.[^.\s]+\.[^.\s]+")  # catalog.schema.model


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
    # Where a person opens MLflow: runs and models in the metadata link there (local: `make mlflow-ui`;
    # a Databricks workspace URL for its managed MLflow).
    # Cloud profiles: Terraform's workspace_url (profile_from_terraform).
    mlflow_ui_url: str | None = None
    # The experiment of the tuning runs: an absolute workspace path on Databricks (Terraform's
    # mlflow_experiment_name), any name elsewhere.
    mlflow_experiment_name: str = Field("rayml_assets", min_length=1)
    compute: Literal["local", "databricks"] = "local"
    # How a run executes its steps. None: "in_process" with local compute (one process loads the
    # code location once; the heavy steps are Pipes subprocesses anyway), "multiprocess" with
    # Databricks (steps wait on remote runs, so independent ones overlap).
    executor: Literal["in_process", "multiprocess"] | None = None
    sample_fraction: float = Field(1.0, gt=0.0, le=1.0)
    search_space: Literal["small", "full"] = "full"
    # The class labels; None takes the landing's label folders (the default of a user profile file).
    taxonomy: list[str] | None = None
    # The registered model's name in the MLflow registry (catalog.schema.name in Unity Catalog).
    model_name: str = Field("rayml_image_classifier", min_length=1)
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    # Joining a cluster with token auth (docs/training.md): a token FILE path, never the token;
    # the token may also come from RAY_AUTH_TOKEN. None mode: token when a token is found.
    ray_auth_token_path: str | None = None
    ray_auth_mode: Literal["token", "disabled"] | None = None
    databricks: DatabricksSettings | None = None
    # How the lake, landings, reports, checkpoints and MLflow artifacts authenticate: the auth kind,
    # the account and the NAMES of the variables holding credentials (lib.common.storage_options).
    storage: StorageSettings = StorageSettings()
    azure_monitor: AzureMonitorSettings | None = None

    @field_validator("mlflow_ui_url")
    @classmethod
    def _no_empty_url(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _registry_names_fit_their_store(self) -> "Profile":
        # Databricks refuses a relative experiment name and Unity Catalog a model name without
        # catalog and schema: fail when the profile loads, not at the first registration.
        if self.mlflow_tracking_uri.startswith("databricks") and not self.mlflow_experiment_name.startswith("/"):
            raise ValueError(
                f"mlflow_experiment_name {self.mlflow_experiment_name!r} must be an absolute workspace path "
                "(/Shared/... or /Users/...) with the Databricks tracking server"
            )
        if self.mlflow_registry_uri.startswith("databricks-uc") and not _UC_NAME.fullmatch(self.model_name):
            raise ValueError(f"model_name {self.model_name!r} must be catalog.schema.model in Unity Catalog")
        return self

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


# A profile is named, not a path: RAYML_PROFILE=../x must not read a file outside PROFILES_DIR.
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


# ${VAR:-default}: VAR when set, else the default (may be empty), for an optional value such as a link.
_DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}$]*)\}")


def _refuse_secret(var: str, env: dict[str, str], where: str) -> None:
    if secrets.is_secret_name(var) or (var in env and secrets.looks_like_secret(env[var])):
        raise ProfileError(
            f"{where or 'a value'} names ${{{var}}}, a secret: secrets are read through EnvVar "
            "or a secret scope, never written into a profile"
        )


def _defaulted(match: re.Match, env: dict[str, str], where: str) -> str:
    _refuse_secret(match[1], env, where)
    return env.get(match[1], match[2]).replace("$", "$$")  # literal in the ${VAR} pass below


def _expand(value, env: dict[str, str], where: str = ""):
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` filled in; an unset ``${VAR}`` or a
    secret variable is a :class:`ProfileError`."""
    if isinstance(value, str):
        value = _DEFAULTED.sub(lambda m: _defaulted(m, env, where), value)
        template = string.Template(value)
        for var in template.get_identifiers():
            if var not in env:
                raise ProfileError(f"{where or 'a value'} names ${{{var}}}, which is not set in the environment")
            _refuse_secret(var, env, where)
        return template.safe_substitute(env)
    if isinstance(value, list):
        return [_expand(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    return value


def _read(path: Path, seen: tuple[Path, ...] = (), own: dict | None = None) -> dict:
    """A profile file's mapping, with the packaged profile it ``extends`` underneath it;
    ``own`` is applied over the file's keys before that merge (defaults of a user's file)."""
    if path in seen:
        raise ProfileError(f"profile {path} extends itself through {[str(p) for p in seen]}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ProfileError(f"profile file {path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(secrets.redact(f"profile {path} is not valid YAML: {exc}")) from None
    if not isinstance(raw, dict):
        raise ProfileError(f"profile {path} must be a mapping, got {type(raw).__name__}")
    base = raw.pop("extends", None)
    raw = {**(own or {}), **raw}
    if base is None:
        return raw
    return _merged(_read(_packaged_path(str(base)), (*seen, path)), raw)


def _merged(base: dict, override: dict) -> dict:
    """``override`` over ``base``; nested mappings (``databricks``) are merged key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _packaged_path(name: str) -> Path:
    if not _PROFILE_NAME.fullmatch(name):
        raise ProfileError(f"RAYML_PROFILE {name!r} is not a profile name (letters, digits, '_' and '-')")
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ProfileError(f"unknown RAYML_PROFILE {name!r}; known profiles: {known}")
    return path


def load_profile(name: str | None = None) -> Profile:
    """The profile named ``name`` (a packaged one), or without a name the user's file
    (``RAYML_PROFILE_FILE``) when it is set, else the packaged ``RAYML_PROFILE``."""
    user_file = os.environ.get(PROFILE_FILE_ENV)
    if name is None and user_file:
        path = Path(user_file).expanduser()
        # A user's images have their own labels: the digits taxonomy of `extends: local` is not inherited.
        raw = _read(path, own={"taxonomy": None})
        name = str(raw.pop("name", None) or path.stem)
        if not _PROFILE_NAME.fullmatch(name):
            raise ProfileError(f"profile {path}: name {name!r} must be letters, digits, '_' and '-'")
    else:
        name = name or profile_name()
        path = _packaged_path(name)
        raw = _read(path)
    env = {**os.environ, "RAYML_HOME": str(rayml_home())}
    try:
        return Profile(name=name, **_expand(raw, env))
    except ProfileError as exc:
        raise ProfileError(f"profile {path}: {exc}") from None
    except (ValidationError, TypeError) as exc:
        # Pydantic quotes the offending input: a value expanded from the environment must not leak.
        raise ProfileError(secrets.redact(f"profile {path} is malformed: {exc}")) from None
