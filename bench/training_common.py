"""Helpers shared by the training benchmarks: a digits ``cleaned_images`` table and a Ray cluster."""

import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for rayml_assets_tests

from rayml_assets_tests.support.training_fixtures import write_digits_table  # noqa: E402


@contextmanager
def digits_lake(image_size: int = 32, n: int | None = None, exclude_every: int = 0):
    """All 1,797 digits (or ``n``) as a cleaned table in a temporary lake; yields ``(tmp, uri, version)``."""
    with tempfile.TemporaryDirectory(prefix="rayml-bench-") as tmp:
        uri, version = write_digits_table(f"{tmp}/lake", n=n, image_size=image_size, exclude_every=exclude_every)
        yield Path(tmp), uri, version


@contextmanager
def ray_cluster(num_cpus: int):
    import ray

    from rayml_assets.lib.training.tuner import init_ray

    init_ray(num_cpus=num_cpus, object_store_memory=256 * 2**20)
    try:
        yield
    finally:
        ray.shutdown()
