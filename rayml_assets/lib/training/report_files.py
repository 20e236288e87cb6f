"""Report files logged to MLflow, whose ``log_artifact`` takes a local file only (the PNGs themselves:
``lib.common.figures``)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path


def log_file_bytes(log_artifact: Callable[[str, str, str], None], run_id: str, name: str, data: bytes,
                   artifact_path: str) -> None:
    """``log_artifact(run_id, local_file, artifact_path)`` of ``data`` as a file called ``name``."""
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder, name)
        local.write_bytes(data)
        log_artifact(run_id, str(local), artifact_path)
