"""What every monitoring job script shares: Pipes plumbing, partition dates, metadata values.

A job's logic is a function ``run(extras, log) -> metadata``. Under Dagster
(``PipesSubprocessClient`` or ``PipesDatabricksClient``) the extras come from
``pipes.extras`` and the metadata goes back through
``report_asset_materialization``. By hand, ``--extras FILE.json`` runs the same
function and prints the metadata as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

from rayml_assets.lib.monitoring.production import partition_key

Log = Callable[[str], None]
JobFn = Callable[[dict, Log], dict]


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


def dates_from(extras: Mapping) -> list[str]:
    """Days to process: ``extras['dates']``, else ``extras['date']`` (under Pipes, else the partition range)."""
    if extras.get("dates"):
        return [partition_key(d) for d in extras["dates"]]
    if extras.get("date"):
        return [partition_key(extras["date"])]
    raise ValueError("no date: pass extras 'date' or 'dates', or run as a partitioned asset")


def _cli_extras(argv: list[str]) -> dict | None:
    parser = argparse.ArgumentParser(description="run a monitoring job outside Dagster")
    parser.add_argument("--extras", help="JSON file with the extras a Dagster asset would pass")
    args = parser.parse_args(argv)
    if not args.extras:
        return None
    with open(args.extras) as handle:
        return json.load(handle)


def main(job: JobFn, argv: list[str] | None = None) -> None:
    """Entry point of a job script: by hand with ``--extras``, otherwise as a Pipes process."""
    extras = _cli_extras(sys.argv[1:] if argv is None else argv)
    if extras is not None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        print(json.dumps(job(extras, logging.getLogger("rayml_assets.jobs").info), indent=2, default=str))
        return

    from rayml_assets.lib.common.pipes_runtime import job_runtime

    with job_runtime() as (pipes, _ray_address):
        extras = dict(pipes.extras)
        if not extras.get("date") and not extras.get("dates") and pipes.is_partition_step:
            # A backfill with a single-run policy hands over a range: one run, several days.
            extras["dates"] = date_range(pipes.partition_key_range["start"], pipes.partition_key_range["end"])
        metadata = job(extras, pipes.log.info)
        pipes.report_asset_materialization(metadata=metadata, asset_key=extras.get("asset_key"))
