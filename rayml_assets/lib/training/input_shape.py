"""The model's input shape from the pinned dataset's own statistics, unless the tuning config sets it.

- size: the median short side of the kept images, rounded to a multiple of 8 and held
  within [``MIN_IMAGE_SIZE``, ``MAX_IMAGE_SIZE``] (larger inputs cost CPU time quadratically,
  and the bound keeps the default search inside its time budget on a laptop);
- channels: 3 when at least ``COLOUR_SHARE`` of a stable sample of the images has colour
  (channels that differ), else 1. A grayscale photo stored as RGB counts as grayscale.

Only the ``width``/``height`` columns are read for every row; pixels are decoded for the sample only.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import pyarrow.dataset as pads

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import load_image
from rayml_assets.lib.training.delta_stream import in_sample
from rayml_assets.lib.training.tuning_config import TuningConfig

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 64
COLOUR_SAMPLE = 256  # images decoded to decide grayscale or colour
COLOUR_SHARE = 0.05
# Mean absolute channel spread (0-255) above which an image has colour; JPEG noise on gray is ~1.
COLOUR_SPREAD = 4.0


@dataclass(frozen=True)
class InputShape:
    image_size: int
    channels: int
    source: str  # "config" or "data"
    median_side: float | None = None
    colour_share: float | None = None
    images_sampled: int = 0

    def describe(self) -> str:
        if self.source == "config":
            return f"{self.image_size}px × {self.channels} channel(s), set in the tuning config"
        return (
            f"{self.image_size}px × {self.channels} channel(s), from the data: median short side "
            f"{self.median_side:g}px, {self.colour_share:.0%} of {self.images_sampled} sampled images in colour"
        )


def _kept(table_uri: str, version: int, columns: list[str], storage_options: dict | None):
    return lake.iter_batches(
        table_uri, version, columns, filter=pads.field("excluded") == False,  # noqa: E712
        batch_size=4096, storage_options=storage_options,
    )


def size_from_sides(short_sides: list[int]) -> tuple[int, float]:
    """The input size for these image short sides, and their median."""
    if not short_sides:
        raise ValueError("the dataset has no kept images to take an input size from")
    median = float(statistics.median(short_sides))
    return int(min(MAX_IMAGE_SIZE, max(MIN_IMAGE_SIZE, 8 * round(median / 8)))), median


def has_colour(data: bytes) -> bool:
    img, _ = load_image(data, allowed_formats=None, max_pixels=None)
    if img.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return False
    img = img.convert("RGB")
    img.thumbnail((64, 64))
    pixels = np.asarray(img, dtype=np.int16)
    return float((pixels.max(axis=2) - pixels.min(axis=2)).mean()) > COLOUR_SPREAD


def infer_input_shape(table_uri: str, version: int, storage_options: dict | None = None) -> InputShape:
    """The input shape the kept images of ``table_uri@version`` call for."""
    sides: list[int] = []
    for batch in _kept(table_uri, version, ["width", "height"], storage_options):
        sides.extend(map(min, batch.column("width").to_pylist(), batch.column("height").to_pylist()))
    size, median = size_from_sides(sides)
    fraction = min(1.0, COLOUR_SAMPLE / len(sides))
    colour = sampled = 0
    for batch in _kept(table_uri, version, ["image_id", "bytes"], storage_options):
        for image_id, data in zip(batch.column("image_id").to_pylist(), batch.column("bytes").to_pylist()):
            if in_sample(image_id, fraction):
                sampled += 1
                colour += has_colour(data)
        if sampled >= COLOUR_SAMPLE:
            break
    share = colour / max(sampled, 1)
    return InputShape(size, 3 if share >= COLOUR_SHARE else 1, "data", median, share, sampled)


def with_input_shape(
    config: TuningConfig, table_uri: str, version: int, storage_options: dict | None = None
) -> tuple[TuningConfig, InputShape]:
    """``config`` with ``image_size`` and ``channels`` filled in from the data where it leaves them unset."""
    if config.image_size is not None and config.channels is not None:
        return config, InputShape(config.image_size, config.channels, "config")
    inferred = infer_input_shape(table_uri, version, storage_options)
    shape = InputShape(
        config.image_size or inferred.image_size,
        config.channels or inferred.channels,
        "data",
        inferred.median_side,
        inferred.colour_share,
        inferred.images_sampled,
    )
    return config.model_copy(update={"image_size": shape.image_size, "channels": shape.channels}), shape
