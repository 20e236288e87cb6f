"""Seeded fuzzing of the image path: mutated PNG, JPEG, GIF, BMP, TIFF and WebP files through
``ingest`` and through ``predict_day``. Shared by the fuzz test and ``bench/bench_fuzz.py``.

Every file must end up ingested with the pixels of a reference decode (written here with
Pillow and numpy, apart from ``lib.common.images``) or quarantined with a reason, and
prediction must skip exactly the files ingest quarantined, for the same reason.
"""

from __future__ import annotations

import io
import random
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import decode_to_array, sha256_hex

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp"}
MUTATIONS = ("none", "flip", "truncate", "header", "splice")
# Reasons a mutated image may be refused for; anything else (unreadable, vanished ...) is a bug here.
IMAGE_REASONS = {"corrupt_image", "not_an_image", "too_many_pixels", "format_not_allowed", "empty_file"}
SIZE, CHANNELS = 16, 1  # what the fuzz champion sees
ATOL = 1.01 / 255  # alpha compositing may round one level apart from the reference


def _save(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _picture(rng: np.random.Generator, channels: int, w: int = 21, h: int = 13) -> np.ndarray:
    """A gradient with noise: smooth enough to compress, asymmetric so a transpose shows."""
    ramp = np.add.outer(np.arange(h) * 9, np.arange(w) * 5) % 256
    noisy = (ramp + rng.integers(0, 40, (h, w))) % 256
    planes = [(noisy + 80 * c) % 256 for c in range(channels)]
    return np.stack(planes, axis=-1).astype(np.uint8) if channels > 1 else noisy.astype(np.uint8)


def _oriented(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def seed_files(seed: int = 0) -> dict[str, list[bytes]]:
    """Valid files of each format, in the modes and encodings the decoder must handle."""
    rng = np.random.default_rng(seed)
    grey, rgb, rgba = (Image.fromarray(_picture(rng, c)) for c in (1, 3, 4))
    palette = rgb.quantize(64)
    wide = Image.frombytes("I;16", grey.size, (_picture(rng, 1).astype("<u2") * 257).tobytes())
    cmyk = Image.fromarray(_picture(rng, 4), "CMYK")
    frames = [palette, rgb.rotate(90, expand=False).quantize(64)]
    return {
        "PNG": [_save(grey, "PNG"), _save(rgb, "PNG"), _save(rgba, "PNG"), _save(palette, "PNG"),
                _save(palette, "PNG", transparency=3), _save(rgba.convert("LA"), "PNG"), _save(wide, "PNG"),
                _save(grey.convert("1"), "PNG"), _save(rgb, "PNG", exif=_oriented(6))],
        "JPEG": [_save(grey, "JPEG"), _save(rgb, "JPEG", quality=90), _save(cmyk, "JPEG"),
                 _save(rgb, "JPEG", progressive=True), _save(rgb, "JPEG", exif=_oriented(8)),
                 _save(rgb, "MPO", save_all=True, append_images=[grey.convert("RGB")])],
        "GIF": [_save(palette, "GIF"), _save(palette, "GIF", transparency=5),
                _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)],
        "BMP": [_save(rgb, "BMP"), _save(grey, "BMP"), _save(palette, "BMP"), _save(grey.convert("1"), "BMP")],
        "TIFF": [_save(rgb, "TIFF"), _save(rgb, "TIFF", compression="tiff_lzw"), _save(grey, "TIFF", compression="packbits"),
                 _save(rgba, "TIFF", compression="tiff_adobe_deflate"), _save(wide, "TIFF"), _save(cmyk, "TIFF"),
                 _save(rgba.convert("LA"), "TIFF")],
        "WEBP": [_save(rgb, "WEBP", quality=80), _save(rgba, "WEBP", lossless=True), _save(grey, "WEBP")],
    }


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    out = bytearray(data)
    if kind == "flip":  # a few bytes anywhere
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del out[rng.randrange(len(out)):]
    elif kind == "header":  # sizes, counts and offsets live in the first bytes
        at = rng.randrange(min(len(out), 64))
        width = rng.randint(1, 4)
        out[at : at + width] = bytes(rng.choice((0x00, 0xFF, rng.randrange(256))) for _ in range(width))
    elif kind == "splice":  # a region duplicated or dropped
        a, b = sorted(rng.randrange(len(out)) for _ in range(2))
        out[a:a] = out[a:b] if rng.random() < 0.5 else b""
        if out == bytearray(data):
            del out[a : b + 1]
    return bytes(out)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk's CRC, so that a mutated PNG reaches the decoder instead of its CRC check."""
    out, at = bytearray(data), 8
    while at + 12 <= len(out):
        length = int.from_bytes(out[at : at + 4], "big")
        end = at + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = zlib.crc32(bytes(out[at + 4 : end])).to_bytes(4, "big")
        at = end + 4
    return bytes(out)


@dataclass(frozen=True)
class FuzzCase:
    name: str
    fmt: str
    mutation: str
    data: bytes


def corpus(per_format: int, seed: int = 0) -> list[FuzzCase]:
    rng = random.Random(seed)
    cases = []
    for fmt, seeds in seed_files(seed).items():
        for i in range(per_format):
            kind = MUTATIONS[i % len(MUTATIONS)]
            data = mutate(seeds[i % len(seeds)], kind, rng)
            if fmt == "PNG" and rng.random() < 0.5:
                data = fix_png_crcs(data)
            cases.append(FuzzCase(f"{fmt.lower()}_{i:05d}_{kind}.{EXTENSIONS[fmt]}", fmt, kind, data))
    return cases


def reference_array(data: bytes, size: int = SIZE, channels: int = CHANNELS) -> np.ndarray:
    """The reference decode: Pillow's decode, ImageOps' orientation, the scaling and compositing in numpy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on the mutated metadata
        img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if img.mode == "F" or img.mode.startswith("I"):  # 16-bit samples scale by 1/256; floats clip to 0..255
        samples = np.asarray(img).astype(np.float64)
        scaled = np.clip(samples, 0, 255).round() if img.mode == "F" else np.clip(samples, 0, 65535) // 256
        img = Image.fromarray(scaled.astype(np.uint8))
    elif img.has_transparency_data:
        rgba = np.asarray(img.convert("RGBA")).astype(np.float64)
        alpha = rgba[..., 3:] / 255.0
        img = Image.fromarray(np.round(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8))
    img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


@dataclass
class FuzzReport:
    ingest: Counter = field(default_factory=Counter)  # (format, outcome)
    predict: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # anything that breaks the contract

    def table(self) -> str:
        """One line per format and stage, then the totals: ``outcome=count`` pairs."""
        lines = []
        for fmt in (*EXTENSIONS, "all"):
            for stage, counts in (("ingest", self.ingest), ("predict", self.predict)):
                mine = Counter()
                for (f, outcome), n in counts.items():
                    mine[outcome] += n if fmt in ("all", f) else 0
                pairs = ", ".join(f"{outcome}={n}" for outcome, n in sorted(mine.items()) if n)
                lines.append(f"{fmt:5} {stage:8} {sum(mine.values()):5} files: {pairs}")
        return "\n".join(lines)


def _ingest_outcomes(cases: list[FuzzCase], root: Path, workers: int) -> tuple[dict[str, str], dict[str, bytes]]:
    """Ingest the corpus as one label: name -> "ingested" or "quarantined:<reason>", and the stored bytes."""
    from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest

    landing, lake_root = root / "landing", str(root / "lake")
    (landing / "0").mkdir(parents=True)
    for case in cases:
        (landing / "0" / case.name).write_bytes(case.data)
    ingest(str(landing), lake_root, IngestPolicy(workers=workers))
    raw = lake.read_at(lake.table_uri(lake_root, lake.RAW_IMAGES), None, ["image_id", "bytes"]).to_pylist()
    stored = {row["image_id"]: row["bytes"] for row in raw}
    q_uri = lake.table_uri(lake_root, lake.QUARANTINE)
    quarantined = lake.read_at(q_uri, None, ["source_uri", "reason"]).to_pylist() if lake.exists(q_uri) else []
    reasons = {row["source_uri"].rsplit("/", 1)[-1]: row["reason"] for row in quarantined}
    outcomes = {}
    for case in cases:  # identical bytes from two mutations are one raw image
        outcomes[case.name] = "ingested" if sha256_hex(case.data) in stored else f"quarantined:{reasons.get(case.name)}"
    return outcomes, stored


def run_fuzz(cases: list[FuzzCase], root: Path, champion, workers: int = 1) -> FuzzReport:
    from rayml_assets.lib.monitoring.inference import predict_day

    report = FuzzReport()
    by_name = {case.name: case for case in cases}
    ingested, stored = _ingest_outcomes(cases, root, workers)
    for name, outcome in ingested.items():
        report.ingest[(by_name[name].fmt, outcome)] += 1
        if outcome.startswith("quarantined:") and outcome.split(":", 1)[1] not in IMAGE_REASONS:
            report.problems.append(f"{name}: ingest gave {outcome}")
    for image_id, data in stored.items():  # ingested pixels are the reference decode's, grey and colour
        for channels in (1, 3):
            try:
                expected = reference_array(data, SIZE, channels)
            except Exception as exc:  # noqa: BLE001 - any failure of the reference is a finding
                report.problems.append(f"{image_id[:12]}: ingested but the reference cannot decode it ({exc!r})")
                break
            got = decode_to_array(data, SIZE, channels)
            if got.shape != expected.shape or np.abs(got - expected).max() > ATOL:
                report.problems.append(f"{image_id[:12]}: ingested pixels ({channels} channels) differ from the reference")

    day = root / "production" / "2026-03-01"
    day.mkdir(parents=True)
    for case in cases:
        (day / case.name).write_bytes(case.data)
    result = predict_day(champion, str(root / "production"), "2026-03-01", batch_size=64)
    predicted = {uri.rsplit("/", 1)[-1] for uri in result.table.column("source_uri").to_pylist()}
    skipped = {s.source_uri.rsplit("/", 1)[-1]: s.reason for s in result.skipped}
    for case in cases:
        outcome = "predicted" if case.name in predicted else f"skipped:{skipped.get(case.name)}"
        report.predict[(case.fmt, outcome)] += 1
        expected = ingested[case.name].replace("quarantined:", "skipped:").replace("ingested", "predicted")
        if outcome != expected:
            report.problems.append(f"{case.name}: ingest {ingested[case.name]} but prediction {outcome}")
    if result.n_files != len(cases):
        report.problems.append(f"prediction listed {result.n_files} of {len(cases)} files")
    return report


def fuzz_champion():
    """An untrained tiny model: the fuzz checks the input path, not accuracy."""
    import torch

    from rayml_assets.lib.monitoring.inference import Champion
    from rayml_assets.lib.training.models import SmallCNN

    torch.manual_seed(0)
    module = SmallCNN(10, CHANNELS, width=4)
    return Champion(module, "fuzz", "1", [str(i) for i in range(10)], 0, "unused://cleaned", SIZE, CHANNELS)
