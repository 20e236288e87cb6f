"""landing_sensor tick cost at 1,000 vs 100,000 landed files, and latency from landing to run request in ticks.

Prints figures and ratios measured in this run (no timed asserts). Goal: a tick at 100,000 files costs
<= 1.5x a tick at 1,000 files, idle and when a new batch lands in its own folder. For contrast it
also times a naive tick that lists the whole landing (core.landing.list_folder), which grows with it.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["RAYML_SENSOR_SETTLE_SECONDS"] = "0"  # files are complete when written; ticks follow at once

from dagster import DagsterInstance, build_sensor_context  # noqa: E402

from rayml_assets.core.landing import list_folder  # noqa: E402
from rayml_assets.core.watch import DEFAULT_LIMIT  # noqa: E402
from rayml_assets.defs.automation.sensors import landing_sensor  # noqa: E402
from rayml_assets.resources.storage import LandingResource  # noqa: E402

LABELS = [str(d) for d in range(10)]
NEW_FILES = 100


def write_files(folder: Path, count: int, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"{prefix}_{i:06d}.png").write_bytes(b"x")  # the sensor never reads content


class Sensor:
    def __init__(self, landing: Path, instance: DagsterInstance):
        self.resource = LandingResource(images_uri=str(landing), production_uri=str(landing), feedback_uri=str(landing))
        self.instance, self.cursor = instance, None

    def tick(self) -> tuple[float, bool]:
        context = build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"landing": self.resource})
        start = time.perf_counter()
        result = landing_sensor(context)
        elapsed = time.perf_counter() - start
        self.cursor = result.cursor
        return elapsed, bool(result.run_requests)

    def until_requested(self, max_ticks: int = 10_000) -> tuple[int, list[float]]:
        costs = []
        while len(costs) < max_ticks:
            cost, requested = self.tick()
            costs.append(cost)
            if requested:
                return len(costs), costs
        raise RuntimeError("no run requested")


def run(total: int, idle_ticks: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        landing = Path(tmp) / "landing"
        for label in LABELS:  # the sample layout: flat <label>/ folders
            write_files(landing / label, total // len(LABELS), "old")
        sensor = Sensor(landing, instance)
        out: dict = {"files": total}
        out["first_scan_ticks"], _ = sensor.until_requested()

        idle = [sensor.tick()[0] for _ in range(idle_ticks)]
        out["idle_tick_ms"] = statistics.median(idle) * 1000

        for label in LABELS:  # a new batch in its own folder: <label>/batch_new/
            write_files(landing / label / "batch_new", NEW_FILES // len(LABELS), "new")
        out["batch_ticks"], costs = sensor.until_requested()
        out["batch_tick_ms"] = max(costs) * 1000

        for label in LABELS:  # the same number of files added to the big flat folders
            write_files(landing / label, NEW_FILES // len(LABELS), "flat")
        out["flat_ticks"], costs = sensor.until_requested()
        out["flat_tick_ms"] = max(costs) * 1000

        start = time.perf_counter()
        for _ in range(3):
            list_folder(str(landing))
        out["naive_tick_ms"] = (time.perf_counter() - start) / 3 * 1000
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--idle-ticks", type=int, default=30)
    args = parser.parse_args()
    limit = os.environ.get("RAYML_SENSOR_LIMIT", DEFAULT_LIMIT)
    print(f"landing_sensor, RAYML_SENSOR_LIMIT={limit} entries per tick, {len(LABELS)} label folders, {NEW_FILES} new files")
    small, large = run(args.small, args.idle_ticks), run(args.large, args.idle_ticks)
    for r in (small, large):
        print(
            f"{r['files']:>7} files: idle tick {r['idle_tick_ms']:.2f} ms | new batch folder: requested after "
            f"{r['batch_ticks']} ticks, costliest {r['batch_tick_ms']:.2f} ms | new files in flat folders: after "
            f"{r['flat_ticks']} ticks, costliest {r['flat_tick_ms']:.2f} ms | first scan {r['first_scan_ticks']} ticks "
            f"| naive full listing {r['naive_tick_ms']:.1f} ms"
        )
    for key, what in (("idle_tick_ms", "idle tick"), ("batch_tick_ms", "new-batch tick"), ("flat_tick_ms", "flat-arrival tick"),
                      ("naive_tick_ms", "naive full-listing tick")):
        goal = " (goal <= 1.5)" if key in ("idle_tick_ms", "batch_tick_ms") else ""
        print(f"{what}: {args.large:,} vs {args.small:,} files = {large[key] / small[key]:.2f}x{goal}")
    print(
        f"latency, new batch folder: {small['batch_ticks']} ticks at {args.small:,} files, {large['batch_ticks']} at "
        f"{args.large:,} (one tick to find, one quiet tick); files added to flat folders: {small['flat_ticks']} vs "
        f"{large['flat_ticks']} ticks (a changed folder is rescanned {limit} entries a tick)"
    )
    sys.exit(0)
