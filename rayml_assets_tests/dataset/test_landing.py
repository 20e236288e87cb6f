"""Unit tests of landing listing: folders, manifests and paths that escape the root."""

import os
import time

import pytest

from rayml_assets.lib.common.images import RejectReason
from rayml_assets.lib.dataset.landing import LandingError, list_folder, list_landing, read_manifest, scan_folder


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    for label, name in [("0", "a.png"), ("1", "b.png"), ("1", "c.png")]:
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / name).write_bytes(b"x")
    return root


def test_folder_listing_takes_the_label_from_the_folder(landing):
    files = list_folder(str(landing))
    assert [(f.label, os.path.basename(f.path)) for f in files] == [("0", "a.png"), ("1", "b.png"), ("1", "c.png")]
    assert all(f.source_uri.startswith("file://") and f.problem is None for f in files)


def test_folder_listing_is_bounded_and_resumable(landing):
    first = list_folder(str(landing), limit=2)
    rest = list_folder(str(landing), after="1/b.png")
    assert len(first) == 2 and [os.path.basename(f.path) for f in rest] == ["c.png"]


def test_file_uri_is_accepted(landing):
    assert len(list_landing(f"file://{landing}")) == 3


def test_symlink_out_of_the_root_is_flagged(landing, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"outside")
    os.symlink(secret, landing / "1" / "link.png")
    flagged = [f for f in list_folder(str(landing)) if f.problem]
    assert [f.problem for f in flagged] == [RejectReason.PATH_ESCAPES_ROOT]
    assert flagged[0].path == ""  # it is never read


def test_a_symlink_to_an_ancestor_folder_lists_each_file_once(landing):
    os.symlink(landing, landing / "1" / "again")
    files = list_folder(str(landing))
    assert sorted(os.path.basename(f.path) for f in files) == ["a.png", "b.png", "c.png"]


def _age_folders(root, age_s=3600):
    stamp = time.time_ns() - int(age_s * 1e9)
    for folder, _, _ in os.walk(root):
        os.utime(folder, ns=(stamp, stamp))


def test_folder_digest_moves_with_added_files_not_with_rewrites_and_waits_to_settle(landing):
    assert scan_folder(str(landing)).folder_digest() is None, "folders changed just now are not trusted"
    _age_folders(landing)
    settled = scan_folder(str(landing))
    before, files_before = settled.folder_digest(), settled.digest()
    assert before is not None

    (landing / "1" / "b.png").write_bytes(b"rewritten in place")
    os.utime(landing / "1" / "b.png", ns=(1, 1))
    rewritten = scan_folder(str(landing))
    assert rewritten.folder_digest() == before and rewritten.digest() != files_before

    (landing / "0" / "new.png").write_bytes(b"x")
    added = scan_folder(str(landing))
    assert added.folder_digest() is None, "folder 0 just changed"
    assert added.folder_digest(settle_s=0) not in (None, before)


def test_file_outside_a_label_folder_is_flagged(landing):
    (landing / "loose.png").write_bytes(b"x")
    flagged = [f for f in list_folder(str(landing)) if f.problem]
    assert [f.problem for f in flagged] == [RejectReason.UNKNOWN_LABEL]


def test_manifest_resolves_relative_uris_and_rejects_escapes(landing, tmp_path):
    (tmp_path / "elsewhere.png").write_bytes(b"x")
    manifest = landing / "manifest.csv"
    manifest.write_text(f"uri,label\n0/a.png,0\n../elsewhere.png,1\n{tmp_path}/elsewhere.png,1\nfile://{landing}/1/b.png,1\n")
    rows = read_manifest(str(manifest))
    assert [r.problem for r in rows] == [None, RejectReason.PATH_ESCAPES_ROOT, RejectReason.PATH_ESCAPES_ROOT, None]
    assert rows[0].label == "0" and rows[0].path.endswith("landing/0/a.png")


def test_malformed_manifest_and_missing_landing_raise_typed_errors(landing, tmp_path):
    bad = landing / "bad.csv"
    bad.write_text("path,class\nx,1\n")
    with pytest.raises(LandingError, match="uri,label"):
        read_manifest(str(bad))
    with pytest.raises(LandingError, match="does not exist"):
        list_landing(str(tmp_path / "nope"))
