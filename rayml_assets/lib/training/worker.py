"""One DDP rank of one trial: the function Ray Train runs in every worker (``train_loop_per_worker``).

Ray is imported inside the loop only (after :func:`~rayml_assets.lib.training.ray_env.pin_train_v1`),
so this module is importable without starting or loading Ray.
"""

from __future__ import annotations

import math
import tempfile
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from rayml_assets.lib.training.augment import random_affine
from rayml_assets.lib.training.checkpoints import read_checkpoint, save_checkpoint
from rayml_assets.lib.training.delta_stream import DataSpec, DeltaImageStream, shard_sizes
from rayml_assets.lib.training.evaluation import evaluate
from rayml_assets.lib.training.models import build_model
from rayml_assets.lib.training.ray_env import pin_train_v1
from rayml_assets.lib.training.tuning_config import hyperparams


def _lr_at(hp: dict, epoch: int, max_epochs: int) -> float:
    if hp["lr_schedule"] == "cosine":
        return float(hp["lr"]) * 0.5 * (1 + math.cos(math.pi * epoch / max_epochs))
    return float(hp["lr"])


def _make_optimizer(hp: dict, params) -> torch.optim.Optimizer:
    if hp["optimizer"] == "sgd":
        momentum = float(hp["momentum"])
        return torch.optim.SGD(
            params, lr=float(hp["lr"]), momentum=momentum, nesterov=momentum > 0, weight_decay=float(hp["weight_decay"])
        )
    if hp["optimizer"] == "adamw":
        return torch.optim.AdamW(
            params, lr=float(hp["lr"]), betas=(float(hp["momentum"]), 0.999), weight_decay=float(hp["weight_decay"])
        )
    raise ValueError(f"unknown optimizer {hp['optimizer']!r}")


def _set_hyperparams(optimizer: torch.optim.Optimizer, hp: dict, lr: float) -> None:
    # After a PBT exploit the optimizer state comes from the donor trial, but
    # lr/momentum must be this trial's (possibly perturbed) values.
    for group in optimizer.param_groups:
        group["lr"] = lr
        if "momentum" in group:
            group["momentum"] = float(hp["momentum"])
        if "betas" in group:
            group["betas"] = (float(hp["momentum"]), group["betas"][1])


def _worker_nodes(world: int) -> list[str]:
    """The Ray node id of every rank, in rank order (so a trial's summary shows where its DDP ran)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    if world == 1:
        return [node_id]
    nodes: list[str | None] = [None] * world
    dist.all_gather_object(nodes, node_id)
    return [str(n) for n in nodes]


def train_loop_per_worker(config: dict) -> None:
    """One DDP rank of one trial. ``config`` = hyperparameters + ``data`` + ``max_epochs`` + ``seed``...

    Reports ``val_accuracy`` and friends once per epoch with a checkpoint from
    rank 0, and resumes from ``ray.train.get_checkpoint()`` (fault-tolerance
    retries, ``Tuner.restore`` and PBT exploits all come through there).
    """
    pin_train_v1()  # a no-op in workers started with ray_runtime_env(); guards anything else
    import ray.train  # here, not at module level: evaluation and the registry do not need Ray
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))
    spec = DataSpec.from_dict(config["data"])
    hp = hyperparams(config)
    max_epochs, seed = int(config["max_epochs"]), int(config.get("seed", 0))
    device = ray.train.torch.get_device()
    torch.manual_seed(seed)  # DDP broadcasts rank 0's initial weights anyway

    model = build_model(hp["model"], len(spec.class_labels), spec.channels, config.get("pretrained_weights_path"))
    start_epoch, optimizer_state, restored_from, seen = 0, None, "", []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, meta = read_checkpoint(directory)
        model.load_state_dict(state["model"])
        start_epoch, optimizer_state = int(state["epoch"]), state.get("optimizer")
        restored_from = meta.get("trial_id", "")
        if restored_from == (ctx.get_trial_id() or ""):  # this trial's restart, not a PBT donor's checkpoint
            seen = list(meta.get("nodes_seen", []))
    model = ray.train.torch.prepare_model(model)
    nodes = _worker_nodes(world)
    # every node the trial trained on, restarts included: Tune may drop the rows before a restart
    seen = list(dict.fromkeys([*seen, *nodes]))
    optimizer = _make_optimizer(hp, model.parameters())
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    options = spec.delta_options()  # the lake as this worker reaches it, from its own environment
    quota = min(shard_sizes(spec, "train", world, options))
    if quota == 0:
        raise ValueError(f"a rank has no training rows in {spec.table_uri}@v{spec.version}; use fewer workers")
    batch_size = int(hp["batch_size"])
    augment = bool(config.get("augment", True))
    generator = torch.Generator().manual_seed(seed * 7919 + rank)
    meta = {
        "model": hp["model"],
        "class_labels": list(spec.class_labels),
        "channels": spec.channels,
        "image_size": spec.image_size,
        "table_uri": spec.table_uri,
        "delta_version": spec.version,
        "hyperparams": hp,
        "trial_id": ctx.get_trial_id() or "",
        "nodes_seen": seen,
    }

    tags = {
        "restored_from": restored_from,
        "worker_nodes": ",".join(nodes),
        "num_nodes": len(set(nodes)),
        "nodes_seen": ",".join(seen),
        "start_epoch": start_epoch,  # > 0: this attempt resumed from a checkpoint
    }
    if start_epoch >= max_epochs:
        # A PBT exploit after the last epoch restarts the trial with nothing left to train and resets
        # its result rows: one evaluation of the weights it now holds keeps a row (and its lineage).
        val = evaluate(model, spec, "val", rank=rank, world_size=world, device=device, storage_options=options)
        ray.train.report({"epoch": start_epoch, "val_loss": val.loss, "val_accuracy": val.accuracy, **tags})
        return

    for epoch in range(start_epoch, max_epochs):
        lr = _lr_at(hp, epoch, max_epochs)
        _set_hyperparams(optimizer, hp, lr)
        model.train()
        stream = DeltaImageStream(
            spec, "train", rank=rank, world_size=world, limit=quota, shuffle=True, seed=seed, epoch=epoch,
            storage_options=options,
        )
        sums = torch.zeros(3, dtype=torch.float64)  # loss, correct, seen
        started = time.perf_counter()
        for x, y in DataLoader(stream, batch_size=batch_size):
            if augment:
                x = random_affine(x, generator)
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=float(hp["label_smoothing"]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.tensor(
                [loss.item() * len(y), (logits.argmax(1) == y).sum().item(), len(y)], dtype=torch.float64
            )
        train_time = time.perf_counter() - started
        if world > 1:
            reduced = sums.to(device)
            dist.all_reduce(reduced)
            sums = reduced.cpu()
        val = evaluate(model, spec, "val", rank=rank, world_size=world, device=device, storage_options=options)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(sums[0] / sums[2]),
            "train_accuracy": float(sums[1] / sums[2]),
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "lr": lr,
            "world_size": world,
            "train_samples": int(sums[2]),
            "train_samples_per_s": float(sums[2]) / train_time,
            "epoch_time_s": time.perf_counter() - started,
            **tags,
        }
        with tempfile.TemporaryDirectory() as tmp:
            # Legacy Train copies the checkpoint into storage inside report(),
            # so the temporary directory may go away right after.
            report_checkpoint = None
            if rank == 0:
                save_checkpoint(tmp, model, meta, optimizer, epoch + 1)
                report_checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=report_checkpoint)
