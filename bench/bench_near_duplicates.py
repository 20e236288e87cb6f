"""Near-duplicate recall and precision of cleaning, per resolution and backend.

    python bench/bench_near_duplicates.py [--distinct 1000] [--copies 200] [--backends fastdup,open]

Datasets (bench/near_duplicate_data.py): distinct 32 px digits or 256 px photo crops, and
copies of some of them cropped by up to 5 %, resized by ±10 %, re-encoded as JPEG 70-95.
A copy is found when it or its original is excluded as a duplicate naming the other as kept.
Goal: recall >= 0.95 and at most 0.5 % of the untouched distinct images excluded as duplicates.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import timed  # noqa: E402
from near_duplicate_data import dataset  # noqa: E402

from rayml_assets.lib.dataset.cleaning import CleaningThresholds, ImageFile, backend_named, decide_exclusions  # noqa: E402
from rayml_assets_tests.dataset.image_sets import write_files  # noqa: E402

DUPLICATE_REASONS = ("exact_duplicate", "near_duplicate")


def score(files: list[ImageFile], copy_of: dict[int, int], excluded: dict) -> dict:
    ids = [f.image_id for f in files]
    kept_of = {i: detail.rsplit("kept ", 1)[-1] for i, (reason, detail) in excluded.items() if reason.value in DUPLICATE_REASONS}
    partner = {ids[c]: ids[o] for c, o in copy_of.items()} | {ids[o]: ids[c] for c, o in copy_of.items()}
    # The kept image's id, or (as cleaning wrote it before) its first 12 characters.
    right = {i for i, kept in kept_of.items() if i in partner and partner[i].startswith(kept)}
    found = sum(ids[c] in right or ids[o] in right for c, o in copy_of.items())
    untouched = [ids[i] for i in range(len(ids)) if ids[i] not in partner]
    wrong = sum(i in kept_of for i in untouched)
    return {
        "recall": found / len(copy_of),
        "precision": len(right) / max(len(kept_of), 1),
        "distinct_wrongly_excluded": wrong / len(untouched),
    }


def bare_fastdup(folder: Path, work: Path) -> None:
    import fastdup

    backend = backend_named("fastdup")
    with contextlib.redirect_stdout(io.StringIO()):
        fastdup.create(work_dir=str(work), input_dir=str(folder)).run(
            overwrite=True, threshold=0.9, nearest_neighbors_k=backend.nearest_neighbors_k,
            num_threads=backend.num_threads, outlier_percentile=1.0,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--distinct", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--backends", default="fastdup,open")
    parser.add_argument("--kinds", default="digits32,photos256")
    args = parser.parse_args(argv)
    thresholds = CleaningThresholds()
    duplicates_only = replace(thresholds, dark_mean=-1.0, bright_mean=256.0, blur_min=-1.0, outlier_similarity=-2.0)
    for kind in args.kinds.split(","):
        encoded, copy_of = dataset(kind, args.distinct, args.copies)
        with tempfile.TemporaryDirectory() as tmp:
            files = write_files(Path(tmp) / "images", encoded)
            ids = [f.image_id for f in files]
            t: dict = {}
            if "fastdup" in args.backends:  # untimed: fastdup's first start in a process is slow
                warm = Path(tmp) / "warm"
                write_files(warm / "images", encoded[:20])
                bare_fastdup(warm / "images", warm / "work")
            for name in args.backends.split(","):
                with timed(t, name):
                    findings = backend_named(name).analyze(files, Path(tmp) / name, thresholds)
                    excluded = decide_exclusions(ids, findings, thresholds)
                # Duplicates alone: a copy excluded as blurry first is no miss of the duplicate search.
                s = score(files, copy_of, decide_exclusions(ids, findings, duplicates_only))
                s["other_exclusions"] = dict(Counter(r.value for r, _ in excluded.values() if r.value not in DUPLICATE_REASONS))
                print(
                    f"{kind:10s} {name:8s} {len(files)} images ({len(copy_of)} copies): recall {s['recall']:.3f}, "
                    f"precision {s['precision']:.3f}, distinct wrongly excluded {s['distinct_wrongly_excluded']:.2%}, "
                    f"other exclusions {s['other_exclusions']}, {t[name]:.1f}s",
                    flush=True,
                )
            if "fastdup" in args.backends:
                from rayml_assets.lib.dataset.near_duplicates import confirmed_duplicates

                with timed(t, "pixels"):  # what the fastdup backend adds to a bare run
                    confirmed_duplicates(files, findings.similar_pairs, thresholds)
                print(f"{kind:10s} pixel confirmation alone {t['pixels']:.1f}s", flush=True)
                with timed(t, "bare fastdup"):
                    bare_fastdup(Path(tmp) / "images", Path(tmp) / "bare")
                print(f"{kind:10s} bare fastdup run {t['bare fastdup']:.1f}s", flush=True)


if __name__ == "__main__":
    main()
