"""Data drift compute time against the size of a production day: 250, 1,000 and 4,000 images.

Times the work of one daily data-drift report after the reference is fitted:
the champion's forward passes over the day (probabilities + embeddings) and the
tests (MMD permutation test, chi-squared). Printed as ratios to the 250 case,
with the default ``max_production`` cap on the MMD sample and without it.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rayml_assets import sample_stream  # noqa: E402
from rayml_assets.lib.monitoring.contract import DriftConfig  # noqa: E402
from rayml_assets.lib.monitoring.data_drift import DATA_BACKENDS, detect_data_drift  # noqa: E402
from rayml_assets.lib.monitoring.drift_inputs import DriftInputs, data_reference  # noqa: E402
from rayml_assets.lib.monitoring.inference import predict_images  # noqa: E402
from rayml_assets_tests.support.monitoring_support import BENCH_EPOCHS, shared_champion  # noqa: E402

SIZES = (250, 1000, 4000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="best of N")
    args = parser.parse_args()
    _, champion = shared_champion(epochs=BENCH_EPOCHS)
    digits = sample_stream.held_back_digits()
    days = {n: [i.data for i in sample_stream.generate_day(0, n, seed=1, digits=digits)] for n in SIZES}
    for label, config in (
        ("default (MMD on <= 1,000 sampled)", DriftConfig()),
        ("uncapped MMD", DriftConfig(max_production=None)),
    ):
        reference = data_reference(champion, config)
        backend = DATA_BACKENDS[config.backend](config)
        backend.fit(reference.inputs)
        # Untimed warm-up: first calls pay one-off costs (thread pools, lazy imports)
        # that would otherwise inflate the 250-image baseline.
        warm_probs, warm_embeds = predict_images(champion, days[SIZES[0]], config.batch_size)
        detect_data_drift(champion, "2026-01-01", DriftInputs(warm_embeds, warm_probs), reference, config, backend)
        times = {}
        for n, images in days.items():
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                probs, embeds = predict_images(champion, images, config.batch_size)
                detect_data_drift(champion, "2026-01-01", DriftInputs(embeds, probs), reference, config, backend)
                best = min(best, time.perf_counter() - started)
            times[n] = best
        print(f"{label}: reference {len(reference)} images, {config.n_permutations} permutations")
        for n, seconds in times.items():
            print(f"  {n:>5} images: {seconds:6.2f} s   ratio to 250: {seconds / times[SIZES[0]]:5.2f}")


if __name__ == "__main__":
    main()
