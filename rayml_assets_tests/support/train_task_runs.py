"""Run the training task script's ``main()`` inside a real Pipes context (files for context and messages)."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

from dagster_pipes import (
    DAGSTER_PIPES_CONTEXT_ENV_VAR,
    DAGSTER_PIPES_MESSAGES_ENV_VAR,
    PipesContext,
    PipesDefaultContextLoader,
    PipesDefaultMessageWriter,
    PipesMappingParamsLoader,
)

from rayml_assets.lib.training import train_task
from rayml_assets.lib.training.contract import TrainTaskParams


def _encode(value: dict) -> str:
    return base64.b64encode(zlib.compress(json.dumps(value).encode())).decode()


def run_pipes_task(workdir: Path, params: TrainTaskParams, tag: str) -> tuple[train_task.TrainTaskOutput, list[dict]]:
    """Run the task script's main() inside a real Pipes context; returns its output and the Pipes messages."""
    extras = params.to_extras()
    context_path, messages_path = workdir / f"{tag}-context.json", workdir / f"{tag}-messages.jsonl"
    context_path.write_text(
        json.dumps(
            {
                "asset_keys": ["tuned_model"],
                "code_version_by_asset_key": None,
                "provenance_by_asset_key": None,
                "partition_key": None,
                "partition_key_range": None,
                "partition_time_window": None,
                "run_id": extras["dagster_run_id"],
                "job_name": "test",
                "retry_number": 0,
                "extras": extras,
            }
        )
    )
    loader = PipesMappingParamsLoader(
        {
            DAGSTER_PIPES_CONTEXT_ENV_VAR: _encode({"path": str(context_path)}),
            DAGSTER_PIPES_MESSAGES_ENV_VAR: _encode({"path": str(messages_path)}),
        }
    )
    # A fresh context each time: open_dagster_pipes() returns the process-wide one once set.
    with PipesContext(loader, PipesDefaultContextLoader(), PipesDefaultMessageWriter()) as pipes:
        output = train_task.main(pipes)
    return output, [json.loads(line) for line in messages_path.read_text().splitlines()]
