"""The whole asset graph on a tiny dataset, on one temporary instance: real Delta, fastdup, Ray (through the
Pipes task scripts), MLflow on sqlite, alibi-detect and SHAP.

The chain is trained once per module (the ``stack`` fixture); each test then exercises one part of it.
"""

import json
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, materialize

from rayml_assets.lib.common import lake
from rayml_assets.definitions import resources_for
from rayml_assets.defs.dataset import assets as dataset_assets
from rayml_assets.defs.monitoring import assets as monitoring_assets
from rayml_assets.defs.training import assets as training_assets
from rayml_assets.resources.mlflow import MlflowResource
from rayml_assets.resources.storage import DatasetPolicy
from rayml_assets.sample import write_batches
from rayml_assets.sample_stream import drift_kind, write_stream
from rayml_assets.settings import load_profile
from rayml_assets_tests.conftest import TAXONOMY

TINY_TUNING = {
    "search_space": {"model": "small_cnn", "lr": {"grid": [0.05, 0.1]}, "batch_size": 32, "momentum": 0.9},
    "num_samples": 1,
    "max_epochs": 3,
    "scheduler": {"type": "fifo"},
    "num_workers": 2,
    "cpus_per_worker": 1,
    "trainer_cpus": 0,
}
TRAINING = [
    training_assets.tuned_model,
    training_assets.registered_model,
    training_assets.champion_model,  # the training checks are check_specs of their assets
]
MONITORING = [
    monitoring_assets.predictions,
    monitoring_assets.data_drift_report,
    monitoring_assets.model_drift_report,  # no_data_drift / no_model_degradation are check_specs of the reports
]
CLEAN_DAY, DRIFTED_DAY = "2026-01-01", "2026-01-03"  # day indexes 0 and 2 of the sample stream


def _meta(result, key):
    return {k: v.value for k, v in result.asset_materializations_for_node(key)[0].metadata.items()}


def _train_config(tune: bool = True, **registration) -> dict:
    ops = {"registered_model": {"config": registration}} if registration else {}
    if tune:
        ops["tuned_model"] = {"config": {"tuning_yaml": yaml.safe_dump(TINY_TUNING)}}
    return {"ops": ops}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("rayml_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYML_HOME", str(home))
        profile = load_profile("local")
        # Every 8th digit: spread over all writers of the digits set, like the production stream.
        write_batches(Path(profile.landing_uri), batches=8, only_batch=0)
        write_stream(profile.production_landing_uri, profile.feedback_landing_uri, days=3, per_day=80)
        resources = resources_for(profile)
        resources["dataset_policy"] = DatasetPolicy(taxonomy=list(TAXONOMY), min_train_images_per_class=3)
        with DagsterInstance.ephemeral() as instance:
            data = materialize([dataset_assets.raw_images, dataset_assets.cleaned_images], resources=resources, instance=instance)
            assert data.success
            trained = materialize(TRAINING, resources=resources, instance=instance, run_config=_train_config(),
                                  selection=[a.key for a in TRAINING[:3]], raise_on_error=False)
            assert trained.asset_materializations_for_node("registered_model"), "the chain registered no model"
            # 3 epochs on 140 images score far below an SVC on the same digits, so the blocking gate keeps
            # this model from the alias (test_chain_registers_a_model_the_gate_keeps_out). Monitoring needs
            # a champion: the stack sets the alias by hand, as an operator overriding the gate would.
            champion_version = _meta(trained, "registered_model")["model_version"]
            store = resources["mlflow_store"]
            store.settings().client().set_registered_model_alias(store.model_name, "champion", champion_version)
            yield {"instance": instance, "resources": resources, "profile": profile, "home": home,
                   "cleaned": _meta(data, "cleaned_images"), "trained": trained, "champion_version": champion_version}


def test_chain_registers_a_model_the_gate_keeps_out_and_is_idempotent(stack):
    instance, resources, cleaned, trained = stack["instance"], stack["resources"], stack["cleaned"], stack["trained"]
    tuned, registered = (_meta(trained, k) for k in ("tuned_model", "registered_model"))
    assert tuned["delta_version"] == cleaned["delta_version"] and tuned["trials_run"] == 2
    assert Path(tuned["learning_curves_png"]).stat().st_size > 0
    assert registered["version_created"] and registered["delta_version"] == cleaned["delta_version"]
    assert Path(registered["confusion_matrix"]).stat().st_size > 0
    # Links that open: the local profile's `make mlflow-ui` pages of the run behind the model.
    assert registered["mlflow_run_url"].startswith("http://127.0.0.1:5000/#/experiments/")
    assert registered["mlflow_run_url"].endswith(f"/runs/{tuned['mlflow_run_id']}")
    # The baseline is fitted on the same pinned splits; the tiny model is worse, so it is not champion.
    assert registered["baseline_accuracy"] == max(registered["baseline_logreg_accuracy"],
                                                  registered["baseline_svc_accuracy"])
    assert registered["baseline_lift"] < 0, f"the 3-epoch model beat the baseline: {registered}"
    assert {e.check_name: e.passed for e in trained.get_asset_check_evaluations()}["challenger_beats_baseline"] is False
    assert not trained.asset_materializations_for_node("champion_model") and not registered["should_promote"]

    client = resources["mlflow_store"].settings().client()
    model_name = resources["mlflow_store"].model_name
    version = client.get_model_version(model_name, registered["model_version"])
    # Lineage: the registered version leads back to the exact Delta version and Dagster run.
    assert version.tags["delta_version"] == str(cleaned["delta_version"])
    assert version.tags["dagster_run_id"] == trained.run_id
    parent = client.get_run(tuned["mlflow_run_id"])
    assert parent.data.tags["delta_version"] == str(cleaned["delta_version"])
    assert parent.data.tags["dagster_run_id"] == trained.run_id
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2
    assert all(len(client.get_metric_history(c.info.run_id, "val_accuracy")) >= 1 for c in children)

    # Re-materializing the registration with the same tuned model creates no new version, nor moves the alias.
    again = materialize(TRAINING, resources=resources, instance=instance, run_config=_train_config(tune=False),
                        selection=[training_assets.registered_model.key, training_assets.champion_model.key],
                        raise_on_error=False)
    assert _meta(again, "registered_model")["model_version"] == registered["model_version"]
    assert not _meta(again, "registered_model")["version_created"]
    assert _meta(again, "registered_model")["baseline_accuracy"] == registered["baseline_accuracy"]
    assert not again.asset_materializations_for_node("champion_model")
    assert str(client.get_model_version_by_alias(model_name, "champion").version) == stack["champion_version"]
    assert len(client.search_model_versions(f"name='{model_name}'")) == 1


def test_blocking_check_keeps_the_alias_when_the_challenger_is_worse_than_the_baseline(stack):
    resources = {**stack["resources"], "mlflow_store": MlflowResource(
        **{**stack["resources"]["mlflow_store"].model_dump(), "model_name": "too_weak_model"})}
    result = materialize(TRAINING, resources=resources, instance=stack["instance"],
                         run_config=_train_config(tune=False, baseline_margin=0.0, min_accuracy=0.0),
                         selection=[training_assets.registered_model.key, training_assets.champion_model.key],
                         raise_on_error=False)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["challenger_beats_baseline"] is False
    assert "does not beat baseline" in _meta(result, "registered_model")["decision"]
    assert not result.asset_materializations_for_node("champion_model")
    aliases = resources["mlflow_store"].settings().client().get_registered_model("too_weak_model").aliases
    assert "challenger" in aliases and "champion" not in aliases


def _day(stack, key: str):
    return materialize(MONITORING, resources=stack["resources"], instance=stack["instance"], partition_key=key,
                       selection=[a.key for a in MONITORING[:3]])


@pytest.fixture(scope="module")
def days(stack):
    """The clean and the drifted day, each materialized once for the tests that read them."""
    clean, drifted = _day(stack, CLEAN_DAY), _day(stack, DRIFTED_DAY)
    assert clean.success and drifted.success
    return clean, drifted


def test_daily_partitions_report_drift_on_the_drifted_day(stack, days):
    # The clean-day false-positive rate is measured with a properly trained model in test_drift.py and
    # bench/bench_drift_quality.py; this model saw 3 epochs of 140 images, so only the ordering is asserted.
    assert drift_kind(0) is None and drift_kind(2) == "rotation"
    clean, drifted = days
    assert _meta(drifted, "data_drift_report")["is_drift"] is True
    assert _meta(drifted, "data_drift_report")["mmd2"] > _meta(clean, "data_drift_report")["mmd2"]
    predictions = _meta(drifted, "predictions")
    assert predictions["model_version"] == stack["champion_version"]
    report = _meta(drifted, "data_drift_report")
    assert "<img" in Path(report["html_report"]).read_text()
    # The day's report folder is in MLflow too, and the metadata opens its artifact view there.
    assert report["mlflow_run_url"].endswith(f"/runs/{report['mlflow_run_id']}/artifacts/data_drift_report")
    checks = {e.check_name: e.passed for e in drifted.get_asset_check_evaluations()}
    assert checks["no_data_drift"] is False


def test_single_run_backfill_over_a_range_writes_one_report_per_day(stack):
    result = materialize(
        MONITORING, resources=stack["resources"], instance=stack["instance"], selection=[a.key for a in MONITORING[:3]],
        tags={"dagster/asset_partition_range_start": CLEAN_DAY, "dagster/asset_partition_range_end": "2026-01-03"},
    )
    assert result.success
    reports = Path(stack["profile"].reports_root)
    for kind in ("data_drift", "model_drift"):
        days = sorted(p.parent.name for p in (reports / kind).glob("*/result.json"))
        assert days == ["2026-01-01", "2026-01-02", "2026-01-03"], kind
        assert json.loads((reports / kind / "2026-01-02" / "result.json").read_text())
    assert _meta(result, "data_drift_report")["dates"] == ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_shap_report_files_and_mlflow_artifacts(stack):
    result = materialize([monitoring_assets.shap_report], resources=stack["resources"], instance=stack["instance"])
    assert result.success
    meta = _meta(result, "shap_report")
    pngs = [v for v in meta.values() if isinstance(v, str) and v.endswith(".png")]
    assert pngs and all(Path(p).stat().st_size > 0 for p in pngs)
    client = stack["resources"]["mlflow_store"].settings().client()
    run_id = client.get_model_version_by_alias(stack["resources"]["mlflow_store"].model_name, "champion").run_id
    assert any(a.path == "shap_report" for a in client.list_artifacts(run_id))


def test_monitoring_without_a_champion_fails_with_a_clear_message(stack):
    resources = {**stack["resources"], "mlflow_store": MlflowResource(
        **{**stack["resources"]["mlflow_store"].model_dump(), "model_name": "never_registered"})}
    result = materialize(MONITORING, resources=resources, instance=stack["instance"], partition_key=CLEAN_DAY,
                         selection=[monitoring_assets.predictions.key], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no model has the alias 'champion'" in failure.step_failure_data.error.message


def test_a_failed_training_job_surfaces_its_error_and_logs_and_writes_nothing(stack):
    """A Pipes task that fails half-way: the run shows the script's error and its logs, and no table,
    registered model or tuned_model materialization moves."""
    resources, instance, profile = stack["resources"], stack["instance"], stack["profile"]
    table_versions = {name: lake.current_version(lake.table_uri(profile.lake_root, name))
                      for name in (lake.RAW_IMAGES, lake.CLEANED_IMAGES, lake.QUARANTINE)}
    client = resources["mlflow_store"].settings().client()
    model_filter = f"name='{resources['mlflow_store'].model_name}'"
    model_versions = len(client.search_model_versions(model_filter))
    missing = stack["home"] / "missing_weights.pt"
    tuning = {**TINY_TUNING, "search_space": {**TINY_TUNING["search_space"], "lr": 0.1},
              "max_epochs": 1, "max_failures": 0, "pretrained_weights_path": str(missing)}
    result = materialize(TRAINING[:1], resources=resources, instance=instance, raise_on_error=False,
                         run_config={"ops": {"tuned_model": {"config": {"tuning_yaml": yaml.safe_dump(tuning)}}}})

    assert not result.success
    # What a person reads in the run's log: messages, and errors with their causes.
    logs = [r.user_message for r in instance.all_logs(result.run_id)]
    errors = [e.to_string() for e in (getattr(r.dagster_event and r.dagster_event.event_specific_data, "error", None)
                                            for r in instance.all_logs(result.run_id)) if e is not None]
    text = "\n".join(logs + errors)
    assert "no trial of" in text and "produced a checkpoint" in text, "the script's own exception reaches the run"
    assert any(m.startswith("tuning ") and "@v" in m for m in logs), "the job's Pipes log lines reach the run"
    assert any("failed at epoch" in m and f"pretrained weights {missing} not found" in m for m in logs)
    assert not result.asset_materializations_for_node("tuned_model")
    assert {name: lake.current_version(lake.table_uri(profile.lake_root, name)) for name in table_versions} == table_versions
    assert len(client.search_model_versions(model_filter)) == model_versions
    parent = client.search_runs(
        [client.get_experiment_by_name(resources["mlflow_store"].experiment_name).experiment_id],
        f"tags.dagster_run_id = '{result.run_id}'",
    )
    assert [r.info.status for r in parent] == ["FAILED"]


PLOTTING_ASSETS = ("cleaned_images", "tuned_model", "registered_model", "data_drift_report", "model_drift_report", "shap_report")


def test_every_plotting_asset_shows_its_pictures_inline_within_the_bound(stack, days):
    from dagster._serdes import serialize_value

    from rayml_assets.lib.common.previews import MAX_METADATA_BYTES, MAX_PREVIEW_BYTES

    if stack["instance"].get_latest_materialization_event(monitoring_assets.shap_report.key) is None:
        assert materialize([monitoring_assets.shap_report], resources=stack["resources"], instance=stack["instance"]).success
    for name in PLOTTING_ASSETS:
        event = stack["instance"].get_latest_materialization_event(AssetKey(name))
        metadata = event.asset_materialization.metadata
        preview = metadata["preview"].value
        images = preview.count("](data:image/png;base64,")
        assert images >= 1, f"{name} shows no picture inline"
        for encoded in preview.split("](data:image/png;base64,")[1:]:
            assert len(encoded.split(")", 1)[0]) * 3 / 4 <= MAX_PREVIEW_BYTES, f"{name}: a preview over the bound"
        assert len(serialize_value(metadata)) <= MAX_METADATA_BYTES, f"{name}: metadata over {MAX_METADATA_BYTES} bytes"


# Numbers a person watches across materializations: the UI's plots tab charts a key that keeps its name and type.
WATCHED = {
    "cleaned_images": ("excluded_share",),
    "tuned_model": ("best_val_accuracy",),
    "registered_model": ("test_accuracy", "baseline_accuracy", "baseline_lift", "baseline_logreg_accuracy",
                         "baseline_svc_accuracy"),
    "data_drift_report": ("min_p_value", "p_value_mmd_embeddings"),
    "model_drift_report": ("p_value", "reference_accuracy"),
}


def test_watched_numbers_keep_their_keys_and_float_type(stack, days):
    from dagster import FloatMetadataValue

    for name, watched in WATCHED.items():
        for key in watched:
            values = [
                e.asset_materialization.metadata[key]
                for e in stack["instance"].fetch_materializations(AssetKey(name), limit=10).records
                if key in e.asset_materialization.metadata
            ]
            assert values and all(isinstance(v, FloatMetadataValue) for v in values), f"{name}.{key}: {values}"
