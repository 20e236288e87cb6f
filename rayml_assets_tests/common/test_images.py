"""Unit tests of validation, hashing and decoding."""

import io

import numpy as np
import pytest
from PIL import Image

from rayml_assets.lib.common.images import (
    ImageRejected,
    RejectReason,
    decode_to_array,
    encode_png,
    sha256_hex,
    validate_image,
)


def _png(size=(32, 32), value=128) -> bytes:
    return encode_png(np.full(size[::-1], value, np.uint8))


def test_valid_png_reports_size_and_format():
    info = validate_image(_png((40, 30)))
    assert (info.width, info.height, info.format) == (40, 30, "PNG")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", RejectReason.EMPTY_FILE),
        (b"uri,label\nx,1\n", RejectReason.NOT_AN_IMAGE),
        (_png()[:40], RejectReason.CORRUPT_IMAGE),
        (_png()[:16] + b"\x00" * 200, RejectReason.CORRUPT_IMAGE),
    ],
)
def test_bad_bytes_are_rejected_with_their_reason(data, reason):
    with pytest.raises(ImageRejected) as exc:
        validate_image(data)
    assert exc.value.reason is reason


def test_format_outside_the_allowed_list_is_rejected():
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="BMP")
    with pytest.raises(ImageRejected) as exc:
        validate_image(buf.getvalue(), allowed_formats=("PNG",))
    assert exc.value.reason is RejectReason.FORMAT_NOT_ALLOWED


def test_decompression_bomb_is_refused_from_the_header():
    # 20000x20000 one-bit image: tiny on disk, 400 Mpx decoded.
    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageRejected) as exc:
        validate_image(buf.getvalue(), max_pixels=1_000_000)
    assert exc.value.reason is RejectReason.TOO_MANY_PIXELS


def test_sha256_is_content_identity():
    assert sha256_hex(_png()) == sha256_hex(_png())
    assert sha256_hex(_png(value=1)) != sha256_hex(_png(value=2))


def test_decode_resizes_and_scales():
    arr = decode_to_array(_png((8, 8), 255), image_size=16, channels=1)
    assert arr.shape == (1, 16, 16) and arr.dtype == np.float32
    assert arr.max() == pytest.approx(1.0)
    assert decode_to_array(_png(), image_size=32, channels=3).shape == (3, 32, 32)
