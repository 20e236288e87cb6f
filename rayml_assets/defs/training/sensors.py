"""Drift → retrain: confirmed data drift requests retraining (this automation lives with its target).

``RAYML_DRIFT_RETRAIN_DAYS`` (2): consecutive drifted days that request a retrain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta

from dagster import AssetRecordsFilter, RunRequest, SensorEvaluationContext, SensorResult

from rayml_assets.defs.common import keys
from rayml_assets.defs.common.file_sensor import env_number, watching_sensor
from rayml_assets.defs.training.jobs import retrain_job

DEFAULT_RETRAIN_DAYS = 2
EPISODES_KEPT = 50  # drift episodes (first, last day) remembered in the cursor
DRIFT_EVENTS_PER_TICK = 500


def retrain_days() -> int:
    """K: consecutive drifted days that request retraining (``RAYML_DRIFT_RETRAIN_DAYS``)."""
    return env_number("RAYML_DRIFT_RETRAIN_DAYS", DEFAULT_RETRAIN_DAYS, int)


def _truthy(value) -> bool:
    value = getattr(value, "value", value)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _drifted(context: SensorEvaluationContext, day: str, cache: dict[str, bool]) -> bool:
    """Whether the latest materialization of ``data_drift_report[day]`` says ``is_drift``."""
    if day not in cache:
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=keys.DATA_DRIFT_REPORT, asset_partitions=[day]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        cache[day] = bool(materialization) and _truthy(materialization.metadata.get("is_drift"))
    return cache[day]


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def drift_windows(days: list[str], k: int, drifted: Callable[[str], bool]) -> list[tuple[str, ...]]:
    """Every run of ``k`` consecutive drifted days that contains one of ``days``, oldest first."""
    windows = set()
    for day in days:
        for start in range(-(k - 1), 1):
            window = tuple(_shift(day, start + i) for i in range(k))
            if all(drifted(d) for d in window):
                windows.add(window)
    return sorted(windows)


@watching_sensor(
    retrain_job,
    "data_drift_report with is_drift on K consecutive days (RAYML_DRIFT_RETRAIN_DAYS, default 2) "
    "requests retraining, once per episode of consecutive drifted days.",
)
def drift_retrain_sensor(context: SensorEvaluationContext) -> SensorResult:
    state = json.loads(context.cursor) if context.cursor else {}
    found = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=keys.DATA_DRIFT_REPORT, after_storage_id=state.get("after")),
        limit=DRIFT_EVENTS_PER_TICK,
        ascending=True,
    )
    after = max([r.storage_id for r in found.records], default=state.get("after"))
    touched = sorted({r.asset_materialization.partition for r in found.records if r.asset_materialization.partition})
    episodes = [list(e) for e in state.get("episodes", [])]
    cache: dict[str, bool] = {}
    requests = []
    for window in drift_windows(touched, retrain_days(), lambda d: _drifted(context, d, cache)):
        start, end = window[0], window[-1]
        # Drifted days in a row are one episode: a window touching a requested one extends it, no new retrain.
        near = [e for e in episodes if e[0] <= _shift(end, 1) and _shift(start, -1) <= e[1]]
        if near:
            near[0][:] = [min(near[0][0], start), max(near[0][1], end)]
            continue
        episodes.append([start, end])
        requests.append(
            RunRequest(
                run_key=f"retrain:data_drift:{start}:{end}",
                tags={"rayml/retrain_reason": "data_drift", "rayml/drift_partitions": ",".join(window)},
            )
        )
    cursor = json.dumps({"after": after, "episodes": sorted(episodes)[-EPISODES_KEPT:]})
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    reason = f"no new drift window of {retrain_days()} days in {len(found.records)} new reports"
    return SensorResult(skip_reason=reason, cursor=cursor)

