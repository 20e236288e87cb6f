"""The Pipes clients of :mod:`rayml_assets.resources.databricks_compute`: dagster-databricks' own, made to
report a remote run as soon as it exists, to fail with the task's output, and to read big message chunks."""

from __future__ import annotations

import posixpath
from typing import Any

from dagster import DagsterExecutionInterruptedError
from dagster._core.errors import DagsterPipesExecutionError
from dagster_databricks import PipesDatabricksClient, PipesDbfsMessageReader
from dagster_databricks.pipes import PipesDatabricksServerlessClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.mixins.files import DbfsExt

from rayml_assets.resources.compute import Context

class RunReporting:
    """Makes a remote run findable and a remote failure readable from the Dagster run.

    dagster-databricks only reports the run URL after success, and on failure only the
    run's state message; here the URL is logged as soon as the run exists and a failure
    carries the task's error, trace and log tail (from ``jobs.get_run_output``), which is
    all there is when the script dies before Pipes opens (say, a bad wheel).
    """

    client: Any

    def _poll_til_success(self, context: Context, run_id: int) -> None:
        run = self.client.jobs.get_run(run_id)
        context.log.info(f"[rayml] Databricks run {run_id} submitted: {run.run_page_url}")
        try:
            super()._poll_til_success(context, run_id)  # type: ignore[misc]
        except DagsterPipesExecutionError as exc:
            detail = _failed_task_output(self.client, run_id)
            if detail:
                context.log.error(f"[rayml] Databricks run {run_id} failed:\n{detail}")
            raise DagsterPipesExecutionError(
                f"{exc}\nDatabricks run: {run.run_page_url}\n{detail}".rstrip()
            ) from exc

    def _poll_til_terminating(self, run_id: int) -> None:
        super()._poll_til_terminating(run_id)  # type: ignore[misc]
        # Only reached after an interrupt cancelled the run. dagster-databricks 0.29.27's
        # single-task run() swallows the interrupt there, and the step would then succeed
        # with no results; re-raise so the Dagster run ends interrupted, as it should.
        raise DagsterExecutionInterruptedError(
            f"Databricks run {run_id} cancelled: the Dagster run was interrupted"
        )


def _failed_task_output(client, run_id: int, tail: int = 4000) -> str:
    try:
        run = client.jobs.get_run(run_id)
        parts = []
        for task in run.tasks or []:
            out = client.jobs.get_run_output(task.run_id)
            for label, text in (
                ("error", out.error),
                ("trace", out.error_trace),
                ("logs", out.logs),
            ):
                if text:
                    parts.append(f"[{task.task_key} {label}]\n{text[-tail:]}")
        return "\n".join(parts)
    except DatabricksError as exc:  # the original failure matters more than this lookup
        return f"(could not fetch the task output: {exc})"


class ClusterPipesClient(RunReporting, PipesDatabricksClient):
    pass


class ServerlessPipesClient(RunReporting, PipesDatabricksServerlessClient):
    pass


class DbfsMessageReader(PipesDbfsMessageReader):
    """Reads each Pipes message chunk whole.

    dagster-databricks 0.29.27 reads a chunk with one ``dbfs.read`` of the API's default
    length (0.5 MB; 1 MB at most), so a larger chunk, which one big metadata value makes,
    arrives cut and does not parse. ``DbfsExt`` reads in 1 MB pieces up to the file's size.
    """

    def __init__(self, *, client, **kwargs):
        super().__init__(client=client, **kwargs)
        self._dbfs = DbfsExt(client.api_client)

    def download_messages_chunk(self, index: int, params) -> str | None:
        try:
            with self._dbfs.download(posixpath.join(params["path"], f"{index}.json")) as chunk:
                return chunk.read().decode("utf-8")
        except OSError:  # not written yet (NotFound is an OSError), as upstream treats it
            return None
