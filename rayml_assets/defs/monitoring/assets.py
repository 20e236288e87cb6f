"""Daily monitoring of the champion: predictions → data_drift_report / model_drift_report, and shap_report.

Each asset pins the champion's exact model version at materialization time and
runs its job script (``jobs/drift.py``, ``jobs/explain.py``) through the compute
resource. A single-run backfill policy lets one run (and one CLI command with
``--partition-range``) serve a whole range of days.
"""

from typing import Optional

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    asset,
)
from mlflow.exceptions import MlflowException
from pydantic import Field

from rayml_assets.defs.common import keys
from rayml_assets.defs.common.partitions import DAILY
from rayml_assets.defs.training.assets import champion_model
from rayml_assets.resources.compute import ComputeResource
from rayml_assets.resources.mlflow import MlflowResource
from rayml_assets.resources.storage import LakeResource, LandingResource, WorkspaceResource

MONITORING_GROUP = "monitoring"


def champion_extras(mlflow_store: MlflowResource) -> dict:
    """Resolve the 'champion' alias to its version now, so a run uses one exact model throughout."""
    settings = mlflow_store.settings()
    try:
        version = settings.client().get_model_version_by_alias(mlflow_store.model_name, "champion")
    except MlflowException as exc:
        raise Failure(
            description=f"no model has the alias 'champion' in {mlflow_store.model_name!r} yet: "
            "materialize registered_model and champion_model first",
            metadata={"mlflow_error": str(exc)[:500]},
        ) from exc
    return {
        "model_uri": f"models:/{mlflow_store.model_name}/{version.version}",
        "model_name": mlflow_store.model_name,
        "model_version": str(version.version),
        "mlflow_run_id": version.run_id,
        "tracking_uri": settings.tracking_uri,
        "registry_uri": settings.registry_uri,
    }


class DriftConfigOverrides(Config):
    p_val: Optional[float] = Field(None, description="Significance level of the whole report, split across its tests (default 0.05)")
    n_permutations: Optional[int] = Field(None, description="Permutations of the MMD test (default 100)")
    reference_size: Optional[int] = Field(None, description="Training-split images in the reference sample")

    def as_dict(self) -> Optional[dict]:
        values = {k: v for k, v in self.model_dump().items() if v is not None}
        return values or None


def daily_asset(**kwargs):
    """A daily-partitioned monitoring asset that one run can backfill over a range of days."""
    return asset(partitions_def=DAILY, backfill_policy=BackfillPolicy.single_run(), group_name=MONITORING_GROUP, **kwargs)


def _run_day_task(context, compute, task: str, extras: dict) -> MaterializeResult:
    # Dates go in explicitly: Dagster 1.13 passes a partition *range* to Pipes only when the
    # step also has a single partition key, so a single-run backfill would arrive without them.
    extras = {"task": task, "asset_key": context.asset_key.to_user_string(), "dates": list(context.partition_keys), **extras}
    return compute.run(context, task="drift", extras=extras).get_materialize_result()


@daily_asset(
    key=keys.PREDICTIONS,
    deps=[champion_model],
    kinds={"delta", "pytorch"},
    description="Batch inference by the champion (pinned version) over each day's production images, "
    "in a Delta table: image_id, date, model_version, predicted label and class probabilities.",
)
def predictions(
    context: AssetExecutionContext,
    compute: ComputeResource,
    lake_store: LakeResource,
    landing: LandingResource,
    mlflow_store: MlflowResource,
) -> MaterializeResult:
    return _run_day_task(
        context, compute, "predictions",
        {"lake_root": lake_store.lake_root, "production_root": landing.production_uri, **champion_extras(mlflow_store)},
    )


@daily_asset(
    key=keys.DATA_DRIFT_REPORT,
    deps=[predictions],
    kinds={"pytorch"},
    description="Data drift of the day's production images against the training reference: alibi-detect MMD on "
    "champion embeddings plus a label-free test on predictions; plots and an HTML report.",
)
def data_drift_report(
    context: AssetExecutionContext,
    config: DriftConfigOverrides,
    compute: ComputeResource,
    lake_store: LakeResource,
    workspace: WorkspaceResource,
    mlflow_store: MlflowResource,
) -> MaterializeResult:
    return _run_day_task(
        context, compute, "data_drift",
        {"lake_root": lake_store.lake_root, "reports_root": workspace.reports_root,
         "drift_config": config.as_dict(), **champion_extras(mlflow_store)},
    )


@daily_asset(
    key=keys.MODEL_DRIFT_REPORT,
    deps=[predictions],
    kinds={"pytorch"},
    description="Model drift: the day's accuracy from feedback labels against the test-split reference "
    "(Fisher's exact test on correct/incorrect), with accuracy over time and an HTML report.",
)
def model_drift_report(
    context: AssetExecutionContext,
    config: DriftConfigOverrides,
    compute: ComputeResource,
    lake_store: LakeResource,
    landing: LandingResource,
    workspace: WorkspaceResource,
    mlflow_store: MlflowResource,
) -> MaterializeResult:
    return _run_day_task(
        context, compute, "model_drift",
        {"lake_root": lake_store.lake_root, "feedback_root": landing.feedback_uri, "reports_root": workspace.reports_root,
         "drift_config": config.as_dict(), **champion_extras(mlflow_store)},
    )


class ShapConfig(Config):
    per_class: int = Field(2, description="Correctly classified examples explained per class")
    top_misclassified: int = Field(8, description="Most confident mistakes explained")


@asset(
    key=keys.SHAP_REPORT,
    deps=[champion_model],
    group_name=MONITORING_GROUP,
    kinds={"pytorch", "mlflow"},
    description="SHAP attributions of the champion on its test split: per-class examples and the top "
    "misclassified images as PNG grids, a per-class summary, logged to the champion's MLflow run.",
)
def shap_report(
    context: AssetExecutionContext,
    config: ShapConfig,
    compute: ComputeResource,
    workspace: WorkspaceResource,
    mlflow_store: MlflowResource,
) -> MaterializeResult:
    extras = {
        "reports_root": workspace.reports_root,
        "explain_config": {"per_class": config.per_class, "top_misclassified": config.top_misclassified},
        **champion_extras(mlflow_store),
    }
    return compute.run(context, task="explain", extras=extras).get_materialize_result()
