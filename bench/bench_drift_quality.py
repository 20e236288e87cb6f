"""Drift detection quality on the simulated 20-day production stream (``rayml_assets.sample_stream``).

The stream's schedule is the ground truth: 8 of 20 days drift (rotation, noise,
brightness, class mix), 12 are clean. Every day goes through the real path:
listing, predictions, data drift (MMD on embeddings + chi-squared on predicted
labels, alibi-detect) and model drift (feedback accuracy, Fisher exact test).

Prints per-day results, data-drift power (share of drifted days flagged) and
false-positive rate (share of clean days flagged). Goals: power >= 0.9, FPR <= 0.1.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rayml_assets import sample_stream  # noqa: E402
from rayml_assets.lib.monitoring.contract import DriftConfig  # noqa: E402
from rayml_assets.lib.monitoring.data_drift import DATA_BACKENDS, detect_data_drift  # noqa: E402
from rayml_assets.lib.monitoring.drift_inputs import DriftInputs, data_reference, reference_correctness  # noqa: E402
from rayml_assets.lib.monitoring.model_drift import detect_model_drift  # noqa: E402
from rayml_assets.lib.monitoring.inference import predict_day, probabilities_matrix  # noqa: E402
from rayml_assets.lib.monitoring.production import join_feedback_table, read_feedback  # noqa: E402
from rayml_assets_tests.support.monitoring_support import BENCH_EPOCHS, accuracy, shared_champion  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=sample_stream.DEFAULT_DAYS)
    parser.add_argument("--per-day", type=int, default=200)
    parser.add_argument("--backend", default="alibi", choices=sorted(DATA_BACKENDS))
    parser.add_argument("--seed", type=int, default=0, help="stream seed")
    parser.add_argument(
        "--reference-splits", default=",".join(DriftConfig().reference_splits), help="comma-separated splits"
    )
    args = parser.parse_args()

    _, champion = shared_champion(epochs=BENCH_EPOCHS)
    config = DriftConfig(backend=args.backend, reference_splits=tuple(args.reference_splits.split(",")))
    print(f"champion test accuracy {accuracy(champion):.3f}; config {config}")
    reference = data_reference(champion, config)
    backend = DATA_BACKENDS[config.backend](config)
    backend.fit(reference.inputs)
    correct_ref = reference_correctness(champion, config)

    with tempfile.TemporaryDirectory() as tmp:
        production, feedback = f"{tmp}/production", f"{tmp}/feedback"
        days = sample_stream.write_stream(production, feedback, args.days, per_day=args.per_day, seed=args.seed)
        flagged = {True: 0, False: 0}
        counts = {True: 0, False: 0}
        model_hits = []
        print(
            f"{'date':<11} {'kind':<11} {'data drift':<10} {'min p':>9} {'mmd p':>7} {'chi2 p':>9} "
            f"{'acc':>5} {'model drift':<11} {'fet p':>9} {'secs':>5}"
        )
        for day in days:
            started = time.perf_counter()
            predicted = predict_day(champion, production, day.date)
            inputs = DriftInputs(
                predicted.embeddings, probabilities_matrix(predicted.table, len(champion.class_labels))
            )
            data = detect_data_drift(champion, day.date, inputs, reference, config, backend)
            joined = join_feedback_table(
                read_feedback(feedback, day.date),
                predicted.table.select(["image_id", "source_uri", "predicted_label"]).to_pydict(),
            )
            model = detect_model_drift(champion, joined, correct_ref, config)
            seconds = time.perf_counter() - started
            drifted = day.kind is not None
            counts[drifted] += 1
            flagged[drifted] += data.is_drift
            if day.kind in ("rotation", "noise", "brightness"):
                model_hits.append(model.is_drift)
            print(
                f"{day.date:<11} {day.kind or 'clean':<11} {str(data.is_drift):<10} {data.min_p_value:>9.2g} "
                f"{data.test('mmd_embeddings').p_value:>7.2f} {data.test('chi2_predicted_labels').p_value:>9.2g} "
                f"{model.production_accuracy:>5.2f} {str(model.is_drift):<11} {model.p_value:>9.2g} {seconds:>5.1f}"
            )
    power = flagged[True] / max(1, counts[True])
    fpr = flagged[False] / max(1, counts[False])
    print(f"\ndata drift power: {power:.2f} ({flagged[True]}/{counts[True]} drifted days)   goal >= 0.9")
    print(f"data drift false-positive rate: {fpr:.2f} ({flagged[False]}/{counts[False]} clean days)   goal <= 0.1")
    print(f"model drift on accuracy-hurting days (rotation/noise/brightness): {sum(model_hits)}/{len(model_hits)}")


if __name__ == "__main__":
    main()
