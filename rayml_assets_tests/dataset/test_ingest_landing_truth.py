"""lib.dataset.ingest with the landing as the source of truth: rejections checked again, moves relabel,
bytes under two labels quarantined, labels that cannot name a class refused."""

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import encode_png
from rayml_assets.lib.dataset import file_checks
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest
from rayml_assets.lib.dataset.landing import list_landing
from rayml_assets.sample import write_batches
from rayml_assets_tests.conftest import TAXONOMY

POLICY = IngestPolicy(workers=1, taxonomy=TAXONOMY)


@pytest.fixture
def landing(tmp_path) -> Path:
    root = tmp_path / "landing"
    write_batches(root, limit=20, dirty=False)
    settle(root)
    return root


def settle(root: Path) -> None:
    """Every folder an hour old: the case where the unchanged-folders shortcut applies."""
    stamp = os.stat(root).st_mtime_ns - 3_600 * 10**9
    for folder, _, _ in os.walk(root):
        os.utime(folder, ns=(stamp, stamp))


def raw_rows(lake_root: str) -> dict[str, tuple[str, str]]:
    table = lake.read_at(lake.table_uri(lake_root, lake.RAW_IMAGES), None, ["image_id", "source_uri", "label"])
    return {row["image_id"]: (row["source_uri"], row["label"]) for row in table.to_pylist()}


def quarantine(lake_root: str) -> list[dict]:
    return lake.read_at(lake.table_uri(lake_root, lake.QUARANTINE), None, ["source_uri", "label", "reason", "detail"]).to_pylist()


def first_digit(root: Path, label: str | None = None) -> Path:
    return sorted((root / (label or labels(root)[0])).glob("*.png"))[0]


def labels(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def fresh_ingest(root: Path, tmp_path: Path, policy: IngestPolicy = POLICY):
    """What a lake built from scratch holds for this landing: the reference every incremental ingest must reach."""
    return ingest(str(root), str(tmp_path / f"fresh_{len(os.listdir(tmp_path))}"), policy)


def test_an_unreadable_file_is_read_again_until_it_is_ingested(landing, tmp_path, monkeypatch):
    real_read = file_checks.read_bytes

    def read_as_unprivileged(uri, *limit):  # chmod 000 stops every user but root
        if stat.S_IMODE(os.stat(uri.removeprefix("file://")).st_mode) == 0:
            raise PermissionError(13, "Permission denied", uri)
        return real_read(uri, *limit)

    monkeypatch.setattr(file_checks, "read_bytes", read_as_unprivileged)
    victim, lake_root = first_digit(landing), str(tmp_path / "lake")
    victim.chmod(0)
    first = ingest(str(landing), lake_root, POLICY)
    assert first.quarantined == {"unreadable": 1}

    victim.chmod(0o644)  # neither the file's nor its folder's mtime moves
    second = ingest(str(landing), lake_root, POLICY)
    assert second.landing_check == "listed and read", "a transient rejection skips the shortcut"
    assert second.content_hash == fresh_ingest(landing, tmp_path).content_hash
    assert (first.recheck, second.rows_added, second.recovered, second.recheck) == (1, 1, 1, 0)
    third = ingest(str(landing), lake_root, POLICY)
    assert (third.landing_check, third.rows_added) == ("unchanged folders", 0), "with nothing to re-check, the shortcut is back"


def test_a_file_that_vanished_while_listed_is_ingested_when_it_reappears(landing, tmp_path):
    listed, lake_root = list_landing(str(landing)), str(tmp_path / "lake")
    victim = first_digit(landing)
    data, before = victim.read_bytes(), victim.stat()
    victim.unlink()
    first = ingest(str(landing), lake_root, POLICY, files=listed)
    assert first.quarantined == {"vanished": 1} and first.total_rows == len(listed) - 1

    victim.write_bytes(data)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same fingerprint as when it vanished
    settle(landing)
    again = ingest(str(landing), lake_root, POLICY)
    assert (again.rows_added, again.recovered, again.total_rows) == (1, 1, len(listed))
    assert again.content_hash == fresh_ingest(landing, tmp_path).content_hash


def test_a_wider_taxonomy_ingests_what_the_narrower_one_quarantined(landing, tmp_path):
    (landing / "cat").mkdir()
    (landing / "cat" / "tabby.png").write_bytes(encode_png(np.full((32, 32), 7, np.uint8)))
    settle(landing)
    lake_root = str(tmp_path / "lake")
    narrow = ingest(str(landing), lake_root, POLICY)
    assert narrow.quarantined == {"unknown_label": 1}

    wider = IngestPolicy(workers=1, taxonomy=(*TAXONOMY, "cat"))
    widened = ingest(str(landing), lake_root, wider)
    assert widened.landing_check == "listed and read", "the policy changed: the recorded state does not apply"
    assert (widened.rows_added, widened.recovered, widened.label_counts["cat"]) == (1, 1, 1)
    assert widened.content_hash == fresh_ingest(landing, tmp_path, wider).content_hash
    assert ingest(str(landing), lake_root, wider).landing_check == "unchanged folders"


def test_a_file_over_max_file_bytes_is_refused_and_ingested_under_a_larger_limit(landing, tmp_path):
    lake_root, victim = str(tmp_path / "lake"), first_digit(landing)
    limit = victim.stat().st_size - 1
    sizes = sorted(p.stat().st_size for p in landing.rglob("*.png"))
    strict = ingest(str(landing), lake_root, IngestPolicy(workers=1, taxonomy=TAXONOMY, max_file_bytes=limit))
    too_large = [row for row in quarantine(lake_root) if row["reason"] == "too_large"]
    assert strict.quarantined["too_large"] == len(too_large) == sum(size > limit for size in sizes) >= 1
    assert all(f"exceeds max_file_bytes={limit}" in row["detail"] for row in too_large)

    relaxed = ingest(str(landing), lake_root, POLICY)
    assert relaxed.recovered == len(too_large) and relaxed.total_rows == len(sizes)


def test_moving_a_file_to_another_label_folder_relabels_it_in_a_new_version(landing, tmp_path):
    (old, new), lake_root = labels(landing)[:2], str(tmp_path / "lake")
    moved = first_digit(landing, old)
    first = ingest(str(landing), lake_root, POLICY)
    image_id = next(i for i, (uri, _) in raw_rows(lake_root).items() if uri == f"file://{moved}")
    os.rename(moved, landing / new / moved.name)  # mtime and size travel with it

    after = ingest(str(landing), lake_root, POLICY)
    assert raw_rows(lake_root)[image_id] == (f"file://{landing}/{new}/{moved.name}", new)
    assert (after.relabeled, after.rows_added, after.total_rows) == (1, 0, first.total_rows)
    assert after.delta_version == first.delta_version + 1
    raw_uri = lake.table_uri(lake_root, lake.RAW_IMAGES)
    assert lake.commit_metadata(raw_uri, after.delta_version)["rayml.relabeled"] == "1"
    before = lake.read_at(raw_uri, first.delta_version, ["image_id", "label"]).to_pylist()
    assert {"image_id": image_id, "label": old} in before, "time travel still shows the old label"
    assert after.label_counts == fresh_ingest(landing, tmp_path).label_counts


@pytest.mark.parametrize("resolve", ["delete the copy", "move the copy to the first label"])
def test_identical_bytes_under_two_labels_are_quarantined_until_the_landing_is_fixed(landing, tmp_path, resolve):
    (label, other), lake_root = labels(landing)[:2], str(tmp_path / "lake")
    original = first_digit(landing, label)
    first = ingest(str(landing), lake_root, POLICY)
    copy = landing / other / "copied_by_mistake.png"
    shutil.copy2(original, copy)

    conflicted = ingest(str(landing), lake_root, POLICY)
    assert conflicted.quarantined == {"label_conflict": 2} and conflicted.label_conflicts_removed == 1
    assert conflicted.total_rows == first.total_rows - 1
    assert all(not uri.endswith(original.name) for uri, _ in raw_rows(lake_root).values())
    details = {row["source_uri"]: row["detail"] for row in quarantine(lake_root) if row["reason"] == "label_conflict"}
    assert str(copy) in details[f"file://{original}"] and str(original) in details[f"file://{copy}"]
    assert ingest(str(landing), lake_root, POLICY).rows_added == 0, "an unchanged conflict stays out"

    if resolve == "delete the copy":
        copy.unlink()
    else:
        os.rename(copy, landing / label / copy.name)
    resolved = ingest(str(landing), lake_root, POLICY)
    assert (resolved.rows_added, resolved.total_rows) == (1, first.total_rows)
    assert resolved.content_hash == first.content_hash and resolved.label_counts == first.label_counts


def test_identical_new_files_under_two_labels_never_enter_raw_images(landing, tmp_path):
    data = encode_png(np.full((32, 32), 99, np.uint8))
    for label in labels(landing)[:2]:
        (landing / label / "twin.png").write_bytes(data)
    result = ingest(str(landing), str(tmp_path / "lake"), POLICY)
    assert result.quarantined == {"label_conflict": 2} and result.label_conflicts_removed == 0
    assert result.total_rows == result.files_seen - 2


def test_labels_that_cannot_name_a_class_are_refused(tmp_path):
    write_batches(tmp_path / "images", limit=5, dirty=False)
    paths = sorted((tmp_path / "images").rglob("*.png"))
    labels = ["3", "", "a/b", "..", "bell\x07"]
    rows = [f"{path.relative_to(tmp_path)},{label}" for path, label in zip(paths, labels)]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("uri,label\n" + "\n".join(rows) + "\n")
    lake_root = str(tmp_path / "lake")
    result = ingest(str(manifest), lake_root, IngestPolicy(workers=1))  # no taxonomy: every label is allowed
    assert result.quarantined == {"invalid_label": 4}
    assert result.label_counts == {"3": 1} and result.total_rows == 1
