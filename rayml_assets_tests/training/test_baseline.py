"""The classical baseline on tiny digits tables, and the gate it sets, down to the champion alias.

Real Delta (``write_digits_table``); the last test runs ``registered_model`` and ``champion_model``
through ``dagster.materialize`` with the real registry (MLflow on sqlite), no Ray.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch
from dagster import AssetMaterialization, FloatMetadataValue, materialize
from deltalake import write_deltalake
from hypothesis import given
from hypothesis import strategies as st

from rayml_assets.definitions import resources_for
from rayml_assets.defs.common import keys
from rayml_assets.defs.training.assets import champion_model, registered_model, tuned_model
from rayml_assets.lib.common import lake
from rayml_assets.lib.training import baseline as baseline_module
from rayml_assets.lib.training.baseline import LOGREG, SVC_RBF, features, fit_baseline, quotas, sample_train_ids
from rayml_assets.lib.training.delta_stream import DataSpec, DeltaImageStream, discover_labels
from rayml_assets.lib.training.models import build_model
from rayml_assets.lib.training.tracking import log_model
from rayml_assets_tests.support.training_fixtures import digits_table, write_digits_table


def _spec(uri: str, version: int, size: int, labels: tuple[str, ...] | None = None) -> DataSpec:
    return DataSpec(uri, version, labels or discover_labels(uri, version), size, 1)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """300 digits at 32 px: about 190 train and 50 test rows, ten classes."""
    uri, version = write_digits_table(str(tmp_path_factory.mktemp("lake")), n=300, image_size=32)
    return _spec(uri, version, 32)


# ---------------------------------------------------------------- the sample


@given(counts=st.dictionaries(st.sampled_from("abcdefghij"), st.integers(1, 500), min_size=1), cap=st.integers(1, 600))
def test_quotas_are_a_stratified_share_of_exactly_the_cap(counts, cap):
    quota, total = quotas(counts, cap), sum(counts.values())
    assert set(quota) == set(counts) and all(1 <= quota[k] <= counts[k] for k in counts)
    # every class keeps a row, so more classes than the cap take one row each
    assert sum(quota.values()) == (total if total <= cap else max(cap, len(counts)))
    if total > cap and all(cap * n >= total for n in counts.values()):
        # no class needs the one-row floor: largest remainder keeps each within a row of its share
        assert all(abs(quota[k] - cap * counts[k] / total) < 1 for k in counts)


def test_the_sample_is_capped_stratified_and_stable(digits, tmp_path):
    ids, rows, in_split = sample_train_ids(digits, cap=30)
    assert rows == len(ids) == 30 and in_split > 30
    labels = {image_id: label for image_id, label in _train_labels(digits)}
    assert {labels[i] for i in ids} == set(digits.class_labels)  # every class keeps rows
    assert sample_train_ids(digits, cap=30)[0] == ids
    # The same rows written in another order and in two files: the same sample.
    table = digits_table(300, 32)
    uri = lake.table_uri(str(tmp_path), lake.CLEANED_IMAGES)
    reversed_rows = table.take(pa.array(range(len(table) - 1, -1, -1)))
    write_deltalake(uri, reversed_rows.slice(0, 100))
    write_deltalake(uri, reversed_rows.slice(100), mode="append")
    assert sample_train_ids(_spec(uri, lake.current_version(uri), 32), cap=30)[0] == ids


def _train_labels(spec: DataSpec) -> list[tuple[str, str]]:
    rows = lake.read_at(spec.table_uri, spec.version, ["image_id", "label", "split", "excluded"]).to_pylist()
    return [(r["image_id"], r["label"]) for r in rows if r["split"] == "train" and not r["excluded"]]


def test_no_cap_reached_takes_every_train_row(digits):
    ids, rows, in_split = sample_train_ids(digits, cap=10_000)
    assert ids is None and rows == in_split == len(_train_labels(digits))


def test_features_area_average_down_and_never_up():
    x = torch.arange(2 * 1 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)
    pooled = features(x, 16)
    assert pooled.shape == (2, 256)
    assert pooled[0, 0] == pytest.approx(float(x[0, 0, :2, :2].mean()))
    assert features(torch.zeros(3, 3, 8, 8), 16).shape == (3, 3 * 8 * 8)


# ---------------------------------------------------------------- the fit


def test_both_baselines_fit_the_train_split_and_score_the_challengers_test_rows(digits):
    result = fit_baseline(digits)
    assert result.test_rows == len(list(DeltaImageStream(digits, "test")))
    assert result.train_rows == result.train_rows_in_split and not result.sampled
    assert result.side == 16 and result.max_train_rows == 10_000
    # digits are easy for classical models: that is the bar a network has to clear
    assert result.logreg_accuracy > 0.8 and result.svc_accuracy > 0.8
    assert result.best_accuracy == max(result.logreg_accuracy, result.svc_accuracy)
    assert result.best_model == (LOGREG if result.logreg_accuracy >= result.svc_accuracy else SVC_RBF)
    assert result.logreg_fit_seconds > 0 and result.svc_fit_seconds > 0
    assert result.to_dict()["best_model"] == result.best_model
    again = fit_baseline(digits)
    assert (again.logreg_accuracy, again.svc_accuracy) == (result.logreg_accuracy, result.svc_accuracy)


def test_a_capped_fit_decodes_only_the_sampled_rows_and_says_so(digits, monkeypatch):
    decoded = []
    real = baseline_module.decode_to_array
    monkeypatch.setattr(baseline_module, "decode_to_array", lambda *a, **k: decoded.append(1) or real(*a, **k))
    result = fit_baseline(digits, max_train_rows=20)
    assert result.train_rows == len(decoded) == 20 and result.sampled and result.max_train_rows == 20
    assert result.train_rows_in_split > 20


def test_labels_the_model_does_not_know_count_as_wrong_like_the_challengers(digits):
    known = tuple(label for label in digits.class_labels if label != "9")
    partial = DataSpec(digits.table_uri, digits.version, known, 32, 1)
    full, result = fit_baseline(digits), fit_baseline(partial)
    assert result.test_rows == full.test_rows  # the same denominator as evaluate()
    assert result.train_rows < full.train_rows  # no train row of a class the model does not have


def test_a_single_class_train_split_predicts_that_class(tmp_path):
    uri, version = write_digits_table(str(tmp_path), n=40, image_size=16)
    only = DataSpec(uri, version, ("0",), 16, 1)
    result = fit_baseline(only)
    assert result.train_rows >= 1 and 0.0 <= result.svc_accuracy == result.logreg_accuracy <= 1.0


def test_a_row_written_twice_is_sampled_once(tmp_path):
    uri, _ = write_digits_table(str(tmp_path), n=120, image_size=16)
    uri, version = write_digits_table(str(tmp_path), n=120, image_size=16, mode="append")  # the same ids again
    result = fit_baseline(_spec(uri, version, 16), max_train_rows=20)
    assert result.train_rows == 20 and result.sampled


def test_too_small_a_cap_is_refused(digits):
    with pytest.raises(ValueError, match="max_train_rows"):
        fit_baseline(digits, max_train_rows=0)


# ---------------------------------------------------------------- the gate, through Dagster


def test_a_model_worse_than_the_baseline_never_becomes_champion(profile, instance):
    uri, version = write_digits_table(profile.lake_root, n=200, image_size=16)
    spec = _spec(uri, version, 16)
    resources = resources_for(profile)
    settings = resources["mlflow_store"].settings()
    run_id = settings.client().create_run(settings.ensure_experiment()).info.run_id
    torch.manual_seed(0)
    untrained = build_model("small_cnn", len(spec.class_labels), 1).eval()
    meta = {"model": "small_cnn", "class_labels": list(spec.class_labels), "channels": 1, "image_size": 16,
            "table_uri": uri, "delta_version": version}
    instance.report_runless_asset_event(AssetMaterialization(keys.TUNED_MODEL, metadata={
        "best_model_uri": log_model(settings, run_id, untrained, meta), "mlflow_run_id": run_id,
        "cleaned_table_uri": uri, "delta_version": version,
    }))
    graph = [tuned_model, registered_model, champion_model]
    result = materialize(graph, resources=resources, instance=instance, raise_on_error=False,
                         selection=[keys.REGISTERED_MODEL, keys.CHAMPION_MODEL])

    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "challenger_beats_baseline" and not check.passed
    [registered] = result.asset_materializations_for_node("registered_model")
    meta = registered.metadata
    assert meta["baseline_lift"].value < 0 and meta["should_promote"].value is False
    assert all(isinstance(meta[k], FloatMetadataValue) for k in ("baseline_accuracy", "baseline_lift",
                                                                  "baseline_logreg_accuracy", "baseline_svc_accuracy"))
    assert meta["baseline_model"].value in (LOGREG, SVC_RBF)
    assert not result.asset_materializations_for_node("champion_model") and not result.success
    model_name = resources["mlflow_store"].model_name
    assert "champion" not in settings.client().get_registered_model(model_name).aliases

    # Run alone, without the check, champion_model applies the same rule to the recorded numbers.
    alone = materialize(graph, resources=resources, instance=instance, raise_on_error=False,
                        selection=[keys.CHAMPION_MODEL])
    failure = next(e for e in alone.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no champion" in failure.step_failure_data.error.message
    assert "does not beat baseline" in failure.step_failure_data.error.message
    assert "champion" not in settings.client().get_registered_model(model_name).aliases
