"""Image classifiers: ours for small images, and torchvision's architectures to fine-tune.

Every model exposes the same two entry points:

- ``forward(x) -> logits`` of shape ``[N, num_classes]``;
- ``embed(x) -> features`` of shape ``[N, embedding_dim]``, the penultimate
  layer (the input of the final linear head). Drift detection (MMD on
  embeddings) and explanations rely on it, so it must stay stable.

There are no hub downloads: ``pretrained_weights_path`` is an optional local
state dict (a torchvision checkpoint or one of ours). An RGB stem loads into a
grey model summed over its channels; other keys whose shapes do not fit (the
small-image stem, a head with another class count) are skipped.

``MODEL_NAMES`` lives in ``model_names.py`` (no torch) so configs can check names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from rayml_assets.lib.training.model_names import MODEL_NAMES

log = logging.getLogger(__name__)


class SmallCNN(nn.Module):
    """Three conv stages (32, 64, 128 channels) and a 128-d embedding: fast enough to tune on 2 CPUs.

    The third stage matters more than its cost (~+40 %): before the global pooling its units see most
    of a 32 px image, so where a stroke is still counts (digits: 0.987 → 0.994 test accuracy, same recipe).
    """

    def __init__(
        self, num_classes: int, in_channels: int = 1, width: int = 32, embedding_dim: int = 128, dropout: float = 0.25
    ):
        super().__init__()

        def stage(cin: int, cout: int) -> list[nn.Module]:
            conv = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            return [*conv, nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]

        self.features = nn.Sequential(
            *stage(in_channels, width),
            *stage(width, 2 * width),
            *stage(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, embedding_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, num_classes))
        self.embedding_dim = embedding_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


# torchvision's package import pulls in torch._dynamo (~2-4 s per process) and every Ray
# worker imports this module, so the torchvision-based classes load on first use.
_ARCHITECTURE_CLASSES = ("SmallImageResNet18", "TorchvisionResNet", "TorchvisionMobileNetV3", "TorchvisionEfficientNet")


def __getattr__(name: str):
    # also resolves models.SmallImageResNet18 in pickles made before it moved to architectures.py
    if name in _ARCHITECTURE_CLASSES:
        from rayml_assets.lib.training import architectures

        return getattr(architectures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"pretrained weights {path}: expected a state dict, got {type(obj).__name__}")
    # DDP checkpoints prefix every key with "module."
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _fit(own: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor | None:
    """``theirs`` shaped for ``own``, or None when it does not fit."""
    if own.shape == theirs.shape:
        return theirs
    # an RGB stem into a grey model: a grey pixel is (g, g, g), so summing the kernels over
    # the input channels gives the response the RGB kernel had to that pixel
    grey_kernel = own.dim() == theirs.dim() == 4 and own.shape[1] == 1
    if grey_kernel and (own.shape[0], *own.shape[2:]) == (theirs.shape[0], *theirs.shape[2:]):
        return theirs.sum(dim=1, keepdim=True)
    return None


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Load the fitting tensors of a local state dict into ``model``; returns the skipped keys.

    An RGB conv kernel loads into a 1-channel one summed over its input channels;
    tensors of other shapes (a head with another class count, another stem) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path} not found: it must be a local file (on Databricks a /Volumes/... path)"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, weights_only refusals)
        raise ValueError(f"pretrained weights {path} is not a readable torch state dict: {exc}") from exc
    state = _unwrap_state_dict(loaded, path)
    own = model.state_dict()
    usable = {k: fitted for k, v in state.items() if k in own and (fitted := _fit(own[k], v)) is not None}
    skipped = sorted(set(state) - set(usable))
    if not usable:
        sample = sorted(state)[:5]
        raise ValueError(f"no tensor in {path} matches the model's parameters (its keys start {sample})")
    summed = sorted(k for k in usable if state[k].shape != own[k].shape)
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors from %s, %d summed to 1 input channel: %s", len(usable), path, len(summed), summed)
    log.info("skipped %d tensors of %s (shapes differ or unknown keys): %s", len(skipped), path, skipped[:8])
    return skipped


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 1,
    pretrained_weights_path: str | Path | None = None,
) -> nn.Module:
    """Build a classifier by name (one of ``MODEL_NAMES``), optionally warm-started."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    if name == "small_cnn":
        model: nn.Module = SmallCNN(num_classes, in_channels)
    else:
        from rayml_assets.lib.training import architectures  # torchvision: only when used

        model = architectures.build(name, num_classes, in_channels)
    if pretrained_weights_path:
        load_pretrained(model, pretrained_weights_path)
    return model
