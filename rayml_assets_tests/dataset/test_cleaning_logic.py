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
    assign_split,
    decide_exclusions,
)

OK = ImageStats(mean=80.0, blur=300.0)


def _ids(n):
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]


def test_duplicate_cluster_keeps_its_smallest_id_and_names_exact_vs_near():
    a, b, c, d = sorted(_ids(4))
    findings = Findings(
        similar_pairs=[(a, b, 1.0), (b, c, 0.997), (c, d, 0.90)],
        stats={i: OK for i in (a, b, c, d)},
    )
    excluded = decide_exclusions([a, b, c, d], findings, CleaningThresholds())
    assert excluded[b][0] is ExclusionReason.EXACT_DUPLICATE
    assert excluded[c][0] is ExclusionReason.NEAR_DUPLICATE
    assert a not in excluded and d not in excluded


def test_quality_exclusions_come_before_duplicates_so_the_kept_copy_is_usable():
    a, b = sorted(_ids(2))
    findings = Findings(similar_pairs=[(a, b, 1.0)], stats={a: ImageStats(0.0, 0.0), b: OK})
    excluded = decide_exclusions([a, b], findings, CleaningThresholds())
    assert excluded == {a: (ExclusionReason.TOO_DARK, excluded[a][1])}


def test_each_quality_and_outlier_reason():
    ids = _ids(5)
    findings = Findings(
        invalid={ids[0]: "ERROR_CORRUPT_IMAGE"},
        stats={ids[1]: ImageStats(250.0, 300.0), ids[2]: ImageStats(80.0, 5.0), ids[3]: OK, ids[4]: OK},
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
    findings = Findings(similar_pairs=[(a, b, 0.99)], stats={a: OK, b: OK})
    assert decide_exclusions([a, b], findings, CleaningThresholds(near_duplicate_similarity=0.995)) == {}
    assert b in decide_exclusions([a, b], findings, CleaningThresholds(near_duplicate_similarity=0.98))


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
