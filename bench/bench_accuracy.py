"""The demo tuning configuration (configs/demo_tuning.yaml) on the full digits sample, 2 CPUs.

Tunes, then scores the best checkpoint on the held-out test split of the same
pinned Delta version. Prints test accuracy and wall time measured in this run.
Goal: test accuracy >= 0.95 in a few minutes.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from training_common import digits_lake, ray_cluster  # noqa: E402

from rayml_assets.lib.training.checkpoints import load_checkpoint_model  # noqa: E402
from rayml_assets.lib.training.delta_stream import DataSpec  # noqa: E402
from rayml_assets.lib.training.evaluation import evaluate  # noqa: E402
from rayml_assets.lib.training.tuner import run_tuning  # noqa: E402
from rayml_assets.lib.training.tuning_config import demo_tuning  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cpus", type=int, default=2, help="logical CPUs for the local Ray cluster")
    args = parser.parse_args()
    config = demo_tuning()
    with digits_lake(config.image_size) as (tmp, uri, version), ray_cluster(args.num_cpus):
        started = time.perf_counter()
        result = run_tuning(
            config, table_uri=uri, version=version, storage_path=str(tmp / "ray_results"), experiment_name="demo"
        )
        tuned = time.perf_counter() - started
        model, meta = load_checkpoint_model(result.best_checkpoint_path)
        spec = DataSpec(uri, version, tuple(meta["class_labels"]), config.image_size, config.channels)
        test = evaluate(model, spec, "test")
    print(
        f"demo config: {result.num_trials} trials, {result.num_stopped_early} stopped early, "
        f"{result.epochs_used}/{result.epochs_full} epochs, tuning {tuned:.0f} s on {args.num_cpus} logical CPUs"
    )
    print(f"best params: {result.best_params}")
    print(f"best val accuracy {result.best_val_accuracy:.4f}; test accuracy {test.accuracy:.4f} on {test.n} images")
    print(f"test_accuracy = {test.accuracy:.4f}  (goal >= 0.95)")
    print(f"tuning_minutes = {tuned / 60:.1f}  (goal: a few)")


if __name__ == "__main__":
    main()
