"""MLflow as one typed resource.

We wrap MLflow ourselves instead of using dagster-mlflow 0.29.27: that package is a
legacy ``@resource`` with an untyped ``mlflow_tracking`` config, it starts one
fluent MLflow run per Dagster *run* in the resource's set-up, and its
``end_mlflow_on_run_finished`` hook ends that run after the last op in topological
order, which misfires when only a subset of assets is materialized. Our runs are
per *asset* (a tuning parent run, one version per registration) and are created
inside the Pipes task scripts, which may run on Databricks, so the resource only
carries *where* MLflow is; see docs/training.md.
"""

from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field

from rayml_assets.lib.common.contract import MlflowSettings


class MlflowResource(ConfigurableResource):
    tracking_uri: str = Field(description="sqlite:///… locally, 'databricks' on a workspace")
    registry_uri: Optional[str] = Field(None, description="Model registry; 'databricks-uc' for Unity Catalog")
    artifact_location: Optional[str] = Field(None, description="Artifact root for new experiments (abfss:// in the cloud)")
    experiment_name: str = Field("rayml_assets", description="Experiment of the tuning runs")
    model_name: str = Field("rayml_image_classifier", description="Registered model name (catalog.schema.name on UC)")
    ui_url: Optional[str] = Field(None, description="Base URL of the MLflow UI, for links in metadata (make mlflow-ui)")

    def settings(self) -> MlflowSettings:
        return MlflowSettings(
            tracking_uri=self.tracking_uri,
            registry_uri=self.registry_uri,
            experiment_name=self.experiment_name,
            artifact_location=self.artifact_location,
            ui_url=self.ui_url,
        )
