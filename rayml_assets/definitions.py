"""The code location: every module under ``rayml_assets/defs`` plus the resources the profile selects.

``RAYML_PROFILE`` (default ``local``) picks ``rayml_assets/profiles/<name>.yaml``.
The defs folders are loaded, not hand-listed: an asset, check, job, sensor or
schedule defined at module level in ``defs/<domain>/`` is in the code location.
"""

import importlib
import pkgutil

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    AssetSpec,
    Definitions,
    JobDefinition,
    ScheduleDefinition,
    ExecutorDefinition,
    Field,
    SensorDefinition,
    multi_or_in_process_executor,
)
from dagster._core.definitions.partitions.partitioned_schedule import UnresolvedPartitionedAssetScheduleDefinition
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from rayml_assets import defs as defs_package
from rayml_assets.resources.compute import compute_for_profile
from rayml_assets.resources.mlflow import MlflowResource
from rayml_assets.resources.ray import RayResource
from rayml_assets.resources.storage import DatasetPolicy, LakeResource, LandingResource, WorkspaceResource
from rayml_assets.settings import Profile, load_profile, rayml_home


def resources_for(profile: Profile) -> dict:
    storage = profile.storage.model_dump(exclude_none=True)  # settings and variable names, never values
    return {
        "lake_store": LakeResource(lake_root=profile.lake_root, storage=storage),
        "landing": LandingResource(
            storage=storage,
            images_uri=profile.landing_uri,
            production_uri=profile.production_landing_uri,
            feedback_uri=profile.feedback_landing_uri,
        ),
        "workspace": WorkspaceResource(
            storage=storage,
            reports_root=profile.reports_root,
            scratch_root=str(rayml_home() / "scratch"),
            checkpoint_root=profile.checkpoint_root,
        ),
        "dataset_policy": DatasetPolicy(taxonomy=profile.taxonomy),
        "compute": compute_for_profile(profile),
        "ray_cluster": RayResource(
            address=profile.ray_address,
            num_cpus=profile.ray_num_cpus,
            auth_mode=profile.ray_auth_mode,
            auth_token_path=profile.ray_auth_token_path,
        ),
        "mlflow_store": MlflowResource(
            tracking_uri=profile.mlflow_tracking_uri,
            registry_uri=profile.mlflow_registry_uri,
            artifact_location=profile.mlflow_artifact_root,
            ui_url=profile.mlflow_ui_url,
            experiment_name=profile.mlflow_experiment_name,
            model_name=profile.model_name,
        ),
    }


_KINDS = {
    "assets": (AssetsDefinition, AssetSpec),  # specs: the external landings
    "asset_checks": (AssetChecksDefinition,),
    "jobs": (JobDefinition, UnresolvedAssetJobDefinition),
    "sensors": (SensorDefinition,),
    "schedules": (ScheduleDefinition, UnresolvedPartitionedAssetScheduleDefinition),
}


def load_defs_folder(package=defs_package) -> Definitions:
    """Every definition at module level under ``package``, each once (modules import each other's)."""
    found: dict[str, dict[int, object]] = {kind: {} for kind in _KINDS}
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        for value in vars(importlib.import_module(info.name)).values():
            for kind, types in _KINDS.items():
                # An AssetChecksDefinition is also an AssetsDefinition: the first match decides.
                if isinstance(value, types) and not (kind == "assets" and isinstance(value, AssetChecksDefinition)):
                    found[kind][id(value)] = value
                    break
    return Definitions(**{kind: list(values.values()) for kind, values in found.items()})


def _loggers(profile: Profile) -> dict | None:
    """Azure Monitor log shipping, only in profiles that configure it (docs/infrastructure.md)."""
    if profile.azure_monitor is None:
        return None  # Dagster's default console logger; the Azure SDK is not imported
    from rayml_assets.observability.dagster_logger import dagster_loggers

    return dagster_loggers(profile)


def executor_for(profile: Profile) -> ExecutorDefinition:
    """Dagster's default executor, starting in the profile's mode (``Profile.run_executor``).

    A run can still pick the other mode in the launchpad (``execution: config: multiprocess: {}``).
    """
    default = multi_or_in_process_executor
    return ExecutorDefinition(
        name=default.name,
        config_schema=Field(default.config_schema.as_field().config_type, default_value={profile.run_executor: {}}),
        requirements=default.get_requirements,
        executor_creation_fn=default.executor_creation_fn,
        description=f"multiprocess or in_process; this code location starts in {profile.run_executor} mode",
    )


def build_definitions(profile: Profile) -> Definitions:
    return Definitions.merge(
        load_defs_folder(),
        Definitions(
            resources=resources_for(profile),
            executor=executor_for(profile),
            loggers=_loggers(profile),
        ),
    )


defs = build_definitions(load_profile())
