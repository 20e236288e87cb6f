"""Shape inference: size from the images' sides, colour only when the pixels have it."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from PIL import Image

from rayml_assets import sample_sets
from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import sha256_hex
from rayml_assets.lib.training.input_shape import MAX_IMAGE_SIZE, infer_input_shape, size_from_sides, with_input_shape
from rayml_assets.lib.training.tuning_config import TuningConfig
from rayml_assets_tests.support.training_fixtures import write_digits_table


def _photo_table(tmp_path, name: str, mode: str, size: int, n: int = 12) -> str:
    photo = sample_sets._photo(name).convert(mode)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        data = sample_sets.jpeg(sample_sets.random_crop(photo, size, (0.4, 0.8), rng).convert("RGB"), rng)
        rows.append({
            "image_id": sha256_hex(data), "source_uri": f"memory://{i}.jpg", "label": str(i % 2), "width": size,
            "height": size, "format": "JPEG", "bytes": data, "ingested_at": datetime.now(timezone.utc),
            "batch_id": "t", "split": "train", "excluded": False, "exclusion_reason": None, "raw_version": 0,
        })
    uri = str(tmp_path / "cleaned_images")
    write_deltalake(uri, pa.Table.from_pylist(rows, schema=lake.CLEANED_SCHEMA))
    return uri


def test_grayscale_digits_keep_their_size_and_one_channel(tmp_path):
    uri, version = write_digits_table(str(tmp_path), n=40, image_size=32)
    shape = infer_input_shape(uri, version)
    assert (shape.image_size, shape.channels, shape.source) == (32, 1, "data")
    assert shape.colour_share == 0.0 and shape.images_sampled > 0


def test_rgb_photos_are_colour(tmp_path):
    shape = infer_input_shape(_photo_table(tmp_path, "coffee", "RGB", 56), 0)
    assert (shape.image_size, shape.channels) == (56, 3)
    assert "colour" in shape.describe()


def test_a_grayscale_photo_stored_as_rgb_is_grayscale(tmp_path):
    # JPEG noise on an RGB copy of a gray photo must not count as colour
    shape = infer_input_shape(_photo_table(tmp_path, "camera", "L", 48), 0)
    assert (shape.image_size, shape.channels) == (48, 1)


@pytest.mark.parametrize(
    ("sides", "size"), [([8, 8, 10], 16), ([30, 33, 35], 32), ([60, 59, 61], 64), ([500, 640, 480], MAX_IMAGE_SIZE)]
)
def test_size_is_the_median_side_rounded_within_bounds(sides, size):
    assert size_from_sides(sides)[0] == size


def test_no_kept_image_is_a_clear_error():
    with pytest.raises(ValueError, match="no kept images"):
        size_from_sides([])


def test_a_config_that_sets_the_shape_wins(tmp_path):
    uri, version = write_digits_table(str(tmp_path), n=20, image_size=32)
    config, shape = with_input_shape(TuningConfig(image_size=48, channels=3), uri, version)
    assert (config.image_size, config.channels, shape.source) == (48, 3, "config")
    config, shape = with_input_shape(TuningConfig(channels=3), uri, version)
    assert (config.image_size, config.channels, shape.source) == (32, 3, "data")
