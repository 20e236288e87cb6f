"""Running the compute resources in tests: test assets, a logged materialize, the sit compute.

Shared by ``rayml_assets_tests/common/test_compute.py`` (unit and local runs) and the
Databricks contract tests in ``rayml_assets_tests/databricks``.
"""

# No `from __future__ import annotations`: Dagster reads the assets' context hints at runtime.
from dagster import AssetExecutionContext, DagsterInstance, asset, materialize

from rayml_assets.resources.compute import ComputeResource, project_version
from rayml_assets.resources.databricks_compute import (
    DatabricksClusterConfig,
    DatabricksCompute,
    credentials_for,
)
from rayml_assets.settings import load_profile

# report, fail: rayml_assets_tests/support/pipes_scripts; the Databricks-only ones (a big
# message, a task_entry script) live beside their tests.
TEST_TASKS = "rayml_assets_tests.support.pipes_scripts"
DATABRICKS_TEST_TASKS = "rayml_assets_tests.databricks.tasks"


@asset
def report_asset(context: AssetExecutionContext, compute: ComputeResource):
    return compute.run(context, task="report", extras={"echo": 42}).get_materialize_result()


@asset
def fail_asset(context: AssetExecutionContext, compute: ComputeResource):
    return compute.run(context, task="fail", extras={}).get_materialize_result()


def materialize_logged(asset_def, compute: ComputeResource):
    """Materialize ``asset_def``; returns the result and everything a person sees in the run's log."""
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [asset_def], resources={"compute": compute}, instance=instance, raise_on_error=False
    )
    lines = []
    for entry in instance.all_logs(result.run_id):
        lines.append(entry.user_message)
        error = getattr(entry.dagster_event and entry.dagster_event.event_specific_data, "error", None)
        if error is not None:
            lines.append(error.to_string())
    return result, "\n".join(lines)


def materialized_metadata(result, node: str) -> dict:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def databricks_compute(profile: str = "sit", tasks_package: str = TEST_TASKS, **overrides) -> DatabricksCompute:
    """The profile's Databricks compute over the test tasks, polling fast.

    ``overrides`` are fields of the profile's ``databricks:`` block (``serverless=True``) or
    of the resource (``ray_tasks=[...]``).
    """
    resource_fields = {k: overrides.pop(k) for k in list(overrides) if k in DatabricksCompute.model_fields}
    settings = load_profile(profile).databricks.model_copy(update=overrides)
    return DatabricksCompute(
        profile=profile,
        cluster=DatabricksClusterConfig(**settings.model_dump()),
        credentials=credentials_for(settings.auth),
        wheel_version=project_version(),
        tasks_package=tasks_package,
        poll_interval_seconds=0.1,
        message_poll_interval_seconds=0.1,
        **resource_fields,
    )


class FakeContext:
    """Just enough context for code paths that fail before Pipes starts."""

    run_id = "00000000-0000-0000-0000-000000000000"


class NoNetworkClient:
    """Stands in for a WorkspaceClient where only construction happens."""

    api_client = None
