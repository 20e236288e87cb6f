"""CONTRACT-TEST fake of the Databricks storage APIs -- test code only, never shipped.

DBFS 2.0, Workspace 2.0 (``mkdirs``, ``import``) and the Files API on Unity Catalog
volumes, each backed by a local folder of the fake workspace, with the limits the API
reference states (databricks-sdk docstrings of ``DbfsAPI``):

- ``dbfs/read``: ``length`` defaults to 0.5 MB and may not exceed 1 MB
  (``MAX_READ_SIZE_EXCEEDED``); a negative ``offset`` or ``length``, or a directory, is
  ``INVALID_PARAMETER_VALUE``; reading past the end returns what is there;
- ``dbfs/put`` and ``dbfs/add-block``: at most 1 MB of data per call
  (``MAX_BLOCK_SIZE_EXCEEDED``), as the SDK's own ``DbfsExt`` writes it (1 MB raw a block);
- the Files API serves ``/Volumes/<catalog>/<schema>/<volume>/...`` paths only.

A call over a limit is a contract violation (the test fails): the code under test must
never send one, whatever the client library does with the error.
"""

from __future__ import annotations

import base64
import binascii
import shutil
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from databricks.sdk.service.workspace import ImportFormat

from rayml_assets_tests.support.fake_databricks_api import MB, ApiError, ContractViolation, not_found

DEFAULT_READ_LENGTH = MB // 2
MAX_READ_LENGTH = MB
MAX_BLOCK = MB


@dataclass
class Raw:
    """A non-JSON answer: file bytes, or only headers (HEAD)."""

    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Storage:
    """The workspace's files; ``handlers`` maps each SDK method to its implementation."""

    def __init__(self, root: Path):
        self.dbfs_root, self.workspace_root, self.volumes_root = root / "dbfs", root / "workspace", root / "volumes"
        for d in (self.dbfs_root, self.workspace_root, self.volumes_root):
            d.mkdir(parents=True, exist_ok=True)
        self._streams: dict[int, tuple[str, bytearray]] = {}
        self.handlers = {
            "DbfsAPI.mkdirs": lambda a: self.dbfs(a["path"]).mkdir(parents=True, exist_ok=True),
            "DbfsAPI.put": self._dbfs_put,
            "DbfsAPI.read": self._dbfs_read,
            "DbfsAPI.get_status": lambda a: self._dbfs_info(a["path"], self._dbfs_existing(a["path"])),
            "DbfsAPI.list": self._dbfs_list,
            "DbfsAPI.delete": self._dbfs_delete,
            "DbfsAPI.create": self._dbfs_create,
            "DbfsAPI.add_block": self._dbfs_add_block,
            "DbfsAPI.close": self._dbfs_close,
            "WorkspaceAPI.mkdirs": lambda a: self.workspace(a["path"]).mkdir(parents=True, exist_ok=True),
            "WorkspaceAPI.import_": self._workspace_import,
            "FilesAPI.upload": self._files_upload,
            "FilesAPI.download": self._files_download,
            "FilesAPI.get_metadata": self._files_metadata,
            "FilesAPI.delete": lambda a: self._volume_file(a["file_path"]).unlink(),
            "FilesAPI.create_directory": lambda a: self.volume(a["directory_path"]).mkdir(parents=True, exist_ok=True),
            "FilesAPI.list_directory_contents": self._files_list,
            "FilesAPI.get_directory_metadata": lambda a: self._volume_dir(a["directory_path"]) and None,
            "FilesAPI.delete_directory": self._files_delete_directory,
        }

    # -- paths ----------------------------------------------------------------------------

    def dbfs(self, path: str) -> Path:
        return self.dbfs_root / path.removeprefix("dbfs:").lstrip("/")

    def workspace(self, path: str) -> Path:
        return self.workspace_root / path.lstrip("/")

    def volume(self, path: str) -> Path:
        parts = path.removeprefix("/Volumes/").split("/")
        if not path.startswith("/Volumes/") or len(parts) < 3 or not all(parts[:3]):
            raise ContractViolation(f"{path} is not a /Volumes/<catalog>/<schema>/<volume> path")
        return self.volumes_root.joinpath(*parts)

    # -- DBFS -----------------------------------------------------------------------------

    def _dbfs_existing(self, path: str) -> Path:
        target = self.dbfs(path)
        if not target.exists():
            raise not_found(path)
        return target

    @staticmethod
    def _decoded(data: str, what: str) -> bytes:
        try:
            raw = base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise ContractViolation(f"{what} is not base64: {exc}") from None
        if len(raw) > MAX_BLOCK:
            raise ContractViolation(
                f"{what} holds {len(raw)} bytes, over the 1 MB limit", "MAX_BLOCK_SIZE_EXCEEDED"
            )
        return raw

    def _dbfs_put(self, a: dict[str, Any]) -> None:
        target = self.dbfs(a["path"])
        data = self._decoded(a.get("contents", ""), "dbfs/put contents")
        if target.exists() and not a.get("overwrite"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{a['path']} already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def _dbfs_read(self, a: dict[str, Any]) -> dict[str, Any]:
        offset, length = a.get("offset", 0), a.get("length", DEFAULT_READ_LENGTH)
        if offset < 0 or length < 0:
            raise ContractViolation(f"dbfs/read of {a['path']}: negative offset or length")
        if length > MAX_READ_LENGTH:
            raise ContractViolation(
                f"dbfs/read length {length} is over the 1 MB limit", "MAX_READ_SIZE_EXCEEDED"
            )
        target = self._dbfs_existing(a["path"])
        if target.is_dir():
            raise ContractViolation(f"dbfs/read of {a['path']}: it is a directory")
        with target.open("rb") as f:
            f.seek(offset)
            data = f.read(length)
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    @staticmethod
    def _dbfs_info(path: str, target: Path) -> dict[str, Any]:
        stat = target.stat()
        return {
            "path": path,
            "is_dir": target.is_dir(),
            "file_size": 0 if target.is_dir() else stat.st_size,
            "modification_time": int(stat.st_mtime * 1000),
        }

    def _dbfs_list(self, a: dict[str, Any]) -> dict[str, Any]:
        target, base = self._dbfs_existing(a["path"]), a["path"].rstrip("/")
        entries = sorted(target.iterdir()) if target.is_dir() else [target]
        return {"files": [self._dbfs_info(f"{base}/{p.name}" if target.is_dir() else base, p) for p in entries]}

    def _dbfs_delete(self, a: dict[str, Any]) -> None:
        target = self.dbfs(a["path"])
        if target.is_dir():
            if any(target.iterdir()) and not a.get("recursive"):
                raise ApiError(400, "IO_ERROR", f"{a['path']} is a non-empty directory")
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)

    def _dbfs_create(self, a: dict[str, Any]) -> dict[str, Any]:
        if self.dbfs(a["path"]).exists() and not a.get("overwrite"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{a['path']} already exists")
        handle = len(self._streams) + 1
        self._streams[handle] = (a["path"], bytearray())
        return {"handle": handle}

    def _stream(self, handle: int) -> tuple[str, bytearray]:
        if handle not in self._streams:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"no open DBFS stream {handle}")
        return self._streams[handle]

    def _dbfs_add_block(self, a: dict[str, Any]) -> None:
        self._stream(a["handle"])[1].extend(self._decoded(a["data"], "dbfs/add-block data"))

    def _dbfs_close(self, a: dict[str, Any]) -> None:
        path, data = self._stream(a["handle"])
        del self._streams[a["handle"]]
        self.dbfs(path).parent.mkdir(parents=True, exist_ok=True)
        self.dbfs(path).write_bytes(bytes(data))

    # -- Workspace ------------------------------------------------------------------------

    def _workspace_import(self, a: dict[str, Any]) -> None:
        path, content = a["path"], a.get("content", b"")
        if a.get("format") and a["format"] not in {f.value for f in ImportFormat}:
            raise ContractViolation(f"workspace/import format {a['format']!r} is not an ImportFormat")
        # The SDK's upload sends a multipart file; the plain JSON call sends base64.
        data = content if isinstance(content, bytes) else base64.b64decode(content)
        target = self.workspace(path)
        if target.exists() and a.get("overwrite") not in (True, "true"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists")
        if not target.parent.is_dir():
            raise not_found(f"parent folder of {path}")
        target.write_bytes(data)

    # -- Files API (Unity Catalog volumes) -------------------------------------------------

    def _volume_file(self, path: str) -> Path:
        target = self.volume(path)
        if not target.is_file():
            raise not_found(path)
        return target

    def _volume_dir(self, path: str) -> Path:
        target = self.volume(path)
        if not target.is_dir():
            raise not_found(path)
        return target

    def _files_upload(self, a: dict[str, Any]) -> None:
        target = self.volume(a["file_path"])
        if target.exists() and a.get("overwrite") is False:
            raise ApiError(409, "ALREADY_EXISTS", f"{a['file_path']} already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(a["contents"])

    def _files_download(self, a: dict[str, Any]) -> Raw:
        data = self._volume_file(a["file_path"]).read_bytes()
        return Raw(data, {"Content-Type": "application/octet-stream"})

    def _files_metadata(self, a: dict[str, Any]) -> Raw:
        target = self._volume_file(a["file_path"])
        return Raw(
            headers={
                "Content-Length": str(target.stat().st_size),
                "Content-Type": "application/octet-stream",
                "Last-Modified": formatdate(target.stat().st_mtime, usegmt=True),
            }
        )

    def _files_list(self, a: dict[str, Any]) -> dict[str, Any]:
        base = a["directory_path"].rstrip("/")
        return {
            "contents": [
                {"path": f"{base}/{p.name}", "name": p.name, "is_directory": p.is_dir()}
                | ({} if p.is_dir() else {"file_size": p.stat().st_size})
                for p in sorted(self._volume_dir(base).iterdir())
            ]
        }

    def _files_delete_directory(self, a: dict[str, Any]) -> None:
        target = self._volume_dir(a["directory_path"])
        if any(target.iterdir()):
            raise ApiError(409, "DIRECTORY_NOT_EMPTY", f"{a['directory_path']} is not empty")
        target.rmdir()
