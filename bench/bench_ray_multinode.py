"""Ray Train DDP throughput: 2 workers spread over 2 Ray nodes vs 2 workers packed on one node.

One run, one cluster (``rayml_assets_tests.training.multinode_cluster``: a head and a
worker node of 2 logical CPUs each, token authentication on), joined by address the way
the train task joins one. The same trial (small_cnn, the digits table, 1 torch thread per
worker) runs with ``placement_strategy: STRICT_PACK`` and then ``STRICT_SPREAD``; the
workers' reported node ids confirm where each ran. Prints the per-epoch samples/s of
each and the ratio of the steady-state medians (no asserts). On one machine both
placements talk over loopback, so this measures Ray's per-node overhead, not a network.
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from training_common import digits_lake  # noqa: E402  (puts the repo root on sys.path)

from rayml_assets_tests.training.multinode_cluster import FAKE_TOKEN, multinode_cluster  # noqa: E402


def ddp(spec, placement: str, epochs: int, batch_size: int, storage: str) -> tuple[list[float], set[str]]:
    """Samples/s per epoch (training time, all ranks) and the node ids the workers ran on."""
    from ray.tune import RunConfig

    from rayml_assets.lib.training.tuner import build_trainer, param_space
    from rayml_assets.lib.training.tuning_config import TuningConfig

    config = TuningConfig(
        search_space={"lr": 0.05, "batch_size": batch_size // 2},
        max_epochs=epochs,
        num_workers=2,
        cpus_per_worker=1,
        image_size=spec.image_size,
        placement_strategy=placement,
    )
    trainer = build_trainer(
        config,
        use_gpu=False,
        train_loop_config=param_space(config, spec)["train_loop_config"],
        run_config=RunConfig(storage_path=storage, name=placement.lower()),
    )
    history = trainer.fit().metrics_dataframe.sort_values("epoch")
    nodes = {n for row in history["worker_nodes"] for n in str(row).split(",")}
    return [float(v) for v in history["train_samples_per_s"]], nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (split over the 2 workers)")
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    os.environ["RAY_AUTH_TOKEN"] = FAKE_TOKEN  # this driver's token; the cluster's is the same fake one
    with digits_lake(args.image_size) as (tmp, uri, version), multinode_cluster(workers=1, cpus=2) as cluster:
        from rayml_assets.lib.common.contract import RaySettings
        from rayml_assets.lib.training.delta_stream import DataSpec, discover_labels, shard_sizes
        from rayml_assets.lib.training.tuner import connect

        _, auth = connect(RaySettings(address=cluster.address))
        spec = DataSpec(uri, version, discover_labels(uri, version), args.image_size, 1)
        rows = shard_sizes(spec, "train", 1)[0]
        storage = str(tmp / "ray_results")
        runs = {p: ddp(spec, p, args.epochs, args.batch_size, storage) for p in ("STRICT_PACK", "STRICT_SPREAD")}
        import ray

        ray.shutdown()  # before the cluster goes: a driver that outlives its GCS aborts
    print(f"digits {args.image_size}x{args.image_size}, {rows} train images, global batch {args.batch_size}, "
          f"{args.epochs} epochs; cluster of 2 nodes x 2 logical CPUs on {os.cpu_count()} cores ({auth.describe()})")
    medians = {}
    for placement, (rates, nodes) in runs.items():
        medians[placement] = statistics.median(rates[1:])  # epoch 1 pays for warm-up
        print(f"{placement:13s} on {len(nodes)} node(s): {medians[placement]:7.1f} samples/s  "
              f"(per epoch: {[round(r) for r in rates]})")
    print(f"spread_over_packed_ratio = {medians['STRICT_SPREAD'] / medians['STRICT_PACK']:.2f}")


if __name__ == "__main__":
    main()
