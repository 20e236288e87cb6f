"""Test-only task: a script on ``lib.common.task_entry.main``, as the drift and explain scripts are."""

import os

from rayml_assets.lib.common.contract import Contract, RaySettings
from rayml_assets.lib.common.pipes_runtime import on_databricks
from rayml_assets.lib.common.task_entry import main


class EntryParams(Contract):
    echo: int
    ray: RaySettings = RaySettings()


def run(params: EntryParams, log=print) -> dict:
    log(f"entry_report.py got echo={params.echo}")
    return {
        "echo": params.echo,
        "ray_address": str(params.ray.address),
        "on_databricks": on_databricks(),
        "rayml_profile": os.environ.get("RAYML_PROFILE", ""),
    }


if __name__ == "__main__":
    main(run, EntryParams)
