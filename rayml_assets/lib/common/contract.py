"""The typed contract between an asset and its Pipes task script: the shared parts.

An asset builds one :class:`TaskParams` model (``<domain>/contract.py``) and sends
``params.to_extras()`` as the Pipes extras; the task script validates
``pipes.extras`` with the same model (``Model.from_extras``). Unknown fields are
refused on both sides, so a renamed field fails a unit test, not a cluster run.
The nested settings every task shares (MLflow, Ray, storage) are one model each.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from rayml_assets.lib.common.links import mlflow_artifacts_url, mlflow_run_url
from rayml_assets.lib.common.storage_options import StorageSettings, delta_options
from rayml_assets.lib.common.tables import table_uri

if TYPE_CHECKING:  # mlflow loads only where a client is made
    from mlflow.tracking import MlflowClient

DEFAULT_EXPERIMENT = "rayml_assets"
# The Pipes runtime fills these in (lib.common.pipes_runtime): where Ray is, and non-secret env.
RAY_KEY = "ray"
ENV_KEY = "rayml_env"
RAY_ON_SPARK_KEY = "ray_on_spark"

P = TypeVar("P", bound="Contract")


class Contract(BaseModel):
    """A strict, JSON-serialisable model: what travels as Pipes extras."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_extras(cls: type[P], extras: Mapping[str, Any]) -> P:
        return cls.model_validate(dict(extras))

    def to_extras(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class MlflowSettings(Contract):
    """Where runs and models go. ``ui_url`` only builds links for metadata."""

    tracking_uri: str
    registry_uri: str | None = None
    experiment_name: str = DEFAULT_EXPERIMENT
    artifact_location: str | None = None
    ui_url: str | None = None

    @classmethod
    def local(cls, rayml_home: str | Path, experiment_name: str = DEFAULT_EXPERIMENT) -> MlflowSettings:
        """The local stack: sqlite under ``$RAYML_HOME/mlflow``, artifacts beside it."""
        home = Path(rayml_home).resolve()
        (home / "mlflow").mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{home}/mlflow/mlflow.db"
        return cls(
            tracking_uri=uri, registry_uri=uri, experiment_name=experiment_name, artifact_location=str(home / "mlflow" / "artifacts")
        )

    def client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri or self.tracking_uri)

    def ensure_experiment(self) -> str:
        """The id of ``experiment_name``, created (at ``artifact_location``) when missing."""
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(self.experiment_name, artifact_location=self.artifact_location)

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """The run's page in the UI (``None`` without ``ui_url``); see ``lib.common.links``."""
        return mlflow_run_url(self.ui_url, self.tracking_uri, experiment_id, run_id)

    def artifacts_url(self, experiment_id: str, run_id: str, artifact_path: str | None = None) -> str | None:
        """The run's artifact view, at ``artifact_path`` when given."""
        return mlflow_artifacts_url(self.ui_url, self.tracking_uri, experiment_id, run_id, artifact_path)


class LakeSettings(Contract):
    """Where the Delta tables are. ``storage`` says how to authenticate (variable names, no values);
    ``storage_options`` are further delta-rs options without secrets (``compute.check_no_secrets``
    refuses a secret-named key before anything is sent). The task side resolves both with
    :meth:`delta_options`, reading credentials from its own environment."""

    root: str
    storage: StorageSettings | None = None
    storage_options: dict[str, str] | None = None

    def table_uri(self, table: str) -> str:
        return table_uri(self.root, table)

    def delta_options(self) -> dict[str, str] | None:
        resolved = delta_options(self.storage)
        if resolved is None or not self.storage_options:
            return resolved or self.storage_options
        resolved.update(self.storage_options)
        return resolved


class RaySettings(Contract):
    """Which Ray a task uses: ``address=None`` starts a local one with ``num_cpus`` logical CPUs.

    Joining a cluster (``lib.training.ray_auth``): ``auth_mode`` None means token auth
    when a token is found. ``auth_file`` is the PATH of a file holding the token, never
    the token; not named ``*_token_*`` because ``check_no_secrets`` refuses such keys.
    """

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    auth_mode: Literal["token", "disabled"] | None = None
    auth_file: str | None = None


class ChampionRef(Contract):
    """One exact registered model version, pinned by the asset when its run starts."""

    model_uri: str
    model_name: str
    model_version: str
    mlflow_run_id: str | None = None
