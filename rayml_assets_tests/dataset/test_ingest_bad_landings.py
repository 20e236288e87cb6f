"""Bad landings through ``ingest``: special files are quarantined unopened, bad manifests are typed errors.

Issue 12 point 7: a FIFO named in a manifest hung ingest forever, a NUL byte in a URI
aborted it with a bare ValueError, a Latin-1 manifest raised UnicodeDecodeError.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import encode_png
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest
from rayml_assets.lib.dataset.landing import LandingError

POLICY = IngestPolicy(workers=1)
pytestmark = pytest.mark.timeout(60)  # a FIFO that is opened blocks forever: fail instead


def _quarantine(lake_root: str) -> dict[str, tuple[str, str]]:
    rows = lake.read_at(lake.table_uri(lake_root, lake.QUARANTINE), None, ["source_uri", "reason", "detail"]).to_pylist()
    return {os.path.basename(r["source_uri"]): (r["reason"], r["detail"]) for r in rows}


def _raw_names(lake_root: str) -> list[str]:
    rows = lake.read_at(lake.table_uri(lake_root, lake.RAW_IMAGES), None, ["source_uri"]).to_pylist()
    return sorted(os.path.basename(r["source_uri"]) for r in rows)


@pytest.fixture
def specials(tmp_path):
    """A landing with one good image and every kind of special file, all named like images."""
    root = tmp_path / "l"
    (root / "0").mkdir(parents=True)
    (root / "0" / "good.png").write_bytes(encode_png(np.full((8, 8), 9, np.uint8)))
    os.mkfifo(root / "0" / "pipe.png")
    os.symlink("/dev/null", root / "0" / "null.png")
    os.symlink(root / "0" / "nowhere.png", root / "0" / "broken.png")
    os.symlink(root / "0" / "loop.png", root / "0" / "loop.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "0" / "sock.png"))
    yield root
    server.close()


SPECIAL = {"pipe.png": "a FIFO", "null.png": "a character device", "broken.png": "a broken symlink",
           "loop.png": "a symlink loop", "sock.png": "a socket"}


def test_special_files_in_a_folder_landing_are_quarantined_unopened(specials, tmp_path):
    lake_root = str(tmp_path / "lake")
    result = ingest(str(specials), lake_root, POLICY)
    assert result.quarantined == {"not_a_regular_file": len(SPECIAL)}
    assert _raw_names(lake_root) == ["good.png"]
    quarantined = _quarantine(lake_root)
    assert set(quarantined) == set(SPECIAL)
    for name, kind in SPECIAL.items():
        assert quarantined[name][0] == "not_a_regular_file" and kind in quarantined[name][1]


def test_special_files_named_in_a_manifest_are_quarantined_unopened(specials, tmp_path):
    manifest = specials / "manifest.csv"
    rows = ["0/good.png", "0/pipe.png", f"file://{specials}/0/sock.png", "/dev/null", "0/broken.png", "0/loop.png", "0"]
    manifest.write_text("uri,label\n" + "".join(f"{ref},0\n" for ref in rows))
    lake_root = str(tmp_path / "lake")
    result = ingest(str(manifest), lake_root, POLICY)
    assert _raw_names(lake_root) == ["good.png"]
    assert result.quarantined == {"not_a_regular_file": len(rows) - 1}
    quarantined = _quarantine(lake_root)
    assert quarantined["null"] == ("not_a_regular_file", "'/dev/null' is a character device")
    assert quarantined["0"] == ("not_a_regular_file", "'0' is a folder")


def test_a_fifo_named_in_a_manifest_does_not_hang_ingest(tmp_path):
    root = tmp_path / "l"
    (root / "0").mkdir(parents=True)
    (root / "0" / "good.png").write_bytes(encode_png(np.full((8, 8), 9, np.uint8)))
    os.mkfifo(root / "0" / "pipe.png")  # opened for reading, it blocks until a writer comes: forever
    (root / "manifest.csv").write_text("uri,label\n0/good.png,0\n0/pipe.png,0\n")
    result = ingest(str(root / "manifest.csv"), str(tmp_path / "lake"), POLICY)
    assert (result.total_rows, result.quarantined) == (1, {"not_a_regular_file": 1})


def test_a_fifo_swapped_in_after_listing_is_refused_without_blocking(specials, tmp_path):
    from rayml_assets.lib.dataset import landing

    listed = landing.list_landing(str(specials))
    os.remove(specials / "0" / "good.png")
    os.mkfifo(specials / "0" / "good.png")
    lake_root = str(tmp_path / "lake")
    result = ingest(str(specials), lake_root, POLICY, files=listed)
    assert result.quarantined == {"not_a_regular_file": len(SPECIAL) + 1} and result.total_rows == 0


@pytest.mark.parametrize(
    "content, line",
    [
        ("uri,label\n0/good.png,0\n0/a\0b.png,0\n".encode(), 3),  # a NUL byte
        ("uri,label\n0/good.png,0\n0/good.png,0\n0/caf\xe9.png,0\n".encode("latin-1"), 4),  # Latin-1
        (b"uri,label\n0/good.png,0\nnope://x.png,0\n", 3),  # an unknown protocol
    ],
    ids=["nul", "latin-1", "unknown-protocol"],
)
def test_a_bad_manifest_is_a_landing_error_naming_its_line(specials, tmp_path, content, line):
    manifest = specials / "manifest.csv"
    manifest.write_bytes(content)
    with pytest.raises(LandingError, match=f"line {line}:"):
        ingest(str(manifest), str(tmp_path / "lake"), POLICY)


def test_a_file_name_that_is_not_utf8_is_quarantined_not_fatal(tmp_path):
    root = tmp_path / "l"
    (root / "0").mkdir(parents=True)
    (root / "0" / "good.png").write_bytes(encode_png(np.full((8, 8), 9, np.uint8)))
    with open(os.path.join(os.fsencode(root / "0"), b"caf\xe9.png"), "wb") as fh:  # a Latin-1 name
        fh.write(encode_png(np.full((8, 8), 10, np.uint8)))
    lake_root = str(tmp_path / "lake")
    result = ingest(str(root), lake_root, POLICY)
    assert result.quarantined == {"name_not_utf8": 1} and _raw_names(lake_root) == ["good.png"]
    assert _quarantine(lake_root) == {"caf\\xe9.png": ("name_not_utf8", "the path is not UTF-8")}
