"""A user's own profile file outside the package: RAYML_PROFILE_FILE, starting from a packaged profile."""

import json
import os
import subprocess
import sys

import pytest

from rayml_assets.resources.compute import LOCAL_ENV_WHITELIST
from rayml_assets.settings import ProfileError, load_profile


def test_a_profile_file_outside_the_package_extends_a_packaged_one(tmp_path, monkeypatch, rayml_home):
    mine = tmp_path / "elsewhere" / "my_photos.yaml"
    mine.parent.mkdir()
    mine.write_text(f"extends: local\nlanding_uri: {tmp_path}/photos\ntaxonomy: null\n")
    monkeypatch.setenv("RAYML_PROFILE_FILE", str(mine))
    profile = load_profile()
    assert profile.name == "my_photos"
    assert profile.landing_uri == f"{tmp_path}/photos" and profile.taxonomy is None
    assert profile.lake_root == f"{rayml_home}/lake"  # from local, ${RAYML_HOME} expanded
    assert load_profile("local").name == "local"  # a named packaged profile stays reachable


def test_a_user_profile_takes_its_labels_from_the_landing_unless_it_fixes_them(tmp_path, monkeypatch):
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: local\n")
    monkeypatch.setenv("RAYML_PROFILE_FILE", str(mine))
    assert load_profile().taxonomy is None  # not the digits of `local`
    assert load_profile("local").taxonomy == [str(d) for d in range(10)]
    mine.write_text("extends: local\ntaxonomy: [cat, dog]\nmodel_name: pets\n")
    profile = load_profile()
    assert profile.taxonomy == ["cat", "dog"] and profile.model_name == "pets"


def test_the_registered_model_name_comes_from_the_profile(tmp_path, monkeypatch):
    assert load_profile("local").model_name == "rayml_image_classifier"
    from rayml_assets.definitions import resources_for

    profile = load_profile("local").model_copy(update={"model_name": "team.models.photos"})
    assert resources_for(profile)["mlflow_store"].model_name == "team.models.photos"


def test_nested_settings_merge_key_by_key_and_the_file_may_name_itself(tmp_path, monkeypatch):
    mine = tmp_path / "x.yaml"
    mine.write_text("extends: sit\nname: team_sit\ndatabricks:\n  max_workers: 8\n")
    monkeypatch.setenv("RAYML_PROFILE_FILE", str(mine))
    profile, sit = load_profile(), load_profile("sit")
    assert profile.name == "team_sit" and profile.databricks.max_workers == 8
    assert profile.databricks.spark_version == sit.databricks.spark_version


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "cannot be read"),
        ("extends: nope\n", "unknown RAYML_PROFILE 'nope'"),
        ("extends: ../local\n", "not a profile name"),
        ("extends: local\nlake_rot: /x\n", "(?s)malformed.*lake_rot"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_a_bad_profile_file_is_a_profile_error(tmp_path, monkeypatch, text, error):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    monkeypatch.setenv("RAYML_PROFILE_FILE", str(path))
    with pytest.raises(ProfileError, match=error):
        load_profile()


def test_the_code_location_and_its_tasks_use_the_file(tmp_path, rayml_home):
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"extends: local\nreports_root: {tmp_path}/my_reports\n")
    env = {**os.environ, "RAYML_PROFILE_FILE": str(mine)}
    probe = "import json; from rayml_assets.definitions import defs; print(json.dumps(defs.resources['workspace'].reports_root))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == f"{tmp_path}/my_reports"
    assert "RAYML_PROFILE_FILE" in LOCAL_ENV_WHITELIST  # a local task script loads the same file
