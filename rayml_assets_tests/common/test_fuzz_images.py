"""Fuzzing (issue 12 point 14): seeded mutations of PNG, JPEG, GIF, BMP, TIFF and WebP files
through ingest and production prediction. Every file is ingested with the reference decode's
pixels or quarantined with a reason, prediction skips exactly what ingest quarantined, and
nothing crashes or hangs. ``bench/bench_fuzz.py`` runs thousands more.
"""

from __future__ import annotations

import pytest

from rayml_assets_tests.common.fuzz_corpus import EXTENSIONS, IMAGE_REASONS, corpus, fuzz_champion, run_fuzz

PER_FORMAT = 60  # 2 x 360 files


@pytest.fixture(scope="module")
def champion():
    return fuzz_champion()


@pytest.mark.timeout(120)  # a decoder that loops on a mutated file fails the test instead of hanging it
@pytest.mark.parametrize("seed, workers", [(1, 1), (2, 2)], ids=["serial", "pool"])
def test_mutated_images_are_ingested_with_reference_pixels_or_quarantined(tmp_path, champion, seed, workers):
    cases = corpus(PER_FORMAT, seed=seed)
    report = run_fuzz(cases, tmp_path, champion, workers=workers)
    assert not report.problems, "\n".join(report.problems[:20])
    assert sum(report.ingest.values()) == sum(report.predict.values()) == len(cases)
    for fmt in EXTENSIONS:  # the corpus exercises both outcomes of every format
        outcomes = {outcome for (f, outcome) in report.ingest if f == fmt}
        assert "ingested" in outcomes and outcomes - {"ingested"}, (fmt, outcomes)
    reasons = {outcome.split(":", 1)[1] for (_, outcome) in report.ingest if outcome != "ingested"}
    assert reasons <= IMAGE_REASONS and "corrupt_image" in reasons


def test_the_corpus_is_seeded():
    assert [c.data for c in corpus(3, seed=5)] == [c.data for c in corpus(3, seed=5)]
    assert [c.data for c in corpus(3, seed=5)] != [c.data for c in corpus(3, seed=6)]
