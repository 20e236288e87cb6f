"""A cleaning backend built only on open-source parts (Pillow, NumPy, SciPy, scikit-learn).

Exposure and blur come from NumPy statistics of the grayscale image (mean, standard
deviation, variance of the Laplacian, as fastdup computes them); the embedding is the
normalized grayscale thumbnail of ``near_duplicates``: nearest neighbours (scikit-learn) on
its 16x16 form give near-duplicate candidates, and on its 8x8 form the outlier score (coarser
forgives a digit's stroke width; the other 8x8 digits are >= 0.83 similar, a photo <= 0.33).
Pixels have no semantics: among varied photos most images have no similar neighbour, and
``CleaningThresholds.outlier_max_share`` caps what is excluded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rayml_assets.lib.dataset.cleaning_backend import CleaningThresholds, Findings, ImageFile, ImageStats
from rayml_assets.lib.dataset.near_duplicates import PixelIndex, confirmed_duplicates


def image_stats(img: Image.Image) -> ImageStats:
    from scipy import ndimage

    pixels = np.asarray(img, dtype=np.float32)
    gray = pixels.mean(axis=2) if pixels.ndim == 3 else pixels  # the channels' mean, as fastdup's statistics
    # "mirror" is OpenCV's default border (reflect-101): the blur scale then matches fastdup's.
    laplacian = ndimage.laplace(gray, mode="mirror")
    return ImageStats(mean=float(gray.mean()), contrast=float(gray.std()), blur=float(laplacian.var()))


class OpenBackend:
    name = "open"

    def analyze(self, images: list[ImageFile], work_dir: Path, thresholds: CleaningThresholds) -> Findings:
        findings = Findings()

        def measure(image_id: str, img: Image.Image) -> None:  # on the decode the thumbnails are made from
            findings.stats[image_id] = image_stats(img)

        index = PixelIndex(images, on_decoded=measure)
        findings.invalid.update(index.failed)
        sims, positions = index.neighbours(thresholds.candidate_neighbours)
        pairs = {
            tuple(sorted((index.ids[i], index.ids[int(j)]))): float(sim)
            for i, (row_sims, row_positions) in enumerate(zip(sims, positions))
            for sim, j in zip(row_sims, row_positions)
            if sim >= thresholds.candidate_similarity
        }
        findings.similar_pairs = [(a, b, sim) for (a, b), sim in sorted(pairs.items())]
        nearest, _ = index.neighbours(1, side=8)
        findings.nearest_similarity = {image_id: float(row[0]) for image_id, row in zip(index.ids, nearest) if len(row)}
        findings.duplicates = confirmed_duplicates(images, findings.similar_pairs, thresholds, index)
        return findings
