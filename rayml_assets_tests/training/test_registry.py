"""Registry: registration, test-split evaluation, the baseline, challenger/champion aliases, lineage and the rules.

Real MLflow (sqlite) and real Delta; the two models are trained in-process in
seconds (no Ray), because only their relative quality matters here.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from rayml_assets.lib.common import lake
from rayml_assets.lib.training.models import build_model
from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.training.delta_stream import DataSpec, DeltaImageStream, discover_labels
from rayml_assets.lib.training.evaluation import evaluate
from rayml_assets.lib.training.promotion import (
    CHALLENGER,
    CHAMPION,
    beats_baseline,
    decide_promotion,
    meets_floor,
    passes_gate,
    promote,
    should_promote,
)
from rayml_assets.lib.training.registry import register_challenger
from rayml_assets.lib.training.tracking import load_logged_model, log_model
from rayml_assets_tests.support.training_fixtures import write_digits_table

MODEL = "digits-classifier"
accuracies = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
margins = st.floats(min_value=0.0, max_value=0.2, allow_nan=False)


# ---------------------------------------------------------------- pure rules

BASELINE = {"baseline_model": "svc", "baseline_accuracy": 0.0}  # rules about the champion alone: nothing to beat


@given(challenger=accuracies, champion=accuracies, margin=margins)
def test_a_worse_or_equal_challenger_is_never_promoted(challenger, champion, margin):
    if challenger <= champion:
        assert not should_promote(challenger, champion, margin)
        assert not decide_promotion(challenger, champion, promotion_margin=margin, **BASELINE).promote


@given(challenger=accuracies, champion=accuracies, margin=margins)
def test_promotion_needs_the_full_margin(challenger, champion, margin):
    promoted = should_promote(challenger, champion, margin)
    assert promoted == (challenger > champion and challenger - champion >= margin)


@given(challenger=accuracies, baseline=accuracies, margin=margins)
def test_the_gate_needs_the_full_baseline_margin(challenger, baseline, margin):
    assert beats_baseline(challenger, baseline, margin) == (challenger > baseline and challenger - baseline >= margin)


@given(challenger=accuracies, champion=st.none() | accuracies, baseline=accuracies, margin=margins)
def test_a_challenger_no_better_than_the_baseline_is_never_promoted(challenger, champion, baseline, margin):
    decision = decide_promotion(challenger, champion, baseline_model="logreg", baseline_accuracy=baseline,
                                baseline_margin=margin)
    if challenger <= baseline:
        assert not decision.promote and not decision.gate_passed
        assert "fails the gate" in decision.reason and "baseline logreg" in decision.reason


@given(
    challenger=accuracies, champion=st.none() | accuracies, baseline=accuracies,
    margin=margins, baseline_margin=margins, floor=st.none() | accuracies,
)
def test_decision_is_gate_and_champion_together(challenger, champion, baseline, margin, baseline_margin, floor):
    decision = decide_promotion(challenger, champion, baseline_model="svc", baseline_accuracy=baseline,
                                promotion_margin=margin, baseline_margin=baseline_margin, min_accuracy=floor)
    gate = passes_gate(challenger, baseline, baseline_margin, floor)
    assert decision.gate_passed == gate
    assert decision.promote == (gate and should_promote(challenger, champion, margin))
    assert decision.baseline_lift == pytest.approx(challenger - baseline)
    if not gate:
        assert decision.reason.startswith("fails the gate")


def test_worse_than_the_baseline_is_not_promoted_and_the_reason_names_it():
    decision = decide_promotion(0.80, None, baseline_model="svc", baseline_accuracy=0.90)
    assert not decision.promote and not decision.gate_passed
    assert decision.reason == (
        "fails the gate: test accuracy 0.8000 does not beat baseline svc 0.9000 "
        "by baseline_margin 0.0000 (lift -0.1000)"
    )


def test_equal_to_the_baseline_is_not_promoted_with_margin_zero():
    decision = decide_promotion(0.90, None, baseline_model="logreg", baseline_accuracy=0.90, baseline_margin=0.0)
    assert not decision.promote and "baseline logreg 0.9000" in decision.reason
    assert decide_promotion(0.91, None, baseline_model="logreg", baseline_accuracy=0.90).promote


def test_the_baseline_margin_and_the_optional_floor():
    assert not decide_promotion(0.91, None, baseline_model="svc", baseline_accuracy=0.90, baseline_margin=0.02).promote
    above_baseline = {"baseline_model": "svc", "baseline_accuracy": 0.50}
    below_floor = decide_promotion(0.60, None, min_accuracy=0.70, **above_baseline)
    assert not below_floor.promote and not below_floor.gate_passed
    assert below_floor.reason == "fails the gate: test accuracy 0.6000 is below min_accuracy 0.7000"
    assert decide_promotion(0.70, None, min_accuracy=0.70, **above_baseline).promote  # the floor is reached, not beaten
    assert decide_promotion(0.60, None, min_accuracy=None, **above_baseline).promote  # no floor by default
    passed_not_champion = decide_promotion(0.60, 0.65, **above_baseline)
    assert passed_not_champion.gate_passed and not passed_not_champion.promote
    assert "not champion 0.6500" in passed_not_champion.reason


def test_rule_edge_cases():
    assert should_promote(0.5, None)  # nothing to beat
    assert not should_promote(math.nan, 0.1)
    assert not beats_baseline(0.9, math.nan)  # a baseline without a score is no pass
    assert not meets_floor(math.nan) and not meets_floor(None, 0.0) and meets_floor(0.1)
    assert meets_floor(0.9, 0.9) and not meets_floor(0.899, 0.9)
    with pytest.raises(ValueError, match="promotion_margin"):
        should_promote(0.9, 0.8, margin=-0.1)
    with pytest.raises(ValueError, match="baseline_margin"):
        passes_gate(0.9, 0.8, baseline_margin=-0.1)


# ---------------------------------------------------------------- registry flow on real MLflow + Delta


def _fit_every_split(spec: DataSpec, max_epochs: int = 20) -> torch.nn.Module:
    """A model that beats the baseline: it also sees the test split, until it gets it all right.

    Fair training does not get there in seconds: an SVC scores about 0.97 on these digits, a few
    epochs of a CNN on 224 images far less. The registry tests need the relative quality only.
    """
    torch.manual_seed(0)
    rows = [row for split in ("train", "val", "test") for row in DeltaImageStream(spec, split)]
    x, y = torch.stack([image for image, _ in rows]), torch.tensor([label for _, label in rows])
    model = build_model("small_cnn", len(spec.class_labels), spec.channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(max_epochs):
        model.train()
        for batch in torch.randperm(len(y)).split(32):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        if evaluate(model, spec, "test").accuracy == 1.0:
            break
    return model.eval()


@pytest.fixture(scope="module")
def flow():
    """Good model registered and promoted, registered again, then a worse model registered."""
    with tempfile.TemporaryDirectory(prefix="rayml-registry-") as tmp:
        work = Path(tmp)
        lake_root = str(work / "lake")
        uri, version = write_digits_table(lake_root, n=400, image_size=16)
        spec = DataSpec(uri, version, discover_labels(uri, version), 16, 1)
        settings = MlflowSettings.local(work / "home", experiment_name="test-registry")
        client = settings.client()
        experiment_id = settings.ensure_experiment()
        meta = {
            "model": "small_cnn",
            "class_labels": list(spec.class_labels),
            "channels": 1,
            "image_size": 16,
            "table_uri": uri,
            "delta_version": version,
        }

        def logged(model) -> tuple[str, str]:
            run_id = client.create_run(experiment_id).info.run_id
            return run_id, log_model(settings, run_id, model, meta)

        good, bad = _fit_every_split(spec), build_model("small_cnn", 10, 1).eval()
        good_run, good_uri = logged(good)
        bad_run, bad_uri = logged(bad)
        common = {
            "table_uri": uri,
            "delta_version": version,
            "reports_dir": str(work / "reports"),
            "promotion_margin": 0.01,
            "min_accuracy": 0.3,
        }

        first = register_challenger(
            settings, model_name=MODEL, model_uri=good_uri, run_id=good_run, dagster_run_id="run-a", **common
        )
        first_promoted = promote(settings, MODEL, first.version, first.decision)
        again = register_challenger(
            settings, model_name=MODEL, model_uri=good_uri, run_id=good_run, dagster_run_id="run-b", **common
        )
        versions_after_again = len(client.search_model_versions(f"name='{MODEL}'"))
        worse = register_challenger(
            settings, model_name=MODEL, model_uri=bad_uri, run_id=bad_run, dagster_run_id="run-c", **common
        )
        worse_promoted = promote(settings, MODEL, worse.version, worse.decision)
        # the table moves on after registration: lineage must still point at the old version
        write_digits_table(lake_root, n=150, image_size=16, offset=500)
        yield {
            "settings": settings,
            "spec": spec,
            "good": good,
            "first": first,
            "first_promoted": first_promoted,
            "again": again,
            "versions_after_again": versions_after_again,
            "worse": worse,
            "worse_promoted": worse_promoted,
        }


def test_first_challenger_is_registered_tested_and_promoted(flow):
    first, client = flow["first"], flow["settings"].client()
    assert first.created and first.version == "1"
    assert first.champion is None and first.decision.promote and flow["first_promoted"]
    assert first.decision.gate_passed and first.challenger.accuracy > first.baseline.best_accuracy
    assert first.challenger.n == len(list(DeltaImageStream(flow["spec"], "test")))
    assert set(first.challenger.per_class_precision) == set(flow["spec"].class_labels)
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == "1"
    assert Path(first.confusion_png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "evaluation" in {a.path for a in client.list_artifacts(first.source_run_id)}


def test_registering_the_same_run_again_reuses_its_version(flow):
    first, again = flow["first"], flow["again"]
    assert not again.created and again.version == first.version
    assert flow["versions_after_again"] == 1
    # the champion is the challenger itself: nothing to promote
    assert not again.decision.promote


def test_a_worse_challenger_stays_challenger(flow):
    first, worse, client = flow["first"], flow["worse"], flow["settings"].client()
    assert worse.created and worse.version == "2"
    assert worse.champion_version == "1"
    # both scored on the same pinned test split
    assert worse.champion.n == worse.challenger.n == first.challenger.n
    assert worse.champion.accuracy == pytest.approx(first.challenger.accuracy)
    assert worse.challenger.accuracy < worse.champion.accuracy
    assert not worse.decision.promote and not flow["worse_promoted"]
    # the untrained model fails the gate itself: the baseline, not only the champion, keeps it out
    assert not worse.decision.gate_passed and worse.challenger.accuracy < worse.baseline.best_accuracy
    assert f"baseline {worse.baseline.best_model}" in worse.decision.reason
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias(MODEL, CHALLENGER).version) == "2"


def test_the_baseline_is_fitted_on_the_same_pinned_splits(flow):
    first, worse = flow["first"], flow["worse"]
    baseline = first.baseline
    assert baseline.test_rows == first.challenger.n  # the rows the challenger was scored on
    assert baseline.train_rows == baseline.train_rows_in_split == len(list(DeltaImageStream(flow["spec"], "train")))
    assert not baseline.sampled and baseline.side == 16
    # an SVC on 16x16 digits is a strong bar; the same data gives the same baseline
    assert min(baseline.logreg_accuracy, baseline.svc_accuracy) > 0.8
    assert worse.baseline == replace(baseline, logreg_fit_seconds=worse.baseline.logreg_fit_seconds,
                                     svc_fit_seconds=worse.baseline.svc_fit_seconds)
    assert first.decision.baseline_accuracy == baseline.best_accuracy
    assert first.decision.baseline_model == baseline.best_model


def test_the_baseline_numbers_are_run_metrics_and_version_tags(flow):
    client, first = flow["settings"].client(), flow["first"]
    numbers = first.baseline_numbers()
    assert set(numbers) == {"baseline_logreg_accuracy", "baseline_svc_accuracy", "baseline_accuracy", "baseline_lift"}
    assert numbers["baseline_lift"] == pytest.approx(first.challenger.accuracy - first.baseline.best_accuracy)
    metrics = client.get_run(first.source_run_id).data.metrics
    tags = client.get_model_version(MODEL, first.version).tags
    for key, value in numbers.items():
        assert metrics[key] == pytest.approx(value) and float(tags[key]) == pytest.approx(value, abs=1e-6)
    assert tags["baseline_model"] == first.baseline.best_model
    assert float(client.get_model_version(MODEL, "2").tags["baseline_lift"]) < 0  # the untrained one


def test_version_tags_lead_back_to_the_exact_delta_version(flow):
    client = flow["settings"].client()
    version = client.get_model_version(MODEL, "1")
    assert version.tags["dagster_run_id"] == "run-a"
    uri, delta_version = version.tags["cleaned_table_uri"], int(version.tags["delta_version"])
    assert uri == flow["spec"].table_uri and delta_version == flow["spec"].version
    assert lake.current_version(uri) > delta_version  # the table has moved on since
    model, meta = load_logged_model(f"models:/{MODEL}@{CHAMPION}", flow["settings"])
    rescored = evaluate(model, DataSpec(uri, delta_version, tuple(meta["class_labels"]), 16, 1), "test")
    assert rescored.n == flow["first"].challenger.n
    assert rescored.accuracy == pytest.approx(flow["first"].challenger.accuracy)
    assert float(version.tags["test_accuracy"]) == pytest.approx(rescored.accuracy, abs=1e-6)


def test_registered_model_rebuilds_with_forward_and_embed(flow):
    model, _ = load_logged_model(f"models:/{MODEL}/1", flow["settings"])
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), flow["good"](x), atol=1e-5)
        assert model.embed(x).shape == (3, model.embedding_dim)
