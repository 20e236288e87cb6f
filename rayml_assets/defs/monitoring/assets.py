"""Daily monitoring of the champion: predictions → data_drift_report / model_drift_report, and shap_report.

Each asset pins the champion's exact model version at materialization time,
builds its task script's typed parameters (``lib/monitoring/contract.py``) and
runs the script (``drift_task.py``, ``explain_task.py``) through the compute
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
from pydantic import Field

from rayml_assets.defs.common import keys
from rayml_assets.defs.common.partitions import DAILY
from rayml_assets.defs.monitoring.checks import NO_DATA_DRIFT, NO_MODEL_DEGRADATION, with_drift_check
from rayml_assets.lib.common.contract import ChampionRef
from rayml_assets.lib.monitoring.contract import (
    DataDriftStep,
    DriftConfig,
    DriftStep,
    DriftTaskParams,
    ExplainConfig,
    ExplainTaskParams,
    ModelDriftStep,
    PredictStep,
)
from rayml_assets.resources.compute import ComputeResource
from rayml_assets.resources.mlflow import MlflowResource
from rayml_assets.resources.storage import LakeResource, LandingResource, WorkspaceResource

MONITORING_GROUP = "monitoring"


def pinned_champion(mlflow_store: MlflowResource) -> ChampionRef:
    """Resolve the 'champion' alias to its version now, so a run uses one exact model throughout."""
    from mlflow.exceptions import MlflowException  # mlflow loads in the step, not with the code location

    try:
        version = mlflow_store.settings().client().get_model_version_by_alias(mlflow_store.model_name, "champion")
    except MlflowException as exc:
        raise Failure(
            description=f"no model has the alias 'champion' in {mlflow_store.model_name!r} yet: "
            "materialize registered_model and champion_model first",
            metadata={"mlflow_error": str(exc)[:500]},
        ) from exc
    return ChampionRef(
        model_uri=f"models:/{mlflow_store.model_name}/{version.version}",
        model_name=mlflow_store.model_name,
        model_version=str(version.version),
        mlflow_run_id=version.run_id,
    )


class DriftConfigOverrides(Config):
    p_val: Optional[float] = Field(None, description="Significance level of the whole report, split across its tests (default 0.05)")
    n_permutations: Optional[int] = Field(None, description="Permutations of the MMD test (default 100)")
    reference_size: Optional[int] = Field(None, description="Training-split images in the reference sample")

    def drift_config(self) -> DriftConfig:
        return DriftConfig(**{k: v for k, v in self.model_dump().items() if v is not None})


def daily_asset(**kwargs):
    """A daily-partitioned monitoring asset that one run can backfill over a range of days."""
    return asset(partitions_def=DAILY, backfill_policy=BackfillPolicy.single_run(), group_name=MONITORING_GROUP, **kwargs)


def _run_drift_step(
    context: AssetExecutionContext,
    compute: ComputeResource,
    step: DriftStep,
    lake_store: LakeResource,
    mlflow_store: MlflowResource,
) -> MaterializeResult:
    params = DriftTaskParams(
        step=step,
        # Dates go in explicitly: Dagster 1.13 passes a partition *range* to Pipes only when the
        # step also has a single partition key, so a single-run backfill would arrive without them.
        dates=list(context.partition_keys),
        champion=pinned_champion(mlflow_store),
        mlflow=mlflow_store.settings(),
        lake=lake_store.settings(),
        asset_key=context.asset_key.to_user_string(),
    )
    return compute.run(context, task="drift", extras=params.to_extras()).get_materialize_result()


@daily_asset(
    key=keys.PREDICTIONS,
    deps=[keys.CHAMPION_MODEL, keys.PRODUCTION_LANDING],
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
    step = PredictStep(production_root=landing.production_uri)
    return _run_drift_step(context, compute, step, lake_store, mlflow_store)


@daily_asset(
    key=keys.DATA_DRIFT_REPORT,
    deps=[predictions],
    kinds={"pytorch"},
    check_specs=[NO_DATA_DRIFT],
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
    step = DataDriftStep(reports_root=workspace.reports_root, drift=config.drift_config())
    return with_drift_check(NO_DATA_DRIFT, _run_drift_step(context, compute, step, lake_store, mlflow_store))


@daily_asset(
    key=keys.MODEL_DRIFT_REPORT,
    deps=[predictions, keys.FEEDBACK_LANDING],
    kinds={"pytorch"},
    check_specs=[NO_MODEL_DEGRADATION],
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
    step = ModelDriftStep(
        feedback_root=landing.feedback_uri, reports_root=workspace.reports_root, drift=config.drift_config()
    )
    return with_drift_check(NO_MODEL_DEGRADATION, _run_drift_step(context, compute, step, lake_store, mlflow_store))


class ShapConfig(Config):
    per_class: int = Field(2, description="Correctly classified examples explained per class")
    top_misclassified: int = Field(8, description="Most confident mistakes explained")


@asset(
    key=keys.SHAP_REPORT,
    deps=[keys.CHAMPION_MODEL],
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
    params = ExplainTaskParams(
        champion=pinned_champion(mlflow_store),
        mlflow=mlflow_store.settings(),
        reports_root=workspace.reports_root,
        explain=ExplainConfig(per_class=config.per_class, top_misclassified=config.top_misclassified),
        storage=workspace.storage_settings(),
    )
    return compute.run(context, task="explain", extras=params.to_extras()).get_materialize_result()
