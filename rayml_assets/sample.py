"""Write the bundled sample dataset (scikit-learn digits) into a landing folder.

    python -m rayml_assets.sample [--landing DIR] [--batches N] [--batch K] [--no-dirty]

Images are 8×8 digits upscaled to 32×32 PNGs in ``<label>/`` folders. A
deliberately dirty part exercises quarantine and cleaning. One in five digits is
held back from training for the production stream (``held_back_digits``).
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from rayml_assets.lib.common.images import encode_png
from rayml_assets.settings import load_profile

IMAGE_SIZE = 32
HOLD_BACK_EVERY = 5  # every 5th digit is reserved for production data, never trained on


@dataclass(frozen=True)
class Digit:
    index: int
    label: str
    pixels: np.ndarray  # uint8 [IMAGE_SIZE, IMAGE_SIZE]


def upscale_digit(image_8x8: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Digits store intensities 0..16; scale to 0..255 and resize smoothly."""
    pixels = np.clip(image_8x8 * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BICUBIC))


def _digits(held_back: bool) -> list[Digit]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return [
        Digit(i, str(int(target)), upscale_digit(image))
        for i, (image, target) in enumerate(zip(data.images, data.target))
        if (i % HOLD_BACK_EVERY == 0) == held_back
    ]


def training_digits() -> list[Digit]:
    return _digits(held_back=False)


def held_back_digits() -> list[Digit]:
    return _digits(held_back=True)


def _dirty_files(base: Digit, other: Digit) -> dict[str, bytes]:
    """Relative path → bytes for each kind of bad or redundant input."""
    png = encode_png(base.pixels)
    same_pixels = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "same pixels, different bytes")
    Image.fromarray(base.pixels).save(same_pixels, format="PNG", pnginfo=info)
    resized = Image.fromarray(base.pixels).resize((24, 24), Image.BICUBIC).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
    jpeg = io.BytesIO()
    Image.fromarray(other.pixels).save(jpeg, format="JPEG", quality=95)
    return {
        f"{base.label}/dirty_exact_duplicate.png": png,  # byte-identical: collapses on image_id at ingest
        f"{base.label}/dirty_exact_duplicate_pixels.png": same_pixels.getvalue(),
        f"{base.label}/dirty_near_duplicate_resized.png": encode_png(np.asarray(resized)),
        f"{other.label}/dirty_near_duplicate_reencoded.jpg": jpeg.getvalue(),
        f"{base.label}/dirty_corrupt_truncated.png": png[: len(png) // 2],
        f"{base.label}/dirty_corrupt_garbage.png": png[:16] + bytes(range(256)) * 4,
        f"{base.label}/dirty_zero_byte.png": b"",
        f"{base.label}/dirty_not_an_image.png": b"label,comment\n3,this is a CSV with a .png name\n",
        f"{base.label}/dirty_all_black.png": encode_png(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)),
        "cat/dirty_unknown_label.png": encode_png(other.pixels[::-1].copy()),
    }


def write_batches(
    landing: Path, batches: int = 1, only_batch: int | None = None, dirty: bool = True, limit: int | None = None
) -> list[Path]:
    """Write the training digits (split into ``batches`` arrival batches) and return written paths.

    Batch ``b`` holds every digit with ``position % batches == b``; the dirty part
    lands with batch 0. ``only_batch`` writes a single batch, to simulate arrivals;
    ``limit`` keeps only the first digits (tiny datasets for tests). With more than one
    batch, each lands in its own ``<label>/batch_<b>/`` folder: the layout that a
    landing sensor finds in one tick whatever the landing's size (docs/automation.md).
    """
    digits = training_digits()[:limit]
    written: list[Path] = []

    def put(rel: str, data: bytes) -> None:
        path = landing / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)

    for batch in range(batches):
        if only_batch is not None and batch != only_batch:
            continue
        for position, digit in enumerate(digits):
            if position % batches == batch:
                folder = f"{digit.label}/batch_{batch:03d}" if batches > 1 else digit.label
                put(f"{folder}/digit_{digit.index:04d}.png", encode_png(digit.pixels))
        if dirty and batch == 0:
            for rel, data in _dirty_files(digits[0], digits[1]).items():
                put(rel, data)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--landing", type=Path, help="target folder (default: the profile's landing_uri)")
    parser.add_argument("--batches", type=int, default=1, help="split the data into this many arrival batches")
    parser.add_argument("--batch", type=int, help="write only this batch (0-based)")
    parser.add_argument("--no-dirty", action="store_true", help="skip the deliberately dirty files")
    parser.add_argument("--limit", type=int, help="write only the first N digits")
    args = parser.parse_args(argv)
    landing = args.landing or Path(load_profile().landing_uri.removeprefix("file://"))
    written = write_batches(landing, args.batches, args.batch, dirty=not args.no_dirty, limit=args.limit)
    print(f"wrote {len(written)} files to {landing}")


if __name__ == "__main__":
    main()
