"""The cleaning backend interface, its thresholds and findings, and the fastdup backend.

Light on purpose (no numpy, pyarrow or PIL; fastdup imported only when it runs): the code
location builds ``cleaned_images``' config from :class:`CleaningThresholds`. The
open-source backend is in ``open_backend``; near-duplicates are confirmed on pixels for
either backend by ``near_duplicates``.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class CleaningThresholds:
    """Similarities are cosine similarities of the backend's embeddings (1.0 = identical)."""

    # Backend pairs at least this similar are checked on pixels, as are each image's nearest thumbnails.
    candidate_similarity: float = 0.9
    candidate_neighbours: int = 8
    # Aligned pixel difference over the image's own change when cropped by 2.5 % (near_duplicates.py).
    near_duplicate_distance: float = 0.5
    outlier_similarity: float = 0.75  # an image whose nearest neighbour is less similar is an outlier
    outlier_max_share: float = 0.02  # the least similar first; more "outliers" than this says more about the embedding
    dark_mean: float = 10.0  # mean intensity 0..255
    bright_mean: float = 245.0
    # Std of intensities: a digit's thin strokes on black (mean ~8) have ~35, a black frame 0.
    exposure_contrast: float = 16.0
    blur_min: float = 50.0  # variance of the Laplacian; lower is blurrier


@dataclass(frozen=True)
class ImageStats:
    mean: float  # intensity 0..255
    contrast: float  # standard deviation of the intensities
    blur: float  # variance of the Laplacian


@dataclass(frozen=True)
class PixelMatch:
    """Two images that are the same picture: identical pixels, or a pixel ``distance`` within the threshold."""

    a: str
    b: str
    distance: float
    identical: bool


@dataclass
class Findings:
    """What a backend saw, keyed by ``image_id``; no decisions yet."""

    similar_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # candidates only
    duplicates: list[PixelMatch] = field(default_factory=list)  # confirmed on pixels
    invalid: dict[str, str] = field(default_factory=dict)
    nearest_similarity: dict[str, float] = field(default_factory=dict)
    stats: dict[str, ImageStats] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageFile:
    image_id: str
    path: Path


class CleaningBackend(Protocol):
    name: str

    def analyze(self, images: list[ImageFile], work_dir: Path, thresholds: CleaningThresholds) -> Findings: ...


class FastdupBackend:
    """fastdup on the images written to ``work_dir`` (it reads files, not bytes)."""

    name = "fastdup"

    def __init__(self, num_threads: int | None = None, nearest_neighbors_k: int = 4):
        self.num_threads = num_threads or os.cpu_count() or 1
        self.nearest_neighbors_k = nearest_neighbors_k

    def analyze(self, images: list[ImageFile], work_dir: Path, thresholds: CleaningThresholds) -> Findings:
        os.environ.setdefault("SENTRY_OPT_OUT", "1")
        import fastdup

        from rayml_assets.lib.dataset.near_duplicates import confirmed_duplicates

        by_stem = {img.path.stem: img.image_id for img in images}

        def ids(filenames) -> list[str | None]:
            return [by_stem.get(Path(f).stem) for f in filenames]

        input_dir = images[0].path.parent
        with contextlib.redirect_stdout(io.StringIO()):  # fastdup prints banners and progress bars
            fd = fastdup.create(work_dir=str(work_dir / "fastdup"), input_dir=str(input_dir))
            fd.run(
                overwrite=True,
                threshold=thresholds.candidate_similarity,
                nearest_neighbors_k=self.nearest_neighbors_k,
                num_threads=self.num_threads,
                outlier_percentile=1.0,  # report every image's nearest-neighbour similarity; we threshold it
            )
            similarity, invalid, outliers, stats = fd.similarity(), fd.invalid_instances(), fd.outliers(), fd.img_stats()

        findings = Findings()
        for a, b, sim in zip(ids(similarity["filename_from"]), ids(similarity["filename_to"]), similarity["distance"]):
            if a and b and a < b:  # fastdup lists each pair in both directions
                findings.similar_pairs.append((a, b, float(sim)))
        for image_id, code in zip(ids(invalid["filename"]), invalid["error_code"]):
            if image_id:
                findings.invalid[image_id] = str(code)
        for image_id, sim in zip(ids(outliers["filename_outlier"]), outliers["distance"]):
            if image_id:
                findings.nearest_similarity[image_id] = max(float(sim), findings.nearest_similarity.get(image_id, -1.0))
        findings.duplicates = confirmed_duplicates(images, findings.similar_pairs, thresholds)
        for image_id, mean, std, blur in zip(ids(stats["filename"]), stats["mean"], stats["stdv"], stats["blur"]):
            if image_id:
                findings.stats[image_id] = ImageStats(float(mean), float(std), float(blur))
        return findings


def backend_named(name: str, num_threads: int | None = None) -> CleaningBackend:
    """``fastdup`` or ``open`` (rayml_assets.lib.dataset.open_backend, imported only when chosen)."""
    if name == "fastdup":
        return FastdupBackend(num_threads=num_threads)
    if name == "open":
        from rayml_assets.lib.dataset.open_backend import OpenBackend

        return OpenBackend()
    raise ValueError(f"unknown cleaning backend {name!r}: fastdup or open")
