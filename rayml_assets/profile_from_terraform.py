"""Turn an environment's ``terraform output -json`` into its rayml profile.

    terraform -chdir=terraform/root output -json > deploy/terraform-outputs/sit.json  # after apply
    make profiles   # each rayml_assets/profiles/<env>.yaml from deploy/terraform-outputs/<env>.json

``deploy/terraform-outputs/`` keeps each environment's outputs beside the profile made from
them (a test regenerates the profiles and finds them identical); the checked-in ones are
samples whose IDs a real ``terraform apply`` replaces.

Storage paths, Databricks compute and log shipping come from Terraform; how
much data and search each environment trains on is application config and
lives here (``TRAINING``). The result is validated with ``Profile`` before it
is written, so a malformed output never becomes a profile.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from rayml_assets.lib.common.links import adls_location
from rayml_assets.lib.common.storage_options import StorageSettings
from rayml_assets.settings import AzureMonitorSettings, DatabricksSettings, Profile

# sit trains on a sample with a small search space; prod uses everything.
TRAINING: dict[str, dict[str, Any]] = {
    "sit": {"sample_fraction": 0.1, "search_space": "small"},
    "uat": {"sample_fraction": 0.5, "search_space": "small"},
    "prod": {"sample_fraction": 1.0, "search_space": "full"},
}

# The key under which docs/infrastructure.md ("From terraform apply to a first run") stores the
# pipeline principal's client secret in the environment's Key Vault.
PIPELINE_SECRET_KEY = "pipeline-client-secret"

# The outputs of terraform/root/outputs.tf this reads.
REQUIRED_OUTPUTS = frozenset(
    {
        "environment",
        "workspace_url",
        "workspace_dir",
        "pipeline_identity",
        "storage_paths",
        "databricks_compute",
        "logs_ingestion_endpoint",
        "data_collection_rule_immutable_id",
        "logs_stream_name",
        "unity_catalog",
        "mlflow_experiment_name",
        "secret_scope",
    }
)


def _account(abfss_root: str) -> str:
    """``raymlsitlake`` of ``abfss://lake@raymlsitlake.dfs.core.windows.net/sit``."""
    location = adls_location(abfss_root)
    if location is None:
        raise ValueError(f"storage_paths.lake is {abfss_root!r}, not abfss://<container>@<account>.dfs.core.windows.net/<path>")
    return location.account


def profile_from_outputs(env: str, outputs: dict[str, Any], taxonomy: list[str] | None = None) -> Profile:
    """Build ``env``'s profile from ``terraform output -json`` (name -> {value, type, sensitive})."""
    missing = REQUIRED_OUTPUTS - outputs.keys()
    if missing:
        raise ValueError(f"terraform outputs lack {sorted(missing)}; run `terraform apply` in terraform/root with ../envs/{env}/terraform.tfvars")
    values = {name: output["value"] for name, output in outputs.items()}
    if values["environment"] != env:
        raise ValueError(f"these outputs are for {values['environment']!r}, not {env!r}")
    paths = values["storage_paths"]
    compute = values["databricks_compute"]
    return Profile(
        name=env,
        lake_root=paths["lake"],
        landing_uri=f"{paths['landing']}/images",
        production_landing_uri=f"{paths['landing']}/production",
        feedback_landing_uri=f"{paths['landing']}/feedback",
        reports_root=paths["reports"],
        checkpoint_root=f"{paths['checkpoints']}/ray_results",
        mlflow_tracking_uri="databricks",
        mlflow_registry_uri="databricks-uc",
        mlflow_artifact_root=paths["mlflow"],
        # Run links in the metadata open the workspace's MLflow pages (the value DATABRICKS_HOST takes).
        mlflow_ui_url=values["workspace_url"],
        mlflow_experiment_name=values["mlflow_experiment_name"],
        model_name=values["unity_catalog"]["registered_model"],
        compute="databricks",
        ray_address="auto",  # Ray on Spark exports RAY_ADDRESS on the cluster
        taxonomy=taxonomy,
        databricks=DatabricksSettings(
            spark_version=compute["spark_version"],
            node_type_id=compute["cpu_node_type_id"],
            gpu_node_type_id=compute["gpu_node_type_id"],
            max_workers=compute["max_workers"],
            workspace_wheel_dir=f"/Workspace{values['workspace_dir']}/wheels",
            policy_id=compute["policy_id"],
            instance_pool_id=compute["instance_pool_id"],
            # Terraform creates the environment's Entra ID service principal for the pipeline.
            auth="azure_client_secret",
            pipes_volume_path=values["unity_catalog"]["volumes"]["pipes"],
            # Clusters read the pipeline's storage secret from the Key Vault-backed scope, by reference.
            storage_secret_refs={"AZURE_CLIENT_SECRET": f"{values['secret_scope']}/{PIPELINE_SECRET_KEY}"},
        ),
        # The lake and its siblings are read by delta-rs, adlfs, pyarrow and MLflow as the pipeline's principal.
        storage=StorageSettings(auth="service_principal", account_name=_account(paths["lake"])),
        azure_monitor=AzureMonitorSettings(
            endpoint=values["logs_ingestion_endpoint"],
            rule_id=values["data_collection_rule_immutable_id"],
            stream_name=values["logs_stream_name"],
        ),
        **TRAINING[env],
    )


def render(profile: Profile, outputs: dict[str, Any]) -> str:
    """The profile as YAML, headed by the command that made it and the (non-secret) variables its users export."""
    identity = outputs["pipeline_identity"]["value"]
    taxonomy = f" --taxonomy {','.join(profile.taxonomy)}" if profile.taxonomy else ""
    header = (
        f"# {profile.name}: generated from terraform/root (envs/{profile.name}) by\n"
        f"#   python -m rayml_assets.profile_from_terraform --env {profile.name}{taxonomy}"
        f" < deploy/terraform-outputs/{profile.name}.json\n"
        "# Regenerate instead of editing. Credentials never live here; export:\n"
        f"#   DATABRICKS_HOST={outputs['workspace_url']['value']}\n"
        f"#   AZURE_CLIENT_ID={identity['client_id']}\n"
        f"#   AZURE_TENANT_ID={identity['tenant_id']}\n"
        "#   AZURE_CLIENT_SECRET=<the pipeline's secret, from your secret store>\n"
    )
    # `name` comes from the file name when the profile is loaded.
    body = profile.model_dump(exclude={"name"}, exclude_none=True)
    return header + yaml.safe_dump(body, sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, choices=sorted(TRAINING))
    parser.add_argument("--taxonomy", help="comma-separated class labels, e.g. 0,1,2,3,4,5,6,7,8,9")
    args = parser.parse_args(argv)
    outputs = json.load(sys.stdin)
    taxonomy = args.taxonomy.split(",") if args.taxonomy else None
    try:
        profile = profile_from_outputs(args.env, outputs, taxonomy)
    except ValueError as exc:  # pydantic's ValidationError included
        parser.exit(1, f"error: {exc}\n")
    sys.stdout.write(render(profile, outputs))


if __name__ == "__main__":
    main()
