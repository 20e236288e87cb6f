"""Profiles set how much data trains: sit on a stable sample, prod on everything."""

import hashlib

import pytest

from rayml_assets.lib.dataset.cleaning import assign_split
from rayml_assets.lib.training.delta_stream import in_sample
from rayml_assets.defs.training.assets import TunedModelConfig
from rayml_assets.settings import ProfileError, load_profile

IDS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000)]


@pytest.mark.parametrize("name, fraction, space", [("local", 1.0, "full"), ("sit", 0.1, "small"), ("prod", 1.0, "full")])
def test_profile_drives_the_tuning_sample_and_space(monkeypatch, name, fraction, space):
    monkeypatch.setenv("RAYML_PROFILE", name)
    profile = load_profile()
    assert (profile.sample_fraction, profile.search_space) == (fraction, space)
    tuning = TunedModelConfig().tuning()
    assert tuning.sample_fraction == fraction
    assert (tuning.num_trials() <= 2) == (space == "small")


def test_sample_is_stable_and_independent_of_the_split():
    sampled = [i for i in IDS if in_sample(i, 0.1)]
    assert abs(len(sampled) / len(IDS) - 0.1) < 0.01
    assert sampled == [i for i in IDS if in_sample(i, 0.1)]
    test_share = sum(assign_split(i) == "test" for i in sampled) / len(sampled)
    assert abs(test_share - 0.1) < 0.03  # the sample keeps every split, not just the low-hash ones


def test_unknown_and_malformed_profiles_raise_typed_errors(monkeypatch, tmp_path):
    with pytest.raises(ProfileError, match="unknown RAYML_PROFILE"):
        load_profile("staging")
    from rayml_assets import settings

    (tmp_path / "broken.yaml").write_text("lake_root: [unclosed\n")
    (tmp_path / "partial.yaml").write_text("lake_root: /x\n")
    monkeypatch.setattr(settings, "PROFILES_DIR", tmp_path)
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile("broken")
    with pytest.raises(ProfileError, match="malformed"):
        load_profile("partial")
