"""Unit tests of the cleaning decisions and the split, without any backend."""

import hashlib
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from rayml_assets.lib.dataset.cleaning import (
    CleaningThresholds,
    ExclusionReason,
    Findings,
    ImageStats,
    PixelMatch,
    assign_split,
    decide_exclusions,
)

OK = ImageStats(mean=80.0, contrast=60.0, blur=300.0)


def _ids(n):
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]


def test_duplicate_cluster_keeps_its_smallest_id_and_each_copy_names_it():
    a, b, c, d = sorted(_ids(4))
    findings = Findings(
        similar_pairs=[(c, d, 0.999)],  # a backend's similarity alone proves nothing
        duplicates=[PixelMatch(a, b, 0.0, identical=True), PixelMatch(b, c, 0.08, identical=False), PixelMatch(c, d, 0.9, False)],
        stats={i: OK for i in (a, b, c, d)},
    )
    excluded = decide_exclusions([a, b, c, d], findings, CleaningThresholds())
    assert excluded[b] == (ExclusionReason.EXACT_DUPLICATE, f"identical pixels; kept {a}")
    assert excluded[c] == (ExclusionReason.NEAR_DUPLICATE, f"pixel distance 0.080; kept {a}")
    assert a not in excluded and d not in excluded


def test_quality_exclusions_come_before_duplicates_so_the_kept_copy_is_usable():
    a, b = sorted(_ids(2))
    findings = Findings(duplicates=[PixelMatch(a, b, 0.0, True)], stats={a: ImageStats(0.0, 0.0, 0.0), b: OK})
    excluded = decide_exclusions([a, b], findings, CleaningThresholds())
    assert excluded == {a: (ExclusionReason.TOO_DARK, excluded[a][1])}


def test_a_dark_mean_with_contrast_is_not_too_dark():
    strokes, black, glare, white_page = _ids(4)
    findings = Findings(stats={
        strokes: ImageStats(mean=8.3, contrast=34.2, blur=164.0),  # a digit's white strokes on a black frame
        black: ImageStats(mean=2.0, contrast=1.5, blur=60.0),
        glare: ImageStats(mean=250.0, contrast=3.0, blur=60.0),
        white_page: ImageStats(mean=247.0, contrast=30.0, blur=200.0),  # dark strokes on white
    })
    excluded = decide_exclusions([strokes, black, glare, white_page], findings, CleaningThresholds())
    assert {i: r for i, (r, _) in excluded.items()} == {black: ExclusionReason.TOO_DARK, glare: ExclusionReason.TOO_BRIGHT}


def test_each_quality_and_outlier_reason():
    ids = _ids(5)
    findings = Findings(
        invalid={ids[0]: "ERROR_CORRUPT_IMAGE"},
        stats={ids[1]: ImageStats(250.0, 2.0, 300.0), ids[2]: ImageStats(80.0, 60.0, 5.0), ids[3]: OK, ids[4]: OK},
        nearest_similarity={ids[3]: 0.5, ids[4]: 0.95},
    )
    excluded = decide_exclusions(ids, findings, CleaningThresholds())
    assert {i: r for i, (r, _) in excluded.items()} == {
        ids[0]: ExclusionReason.INVALID,
        ids[1]: ExclusionReason.TOO_BRIGHT,
        ids[2]: ExclusionReason.TOO_BLURRY,
        ids[3]: ExclusionReason.OUTLIER,
    }


def test_thresholds_are_honoured():
    a, b = sorted(_ids(2))
    findings = Findings(duplicates=[PixelMatch(a, b, 0.3, identical=False)], stats={a: OK, b: OK})
    assert decide_exclusions([a, b], findings, CleaningThresholds(near_duplicate_distance=0.2)) == {}
    assert b in decide_exclusions([a, b], findings, CleaningThresholds(near_duplicate_distance=0.5))


def test_outliers_are_capped_at_a_share_of_the_images_least_similar_first():
    ids = _ids(100)
    findings = Findings(stats={i: OK for i in ids}, nearest_similarity={i: 0.1 + i_n / 1000 for i_n, i in enumerate(ids)})
    excluded = decide_exclusions(ids, findings, CleaningThresholds(outlier_max_share=0.03))
    assert set(excluded) == set(ids[:3])


@given(st.lists(st.binary(min_size=1, max_size=32), min_size=1, max_size=50), st.binary(min_size=1))
def test_split_depends_only_on_the_image_itself(contents, newcomer):
    ids = [hashlib.sha256(c).hexdigest() for c in contents]
    before = {i: assign_split(i) for i in ids}
    grown = ids + [hashlib.sha256(newcomer).hexdigest()]
    assert all(assign_split(i) == before[i] for i in grown if i in before)


def test_split_proportions_follow_the_fractions():
    counts = Counter(assign_split(i, 0.1, 0.2) for i in _ids(20_000))
    assert abs(counts["test"] / 20_000 - 0.2) < 0.01
    assert abs(counts["val"] / 20_000 - 0.1) < 0.01
