"""core.ingest without Dagster: the recorded-state shortcut for an unchanged landing, and when it must not apply."""

import os

import pytest

from rayml_assets.core import ingest as ingest_module
from rayml_assets.core import lake
from rayml_assets.core.ingest import IngestPolicy, ingest
from rayml_assets.sample import write_batches

POLICY = IngestPolicy(workers=1)


@pytest.fixture
def landings(tmp_path):
    first, second = tmp_path / "landing_a", tmp_path / "landing_b"
    write_batches(first, batches=2, only_batch=0, limit=40, dirty=False)
    write_batches(second, batches=2, only_batch=1, limit=40, dirty=False)
    return str(first), str(second), str(tmp_path / "lake")


def _no_table_scans(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an unchanged landing must not read the tables")

    monkeypatch.setattr(ingest_module, "_known_ids", refuse)
    monkeypatch.setattr(ingest_module, "_summarize", refuse)


def test_unchanged_landing_returns_the_recorded_state_without_reading_tables(landings, monkeypatch):
    first, _, lake_root = landings
    done = ingest(first, lake_root, POLICY)
    versions = {name: lake.current_version(lake.table_uri(lake_root, name)) for name in (lake.RAW_IMAGES, lake.LANDING_INDEX)}
    _no_table_scans(monkeypatch)

    again = ingest(first, lake_root, POLICY)
    assert (again.rows_added, again.total_rows, again.content_hash) == (0, done.total_rows, done.content_hash)
    assert (again.delta_version, again.label_counts, again.files_seen) == (done.delta_version, done.label_counts, done.files_seen)
    assert again.already_present == again.files_seen == 20
    after = {name: lake.current_version(lake.table_uri(lake_root, name)) for name in versions}
    assert after == versions, "a no-op ingest commits nothing"


def test_a_new_or_rewritten_file_takes_the_full_path(landings):
    first, _, lake_root = landings
    done = ingest(first, lake_root, POLICY)
    some_png = next(os.path.join(d, f) for d, _, fs in sorted(os.walk(first)) for f in sorted(fs))
    with open(some_png, "rb") as fh:
        original = fh.read()
    with open(some_png, "wb") as fh:  # same name, other bytes: a rewrite in place
        fh.write(original + b"\0")  # trailing bytes after IEND: still a valid PNG
    os.utime(some_png, ns=(1, 1))  # a new mtime, whatever the clock's resolution

    rewritten = ingest(first, lake_root, POLICY)
    assert rewritten.rows_added == 1 and rewritten.total_rows == done.total_rows + 1
    assert rewritten.content_hash != done.content_hash


def test_another_writer_moving_raw_images_invalidates_the_shortcut(landings, monkeypatch, tmp_path):
    first, second, lake_root = landings
    done = ingest(first, lake_root, POLICY)
    # Another writer adds rows to raw_images without a landing_index commit (it crashed before its own).
    other = ingest(second, str(tmp_path / "other_lake"), POLICY)
    rows = lake.read_at(lake.table_uri(str(tmp_path / "other_lake"), lake.RAW_IMAGES), None)
    lake.merge_insert_new(lake.table_uri(lake_root, lake.RAW_IMAGES), rows, "image_id", lake.RAW_SCHEMA)
    calls = []
    real_known_ids = ingest_module._known_ids
    monkeypatch.setattr(ingest_module, "_known_ids", lambda *a: calls.append(a[1]) or real_known_ids(*a))

    again = ingest(first, lake_root, POLICY)
    assert calls, "the recorded state is stale: the landing is checked against the tables"
    assert again.rows_added == 0 and again.total_rows == done.total_rows + other.total_rows
    assert again.content_hash != done.content_hash
