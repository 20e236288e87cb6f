"""Near-duplicates confirmed on pixels, whatever the resolution.

A backend's embedding cannot tell a resized, re-encoded copy of a 32 px digit from
another digit (fastdup scores both about 0.95-0.997), so its similar pairs are only
candidates, joined by each image's nearest neighbours on small grayscale thumbnails.
Each candidate pair is compared on those thumbnails after aligning them (a copy may be
cropped by a few percent), and the leftover difference is measured against the image's
*shift sensitivity*: how much its own thumbnail changes when cropped by 2.5 %. A copy
differs from its original much less than that; a distinct image, even a similar digit or
another crop of the same photo, differs more. Textured images are sensitive and smooth
ones are not, so one threshold holds at 32 px and at 256 px.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from rayml_assets.lib.common.images import load_image
from rayml_assets.lib.dataset.cleaning_backend import CleaningThresholds, ImageFile, PixelMatch

SIDE = 16  # compared thumbnails are SIDE x SIDE: enough for a digit, coarse enough to forgive JPEG noise
_MID = 48  # cached grayscale the aligned thumbnails are cut from, with sub-pixel crop boxes
_CUTS = [(lo, hi) for lo in (0.0, 0.025, 0.05) for hi in (0.0, 0.025, 0.05) if lo + hi <= 0.05]  # per axis
_COARSE = [(left, right, top, bottom) for left, right in _CUTS for top, bottom in _CUTS]
_SHIFTED = ((0.025, 0.0, 0.025, 0.0), (0.0, 0.025, 0.0, 0.025))  # the crops that define shift sensitivity
_MAX_CROP = 0.06
_CACHED_GRIDS = 4096
_REFINE = 3.0  # pairs the grid puts within this many thresholds are aligned finely (copies' grid distance: < 0.3)


def _unit(a: np.ndarray) -> np.ndarray:
    a = a.ravel() - a.mean()
    norm = float(np.linalg.norm(a))
    return a / norm if norm > 0 else a


class PixelIndex:
    """Thumbnails of decodable images, by position in ``images``; undecodable ones are left out."""

    def __init__(self, images: list[ImageFile], on_decoded: Callable[[str, Image.Image], None] | None = None):
        self.ids: list[str] = []
        self.failed: dict[str, str] = {}  # image_id -> why it did not decode
        self._mid: list[Image.Image] = []
        self._neighbours: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        digests: list[str] = []
        for img in images:
            try:
                decoded, _ = load_image(Path(img.path).read_bytes(), allowed_formats=None, max_pixels=None)
            except Exception as exc:  # noqa: BLE001 - any decoding failure makes the image invalid, not the run
                self.failed[img.image_id] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            if on_decoded:
                on_decoded(img.image_id, decoded)
            digests.append(hashlib.sha256(f"{decoded.size}".encode() + decoded.convert("RGB").tobytes()).hexdigest())
            gray = decoded.convert("L")
            self._mid.append(gray.resize((_MID, _MID), Image.BOX if min(gray.size) >= _MID else Image.BILINEAR))
            self.ids.append(img.image_id)
        self.digests = digests
        self.base = np.stack([self._warp(i, (0, 0, 0, 0)) for i in range(len(self.ids))] or [np.zeros(SIDE * SIDE)])[: len(self.ids)]
        shifted = [np.mean([self._warp(i, box) @ self.base[i] for box in _SHIFTED]) for i in range(len(self.ids))]
        # A floor: a flat image would otherwise make any JPEG noise look enormous.
        self.sensitivity = np.maximum(1.0 - np.asarray(shifted, dtype=np.float64), 0.005)
        self._coarse: dict[int, np.ndarray] = {}

    def _warp(self, i: int, box) -> np.ndarray:
        left, right, top, bottom = box
        w, h = self._mid[i].size
        crop = (left * w, top * h, w - right * w, h - bottom * h)
        return _unit(np.asarray(self._mid[i].resize((SIDE, SIDE), Image.BILINEAR, box=crop), dtype=np.float32))

    def _grid(self, moving: int, fixed: int) -> tuple[float, list[float]]:
        """Best correlation of a crop of ``moving`` (from a grid of crops) with ``fixed``, and that crop."""
        if moving not in self._coarse:
            if len(self._coarse) >= _CACHED_GRIDS:  # 36 KB an image: bounded, oldest first
                del self._coarse[next(iter(self._coarse))]
            self._coarse[moving] = np.stack([self._warp(moving, box) for box in _COARSE])
        sims = self._coarse[moving] @ self.base[fixed]
        k = int(sims.argmax())
        return float(sims[k]), list(_COARSE[k])

    def _refined(self, moving: int, fixed: int) -> float:
        """The grid's best crop improved by coordinate ascent on its four sides, to ~0.3 %."""
        best, box = self._grid(moving, fixed)
        step = 0.0125
        while step >= 0.003:
            improved = False
            for p in range(4):
                for delta in (-step, step):
                    trial = box.copy()
                    trial[p] = min(max(trial[p] + delta, 0.0), _MAX_CROP)
                    sim = float(self._warp(moving, trial) @ self.base[fixed])
                    if sim > best:
                        best, box, improved = sim, trial, True
            if not improved:
                step /= 2
        return best

    def distance(self, i: int, j: int, threshold: float) -> float:
        """Aligned pixel difference over the pair's shift sensitivity: ~0.05 for a copy, >= ~1 for a distinct image.

        The crop grid decides clear cases; only pairs just above ``threshold`` are aligned finely.
        """
        scale = (self.sensitivity[i] + self.sensitivity[j]) / 2
        coarse = (1.0 - max(self._grid(i, j)[0], self._grid(j, i)[0])) / scale
        if coarse <= threshold or coarse > _REFINE * threshold:
            return coarse
        return (1.0 - max(self._refined(i, j), self._refined(j, i))) / scale

    def neighbours(self, k: int, side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarities, positions) of each ``side`` x ``side`` thumbnail's ``k`` nearest others."""
        from sklearn.neighbors import NearestNeighbors

        k = min(k, len(self.ids) - 1)
        if k < 1:
            return np.zeros((len(self.ids), 0)), np.zeros((len(self.ids), 0), dtype=int)
        if (k, side) not in self._neighbours:
            vectors = self.base if side == SIDE else np.stack([_unit(np.asarray(m.resize((side, side), Image.BOX))) for m in self._mid])
            nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(vectors)
            dist, pos = nn.kneighbors(vectors)
            self._neighbours[(k, side)] = (1.0 - dist[:, 1:], pos[:, 1:])  # column 0: the image itself (or an identical one)
        return self._neighbours[(k, side)]

    def matches(self, candidates: Iterable[tuple[str, str]], neighbours: int, threshold: float) -> list[PixelMatch]:
        """Identical pixels, plus each candidate or neighbour pair within ``threshold``."""
        position = {image_id: i for i, image_id in enumerate(self.ids)}
        pairs = {tuple(sorted((position[a], position[b]))) for a, b in candidates if a in position and b in position}
        pairs |= {tuple(sorted((i, int(j)))) for i, row in enumerate(self.neighbours(neighbours)[1]) for j in row}
        by_digest: dict[str, list[int]] = {}
        for i, digest in enumerate(self.digests):
            by_digest.setdefault(digest, []).append(i)
        identical = {(group[0], other) for group in by_digest.values() for other in group[1:]}
        found = [PixelMatch(self.ids[i], self.ids[j], 0.0, identical=True) for i, j in sorted(identical)]
        for i, j in sorted(pairs):
            if self.digests[i] != self.digests[j]:
                d = self.distance(i, j, threshold)
                if d <= threshold:
                    found.append(PixelMatch(self.ids[i], self.ids[j], round(d, 4), identical=False))
        return found


def confirmed_duplicates(
    images: list[ImageFile],
    similar_pairs: Iterable[tuple[str, str, float]],
    t: CleaningThresholds,
    index: PixelIndex | None = None,
) -> list[PixelMatch]:
    """The backend's pairs at ``candidate_similarity`` or more, and the thumbnails' neighbours, confirmed on pixels."""
    index = index or PixelIndex(images)
    candidates = ((a, b) for a, b, sim in similar_pairs if sim >= t.candidate_similarity)
    return index.matches(candidates, t.candidate_neighbours, t.near_duplicate_distance)
