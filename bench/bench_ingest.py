"""Ingest throughput into Delta vs a naive single-process read/hash/verify loop, and re-ingest cost.

Prints ratios measured in this run (higher speedup is better; re-ingest share lower is better).
Goals: speedup >= 1.0x; re-ingest of an unchanged ~5,000-image landing <= 0.05 of the first ingest.
Each ratio is the median over ``--rounds`` rounds of the ratio within a round; a round runs the naive loop, a first ingest into a
fresh lake and two re-ingests back to back, so both sides see the same machine state. The re-ingests
are the default (one stat per folder, the landing's folders having settled) and ``check_every_file``
(one stat per file, as the landing sensor's runs do).
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import synthetic_landing, timed  # noqa: E402

from rayml_assets.lib.common.images import sha256_hex, validate_image  # noqa: E402
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest  # noqa: E402
from rayml_assets.lib.dataset.landing import SETTLE_S  # noqa: E402


def naive_loop(landing: Path) -> int:
    count = 0
    for path in sorted(landing.rglob("*.png")):
        data = path.read_bytes()
        sha256_hex(data)
        validate_image(data)
        count += 1
    return count


def run(count: int, size: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        landing, lake_root = synthetic_landing(Path(tmp) / "landing", count, size), Path(tmp) / "lake"
        time.sleep(SETTLE_S)  # a landing re-ingested by a schedule or CI was written more than seconds before
        times: dict[str, list[float]] = {"naive": [], "ingest": [], "reingest": [], "reingest_every_file": []}
        for _ in range(rounds):
            shutil.rmtree(lake_root, ignore_errors=True)
            t: dict = {}
            with timed(t, "naive"):
                naive_loop(landing)
            with timed(t, "ingest"):
                first = ingest(str(landing), str(lake_root), IngestPolicy())
            with timed(t, "reingest"):
                again = ingest(str(landing), str(lake_root), IngestPolicy())
            with timed(t, "reingest_every_file"):
                checked = ingest(str(landing), str(lake_root), IngestPolicy(check_every_file=True))
            assert first.rows_added == count and again.rows_added == checked.rows_added == 0
            assert (again.landing_check, checked.landing_check) == ("unchanged folders", "unchanged files")
            for name in times:
                times[name].append(t[name])
    median = {name: statistics.median(values) for name, values in times.items()}
    # Ratios are paired within a round (adjacent in time) before the median: the VM's CPU speed drifts
    # between rounds by up to 2x, which would otherwise land on one side of a ratio only.
    def paired(top: str, bottom: str) -> float:
        return statistics.median(a / b for a, b in zip(times[top], times[bottom]))

    return {
        "images": count,
        "size": size,
        "naive_img_per_s": count / median["naive"],
        "ingest_img_per_s": count / median["ingest"],
        "speedup_vs_naive": paired("naive", "ingest"),
        "reingest_share": paired("reingest", "ingest"),
        "reingest_every_file_share": paired("reingest_every_file", "ingest"),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for size in (32, 256):
        r = run(args.count, size, args.rounds)
        print(
            f"ingest {r['images']} images of {size}x{size}: naive {r['naive_img_per_s']:.0f} img/s, "
            f"rayml ingest into Delta {r['ingest_img_per_s']:.0f} img/s -> speedup {r['speedup_vs_naive']:.2f}x "
            f"(goal >= 1.0x); re-ingest unchanged = {r['reingest_share']:.3f} of first ingest (goal <= 0.05), "
            f"{r['reingest_every_file_share']:.3f} with check_every_file"
        )
