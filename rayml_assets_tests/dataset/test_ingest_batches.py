"""Ingest in bounded batches: the same result as one batch, each batch committed, a failure loses nothing."""

import pytest

from rayml_assets.lib.common import lake
from rayml_assets.lib.dataset import ingest as ingest_module
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest
from rayml_assets.sample import write_batches

SMALL_BATCHES = IngestPolicy(workers=1, batch_bytes=4096)  # a few sample PNGs per batch


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    write_batches(root, batches=1, only_batch=0, limit=60, dirty=False)
    return root


def _raw(lake_root) -> list[tuple]:
    table = lake.read_at(lake.table_uri(str(lake_root), lake.RAW_IMAGES), None, ["image_id", "label", "source_uri"])
    return sorted(zip(*(table.column(c).to_pylist() for c in ("image_id", "label", "source_uri"))))


def _versions(lake_root, name: str) -> int:
    return len(lake.open_table(lake.table_uri(str(lake_root), name)).history())


def test_small_batches_give_the_one_batch_result_in_several_commits(landing, tmp_path):
    one = ingest(str(landing), str(tmp_path / "one"), IngestPolicy(workers=1))
    many = ingest(str(landing), str(tmp_path / "many"), SMALL_BATCHES)
    assert (many.rows_added, many.total_rows, many.content_hash) == (one.rows_added, one.total_rows, one.content_hash)
    assert _raw(tmp_path / "many") == _raw(tmp_path / "one")
    assert _versions(tmp_path / "many", lake.RAW_IMAGES) > _versions(tmp_path / "one", lake.RAW_IMAGES) + 2
    again = ingest(str(landing), str(tmp_path / "many"), SMALL_BATCHES)
    assert again.rows_added == 0 and again.landing_check != "listed and read"  # the shortcut holds after batches


def test_a_label_conflict_is_found_across_batches(landing, tmp_path):
    first = sorted((landing / "0").iterdir())[0]
    (landing / "9" / "copy_of_a_zero.png").write_bytes(first.read_bytes())  # listed last: another batch
    result = ingest(str(landing), str(tmp_path / "lake"), SMALL_BATCHES)
    assert result.quarantined["label_conflict"] == 2
    assert all(uri != f"file://{first}" for _, _, uri in _raw(tmp_path / "lake"))


def test_a_failure_in_a_later_batch_keeps_the_committed_batches_and_loses_nothing(landing, tmp_path, monkeypatch):
    lake_root = tmp_path / "lake"
    real_check_all, calls = ingest_module.check_all, []

    def fail_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk gone")
        return real_check_all(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "check_all", fail_third)
    with pytest.raises(OSError, match="disk gone"):
        ingest(str(landing), str(lake_root), SMALL_BATCHES)
    committed = _raw(lake_root)
    assert 0 < len(committed) < 60  # the first two batches, at a committed version

    monkeypatch.setattr(ingest_module, "check_all", real_check_all)
    result = ingest(str(landing), str(lake_root), SMALL_BATCHES)
    assert result.total_rows == 60 and result.rows_added == 60 - len(committed)


def test_raw_images_commits_each_batch_of_its_configured_size(profile, tiny_landing, instance):
    from dagster import materialize

    from rayml_assets.definitions import resources_for
    from rayml_assets.defs.dataset import assets as dataset_assets

    config = {"ops": {"raw_images": {"config": {"batch_bytes": 4096, "workers": 1}}}}
    result = materialize([dataset_assets.raw_images], resources=resources_for(profile), instance=instance, run_config=config)
    meta = result.asset_materializations_for_node("raw_images")[0].metadata
    history = lake.open_table(lake.table_uri(profile.lake_root, lake.RAW_IMAGES)).history()
    batches = {entry.get("rayml.ingest_batch") for entry in lake.open_table(
        lake.table_uri(profile.lake_root, lake.LANDING_INDEX)).history()} - {None}
    assert meta["rows_added"].value == meta["dagster/row_count"].value > 0
    assert len(history) > 2 and len(batches) > 2  # one commit per batch, each index commit numbered n/N
