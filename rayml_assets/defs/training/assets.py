"""cleaned_images → tuned_model → registered_model → champion_model (thin; the logic is in lib/training).

Only light modules load here (the code location imports this one): the tuning config
and task contract (pydantic), the promotion rules. Ray and torch run in the train
task script; the registry (MLflow, torch) is imported inside ``registered_model``'s step.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import yaml
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from rayml_assets.defs.common import keys
from rayml_assets.defs.common.conditions import upstream_data_changed
from rayml_assets.defs.common.lineage import markdown_table, pinned_version, upstream_metadata
from rayml_assets.defs.dataset.assets import cleaned_images
from rayml_assets.defs.training.checks import CHALLENGER_BEATS_BASELINE, NO_FAILED_TRIALS, check_results
from rayml_assets.lib.training.contract import TrainTaskParams
from rayml_assets.lib.training.promotion import PromotionDecision, decide_promotion, promote
from rayml_assets.lib.training.tuning_config import CONFIGS_DIR, TuningConfig
from rayml_assets.resources.compute import ComputeResource
from rayml_assets.resources.mlflow import MlflowResource
from rayml_assets.resources.ray import RayResource
from rayml_assets.resources.storage import LakeResource, WorkspaceResource
from rayml_assets.settings import load_profile

TRAINING_GROUP = "training"
SEARCH_SPACES = {"full": CONFIGS_DIR / "demo_tuning.yaml", "small": CONFIGS_DIR / "small_tuning.yaml"}


def git_sha() -> Optional[str]:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


class TunedModelConfig(Config):
    tuning_yaml: Optional[str] = Field(
        None,
        description="A TuningConfig as YAML (search_space, num_samples, scheduler, stopper, workers…); "
        "default: the profile's search space, rayml_assets/configs/{demo,small}_tuning.yaml",
    )
    experiment_name: Optional[str] = Field(
        None, description="Tune experiment to create or resume; default: derived from the data version and config"
    )

    def tuning(self) -> TuningConfig:
        profile = load_profile()
        if self.tuning_yaml:
            tuning = TuningConfig.model_validate(yaml.safe_load(self.tuning_yaml))
        else:
            tuning = TuningConfig.from_yaml(SEARCH_SPACES[profile.search_space])
        if "sample_fraction" not in tuning.model_fields_set:
            tuning = tuning.model_copy(update={"sample_fraction": profile.sample_fraction})
        return tuning


@asset(
    key=keys.TUNED_MODEL,
    automation_condition=upstream_data_changed,
    deps=[cleaned_images],
    group_name=TRAINING_GROUP,
    kinds={"ray", "pytorch", "mlflow"},
    check_specs=[NO_FAILED_TRIALS],
    description="AutoML with Ray Tune over Ray Train DDP trials on the pinned cleaned_images version; "
    "an MLflow parent run with one child run per trial and the best model.",
)
def tuned_model(
    context: AssetExecutionContext,
    config: TunedModelConfig,
    compute: ComputeResource,
    lake_store: LakeResource,
    workspace: WorkspaceResource,
    mlflow_store: MlflowResource,
    ray_cluster: RayResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    version = pinned_version(context, cleaned_images.key)
    try:
        tuning = config.tuning()
    except ValueError as exc:
        raise Failure(description=f"invalid tuning config: {exc}") from exc
    params = TrainTaskParams(
        lake=lake_store.settings(),
        cleaned_version=version,
        tuning=tuning,
        mlflow=mlflow_store.settings(),
        ray=ray_cluster.settings(),
        checkpoint_root=workspace.checkpoint_root,
        reports_dir=str(workspace.report_dir()),
        experiment_name=config.experiment_name,
        dagster_run_id=context.run_id,
        asset_key=context.asset_key.to_user_string(),
        git_sha=git_sha(),
    )
    context.log.info(f"tuning on cleaned_images@v{version}: {tuning.num_trials()} trials, scheduler {tuning.scheduler.type}")
    result = compute.run(context, task="train", extras=params.to_extras()).get_materialize_result()
    yield result
    yield from check_results(context, result.metadata or {})


class RegisteredModelConfig(Config):
    promotion_margin: float = Field(
        0.0, description="The challenger must be strictly better than the champion, by at least this much test accuracy"
    )
    baseline_margin: float = Field(
        0.0,
        description="The gate: the challenger must be strictly better than the better classical baseline "
        "(logistic regression or SVC on the same splits), by at least this much test accuracy (>= 0)",
    )
    min_accuracy: Optional[float] = Field(
        None, description="An absolute floor of test accuracy on top of the baseline; none by default"
    )
    baseline_max_train_rows: int = Field(
        10_000, description="The baselines fit on a stable, stratified sample of at most this many train rows"
    )


@asset(
    key=keys.REGISTERED_MODEL,
    automation_condition=upstream_data_changed,
    deps=[tuned_model],
    group_name=TRAINING_GROUP,
    kinds={"mlflow"},
    check_specs=[CHALLENGER_BEATS_BASELINE],
    description="The best tuned model registered in the MLflow registry, evaluated on the test split of its own "
    "Delta version beside a classical baseline fitted on its train split, with the alias 'challenger' and a "
    "promotion decision against the baseline and the champion.",
)
def registered_model(
    context: AssetExecutionContext, config: RegisteredModelConfig, workspace: WorkspaceResource, mlflow_store: MlflowResource
) -> MaterializeResult:
    from rayml_assets.lib.training.registry import register_challenger  # MLflow, torch, sklearn: in this step only
    from rayml_assets.lib.common.previews import plots_preview
    from rayml_assets.lib.training.comparison import plot_accuracies

    tuned = upstream_metadata(context, tuned_model.key)
    report = register_challenger(
        mlflow_store.settings(),
        model_name=mlflow_store.model_name,
        model_uri=tuned["best_model_uri"],
        run_id=tuned["mlflow_run_id"],
        table_uri=tuned["cleaned_table_uri"],
        delta_version=int(tuned["delta_version"]),
        reports_dir=workspace.report_dir("registry"),
        dagster_run_id=context.run_id,
        promotion_margin=config.promotion_margin,
        baseline_margin=config.baseline_margin,
        min_accuracy=config.min_accuracy,
        baseline_max_train_rows=config.baseline_max_train_rows,
        storage=workspace.storage_settings(),
    )
    decision, challenger, baseline = report.decision, report.challenger, report.baseline
    context.log.info(
        f"{report.model_name} v{report.version} ({'new' if report.created else 'existing'} version): "
        f"test accuracy {challenger.accuracy:.4f}; baselines logreg {baseline.logreg_accuracy:.4f}, "
        f"svc {baseline.svc_accuracy:.4f} (fitted on {baseline.train_rows} of {baseline.train_rows_in_split} "
        f"train rows); {decision.reason}"
    )
    per_class = {
        label: f"{challenger.per_class_precision[label]:.3f} / {challenger.per_class_recall[label]:.3f}"
        for label in challenger.class_labels
    }
    comparison = plot_accuracies(
        {f"challenger v{report.version}": challenger.accuracy,
         f"champion v{report.champion_version}": report.champion.accuracy if report.champion else None,
         "baseline logreg": baseline.logreg_accuracy,
         "baseline SVC": baseline.svc_accuracy},
        workspace.report_dir("registry", f"comparison_{report.model_name}_v{report.version}.png"),
        lines={f"to beat: baseline {decision.baseline_model} + baseline_margin {decision.baseline_margin:.3f}":
               decision.baseline_accuracy + decision.baseline_margin,
               "min_accuracy (floor)": decision.min_accuracy},
        storage=workspace.storage_settings(),
    )
    preview = plots_preview(
        {"confusion matrix (test split)": report.confusion_png,
         "challenger against the champion and the baselines": comparison},
        workspace.storage_settings(),
    )
    # Numbers charted across materializations keep their key and float type (see report.baseline_numbers).
    metadata = {
        "preview": MetadataValue.md(preview),
        "model_name": report.model_name,
        "model_version": report.version,
        "model_uri": report.model_uri,
        "version_created": report.created,
        "source_run_id": report.source_run_id,
        "delta_version": report.delta_version,
        "cleaned_table_uri": report.table_uri,
        "test_accuracy": float(challenger.accuracy),
        "test_images": challenger.n,
        "precision_recall_per_class": markdown_table(per_class, "label", "precision / recall"),
        "confusion_matrix": MetadataValue.path(report.confusion_png),
        **report.baseline_numbers(),
        "baseline_model": decision.baseline_model,
        "baseline_train_rows": baseline.train_rows,
        "baseline_train_rows_in_split": baseline.train_rows_in_split,
        "baseline_fit_seconds": float(baseline.logreg_fit_seconds + baseline.svc_fit_seconds),
        "baseline_margin": float(decision.baseline_margin),
        **({"min_accuracy": float(decision.min_accuracy)} if decision.min_accuracy is not None else {}),
        "champion_version": report.champion_version or "none",
        "champion_test_accuracy": float(report.champion.accuracy) if report.champion else -1.0,
        "promotion_margin": float(decision.promotion_margin),
        "should_promote": decision.promote,
        "decision": decision.reason,
    }
    run_url = report.source_experiment_id and mlflow_store.settings().run_url(
        report.source_experiment_id, report.source_run_id
    )
    if run_url:  # the run that logged the model, its evaluation/ and the baseline metrics
        metadata["mlflow_run_url"] = MetadataValue.url(run_url)
    return MaterializeResult(
        metadata=metadata,
        data_version=DataVersion(f"{report.model_name}/{report.version}"),
        check_results=check_results(context, metadata),
    )


def _decision_from(registered: dict) -> PromotionDecision:
    """The decision again, from registered_model's numbers: the rule, not a stored boolean, moves the alias."""
    if "baseline_accuracy" not in registered:
        raise Failure(
            description="registered_model's latest materialization has no baseline (it predates the baseline "
            "gate); materialize registered_model again"
        )
    champion_absent = registered["champion_version"] == "none"
    return decide_promotion(
        float(registered["test_accuracy"]),
        None if champion_absent else float(registered["champion_test_accuracy"]),
        baseline_model=str(registered["baseline_model"]),
        baseline_accuracy=float(registered["baseline_accuracy"]),
        promotion_margin=float(registered["promotion_margin"]),
        baseline_margin=float(registered["baseline_margin"]),
        min_accuracy=float(registered["min_accuracy"]) if "min_accuracy" in registered else None,
    )


@asset(
    key=keys.CHAMPION_MODEL,
    automation_condition=upstream_data_changed,
    deps=[registered_model],
    group_name=TRAINING_GROUP,
    kinds={"mlflow"},
    description="The 'champion' alias. Moves to the challenger only when it beat the better classical baseline by "
    "baseline_margin (and min_accuracy, if set) and the champion by promotion_margin; the blocking check "
    "challenger_beats_baseline on registered_model must pass first.",
)
def champion_model(context: AssetExecutionContext, mlflow_store: MlflowResource) -> MaterializeResult:
    registered = upstream_metadata(context, registered_model.key)
    decision = _decision_from(registered)
    moved = promote(mlflow_store.settings(), registered["model_name"], registered["model_version"], decision)
    champion = registered["model_version"] if moved else registered["champion_version"]
    if champion == "none":
        raise Failure(description=f"no champion: the first challenger was not promoted ({decision.reason})")
    context.log.info(f"champion is v{champion} ({'moved' if moved else 'kept'}: {decision.reason})")
    return MaterializeResult(
        metadata={
            "model_name": registered["model_name"],
            "champion_version": champion,
            "moved": moved,
            "decision": decision.reason,
            "baseline_lift": float(decision.baseline_lift),
            "champion_uri": f"models:/{registered['model_name']}@champion",
        },
        data_version=DataVersion(f"{registered['model_name']}/{champion}"),
    )
