"""The training reports' PNG files: rendered to bytes, written to a URI (a path or ``abfss://``) through
``storage_options.write_bytes``, and logged to MLflow, whose ``log_artifact`` takes a local file only."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rayml_assets.lib.common.storage_options import StorageSettings, write_bytes  # noqa: E402


def png_bytes(fig, dpi: int) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def write_png(fig, uri: str, dpi: int, storage: StorageSettings | None = None) -> str:
    return write_bytes(uri, png_bytes(fig, dpi), storage)


def log_file_bytes(log_artifact: Callable[[str, str, str], None], run_id: str, name: str, data: bytes,
                   artifact_path: str) -> None:
    """``log_artifact(run_id, local_file, artifact_path)`` of ``data`` as a file called ``name``."""
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder, name)
        local.write_bytes(data)
        log_artifact(run_id, str(local), artifact_path)
