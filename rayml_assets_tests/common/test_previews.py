"""Inline previews stay within their bounds; metadata links open the right MLflow page."""

import base64
import io

import numpy as np
from PIL import Image

from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.common.previews import MAX_PREVIEW_BYTES, MAX_SIDE, preview_markdown, read_preview, shrink_png


def _noisy_png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)  # incompressible
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def test_a_large_picture_is_shrunk_within_both_bounds():
    big = _noisy_png(2400, 1200)
    small = shrink_png(big)
    with Image.open(io.BytesIO(small)) as img:
        assert max(img.size) <= MAX_SIDE and img.format == "PNG"
    assert len(small) <= MAX_PREVIEW_BYTES < len(big)


def test_preview_markdown_embeds_the_picture_and_names_the_full_size_file(tmp_path):
    path = tmp_path / "plot.png"
    out = io.BytesIO()
    Image.new("RGB", (300, 200), "steelblue").save(out, "PNG")  # a plot-like picture: few colours, small
    path.write_bytes(out.getvalue())
    markdown = read_preview(str(path), "p values")
    assert markdown.startswith("**p values**") and f"Full size: `{path}`" in markdown
    encoded = markdown.split("](data:image/png;base64,", 1)[1].split(")", 1)[0]
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
        assert img.size == (300, 200)  # small pictures keep their size
    assert "Full size" not in preview_markdown(path.read_bytes(), "no link")


def test_run_links_follow_the_mlflow_that_serves_them():
    local = MlflowSettings(tracking_uri="sqlite:///m.db", ui_url="http://127.0.0.1:5000")
    workspace = MlflowSettings(tracking_uri="databricks", ui_url="https://adb-1.azuredatabricks.net/")
    assert local.run_url("1", "abc") == "http://127.0.0.1:5000/#/experiments/1/runs/abc"
    assert workspace.run_url("1", "abc") == "https://adb-1.azuredatabricks.net/ml/experiments/1/runs/abc"
    assert MlflowSettings(tracking_uri="sqlite:///m.db").run_url("1", "abc") is None
