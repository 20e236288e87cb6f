"""The training assets in Dagster, without Ray: what ``tuned_model`` sends, and the checks each step runs.

``tuned_model`` runs through the real ``LocalCompute`` and Pipes path against the
stand-in task script ``pipes_scripts/train_task.py``; ``registered_model`` runs with
the registry call replaced by a fixed report, so only the asset, its in-step checks
and the gate on ``champion_model`` are under test here (the registry itself is
covered by ``test_registry.py``).
"""

import tempfile

import pytest
from dagster import AssetCheckSeverity, AssetMaterialization, FloatMetadataValue, materialize

from rayml_assets.definitions import resources_for
from rayml_assets.defs.common import keys
from rayml_assets.defs.training import assets as training_assets
from rayml_assets.defs.training.assets import TunedModelConfig, champion_model, registered_model, tuned_model
from rayml_assets.lib.common import lake
from rayml_assets.lib.common.storage_options import write_bytes
from rayml_assets.lib.training import registry
from rayml_assets.lib.training.baseline import BaselineResult
from rayml_assets.lib.training.contract import TrainTaskParams
from rayml_assets.lib.training.evaluation import EvalResult
from rayml_assets.lib.training.promotion import decide_promotion
from rayml_assets.resources.compute import LocalCompute
from rayml_assets_tests.training.pipes_scripts.train_task import FAILING_EXPERIMENT

PROBES = "rayml_assets_tests.training.pipes_scripts"
TRAINING = [tuned_model, registered_model, champion_model]
CLEANED_VERSION = 3


@pytest.fixture
def resources(profile):
    return {**resources_for(profile), "compute": LocalCompute(profile="local", tasks_package=PROBES)}


def _checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _tune(resources, instance, **config):
    instance.report_runless_asset_event(
        AssetMaterialization(keys.CLEANED_IMAGES, metadata={"delta_version": CLEANED_VERSION})
    )
    return materialize(
        TRAINING,
        resources=resources,
        instance=instance,
        selection=[keys.TUNED_MODEL],
        run_config={"ops": {"tuned_model": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def test_tuned_model_sends_its_typed_params_and_checks_the_trials(resources, instance, profile):
    result = _tune(resources, instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node("tuned_model")
    sent = TrainTaskParams.from_extras(materialization.metadata["params"].value)
    assert sent.cleaned_version == CLEANED_VERSION and sent.lake.root == profile.lake_root
    assert sent.tuning == TunedModelConfig().tuning()
    assert sent.mlflow == resources["mlflow_store"].settings()
    assert sent.ray == resources["ray_cluster"].settings()
    assert (sent.dagster_run_id, sent.asset_key) == (result.run_id, "tuned_model")
    check = _checks(result)["no_failed_trials"]
    assert check.passed and check.metadata["trials_run"].value == sent.tuning.num_trials()

    failing = _tune(resources, instance, experiment_name=FAILING_EXPERIMENT)
    assert failing.success, "a failed trial is a warning, not a failed step"
    check = _checks(failing)["no_failed_trials"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["trials_errored"].value == 1


BASELINE = BaselineResult(
    logreg_accuracy=0.6, svc_accuracy=0.7, train_rows=40, train_rows_in_split=40, max_train_rows=10_000,
    test_rows=10, side=16, logreg_fit_seconds=0.01, svc_fit_seconds=0.01,
)


def _fake_register(accuracy: float):
    def register_challenger(
        settings, *, model_name, delta_version, table_uri, promotion_margin, baseline_margin, min_accuracy, **_
    ):
        labels = ["0", "1"]
        per_class = dict.fromkeys(labels, 0.5)
        evaluation = EvalResult("test", 10, accuracy, 1.0, labels, [[5, 0], [5, 0]], per_class, per_class)
        decision = decide_promotion(
            accuracy, None, baseline_model=BASELINE.best_model, baseline_accuracy=BASELINE.best_accuracy,
            promotion_margin=promotion_margin, baseline_margin=baseline_margin, min_accuracy=min_accuracy,
        )
        return registry.ChallengerReport(
            model_name=model_name,
            version="1",
            model_uri=f"models:/{model_name}/1",
            created=True,
            source_run_id="run-1",
            table_uri=table_uri,
            delta_version=delta_version,
            challenger=evaluation,
            baseline=BASELINE,
            champion_version=None,
            champion=None,
            decision=decision,
            # A real picture, as the real registration draws one: the asset shows it inline.
            confusion_png=write_bytes(f"{tempfile.mkdtemp()}/confusion.png", registry.confusion_png(evaluation)),
        )

    return register_challenger


def _register(resources, instance, monkeypatch, accuracy: float, **config):
    monkeypatch.setattr(registry, "register_challenger", _fake_register(accuracy))
    monkeypatch.setattr(training_assets, "promote", lambda settings, name, version, decision: decision.promote)
    instance.report_runless_asset_event(
        AssetMaterialization(
            keys.TUNED_MODEL,
            metadata={
                "best_model_uri": "models:/m-1",
                "mlflow_run_id": "run-1",
                "cleaned_table_uri": lake.table_uri("lake", lake.CLEANED_IMAGES),
                "delta_version": CLEANED_VERSION,
            },
        )
    )
    return materialize(
        TRAINING,
        resources=resources,
        instance=instance,
        selection=[keys.REGISTERED_MODEL, keys.CHAMPION_MODEL],
        run_config={"ops": {"registered_model": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def test_a_challenger_worse_than_the_baseline_fails_the_blocking_check_and_keeps_the_champion(
    resources, instance, monkeypatch
):
    result = _register(resources, instance, monkeypatch, accuracy=0.5)
    check = _checks(result)["challenger_beats_baseline"]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["test_accuracy"].value == 0.5 and check.metadata["baseline_accuracy"].value == 0.7
    assert check.metadata["baseline_model"].value == "svc" and "min_accuracy" not in check.metadata
    assert "does not beat baseline svc 0.7000" in check.description
    [registered] = result.asset_materializations_for_node("registered_model")  # the challenger is still recorded
    assert registered.metadata["baseline_lift"].value == pytest.approx(-0.2)
    assert not result.asset_materializations_for_node("champion_model")
    assert not result.success


def test_a_challenger_that_beats_the_baseline_moves_the_champion(resources, instance, monkeypatch):
    result = _register(resources, instance, monkeypatch, accuracy=0.8)
    assert result.success
    assert _checks(result)["challenger_beats_baseline"].passed
    [champion] = result.asset_materializations_for_node("champion_model")
    assert champion.metadata["moved"].value and champion.metadata["champion_version"].value == "1"


def test_the_baseline_margin_and_the_floor_gate_too(resources, instance, monkeypatch):
    for config in ({"baseline_margin": 0.15}, {"min_accuracy": 0.9}):
        result = _register(resources, instance, monkeypatch, accuracy=0.8, **config)
        check = _checks(result)["challenger_beats_baseline"]
        assert not check.passed and not result.asset_materializations_for_node("champion_model"), config
    assert check.metadata["min_accuracy"].value == 0.9


def test_registered_model_metadata_keeps_the_charted_baseline_keys_as_floats(resources, instance, monkeypatch):
    result = _register(resources, instance, monkeypatch, accuracy=0.8)
    [registered] = result.asset_materializations_for_node("registered_model")
    meta = registered.metadata
    for key in ("baseline_accuracy", "baseline_lift", "baseline_logreg_accuracy", "baseline_svc_accuracy"):
        assert isinstance(meta[key], FloatMetadataValue), key
    assert meta["baseline_accuracy"].value == 0.7 and meta["baseline_lift"].value == pytest.approx(0.1)
    assert meta["baseline_model"].value == "svc" and meta["baseline_margin"].value == 0.0
    assert "min_accuracy" not in meta  # no floor by default
