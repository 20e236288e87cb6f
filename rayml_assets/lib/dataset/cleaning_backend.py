"""The cleaning backend interface, its thresholds and findings, and the fastdup backend.

Light on purpose (no pyarrow, fastdup imported only when it runs): the code location
builds ``cleaned_images``' config from :class:`CleaningThresholds`.
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

    exact_duplicate_similarity: float = 0.9999
    near_duplicate_similarity: float = 0.995
    outlier_similarity: float = 0.75  # an image whose nearest neighbour is less similar is an outlier
    dark_mean: float = 10.0  # mean intensity 0..255
    bright_mean: float = 245.0
    blur_min: float = 50.0  # variance of the Laplacian; lower is blurrier


@dataclass(frozen=True)
class ImageStats:
    mean: float
    blur: float


@dataclass
class Findings:
    """What a backend saw, keyed by ``image_id``; no decisions yet."""

    similar_pairs: list[tuple[str, str, float]] = field(default_factory=list)
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

        by_stem = {img.path.stem: img.image_id for img in images}

        def ids(filenames) -> list[str | None]:
            return [by_stem.get(Path(f).stem) for f in filenames]

        input_dir = images[0].path.parent
        with contextlib.redirect_stdout(io.StringIO()):  # fastdup prints banners and progress bars
            fd = fastdup.create(work_dir=str(work_dir / "fastdup"), input_dir=str(input_dir))
            fd.run(
                overwrite=True,
                threshold=min(thresholds.near_duplicate_similarity, 0.9),
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
        for image_id, mean, blur in zip(ids(stats["filename"]), stats["mean"], stats["blur"]):
            if image_id:
                findings.stats[image_id] = ImageStats(float(mean), float(blur))
        return findings
