"""A killed or crashed ingest leaves no spool debris, no orphaned worker, and a named error."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rayml_assets.lib.common import lake
from rayml_assets.lib.dataset import file_checks, pool_hygiene
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest
from rayml_assets.sample import write_batches


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    write_batches(root, batches=1, only_batch=0, limit=160, dirty=False)
    return root


@pytest.fixture
def spool_root(tmp_path, monkeypatch):
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    return root


def test_a_dead_worker_fails_the_ingest_naming_its_chunk_and_commits_nothing(landing, tmp_path, spool_root, monkeypatch):
    lake_root = str(tmp_path / "lake")
    parent, real_check = os.getpid(), file_checks.check_file

    def check_or_die(item):  # forked workers inherit the patch; only a worker dies, on one file
        if os.getpid() != parent and item.source_uri.endswith(POISON):
            os._exit(9)
        return real_check(item)

    # The first listed file: chunk 0, which a worker takes first (the parent checks chunks from the end).
    POISON = f"0/{min(p.name for p in (landing / '0').iterdir())}"
    monkeypatch.setattr(file_checks, "check_file", check_or_die)
    with pytest.raises(pool_hygiene.CheckWorkerDied, match=r"a check worker died while on chunk \d+ \(\d+ files, file://"):
        ingest(str(landing), lake_root, IngestPolicy(workers=2))
    assert not lake.exists(lake.table_uri(lake_root, lake.RAW_IMAGES))  # nothing committed
    assert not list(spool_root.glob("rayml-ingest-*"))  # the run's own spool is gone

    monkeypatch.setattr(file_checks, "check_file", real_check)
    assert ingest(str(landing), lake_root, IngestPolicy(workers=2)).rows_added == 160


KILLED_INGEST = textwrap.dedent(
    """
    import sys, time
    from rayml_assets.lib.dataset import file_checks
    from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest

    real = file_checks.check_file

    def slow(item):  # long enough to kill the run mid-pool
        time.sleep(0.2)
        return real(item)

    file_checks.check_file = slow
    ingest(sys.argv[1], sys.argv[2], IngestPolicy(workers=2))
    """
)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


def test_a_killed_ingest_leaves_no_worker_and_the_next_one_removes_its_spool(landing, tmp_path, spool_root):
    lake_root = str(tmp_path / "lake")
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_INGEST, str(landing), lake_root], env={**os.environ, "TMPDIR": str(spool_root)}
    )
    deadline = time.monotonic() + 120
    while not (list(spool_root.glob("rayml-ingest-*/chunk_*.started")) and _children(run.pid)):
        assert run.poll() is None and time.monotonic() < deadline, "the ingest never reached its worker pool"
        time.sleep(0.1)
    workers = _children(run.pid)
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived their killed parent"
        time.sleep(0.1)
    [stale] = spool_root.glob(f"rayml-ingest-{run.pid}-*")  # kill -9 runs no cleanup

    result = ingest(str(landing), lake_root, IngestPolicy(workers=2))
    assert not stale.exists()
    assert result.rows_added == 160
