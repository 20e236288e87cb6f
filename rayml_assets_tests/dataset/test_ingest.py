"""core.ingest without Dagster: the recorded-state shortcut for an unchanged landing, and when it must not apply."""

import os
import time

import pytest

from rayml_assets.lib.dataset import ingest as ingest_module
from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import sha256_hex
from rayml_assets.lib.dataset.file_checks import MIN_FILES_FOR_POOL
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest
from rayml_assets.sample import write_batches

POLICY = IngestPolicy(workers=1)


@pytest.fixture
def landings(tmp_path):
    first, second = tmp_path / "landing_a", tmp_path / "landing_b"
    write_batches(first, batches=2, only_batch=0, limit=40, dirty=False)
    write_batches(second, batches=2, only_batch=1, limit=40, dirty=False)
    return str(first), str(second), str(tmp_path / "lake")


def _stamp_folders(root: str, age_s: float) -> None:
    """Set every folder's mtime ``age_s`` back: a landing that settled long ago, or (0) just now."""
    stamp = time.time_ns() - int(age_s * 1e9)
    for folder, _, _ in os.walk(root):
        os.utime(folder, ns=(stamp, stamp))


def _rewrite_in_place(root: str) -> None:
    """Same name, other bytes; the folder's mtime does not move."""
    some_png = next(os.path.join(d, f) for d, _, fs in sorted(os.walk(root)) for f in sorted(fs))
    with open(some_png, "rb") as fh:
        original = fh.read()
    with open(some_png, "wb") as fh:
        fh.write(original + b"\0")  # trailing bytes after IEND: still a valid PNG
    os.utime(some_png, ns=(1, 1))  # a new mtime, whatever the clock's resolution


def _no_table_scans(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an unchanged landing must not read the tables")

    monkeypatch.setattr(ingest_module, "_known_ids", refuse)
    monkeypatch.setattr(ingest_module, "_summarize", refuse)
    monkeypatch.setattr(ingest_module, "last_outcomes", refuse)


@pytest.mark.parametrize(("age_s", "check"), [(3600, "unchanged folders"), (0, "unchanged files")])
def test_unchanged_landing_returns_the_recorded_state_without_reading_tables(landings, monkeypatch, age_s, check):
    first, _, lake_root = landings
    _stamp_folders(first, age_s)  # folders younger than the settle time are not trusted: every file is stat-ed
    done = ingest(first, lake_root, POLICY)
    versions = {name: lake.current_version(lake.table_uri(lake_root, name)) for name in (lake.RAW_IMAGES, lake.LANDING_INDEX)}
    _no_table_scans(monkeypatch)

    again = ingest(first, lake_root, POLICY)
    assert again.landing_check == check
    assert (again.rows_added, again.total_rows, again.content_hash) == (0, done.total_rows, done.content_hash)
    assert (again.delta_version, again.label_counts, again.files_seen) == (done.delta_version, done.label_counts, done.files_seen)
    assert again.already_present == again.files_seen == 20
    after = {name: lake.current_version(lake.table_uri(lake_root, name)) for name in versions}
    assert after == versions, "a no-op ingest commits nothing"


@pytest.mark.parametrize("age_s", [3600, 0])
def test_checking_every_file_reads_a_rewrite_in_place_at_once(landings, age_s):
    first, _, lake_root = landings
    _stamp_folders(first, age_s)
    done = ingest(first, lake_root, POLICY)
    _rewrite_in_place(first)

    policy = POLICY if age_s == 0 else IngestPolicy(workers=1, check_every_file=True)
    rewritten = ingest(first, lake_root, policy)
    assert rewritten.landing_check == "listed and read"
    assert rewritten.rows_added == 1 and rewritten.total_rows == done.total_rows + 1
    assert rewritten.content_hash != done.content_hash


def test_with_settled_folders_a_rewrite_in_place_is_read_when_any_folder_changes(landings):
    first, second, lake_root = landings
    _stamp_folders(first, 3600)
    done = ingest(first, lake_root, POLICY)
    _rewrite_in_place(first)

    deferred = ingest(first, lake_root, POLICY)
    assert (deferred.landing_check, deferred.rows_added) == ("unchanged folders", 0)

    new_png = next(os.path.join(d, f) for d, _, fs in sorted(os.walk(second)) for f in sorted(fs))
    label = os.path.relpath(new_png, second).split(os.sep)[0]
    os.link(new_png, os.path.join(first, label, "arrived_later.png"))  # moves that folder's mtime
    caught_up = ingest(first, lake_root, POLICY)
    assert caught_up.landing_check == "listed and read"
    assert caught_up.rows_added == 2 and caught_up.total_rows == done.total_rows + 2, "the new file and the rewrite"


def test_another_writer_moving_raw_images_invalidates_the_shortcut(landings, monkeypatch, tmp_path):
    first, second, lake_root = landings
    done = ingest(first, lake_root, POLICY)
    # Another writer adds rows to raw_images without a landing_index commit (it crashed before its own).
    other = ingest(second, str(tmp_path / "other_lake"), POLICY)
    rows = lake.read_at(lake.table_uri(str(tmp_path / "other_lake"), lake.RAW_IMAGES), None)
    lake.merge_insert_new(lake.table_uri(lake_root, lake.RAW_IMAGES), rows, "image_id", lake.RAW_SCHEMA)
    calls = []
    real_last_outcomes = ingest_module.last_outcomes
    monkeypatch.setattr(ingest_module, "last_outcomes", lambda *a: calls.append(a[0]) or real_last_outcomes(*a))

    again = ingest(first, lake_root, POLICY)
    assert calls, "the recorded state is stale: the landing is checked against the tables"
    assert again.rows_added == 0 and again.total_rows == done.total_rows + other.total_rows
    assert again.content_hash != done.content_hash


def test_the_process_pool_stores_each_image_with_its_own_bytes(tmp_path):
    landing = tmp_path / "landing"
    write_batches(landing, limit=120)  # with byte-identical copies, so some valid outcomes are dropped
    serial = ingest(str(landing), str(tmp_path / "serial"), IngestPolicy(workers=1))
    pooled = ingest(str(landing), str(tmp_path / "pooled"), IngestPolicy(workers=2))
    assert pooled.files_seen >= MIN_FILES_FOR_POOL and pooled.duplicates_in_batch > 0
    tables = [lake.read_at(lake.table_uri(str(tmp_path / name), lake.RAW_IMAGES), None) for name in ("serial", "pooled")]
    for table in tables:  # the bytes came back from the workers through spool files: each row must get its own
        assert all(sha256_hex(data) == image_id for image_id, data in zip(*(table.column(c).to_pylist() for c in ("image_id", "bytes"))))
    rows = [sorted(zip(*(t.column(c).to_pylist() for c in ("image_id", "source_uri", "label", "width")))) for t in tables]
    assert rows[0] == rows[1] and (serial.rows_added, serial.quarantined) == (pooled.rows_added, pooled.quarantined)
