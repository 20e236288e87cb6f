"""Held-out images for the cleaning tests and bench/bench_near_duplicates.py: files, copies, distinct sets."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from rayml_assets.lib.dataset.cleaning_backend import ImageFile


def png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def jpeg_copy(img: Image.Image, scale: float, quality: int = 90, crop: tuple[float, ...] = (0, 0, 0, 0)) -> bytes:
    """``img`` cropped by the (left, top, right, bottom) fractions, resized by ``scale``, re-encoded as JPEG."""
    w, h = img.size
    left, top, right, bottom = crop
    img = img.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    out = io.BytesIO()
    img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def write_files(folder: Path, encoded: list[bytes]) -> list[ImageFile]:
    """Each image under its sha256 (its image_id), as cleaning's export names them."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for data in encoded:
        image_id = hashlib.sha256(data).hexdigest()
        path = folder / (image_id + (".jpg" if data.startswith(b"\xff\xd8") else ".png"))
        path.write_bytes(data)
        files.append(ImageFile(image_id, path))
    return files
