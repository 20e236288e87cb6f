"""Listing a landing location: a ``<label>/<file>`` folder or a ``uri,label`` manifest CSV.

Filesystems, stamps, hidden names and root checks come from ``lib.common.listing``;
this module adds the landing semantics: labels from folders, manifests, digests.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import posixpath
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass

import fsspec

from rayml_assets.lib.common.images import RejectReason
from rayml_assets.lib.common.storage_options import StorageSettings
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


class NotARegularFile(Exception):
    """A FIFO, device, socket, folder or broken symlink where a file was expected: it is never opened."""


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def _kind(mode: int) -> str:
    return "" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "a special file")


def special_file(path: str, dir_fd: int | None = None) -> str:
    """What a local path is when it is no regular file ("a FIFO", "a broken symlink"), from its
    inode alone, never by opening it (opening a FIFO blocks); "" for a regular or absent file."""
    try:
        return _kind(os.stat(path, dir_fd=dir_fd).st_mode)
    except FileNotFoundError:
        try:  # the name is there but what it points to is not
            return "a broken symlink" if stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode) else ""
        except FileNotFoundError:
            return ""
    except OSError as exc:  # ELOOP: a symlink loop; other errors (EACCES) are the reader's to report
        return "a symlink loop" if exc.errno == errno.ELOOP else ""


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


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop: no folder, quarantined as a special file
        return False


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
                    if _is_dir(entry):
                        stack.append((f"{folder}/{entry.name}", via_link))
                    else:  # special files too: they are quarantined, not silently left out
                        names.append((entry.name, via_link))
            folders[folder] = (st.st_mtime_ns, names)
        finally:
            os.close(fd)
    return folders


Stamp = tuple[int | None, str, bool, str]  # size, modified, reached through a link, what it is if no regular file


def _stat_local(folders: dict[str, tuple[int, list[tuple[str, bool]]]]) -> dict[str, Stamp]:
    """One stat per file, relative to its folder's descriptor so the kernel does not walk the whole path again."""
    found: dict[str, Stamp] = {}
    for folder, (_, names) in folders.items():
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, via_link in names:
                try:
                    st = os.stat(name, dir_fd=fd)
                    kind = _kind(st.st_mode)
                except OSError:
                    if not (kind := special_file(name, dir_fd=fd)):
                        continue  # removed since the listing: its folder's stamp has moved too
                    st = os.lstat(name, dir_fd=fd)
                found[f"{folder}/{name}"] = (st.st_size, str(st.st_mtime_ns), via_link, kind)
        finally:
            os.close(fd)
    return found


def digest_lines(lines: Iterable[str]) -> str:
    """A short, stable identity of a sequence of stamp lines (a listing, a list of fingerprints)."""
    # surrogateescape: a file name that is not UTF-8 hashes as its bytes (UTF-8 text is unchanged).
    return hashlib.blake2b("\n".join(lines).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def utf8_text(name: str) -> bool:
    """False for a name listed from bytes that are not UTF-8 (Python holds them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escaped(name: str) -> str:
    """A name that is not UTF-8, with its stray bytes as ``\\xNN``: storable, and still telling which file."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class FolderListing:
    """One listing of a landing folder. On a local folder each file's stamp is read only when asked for."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        stamps: dict[str, Stamp] | None = None,
        folders: dict[str, tuple[int, list[tuple[str, bool]]]] | None = None,
        started_ns: int = 0,
    ):
        self.fs, self.root = fs, root
        self._stamps = stamps  # path -> Stamp
        self._folders = folders  # local only: see _walk_local
        self._started_ns = started_ns  # when the walk began (the clock folder mtimes are compared with)

    @property
    def local(self) -> bool:
        return is_local(self.fs)

    @property
    def stamps(self) -> dict[str, Stamp]:
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
        return digest_lines(f"{path}|{size}|{modified}" for path, (size, modified, *_) in sorted(self.stamps.items()))

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
            size, modified, via_link, kind = stamps[path]
            label, in_folder, _ = rel.partition("/")
            uri = file_uri(self.fs, path)
            if not utf8_text(rel):  # first: the tables store text, and such a name is none
                label, uri = escaped(label), escaped(uri)
                found.append(LandedFile(uri, label, "", RejectReason.NAME_NOT_UTF8, "the path is not UTF-8", size, modified))
            elif kind:  # where a FIFO or device points matters less than that it is never opened
                found.append(LandedFile(uri, label, "", RejectReason.NOT_A_REGULAR_FILE, f"is {kind}", size, modified))
            # A local file reached without any symlink is inside the root by construction.
            elif via_link and not inside(self.fs, self.root, path):
                found.append(LandedFile(uri, label, "", RejectReason.PATH_ESCAPES_ROOT, "resolves outside the landing root", size, modified))
            elif not in_folder:
                found.append(LandedFile(uri, "", "", RejectReason.UNKNOWN_LABEL, "file is not inside a <label>/ folder", size, modified))
            else:
                found.append(LandedFile(uri, label, path, None, "", size, modified))
            if limit is not None and len(found) >= limit:
                break
        return found


def scan_folder(uri: str, storage: StorageSettings | None = None) -> FolderListing:
    fs, root = filesystem(uri, storage)
    if not fs.isdir(root):
        raise LandingError(f"landing folder {uri!r} does not exist or is not a folder")
    if is_local(fs):
        started_ns = time.time_ns()
        return FolderListing(fs, root, folders=_walk_local(root), started_ns=started_ns)
    found = fs.find(root, withdirs=False, detail=True)
    return FolderListing(fs, root, stamps={path: (info.get("size"), modified_stamp(info), True, "") for path, info in found.items()})


def list_folder(
    uri: str, limit: int | None = None, after: str | None = None, storage: StorageSettings | None = None
) -> list[LandedFile]:
    return scan_folder(uri, storage).files(limit=limit, after=after)


def read_manifest(uri: str, storage: StorageSettings | None = None) -> list[LandedFile]:
    """Rows of a ``uri,label`` CSV. Relative URIs resolve against the manifest's folder,
    and every URI must stay inside that folder."""
    fs, manifest_path = filesystem(uri, storage)
    if not fs.isfile(manifest_path):
        raise LandingError(f"manifest {uri!r} does not exist")
    root = posixpath.dirname(manifest_path)
    reader = csv.DictReader(io.StringIO(_manifest_text(uri, fs.cat_file(manifest_path))))
    try:
        if reader.fieldnames is None or not {"uri", "label"} <= set(reader.fieldnames):
            raise LandingError(f"manifest {uri!r} must have the columns uri,label; got {reader.fieldnames}")
        return [_manifest_row(uri, fs, root, reader.line_num, row, storage) for row in reader]
    except csv.Error as exc:
        raise LandingError(f"manifest {uri!r} line {reader.line_num}: unreadable CSV: {exc}") from exc


def _manifest_text(uri: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LandingError(f"manifest {uri!r} line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _manifest_row(
    uri: str, fs: fsspec.AbstractFileSystem, root: str, line_no: int, row: dict, storage: StorageSettings | None
) -> LandedFile:
    """One manifest row; ``line_no`` is the CSV line it ends on (the header is line 1)."""
    ref, label = (row.get("uri") or "").strip(), (row.get("label") or "").strip()
    if not ref:
        raise LandingError(f"manifest {uri!r} line {line_no}: empty uri")
    if "\0" in ref:  # no filesystem has such a name, and os calls raise a bare ValueError on it
        raise LandingError(f"manifest {uri!r} line {line_no}: uri contains a NUL byte")
    if "://" in ref:
        try:
            ref_fs, path = filesystem(ref, storage)
        except (ValueError, ImportError) as exc:  # an unknown protocol, or one whose package is not installed
            raise LandingError(f"manifest {uri!r} line {line_no}: {type(exc).__name__}: {exc}") from exc
        same_fs = type(ref_fs) is type(fs)
    else:
        path, same_fs = posixpath.normpath(posixpath.join(root, ref)), True
    source = file_uri(fs, path) if same_fs else ref
    # Before the root check: /dev/null or a FIFO is refused as what it is, and never opened.
    if same_fs and is_local(fs) and (kind := special_file(path)):
        return LandedFile(source, label, "", RejectReason.NOT_A_REGULAR_FILE, f"{ref!r} is {kind}")
    if not same_fs or not inside(fs, root, path):
        return LandedFile(source, label, "", RejectReason.PATH_ESCAPES_ROOT, f"{ref!r} is outside {root!r}")
    return LandedFile(source, label, path)


def list_landing(
    uri: str, limit: int | None = None, after: str | None = None, storage: StorageSettings | None = None
) -> list[LandedFile]:
    """A manifest CSV or a label folder, decided by the URI."""
    if uri.endswith(MANIFEST_SUFFIX):
        return read_manifest(uri, storage)[:limit] if limit else read_manifest(uri, storage)
    return list_folder(uri, limit=limit, after=after, storage=storage)


class FileTooLarge(Exception):
    def __init__(self, size: int, limit: int):
        super().__init__(f"{size} bytes exceeds max_file_bytes={limit}")
        self.size = size


# Opening never waits for a FIFO's writer nor makes a terminal ours (both absent on Windows).
_NO_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def _open_regular(path: str) -> tuple[int, int]:
    """``(fd, size)`` of ``path`` opened for reading; ``NotARegularFile`` unless it is a regular file.

    Non-blocking, so a FIFO (even one that replaced the file since it was listed) opens without
    waiting for a writer, and its ``fstat`` refuses it: one open and one fstat per good file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NO_WAIT)
    except OSError as exc:  # a broken symlink, a socket, a loop: say which; else the reader reports it
        if kind := special_file(path):
            raise NotARegularFile(f"{path} is {kind}") from None
        raise exc
    info = os.fstat(fd)
    if kind := _kind(info.st_mode):
        os.close(fd)
        raise NotARegularFile(f"{path} is {kind}")
    return fd, info.st_size


def _read_local(path: str, limit: int) -> bytes:
    fd, size = _open_regular(path)
    try:
        if 0 <= limit < size:
            raise FileTooLarge(size, limit)
        # The stated size plus one byte, so a file that grew is noticed: asking for the whole limit
        # would allocate it. A regular file's read returns less than asked only at its end.
        parts, got = [], 0
        while limit < 0 or got <= limit:
            want = size + 1 - got if got <= size else 1 << 20
            chunk = os.read(fd, want)
            parts.append(chunk)
            got += len(chunk)
            if len(chunk) < want:
                break
        return b"".join(parts)
    finally:
        os.close(fd)


def read_bytes(uri: str, max_bytes: int | None = None, storage: StorageSettings | None = None) -> bytes:
    """The file's bytes; ``FileTooLarge`` from its size, before any is read, when over ``max_bytes``;
    ``NotARegularFile`` for a local FIFO, device, socket or broken symlink, which is never read."""
    limit = max_bytes if max_bytes is not None else -1
    if uri.startswith("file://"):  # the common local case, without fsspec's per-call overhead
        data = _read_local(uri.removeprefix("file://"), limit)
    else:
        fs, path = filesystem(uri, storage)
        if 0 <= limit < (size := fs.size(path)):
            raise FileTooLarge(size, limit)
        data = fs.cat_file(path)
    if 0 <= limit < len(data):
        raise FileTooLarge(len(data), limit)
    return data
