"""Registry: registration, test-split evaluation, challenger/champion aliases, lineage and the promotion rules.

Real MLflow (sqlite) and real Delta; the two models are trained in-process in
seconds (no Ray), because only their relative quality matters here.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from rayml_assets.lib.common import lake
from rayml_assets.lib.training.models import build_model
from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.training.delta_stream import DataSpec, DeltaImageStream, discover_labels
from rayml_assets.lib.training.evaluation import evaluate
from rayml_assets.lib.training.promotion import (
    CHALLENGER,
    CHAMPION,
    decide_promotion,
    passes_gate,
    promote,
    should_promote,
)
from rayml_assets.lib.training.registry import register_challenger
from rayml_assets.lib.training.tracking import ensure_experiment, load_logged_model, log_model
from rayml_assets_tests.support.training_fixtures import write_digits_table

MODEL = "digits-classifier"
accuracies = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
margins = st.floats(min_value=0.0, max_value=0.2, allow_nan=False)


# ---------------------------------------------------------------- pure rules


@given(challenger=accuracies, champion=accuracies, margin=margins)
def test_a_worse_or_equal_challenger_is_never_promoted(challenger, champion, margin):
    if challenger <= champion:
        assert not should_promote(challenger, champion, margin)
        assert not decide_promotion(challenger, champion, margin, min_accuracy=0.0).promote


@given(challenger=accuracies, champion=accuracies, margin=margins)
def test_promotion_needs_the_full_margin(challenger, champion, margin):
    promoted = should_promote(challenger, champion, margin)
    assert promoted == (challenger > champion and challenger - champion >= margin)


@given(challenger=accuracies, champion=st.none() | accuracies, margin=margins, gate=accuracies)
def test_decision_is_gate_and_margin_together(challenger, champion, margin, gate):
    decision = decide_promotion(challenger, champion, margin, gate)
    assert decision.promote == (passes_gate(challenger, gate) and should_promote(challenger, champion, margin))
    if not passes_gate(challenger, gate):
        assert "gate" in decision.reason


def test_rule_edge_cases():
    assert should_promote(0.5, None)  # nothing to beat
    assert not should_promote(math.nan, 0.1)
    assert not passes_gate(math.nan, 0.0) and not passes_gate(None, 0.0)
    assert passes_gate(0.9, 0.9) and not passes_gate(0.899, 0.9)
    with pytest.raises(ValueError):
        should_promote(0.9, 0.8, margin=-0.1)


# ---------------------------------------------------------------- registry flow on real MLflow + Delta


def _train_quickly(spec: DataSpec, epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("small_cnn", len(spec.class_labels), spec.channels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(epochs):
        for x, y in DataLoader(DeltaImageStream(spec, "train", shuffle=True, epoch=epoch), batch_size=16):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
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
        experiment_id = ensure_experiment(settings)
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

        good, bad = _train_quickly(spec, epochs=4), build_model("small_cnn", 10, 1).eval()
        good_run, good_uri = logged(good)
        bad_run, bad_uri = logged(bad)
        common = {
            "table_uri": uri,
            "delta_version": version,
            "reports_dir": work / "reports",
            "margin": 0.01,
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
    assert first.challenger.accuracy >= 0.3  # the quick model learned something
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
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias(MODEL, CHALLENGER).version) == "2"


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
