"""One bad production file is skipped with its reason; the day's other images are predicted.

Issue 12 point 6: a decompression-bomb PNG raised DecompressionBombError in predict_day,
and so did fuzzed BMP, GIF and TIFF files whose headers claim billions of pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rayml_assets.lib.common.contract import LakeSettings
from rayml_assets.lib.common.images import encode_png
from rayml_assets.lib.monitoring.contract import PredictStep
from rayml_assets.lib.monitoring.drift_task import predictions_step
from rayml_assets.lib.monitoring.inference import Champion, predict_day
from rayml_assets.lib.training.models import SmallCNN

DAY = "2026-01-05"
HUGE = 20_000  # 20000 x 20000 = 400 Mpx: over Pillow's own bomb limit (179 Mpx), not only ours
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def champion():
    torch.manual_seed(0)
    return Champion(SmallCNN(10, 1, width=4), "tiny", "3", [str(i) for i in range(10)], 7, "unused://cleaned")


def _small(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _bomb_png() -> bytes:
    """A real PNG whose IHDR (CRC fixed) claims HUGE x HUGE."""
    data = bytearray(_small("PNG"))
    data[16:24] = struct.pack(">II", HUGE, HUGE)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _bomb_bmp() -> bytes:
    data = bytearray(_small("BMP"))
    data[18:26] = struct.pack("<ii", HUGE, HUGE)  # BITMAPINFOHEADER width, height
    return bytes(data)


def _bomb_gif() -> bytes:
    data = bytearray(_small("GIF"))
    data[6:10] = struct.pack("<HH", 0xFFFF, 0xFFFF)  # the logical screen: 4.3 Gpx
    return bytes(data)


def _bomb_tiff() -> bytes:
    """A little-endian TIFF whose first IFD's ImageWidth and ImageLength say HUGE."""
    data = bytearray(_small("TIFF"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<HHII" if kind == 4 else "<HHIHH", data, entry, tag, kind, 1, HUGE, *(() if kind == 4 else (0,)))
    return bytes(data)


BAD = {
    "bomb.png": (_bomb_png, "too_many_pixels"),
    "bomb.bmp": (_bomb_bmp, "too_many_pixels"),
    "bomb.gif": (_bomb_gif, "too_many_pixels"),
    "bomb.tif": (_bomb_tiff, "too_many_pixels"),
    "broken.png": (lambda: b"\x89PNG\r\n\x1a\n garbage", "corrupt_image"),
    "notes.jpg": (lambda: b"not an image at all", "not_an_image"),
    "empty.png": (lambda: b"", "empty_file"),
}


@pytest.fixture
def bad_day(tmp_path):
    day = tmp_path / "production" / DAY
    day.mkdir(parents=True)
    good = [encode_png(np.full((32, 32), v, np.uint8)) for v in (0, 128, 255)]
    for i, data in enumerate(good):
        (day / f"img_{i}.png").write_bytes(data)
    for name, (make, _) in BAD.items():
        (day / name).write_bytes(make())
    return str(tmp_path / "production"), good


def test_every_bad_file_is_skipped_with_its_reason_and_the_rest_predicted(bad_day, champion):
    production, good = bad_day
    result = predict_day(champion, production, DAY, batch_size=2)
    assert result.table.column("image_id").to_pylist() == [hashlib.sha256(b).hexdigest() for b in good]
    assert result.n_files == len(good) + len(BAD)
    assert {os.path.basename(s.source_uri): s.reason for s in result.skipped} == {n: r for n, (_, r) in BAD.items()}
    summary = result.skipped_summary(max_examples=2)
    assert summary["n_skipped"] == len(BAD)
    assert summary["skipped_by_reason"] == {"corrupt_image": 1, "empty_file": 1, "not_an_image": 1, "too_many_pixels": 4}
    assert len(summary["skipped_files"]) == 2
    assert set(summary["skipped_files"][0]) == {"source_uri", "reason", "detail"}


def test_special_and_oversized_production_files_are_skipped_unopened(tmp_path, champion):
    day = tmp_path / DAY
    day.mkdir()
    (day / "good.png").write_bytes(encode_png(np.full((32, 32), 5, np.uint8)))
    (day / "huge.png").write_bytes(encode_png(np.full((32, 32), 6, np.uint8)) + b"\0" * 2048)
    os.mkfifo(day / "pipe.png")  # read as before, this blocked the day forever
    os.symlink("/dev/zero", day / "zero.png")
    result = predict_day(champion, str(tmp_path), DAY, max_file_bytes=1024)
    assert result.table.num_rows == 1
    reasons = {os.path.basename(s.source_uri): s.reason for s in result.skipped}
    assert reasons == {"huge.png": "too_large", "pipe.png": "not_a_regular_file", "zero.png": "not_a_regular_file"}


def test_the_predictions_metadata_counts_the_skipped_files_and_names_a_few_with_reasons(bad_day, champion, tmp_path):
    production, good = bad_day
    params = SimpleNamespace(lake=LakeSettings(root=str(tmp_path / "lake")), dates=[DAY])
    lines: list[str] = []
    [meta] = predictions_step(params, PredictStep(production_root=production), champion, lines.append)
    assert meta["dagster/row_count"] == len(good) and meta["n_skipped"] == len(BAD)
    assert meta["skipped_by_reason"]["raw_value"]["too_many_pixels"] == 4
    examples = meta["skipped_files"]["raw_value"]
    assert 0 < len(examples) <= 10 and all(e["reason"] and e["source_uri"] for e in examples)
    assert sum("skipped" in line for line in lines) == len(BAD)
