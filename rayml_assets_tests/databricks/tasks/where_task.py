"""Test-only task: reports where the driver imports the project from and what it runs in."""

import os
import sys

import rayml_assets
from rayml_assets.lib.common.pipes_runtime import task_runtime


def main() -> None:
    with task_runtime() as (pipes, _):
        pipes.report_asset_materialization(
            metadata={
                "package_file": rayml_assets.__file__,
                "executable": sys.executable,
                "cwd": os.getcwd(),
                "sys_path": os.pathsep.join(sys.path),
                "pythonpath": os.environ.get("PYTHONPATH", ""),
            }
        )


if __name__ == "__main__":
    main()
