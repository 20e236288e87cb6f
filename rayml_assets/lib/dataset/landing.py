"""Listing a landing location: a ``<label>/<file>`` folder or a ``uri,label`` manifest CSV.

Filesystems, stamps, hidden names and root checks come from ``lib.common.listing``;
this module adds the landing semantics: labels from folders, manifests, digests.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import posixpath
import time
from collections.abc import Iterable
from dataclasses import dataclass

import fsspec

from rayml_assets.lib.common.images import RejectReason
from rayml_assets.lib.common.listing import (
    MANIFEST_SUFFIX,
    SETTLE_S,
    file_uri,
    filesystem,
    inside,
    is_local,
    modified_stamp,
    visible_path,
)


class LandingError(ValueError):
    """The landing location itself is missing or malformed (not one bad file)."""


@dataclass(frozen=True)
class LandedFile:
    """One candidate file. ``problem`` is set when it is rejected before being read."""

    source_uri: str
    label: str
    path: str  # the fsspec path to read; empty when the file must not be read
    problem: RejectReason | None = None
    detail: str = ""
    size: int | None = None
    modified: str = ""  # the store's modification stamp, compared as text

    @property
    def fingerprint(self) -> str:
        """Cheap identity of this file's state (rsync's quick check): path, size and mtime."""
        return f"{self.source_uri}|{self.size}|{self.modified}"


def _walk_local(root: str) -> dict[str, tuple[int, list[tuple[str, bool]]]]:
    """Each folder under a local root: its mtime (ns) and its files as (name, reached through a link).

    No call per file: entry types come with the listing. Each folder is stamped before it
    is listed, so an entry added during the listing moves the stamp past the recorded one.
    Symlinked folders are followed as fsspec does, each real folder once (a link to an
    ancestor would otherwise never end).
    """
    folders: dict[str, tuple[int, list[tuple[str, bool]]]] = {}
    visited: set[tuple[int, int]] = set()
    stack = [(root, False)]
    while stack:
        folder, linked = stack.pop()
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
            names: list[tuple[str, bool]] = []
            with os.scandir(fd) as entries:
                for entry in entries:
                    via_link = linked or entry.is_symlink()
                    if entry.is_dir():
                        stack.append((f"{folder}/{entry.name}", via_link))
                    elif entry.is_file():
                        names.append((entry.name, via_link))
            folders[folder] = (st.st_mtime_ns, names)
        finally:
            os.close(fd)
    return folders


def _stat_local(folders: dict[str, tuple[int, list[tuple[str, bool]]]]) -> dict[str, tuple[int, str, bool]]:
    """One stat per file, relative to its folder's descriptor so the kernel does not walk the whole path again."""
    found: dict[str, tuple[int, str, bool]] = {}
    for folder, (_, names) in folders.items():
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, via_link in names:
                try:
                    st = os.stat(name, dir_fd=fd)
                except FileNotFoundError:
                    continue  # removed since the listing: its folder's stamp has moved too
                found[f"{folder}/{name}"] = (st.st_size, str(st.st_mtime_ns), via_link)
        finally:
            os.close(fd)
    return found


def digest_lines(lines: Iterable[str]) -> str:
    """A short, stable identity of a sequence of stamp lines (a listing, a list of fingerprints)."""
    return hashlib.blake2b("\n".join(lines).encode(), digest_size=16).hexdigest()


class FolderListing:
    """One listing of a landing folder. On a local folder each file's stamp is read only when asked for."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        stamps: dict[str, tuple[int | None, str, bool]] | None = None,
        folders: dict[str, tuple[int, list[tuple[str, bool]]]] | None = None,
        started_ns: int = 0,
    ):
        self.fs, self.root = fs, root
        self._stamps = stamps  # path -> (size, modified, reached through a link)
        self._folders = folders  # local only: see _walk_local
        self._started_ns = started_ns  # when the walk began (the clock folder mtimes are compared with)

    @property
    def local(self) -> bool:
        return is_local(self.fs)

    @property
    def stamps(self) -> dict[str, tuple[int | None, str, bool]]:
        if self._stamps is None:
            self._stamps = _stat_local(self._folders or {})
        return self._stamps

    def folder_digest(self, settle_s: float = SETTLE_S) -> str | None:
        """Identity of the folders alone: each folder's path and mtime, without a call per file.

        A file added, removed or renamed moves its folder's mtime; a file rewritten in place
        does not. None on object stores (no folder mtimes) or while some folder's mtime is
        younger than ``settle_s``.
        """
        if self._folders is None:
            return None
        settled_before = self._started_ns - int(settle_s * 1e9)
        if any(mtime >= settled_before for mtime, _ in self._folders.values()):
            return None
        return digest_lines(f"{folder}|{mtime}" for folder, (mtime, _) in sorted(self._folders.items()))

    def digest(self) -> str:
        """Identity of every file's stamp: a file added, removed, resized or rewritten changes it."""
        return digest_lines(f"{path}|{size}|{modified}" for path, (size, modified, _) in sorted(self.stamps.items()))

    def files(self, limit: int | None = None, after: str | None = None) -> list[LandedFile]:
        """Files under ``<root>/<label>/...`` in sorted order; ``after``/``limit`` bound one listing."""
        found: list[LandedFile] = []
        skip = len(self.root) + 1
        stamps = self.stamps
        for path in sorted(stamps):
            rel = path[skip:]
            if after is not None and rel <= after:
                continue
            if not visible_path(rel):
                continue  # hidden files (editor swap files, .DS_Store) are not data
            size, modified, via_link = stamps[path]
            label, in_folder, _ = rel.partition("/")
            uri = file_uri(self.fs, path)
            # A local file reached without any symlink is inside the root by construction.
            if via_link and not inside(self.fs, self.root, path):
                found.append(LandedFile(uri, label, "", RejectReason.PATH_ESCAPES_ROOT, "resolves outside the landing root", size, modified))
            elif not in_folder:
                found.append(LandedFile(uri, "", "", RejectReason.UNKNOWN_LABEL, "file is not inside a <label>/ folder", size, modified))
            else:
                found.append(LandedFile(uri, label, path, None, "", size, modified))
            if limit is not None and len(found) >= limit:
                break
        return found


def scan_folder(uri: str) -> FolderListing:
    fs, root = filesystem(uri)
    if not fs.isdir(root):
        raise LandingError(f"landing folder {uri!r} does not exist or is not a folder")
    if is_local(fs):
        started_ns = time.time_ns()
        return FolderListing(fs, root, folders=_walk_local(root), started_ns=started_ns)
    found = fs.find(root, withdirs=False, detail=True)
    return FolderListing(fs, root, stamps={path: (info.get("size"), modified_stamp(info), True) for path, info in found.items()})


def list_folder(uri: str, limit: int | None = None, after: str | None = None) -> list[LandedFile]:
    return scan_folder(uri).files(limit=limit, after=after)


def read_manifest(uri: str) -> list[LandedFile]:
    """Rows of a ``uri,label`` CSV. Relative URIs resolve against the manifest's folder,
    and every URI must stay inside that folder."""
    fs, manifest_path = filesystem(uri)
    if not fs.isfile(manifest_path):
        raise LandingError(f"manifest {uri!r} does not exist")
    root = posixpath.dirname(manifest_path)
    text = fs.cat_file(manifest_path).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"uri", "label"} <= set(reader.fieldnames):
        raise LandingError(f"manifest {uri!r} must have the columns uri,label; got {reader.fieldnames}")
    found: list[LandedFile] = []
    for line_no, row in enumerate(reader, start=2):
        ref, label = (row.get("uri") or "").strip(), (row.get("label") or "").strip()
        if not ref:
            raise LandingError(f"manifest {uri!r} line {line_no}: empty uri")
        if "://" in ref:
            ref_fs, path = filesystem(ref)
            same_fs = type(ref_fs) is type(fs)
        else:
            path, same_fs = posixpath.normpath(posixpath.join(root, ref)), True
        source = file_uri(fs, path) if same_fs else ref
        if not same_fs or not inside(fs, root, path):
            found.append(LandedFile(source, label, "", RejectReason.PATH_ESCAPES_ROOT, f"{ref!r} is outside {root!r}"))
        else:
            found.append(LandedFile(source, label, path))
    return found


def list_landing(uri: str, limit: int | None = None, after: str | None = None) -> list[LandedFile]:
    """A manifest CSV or a label folder, decided by the URI."""
    if uri.endswith(MANIFEST_SUFFIX):
        return read_manifest(uri)[:limit] if limit else read_manifest(uri)
    return list_folder(uri, limit=limit, after=after)


class FileTooLarge(Exception):
    def __init__(self, size: int, limit: int):
        super().__init__(f"{size} bytes exceeds max_file_bytes={limit}")
        self.size = size


def read_bytes(uri: str, max_bytes: int | None = None) -> bytes:
    """The file's bytes; ``FileTooLarge`` from its size, before any is read, when over ``max_bytes``."""
    limit = max_bytes if max_bytes is not None else -1
    if uri.startswith("file://"):  # the common local case, without fsspec's per-call overhead
        with open(uri.removeprefix("file://"), "rb") as fh:
            if 0 <= limit < (size := os.fstat(fh.fileno()).st_size):
                raise FileTooLarge(size, limit)
            data = fh.read(limit + 1 if limit >= 0 else -1)  # a file growing while read stops one byte over
    else:
        fs, path = fsspec.core.url_to_fs(uri)
        if 0 <= limit < (size := fs.size(path)):
            raise FileTooLarge(size, limit)
        data = fs.cat_file(path)
    if 0 <= limit < len(data):
        raise FileTooLarge(len(data), limit)
    return data
