"""Sensors: new landed files request runs, and confirmed drift requests retraining.

The three file sensors share one mechanism (``core.watch``): each tick reads a
bounded slice of the landing and adds the changed files to a *pending* set per
requested key (a day, or the whole landing). Once a tick finds nothing new (the
scan has caught up and the upload has paused), the pending sets are requested:
new files are requested on the second tick after they land. The cursor (JSON, stored by Dagster, so it survives daemon
restarts) holds the watcher's per-folder marks plus those pending sets. A
run_key is derived from the set of files it covers, so a tick that is evaluated
again after a crash asks for the same run and Dagster drops the repeat.

Tuning, read when the code location loads (sensor interval) or at each tick:
``RAYML_SENSOR_INTERVAL_SECONDS`` (30), ``RAYML_SENSOR_LIMIT`` (entries read per
tick, 1000), ``RAYML_SENSOR_SETTLE_SECONDS`` (2: younger files wait a tick),
``RAYML_DRIFT_RETRAIN_DAYS`` (2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import date, timedelta

from dagster import (
    AssetRecordsFilter,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from rayml_assets.core.production import IMAGE_SUFFIXES, ProductionLandingError, partition_key
from rayml_assets.core.watch import DEFAULT_LIMIT, DEFAULT_SETTLE_S, FileSet, poll, tree_for
from rayml_assets.defs.automation.jobs import (
    DATA_DRIFT_REPORT,
    MODEL_DRIFT_REPORT,
    PREDICTIONS,
    feedback_job,
    ingest_landing_job,
    production_job,
    retrain_job,
)
from rayml_assets.defs.partitions import DAILY
from rayml_assets.resources.storage import LandingResource

INTERVAL_S = int(os.environ.get("RAYML_SENSOR_INTERVAL_SECONDS", "30"))
DEFAULT_RETRAIN_DAYS = 2
EPISODES_KEPT = 50  # drift episodes (first, last day) remembered in the cursor
DRIFT_EVENTS_PER_TICK = 500
_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
WHOLE_LANDING = ""  # the landing sensor's single pending key
MAX_WAIT_TICKS = 5  # ticks new files may wait for a quiet tick


def _env_number(name: str, default: float, cast=float):
    value = cast(os.environ.get(name) or default)
    if value < 0 or (cast is int and value < 1):
        raise ValueError(f"{name}={value} is out of range")
    return value


def retrain_days() -> int:
    """K: consecutive drifted days that request retraining (``RAYML_DRIFT_RETRAIN_DAYS``)."""
    return _env_number("RAYML_DRIFT_RETRAIN_DAYS", DEFAULT_RETRAIN_DAYS, int)


def _in_flight(context: SensorEvaluationContext, job_name: str, partition: str | None = None) -> bool:
    tags = {"dagster/partition": partition} if partition else None
    return bool(context.instance.get_run_ids(RunsFilter(job_name=job_name, statuses=_ACTIVE, tags=tags), limit=1))


# A key_of function maps a changed file's relative path to (pending key, problem):
# a key to request it under, (None, None) to ignore it quietly, (None, problem) to warn.
KeyOf = Callable[[str], tuple[str | None, str | None]]
MakeRequest = Callable[[str, FileSet], RunRequest]


def _file_sensor(
    context: SensorEvaluationContext,
    uri: str,
    key_of: KeyOf,
    job_name: str,
    make_request: MakeRequest,
    run_reads_everything: bool = False,
) -> SensorResult:
    """``run_reads_everything``: a run covers every file there is, not only those found, so it need not
    wait until the watcher has caught up with a long re-read of a big folder."""
    state = json.loads(context.cursor) if context.cursor else {}
    found = poll(
        tree_for(uri),
        state.get("watch"),
        limit=_env_number("RAYML_SENSOR_LIMIT", DEFAULT_LIMIT, int),
        settle_s=_env_number("RAYML_SENSOR_SETTLE_SECONDS", DEFAULT_SETTLE_S),
    )
    pending = {k: FileSet.from_json(v) for k, v in state.get("pending", {}).items()}
    problems, changed = set(), set()
    for change in found.changes:
        key, problem = key_of(change.path)
        if key is not None:
            pending.setdefault(key, FileSet()).add(change)
            changed.add(key)
        elif problem:
            problems.add(problem)
    if problems:
        context.log.warning(f"ignored in {uri}: " + "; ".join(sorted(problems)[:20]))

    # A key is requested after a tick that brought it nothing new, so an upload that spans ticks is
    # one run, not one per tick; but it never waits more than MAX_WAIT_TICKS (a steady trickle).
    waited = {k: state.get("waited", {}).get(k, 0) + 1 for k in pending}
    requests, waiting = [], []
    last_day = DAILY.get_last_partition_key()
    for key in sorted(pending):
        quiet = key not in changed and not found.settling
        if not (found.caught_up or run_reads_everything) or not (quiet or waited[key] > MAX_WAIT_TICKS):
            continue
        if key and key > last_day:
            waiting.append(f"day {key} has not ended")
        elif _in_flight(context, job_name, key or None):
            waiting.append(f"a {job_name} run{' for ' + key if key else ''} is in progress")
        else:
            requests.append(make_request(key, pending.pop(key)))
    cursor = json.dumps({
        "watch": found.cursor,
        "pending": {k: v.to_json() for k, v in pending.items()},
        "waited": {k: waited[k] for k in pending},
    })
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    reasons = [f"{uri} does not exist yet"] if found.missing else []
    if len(waiting) < len(pending):
        reasons.append(f"{sum(v.count for v in pending.values())} new files in {uri}; requesting after a quiet tick")
    reasons += [f"new files wait: {w}" for w in waiting]
    if problems:
        reasons.append(f"ignored in {uri}: " + "; ".join(sorted(problems)[:5]))
    reason = "; ".join(reasons) or f"no new files in {uri}"
    return SensorResult(skip_reason=reason, cursor=cursor)


def _sensor(job, description: str):
    """Every sensor here is on by default (`make dev` watches at once) and ticks every INTERVAL_S."""
    return sensor(
        job=job,
        minimum_interval_seconds=INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description=description,
    )


def _tags(files: FileSet) -> dict[str, str]:
    return {"rayml/new_files": str(files.count), "rayml/first_new_file": files.first[:200]}


@_sensor(
    ingest_landing_job,
    "New or changed files in the image landing request raw_images (which ingests the whole landing).",
)
def landing_sensor(context: SensorEvaluationContext, landing: LandingResource) -> SensorResult:
    return _file_sensor(
        context,
        landing.images_uri,
        lambda path: (WHOLE_LANDING, None),
        ingest_landing_job.name,
        lambda _, files: RunRequest(run_key=f"landing:{files.key}", tags=_tags(files)),
        run_reads_everything=True,  # raw_images ingests the whole landing
    )


def _day(name: str) -> tuple[str | None, str | None]:
    try:
        key = partition_key(name)
    except ProductionLandingError:
        return None, f"{name!r} is not a YYYY-MM-DD day"
    if key < DAILY.get_first_partition_key():
        return None, f"{name!r} is before the first partition {DAILY.get_first_partition_key()}"
    return key, None


def production_day(path: str) -> tuple[str | None, str | None]:
    """``2026-01-05/x.png`` → the day; other files in a day folder are ignored."""
    top, sep, _ = path.partition("/")
    if not sep:
        return None, f"{path!r} is not inside a YYYY-MM-DD/ folder"
    key, problem = _day(top)
    if key is None or not path.lower().endswith(IMAGE_SUFFIXES):
        return None, problem
    return key, None


def feedback_day(path: str) -> tuple[str | None, str | None]:
    """``2026-01-05.csv`` → the day."""
    if "/" in path or not path.endswith(".csv"):
        return None, f"{path!r} is not a top-level YYYY-MM-DD.csv"
    return _day(path.removesuffix(".csv"))


@_sensor(
    production_job,
    "Images in a production YYYY-MM-DD/ folder request that day's predictions and data_drift_report, "
    "once the day has ended (a daily partition exists from the next day on).",
)
def production_sensor(context: SensorEvaluationContext, landing: LandingResource) -> SensorResult:
    return _file_sensor(
        context,
        landing.production_uri,
        production_day,
        production_job.name,
        lambda day, files: RunRequest(run_key=f"production:{day}:{files.key}", partition_key=day, tags=_tags(files)),
    )


def _feedback_request(context: SensorEvaluationContext) -> MakeRequest:
    def make(day: str, files: FileSet) -> RunRequest:
        have_predictions = day in context.instance.get_materialized_partitions(PREDICTIONS)
        return RunRequest(
            run_key=f"feedback:{day}:{files.key}",
            partition_key=day,
            asset_selection=[MODEL_DRIFT_REPORT] if have_predictions else [PREDICTIONS, MODEL_DRIFT_REPORT],
            tags=_tags(files),
        )

    return make


@_sensor(
    feedback_job,
    "A new or changed feedback YYYY-MM-DD.csv requests that day's model_drift_report "
    "(and its predictions, when that partition was never materialized).",
)
def feedback_sensor(context: SensorEvaluationContext, landing: LandingResource) -> SensorResult:
    return _file_sensor(context, landing.feedback_uri, feedback_day, feedback_job.name, _feedback_request(context))


def _truthy(value) -> bool:
    value = getattr(value, "value", value)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _drifted(context: SensorEvaluationContext, day: str, cache: dict[str, bool]) -> bool:
    """Whether the latest materialization of ``data_drift_report[day]`` says ``is_drift``."""
    if day not in cache:
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=DATA_DRIFT_REPORT, asset_partitions=[day]), limit=1
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


@_sensor(
    retrain_job,
    "data_drift_report with is_drift on K consecutive days (RAYML_DRIFT_RETRAIN_DAYS, default 2) "
    "requests retraining, once per episode of consecutive drifted days.",
)
def drift_retrain_sensor(context: SensorEvaluationContext) -> SensorResult:
    state = json.loads(context.cursor) if context.cursor else {}
    found = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=DATA_DRIFT_REPORT, after_storage_id=state.get("after")),
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

