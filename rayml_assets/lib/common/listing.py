"""What every file listing of the project shares: fsspec filesystems, stamps, names and paths.

Three listers build on it, each with its own semantics:

- ``lib.dataset.landing``: a ``<label>/<file>`` folder or a ``uri,label`` manifest;
- ``lib.monitoring.production``: one ``YYYY-MM-DD`` folder (or CSV) per day;
- ``lib.common.watch``: incremental polling, one bounded step per sensor tick.

Everything goes through fsspec, so ``file://``, plain paths and cloud URIs
(``abfss://``, ``s3://`` once credentials are configured) are read the same way.
"""

from __future__ import annotations

import functools
import os
import posixpath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # fsspec loads at the first listing, not with the code location's sensors
    import fsspec

    from rayml_assets.lib.common.storage_options import StorageSettings

# A landing URI ending in this names a ``uri,label`` manifest, not a folder.
MANIFEST_SUFFIX = ".csv"

# A stamp (a folder's mtime, a file's change time) is trusted only once it is this old:
# mtimes come from a coarse clock (and some stores keep whole seconds), so a change in
# the same tick as the last one may leave the stamp where it was, and a file younger
# than this may still be being written.
SETTLE_S = 2.0

# The keys fsspec implementations report a modification time under (local, adlfs, s3fs).
_STAMP_KEYS = ("mtime", "last_modified", "LastModified")


def filesystem(uri: str, storage: StorageSettings | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``uri`` (with ``storage``'s credentials on Azure) and the path on it, without a trailing slash."""
    from rayml_assets.lib.common import storage_options

    fs, path = storage_options.filesystem(uri, storage)
    return fs, path.rstrip("/")


@functools.cache
def _local_filesystem_class() -> type:
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, _local_filesystem_class())


def raw_stamp(info: dict[str, Any]) -> Any:
    """The store's modification time as it reports it (float, datetime or text); None when absent."""
    return next((info[key] for key in _STAMP_KEYS if info.get(key)), None)


def modified_stamp(info: dict[str, Any]) -> str:
    """The modification stamp of an fsspec ``info`` entry, compared as text (LandedFile.modified)."""
    return str(raw_stamp(info) or info.get("created") or "")


def visible(name: str) -> bool:
    """Hidden names (editor swap files, .DS_Store, partial uploads) are not data."""
    return not name.startswith(".")


def visible_path(rel: str) -> bool:
    """A relative path none of whose parts is hidden."""
    return not (rel.startswith(".") or "/." in rel)


def file_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The full URI (with protocol) of a path on ``fs``: what ``source_uri`` columns store."""
    return f"file://{path}" if is_local(fs) else fs.unstrip_protocol(path)


@functools.lru_cache(maxsize=4096)
def real_dir(path: str) -> str:
    return os.path.realpath(path)


def real_path(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Where ``path`` really is. Only a local filesystem has symlinks that can point outside a root;
    folders are resolved once each, and a file costs one lstat unless it is a link."""
    if not is_local(fs):
        return posixpath.normpath(path)
    if os.path.islink(path):
        return os.path.realpath(path)
    return posixpath.join(real_dir(posixpath.dirname(path)), posixpath.basename(path))


def inside(fs: fsspec.AbstractFileSystem, root: str, path: str) -> bool:
    """Whether ``path`` (links resolved) is ``root`` or under it."""
    real_root = real_dir(root) if is_local(fs) else root
    real = real_path(fs, path)
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")
