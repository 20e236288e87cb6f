"""Test-only task: reports what it was given, the way a real task script reports its results."""

import hashlib
import os
import sys

from rayml_assets.lib.common.pipes_runtime import task_runtime, on_databricks


def main() -> None:
    with task_runtime() as (pipes, ray_address):
        print("report.py says hello on stdout")
        print("report.py says hello on stderr", file=sys.stderr)
        pipes.log.info("report.py logged through pipes")
        pipes.report_asset_materialization(
            metadata={
                "echo": pipes.get_extra("echo"),
                "extras_keys": ",".join(sorted(pipes.extras)),
                "ray_address": str(ray_address),
                "on_databricks": on_databricks(),
                "rayml_profile": os.environ.get("RAYML_PROFILE", ""),
                "ray_usage_stats": os.environ.get("RAY_USAGE_STATS_ENABLED", ""),
                "token_in_env": bool(os.environ.get("DATABRICKS_TOKEN")),
                # what the task sees of the storage secret: a digest, never the value
                "storage_secret_sha256": hashlib.sha256(os.environ.get("AZURE_CLIENT_SECRET", "").encode()).hexdigest(),
            }
        )


if __name__ == "__main__":
    main()
