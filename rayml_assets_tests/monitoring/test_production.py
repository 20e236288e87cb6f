"""Landing formats, feedback validation and joins, the sample stream, and the predictions table."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import numpy as np
import pytest
import torch

from rayml_assets import sample_stream
from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import encode_png
from rayml_assets.lib.common.contract import ChampionRef, MlflowSettings
from rayml_assets.lib.monitoring.inference import (
    Champion,
    NoChampionError,
    load_champion,
    predict_day,
    read_predictions,
    require_champion,
    write_predictions,
)
from rayml_assets.lib.training.models import SmallCNN
from rayml_assets.lib.monitoring.production import (
    Feedback,
    FeedbackError,
    FeedbackRow,
    ProductionLandingError,
    feedback_uri,
    join_feedback,
    list_partition_keys,
    list_production_files,
    parse_feedback,
    partition_key,
    partition_key_from_path,
    production_day_uri,
    read_feedback,
    relative_uri,
)

DAYS = 4
PER_DAY = 12


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    production, feedback = str(root / "production"), str(root / "feedback")
    days = sample_stream.write_stream(production, feedback, days=DAYS, start="2026-01-01", per_day=PER_DAY)
    return production, feedback, days


@pytest.fixture(scope="module")
def untrained_champion():
    torch.manual_seed(0)
    return Champion(SmallCNN(10, 1, width=4), "tiny", "3", [str(i) for i in range(10)], 7, "unused://cleaned")


# ---------------------------------------------------------------- partition keys and paths


def test_partition_key_accepts_days_and_rejects_the_rest():
    assert partition_key("2026-01-05") == "2026-01-05"
    assert partition_key(datetime(2026, 1, 5, 23, 59, tzinfo=timezone.utc)) == "2026-01-05"
    for bad in ("2026-1-5", "2026-02-30", "20260105", "", "2026-01-05/x"):
        with pytest.raises(ProductionLandingError):
            partition_key(bad)


def test_partition_keys_map_to_landing_paths_and_back(stream):
    production, feedback, days = stream
    assert list_partition_keys(production) == [d.date for d in days]
    assert list_partition_keys(feedback, feedback=True) == [d.date for d in days]
    for day in days:
        files = list_production_files(production, day.date)
        assert len(files) == PER_DAY
        assert all(f.path.startswith(production_day_uri(production, day.date)) for f in files)
        assert {partition_key_from_path(f.source_uri) for f in files} == {day.date}
        assert partition_key_from_path(feedback_uri(feedback, day.date)) == day.date


def test_partition_key_from_path_takes_the_innermost_day():
    assert partition_key_from_path("s3://b/2025-12-31/prod/2026-01-05/a/b.png") == "2026-01-05"
    assert partition_key_from_path("abfss://c@a/feedback/2026-01-07.csv") == "2026-01-07"
    assert partition_key_from_path("/landing/2026-13-45/x.png") is None
    assert partition_key_from_path("/landing/nodate/x.png") is None


def test_listing_is_sorted_bounded_and_skips_non_images(tmp_path):
    day = tmp_path / "2026-02-01"
    (day / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "sub/c.jpeg", ".hidden.png", "notes.txt"):
        (day / name).write_bytes(b"x")
    names = [f.path.rsplit("/", 1)[-1] for f in list_production_files(str(tmp_path), "2026-02-01")]
    assert names == ["a.JPG", "b.png", "c.jpeg"]
    assert list_production_files(str(tmp_path), "2026-02-02") == []  # an empty day is no error
    with pytest.raises(ProductionLandingError, match="max_files=2"):
        list_production_files(str(tmp_path), "2026-02-01", max_files=2)


def test_relative_uri():
    assert relative_uri("file:///x/prod/2026-01-01/img_00001.png", "2026-01-01") == "2026-01-01/img_00001.png"
    assert relative_uri("2026-01-01/a.png", "2026-01-01") == "2026-01-01/a.png"


# ---------------------------------------------------------------- feedback


@pytest.mark.parametrize(
    "text, message",
    [
        ("image_id,true_label\nabc,3\n", "missing columns \\['observed_at'\\]"),
        ("true_label,observed_at\n3,2026-01-01T00:00:00\n", "image_id or uri"),
        ("image_id,uri,true_label,observed_at\n,,3,2026-01-01T00:00:00\n", "line 2: neither image_id nor uri"),
        ("image_id,true_label,observed_at\nabc,3,yesterday\n", "line 2: observed_at 'yesterday'"),
        ("image_id,true_label,observed_at\nabc,,2026-01-01\n", "line 2: true_label is empty"),
        ("image_id,true_label,observed_at\nabc,3,2026-01-01,extra\n", "line 2: more fields"),
        ("", "missing columns"),
    ],
)
def test_malformed_feedback_raises_a_typed_error(text, message):
    with pytest.raises(FeedbackError, match=message):
        parse_feedback(text)


def test_feedback_parsing_tolerates_bom_blank_lines_and_naive_times(tmp_path):
    (tmp_path / "2026-01-02.csv").write_bytes(
        "\ufeffuri,true_label,observed_at\n\n2026-01-02/a.png,4,2026-01-02T10:00:00\n".encode()
    )
    feedback = read_feedback(str(tmp_path), "2026-01-02")
    assert feedback.found and len(feedback.rows) == 1
    assert feedback.rows[0].observed_at.tzinfo is not None
    missing = read_feedback(str(tmp_path), "2026-01-03")
    assert not missing.found and missing.rows == []


def _row(line, image_id="", uri="", label="1", hour=12):
    return FeedbackRow(line, image_id, uri, label, datetime(2026, 1, 1, hour, tzinfo=timezone.utc))


def test_join_keeps_the_latest_feedback_and_counts_duplicates_and_unknown_images():
    ids, uris = (
        ["a", "b", "c"],
        ["file:///p/2026-01-01/a.png", "file:///p/2026-01-01/b.png", "file:///p/2026-01-01/c.png"],
    )
    predicted = ["1", "2", "3"]
    rows = [
        _row(2, image_id="a", label="9", hour=8),  # stale: superseded by line 3
        _row(3, uri="2026-01-01/a.png", label="1", hour=9),  # same image by relative uri
        _row(4, uri="file:///p/2026-01-01/b.png", label="5"),  # full uri, wrong prediction
        _row(5, image_id="c", label="3", hour=14),
        _row(6, image_id="c", label="0", hour=10),  # older than line 5: dropped although later in the file
        _row(7, image_id="zzz"),
        _row(8, uri="2026-01-01/nope.png"),
    ]
    joined = join_feedback(Feedback("2026-01-01", "mem", rows), ids, uris, predicted)
    assert (joined.n_matched, joined.n_duplicates, joined.n_unknown) == (3, 2, 2)
    assert joined.unknown_examples == ["zzz", "2026-01-01/nope.png"]
    assert joined.true_labels == ["1", "5", "3"]
    assert joined.correct.tolist() == [True, False, True]
    assert joined.accuracy == pytest.approx(2 / 3)
    assert joined.summary()["n_correct"] == 2


def test_join_without_feedback_has_no_accuracy():
    joined = join_feedback(Feedback("2026-01-01", "mem", found=False), ["a"], ["u"], ["1"])
    assert joined.n_matched == 0 and joined.accuracy is None


# ---------------------------------------------------------------- the sample stream


def test_schedule_is_exposed_and_repeats():
    assert len(sample_stream.DRIFT_SCHEDULE) == sample_stream.DEFAULT_DAYS
    kinds = set(sample_stream.DRIFT_SCHEDULE.values())
    assert kinds == {None, *sample_stream.DRIFT_KINDS}
    assert all(sample_stream.drift_kind(i) == sample_stream.drift_kind(i + 10) for i in range(10))


def test_days_are_deterministic_unique_and_drift_as_scheduled():
    digits = sample_stream.held_back_digits()
    clean = sample_stream.generate_day(0, 300, seed=1, digits=digits)
    assert [i.data for i in clean] == [i.data for i in sample_stream.generate_day(0, 300, seed=1, digits=digits)]
    assert len({i.image_id for i in clean}) == 300
    big = sample_stream.generate_day(1, 4000, seed=1, digits=digits)  # with replacement past the pool
    assert len({i.image_id for i in big}) == 4000  # the jitter keeps ids unique
    mix = sample_stream.generate_day(8, 400, seed=1, digits=digits)
    assert sample_stream.drift_kind(8) == "class_mix"
    assert np.mean([i.label in ("0", "1") for i in mix]) > 0.4  # vs 0.2 on a clean day
    rng = np.random.default_rng(0)
    pixels = digits[0].pixels
    for kind in ("rotation", "noise", "brightness"):
        changed = sample_stream.apply_drift(pixels, kind, rng)
        assert changed.shape == pixels.shape and np.abs(changed.astype(int) - pixels).mean() > 5
    assert sample_stream.apply_drift(pixels, None, rng) is pixels


def test_stream_feedback_exercises_duplicates_and_unknown_images(stream):
    production, feedback, days = stream
    dup_day = days[min(sample_stream.DUPLICATE_FEEDBACK_DAYS)]
    unknown_day = days[min(sample_stream.UNKNOWN_FEEDBACK_DAYS)]
    for day in (dup_day, unknown_day):
        fb = read_feedback(feedback, day.date)
        files = list_production_files(production, day.date)
        ids = [hashlib.sha256(open(f.path, "rb").read()).hexdigest() for f in files]
        # "Predict" the fresh feedback itself: accuracy is 1 unless a stale duplicate wins.
        truth = {r.image_id or r.uri: r.true_label for r in fb.rows if not r.true_label.startswith("stale")}
        predicted = [truth.get(i) or truth.get(relative_uri(f.source_uri, day.date), "?") for i, f in zip(ids, files)]
        joined = join_feedback(fb, ids, [f.source_uri for f in files], predicted)
        assert any(r.uri for r in fb.rows) and any(r.image_id for r in fb.rows)
        assert joined.accuracy == 1.0 and joined.n_matched == round(PER_DAY * 0.5)
        if day is dup_day:
            assert joined.n_duplicates == 2
        else:
            assert joined.n_unknown == 1


def test_sample_stream_cli(tmp_path, capsys):
    sample_stream.main(
        [
            "--days",
            "2",
            "--start",
            "2026-03-01",
            "--per-day",
            "3",
            "--production",
            str(tmp_path / "p"),
            "--feedback",
            str(tmp_path / "f"),
        ]
    )
    assert "2026-03-02" in capsys.readouterr().out
    assert list_partition_keys(str(tmp_path / "p")) == ["2026-03-01", "2026-03-02"]
    assert len(list_production_files(str(tmp_path / "p"), "2026-03-02")) == 3


# ---------------------------------------------------------------- predictions


def test_predictions_of_a_day_match_the_schema_and_skip_bad_files(tmp_path, untrained_champion):
    day = tmp_path / "production" / "2026-01-05"
    day.mkdir(parents=True)
    good = [encode_png(np.full((32, 32), v, np.uint8)) for v in (0, 128, 255)]
    for i, data in enumerate(good):
        (day / f"img_{i}.png").write_bytes(data)
    (day / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = predict_day(untrained_champion, str(tmp_path / "production"), "2026-01-05", batch_size=2)
    table = result.table
    assert table.schema == lake.PREDICTIONS_SCHEMA
    assert result.n_files == 4 and len(result.skipped) == 1 and result.skipped[0][0].endswith("broken.png")
    assert table.column("image_id").to_pylist() == [hashlib.sha256(b).hexdigest() for b in good]
    assert set(table.column("date").to_pylist()) == {"2026-01-05"}
    assert set(table.column("model_version").to_pylist()) == {"3"}
    probs = np.array(table.column("probabilities").to_pylist())
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert result.embeddings.shape == (3, untrained_champion.module.embedding_dim)
    assert table.column("predicted_label").to_pylist() == [str(i) for i in probs.argmax(1)]


def test_empty_day_gives_an_explicit_empty_result(tmp_path, untrained_champion):
    result = predict_day(untrained_champion, str(tmp_path), "2026-01-06")
    assert result.is_empty and result.n_files == 0
    assert result.table.schema == lake.PREDICTIONS_SCHEMA
    assert result.embeddings.shape == (0, untrained_champion.module.embedding_dim)


def test_writing_a_day_replaces_only_that_day(tmp_path, stream, untrained_champion):
    production, _, days = stream
    uri = str(tmp_path / "predictions")
    assert read_predictions(uri, days[0].date).num_rows == 0  # no table yet: empty, not an error
    for day in days[:2]:
        write_predictions(uri, predict_day(untrained_champion, production, day.date))
    write_predictions(uri, predict_day(untrained_champion, production, days[0].date))  # a re-run
    assert read_predictions(uri, days[0].date).num_rows == PER_DAY
    assert read_predictions(uri, days[1].date, ["image_id"]).num_rows == PER_DAY
    assert lake.read_at(uri, None).num_rows == 2 * PER_DAY


def test_no_champion_is_a_clear_typed_error():
    with pytest.raises(
        NoChampionError, match="no model has the alias 'champion' yet — materialize registered_model first"
    ):
        require_champion(None)
    with pytest.raises(NoChampionError):
        nothing = ChampionRef(model_uri="", model_name="m", model_version="1")
        load_champion(nothing, MlflowSettings(tracking_uri="sqlite://"))
