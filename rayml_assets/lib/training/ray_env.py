"""Which Ray Train API runs the trials, and the runtime env every Ray worker gets. No Ray imported here.

Ray 2.60 turns Ray Train V2 on by default. With V2, the documented way to tune
is a Tune *function* trainable that launches a ``TorchTrainer`` per trial; on
this stack that hung on the second trial (``PlacementGroupCleaner: Failed to
query Ray Train Controller actor state``). We therefore pin the legacy
(V1) Train API with ``RAY_TRAIN_V2_ENABLED=0`` and hand a ``TorchTrainer``
straight to ``Tuner`` (:mod:`rayml_assets.lib.training.tuner`). The flag is read
when ``ray.train`` is imported, in the driver *and* in every Ray worker process, so

- :func:`pin_train_v1` sets it in ``os.environ``; every module of this package that
  imports ``ray.tune``/``ray.train`` calls it first, and it refuses to go on if
  ``ray.train`` was already imported with V2 on;
- :func:`ray_runtime_env` carries it to the workers (``ray.init(runtime_env=...)``).

See docs/training.md for the resource arithmetic (logical CPUs per trial).
"""

from __future__ import annotations

import os
import sys

V2_FLAG = "RAY_TRAIN_V2_ENABLED"
# The V1 path is a deliberate choice (module docstring): its per-call
# deprecation warnings would drown the training logs.
TRAIN_ENV = {V2_FLAG: "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}


def pin_train_v1() -> None:
    """Select Ray Train V1 for this process; call before anything imports ``ray.train``."""
    if "ray.train" in sys.modules and os.environ.get(V2_FLAG) != "0":
        raise RuntimeError(
            "ray.train was imported with Ray Train V2 enabled before rayml_assets.lib.training.tuner; "
            f"set {V2_FLAG}=0 before importing ray.train (see docs/training.md)"
        )
    os.environ.update(TRAIN_ENV)


def ray_runtime_env() -> dict:
    """The runtime env every Ray worker of a tuning task needs (V1 Train, no telemetry)."""
    return {"env_vars": {**TRAIN_ENV, "RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0")}}
