"""Held-out near-duplicate datasets: distinct images plus edited copies of some of them.

Distinct digits: scikit-learn's 8x8 digits whose normalized correlation with every other
chosen digit is below 0.95 (load_digits holds genuinely near-identical pairs).
Distinct photos: crops of skimage.data photos, each moved by a quarter window, turned 12°
or scaled 30 % from every other crop of the same photo, then colour-jittered.
A copy is cropped by up to 5 % per axis (split at random between the sides), resized by
±10 % and re-encoded as JPEG at quality 70-95.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' image helpers are not installed

from rayml_assets_tests.dataset.image_sets import jpeg_copy, png  # noqa: E402

PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
          "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "cell", "logo")


def edited_copy(img: Image.Image, rng: np.random.Generator) -> bytes:
    left, top = rng.uniform(0, 0.05, 2)
    crop = (left, top, rng.uniform(0, 0.05 - left), rng.uniform(0, 0.05 - top))
    return jpeg_copy(img, scale=rng.uniform(0.9, 1.1), quality=int(rng.integers(70, 96)), crop=crop)


def distinct_digits(count: int, size: int = 32, max_correlation: float = 0.95) -> list[Image.Image]:
    from sklearn.datasets import load_digits

    from rayml_assets.sample import upscale_digit

    images = load_digits().images
    flat = images.reshape(len(images), -1)
    z = flat - flat.mean(1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    picked: list[int] = []
    for i in range(len(z)):
        if not picked or (z[picked] @ z[i]).max() < max_correlation:
            picked.append(i)
    if len(picked) < count:
        raise ValueError(f"only {len(picked)} digits are mutually distinct at correlation < {max_correlation}")
    return [Image.fromarray(upscale_digit(images[i], size)) for i in picked[:count]]


def _photo_sources() -> list[Image.Image]:
    import skimage.data

    sources = []
    for name in PHOTOS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = np.asarray(getattr(skimage.data, name)())
        rgb = pixels[..., :3] if pixels.ndim == 3 else pixels  # logo has alpha
        sources.append(Image.fromarray(rgb.astype(np.uint8)).convert("RGB"))
    return sources


def distinct_photos(count: int, size: int = 256, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sources = _photo_sources()
    crops: dict[int, list[tuple[float, float, float, float]]] = {i: [] for i in range(len(sources))}
    out: list[Image.Image] = []
    while len(out) < count:
        i = int(rng.integers(len(sources)))
        src = sources[i]
        width, height = src.size
        side = rng.uniform(0.35, 0.75) * min(width, height)
        cx, cy = rng.uniform(side / 2, width - side / 2), rng.uniform(side / 2, height - side / 2)
        angle = rng.uniform(-30, 30)
        if any(
            np.hypot(cx - x, cy - y) < 0.25 * min(side, s) and abs(angle - a) < 12 and max(side, s) / min(side, s) < 1.3
            for x, y, s, a in crops[i]
        ):
            continue
        crops[i].append((cx, cy, side, angle))
        turned = src.rotate(angle, resample=Image.BICUBIC, center=(cx, cy))
        box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
        img = turned.crop(box).resize((size, size), Image.BICUBIC)
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast):
            img = enhance(img).enhance(rng.uniform(0.8, 1.2))
        out.append(ImageEnhance.Color(img).enhance(rng.uniform(0.7, 1.3)))
    return out


def dataset(kind: str, distinct: int, copies: int, seed: int = 1) -> tuple[list[bytes], dict[int, int]]:
    """(encoded images, copy index → index of its original); originals come first."""
    originals = distinct_digits(distinct) if kind == "digits32" else distinct_photos(distinct)
    rng = np.random.default_rng(seed)
    sources = rng.choice(distinct, size=copies, replace=False)
    encoded = [png(img) for img in originals] + [edited_copy(originals[s], rng) for s in sources]
    return encoded, {distinct + k: int(s) for k, s in enumerate(sources)}
