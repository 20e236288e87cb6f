"""SHAP (GradientExplainer) seconds per explained image, for the champion on its pinned test split.

Runs the full ``explain_champion`` (selection, attributions, PNG grid, per-class
summary) with the default config, then attributions alone at several
``nsamples`` to show the cost per gradient sample (ratio to nsamples=32).
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rayml_assets.lib.monitoring.contract import ExplainConfig  # noqa: E402
from rayml_assets.lib.monitoring.explain import explain_champion, shap_attributions  # noqa: E402
from rayml_assets.lib.monitoring.inference import decode_images, load_split  # noqa: E402
from rayml_assets_tests.support.monitoring_support import BENCH_EPOCHS, shared_champion  # noqa: E402


def main() -> None:
    _, champion = shared_champion(epochs=BENCH_EPOCHS)
    config = ExplainConfig()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = explain_champion(champion, tmp, config)
        total = time.perf_counter() - started
    n = result.summary["n_explained"]
    print(
        f"explain_champion, default config (nsamples={config.nsamples}, background={config.background_size}): "
        f"{n} images in {total:.1f} s = {total / n:.3f} s per explained image (report files included)"
    )

    x = decode_images(load_split(champion, ("test",), limit=8).images, champion.image_size, champion.channels)
    background = decode_images(
        load_split(champion, ("train",), limit=config.background_size).images, champion.image_size, champion.channels
    )
    base = None
    for nsamples in (32, 64, 128):
        started = time.perf_counter()
        shap_attributions(champion.module, x, background, nsamples)
        per_image = (time.perf_counter() - started) / len(x)
        base = base or per_image
        print(
            f"  attributions only, nsamples={nsamples:>3}: {per_image:.3f} s per image"
            f"   ratio to 32: {per_image / base:.2f}"
        )


if __name__ == "__main__":
    main()
