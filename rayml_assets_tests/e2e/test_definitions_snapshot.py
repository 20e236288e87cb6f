"""What the code location holds, against a checked-in snapshot.

The defs folders are loaded, not hand-listed (``load_defs_folder``), so a definition can
appear or vanish by moving a file, or by being a kind the loader does not recognise.
This pins the loaded asset keys, asset check keys, jobs, sensors and schedules; after an
intended change, rewrite the snapshot and review its diff:

    RAYML_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest -q rayml_assets_tests/e2e/test_definitions_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")
IMPLICIT_JOB_PREFIX = "__ASSET_JOB"  # Dagster's implicit asset jobs


def code_location_snapshot() -> dict[str, list[str]]:
    from rayml_assets.definitions import defs

    repository = defs.get_repository_def()
    graph = repository.asset_graph
    return {
        "assets": sorted(key.to_user_string() for key in graph.get_all_asset_keys()),
        "asset_checks": sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys),
        "jobs": sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith(IMPLICIT_JOB_PREFIX)),
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
        "schedules": sorted(schedule.name for schedule in repository.schedule_defs),
    }


def test_the_code_location_matches_the_snapshot(rayml_home):
    current = code_location_snapshot()
    if os.environ.get("RAYML_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
        pytest.skip(f"rewrote {SNAPSHOT.name}; review its diff")
    expected = json.loads(SNAPSHOT.read_text())
    differences = {
        kind: {
            "missing": sorted(set(expected.get(kind, [])) - set(names)),
            "unexpected": sorted(set(names) - set(expected.get(kind, []))),
        }
        for kind, names in current.items()
    }
    differences = {kind: diff for kind, diff in differences.items() if diff["missing"] or diff["unexpected"]}
    assert not differences, (
        f"the code location differs from {SNAPSHOT.name} (RAYML_UPDATE_SNAPSHOT=1 rewrites it): {differences}"
    )
    assert current.keys() == expected.keys()
