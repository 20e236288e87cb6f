"""Image classifiers trained from scratch for small images.

Every model exposes the same two entry points:

- ``forward(x) -> logits`` of shape ``[N, num_classes]``;
- ``embed(x) -> features`` of shape ``[N, embedding_dim]``, the penultimate
  layer (the input of the final linear head). Drift detection (MMD on
  embeddings) and explanations rely on it, so it must stay stable.

There are no hub downloads: ``pretrained_weights_path`` is an optional local
state dict (a torchvision checkpoint or one of ours). Keys whose shapes do not
fit (the small-image stem, a head with another class count) are skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

MODEL_NAMES = ("small_cnn", "resnet18")


class SmallCNN(nn.Module):
    """Two conv stages and a 128-d embedding: fast enough to tune on 2 CPUs."""

    def __init__(
        self, num_classes: int, in_channels: int = 1, width: int = 32, embedding_dim: int = 128, dropout: float = 0.25
    ):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width),
            *block(width, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, embedding_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, num_classes))
        self.embedding_dim = embedding_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def _define_resnet18():
    # torchvision's package import pulls in torch._dynamo (~2-4 s per process);
    # every Ray worker imports this module, so ResNet is only loaded when used.
    from torchvision.models.resnet import BasicBlock, ResNet

    class SmallImageResNet18(ResNet):
        """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool.

        The ImageNet stem (7x7 stride 2 + max-pool) shrinks a 32x32 image to 8x8
        before the first residual stage, which throws most of the signal away.
        Subclassing (rather than wrapping) keeps torchvision's state-dict keys, so a
        local torchvision checkpoint loads without renaming.
        """

        def __init__(self, num_classes: int, in_channels: int = 1):
            super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
            self.embedding_dim = self.fc.in_features

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.maxpool(x)
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.embed(x))

    # pickles by reference (models.SmallImageResNet18 resolves through __getattr__ below)
    SmallImageResNet18.__module__, SmallImageResNet18.__qualname__ = __name__, "SmallImageResNet18"
    return SmallImageResNet18


def __getattr__(name: str):
    if name == "SmallImageResNet18":
        globals()[name] = cls = _define_resnet18()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _resnet18_class() -> type[nn.Module]:
    return globals().get("SmallImageResNet18") or __getattr__("SmallImageResNet18")


def _unwrap_state_dict(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"expected a state dict, got {type(obj).__name__}")
    # DDP checkpoints prefix every key with "module."
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Load matching tensors from a local state dict; returns the skipped keys."""
    state = _unwrap_state_dict(torch.load(Path(path), map_location="cpu", weights_only=True))
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    if not usable:
        raise ValueError(f"no tensor in {path} matches the model's parameters")
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors from %s, skipped %d: %s", len(usable), path, len(skipped), skipped[:8])
    return skipped


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 1,
    pretrained_weights_path: str | Path | None = None,
) -> nn.Module:
    """Build a classifier by name (one of ``MODEL_NAMES``), optionally warm-started."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    if name == "small_cnn":
        model: nn.Module = SmallCNN(num_classes, in_channels)
    elif name == "resnet18":
        model = _resnet18_class()(num_classes, in_channels)
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    if pretrained_weights_path:
        load_pretrained(model, pretrained_weights_path)
    return model
