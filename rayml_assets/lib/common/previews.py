"""Pictures small enough to sit in an asset's metadata, so the Dagster UI shows them inline.

A preview is Markdown with the picture embedded as a ``data:image/png`` URI, downscaled
to at most ``MAX_SIDE`` pixels and ``MAX_PREVIEW_BYTES`` of PNG, with a caption that says
where the full-size file is. The event log stores metadata with every materialization, so
a preview is bounded; an asset carries one or two (``MAX_METADATA_BYTES`` in all).
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rayml_assets.lib.common.storage_options import StorageSettings

MAX_SIDE = 560
MAX_PREVIEW_BYTES = 48 * 1024  # of PNG; its base64 in the metadata is a third more
MAX_METADATA_BYTES = 256 * 1024  # what one materialization's metadata may weigh, previews included


def shrink_png(data: bytes, max_side: int = MAX_SIDE, max_bytes: int = MAX_PREVIEW_BYTES) -> bytes:
    """``data`` (any image Pillow reads) as a PNG within both bounds: downscaled, then palette-quantised,
    then halved until it fits."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    image = image.convert("RGBA") if "A" in image.getbands() else image.convert("RGB")
    side = max_side
    while True:
        small = image.copy()
        small.thumbnail((side, side), Image.LANCZOS)
        out = io.BytesIO()
        small.quantize(256).save(out, "PNG", optimize=True)  # plots have few colours: a palette loses little
        if out.tell() <= max_bytes or side <= 32:
            return out.getvalue()
        side //= 2


def preview_markdown(data: bytes, title: str, full_size: str | None = None) -> str:
    """Markdown that shows ``data`` inline, titled, with a line naming the full-size file."""
    encoded = base64.b64encode(shrink_png(data)).decode("ascii")
    caption = f"\n\nFull size: `{full_size}`" if full_size else ""
    return f"**{title}**\n\n![{title}](data:image/png;base64,{encoded}){caption}"


def read_preview(uri: str, title: str, storage: StorageSettings | None = None) -> str:
    """:func:`preview_markdown` of the picture at ``uri`` (a path or any fsspec URI)."""
    from rayml_assets.lib.common.listing import filesystem

    fs, path = filesystem(uri, storage)
    return preview_markdown(fs.cat_file(path), title, uri)


def plots_preview(plots: dict[str, str], storage: StorageSettings | None = None) -> str:
    """One Markdown block showing every plot of a report (name -> URI), in the given order."""
    return "\n\n".join(read_preview(uri, name.replace("_", " "), storage) for name, uri in plots.items())
