"""Shared fixtures: every test gets its own RAYML_HOME, so nothing leaks between tests."""

import os
from pathlib import Path

import pytest
from dagster import DagsterInstance

os.environ.setdefault("RAYML_PROFILE", "local")
os.environ.pop("RAYML_PROFILE_FILE", None)  # a user's own profile must not steer the suite
# The cloud profiles name their storage account by this variable, and a profile naming an unset
# variable does not load; tests of those profiles run as a deployment would, with it set.
os.environ.setdefault("RAYML_STORAGE_ACCOUNT", "raymltest")

from rayml_assets.sample import write_batches  # noqa: E402
from rayml_assets.settings import load_profile  # noqa: E402

TAXONOMY = tuple(str(d) for d in range(10))


@pytest.fixture
def rayml_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "rayml_home"
    home.mkdir()
    monkeypatch.setenv("RAYML_HOME", str(home))
    return home


@pytest.fixture
def profile(rayml_home):
    return load_profile("local")


@pytest.fixture
def tiny_landing(profile) -> Path:
    """About 120 digits plus every kind of dirty file, in the profile's landing folder."""
    landing = Path(profile.landing_uri)
    write_batches(landing, limit=120)
    return landing


@pytest.fixture
def instance(rayml_home):
    with DagsterInstance.ephemeral() as inst:
        yield inst
