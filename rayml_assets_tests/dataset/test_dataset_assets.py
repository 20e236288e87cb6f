"""raw_images and cleaned_images materialized on a temporary instance with real Delta and real fastdup."""

import hashlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetKey, Definitions, materialize

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import encode_png
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest
from rayml_assets.lib.dataset.landing import list_landing
from rayml_assets.definitions import resources_for
from rayml_assets.defs.dataset import assets as dataset_assets
from rayml_assets.defs.dataset.jobs import ingest_landing_job
from rayml_assets.defs.dataset import checks as dataset_checks
from rayml_assets.resources.storage import DatasetPolicy
from rayml_assets.sample import write_batches
from rayml_assets_tests.conftest import TAXONOMY

ALL_CHECKS = [
    dataset_checks.raw_images_unique_ids,
    dataset_checks.cleaned_images_unique_ids,
    dataset_checks.labels_in_taxonomy,
    dataset_checks.enough_training_images_per_class,
    dataset_checks.split_proportions,
    dataset_checks.excluded_share_within_limit,
    dataset_checks.no_split_migration,
]


def _metadata(result, key):
    mat = result.asset_materializations_for_node(key)[0]
    return {k: v.value for k, v in mat.metadata.items()}


def _materialize(instance, profile, selection, taxonomy=TAXONOMY, **kwargs):
    resources = resources_for(profile)
    resources["dataset_policy"] = DatasetPolicy(taxonomy=list(taxonomy), min_train_images_per_class=3)
    return materialize(selection, resources=resources, instance=instance, **kwargs)


def test_raw_then_cleaned_with_checks(instance, profile, tiny_landing):
    result = _materialize(instance, profile, [dataset_assets.raw_images, dataset_assets.cleaned_images, *ALL_CHECKS])
    assert result.success
    raw = _metadata(result, "raw_images")
    cleaned = _metadata(result, "cleaned_images")
    assert raw["rows_added"] == raw["dagster/row_count"] > 100
    assert cleaned["raw_version"] == raw["delta_version"]
    assert cleaned["kept"] + cleaned["excluded"] == raw["dagster/row_count"]
    assert "too_dark" in cleaned["excluded_by_reason"] and "near_duplicate" in cleaned["excluded_by_reason"]
    assert Path(cleaned["excluded_gallery_html"]).read_text().count("<figure>") == cleaned["excluded"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {spec.name: True for c in ALL_CHECKS for spec in c.check_specs} | {"taxonomy_unchanged": True}
    tags = lake.commit_metadata(lake.table_uri(profile.lake_root, lake.CLEANED_IMAGES), cleaned["delta_version"])
    assert tags["rayml.tag"] == f"cleaned-from-raw-v{raw['delta_version']}"
    assert tags["rayml.dagster_run_id"] == result.run_id


def test_reingesting_unchanged_landing_adds_nothing(instance, profile, tiny_landing):
    first = _metadata(_materialize(instance, profile, [dataset_assets.raw_images]), "raw_images")
    second = _metadata(_materialize(instance, profile, [dataset_assets.raw_images]), "raw_images")
    assert second["rows_added"] == 0 and second["quarantined"] == 0
    assert second["delta_version"] == first["delta_version"]
    assert second["already_present"] == first["files_seen"]
    versions = [
        e.asset_materialization.tags.get("dagster/data_version")
        for e in instance.fetch_materializations(AssetKey("raw_images"), limit=2).records
    ]
    assert versions[0] == versions[1] == first["content_hash"]


def test_landing_sensor_job_reads_a_rewrite_in_place_that_a_plain_run_defers(instance, profile, tiny_landing):
    settled = time.time_ns() - 3_600 * 10**9
    for folder, _, _ in os.walk(tiny_landing):
        os.utime(folder, ns=(settled, settled))  # a landing written an hour ago
    first = _metadata(_materialize(instance, profile, [dataset_assets.raw_images]), "raw_images")
    digit = sorted((tiny_landing / "3").rglob("*.png"))[0]
    digit.write_bytes(digit.read_bytes() + b"\0")  # other bytes under the same name: still a valid PNG
    os.utime(digit, ns=(1, 1))

    plain = _metadata(_materialize(instance, profile, [dataset_assets.raw_images]), "raw_images")
    assert (plain["landing_check"], plain["rows_added"]) == ("unchanged folders", 0)

    resources = resources_for(profile) | {"dataset_policy": DatasetPolicy(taxonomy=list(TAXONOMY), min_train_images_per_class=3)}
    job = Definitions(assets=[dataset_assets.raw_images], jobs=[ingest_landing_job], resources=resources).resolve_job_def(ingest_landing_job.name)
    run = job.execute_in_process(instance=instance)
    from_sensor_job = _metadata(run, "raw_images")
    assert (from_sensor_job["landing_check"], from_sensor_job["rows_added"]) == ("listed and read", 1)
    assert from_sensor_job["dagster/row_count"] == first["dagster/row_count"] + 1


def test_every_dirty_kind_is_quarantined_and_every_good_image_arrives(profile, tiny_landing):
    result = ingest(str(tiny_landing), profile.lake_root, IngestPolicy(taxonomy=TAXONOMY))
    quarantine = lake.read_at(lake.table_uri(profile.lake_root, lake.QUARANTINE), None, ["source_uri", "reason"])
    reasons = {os.path.basename(u): r for u, r in zip(*(quarantine.column(c).to_pylist() for c in ("source_uri", "reason")))}
    assert reasons == {
        "dirty_zero_byte.png": "empty_file",
        "dirty_corrupt_truncated.png": "corrupt_image",
        "dirty_corrupt_garbage.png": "corrupt_image",
        "dirty_not_an_image.png": "not_an_image",
        "dirty_unknown_label.png": "unknown_label",
    }
    good = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in tiny_landing.rglob("*.*")
        if p.name not in reasons
    }
    raw_ids = set(lake.read_at(lake.table_uri(profile.lake_root, lake.RAW_IMAGES), None, ["image_id"]).column("image_id").to_pylist())
    assert raw_ids == good
    assert result.duplicates_in_batch == 1  # the byte-identical copy


def _raw(instance, profile, taxonomy=TAXONOMY) -> dict:
    return _metadata(_materialize(instance, profile, [dataset_assets.raw_images], taxonomy), "raw_images")


def test_a_wider_taxonomy_ingests_what_the_asset_quarantined(instance, profile, tiny_landing):
    narrow = _raw(instance, profile)
    assert "unknown_label" in narrow["quarantined_by_reason"]
    widened = _raw(instance, profile, (*TAXONOMY, "cat"))
    assert "| cat | 1 |" in widened["images_per_label"]
    assert (widened["landing_check"], widened["rows_added"], widened["recovered_from_quarantine"]) == ("listed and read", 1, 1)


def test_the_asset_relabels_a_moved_file_in_a_new_delta_version(instance, profile, tiny_landing):
    first = _raw(instance, profile)
    moved = sorted((tiny_landing / "3").glob("digit_*.png"))[0]
    os.rename(moved, tiny_landing / "5" / moved.name)
    after = _raw(instance, profile)
    raw_uri = lake.table_uri(profile.lake_root, lake.RAW_IMAGES)
    labels = lake.read_at(raw_uri, None, ["source_uri", "label"]).to_pylist()
    assert {"source_uri": f"file://{tiny_landing}/5/{moved.name}", "label": "5"} in labels
    assert after["delta_version"] == first["delta_version"] + 1 and after["content_hash"] == first["content_hash"]
    assert lake.commit_metadata(raw_uri, after["delta_version"])["rayml.relabeled"] == "1"
    assert (after["relabeled"], after["rows_added"], after["dagster/row_count"]) == (1, 0, first["dagster/row_count"])


def test_the_asset_keeps_bytes_under_two_labels_out_until_resolved(instance, profile, tiny_landing):
    first = _raw(instance, profile)
    original = sorted((tiny_landing / "3").glob("digit_*.png"))[0]
    copy = tiny_landing / "8" / "mislabelled_copy.png"
    shutil.copy2(original, copy)
    conflicted = _raw(instance, profile)
    assert "| label_conflict | 2 |" in conflicted["quarantined_by_reason"]
    assert conflicted["label_conflicts_removed"] == 1
    assert conflicted["dagster/row_count"] == first["dagster/row_count"] - 1
    copy.unlink()
    resolved = _raw(instance, profile)
    assert (resolved["rows_added"], resolved["recovered_from_quarantine"]) == (1, 1)
    assert resolved["content_hash"] == first["content_hash"] and resolved["images_per_label"] == first["images_per_label"]


def _ingest_batch(landing: str, lake_root: str, batch: int) -> None:
    files = [f for f in list_landing(landing) if (int(f.source_uri.split("_")[-1].split(".")[0]) % 3) != batch]
    ingest(landing, lake_root, IngestPolicy(taxonomy=TAXONOMY, workers=1), files=files)


def test_concurrent_overlapping_ingests_lose_and_duplicate_nothing(profile, tmp_path):
    landing = tmp_path / "landing"
    write_batches(landing, limit=90, dirty=False)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_ingest_batch, args=(str(landing), profile.lake_root, b)) for b in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = lake.read_at(lake.table_uri(profile.lake_root, lake.RAW_IMAGES), None, ["image_id"]).column("image_id").to_pylist()
    expected = {hashlib.sha256(p.read_bytes()).hexdigest() for p in landing.rglob("*.png")}
    assert len(ids) == len(set(ids)) and set(ids) == expected


def test_failure_mid_ingest_leaves_the_last_committed_version(profile, tiny_landing, monkeypatch):
    raw_uri = lake.table_uri(profile.lake_root, lake.RAW_IMAGES)
    first = ingest(str(tiny_landing), profile.lake_root, IngestPolicy(taxonomy=TAXONOMY))
    rng = np.random.default_rng(0)
    for i in range(40):
        (tiny_landing / "7" / f"new_{i}.png").write_bytes(encode_png(rng.integers(0, 255, (32, 32), dtype=np.uint8)))
    calls = {"n": 0}
    from rayml_assets.lib.dataset import file_checks

    real_validate = file_checks.validate_image

    def crash_halfway(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("worker died")
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(file_checks, "validate_image", crash_halfway)
    with pytest.raises(RuntimeError, match="worker died"):
        ingest(str(tiny_landing), profile.lake_root, IngestPolicy(taxonomy=TAXONOMY, workers=1))
    assert lake.current_version(raw_uri) == first.delta_version
    assert lake.read_at(raw_uri, None, ["image_id"]).num_rows == first.total_rows


def test_cli_materializes_the_dataset(rayml_home, tiny_landing, tmp_path):
    env = {**os.environ, "RAYML_HOME": str(rayml_home), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    os.makedirs(env["DAGSTER_HOME"])
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "rayml_assets.definitions", "--select", "raw_images,cleaned_images"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr
    assert lake.current_version(str(rayml_home / "lake" / "cleaned_images")) is not None
