"""Image validation, identity and decoding: pure functions, no I/O beyond bytes.

Validation and the model's decode share one path (:func:`load_image`), so every
image that ingest accepts decodes for training, and a production file that would
be quarantined at ingest is skipped at prediction.
"""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import ExifTags, Image

from rayml_assets.lib.common.image_limits import DEFAULT_ALLOWED_FORMATS, DEFAULT_MAX_PIXELS

# Leading bytes of the formats Pillow can decode here: a file that starts like an
# image but fails to decode is corrupt; anything else is not an image at all.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"RIFF")

# Formats Pillow names apart from the one a policy allows: a camera's multi-picture
# JPEG (MPO) starts with a plain JPEG, which is the picture decoded.
FORMAT_ALIASES = {"MPO": "JPEG"}

# Transparent pixels are composited on white: what viewers and browsers show behind
# them, so the model sees what the person who labelled the file saw.
ALPHA_BACKGROUND = (255, 255, 255)

# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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
    NOT_A_REGULAR_FILE = "not_a_regular_file"  # FIFO, device, socket, broken symlink: never opened
    NAME_NOT_UTF8 = "name_not_utf8"  # a path the tables cannot store as text: never read


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


def _checked_header(img: Image.Image, allowed_formats: tuple[str, ...] | None, max_pixels: int | None) -> ImageInfo:
    fmt = (img.format or "").upper()
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if max_pixels is not None and img.width * img.height > max_pixels:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, f"{img.width}x{img.height} exceeds max_pixels={max_pixels}")
    if allowed_formats is not None and fmt not in allowed_formats:
        raise ImageRejected(RejectReason.FORMAT_NOT_ALLOWED, f"format {fmt or 'unknown'} not in {list(allowed_formats)}")
    return ImageInfo(width=img.width, height=img.height, format=fmt)


def _wide_to_8bit(img: Image.Image) -> Image.Image:
    """Integer samples are 16-bit (PNG/TIFF ``I;16*``, and ``I`` as older Pillow loads them):
    the high byte, as ``>> 8``. Float samples are on Pillow's 0..255 scale. Out of range clips."""
    samples = np.asarray(img)
    if img.mode == "F":
        return Image.fromarray(np.clip(np.nan_to_num(samples), 0, 255).round().astype(np.uint8))
    return Image.fromarray((np.clip(samples.astype(np.int64), 0, 65535) >> 8).astype(np.uint8))


def _model_pixels(img: Image.Image) -> Image.Image:
    """Upright 8-bit ``L`` or ``RGB``, transparency composited on ``ALPHA_BACKGROUND``."""
    # Read before any conversion: a converted copy no longer carries the file's EXIF.
    upright = _UPRIGHT.get(img.getexif().get(ExifTags.Base.Orientation, 1))
    if img.mode == "F" or img.mode.startswith("I"):  # Pillow's convert would clip 16-bit samples to 255
        img = _wide_to_8bit(img)
    elif img.has_transparency_data:  # LA, RGBA, PA, and palette or colour-key (tRNS) transparency
        background = Image.new("RGBA", img.size, (*ALPHA_BACKGROUND, 255))
        img = Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    elif img.mode not in ("L", "RGB"):  # 1, P, CMYK, YCbCr, LAB ...
        img = img.convert("L" if img.mode == "1" else "RGB")
    return img.transpose(upright) if upright is not None else img


@functools.lru_cache(maxsize=64)  # one policy checks many files
def _plugins(allowed_formats: tuple[str, ...] | None) -> tuple[str, ...] | None:
    # Only the plugins of image formats we take: Pillow would otherwise try every one
    # it has on untrusted bytes (EPS runs Ghostscript). The defaults stay, so a file of a
    # known format the policy refuses is told apart from one that is no image at all.
    if allowed_formats is None:
        return None
    Image.init()  # registers every plugin: a name Pillow has none for (a typo) is left out, not a KeyError
    return tuple(sorted(f for f in set(DEFAULT_ALLOWED_FORMATS) | set(allowed_formats) if f in Image.OPEN))


def _rejection(data: bytes, exc: Exception) -> ImageRejected:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageRejected(RejectReason.TOO_MANY_PIXELS, str(exc))
    if not data.startswith(_MAGIC):
        return ImageRejected(RejectReason.NOT_AN_IMAGE, f"no known image signature (starts {data[:8]!r})")
    message = "cannot identify image data" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
    return ImageRejected(RejectReason.CORRUPT_IMAGE, f"{type(exc).__name__}: {message}")


def load_image(
    data: bytes,
    *,
    allowed_formats: tuple[str, ...] | None = DEFAULT_ALLOWED_FORMATS,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[Image.Image, ImageInfo]:
    """Fully decode ``data`` to the pixels the model sees (see ``_model_pixels``) and its header info.

    The pixel count is read from the header *before* decoding, so a decompression
    bomb is refused without allocating its pixels. Any failure is an
    :class:`ImageRejected`; ``None`` limits skip that check (already-validated bytes).
    """
    if not data:
        raise ImageRejected(RejectReason.EMPTY_FILE, "file has zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Pillow's notes on malformed metadata ("Corrupt EXIF data"): the outcome says enough.
            warnings.simplefilter("ignore", UserWarning)
            img = Image.open(io.BytesIO(data), formats=_plugins(None if allowed_formats is None else tuple(allowed_formats)))
            info = _checked_header(img, allowed_formats, max_pixels)
            img.load()  # forces a full decode: truncated/corrupt data fails here
            return _model_pixels(img), info
    except ImageRejected:
        raise
    # Pillow's parsers raise many types on malformed bytes (struct.error, IndexError,
    # EOFError, ZeroDivisionError ...): any of them means this file does not decode.
    except Exception as exc:
        raise _rejection(data, exc) from exc


def validate_image(
    data: bytes,
    *,
    allowed_formats: tuple[str, ...] = DEFAULT_ALLOWED_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Check that ``data`` is an image of an allowed format and size that decodes for the model."""
    return load_image(data, allowed_formats=allowed_formats, max_pixels=max_pixels)[1]


def decode_to_array(
    data: bytes,
    image_size: int = 32,
    channels: int = 1,
    *,
    allowed_formats: tuple[str, ...] | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode to a float32 ``[channels, image_size, image_size]`` array scaled to [0, 1].

    Without limits (bytes ingest validated) only Pillow's own bomb guard applies;
    untrusted bytes (production) pass the ingest limits. Raises :class:`ImageRejected`.
    """
    img, _ = load_image(data, allowed_formats=allowed_formats, max_pixels=max_pixels)
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
