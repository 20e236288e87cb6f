"""Pyplot figures as PNG files: rendered to bytes and written to a URI (a path or ``abfss://``)
through ``storage_options.write_bytes``. Shared by the dataset gallery and the training reports."""

from __future__ import annotations

import io

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
