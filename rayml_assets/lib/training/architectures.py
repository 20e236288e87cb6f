"""torchvision architectures with the ``forward`` / ``embed`` / ``embedding_dim`` contract of ``models.py``.

Importing this module imports torchvision (torch._dynamo, 2-4 s), so ``models.build_model``
imports it only when one of these models is asked for. The classes are module-level
subclasses of torchvision's, so pickle, cloudpickle (``mlflow.pytorch``) and ``torch.save``
name them by reference, and their state-dict keys are torchvision's.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tv
from torchvision.models.efficientnet import EfficientNet
from torchvision.models.mobilenetv3 import MobileNetV3
from torchvision.models.resnet import BasicBlock, ResNet

TORCHVISION_PREFIX = "torchvision_"


class TorchvisionResNet(ResNet):
    """torchvision's ResNet; ``embed`` is the pooled ``layer4`` output, the input of ``fc``."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


class SmallImageResNet18(TorchvisionResNet):
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool, for 16-64 px images.

    The ImageNet stem (7x7 stride 2 + max-pool) shrinks a 32x32 image to 8x8 before the
    first residual stage, which throws most of the signal away. The other keys are
    torchvision's, so a torchvision checkpoint loads all but the stem and the head.
    """

    def __init__(self, num_classes: int, in_channels: int = 1):
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()
        self.embedding_dim = self.fc.in_features


class _PooledClassifier:
    """``features -> avgpool -> classifier``, the classifier ending in a Linear (MobileNetV3, EfficientNet).

    ``embed`` runs the classifier up to that Linear, so ``forward`` equals torchvision's.
    """

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[:-1](torch.flatten(self.avgpool(self.features(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.embed(x))


class TorchvisionMobileNetV3(_PooledClassifier, MobileNetV3):
    pass


class TorchvisionEfficientNet(_PooledClassifier, EfficientNet):
    pass


# torchvision builder name -> our subclass of the class it returns
TORCHVISION_ARCHS: dict[str, type[nn.Module]] = {
    "resnet18": TorchvisionResNet,
    "resnet50": TorchvisionResNet,
    "mobilenet_v3_small": TorchvisionMobileNetV3,
    "mobilenet_v3_large": TorchvisionMobileNetV3,
    "efficientnet_b0": TorchvisionEfficientNet,
}


def _final_linear(model: nn.Module) -> nn.Linear:
    return model.fc if isinstance(model, ResNet) else model.classifier[-1]


def _set_in_channels(model: nn.Module, in_channels: int) -> None:
    """Replace the first conv (the stem) by one that reads ``in_channels`` channels."""
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    stem = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")  # torchvision's conv init
    if stem.bias is not None:
        nn.init.zeros_(stem.bias)
    model.set_submodule(name, stem)


def torchvision_model(arch: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision's ``arch`` (weights=None, a ``num_classes`` head) with ``embed``."""
    cls = TORCHVISION_ARCHS[arch]
    model = tv.get_model(arch, weights=None, num_classes=num_classes)
    # the public builders hold the configs (MobileNetV3's and EfficientNet's are private);
    # our subclasses add methods only, so re-classing the built model changes no module or key
    if type(model) is not cls.__bases__[-1]:
        raise TypeError(f"torchvision's {arch} built a {type(model).__name__}, expected {cls.__bases__[-1].__name__}")
    model.__class__ = cls
    _set_in_channels(model, in_channels)
    model.embedding_dim = _final_linear(model).in_features
    return model


def build(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """``resnet18`` (small-image) or ``torchvision_<arch>``; ``models.build_model`` checks the name."""
    if name == "resnet18":
        return SmallImageResNet18(num_classes, in_channels)
    return torchvision_model(name.removeprefix(TORCHVISION_PREFIX), num_classes, in_channels)
