"""Batch augmentation for small images, on the training ranks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    max_degrees: float = 10.0,
    max_translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
) -> torch.Tensor:
    """Small random rotation/shift/scale per image, done for the whole batch at once."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    s = scale[0] + torch.rand(n, generator=generator) * (scale[1] - scale[0])
    # affine_grid works in [-1, 1] coordinates: a shift of f * width is 2f there
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * max_translate)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)
