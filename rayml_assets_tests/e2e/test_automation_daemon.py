"""The automation in a real deployment (code server + webserver + daemon on 127.0.0.1, deploy/dagster.yaml).

Uses ``locations/automation_location.py``: the real landing sensor and raw_images
plus a daily-partitioned probe asset, because the full code location takes about
15 s of CPU to import in every run process (see that module).
"""

import os
import time
from pathlib import Path
from unittest import mock

import pytest

from rayml_assets.lib.common import lake
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest
from rayml_assets.sample import write_batches
from rayml_assets.settings import load_profile
from rayml_assets_tests.support.dagster_stack import DagsterStack, wait_for

INGEST_RUNS = {"pipelineName": "ingest_landing_job"}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rayml_home")


@pytest.fixture(scope="module")
def profile(home):
    with mock.patch.dict(os.environ, {"RAYML_HOME": str(home)}):
        return load_profile("local")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, home):
    root = tmp_path_factory.mktemp("stack")
    # The daemon's sensor loop runs every 5 s at best; a 1 s interval means a tick every loop.
    with DagsterStack(
        root, "rayml_assets_tests.support.locations.automation_location", home,
        RAYML_SENSOR_INTERVAL_SECONDS="1", RAYML_SENSOR_SETTLE_SECONDS="0.5",
    ) as running:
        yield running.start()


def test_daemon_restart_neither_misses_nor_repeats_landing_runs(stack, profile, tmp_path):
    landing = Path(profile.landing_uri)
    write_batches(landing, batches=3, only_batch=0, limit=60)
    stack.wait_for_runs(1, 180, **INGEST_RUNS)

    stack.kill_daemon()
    write_batches(landing, batches=3, only_batch=1, limit=60)  # lands while no daemon runs
    stack.start_daemon()
    stack.wait_for_runs(2, 180, **INGEST_RUNS)

    write_batches(landing, batches=3, only_batch=2, limit=60)  # lands with the restarted daemon
    stack.wait_for_runs(3, 180, **INGEST_RUNS)
    time.sleep(11)  # two more sensor ticks (the daemon's sensor loop runs every 5 s): nothing further may be requested
    runs = stack.runs(**INGEST_RUNS)
    assert len(runs) == 3, [r["tags"] for r in runs]
    assert len({r["tags"]["dagster/run_key"] for r in runs}) == 3
    assert sorted(int(r["tags"]["rayml/new_files"]) for r in runs) == [20, 20, 30], "30 = 20 digits + 10 dirty files"

    policy = IngestPolicy(taxonomy=tuple(profile.taxonomy), workers=1)
    one_shot = ingest(profile.landing_uri, str(tmp_path / "lake"), policy)
    rows = lake.read_at(lake.table_uri(profile.lake_root, lake.RAW_IMAGES), None, ["image_id"]).num_rows
    assert rows == one_shot.total_rows > 60, "incremental ingestion by the daemon == one-shot ingestion"


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status numPartitions } }
}"""


def test_a_backfill_over_a_date_range_runs_once_per_day(stack):
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    launched = stack.graphql(
        LAUNCH_BACKFILL, params={"assetSelection": [{"path": ["daily_probe"]}], "partitionNames": days, "title": "test"}
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def done():
        backfill = stack.graphql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
        return backfill if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    backfill = wait_for(f"backfill {backfill_id}", done, 240, 2, stack.logs)
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS") and backfill["numPartitions"] == len(days), backfill
    runs = stack.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}])
    assert sorted(r["tags"]["dagster/partition"] for r in runs) == days, "one run per partition"
    assert {r["status"] for r in runs} == {"SUCCESS"}
