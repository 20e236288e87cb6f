"""Image validation, identity and decoding: pure functions, no I/O beyond bytes."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image, UnidentifiedImageError

from rayml_assets.lib.common.image_limits import DEFAULT_ALLOWED_FORMATS, DEFAULT_MAX_PIXELS

# Leading bytes of the formats Pillow can decode here: a file that starts like an
# image but fails to decode is corrupt; anything else is not an image at all.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"RIFF")


class RejectReason(str, Enum):
    """Why a landed file was quarantined. Values are stored in the quarantine table."""

    EMPTY_FILE = "empty_file"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    FORMAT_NOT_ALLOWED = "format_not_allowed"
    TOO_MANY_PIXELS = "too_many_pixels"
    UNKNOWN_LABEL = "unknown_label"
    PATH_ESCAPES_ROOT = "path_escapes_root"
    UNREADABLE = "unreadable"
    VANISHED = "vanished"  # listed, then gone when read
    TOO_LARGE = "too_large"
    INVALID_LABEL = "invalid_label"
    LABEL_CONFLICT = "label_conflict"  # the same bytes landed under more than one label


# Rejections that say nothing lasting about the file: it is read again at every ingest.
TRANSIENT_REASONS = frozenset({RejectReason.UNREADABLE.value, RejectReason.VANISHED.value})


class ImageRejected(Exception):
    def __init__(self, reason: RejectReason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_image(
    data: bytes,
    *,
    allowed_formats: tuple[str, ...] = DEFAULT_ALLOWED_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Check that ``data`` is a fully decodable image of an allowed format and size.

    The pixel count is read from the header *before* decoding, so a
    decompression bomb is refused without allocating its pixels.
    """
    if not data:
        raise ImageRejected(RejectReason.EMPTY_FILE, "file has zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height, fmt = img.width, img.height, (img.format or "").upper()
                if width * height > max_pixels:
                    raise ImageRejected(
                        RejectReason.TOO_MANY_PIXELS,
                        f"{width}x{height} exceeds max_pixels={max_pixels}",
                    )
                if fmt not in allowed_formats:
                    raise ImageRejected(
                        RejectReason.FORMAT_NOT_ALLOWED, f"format {fmt or 'unknown'} not in {list(allowed_formats)}"
                    )
                img.load()  # forces a full decode: truncated/corrupt data fails here
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if not data.startswith(_MAGIC):
            raise ImageRejected(RejectReason.NOT_AN_IMAGE, f"no known image signature (starts {data[:8]!r})") from exc
        message = "cannot identify image data" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ImageRejected(RejectReason.CORRUPT_IMAGE, f"{type(exc).__name__}: {message}") from exc
    return ImageInfo(width=width, height=height, format=fmt)


def decode_to_array(data: bytes, image_size: int = 32, channels: int = 1) -> np.ndarray:
    """Decode to a float32 ``[channels, image_size, image_size]`` array scaled to [0, 1]."""
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    if channels == 1:
        return arr[None, :, :]
    return arr.transpose(2, 0, 1).copy()


def encode_png(array: np.ndarray) -> bytes:
    """Encode a uint8 ``[H, W]`` or ``[H, W, 3]`` array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
