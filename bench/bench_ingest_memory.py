"""Peak memory of ingest as the landing grows: a landing 10x larger than a base one, in one run.

Each ingest runs in a fresh interpreter (its peak RSS is that process's ``ru_maxrss``, the
forked check workers excluded: they hold one chunk each), into a fresh lake, with the default
policy. Files are checked and committed in batches of ``IngestPolicy.batch_bytes``, so the
peak follows the batch, not the landing. For context the 10x landing is also ingested as one
batch (``batch_bytes`` above its size), which is how ingest worked before batches.
Goal: peak(10x) / peak(base) <= 1.3. Prints both peaks and the ratio (no timed asserts).
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import synthetic_landing  # noqa: E402

GOAL = 1.3
PROBE = """
import resource, sys
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest
policy = IngestPolicy(**({"batch_bytes": int(sys.argv[3])} if len(sys.argv) > 3 else {}))
result = ingest(sys.argv[1], sys.argv[2], policy)
print(result.rows_added, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak(landing: Path, lake: Path, *batch_bytes: int) -> tuple[int, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(landing), str(lake), *map(str, batch_bytes)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return int(out[0]), int(out[1]) / 1024  # ru_maxrss is KiB on Linux


def size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="images in the base landing (more than one batch)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_memory_") as tmp:
        root = Path(tmp)
        base = synthetic_landing(root / "base", args.count, args.size)
        large = synthetic_landing(root / "large", args.count * 10, args.size, seed=1)
        rows_base, peak_base = peak(base, root / "lake_base")
        rows_large, peak_large = peak(large, root / "lake_large")
        rows_one, peak_one = peak(large, root / "lake_one_batch", 2**40)
        print(f"ingest peak RSS, {args.size} px PNGs, default batch_bytes")
        print(f"  base landing  {rows_base:6d} images {size_mb(base):8.1f} MB   peak {peak_base:7.0f} MiB")
        print(f"  10x landing   {rows_large:6d} images {size_mb(large):8.1f} MB   peak {peak_large:7.0f} MiB")
        print(f"  10x, one batch (no bound)                    peak {peak_one:7.0f} MiB")
        print(f"ratio peak(10x) / peak(base): {peak_large / peak_base:.2f}x (goal <= {GOAL}x)")


if __name__ == "__main__":
    main()
