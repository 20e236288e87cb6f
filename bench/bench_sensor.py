"""landing_sensor tick cost at 1,000 vs 100,000 landed files, and latency from landing to run request in ticks.

Prints figures and ratios measured in this run (no timed asserts), for three landing layouts. Goal: a tick
at 100,000 files costs <= 1.5x a tick at 1,000 files. For contrast it times a naive tick that lists the
whole landing (core.landing.list_folder), which grows with it. Latency counts sensor ticks from the
files landing to the RunRequest (one tick finds them, the next, quiet one requests them). Idle ticks
and arrivals are measured after the first scan of the landing has caught up.
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

from rayml_assets.lib.dataset.landing import list_folder  # noqa: E402
from rayml_assets.lib.common.watch import DEFAULT_LIMIT  # noqa: E402
from rayml_assets.defs.dataset.sensors import landing_sensor  # noqa: E402
from rayml_assets.resources.storage import LandingResource  # noqa: E402

LABELS = [str(d) for d in range(10)]
NEW_FILES = 100
BATCH_FOLDERS = 10  # per label, in the batch-folder layout
# Where the files of one layout go: (label, file number) -> relative folder and name.
LAYOUTS = {
    # <label>/<batch>/: each arrival is a new folder (the day folders of production look the same)
    "batch folders": lambda label, i, total: (
        f"{label}/batch_{i * BATCH_FOLDERS * len(LABELS) // total:03d}", f"{i:06d}.png"
    ),
    # <label>/ with names that sort after the old ones (counters, timestamps)
    "flat, appended names": lambda label, i, total: (label, f"{i:06d}.png"),
    # <label>/ with new names among the old ones (rayml_assets.sample's batches, random ids)
    "flat, interleaved names": lambda label, i, total: (label, f"{(i * 7919) % 1_000_003:07d}.png"),
}


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
        self.quiet = result.skip_reason is not None and result.skip_reason.skip_message.startswith("no new files")
        return elapsed, bool(result.run_requests)

    def until_quiet(self, max_ticks: int = 10_000) -> int:
        """Ticks until one finds nothing new and nothing is pending: the watcher has caught up."""
        for ticks in range(1, max_ticks + 1):
            self.tick()
            if self.quiet:
                return ticks
        raise RuntimeError("never quiet")

    def until_requested(self, max_ticks: int = 10_000) -> tuple[int, list[float]]:
        costs = []
        while len(costs) < max_ticks:
            cost, requested = self.tick()
            costs.append(cost)
            if requested:
                return len(costs), costs
        raise RuntimeError("no run requested")


def land(root: Path, layout: str, numbers: range, total: int) -> None:
    for label in LABELS:
        for i in numbers:
            folder, name = LAYOUTS[layout](label, i, total)
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")  # the sensor never reads content


def run(total: int, layout: str, idle_ticks: int) -> dict:
    per_label = total // len(LABELS)
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        landing = Path(tmp) / "landing"
        land(landing, layout, range(per_label), total)
        sensor = Sensor(landing, instance)
        out: dict = {"files": total}
        out["first_request_ticks"], _ = sensor.until_requested()
        out["first_scan_ticks"] = out["first_request_ticks"] + sensor.until_quiet()
        out["idle_ms"] = statistics.median(sensor.tick()[0] for _ in range(idle_ticks)) * 1000
        # A new batch: NEW_FILES more files, numbered after the old ones (a new folder in the batch layout).
        land(landing, layout, range(per_label, per_label + NEW_FILES // len(LABELS)), per_label * len(LABELS) - 1)
        out["arrival_ticks"], costs = sensor.until_requested()
        out["arrival_ms"] = max(costs) * 1000
        start = time.perf_counter()
        list_folder(str(landing))
        out["naive_ms"] = (time.perf_counter() - start) * 1000
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--idle-ticks", type=int, default=30)
    args = parser.parse_args()
    limit = os.environ.get("RAYML_SENSOR_LIMIT", DEFAULT_LIMIT)
    print(f"landing_sensor: {limit} entries per tick, {len(LABELS)} labels, a new batch = {NEW_FILES} files")
    for layout in LAYOUTS:
        small, large = run(args.small, layout, args.idle_ticks), run(args.large, layout, args.idle_ticks)
        print(f"== {layout}")
        for r in (small, large):
            print(
                f"  {r['files']:>7,} files: idle tick {r['idle_ms']:6.2f} ms | "
                f"new batch requested after {r['arrival_ticks']} "
                f"ticks, costliest {r['arrival_ms']:6.2f} ms | first scan: first request after "
                f"{r['first_request_ticks']} ticks, caught up after {r['first_scan_ticks']} | "
                f"naive full listing {r['naive_ms']:7.1f} ms"
            )
        print(
            f"  {args.large:,} vs {args.small:,} files: idle tick {large['idle_ms'] / small['idle_ms']:.2f}x, "
            f"new-batch tick {large['arrival_ms'] / small['arrival_ms']:.2f}x (goal <= 1.5), latency "
            f"{small['arrival_ticks']} -> {large['arrival_ticks']} ticks; "
            f"naive listing {large['naive_ms'] / small['naive_ms']:.0f}x"
        )
    sys.exit(0)
