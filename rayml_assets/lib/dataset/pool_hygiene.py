"""What a killed ingest must not leave behind: spool folders with image bytes, and orphaned workers.

- A spool folder is named after the process that owns it (``rayml-ingest-<pid>-…``); the next
  ingest removes those whose owner is gone (a ``kill -9`` skips every ``finally``).
- A forked check worker exits when its parent dies (``PR_SET_PDEATHSIG`` on Linux, and a
  watchdog thread everywhere), instead of being reparented to PID 1 and reading on.
- A worker marks each chunk it starts, so a worker that dies is reported with the chunk it was on.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import signal
import tempfile
import threading
import time

SPOOL_PREFIX = "rayml-ingest-"
_PR_SET_PDEATHSIG = 1
_WATCHDOG_S = 1.0


class CheckWorkerDied(RuntimeError):
    """A pool worker died (killed, out of memory, a crash in a decoder) while checking a chunk."""


def spool_prefix() -> str:
    return f"{SPOOL_PREFIX}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, and not ours to clean
    return True


def remove_stale_spools(root: str | None = None) -> list[str]:
    """Remove spool folders whose owning process is gone; returns what was removed."""
    removed = []
    for path in glob.glob(os.path.join(root or tempfile.gettempdir(), f"{SPOOL_PREFIX}*-*")):
        owner = os.path.basename(path)[len(SPOOL_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def exit_with_parent() -> None:
    """Called first in a forked worker: die with the parent rather than outlive it."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (AttributeError, OSError):
        pass  # not Linux: the watchdog alone
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCHDOG_S)
        os._exit(1)

    threading.Thread(target=watch, name="rayml-parent-watchdog", daemon=True).start()


def _marker(spool: str, index: int) -> str:
    return os.path.join(spool, f"chunk_{index:06d}.started")


def mark_started(spool: str, index: int) -> None:
    with open(_marker(spool, index), "w"):
        pass


def died_error(spool: str, chunks: list, finished: set[int]) -> CheckWorkerDied:
    """The error for a broken pool: which chunks a worker had started and not finished."""
    lost = [i for i in range(len(chunks)) if i not in finished and os.path.exists(_marker(spool, i))]
    named = "; ".join(
        f"chunk {i} ({len(chunks[i])} files, {chunks[i][0].source_uri} … {chunks[i][-1].source_uri})" for i in lost
    )
    return CheckWorkerDied(
        f"a check worker died while on {named or 'a chunk it had not yet marked'}; nothing was committed, "
        "the next ingest checks these files again"
    )
