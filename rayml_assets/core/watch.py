"""What is new in a landing location, found in one bounded step per sensor tick.

A sensor cursor must stay small, and a tick should cost the same whether the
landing holds a thousand files or a million. So the watcher remembers one entry
per *folder*, never per file: ``[listing stamp, seen-up-to]``.

* **Changed folders.** A folder's mtime moves whenever an entry is created,
  renamed or deleted in it. One ``stat`` per known folder per tick finds them;
  a changed folder is then scanned, and its files whose change time (ctime) is
  after the folder's *seen-up-to* mark are new.
* **Audit.** A file rewritten in place does not move its folder's mtime, so a
  slow rolling audit re-checks unchanged folders, ``limit`` entries per tick.
  Object stores have no folder mtimes: there the audit is what finds new files
  in existing folders, while brand-new folders are still found in one tick.

Every scan ("pass") over a folder reads at most ``limit`` entries per tick and
resumes after the last name next tick, so a tick costs one ``stat`` per folder
plus ``limit`` entries. A pass started at ``t0`` reports files changed in
``(seen, t0 - settle]`` and then sets ``seen = t0 - settle``: a file is reported
once per change, and the ``settle`` margin leaves out files still being written
(and covers coarse filesystem clocks). Landing each batch in its own folder
(``<label>/<batch>/``, a day folder) makes a new batch cost one tick; adding
files to a big existing folder costs ``folder size / limit`` ticks of scanning.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import posixpath
import stat as stat_
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Protocol

import fsspec
from fsspec.implementations.local import LocalFileSystem

from rayml_assets.core.landing import MANIFEST_SUFFIX, _modified

CURSOR_VERSION = 1
DEFAULT_LIMIT = 1_000
DEFAULT_SETTLE_S = 2.0
_NS = 1_000_000_000


@dataclass(frozen=True)
class Entry:
    """One child of a folder, as the store reports it."""

    name: str
    is_dir: bool
    size: int | None = None
    modified: str = ""  # as in LandedFile.modified, so fingerprints match ingest's landing index
    changed_ns: int = 0  # ctime locally, last-modified on object stores
    uri: str = ""


class Tree(Protocol):
    def stamp(self, rel: str) -> int | None:
        """The folder's listing stamp (ns); None where the store has none. Raises FileNotFoundError."""

    def children(self, rel: str, after: str | None, limit: int) -> tuple[list[Entry], bool]:
        """Up to ``limit`` children named after ``after`` in name order, and whether the folder is exhausted."""


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _visible(name: str) -> bool:
    return not name.startswith(".")  # as list_folder: editor swap files, .DS_Store, partial uploads


class LocalTree:
    """A local folder through ``os``: listing names is cheap, only the slice read this tick is stat-ed."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def _path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def stamp(self, rel: str) -> int:
        st = os.stat(self._path(rel))
        if not stat_.S_ISDIR(st.st_mode):
            raise FileNotFoundError(self._path(rel))
        return st.st_mtime_ns

    def children(self, rel: str, after: str | None, limit: int) -> tuple[list[Entry], bool]:
        folder = self._path(rel)
        names = sorted(n for n in os.listdir(folder) if _visible(n))
        start = bisect.bisect_right(names, after) if after is not None else 0
        out: list[Entry] = []
        for name in names[start : start + limit]:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
                if stat_.S_ISLNK(st.st_mode):
                    st = os.stat(path)  # a link to a file counts as that file; ingest checks where it points
                    if stat_.S_ISDIR(st.st_mode):
                        continue  # linked folders are not followed (no cycles, no escaping the root)
            except OSError:
                continue  # vanished between listing and stat, or a dangling link
            is_dir = stat_.S_ISDIR(st.st_mode)
            out.append(Entry(name, is_dir, None if is_dir else st.st_size, str(st.st_mtime), st.st_ctime_ns, "file://" + path))
        return out, start + limit >= len(names)


def _to_ns(value) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * _NS)
    if isinstance(value, (int, float)):
        return int(value * _NS)
    try:
        return int(datetime.fromisoformat(str(value)).timestamp() * _NS)
    except ValueError:
        return 0


class FsspecTree:
    """Any fsspec store (abfss://, s3://). Object stores have no folder stamps, so ``stamp`` is None."""

    def __init__(self, uri: str):
        self.fs, root = fsspec.core.url_to_fs(uri)
        self.root = root.rstrip("/")

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def stamp(self, rel: str) -> None:
        return None  # a missing folder shows up as FileNotFoundError when it is listed

    def children(self, rel: str, after: str | None, limit: int) -> tuple[list[Entry], bool]:
        path = self._path(rel)
        self.fs.invalidate_cache(path)  # s3fs/adlfs cache listings; a watcher must see the store
        infos = sorted(self.fs.ls(path, detail=True), key=lambda i: i["name"])
        out: list[Entry] = []
        rest = [i for i in infos if _visible(posixpath.basename(i["name"].rstrip("/")))]
        names = [posixpath.basename(i["name"].rstrip("/")) for i in rest]
        start = bisect.bisect_right(names, after) if after is not None else 0
        for info, name in zip(rest[start : start + limit], names[start : start + limit]):
            is_dir = info.get("type") == "directory"
            modified = _modified(info)
            stamp = info.get("mtime") or info.get("last_modified") or info.get("LastModified") or modified
            out.append(Entry(name, is_dir, info.get("size"), modified, _to_ns(stamp), self.fs.unstrip_protocol(info["name"])))
        return out, start + limit >= len(names)


def tree_for(uri: str) -> Tree:
    """The tree to watch for a landing URI; a manifest CSV landing watches the manifest's folder."""
    if uri.endswith(MANIFEST_SUFFIX):
        uri = uri.rsplit("/", 1)[0]
    fs, root = fsspec.core.url_to_fs(uri)
    return LocalTree(root) if isinstance(fs, LocalFileSystem) else FsspecTree(uri)


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
class _Pass:
    """One scan over one folder; it may span ticks."""

    folder: str
    t0: int  # when the pass began: it reports changes up to t0 - settle
    stamp: int | None  # the folder's stamp when the pass began
    after: str | None = None
    unsettled: bool = False  # saw a change after t0 - settle: scan again next tick
    files: bool = False  # the folder holds files, not only subfolders


@dataclass
class _State:
    folders: dict[str, list] = field(default_factory=lambda: {"": [None, 0]})  # rel -> [stamp | None, seen_ns]
    scan: _Pass | None = None  # the pass over a changed folder
    audit: _Pass | None = None  # the audit's pass
    audited: str | None = None  # the folder the audit finished last

    @classmethod
    def load(cls, cursor: dict | None) -> _State:
        if not cursor or cursor.get("v") != CURSOR_VERSION:
            return cls()
        return cls(
            {k: list(v) for k, v in cursor["folders"].items()},
            _Pass(**cursor["scan"]) if cursor.get("scan") else None,
            _Pass(**cursor["audit"]) if cursor.get("audit") else None,
            cursor.get("audited"),
        )

    def dump(self) -> dict:
        return {
            "v": CURSOR_VERSION,
            "folders": self.folders,
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

    def start(self, rel: str) -> _Pass | None:
        try:
            return _Pass(rel, self.now_ns, self.tree.stamp(rel))
        except (FileNotFoundError, NotADirectoryError):
            self.st.forget(rel)
            return None

    def step(self, p: _Pass, budget: int, found: list[str] | None) -> bool:
        """Read one slice of ``p``'s folder (new subfolders go to ``found``); True when the folder is done."""
        seen, until = self.st.folders[p.folder][1], p.t0 - self.settle_ns
        try:
            entries, done = self.tree.children(p.folder, p.after, budget)
        except (FileNotFoundError, NotADirectoryError):
            self.st.forget(p.folder)
            return True
        self.inspected += max(len(entries), 1)
        for e in entries:
            rel = _join(p.folder, e.name)
            if e.is_dir:
                if rel not in self.st.folders:
                    self.st.folders[rel] = [None, 0]  # everything in a folder never seen before is new
                    if found is not None:
                        found.append(rel)
                continue
            p.files = True
            if e.changed_ns > until:
                p.unsettled = self.settling = True  # still being written, or changed after the pass began: next pass
            elif e.changed_ns > seen:
                self.changes.append(Change(rel, f"{e.uri}|{e.size}|{e.modified}"))
        if entries:
            p.after = entries[-1].name
        if done:
            if p.unsettled or (p.stamp is not None and p.stamp > until):
                stamp = None  # changed within the settle margin: look again next tick
            elif p.stamp is None:
                # No stamps (object stores): folders of folders are relisted every tick, which is
                # how new day or batch folders are found at once; folders of files wait for the audit.
                stamp = 0 if p.files else None
            else:
                stamp = p.stamp
            self.st.folders[p.folder] = [stamp, max(seen, until)]
        return done


def poll(
    tree: Tree, cursor: dict | None, limit: int = DEFAULT_LIMIT, settle_s: float = DEFAULT_SETTLE_S, now_ns: int | None = None
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
        recorded = st.folders[rel][0]
        if (recorded is None or (stamp is not None and stamp != recorded)) and not (st.scan and st.scan.folder == rel):
            queue.append(rel)
    if "" not in st.folders:
        return Poll([], _State().dump(), True, tick.inspected, missing=True)

    # 2. Changed (and new) folders, in turn; one pass may span ticks.
    budget, scanned = limit, set()
    while budget > 0 and (st.scan or queue):
        if st.scan is None:
            rel = queue.pop(0)
            st.scan = tick.start(rel) if rel in st.folders else None
            if st.scan is None:
                continue
            if st.audit and st.audit.folder == rel:
                st.audit = None  # this pass covers everything the audit would
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
        if budget <= 0 or not st.folders:
            break
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
