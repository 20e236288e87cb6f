"""CONTRACT TESTS: the emulated driver runs the deployed wheel, not the repository.

A task cluster imports ``rayml_assets`` from the wheel its ``libraries`` name; the fake's
driver does the same (``support/fake_databricks_envs.py``), so a task script that works here
only because some module is in the checkout but not in the wheel fails here too.
"""

from pathlib import Path

import pytest
from dagster import AssetExecutionContext, asset

from rayml_assets.resources.compute import ComputeResource
from rayml_assets_tests.support.compute_runs import (
    DATABRICKS_TEST_TASKS,
    databricks_compute,
    materialize_logged,
    materialized_metadata,
)

pytestmark = pytest.mark.contract
REPO = Path(__file__).resolve().parents[2]


@asset
def where_asset(context: AssetExecutionContext, compute: ComputeResource):
    return compute.run(context, task="where", extras={}).get_materialize_result()


def test_contract_the_driver_imports_the_package_from_the_deployed_wheel(fake, deployed, driver_envs):
    """CONTRACT: rayml_assets comes from the wheel installed in the driver's environment, nothing from the checkout."""
    result, text = materialize_logged(where_asset, databricks_compute(tasks_package=DATABRICKS_TEST_TASKS))
    assert result.success, text
    meta = materialized_metadata(result, "where_asset")
    env = driver_envs.env_for([fake.workspace(deployed.wheel)])
    assert Path(meta["package_file"]).is_relative_to(driver_envs.site_packages(env)), meta["package_file"]
    assert Path(meta["executable"]).parent == env / "bin"
    assert not Path(meta["cwd"]).is_relative_to(REPO)
    assert meta["pythonpath"] == ""
    # The runtime's libraries come from the test interpreter's site-packages, the repository from nowhere.
    assert not any(Path(p or ".").resolve() == REPO for p in meta["sys_path"].split(":")), meta["sys_path"]
