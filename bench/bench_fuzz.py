"""Fuzz the image path: seeded mutations of PNG, JPEG, GIF, BMP, TIFF and WebP files through ingest and predict_day.

Prints, per format, how many files were ingested / quarantined by reason and predicted /
skipped by reason, then every contract break (an ingested file whose pixels differ from
the reference decode, a reason outside the image reasons, prediction disagreeing with
ingest). Exits 1 on any break. Goal: zero breaks, no crash, no hang (``--timeout``).

    python bench/bench_fuzz.py                      # 2,400 files (400 per format)
    python bench/bench_fuzz.py --per-format 1000 --seed 7 --workers 2
"""

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rayml_assets_tests.common.fuzz_corpus import MUTATIONS, corpus, fuzz_champion, run_fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-format", type=int, default=400, help="files per format (6 formats)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="ingest processes")
    parser.add_argument("--timeout", type=int, default=900, help="seconds before a hang is reported")
    args = parser.parse_args()

    def hung(*_):
        raise TimeoutError(f"no result after {args.timeout} s: a decoder hangs on some mutated file")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(args.timeout)
    cases = corpus(args.per_format, seed=args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rayml-fuzz-") as tmp:
        report = run_fuzz(cases, Path(tmp), fuzz_champion(), workers=args.workers)
    elapsed = time.perf_counter() - start
    signal.alarm(0)
    print(f"{len(cases)} files (seed {args.seed}, mutations {', '.join(MUTATIONS)}), ingest and prediction in {elapsed:.1f} s")
    print(report.table())
    print(f"contract breaks: {len(report.problems)}")
    for problem in report.problems[:50]:
        print(f"  {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
