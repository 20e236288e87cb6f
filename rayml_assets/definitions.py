"""The code location: every domain's definitions plus the resources the profile selects.

``RAYML_PROFILE`` (default ``local``) picks ``rayml_assets/profiles/<name>.yaml``.
"""

from dagster import Definitions

from rayml_assets.defs import automation, dataset, monitoring, training
from rayml_assets.observability.azure_monitor import dagster_loggers
from rayml_assets.resources.compute import compute_for_profile
from rayml_assets.resources.mlflow import MlflowResource
from rayml_assets.resources.ray import RayResource
from rayml_assets.resources.storage import DatasetPolicy, LakeResource, LandingResource, WorkspaceResource
from rayml_assets.settings import Profile, load_profile, rayml_home


def resources_for(profile: Profile) -> dict:
    return {
        "lake_store": LakeResource(lake_root=profile.lake_root),
        "landing": LandingResource(
            images_uri=profile.landing_uri,
            production_uri=profile.production_landing_uri,
            feedback_uri=profile.feedback_landing_uri,
        ),
        "workspace": WorkspaceResource(
            reports_root=profile.reports_root,
            scratch_root=str(rayml_home() / "scratch"),
            checkpoint_root=profile.checkpoint_root,
        ),
        "dataset_policy": DatasetPolicy(taxonomy=profile.taxonomy),
        "compute": compute_for_profile(profile),
        "ray_cluster": RayResource(address=profile.ray_address, num_cpus=profile.ray_num_cpus),
        "mlflow_store": MlflowResource(
            tracking_uri=profile.mlflow_tracking_uri,
            registry_uri=profile.mlflow_registry_uri,
            artifact_location=profile.mlflow_artifact_root,
        ),
    }


def build_definitions(profile: Profile) -> Definitions:
    return Definitions.merge(
        dataset.defs,
        training.defs,
        monitoring.defs,
        automation.defs,
        # Azure Monitor log shipping, only in profiles that configure it (docs/infrastructure.md).
        Definitions(resources=resources_for(profile), loggers=dagster_loggers(profile) or None),
    )


defs = build_definitions(load_profile())
