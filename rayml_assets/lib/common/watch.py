"""What is new in a landing location, found in one bounded step per sensor tick.

A sensor cursor must stay small, and a tick should cost the same whether the
landing holds a thousand files or a million. So the watcher remembers one entry
per *folder*, never per file (``_Folder``): its listing stamp, a change-time
mark, and a digest and the last of its file names.

* **Changed folders.** A folder's mtime moves whenever an entry is created,
  renamed or deleted in it. One ``stat`` per known folder per tick finds them.
  A changed folder's names are listed (one readdir, no call per file); when the
  names it had last time are all there and no new name sorts among them, only
  the names after them are read. A file is new when its change time (ctime) is
  after its folder's mark.
* **Audit.** A file rewritten in place does not move its folder's mtime, so a
  slow rolling audit re-reads unchanged folders, ``limit`` entries per tick.
  Object stores have no folder mtimes: there the audit is what finds new files
  in existing folders, while brand-new folders are still found in one tick.

Every scan ("pass") over a folder reads at most ``limit`` entries per tick and
resumes after the last name next tick. A pass started at ``t0`` reports files
changed in ``(mark, t0 - settle]`` and then raises the mark of the names it read
to ``t0 - settle``: a file is reported once per change, and the ``settle`` margin
leaves out files still being written (and covers coarse filesystem clocks).
Landing each batch in its own folder (``<label>/<batch>/``, a day folder) makes a
new batch cost one tick; new names among the old ones in a big folder cost
``folder size / limit`` ticks of re-reading.

The stores themselves (a local folder, an fsspec store) are ``lib.common.watch_trees``.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from dataclasses import asdict, dataclass, field

from rayml_assets.lib.common.listing import SETTLE_S
from rayml_assets.lib.common.watch_trees import Entry, FsspecTree, LocalTree, Tree, tree_for

__all__ = [  # the trees are defined in lib.common.watch_trees and used from here
    "DEFAULT_LIMIT", "DEFAULT_SETTLE_S", "Change", "Entry", "FileSet", "FsspecTree", "LocalTree", "Poll", "Tree",
    "poll", "tree_for",
]

CURSOR_VERSION = 3
DEFAULT_LIMIT = 1_000
DEFAULT_SETTLE_S = SETTLE_S
_NS = 1_000_000_000


def _digest(names: list[str]) -> str:
    return hashlib.blake2b("\0".join(names).encode(), digest_size=8).hexdigest()


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


@dataclass(frozen=True)
class Change:
    """A file created or changed since it was last reported."""

    path: str  # relative to the watched root, '/'-separated
    fingerprint: str  # uri|size|mtime, as LandedFile.fingerprint


@dataclass
class Poll:
    changes: list[Change]
    cursor: dict
    caught_up: bool  # no changed folder is left to scan: every change so far is in ``changes``
    inspected: int  # entries read this tick (the tick's cost)
    missing: bool = False  # the root does not exist (yet)
    settling: bool = False  # saw files changed within the settle margin: they come next tick


@dataclass
class _Folder:
    """What the cursor keeps per folder. Files named after ``boundary`` have their own mark, ``tail_seen``:
    a pass that found the old names unchanged read only the names after them."""

    stamp: int | None = None  # the listing stamp when last scanned; None: scan at the next tick
    seen: int = 0  # every file state changed up to here (ns) was reported...
    boundary: str | None = None  # ...for names up to this one (all names when None)
    tail_seen: int = 0  # the mark of the names after ``boundary``
    digest: str | None = None  # of the file names when the last changed-folder pass began
    last: str | None = None  # the last of those names

    def mark(self, name: str) -> int:
        return self.seen if self.boundary is None or name <= self.boundary else self.tail_seen


@dataclass
class _Pass:
    """One scan over one folder; it may span ticks."""

    folder: str
    t0: int  # when the pass began: it reports changes up to t0 - settle
    stamp: int | None  # the folder's stamp when the pass began
    after: str | None = None  # resume after this name
    skipped_to: str | None = None  # began after this name: the old names up to it were unchanged
    covered: list | None = None  # [name, ns]: an interrupted audit reported names up to ``name`` to ``ns``
    unsettled: bool = False  # saw a change after t0 - settle: scan again next tick
    files: bool = False  # the folder holds files, not only subfolders
    digest: str | None = None  # of the file names when a changed-folder pass began (None: an audit pass)
    last: str | None = None


@dataclass
class _State:
    folders: dict[str, _Folder] = field(default_factory=lambda: {"": _Folder()})
    scan: _Pass | None = None  # the pass over a changed folder
    audit: _Pass | None = None  # the audit's pass
    audited: str | None = None  # the folder the audit finished last

    @classmethod
    def load(cls, cursor: dict | None) -> _State:
        if not cursor or cursor.get("v") != CURSOR_VERSION:
            return cls()
        return cls(
            {k: _Folder(*v) for k, v in cursor["folders"].items()},
            _Pass(**cursor["scan"]) if cursor.get("scan") else None,
            _Pass(**cursor["audit"]) if cursor.get("audit") else None,
            cursor.get("audited"),
        )

    def dump(self) -> dict:
        return {
            "v": CURSOR_VERSION,
            "folders": {k: list(asdict(f).values()) for k, f in self.folders.items()},
            "scan": asdict(self.scan) if self.scan else None,
            "audit": asdict(self.audit) if self.audit else None,
            "audited": self.audited,
        }

    def forget(self, rel: str) -> None:
        for key in [k for k in self.folders if k == rel or k.startswith(rel + "/") or rel == ""]:
            del self.folders[key]
        if self.scan and self.scan.folder not in self.folders:
            self.scan = None
        if self.audit and self.audit.folder not in self.folders:
            self.audit = None


class _Tick:
    def __init__(self, tree: Tree, st: _State, now_ns: int, settle_ns: int):
        self.tree, self.st, self.now_ns, self.settle_ns = tree, st, now_ns, settle_ns
        self.changes: list[Change] = []
        self.inspected = 0
        self.settling = False
        self.listed: dict[str, list[str]] = {}  # names listed this tick, per folder

    def start(self, rel: str, found: list[str] | None = None, audit: _Pass | None = None) -> _Pass | None:
        """A pass over ``rel``. For a changed folder (``found`` given) its names are listed first:
        new subfolders go to ``found``, and if every file name seen by the last such pass is still
        there with no new name among them, only later names can be new files: the pass skips ahead.
        ``audit`` is the audit's pass when it is half-way through this folder: it waits while this
        pass runs, and this pass does not repeat what the audit reported."""
        try:
            p = _Pass(rel, self.now_ns, self.tree.stamp(rel))
            if found is None:
                return p
            names = self.tree.names(rel)
        except (FileNotFoundError, NotADirectoryError):
            self.st.forget(rel)
            return None
        self.listed[rel] = [n for n, _ in names]
        self._register([n for n, is_dir in names if is_dir], rel, found)
        files = [n for n, is_dir in names if not is_dir]
        folder = self.st.folders[rel]
        if audit is not None and audit.after is not None:
            p.covered = [audit.after, audit.t0 - self.settle_ns]
        if folder.last is not None and _digest(files[: bisect.bisect_right(files, folder.last)]) == folder.digest:
            # A file rewritten under an old name is left to the next full pass or the audit (mark ``seen``).
            p.after = p.skipped_to = folder.last if folder.boundary is None else min(folder.boundary, folder.last)
        p.files, p.digest, p.last = bool(files), _digest(files), files[-1] if files else None
        return p

    def _register(self, dirs: list[str], parent: str, found: list[str] | None) -> None:
        for name in dirs:
            rel = _join(parent, name)
            if rel not in self.st.folders:
                self.st.folders[rel] = _Folder()  # everything in a folder never seen before is new
                if found is not None:
                    found.append(rel)

    def step(self, p: _Pass, budget: int, found: list[str] | None) -> bool:
        """Read one slice of ``p``'s folder (new subfolders go to ``found``); True when the folder is done."""
        folder, until = self.st.folders[p.folder], p.t0 - self.settle_ns
        try:
            entries, done = self.tree.children(p.folder, p.after, budget, self.listed.get(p.folder))
        except (FileNotFoundError, NotADirectoryError):
            self.st.forget(p.folder)
            return True
        self.inspected += max(len(entries), 1)
        self._register([e.name for e in entries if e.is_dir], p.folder, found)
        for e in entries:
            if e.is_dir:
                continue
            p.files = True
            if e.changed_ns > until:  # changed after the pass began (or still being written): a later pass's
                if p.digest is not None:  # a changed folder's pass looks again next tick
                    p.unsettled = True
                    self.settling |= e.changed_ns > self.now_ns - self.settle_ns
            elif e.changed_ns > max(folder.mark(e.name), p.covered[1] if p.covered and e.name <= p.covered[0] else 0):
                self.changes.append(Change(_join(p.folder, e.name), f"{e.uri}|{e.size}|{e.modified}"))
        if entries:
            p.after = entries[-1].name
        if done:
            self._finish(p, folder, until)
        return done

    def _finish(self, p: _Pass, folder: _Folder, until: int) -> None:
        if p.unsettled:
            folder.stamp = None  # changed within the settle margin: look again next tick
        elif p.stamp is None:
            # No stamps (object stores): folders of folders are relisted every tick, which is
            # how new day or batch folders are found at once; folders of files wait for the audit.
            folder.stamp = 0 if p.files else None
        elif p.digest is not None:  # (an audit leaves the listing stamp to the changed-folder passes)
            folder.stamp = None if p.stamp > until else p.stamp
        if p.skipped_to is not None:  # names up to it keep their mark; the names read now are seen to ``until``
            folder.boundary, folder.tail_seen = p.skipped_to, until
        else:  # every name was read
            folder.seen = max(folder.seen, until)
            if folder.boundary is not None and folder.tail_seen <= folder.seen:
                folder.boundary, folder.tail_seen = None, 0
        if p.digest is not None:  # an audit pass lists no names
            unsure = p.unsettled  # a pass that left unsettled files must not vouch for their names
            folder.digest, folder.last = (None, None) if unsure else (p.digest, p.last)


def poll(
    tree: Tree,
    cursor: dict | None,
    limit: int = DEFAULT_LIMIT,
    settle_s: float = DEFAULT_SETTLE_S,
    now_ns: int | None = None,
) -> Poll:
    """One tick: the files changed since ``cursor``, and the cursor to store for the next tick."""
    st = _State.load(cursor)
    tick = _Tick(tree, st, now_ns if now_ns is not None else time.time_ns(), int(settle_s * _NS))

    # 1. One stat per known folder: whose listing moved since it was scanned?
    queue: list[str] = []
    for rel in sorted(st.folders):
        if rel not in st.folders:
            continue  # forgotten with its parent
        try:
            stamp = tree.stamp(rel)
        except (FileNotFoundError, NotADirectoryError):
            st.forget(rel)
            continue
        recorded = st.folders[rel].stamp
        if (recorded is None or (stamp is not None and stamp != recorded)) and not (st.scan and st.scan.folder == rel):
            queue.append(rel)
    if "" not in st.folders:
        return Poll([], _State().dump(), True, tick.inspected, missing=True)

    # 2. Changed (and new) folders, in turn; one pass may span ticks.
    budget, scanned = limit, set()
    while budget > 0 and (st.scan or queue):
        if st.scan is None:
            rel = queue.pop(0)
            if rel not in st.folders:
                continue
            st.scan = tick.start(rel, queue, st.audit if st.audit and st.audit.folder == rel else None)
            if st.scan is None:
                continue
        before = tick.inspected
        if tick.step(st.scan, budget, queue):
            scanned.add(st.scan.folder)
            st.scan = None
        budget -= tick.inspected - before
    caught_up = st.scan is None and not queue

    # 3. The audit: unchanged folders in turn, for files rewritten in place. It always gets a share.
    budget = max(budget, limit // 10)
    busy = scanned | set(queue) | ({st.scan.folder} if st.scan else set())
    for _ in range(len(st.folders) + 1):
        if budget <= 0 or not st.folders or (st.audit and st.scan and st.audit.folder == st.scan.folder):
            break  # the audit waits while its folder's changes are being scanned
        if st.audit is None:
            order = sorted(st.folders)
            rel = order[bisect.bisect_right(order, st.audited) % len(order)] if st.audited is not None else order[0]
            st.audited = rel
            st.audit = None if rel in busy else tick.start(rel)
            if st.audit is None:
                continue
        before = tick.inspected
        if tick.step(st.audit, budget, None):
            st.audited, st.audit = st.audit.folder, None
        budget -= tick.inspected - before
    return Poll(tick.changes, st.dump(), caught_up, tick.inspected, settling=tick.settling)


@dataclass
class FileSet:
    """An order-independent digest of a set of fingerprints: what a run_key is derived from."""

    count: int = 0
    digest: int = 0
    first: str = ""

    def add(self, change: Change) -> None:
        value = int.from_bytes(hashlib.sha256(change.fingerprint.encode()).digest()[:16], "big")
        self.digest = (self.digest + value) % (1 << 128)
        self.count += 1
        self.first = min(self.first, change.path) if self.first else change.path

    @property
    def key(self) -> str:
        return f"{self.count}-{self.digest:032x}"

    def to_json(self) -> dict:
        return {"count": self.count, "digest": f"{self.digest:032x}", "first": self.first}

    @classmethod
    def from_json(cls, data: dict | None) -> FileSet:
        return cls(data["count"], int(data["digest"], 16), data["first"]) if data else cls()
