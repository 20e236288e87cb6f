"""The file-sensor mechanism every landing sensor shares (``lib.common.watch``).

Each tick reads a bounded slice of the landing and adds the changed files to a
*pending* set per requested key (a day, or the whole landing). Once a tick finds
nothing new (the scan has caught up and the upload has paused), the pending sets
are requested: new files are requested on the second tick after they land. The
cursor (JSON, stored by Dagster, so it survives daemon restarts) holds the
watcher's per-folder marks plus those pending sets. A run_key is derived from
the set of files it covers, so a tick that is evaluated again after a crash asks
for the same run and Dagster drops the repeat.

Tuning, read when the code location loads (sensor interval) or at each tick:
``RAYML_SENSOR_INTERVAL_SECONDS`` (30), ``RAYML_SENSOR_LIMIT`` (entries read per
tick, 1000), ``RAYML_SENSOR_SETTLE_SECONDS`` (2: younger files wait a tick).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from dagster import (
    AssetKey,
    AssetObservation,
    DagsterRunStatus,
    MetadataValue,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from rayml_assets.defs.common.partitions import DAILY
from rayml_assets.lib.common.storage_options import StorageSettings
from rayml_assets.lib.common.watch import DEFAULT_LIMIT, DEFAULT_SETTLE_S, FileSet, poll, tree_for

INTERVAL_S = int(os.environ.get("RAYML_SENSOR_INTERVAL_SECONDS", "30"))
_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
MAX_WAIT_TICKS = 5  # ticks new files may wait for a quiet tick


def env_number(name: str, default: float, cast=float):
    value = cast(os.environ.get(name) or default)
    if value < 0 or (cast is int and value < 1):
        raise ValueError(f"{name}={value} is out of range")
    return value


def _in_flight(context: SensorEvaluationContext, job_name: str, partition: str | None = None) -> bool:
    tags = {"dagster/partition": partition} if partition else None
    return bool(context.instance.get_run_ids(RunsFilter(job_name=job_name, statuses=_ACTIVE, tags=tags), limit=1))


# A key_of function maps a changed file's relative path to (pending key, problem):
# a key to request it under, (None, None) to ignore it quietly, (None, problem) to warn.
KeyOf = Callable[[str], tuple[str | None, str | None]]
MakeRequest = Callable[[str, FileSet], RunRequest]


def _observation(landing: AssetKey, uri: str, found, pending: dict[str, FileSet]) -> AssetObservation:
    """What a tick saw in its landing, on the landing's external asset (the UI's graph starts there)."""
    newest = max((c.path for c in found.changes), default="")
    keys_pending = sorted(k for k in pending if k)
    return AssetObservation(
        asset_key=landing,
        metadata={
            "uri": MetadataValue.path(uri),
            "files_found": len(found.changes),
            "files_pending": sum(v.count for v in pending.values()),
            "newest_file": newest,
            **({"newest_day": keys_pending[-1]} if keys_pending else {}),
        },
    )


def file_sensor(
    context: SensorEvaluationContext,
    uri: str,
    key_of: KeyOf,
    job_name: str,
    make_request: MakeRequest,
    landing: AssetKey,
    run_reads_everything: bool = False,
    storage: StorageSettings | None = None,
) -> SensorResult:
    """``landing`` is the external asset the tick's findings are observed on. ``run_reads_everything``:
    a run covers every file there is, not only those found, so it need not wait until the watcher has
    caught up with a long re-read of a big folder."""
    state = json.loads(context.cursor) if context.cursor else {}
    found = poll(
        tree_for(uri, storage),
        state.get("watch"),
        limit=env_number("RAYML_SENSOR_LIMIT", DEFAULT_LIMIT, int),
        settle_s=env_number("RAYML_SENSOR_SETTLE_SECONDS", DEFAULT_SETTLE_S),
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
    observed = [_observation(landing, uri, found, pending)] if found.changes else []

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
        return SensorResult(run_requests=requests, cursor=cursor, asset_events=observed)
    reasons = [f"{uri} does not exist yet"] if found.missing else []
    if len(waiting) < len(pending):
        reasons.append(f"{sum(v.count for v in pending.values())} new files in {uri}; requesting after a quiet tick")
    reasons += [f"new files wait: {w}" for w in waiting]
    if problems:
        reasons.append(f"ignored in {uri}: " + "; ".join(sorted(problems)[:5]))
    reason = "; ".join(reasons) or f"no new files in {uri}"
    return SensorResult(skip_reason=reason, cursor=cursor, asset_events=observed)


def watching_sensor(job, description: str):
    """Every sensor here is on by default (`make dev` watches at once) and ticks every INTERVAL_S."""
    return sensor(
        job=job,
        minimum_interval_seconds=INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description=description,
    )


def file_tags(files: FileSet) -> dict[str, str]:
    return {"rayml/new_files": str(files.count), "rayml/first_new_file": files.first[:200]}


