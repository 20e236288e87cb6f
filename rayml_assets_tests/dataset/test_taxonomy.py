"""Labels from the data: with no taxonomy, the landing's label folders are the classes, and a new one warns."""

from pathlib import Path

from dagster import AssetCheckSeverity, materialize

from rayml_assets import sample_sets
from rayml_assets.definitions import resources_for
from rayml_assets.defs.dataset import assets as dataset_assets
from rayml_assets.resources.storage import DatasetPolicy

CLEANING = {"ops": {"cleaned_images": {"config": {"backend": "open"}}}}


def _run(instance, profile):
    resources = {**resources_for(profile), "dataset_policy": DatasetPolicy(taxonomy=None, min_train_images_per_class=1)}
    result = materialize(
        [dataset_assets.raw_images, dataset_assets.cleaned_images], resources=resources, instance=instance, run_config=CLEANING
    )
    assert result.success
    cleaned = result.asset_materializations_for_node("cleaned_images")[0]
    (check,) = result.get_asset_check_evaluations()
    return {k: v.value for k, v in cleaned.metadata.items()}, check


def test_the_label_folders_are_the_taxonomy_and_a_new_label_warns(instance, profile, tmp_path):
    landing = Path(profile.landing_uri)
    sample_sets.build("photos", landing, per_class=8, size=48)
    first, check = _run(instance, profile)
    assert first["taxonomy"] == ["astronaut", "camera", "cat", "coffee", "rocket"]
    assert first["taxonomy_source"] == "landing label folders" and first["num_classes"] == 5
    assert check.check_name == "taxonomy_unchanged" and check.passed and first["new_labels"] == []

    # a later landing brings a class of its own: recorded, and the warning check fails (it does not block)
    sample_sets.build("textures", tmp_path / "textures", per_class=8, size=48)
    (tmp_path / "textures" / "brick").rename(landing / "brick")
    second, check = _run(instance, profile)
    assert second["num_classes"] == 6 and second["new_labels"] == ["brick"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["new_labels"].value == ["brick"]
    assert check.metadata["previous_taxonomy"].value == first["taxonomy"]
