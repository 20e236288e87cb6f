"""The stores a watcher reads (``lib.common.watch``): a local folder, or any fsspec store.

A :class:`Tree` answers three questions about a folder, each in one listing or one
``stat``: its listing stamp, its children's names, and the details of a slice of them.
:class:`LocalTree` lists through ``os`` and keeps unchanged folders' names in a
process-wide cache; :class:`FsspecTree` reads object stores (``abfss://``, ``s3://``),
which have no folder stamps. Filesystems, stamps and hidden names come from
``lib.common.listing``, so an entry's fingerprint matches the landing listing's.
"""

from __future__ import annotations

import bisect
import os
import posixpath
import stat as stat_
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from rayml_assets.lib.common.listing import (
    MANIFEST_SUFFIX,
    filesystem,
    is_local,
    modified_stamp,
    raw_stamp,
    visible,
)

if TYPE_CHECKING:
    from rayml_assets.lib.common.storage_options import StorageSettings

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

    def names(self, rel: str) -> list[tuple[str, bool]]:
        """Every child's (name, is_folder), in name order: one listing, no call per child."""

    def children(
        self, rel: str, after: str | None, limit: int, names: list[str] | None = None
    ) -> tuple[list[Entry], bool]:
        """Up to ``limit`` children named after ``after`` in name order, and whether the folder is exhausted.
        ``names``: the folder's names, listed earlier in this tick, where the store can use them."""


class _NamesCache:
    """Sorted names of local folders, valid while the folder's mtime is unchanged.

    A folder's names cannot change without moving its mtime, so the audit's slices
    of an unchanged folder (every idle tick) are read without listing the folder
    again. Process-wide, because the daemon's code server evaluates every tick of
    a sensor in the same process; bounded by the number of names held.
    """

    def __init__(self, max_names: int = 2_000_000, min_age_ns: int = 2 * _NS):
        self.max_names, self.min_age_ns = max_names, min_age_ns
        self._folders: dict[str, tuple[int, list[tuple[str, bool]]]] = {}
        self._held = 0
        self._lock = threading.Lock()  # a code server may evaluate several sensors at once

    def get(self, path: str, stamp: int) -> list[tuple[str, bool]] | None:
        hit = self._folders.get(path)
        return hit[1] if hit is not None and hit[0] == stamp else None

    def put(self, path: str, stamp: int, names: list[tuple[str, bool]]) -> None:
        if time.time_ns() - stamp < self.min_age_ns:
            return  # a coarse filesystem clock could give the next change this same stamp
        with self._lock:
            old = self._folders.pop(path, None)
            self._held -= len(old[1]) if old else 0
            while self._folders and self._held + len(names) > self.max_names:
                self._held -= len(self._folders.pop(next(iter(self._folders)))[1])  # oldest entry first
            if len(names) <= self.max_names:
                self._folders[path] = (stamp, names)
                self._held += len(names)


_NAMES = _NamesCache()


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

    def names(self, rel: str) -> list[tuple[str, bool]]:
        path = self._path(rel)
        st = os.stat(path)  # before the listing: a change during it moves the stamp again
        cached = _NAMES.get(path, st.st_mtime_ns)
        if cached is not None:
            return cached
        if st.st_nlink == 2:  # no subfolders (find's leaf optimisation): names alone, twice as fast
            names = [(name, False) for name in sorted(os.listdir(path)) if visible(name)]
        else:  # btrfs and some network filesystems report 1: is_dir comes with the listing (d_type)
            with os.scandir(path) as entries:
                names = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries if visible(e.name))
        _NAMES.put(path, st.st_mtime_ns, names)
        return names

    def children(
        self, rel: str, after: str | None, limit: int, names: list[str] | None = None
    ) -> tuple[list[Entry], bool]:
        folder = self._path(rel)
        names = names if names is not None else [name for name, _ in self.names(rel)]
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
            size = None if is_dir else st.st_size
            out.append(Entry(name, is_dir, size, str(st.st_mtime_ns), st.st_ctime_ns, "file://" + path))
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

    def __init__(self, uri: str, storage: StorageSettings | None = None):
        self.fs, self.root = filesystem(uri, storage)

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def stamp(self, rel: str) -> None:
        return None  # a missing folder shows up as FileNotFoundError when it is listed

    def _listing(self, rel: str) -> tuple[list[dict], list[str]]:
        path = self._path(rel)
        self.fs.invalidate_cache(path)  # s3fs/adlfs cache listings; a watcher must see the store
        infos = sorted(self.fs.ls(path, detail=True), key=lambda i: i["name"])
        rest = [i for i in infos if visible(posixpath.basename(i["name"].rstrip("/")))]
        return rest, [posixpath.basename(i["name"].rstrip("/")) for i in rest]

    def names(self, rel: str) -> list[tuple[str, bool]]:
        infos, names = self._listing(rel)
        return [(n, i.get("type") == "directory") for i, n in zip(infos, names)]

    def children(
        self, rel: str, after: str | None, limit: int, names: list[str] | None = None
    ) -> tuple[list[Entry], bool]:
        rest, names = self._listing(rel)  # a listing carries the details: nothing to save
        out: list[Entry] = []
        start = bisect.bisect_right(names, after) if after is not None else 0
        for info, name in zip(rest[start : start + limit], names[start : start + limit]):
            is_dir = info.get("type") == "directory"
            modified = modified_stamp(info)
            stamp = raw_stamp(info) or modified
            uri = self.fs.unstrip_protocol(info["name"])
            out.append(Entry(name, is_dir, info.get("size"), modified, _to_ns(stamp), uri))
        return out, start + limit >= len(names)


def tree_for(uri: str, storage: StorageSettings | None = None) -> Tree:
    """The tree to watch for a landing URI; a manifest CSV landing watches the manifest's folder."""
    if uri.endswith(MANIFEST_SUFFIX):
        uri = uri.rsplit("/", 1)[0]
    fs, root = filesystem(uri, storage)
    return LocalTree(root) if is_local(fs) else FsspecTree(uri, storage)
