"""Listing a landing location: a ``<label>/<file>`` folder or a ``uri,label`` manifest CSV.

Everything goes through fsspec, so ``file://``, plain paths and cloud URIs
(``abfss://``, ``s3://`` once credentials are configured) are read the same way.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

import fsspec
from fsspec.implementations.local import LocalFileSystem

from rayml_assets.core.images import RejectReason

MANIFEST_SUFFIX = ".csv"


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


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = fsspec.core.url_to_fs(uri)
    return fs, root.rstrip("/")


@functools.lru_cache(maxsize=4096)
def _real_dir(path: str) -> str:
    return os.path.realpath(path)


def _real(fs: fsspec.AbstractFileSystem, path: str) -> str:
    # Only a local filesystem has symlinks that can point outside the landing root.
    # Folders are resolved once each; a file costs one lstat unless it is a link.
    if not isinstance(fs, LocalFileSystem):
        return posixpath.normpath(path)
    if os.path.islink(path):
        return os.path.realpath(path)
    return posixpath.join(_real_dir(posixpath.dirname(path)), posixpath.basename(path))


def _inside(fs: fsspec.AbstractFileSystem, root: str, path: str) -> bool:
    real_root, real_path = _real_dir(root) if isinstance(fs, LocalFileSystem) else root, _real(fs, path)
    return real_path == real_root or real_path.startswith(real_root.rstrip("/") + "/")


def _modified(info: dict) -> str:
    stamp = info.get("mtime") or info.get("last_modified") or info.get("LastModified") or info.get("created") or ""
    return str(stamp)


def _uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return fs.unstrip_protocol(path)


def _scan_local(root: str) -> dict[str, tuple[int, str, bool]]:
    """Every file under a local folder with its (size, modified, via_link), one stat per file.

    Symlinked folders are followed as fsspec does; ``via_link`` marks files whose
    path went through a link, the only ones that need resolving against the root.
    """
    found: dict[str, tuple[int, str, bool]] = {}
    stack = [(root, False)]
    while stack:
        folder, linked = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                via_link = linked or entry.is_symlink()
                if entry.is_dir():
                    stack.append((entry.path, via_link))
                elif entry.is_file():
                    st = entry.stat()
                    found[entry.path] = (st.st_size, str(st.st_mtime_ns), via_link)
    return found


def digest_lines(lines: Iterable[str]) -> str:
    """A short, stable identity of a sequence of stamp lines (a listing, a list of fingerprints)."""
    return hashlib.blake2b("\n".join(lines).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class FolderListing:
    """One listing of a landing folder: each file's stamp, before any becomes a ``LandedFile``."""

    fs: fsspec.AbstractFileSystem
    root: str
    stamps: dict[str, tuple[int | None, str, bool]]  # path -> (size, modified, reached through a link)

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def digest(self) -> str:
        """Identity of the whole listing: a file added, removed, resized or rewritten changes it."""
        return digest_lines(f"{path}|{size}|{modified}" for path, (size, modified, _) in sorted(self.stamps.items()))

    def files(self, limit: int | None = None, after: str | None = None) -> list[LandedFile]:
        """Files under ``<root>/<label>/...`` in sorted order; ``after``/``limit`` bound one listing."""
        found: list[LandedFile] = []
        skip = len(self.root) + 1
        for path in sorted(self.stamps):
            rel = path[skip:]
            if after is not None and rel <= after:
                continue
            if rel.startswith(".") or "/." in rel:
                continue  # hidden files (editor swap files, .DS_Store) are not data
            size, modified, via_link = self.stamps[path]
            label, in_folder, _ = rel.partition("/")
            uri = f"file://{path}" if self.local else _uri(self.fs, path)
            # A local file reached without any symlink is inside the root by construction.
            if via_link and not _inside(self.fs, self.root, path):
                found.append(LandedFile(uri, label, "", RejectReason.PATH_ESCAPES_ROOT, "resolves outside the landing root", size, modified))
            elif not in_folder:
                found.append(LandedFile(uri, "", "", RejectReason.UNKNOWN_LABEL, "file is not inside a <label>/ folder", size, modified))
            else:
                found.append(LandedFile(uri, label, path, None, "", size, modified))
            if limit is not None and len(found) >= limit:
                break
        return found


def scan_folder(uri: str) -> FolderListing:
    fs, root = _fs(uri)
    if not fs.isdir(root):
        raise LandingError(f"landing folder {uri!r} does not exist or is not a folder")
    if isinstance(fs, LocalFileSystem):
        return FolderListing(fs, root, _scan_local(root))
    found = fs.find(root, withdirs=False, detail=True)
    return FolderListing(fs, root, {path: (info.get("size"), _modified(info), True) for path, info in found.items()})


def list_folder(uri: str, limit: int | None = None, after: str | None = None) -> list[LandedFile]:
    return scan_folder(uri).files(limit=limit, after=after)


def read_manifest(uri: str) -> list[LandedFile]:
    """Rows of a ``uri,label`` CSV. Relative URIs resolve against the manifest's folder,
    and every URI must stay inside that folder."""
    fs, manifest_path = _fs(uri)
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
            ref_fs, path = _fs(ref)
            same_fs = type(ref_fs) is type(fs)
        else:
            path, same_fs = posixpath.normpath(posixpath.join(root, ref)), True
        source = _uri(fs, path) if same_fs else ref
        if not same_fs or not _inside(fs, root, path):
            found.append(LandedFile(source, label, "", RejectReason.PATH_ESCAPES_ROOT, f"{ref!r} is outside {root!r}"))
        else:
            found.append(LandedFile(source, label, path))
    return found


def list_landing(uri: str, limit: int | None = None, after: str | None = None) -> list[LandedFile]:
    """A manifest CSV or a label folder, decided by the URI."""
    if uri.endswith(MANIFEST_SUFFIX):
        return read_manifest(uri)[:limit] if limit else read_manifest(uri)
    return list_folder(uri, limit=limit, after=after)



def read_bytes(uri: str) -> bytes:
    if uri.startswith("file://"):  # the common local case, without fsspec's per-call overhead
        with open(uri.removeprefix("file://"), "rb") as fh:
            return fh.read()
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.cat_file(path)
