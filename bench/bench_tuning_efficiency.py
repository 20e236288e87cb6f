"""ASHA vs FIFO on the same search space, seed and epoch cap (the same sampled trials).

Prints the best validation accuracy of each and the epochs each spent, measured
in this run. Goal: ASHA's best val accuracy within 1 point of FIFO's, using
<= 50% of FIFO's epochs.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from training_common import digits_lake, ray_cluster  # noqa: E402

from rayml_assets.lib.training.tuner import run_tuning  # noqa: E402
from rayml_assets.lib.training.tuning_config import TuningConfig  # noqa: E402

SEARCH = {
    "lr": {"loguniform": [0.003, 0.3]},
    "momentum": {"uniform": [0.5, 0.95]},
    "batch_size": {"grid": [32, 64]},
}


def run(scheduler: dict, args, tmp: Path, uri: str, version: int) -> tuple[float, int, int, float]:
    config = TuningConfig(
        search_space=SEARCH,
        num_samples=args.samples,
        max_epochs=args.epochs,
        image_size=args.image_size,
        num_workers=1,
        cpus_per_worker=1,
        seed=7,
        scheduler=scheduler,
    )
    started = time.perf_counter()
    result = run_tuning(
        config, table_uri=uri, version=version, storage_path=str(tmp / "ray_results"), experiment_name=scheduler["type"]
    )
    return result.best_val_accuracy, result.epochs_used, result.num_trials, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4, help="samples per batch-size grid point")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--num-cpus", type=int, default=2, help="logical CPUs: trials run 1 worker each")
    args = parser.parse_args()
    with digits_lake(args.image_size) as (tmp, uri, version), ray_cluster(args.num_cpus):
        fifo = run({"type": "fifo"}, args, tmp, uri, version)
        asha = run({"type": "asha", "grace_period": 1, "reduction_factor": 3}, args, tmp, uri, version)
    for name, (acc, epochs, trials, seconds) in (("FIFO", fifo), ("ASHA", asha)):
        print(f"{name}: best val_accuracy {acc:.4f}, {epochs} epochs over {trials} trials, {seconds:.0f} s")
    print(f"asha_minus_fifo_accuracy_points = {100 * (asha[0] - fifo[0]):+.2f}  (goal >= -1.00)")
    print(f"asha_over_fifo_epochs_ratio = {asha[1] / fifo[1]:.2f}  (goal <= 0.50)")
    print(f"asha_over_fifo_time_ratio = {asha[3] / fifo[3]:.2f}")


if __name__ == "__main__":
    main()
