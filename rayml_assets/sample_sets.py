"""Image datasets for trying the project on something other than digits, built from photos
that ship inside scikit-image (no download).

    python -m rayml_assets.sample_sets photos   --out DIR [--per-class 160] [--size 96] [--seed 0]
    python -m rayml_assets.sample_sets textures --out DIR [--per-class 60] [--size 64] [--seed 0]
    python -m rayml_assets.sample_sets photos   --out DIR --production-day 2026-01-01 [--per-class 10]

Each class is one photo; an image is a random crop of it (position, scale, flip,
brightness and contrast jitter), resized to ``size`` and saved as JPEG, so no two
images are the same and a classifier must recognise the content, not the file.

- ``photos``: 5 RGB classes named after the photo (``astronaut``, ``cat``, ``coffee``,
  ``rocket``, and ``camera``, a grayscale photo stored as RGB), crops of 20-50 % of the
  photo's short side. What a new user with their own photos would land.
- ``textures``: 12 grayscale classes (brick, grass, gravel, camera, coins, page, text, astronaut,
  coffee, cat, rocket, immunohistochemistry), small crops (15-35 %): texture and local structure,
  where pixels in a fixed position say little.

Labels land as ``<label>/<file>.jpg`` folders; ``--production-day`` writes a production
day folder instead (``<out>/<YYYY-MM-DD>/<file>.jpg``, no labels), from another seed.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

PHOTOS = ("astronaut", "cat", "coffee", "rocket", "camera")
# Sharp photos only: crops of smooth ones (moon, clock, cell) are excluded by cleaning as too blurry.
TEXTURES = (
    "brick", "grass", "gravel", "camera", "coins", "page", "text", "astronaut", "coffee", "cat", "rocket",
    "immunohistochemistry",
)
SETS: dict[str, dict] = {
    "photos": {"classes": PHOTOS, "mode": "RGB", "scale": (0.2, 0.5), "size": 96, "per_class": 160},
    "textures": {"classes": TEXTURES, "mode": "L", "scale": (0.15, 0.35), "size": 64, "per_class": 60},
}


def _photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def random_crop(photo: Image.Image, size: int, scale: tuple[float, float], rng: np.random.Generator) -> Image.Image:
    """A square crop of ``scale`` × the short side at a random place, jittered, resized to ``size``."""
    side = int(min(photo.size) * rng.uniform(*scale))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.7, 1.3))
    return ImageEnhance.Contrast(crop).enhance(rng.uniform(0.7, 1.3))


def jpeg(image: Image.Image, rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=int(rng.integers(75, 96)))
    return out.getvalue()


def build(
    kind: str, out: Path, per_class: int | None = None, size: int | None = None, seed: int = 0,
    folder_of: Callable[[str], str] | None = None,
) -> int:
    """Write ``per_class`` crops of each class of set ``kind`` under ``out``; returns the file count.

    ``folder_of(label)`` names each file's folder (default: the label, a training landing).
    """
    spec = SETS[kind]
    size, per_class = size or spec["size"], per_class or spec["per_class"]
    rng = np.random.default_rng(seed)
    written = 0
    for label in spec["classes"]:
        photo = _photo(label).convert(spec["mode"])
        folder = out / (folder_of(label) if folder_of else label)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            name = f"{label}_{seed}_{i:04d}.jpg"
            (folder / name).write_bytes(jpeg(random_crop(photo, size, spec["scale"], rng), rng))
            written += 1
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(SETS))
    parser.add_argument("--out", type=Path, required=True, help="landing folder to write into")
    parser.add_argument("--per-class", type=int, help="images per class (default: 160 photos, 60 textures)")
    parser.add_argument("--size", type=int, help="image side in pixels (default: 96 photos, 64 textures)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--production-day", help="write an unlabelled production day folder <out>/<YYYY-MM-DD>/")
    args = parser.parse_args(argv)
    day = args.production_day
    if day:
        from rayml_assets.lib.monitoring.production import partition_key

        day = partition_key(day)
    count = build(
        args.kind, args.out, args.per_class, args.size,
        # another seed than the training set's, so production images are new crops
        seed=args.seed + 1000 if day else args.seed,
        folder_of=(lambda _label: day) if day else None,
    )
    print(f"wrote {count} {args.kind} images to {args.out / day if day else args.out}")


if __name__ == "__main__":
    main()
