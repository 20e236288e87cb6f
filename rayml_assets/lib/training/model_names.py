"""The model names ``build_model`` accepts; no torch import, so configs can validate against it."""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = (
    "small_cnn",  # ours, 128-d embedding, for 16-64 px images on CPUs
    "resnet18",  # small-image ResNet-18 (3x3 stride-1 stem, no max-pool)
    # torchvision's own architectures, ImageNet stem and torchvision's state-dict keys
    "torchvision_resnet18",
    "torchvision_resnet50",
    "torchvision_mobilenet_v3_small",
    "torchvision_mobilenet_v3_large",
    "torchvision_efficientnet_b0",
)
