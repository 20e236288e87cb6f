"""cleaned_images → tuned_model → registered_model → champion_model with real Ray (through the Pipes
subprocess job script), real MLflow on sqlite and real Delta, on a tiny dataset."""

import mlflow
import pytest
import yaml
from dagster import materialize

from rayml_assets.definitions import resources_for
from rayml_assets.defs.dataset import assets as dataset_assets
from rayml_assets.defs.training import assets as training_assets
from rayml_assets.defs.training import checks as training_checks
from rayml_assets.resources.storage import DatasetPolicy
from rayml_assets_tests.conftest import TAXONOMY

TINY_TUNING = {
    "search_space": {"model": "small_cnn", "lr": {"grid": [0.05, 0.1]}, "batch_size": 32, "momentum": 0.9},
    "num_samples": 1,
    "max_epochs": 2,
    "scheduler": {"type": "fifo"},
    "num_workers": 2,
    "cpus_per_worker": 1,
    "trainer_cpus": 0,
}

CHAIN = [
    training_assets.tuned_model,
    training_assets.registered_model,
    training_assets.champion_model,
    training_checks.challenger_meets_min_accuracy,
    training_checks.no_failed_trials,
]


def _run_config(min_accuracy: float, tune: bool = True) -> dict:
    ops = {"registered_model": {"config": {"min_accuracy": min_accuracy, "promotion_margin": 0.0}}}
    if tune:
        ops["tuned_model"] = {"config": {"tuning_yaml": yaml.safe_dump(TINY_TUNING)}}
    return {"ops": ops}


@pytest.fixture
def resources(profile):
    res = resources_for(profile)
    res["dataset_policy"] = DatasetPolicy(taxonomy=list(TAXONOMY), min_train_images_per_class=3)
    return res


@pytest.fixture
def cleaned(instance, resources, tiny_landing):
    result = materialize([dataset_assets.raw_images, dataset_assets.cleaned_images], resources=resources, instance=instance)
    assert result.success
    return {k: v.value for k, v in result.asset_materializations_for_node("cleaned_images")[0].metadata.items()}


def _meta(result, key):
    return {k: v.value for k, v in result.asset_materializations_for_node(key)[0].metadata.items()}


def test_chain_registers_promotes_and_is_idempotent(instance, resources, cleaned):
    result = materialize(CHAIN, resources=resources, instance=instance, run_config=_run_config(0.0),
                         selection=[a.key for a in CHAIN[:3]])
    assert result.success
    tuned, registered, champion = (_meta(result, k) for k in ("tuned_model", "registered_model", "champion_model"))
    assert tuned["delta_version"] == cleaned["delta_version"] and tuned["trials_run"] == 2
    assert registered["version_created"] and registered["delta_version"] == cleaned["delta_version"]
    assert champion["moved"] and champion["champion_version"] == registered["model_version"]

    settings = resources["mlflow_store"].settings()
    client = settings.client()
    version = client.get_model_version_by_alias(resources["mlflow_store"].model_name, "champion")
    # Lineage: the registered version leads back to the exact Delta version and Dagster run.
    assert version.tags["delta_version"] == str(cleaned["delta_version"])
    assert version.tags["dagster_run_id"] == result.run_id
    parent = client.get_run(tuned["mlflow_run_id"])
    assert parent.data.tags["delta_version"] == str(cleaned["delta_version"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2 and all(len(client.get_metric_history(c.info.run_id, "val_accuracy")) >= 1 for c in children)

    # Re-materializing the registration with the same tuned model creates no new version.
    again = materialize(CHAIN, resources=resources, instance=instance, run_config=_run_config(0.0, tune=False),
                        selection=[training_assets.registered_model.key, training_assets.champion_model.key])
    assert again.success
    assert _meta(again, "registered_model")["model_version"] == registered["model_version"]
    assert not _meta(again, "registered_model")["version_created"]
    assert not _meta(again, "champion_model")["moved"]
    assert len(client.search_model_versions(f"name='{resources['mlflow_store'].model_name}'")) == 1
    mlflow.set_tracking_uri(None)


def test_blocking_check_keeps_the_alias_when_the_challenger_is_too_weak(instance, resources, cleaned):
    result = materialize(CHAIN, resources=resources, instance=instance, run_config=_run_config(1.01),
                         selection=[a.key for a in CHAIN[:3]], raise_on_error=False)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["challenger_meets_min_accuracy"] is False
    assert not result.asset_materializations_for_node("champion_model")
    client = resources["mlflow_store"].settings().client()
    aliases = client.get_registered_model(resources["mlflow_store"].model_name).aliases
    assert "challenger" in aliases and "champion" not in aliases
