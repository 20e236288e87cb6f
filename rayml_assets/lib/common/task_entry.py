"""What every monitoring task script shares: typed Pipes parameters, partition dates, metadata values.

A task script's logic is a function ``run(params, log) -> metadata`` whose
``params`` is the script's contract model (``lib/<domain>/contract.py``). Under
Dagster (``PipesSubprocessClient``, ``PipesDatabricksClient`` or the serverless client,
which passes ``--dagster-pipes-*`` arguments) the model is
validated from ``pipes.extras`` and the metadata goes back through
``report_asset_materialization``. By hand, ``--extras FILE.json`` validates the
same model from the file, runs the same function and prints the metadata as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any, TypeVar

from dagster_pipes import DAGSTER_PIPES_CONTEXT_CLI_ARGUMENT, DAGSTER_PIPES_MESSAGES_CLI_ARGUMENT

from rayml_assets.lib.common.contract import RAY_KEY, Contract
from rayml_assets.lib.common.pipes_runtime import RAY_ADDRESS_KEY
from rayml_assets.lib.monitoring.production import partition_key

P = TypeVar("P", bound=Contract)
Log = Callable[[str], None]
TaskFn = Callable[[P, Log], dict]
# Added to every task's extras by the compute resource (where Ray is): a task whose
# contract does not use Ray does not declare them, and they are dropped before validation.
RUNTIME_KEYS = (RAY_ADDRESS_KEY, RAY_KEY)


def typed(value: Any, kind: str) -> dict:
    """A Pipes metadata value with an explicit type (``path``, ``md``, ``json``, ``url`` ...)."""
    return {"raw_value": value, "type": kind}


def clean_metadata(metadata: Mapping[str, Any]) -> dict:
    """Drop ``None`` values: Pipes cannot infer a type for them and 'missing' says the same."""
    return {k: v for k, v in metadata.items() if v is not None}


def date_range(start: str, end: str) -> list[str]:
    first, last = date.fromisoformat(partition_key(start)), date.fromisoformat(partition_key(end))
    if last < first:
        raise ValueError(f"partition range ends ({end}) before it starts ({start})")
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def task_extras(extras: Mapping[str, Any], model: type[Contract]) -> dict[str, Any]:
    """``extras`` without the runtime keys ``model`` does not declare."""
    return {k: v for k, v in extras.items() if k in model.model_fields or k not in RUNTIME_KEYS}


def _cli_extras(argv: list[str]) -> dict | None:
    parser = argparse.ArgumentParser(description="run a monitoring task script outside Dagster")
    parser.add_argument("--extras", help="JSON file with the extras a Dagster asset would pass")
    # The serverless Pipes client bootstraps through these; dagster_pipes reads them itself.
    # Declared rather than parse_known_args, so that a mistyped option still fails.
    for pipes_arg in (DAGSTER_PIPES_CONTEXT_CLI_ARGUMENT, DAGSTER_PIPES_MESSAGES_CLI_ARGUMENT):
        parser.add_argument(pipes_arg, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.extras:
        return None
    with open(args.extras) as handle:
        return json.load(handle)


def main(task: TaskFn[P], model: type[P], argv: list[str] | None = None) -> None:
    """Entry point of a task script: by hand with ``--extras``, otherwise as a Pipes process."""
    extras = _cli_extras(sys.argv[1:] if argv is None else argv)
    if extras is not None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        params = model.from_extras(task_extras(extras, model))
        print(json.dumps(task(params, logging.getLogger("rayml_assets.tasks").info), indent=2, default=str))
        return

    from rayml_assets.lib.common.pipes_runtime import task_runtime

    with task_runtime() as (pipes, _ray_address):
        extras = task_extras(pipes.extras, model)
        if "dates" in model.model_fields and not extras.get("dates") and pipes.is_partition_step:
            # A backfill with a single-run policy hands over a range: one run, several days.
            extras["dates"] = date_range(pipes.partition_key_range["start"], pipes.partition_key_range["end"])
        params = model.from_extras(extras)
        metadata = task(params, pipes.log.info)
        pipes.report_asset_materialization(metadata=metadata, asset_key=getattr(params, "asset_key", None))
