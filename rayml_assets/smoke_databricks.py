"""Smoke test on a real Databricks workspace: one tiny training and one drift day, through the normal code path.

    python -m rayml_assets.smoke_databricks --env sit [--day 2026-01-05] [--wheel dist/<wheel>]
    make smoke-databricks ENV=sit

Without ``DATABRICKS_HOST`` and the credentials of the profile's ``databricks.auth`` it
prints why it skipped and exits 0, so CI can call it everywhere. With them it

1. deploys the wheel and the task scripts (``rayml_assets.deploy``);
2. materializes ``tuned_model`` with one trial of one epoch: the ``train`` task on a task
   cluster, with Ray on Spark;
3. materializes ``predictions`` and ``data_drift_report`` for one day: the ``drift`` task, twice.

The assets, resources (``resources_for``) and compute resource are the code location's
own; only the tuning config is made tiny. Steps 2 and 3 pin upstream versions from the
Dagster instance (``DAGSTER_HOME``, the deployment's), so it must already hold a
``cleaned_images`` materialization, the registry a ``champion``, and the landing that
day's production images; the smoke checks the first before submitting anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import yaml
from dagster import DagsterInstance, materialize

from rayml_assets.settings import Profile, load_profile

SKIPPED_EXIT = 0
FAILED_EXIT = 1
ONE_TINY_TRIAL = {
    "search_space": {"model": "small_cnn", "lr": 0.05, "batch_size": 32, "momentum": 0.9},
    "num_samples": 1,
    "max_epochs": 1,
    "scheduler": {"type": "fifo"},
    "num_workers": 2,
    "cpus_per_worker": 1,
    "trainer_cpus": 0,
}


def tiny_training_config() -> dict:
    """Run config that makes ``tuned_model`` train :data:`ONE_TINY_TRIAL`."""
    return {"ops": {"tuned_model": {"config": {"tuning_yaml": yaml.safe_dump(ONE_TINY_TRIAL)}}}}


@dataclass
class SmokeResult:
    steps: dict[str, bool] = field(default_factory=dict)  # step name -> the Dagster run succeeded

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(self.steps.values())


def missing_credentials(profile: Profile) -> list[str]:
    """The environment variables the profile's Databricks login needs and does not have."""
    from rayml_assets.resources.databricks_compute import CREDENTIAL_ENV_VARS

    return [name for name in CREDENTIAL_ENV_VARS[profile.databricks.auth] if not os.environ.get(name)]


def run_smoke(profile: Profile, instance: DagsterInstance, day: str, wheel: Path | None = None) -> SmokeResult:
    """Deploy, then the two steps; each step is one Dagster run, as the UI would launch it."""
    from rayml_assets import deploy
    from rayml_assets.definitions import resources_for
    from rayml_assets.defs.common import keys
    from rayml_assets.defs.monitoring.assets import data_drift_report, predictions
    from rayml_assets.defs.training.assets import tuned_model

    if instance.get_latest_materialization_event(keys.CLEANED_IMAGES) is None:
        raise SystemExit(
            "smoke: the Dagster instance has no cleaned_images materialization to train on; "
            "point DAGSTER_HOME at the deployment's instance or materialize raw_images, cleaned_images first"
        )
    deployed = deploy.deploy(profile.name, wheel=wheel)
    print(f"[smoke] deployed {deployed.wheel}")
    resources = resources_for(profile)
    result = SmokeResult()
    steps = {
        "train": dict(assets=[tuned_model], run_config=tiny_training_config()),
        f"drift {day}": dict(assets=[predictions, data_drift_report], partition_key=day),
    }
    for name, step in steps.items():
        run = materialize(**step, resources=resources, instance=instance, raise_on_error=False)
        result.steps[name] = run.success
        print(f"[smoke] {name}: {'ok' if run.success else 'FAILED'} (dagster run {run.run_id})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rayml_assets.smoke_databricks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--env", required=True, help="a Databricks profile: sit, uat or prod")
    yesterday = str(date.today() - timedelta(days=1))
    parser.add_argument("--day", default=yesterday, help="the drift day (default: yesterday)")
    parser.add_argument("--wheel", type=Path, help="a wheel built already (default: build one)")
    args = parser.parse_args(argv)
    profile = load_profile(args.env)
    if profile.databricks is None:
        print(f"smoke: profile {args.env!r} runs compute {profile.compute!r}, not Databricks", file=sys.stderr)
        return FAILED_EXIT
    if missing := missing_credentials(profile):
        auth = profile.databricks.auth
        print(f"skipped: set {' and '.join(missing)} (profile {args.env}, auth {auth}) to run the Databricks smoke test")
        return SKIPPED_EXIT
    with DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral() as instance:
        result = run_smoke(profile, instance, args.day, args.wheel)
    return 0 if result.ok else FAILED_EXIT


if __name__ == "__main__":
    sys.exit(main())
