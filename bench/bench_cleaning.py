"""Wall time of the cleaning step (export + fastdup + decisions + Delta snapshot) vs a bare fastdup run.

Goal: overhead <= 1.3x.
"""

import contextlib
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import synthetic_landing, timed  # noqa: E402

from rayml_assets.lib.common import lake  # noqa: E402
from rayml_assets.lib.dataset.cleaning import FastdupBackend, clean  # noqa: E402
from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest  # noqa: E402


def main(count: int = 1500) -> None:
    import fastdup

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        landing = synthetic_landing(tmp / "landing", count)
        raw = ingest(str(landing), str(tmp / "lake"), IngestPolicy())
        backend = FastdupBackend()
        t: dict = {}
        # Same images, same threads, same settings as the backend uses.
        flat = tmp / "flat"
        flat.mkdir()
        for i, path in enumerate(sorted(landing.rglob("*.png"))):
            (flat / f"{i}.png").write_bytes(path.read_bytes())
        with timed(t, "bare_fastdup"), contextlib.redirect_stdout(io.StringIO()):
            fastdup.create(work_dir=str(tmp / "bare"), input_dir=str(flat)).run(
                overwrite=True, threshold=0.9, nearest_neighbors_k=backend.nearest_neighbors_k,
                num_threads=backend.num_threads, outlier_percentile=1.0,
            )
        with timed(t, "cleaned_images"):
            result = clean(
                lake.table_uri(str(tmp / "lake"), lake.RAW_IMAGES), raw.delta_version,
                lake.table_uri(str(tmp / "lake"), lake.CLEANED_IMAGES), tmp / "work", backend,
            )
        assert result.total == count
    print(
        f"cleaning {count} images: bare fastdup {t['bare_fastdup']:.1f}s, cleaned_images {t['cleaned_images']:.1f}s "
        f"-> overhead {t['cleaned_images'] / t['bare_fastdup']:.2f}x (goal <= 1.3x)"
    )


if __name__ == "__main__":
    main()
