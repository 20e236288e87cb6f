"""Ray Train DDP (2 workers × 1 thread) vs a plain single-process PyTorch loop (2 threads).

Same data (the digits table, streamed and decoded from Delta with the same
augmentation), same model (small_cnn), same global batch, same CPU budget.
Prints the throughput ratio measured in this run (higher is better).
Goal: DDP samples/s >= 0.8x the single-process loop.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from training_common import digits_lake, ray_cluster  # noqa: E402

from rayml_assets.lib.training.augment import random_affine  # noqa: E402
from rayml_assets.lib.training.delta_stream import DataSpec, DeltaImageStream, discover_labels, shard_sizes  # noqa: E402
from rayml_assets.lib.training.models import build_model  # noqa: E402


def single_process(spec: DataSpec, epochs: int, batch_size: int, threads: int) -> list[float]:
    """Samples/s per epoch of a plain loop: no Ray, no DDP."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("small_cnn", len(spec.class_labels), spec.channels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    rates = []
    for epoch in range(epochs):
        seen, started = 0, time.perf_counter()
        for x, y in DataLoader(DeltaImageStream(spec, "train", shuffle=True, epoch=epoch), batch_size=batch_size):
            logits = model(random_affine(x, generator))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
        rates.append(seen / (time.perf_counter() - started))
    return rates


def ddp(spec: DataSpec, epochs: int, batch_size: int, workers: int, storage: str) -> list[float]:
    """Samples/s per epoch (all ranks, training time only) reported by the Ray Train worker loop."""
    from ray.tune import RunConfig

    from rayml_assets.lib.training.tuner import build_trainer, param_space
    from rayml_assets.lib.training.tuning_config import TuningConfig

    config = TuningConfig(
        search_space={"lr": 0.05, "batch_size": batch_size // workers},
        max_epochs=epochs,
        num_workers=workers,
        cpus_per_worker=1,
        image_size=spec.image_size,
    )
    trainer = build_trainer(
        config,
        use_gpu=False,
        train_loop_config=param_space(config, spec)["train_loop_config"],
        run_config=RunConfig(storage_path=storage, name="ddp"),
    )
    result = trainer.fit()
    return [float(v) for v in result.metrics_dataframe.sort_values("epoch")["train_samples_per_s"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (split over the DDP workers)")
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    with digits_lake(args.image_size) as (tmp, uri, version):
        spec = DataSpec(uri, version, discover_labels(uri, version), args.image_size, 1)
        train_rows = shard_sizes(spec, "train", 1)[0]
        single = single_process(spec, args.epochs, args.batch_size, threads=2)
        with ray_cluster(num_cpus=2):
            distributed = ddp(spec, args.epochs, args.batch_size, workers=2, storage=str(tmp / "ray_results"))
    # the first epoch pays for warm-up (allocator, gloo buffers): compare the steady state
    single_rate, ddp_rate = statistics.median(single[1:]), statistics.median(distributed[1:])
    print(
        f"digits {args.image_size}x{args.image_size}, {train_rows} train images, "
        f"global batch {args.batch_size}, {args.epochs} epochs"
    )
    print(f"single process, 2 threads : {single_rate:8.1f} samples/s  (epochs: {[round(r) for r in single]})")
    print(f"Ray Train DDP, 2 x 1 thread: {ddp_rate:8.1f} samples/s  (epochs: {[round(r) for r in distributed]})")
    print(f"ddp_over_single_ratio = {ddp_rate / single_rate:.2f}  (goal >= 0.80)")


if __name__ == "__main__":
    main()
