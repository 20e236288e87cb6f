"""The pixels the model sees: every accepted mode decodes as a reference conversion done here with numpy.

Issue 12 point 4: 16-bit samples, palettes, transparency (composited on white), CMYK,
EXIF orientation, and camera MPO files accepted as JPEG.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rayml_assets.lib.common.images import ALPHA_BACKGROUND, decode_to_array, validate_image

W, H = 24, 16  # not square: a rotation that is missed changes the picture
RNG = np.random.default_rng(12)


def _save(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _decoded(data: bytes, channels: int, size: int | None = None) -> np.ndarray:
    """What the model gets, as 0..255 ``[H, W]`` or ``[H, W, 3]``; unresized when the image is square."""
    arr = decode_to_array(data, size or W, channels)
    return (arr[0] if channels == 1 else arr.transpose(1, 2, 0)) * 255.0


def _resized(ref: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(ref).resize((size, size), Image.BILINEAR), dtype=np.float64)


def _on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float64) / 255.0
    return np.round(colour * a + np.array(ALPHA_BACKGROUND) * (1 - a)).astype(np.uint8)


def _square(shape) -> tuple[int, ...]:
    return (W, W, *shape[2:])


def test_white_is_the_documented_background():
    assert ALPHA_BACKGROUND == (255, 255, 255)


@pytest.mark.parametrize("fmt, mode", [("PNG", "I;16"), ("TIFF", "I;16"), ("TIFF", "I;16B"), ("PNG", "I")])
def test_16_bit_grayscale_is_scaled_not_saturated(fmt, mode):
    samples = RNG.integers(0, 65536, _square((W, W)), dtype=np.uint16)
    # frombytes: Pillow's own convert between 16-bit modes clips too
    raw = samples.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    img = Image.frombytes(mode if mode != "I" else "I;16", (W, W), raw)
    img = img.convert("I") if mode == "I" else img
    got = _decoded(_save(img, fmt), channels=1)
    assert (got == 255).mean() < 0.01, "16-bit samples must not saturate"
    np.testing.assert_array_equal(got, samples >> 8)


def test_palette_without_transparency_maps_through_the_palette():
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, _square((W, W)), dtype=np.uint8)
    img = Image.fromarray(index, "L").convert("P")
    img.putpalette(palette.tobytes())
    np.testing.assert_array_equal(_decoded(_save(img, "PNG"), channels=3), palette[index])


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_composited_on_white(fmt):
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, _square((W, W)), dtype=np.uint8)
    img = Image.fromarray(index, "L").convert("P")
    img.putpalette(palette.tobytes())
    data = _save(img, fmt, transparency=7)
    expected = palette[index].copy()
    expected[index == 7] = ALPHA_BACKGROUND
    np.testing.assert_array_equal(_decoded(data, channels=3), expected)


@pytest.mark.parametrize("mode, fmt", [("RGBA", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP"), ("LA", "TIFF"), ("PA", "TIFF")])
def test_alpha_is_composited_on_white(mode, fmt):
    colour = RNG.integers(0, 256, _square((W, W, 3)), dtype=np.uint8)
    alpha = RNG.integers(0, 256, _square((W, W)), dtype=np.uint8)
    alpha[:4] = 0  # fully transparent rows: whatever colour they hide, they show white
    if mode == "PA":
        palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
        index = RNG.integers(0, 256, _square((W, W)), dtype=np.uint8)
        img = Image.fromarray(index, "L").convert("P")
        img.putpalette(palette.tobytes())
        img = img.convert("PA")
        img.putalpha(Image.fromarray(alpha))
        colour = palette[index]
    else:
        grey = np.asarray(Image.fromarray(colour).convert("L"))
        colour = colour if mode == "RGBA" else np.repeat(grey[..., None], 3, axis=2)
        base = Image.fromarray(colour if mode == "RGBA" else grey)
        img = Image.merge(mode, (*base.split(), Image.fromarray(alpha)))
    data = _save(img, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    expected = _on_white(colour, alpha)
    got = _decoded(data, channels=3)
    assert np.abs(got - expected).max() <= 1
    assert (got[:4] == 255).all()


def test_cmyk_is_converted_to_rgb():
    cmyk = RNG.integers(0, 256, _square((W, W, 4)), dtype=np.uint8)
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    expected = (255 - c) * (255 - k) / 255
    got = _decoded(_save(Image.fromarray(cmyk, "CMYK"), "TIFF"), channels=3)
    assert np.abs(got - expected).max() <= 1


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# EXIF orientation -> what a viewer does to the stored pixels, in numpy terms.
_VIEW = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),  # mirrored across the main diagonal
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # across the other diagonal
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(_VIEW))
def test_exif_orientation_is_applied(orientation):
    stored = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    data = _save(Image.fromarray(stored), "PNG", exif=_exif(orientation))
    expected = _resized(np.ascontiguousarray(_VIEW[orientation](stored)), 20)
    np.testing.assert_array_equal(_decoded(data, channels=1, size=20), expected)


def test_a_rotated_camera_jpeg_is_upright():
    stored = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    data = _save(Image.fromarray(stored), "JPEG", exif=_exif(6), quality=95)
    as_stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # the JPEG's own (lossy) pixels
    expected = _resized(np.ascontiguousarray(np.rot90(as_stored, -1)), 20)
    np.testing.assert_array_equal(_decoded(data, channels=3, size=20), expected)


def test_camera_mpo_is_accepted_as_jpeg_and_decodes_its_first_picture():
    first = RNG.integers(0, 256, (W, W, 3), dtype=np.uint8)
    second = Image.fromarray(255 - first)
    data = _save(Image.fromarray(first), "MPO", save_all=True, append_images=[second], quality=95)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    info = validate_image(data)
    assert (info.width, info.height, info.format) == (W, W, "JPEG")
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # frame 0
    np.testing.assert_array_equal(_decoded(data, channels=3), reference)


@pytest.mark.parametrize("mode", ["1", "L", "RGB"])
def test_plain_modes_are_unchanged(mode):
    pixels = RNG.integers(0, 256, _square((W, W, 3)), dtype=np.uint8)
    img = Image.fromarray(pixels).convert(mode)
    reference = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(_decoded(_save(img, "PNG"), channels=3), reference)


def test_a_format_name_pillow_does_not_know_is_ignored_not_fatal():
    # Pillow raises KeyError for such a name in Image.open(formats=...): every file would be refused.
    png = _save(Image.new("L", (4, 4)), "PNG")
    assert validate_image(png, allowed_formats=("JPG", "PNG")).format == "PNG"
