"""The checked-in cloud profiles are exactly what `make profiles` generates from Terraform's outputs.

`deploy/terraform-outputs/<env>.json` is the environment's `terraform output -json` (samples until
a real apply replaces them: the IDs are made up, every name follows from the tfvars and the
modules' naming). The profiles used to be written by hand and had drifted: no cluster policy
or pool (the pipeline principal may only create policy clusters), another wheel folder, a
relative experiment and a one-level model name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayml_assets import settings
from rayml_assets.profile_from_terraform import REQUIRED_OUTPUTS, profile_from_outputs, render
from rayml_assets_tests.infra.test_terraform import ENVS, ROOT, ROOT_MODULE, _blocks, _iac, _tfvars

OUTPUTS = ROOT / "deploy" / "terraform-outputs"
PROFILES = ROOT / "rayml_assets" / "profiles"
DIGITS = [str(d) for d in range(10)]  # the cloud profiles serve the bundled digits (Makefile TAXONOMY)


def _outputs(env: str) -> dict:
    return json.loads((OUTPUTS / f"{env}.json").read_text())


@pytest.fixture(scope="module")
def hcl() -> dict[str, dict]:
    return _iac("parse")


@pytest.mark.parametrize("env", ENVS)
def test_the_checked_in_profile_is_what_the_generator_makes(env):
    generated = render(profile_from_outputs(env, _outputs(env), DIGITS), _outputs(env))
    assert (PROFILES / f"{env}.yaml").read_text() == generated, f"run `make profiles`: {env}.yaml was edited by hand"


@pytest.mark.parametrize("env", ENVS)
def test_the_outputs_follow_from_the_environments_terraform(hcl, env):
    outputs = {name: output["value"] for name, output in _outputs(env).items()}
    assert outputs.keys() == dict(_blocks(hcl, ROOT_MODULE, "output")).keys()
    assert REQUIRED_OUTPUTS <= outputs.keys()
    tfvars = _tfvars(hcl, env)
    compute = outputs["databricks_compute"]
    assert outputs["environment"] == env
    assert compute["spark_version"] == tfvars["spark_version"]
    assert (compute["cpu_node_type_id"], compute["gpu_node_type_id"]) == (
        tfvars["cpu_node_type_ids"][0], tfvars["gpu_node_type_ids"][0]
    )
    assert compute["max_workers"] == tfvars["max_workers"]
    prefix = f"{tfvars['project']}-{env}"
    account = f"{prefix}lake".replace("-", "")[:24]  # modules/storage: account_name
    assert set(outputs["storage_paths"].values()) == {
        f"abfss://{c}@{account}.dfs.core.windows.net/{env}" for c in ("lake", "landing", "reports", "checkpoints", "mlflow")
    }
    catalog = prefix.replace("-", "_")  # modules/access: catalog_name
    assert outputs["unity_catalog"]["registered_model"] == f"{catalog}.ml.image_classifier"
    assert outputs["workspace_dir"] == f"/Shared/{prefix}"
    assert outputs["mlflow_experiment_name"] == f"/Shared/{prefix}/image-classifier"


@pytest.mark.parametrize("env", ENVS)
def test_the_checked_in_profile_submits_policy_clusters_from_the_pool(env, monkeypatch):
    monkeypatch.delenv("RAYML_STORAGE_ACCOUNT", raising=False)  # no longer needed: the names are in the file
    profile = settings.load_profile(env)
    outputs = {name: output["value"] for name, output in _outputs(env).items()}
    compute = outputs["databricks_compute"]
    assert (profile.databricks.policy_id, profile.databricks.instance_pool_id) == (
        compute["policy_id"], compute["instance_pool_id"]
    )
    assert profile.databricks.workspace_wheel_dir == f"/Workspace{outputs['workspace_dir']}/wheels"
    assert profile.mlflow_ui_url == outputs["workspace_url"]  # run links open the workspace's MLflow
    assert profile.mlflow_experiment_name == outputs["mlflow_experiment_name"]
    assert profile.model_name == outputs["unity_catalog"]["registered_model"]
    assert profile.lake_root == outputs["storage_paths"]["lake"]
    assert (profile.storage.auth, profile.storage.account_name) == ("service_principal", f"rayml{env}lake")


def test_a_lake_path_that_is_not_adls_gen2_is_refused_by_name():
    outputs = _outputs("sit")
    outputs["storage_paths"]["value"]["lake"] = "s3://lake/sit"
    with pytest.raises(ValueError, match="storage_paths.lake is 's3://lake/sit'"):
        profile_from_outputs("sit", outputs, DIGITS)
