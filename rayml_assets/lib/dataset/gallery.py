"""Image galleries a person opens from the Dagster UI: a PNG grid and a self-contained HTML page.

Each is written to a URI (a local path or any fsspec URI) through ``storage_options.write_bytes``.
"""

from __future__ import annotations

import base64
import html
import io
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from rayml_assets.lib.common.images import load_image  # noqa: E402
from rayml_assets.lib.common.figures import write_png  # noqa: E402
from rayml_assets.lib.common.storage_options import StorageSettings, write_bytes  # noqa: E402


def _pixels(data: bytes) -> Image.Image:
    """The pixels the model sees (16-bit, palette, alpha and EXIF handled), for display."""
    return load_image(data, allowed_formats=None, max_pixels=None)[0]


def png_grid(
    items: list[tuple[str, bytes]], uri: str, columns: int = 6, title: str = "", storage: StorageSettings | None = None
) -> str:
    """``items`` are (caption, image bytes); writes one PNG with a captioned grid."""
    rows = max(1, -(-len(items) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.8, rows * 2.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (caption, data) in zip(axes.flat, items):
        ax.imshow(_pixels(data).convert("L"), cmap="gray", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return write_png(fig, uri, 90, storage)


def html_gallery(items: list[tuple[str, bytes]], uri: str, title: str, storage: StorageSettings | None = None) -> str:
    """A single HTML file with every image embedded, so it opens anywhere without a server."""
    cells = []
    for caption, data in items:
        buf = io.BytesIO()
        _pixels(data).convert("RGB").save(buf, format="PNG")
        encoded = base64.b64encode(buf.getvalue()).decode()
        cells.append(
            f'<figure><img src="data:image/png;base64,{encoded}" width="96" style="image-rendering:pixelated">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;margin:6px;width:140px;"
        "font-size:11px;vertical-align:top}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{''.join(cells)}</body></html>"
    )
    return write_bytes(uri, page.encode(), storage)


def reason_strips(
    examples: list[tuple[str, bytes]], uri: str, per_reason: int = 8, storage: StorageSettings | None = None
) -> str:
    """One row per exclusion reason, up to ``per_reason`` thumbnails each: what the UI shows inline."""
    by_reason: dict[str, list[bytes]] = {}
    for reason, data in examples:
        by_reason.setdefault(reason, []).append(data)
    rows = max(1, len(by_reason))
    columns = max(2, min(per_reason, max(map(len, by_reason.values()), default=1)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1 + 1.0, rows * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, (reason, images) in zip(axes, sorted(by_reason.items())):
        row[0].set_title(f"{reason} ({len(images)})", fontsize=8, loc="left")
        for ax, data in zip(row, images[:columns]):
            ax.imshow(_pixels(data).convert("RGB"))
    fig.tight_layout()
    return write_png(fig, uri, 80, storage)
