"""Joining a Ray cluster: which auth the driver uses, where the token comes from, and what never carries it (no Ray)."""

from __future__ import annotations

import json

import pytest

from rayml_assets.definitions import resources_for
from rayml_assets.lib.common.contract import RaySettings
from rayml_assets.lib.training import ray_auth
from rayml_assets.lib.training.ray_auth import RayAuthError, join_auth
from rayml_assets.lib.training.tuning_config import TuningConfig
from rayml_assets.lib.training.tuning_result import TrialSummary, TuningResult
from rayml_assets.resources.compute import check_no_secrets
from rayml_assets.resources.ray import RayResource
from rayml_assets_tests.training.multinode_cluster import FAKE_TOKEN

ADDRESS = "10.0.0.5:6390"


@pytest.fixture
def environ(tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token unless a test writes one
    return {}


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "secrets" / "ray_token"
    path.parent.mkdir()
    path.write_text(FAKE_TOKEN)
    return path


def _no_token_in(auth: ray_auth.JoinAuth) -> None:
    assert FAKE_TOKEN not in f"{auth} {auth.describe()} {auth.refused(ConnectionError('refused'))}"


def test_a_local_ray_is_left_to_rays_defaults(environ):
    auth = join_auth(RaySettings(num_cpus=4), environ)
    assert (auth.mode, auth.env, auth.describe()) == (None, {}, "local Ray")


def test_a_token_in_the_environment_turns_token_auth_on(environ):
    environ["RAY_AUTH_TOKEN"] = FAKE_TOKEN
    auth = join_auth(RaySettings(address=ADDRESS), environ)
    assert auth.env == {"RAY_AUTH_MODE": "token"} and auth.token_source == "RAY_AUTH_TOKEN"
    ray_auth.apply(auth, environ)
    assert environ == {"RAY_AUTH_TOKEN": FAKE_TOKEN, "RAY_AUTH_MODE": "token"}
    _no_token_in(auth)


def test_the_profiles_token_file_is_handed_to_ray_as_a_path_and_wins(environ, token_file):
    environ["RAY_AUTH_TOKEN"] = "another-token"
    auth = join_auth(RaySettings(address=ADDRESS, auth_file=str(token_file)), environ)
    ray_auth.apply(auth, environ)
    assert environ == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    assert str(token_file) in auth.describe()
    _no_token_in(auth)


def test_rays_default_token_file_is_found(environ, tmp_path):
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text(FAKE_TOKEN)
    auth = join_auth(RaySettings(address="auto"), environ)
    assert auth.mode == "token" and "auth_token" in auth.token_source


def test_no_token_leaves_auth_off_and_the_refusal_says_what_to_set(environ):
    auth = join_auth(RaySettings(address=ADDRESS), environ)
    assert auth.mode is None and auth.env == {}
    message = str(auth.refused(ConnectionError(f"Failed to connect to Ray cluster at {ADDRESS}")))
    for needed in (ADDRESS, "RAY_AUTH_MODE is 'disabled'", "RAY_AUTH_TOKEN", "ray_auth_token_path", "docs/training.md"):
        assert needed in message


def test_token_mode_without_a_token_or_with_a_missing_file_fails_before_joining(environ, tmp_path):
    with pytest.raises(RayAuthError, match="RAY_AUTH_MODE=token.*no token was found.*RAY_AUTH_TOKEN"):
        join_auth(RaySettings(address=ADDRESS, auth_mode="token"), environ)
    with pytest.raises(RayAuthError, match="nope.*ray_auth_token_path.*does not exist"):
        join_auth(RaySettings(address=ADDRESS, auth_file=str(tmp_path / "nope")), environ)
    assert issubclass(RayAuthError, ConnectionError)


def test_auth_can_be_switched_off_for_a_cluster_without_it(environ, token_file):
    environ["RAY_AUTH_MODE"] = "disabled"
    auth = join_auth(RaySettings(address=ADDRESS, auth_file=str(token_file)), environ)
    assert auth.env == {"RAY_AUTH_MODE": "disabled"} and auth.token_source is None


def test_the_profile_names_a_token_path_and_only_the_path_travels(profile, monkeypatch, token_file):
    monkeypatch.setenv("RAY_AUTH_TOKEN", FAKE_TOKEN)  # check_no_secrets refuses this value anywhere in extras
    configured = profile.model_copy(update={"ray_auth_token_path": str(token_file), "ray_auth_mode": "token"})
    settings = resources_for(configured.model_copy(update={"ray_address": ADDRESS}))["ray_cluster"].settings()
    assert (settings.auth_file, settings.auth_mode) == (str(token_file), "token")
    extras = {"ray": settings.to_extras()}
    check_no_secrets(extras=extras)
    assert FAKE_TOKEN not in json.dumps(extras)
    # a local Ray needs none of it
    assert RayResource(num_cpus=2).settings().auth_file is None
    assert RayResource(address=ADDRESS, auth_token_path="/etc/ray/token").settings().auth_file == "/etc/ray/token"


def test_placement_strategy_is_validated_and_does_not_rename_the_experiment():
    config = TuningConfig()
    assert config.placement_strategy == "PACK"
    spread = TuningConfig(placement_strategy="STRICT_SPREAD")
    assert spread.fingerprint() == config.fingerprint(), "moving trials to other nodes must resume the experiment"
    with pytest.raises(ValueError):
        TuningConfig(placement_strategy="ANYWHERE")


def _trial(trial_id: str, status: str, nodes: list[str], failures: int) -> TrialSummary:
    return TrialSummary(trial_id, {}, status, 1, 1, False, 0.5, None, None, [], [], None, nodes, failures)


def test_restarts_and_lost_nodes_are_counted_from_the_trials():
    result = TuningResult("x", "/x", "t", 1, ["0", "1"], "val_accuracy", "max", 2, [], False)
    result.trials = [_trial("a", "TERMINATED", ["n1", "n2"], 2), _trial("b", "ERROR", ["n1", "n3"], 1)]
    assert [t.restarts for t in result.trials] == [2, 0] and result.trial_restarts == 2
    assert result.lost_node_error(max_failures=0) is None, "no dead node: an ordinary failed trial"
    result.lost_nodes = {"n3": "10.0.0.7"}
    error = result.lost_node_error(max_failures=0)
    assert error.trial_ids == ["b"] and "n3 (10.0.0.7)" in str(error) and "max_failures=0" in str(error)
