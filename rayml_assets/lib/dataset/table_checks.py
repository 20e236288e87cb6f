"""What the dataset's asset checks read from the Delta tables (the checks decide in defs/dataset/checks.py)."""

from __future__ import annotations

import pyarrow.compute as pc
from deltalake.exceptions import DeltaError

from rayml_assets.lib.common import lake


def duplicate_ids(uri: str, version: int, storage_options: dict | None = None) -> int:
    ids = lake.read_at(uri, version, ["image_id"], storage_options=storage_options).column("image_id")
    return len(ids) - pc.count_distinct(ids).as_py()


def cleaned_rows(uri: str, version: int, storage_options: dict | None = None) -> list[dict]:
    return lake.read_at(uri, version, ["image_id", "label", "split", "excluded"], storage_options=storage_options).to_pylist()


def split_migrations(
    uri: str, version: int, history: int, limit: int = 20, storage_options: dict | None = None
) -> tuple[int, list[dict]]:
    """(versions compared, up to ``limit`` images whose split changed) over the last ``history`` versions."""
    first_seen: dict[str, tuple[str, int]] = {}
    migrated: list[dict] = []
    oldest = max(0, version - history)
    for v in range(oldest, version + 1):
        try:
            table = lake.read_at(uri, v, ["image_id", "split"], storage_options=storage_options)
        except (DeltaError, lake.TableMissing):  # versions removed by VACUUM can no longer be read
            continue
        for image_id, split in zip(table.column("image_id").to_pylist(), table.column("split").to_pylist()):
            seen = first_seen.setdefault(image_id, (split, v))
            if seen[0] != split and len(migrated) < limit:
                migrated.append({"image_id": image_id, "from": f"{seen[0]}@v{seen[1]}", "to": f"{split}@v{v}"})
    return version + 1 - oldest, migrated
