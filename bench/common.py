"""Helpers shared by the benchmarks: synthetic landings and a timer."""

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from rayml_assets.lib.common.images import encode_png
from rayml_assets.sample import training_digits


def synthetic_landing(root: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    """``count`` unique labelled PNGs made from the digits plus noise, at ``size``×``size``."""
    rng = np.random.default_rng(seed)
    digits = training_digits()
    for i in range(count):
        digit = digits[i % len(digits)]
        pixels = np.asarray(Image.fromarray(digit.pixels).resize((size, size), Image.BICUBIC), dtype=np.int16)
        noisy = np.clip(pixels + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
        path = root / digit.label / f"img_{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png(noisy))
    return root


@contextmanager
def timed(results: dict, name: str):
    start = time.perf_counter()
    yield
    results[name] = time.perf_counter() - start
