"""Declarative automation keys on data versions: evaluated with evaluate_automation_conditions."""

from dagster import AssetMaterialization, Definitions, evaluate_automation_conditions, materialize

from rayml_assets.definitions import resources_for
from rayml_assets.defs.dataset.assets import cleaned_images, raw_images
from rayml_assets.defs.training.assets import champion_model, registered_model, tuned_model
from rayml_assets.sample import write_batches

ASSETS = [raw_images, cleaned_images, tuned_model, registered_model, champion_model]


def _requested(result) -> set[str]:
    return {a.key.to_user_string() for a in ASSETS if result.get_requested_partitions(a.key)}


def _report(instance, key: str, version: str) -> None:
    """A materialization with a given data version, standing in for a real (slow) training run."""
    instance.report_runless_asset_event(AssetMaterialization(asset_key=key, tags={"dagster/data_version": version}))


def test_only_changed_data_versions_trigger_downstream(instance, profile, tiny_landing):
    resources = resources_for(profile)
    defs = Definitions(assets=ASSETS, resources=resources)
    for asset in ASSETS[1:]:  # everything downstream already exists at some version
        _report(instance, asset.key.to_user_string(), "initial")
    assert materialize([raw_images], resources=resources, instance=instance).success
    cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor

    # An unchanged re-ingest: a new materialization, but the same content hash.
    assert materialize([raw_images], resources=resources, instance=instance).success
    unchanged = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert _requested(unchanged) == set()

    # New images change the content hash: cleaning is requested, nothing further yet.
    write_batches(tiny_landing, batches=2, only_batch=1, limit=160, dirty=False)
    assert materialize([raw_images], resources=resources, instance=instance).success
    changed = evaluate_automation_conditions(defs=defs, instance=instance, cursor=unchanged.cursor)
    assert _requested(changed) == {"cleaned_images"}

    # Each new data version pulls the next asset along, one step at a time.
    cursor = changed.cursor
    for upstream, downstream in [("cleaned_images", "tuned_model"), ("tuned_model", "registered_model"),
                                 ("registered_model", "champion_model")]:
        _report(instance, upstream, f"{upstream}-v2")
        step = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert _requested(step) == {downstream}
        cursor = step.cursor

    # A re-materialization of cleaned_images with the same data version asks for no retraining.
    _report(instance, "cleaned_images", "cleaned_images-v2")
    assert _requested(evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)) == set()
