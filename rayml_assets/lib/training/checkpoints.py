"""Checkpoint directories: ``state.pt`` (weights, optimizer, epoch) and ``meta.json`` (how to rebuild the model)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from rayml_assets.lib.common.storage_options import StorageSettings, download
from rayml_assets.lib.training.models import build_model

STATE_FILE = "state.pt"
META_FILE = "meta.json"


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    meta: dict,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int = 0,
) -> Path:
    """Write ``state.pt`` (weights, optimizer, epoch) and ``meta.json`` (how to rebuild the model)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    net = getattr(model, "module", model)
    state = {"model": net.state_dict(), "epoch": epoch}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    torch.save(state, directory / STATE_FILE)
    (directory / META_FILE).write_text(json.dumps({**meta, "epoch": epoch}, indent=2, sort_keys=True))
    return directory


def read_checkpoint(directory: str | Path) -> tuple[dict, dict]:
    """``(state, meta)`` of a checkpoint directory, loaded without unpickling code."""
    directory = Path(directory)
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    return state, json.loads((directory / META_FILE).read_text())


def load_checkpoint_model(
    directory: str | Path, storage: StorageSettings | None = None
) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint in eval mode, plus its metadata (class labels, data version...).

    ``directory`` may be a URI (``abfss://`` with the ``storage`` credentials): it is copied down first.
    """
    if "://" in str(directory) and not str(directory).startswith("file://"):
        with tempfile.TemporaryDirectory() as tmp:
            download(str(directory), tmp, storage)
            state, meta = read_checkpoint(tmp)
    else:
        state, meta = read_checkpoint(str(directory).removeprefix("file://"))
    model = build_model(meta["model"], len(meta["class_labels"]), meta["channels"])
    model.load_state_dict(state["model"])
    return model.eval(), meta
