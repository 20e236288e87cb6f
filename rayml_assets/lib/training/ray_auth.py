"""Joining a Ray cluster with token authentication: the driver's auth env, and a clear error. No Ray here.

Ray 2.60's ``ray start --head`` (and KubeRay, Ray on Spark with its defaults) turns
token authentication on. A driver that joins *by address* does not turn it on by
itself: without ``RAY_AUTH_MODE=token`` and the cluster's token, the GCS refuses it
(``InvalidAuthToken``) and ``ray.init`` ends in a bare ``ConnectionError``.

The token never travels in a profile value or in the Pipes extras. The task finds it

1. in a file named by the profile (``ray_auth_token_path`` → ``RaySettings.auth_file``,
   a path only), handed to Ray as ``RAY_AUTH_TOKEN_PATH``; or
2. in its environment: ``RAY_AUTH_TOKEN`` (from the orchestrator's secret store),
   ``RAY_AUTH_TOKEN_PATH``, or Ray's default file ``~/.ray/auth_token``.

:func:`join_auth` decides the mode (the profile's ``ray_auth_mode``, else
``RAY_AUTH_MODE``, else ``token`` when a token was found) and :func:`apply` sets it
in ``os.environ`` before ``ray.init``. Messages name variables and paths, never a token.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from rayml_assets.lib.common.contract import RaySettings

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
TOKEN_MODE, DISABLED_MODE = "token", "disabled"
HOW_TO = (
    "set RAY_AUTH_TOKEN in the environment of the Dagster process (from a secret store), or name a file "
    "holding the token in the profile's ray_auth_token_path (for a cluster without authentication: "
    "ray_auth_mode: disabled); see docs/training.md, 'Joining a Ray cluster'"
)


class RayAuthError(ConnectionError):
    """Joining a Ray cluster cannot work, or was refused, because of token authentication."""


def default_token_file() -> Path:
    return Path.home() / ".ray" / "auth_token"


@dataclass(frozen=True)
class JoinAuth:
    """How the driver authenticates to ``address``: what :func:`apply` puts in the environment."""

    address: str | None
    mode: str | None  # None: Ray's own default (a local cluster, or a driver left as configured)
    token_source: str | None  # "RAY_AUTH_TOKEN" or "file <path>": never the token itself
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.address is None:
            return "local Ray"
        source = f", token from {self.token_source}" if self.token_source and self.mode != DISABLED_MODE else ""
        return f"{AUTH_MODE_ENV}={self.mode or 'unset (disabled)'}{source}"

    def refused(self, cause: BaseException) -> RayAuthError:
        """The typed error for a join the cluster refused for authentication: what was tried, what to set."""
        if self.mode == TOKEN_MODE:
            why = f"it refused the token from {self.token_source} ({AUTH_MODE_ENV}=token): not this cluster's token"
        else:
            why = (
                f"it requires token authentication and {AUTH_MODE_ENV} is '{self.mode or 'disabled'}' "
                f"with no token found ({TOKEN_ENV}, {TOKEN_PATH_ENV}, profile ray_auth_token_path, "
                f"{default_token_file()})"
            )
        return RayAuthError(f"the Ray cluster at {self.address} refused this driver: {why}; {HOW_TO}. Ray: {cause}")


def _token_source(settings: RaySettings, environ: MutableMapping[str, str]) -> tuple[str | None, dict, tuple]:
    if settings.auth_file:
        path = Path(settings.auth_file).expanduser()
        if not path.is_file():
            raise RayAuthError(
                f"the Ray token file {path} (profile ray_auth_token_path) does not exist on this machine; {HOW_TO}"
            )
        # the profile's file wins: RAY_AUTH_TOKEN would take precedence inside Ray
        return f"file {path}", {TOKEN_PATH_ENV: str(path)}, (TOKEN_ENV,)
    if environ.get(TOKEN_ENV):
        return TOKEN_ENV, {}, ()
    if environ.get(TOKEN_PATH_ENV):
        return f"file {environ[TOKEN_PATH_ENV]} ({TOKEN_PATH_ENV})", {}, ()
    if default_token_file().is_file():
        return f"file {default_token_file()}", {}, ()
    return None, {}, ()


def join_auth(settings: RaySettings, environ: MutableMapping[str, str] | None = None) -> JoinAuth:
    """The auth a driver needs to join ``settings.address``; raises :class:`RayAuthError` when it cannot work."""
    environ = os.environ if environ is None else environ
    if not settings.address:
        return JoinAuth(None, None, None)  # a local Ray: Ray generates and uses its own token
    mode = (settings.auth_mode or environ.get(AUTH_MODE_ENV) or "").lower() or None
    if mode == DISABLED_MODE:
        return JoinAuth(settings.address, mode, None, {AUTH_MODE_ENV: mode})
    source, env, unset = _token_source(settings, environ)
    if mode is None and source:
        mode = TOKEN_MODE
    if mode == TOKEN_MODE and source is None:
        raise RayAuthError(
            f"{AUTH_MODE_ENV}=token to join the Ray cluster at {settings.address}, but no token was found "
            f"({TOKEN_ENV}, {TOKEN_PATH_ENV}, profile ray_auth_token_path, {default_token_file()}); {HOW_TO}"
        )
    if mode:
        env[AUTH_MODE_ENV] = mode
    return JoinAuth(settings.address, mode, source, env, unset)


def apply(auth: JoinAuth, environ: MutableMapping[str, str] | None = None) -> None:
    """Put ``auth`` in the environment Ray reads at ``ray.init`` (this process only)."""
    environ = os.environ if environ is None else environ
    for key in auth.unset:
        environ.pop(key, None)
    environ.update(auth.env)
