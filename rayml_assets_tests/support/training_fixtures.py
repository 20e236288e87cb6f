"""A small ``cleaned_images`` Delta table made from scikit-learn's digits, for the training tests."""

from __future__ import annotations

import zlib
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake
from PIL import Image
from sklearn.datasets import load_digits

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import encode_png, sha256_hex

# A label that only excluded rows carry: it must never become a class.
EXCLUDED_ONLY_LABEL = "excluded-only"


def _split_of(image_id: str) -> str:
    bucket = zlib.crc32(image_id.encode()) % 100
    return "train" if bucket < 70 else "val" if bucket < 85 else "test"


def digits_table(n: int | None = None, image_size: int = 32, offset: int = 0, exclude_every: int = 10) -> pa.Table:
    """``n`` digits (all 1,797 when None) as rows of ``CLEANED_SCHEMA``.

    Every ``exclude_every``-th row is flagged excluded, plus one excluded row
    with a label of its own.
    """
    digits = load_digits()
    images, targets = digits.images[offset:], digits.target[offset:]
    if n is not None:
        images, targets = images[:n], targets[:n]
    now = datetime.now(timezone.utc)
    rows = []
    for i, (img, target) in enumerate(zip(images, targets)):
        pixels = Image.fromarray((img * (255 / 16)).astype(np.uint8)).resize((image_size, image_size), Image.BILINEAR)
        data = encode_png(np.asarray(pixels))
        excluded = exclude_every > 0 and i % exclude_every == exclude_every - 1
        rows.append((data, str(int(target)), excluded))
    rows.append((rows[0][0][:-1] + b"\0", EXCLUDED_ONLY_LABEL, True))
    records = []
    for data, label, excluded in rows:
        image_id = sha256_hex(data)
        records.append(
            {
                "image_id": image_id,
                "source_uri": f"memory://digits/{image_id}.png",
                "label": label,
                "width": image_size,
                "height": image_size,
                "format": "PNG",
                "bytes": data,
                "ingested_at": now,
                "batch_id": "digits",
                "split": _split_of(image_id),
                "excluded": excluded,
                "exclusion_reason": "near_duplicate" if excluded else None,
                "raw_version": 0,
            }
        )
    return pa.Table.from_pylist(records, schema=lake.CLEANED_SCHEMA)


def write_digits_table(
    lake_root: str, n: int | None = 300, image_size: int = 32, mode: str = "overwrite", **kwargs
) -> tuple[str, int]:
    """Write the digits as a new version of ``{lake_root}/cleaned_images``; returns ``(uri, version)``."""
    uri = lake.table_uri(lake_root, lake.CLEANED_IMAGES)
    write_deltalake(uri, digits_table(n, image_size, **kwargs), mode=mode)
    return uri, lake.current_version(uri)
