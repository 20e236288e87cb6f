"""Both cleaning backends on held-out images: near-duplicates at 32 px and 256 px, exposure, and the asset."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import encode_png
from rayml_assets.lib.dataset.cleaning import CleaningThresholds, ExclusionReason, ImageFile, backend_named, decide_exclusions
from rayml_assets.sample import held_back_digits
from rayml_assets_tests.dataset.image_sets import jpeg_copy, png, write_files

BACKENDS = ["fastdup", "open"]


def distinct_digits(count: int) -> Iterator[Image.Image]:
    """Held-out digits no two of which are near-identical already (load_digits has such pairs)."""
    chosen: list[np.ndarray] = []
    for digit in held_back_digits():
        v = digit.pixels.astype(np.float64).ravel()
        v = (v - v.mean()) / np.linalg.norm(v - v.mean())
        if all(v @ c < 0.95 for c in chosen):
            chosen.append(v)
            yield Image.fromarray(digit.pixels)
        if len(chosen) == count:
            return


def photo_crops(count: int, size: int = 256) -> list[Image.Image]:
    """Crops at the photos' own resolution (upscaled ones are too blurry), 48 px apart: different pictures."""
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        photos = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("astronaut", "coffee", "camera", "rocket")]
    crops = []
    for i in range(count):
        j = i // len(photos)
        x, y = (j % 5) * 48, (j // 5) * 48
        crops.append(photos[i % len(photos)].crop((x, y, x + size, y + size)))
    return crops


def clean_files(backend: str, files: list[ImageFile], work: Path) -> dict:
    findings = backend_named(backend).analyze(files, work, CleaningThresholds())
    return decide_exclusions([f.image_id for f in files], findings, CleaningThresholds())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("resolution", [32, 256])
def test_resized_jpeg_copies_are_near_duplicates_naming_the_kept_image(backend, resolution, tmp_path):
    originals = list(distinct_digits(60)) if resolution == 32 else photo_crops(40)
    rng = np.random.default_rng(resolution)
    copies = {
        k: jpeg_copy(
            originals[k], scale=float(rng.choice([0.94, 0.97, 1.03, 1.06])), quality=int(rng.integers(70, 96)),
            crop=(0.03 * (k % 4 == 0), 0, 0, 0.02 * (k % 3 == 0)),
        )
        for k in range(0, 40, 2)
    }
    files = write_files(tmp_path / "images", [png(img) for img in originals] + list(copies.values()))
    excluded = clean_files(backend, files, tmp_path)

    ids = [f.image_id for f in files]
    pairs = [(ids[len(originals) + n], ids[k]) for n, k in enumerate(copies)]
    found = {}
    for copy, original in pairs:
        loser, kept = (copy, original) if copy in excluded else (original, copy)
        reason, detail = excluded.get(loser, (None, ""))
        found[copy] = reason is ExclusionReason.NEAR_DUPLICATE and detail.endswith(f"kept {kept}")
    assert all(found.values()), f"{sum(found.values())}/{len(found)} copies found"
    duplicates = [i for i, (r, _) in excluded.items() if r is ExclusionReason.NEAR_DUPLICATE]
    assert len(duplicates) == len(copies), "a distinct image was excluded as a near-duplicate"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_digit_on_a_black_frame_is_kept_and_a_black_image_is_too_dark(backend, tmp_path):
    digits = list(distinct_digits(12))
    framed = np.zeros((96, 96), np.uint8)  # a real digit's white strokes in a wide black frame: mean < 10
    framed[32:64, 32:64] = np.asarray(digits[0])
    assert framed.mean() < CleaningThresholds.dark_mean
    near_black = np.random.default_rng(0).integers(0, 6, (32, 32)).astype(np.uint8)
    encoded = [png(d) for d in digits[1:]] + [encode_png(framed), encode_png(np.zeros((32, 32), np.uint8)), encode_png(near_black)]
    files = write_files(tmp_path / "images", encoded)
    excluded = clean_files(backend, files, tmp_path)
    framed_id, black_id, near_black_id = (f.image_id for f in files[-3:])
    assert excluded.get(framed_id, (None,))[0] is not ExclusionReason.TOO_DARK  # (alone in its frame, it may be an outlier)
    assert excluded[black_id][0] is ExclusionReason.TOO_DARK
    assert excluded[near_black_id][0] is ExclusionReason.TOO_DARK


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_asset_excludes_held_out_jpeg_copies_naming_the_kept_original(backend, instance, profile, tiny_landing):
    from rayml_assets.defs.dataset import assets as dataset_assets
    from rayml_assets_tests.dataset.test_dataset_assets import _materialize, _metadata

    originals = sorted((tiny_landing / "4").glob("digit_*.png"))[:6] + sorted((tiny_landing / "7").glob("digit_*.png"))[:6]
    copy_of = {}
    for n, path in enumerate(originals):
        data = jpeg_copy(Image.open(path), scale=(0.94, 1.06)[n % 2], quality=90)
        (path.parent / f"copy_{n}.jpg").write_bytes(data)
        copy_of[hashlib.sha256(data).hexdigest()] = hashlib.sha256(path.read_bytes()).hexdigest()

    result = _materialize(
        instance, profile, [dataset_assets.raw_images, dataset_assets.cleaned_images],
        run_config={"ops": {"cleaned_images": {"config": {"backend": backend}}}},
    )
    assert result.success
    cleaned = _metadata(result, "cleaned_images")
    assert cleaned["cleaning_backend"] == backend and "too_dark" in cleaned["excluded_by_reason"]
    cleaned_uri = lake.table_uri(profile.lake_root, lake.CLEANED_IMAGES)
    rows = lake.read_at(cleaned_uri, cleaned["delta_version"], ["image_id", "exclusion_reason"])
    reason = dict(zip(*(rows.column(c).to_pylist() for c in ("image_id", "exclusion_reason"))))
    for copy, original in copy_of.items():
        excluded, kept = (copy, original) if reason[copy] else (original, copy)
        assert (reason[excluded] or "").startswith("near_duplicate: ") and reason[excluded].endswith(f"kept {kept}")
    assert lake.commit_metadata(cleaned_uri, cleaned["delta_version"])["rayml.cleaning_backend"] == backend
