"""Ship Python and Dagster logs to Azure Monitor through the Logs Ingestion API.

Records go to the data collection rule that ``terraform/modules/monitoring``
creates: ``endpoint`` is its data collection endpoint, ``rule_id`` the rule's
immutable ID and ``stream_name`` its custom stream, which lands in the
``RaymlLogs_CL`` table. A profile turns shipping on with its ``azure_monitor``
section; profiles without one never build a handler.

Logging must never slow or break the pipeline, so ``emit`` only appends to a
bounded in-memory buffer and a background thread uploads batches. While the
endpoint is unreachable the buffer fills up to ``buffer_size`` records; beyond
that new records are dropped and counted in ``handler.dropped``.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.monitor.ingestion import LogsIngestionClient, LogsUploadError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from rayml_assets.settings import Profile

# Column -> Log Analytics type of every field a record carries. The stream
# declaration and the RaymlLogs_CL table in terraform/modules/monitoring have
# the same columns; a test keeps the two in step.
COLUMNS: dict[str, str] = {
    "TimeGenerated": "datetime",
    "Level": "string",
    "Logger": "string",
    "Message": "string",
    "Environment": "string",
    "Host": "string",
    "ProcessId": "int",
    "RunId": "string",
    "StepKey": "string",
    "Exception": "string",
}

# Never shipped: the Azure SDK logs each upload (shipping that would feed on
# itself), and this module reports the shipper's own trouble.
_IGNORED_LOGGERS = ("azure", __name__)
# Status codes that no retry will fix: malformed batch, unknown rule or stream, too large.
_REJECTED_STATUS = {400, 404, 413}
_MAX_BACKOFF_S = 60.0

_log = logging.getLogger(__name__)
_exception_formatter = logging.Formatter()


def _status(error: Exception) -> int | None:
    return error.status_code if isinstance(error, HttpResponseError) else None


def _ignored(logger_name: str) -> bool:
    return any(logger_name == name or logger_name.startswith(name + ".") for name in _IGNORED_LOGGERS)


class AzureMonitorHandler(logging.Handler):
    """A non-blocking handler that uploads records in batches from a background thread.

    ``credential`` defaults to ``DefaultAzureCredential`` (managed identity on
    Azure, ``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_CLIENT_SECRET`` or
    workload identity elsewhere); it needs Monitoring Metrics Publisher on the
    rule. ``client_options`` go to ``LogsIngestionClient`` (timeouts, TLS).
    """

    def __init__(
        self,
        endpoint: str,
        rule_id: str,
        stream_name: str,
        *,
        credential: TokenCredential | None = None,
        environment: str = "",
        run_id: str = "",
        batch_size: int = 500,
        buffer_size: int = 10_000,
        flush_interval: float = 2.0,
        level: int = logging.NOTSET,
        **client_options: Any,
    ) -> None:
        if batch_size < 1 or buffer_size < batch_size:
            raise ValueError("need 1 <= batch_size <= buffer_size")
        super().__init__(level)
        self.rule_id = rule_id
        self.stream_name = stream_name
        self.environment = environment
        self.run_id = run_id
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        # The buffer is the retry mechanism: the SDK must not also retry, or one
        # outage would hold the worker for minutes per batch.
        client_options = {"retry_total": 0, "connection_timeout": 10, "read_timeout": 30, **client_options}
        self._client = LogsIngestionClient(endpoint, credential or DefaultAzureCredential(), **client_options)
        self._host = socket.gethostname()

        self._buffer: deque[dict[str, Any]] = deque()
        self._in_flight = 0
        self._closed = False
        self._wake = threading.Condition()
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.failed_uploads = 0
        self.last_error: str | None = None

        self._worker = threading.Thread(target=self._run, name="azure-monitor-logs", daemon=True)
        self._worker.start()

    # -- logging.Handler ------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if _ignored(record.name):
            return
        try:
            entry = self._entry(record)
        except Exception:  # a bad format string or argument must not escape
            self.handleError(record)
            return
        with self._wake:
            # In-flight records count: the bound is on everything not yet delivered.
            if self._closed or len(self._buffer) + self._in_flight >= self.buffer_size:
                self.dropped += 1
                return
            self._buffer.append(entry)
            if len(self._buffer) >= self.batch_size:
                self._wake.notify_all()

    def flush(self) -> None:
        """Ask the worker to send what is buffered now; does not wait."""
        with self._wake:
            self._wake.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is buffered, waiting at most ``timeout`` seconds, then stop."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._worker.join(timeout)
        super().close()

    def stats(self) -> dict[str, int | str | None]:
        with self._wake:
            return {
                "sent": self.sent,
                "dropped": self.dropped,
                "rejected": self.rejected,
                "buffered": len(self._buffer) + self._in_flight,
                "failed_uploads": self.failed_uploads,
                "last_error": self.last_error,
            }

    # -- internals ------------------------------------------------------------

    def _entry(self, record: logging.LogRecord) -> dict[str, Any]:
        # Dagster's run logger attaches the run and step to each record.
        meta = getattr(record, "dagster_meta", None) or {}
        return {
            "TimeGenerated": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "Level": record.levelname,
            "Logger": record.name,
            "Message": meta.get("orig_message") or record.getMessage(),
            "Environment": self.environment,
            "Host": self._host,
            "ProcessId": record.process or 0,
            "RunId": meta.get("run_id") or self.run_id,
            "StepKey": meta.get("step_key") or "",
            "Exception": _exception_formatter.formatException(record.exc_info) if record.exc_info else "",
        }

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._wake:
                # After a failure wait out the backoff; otherwise wait for a full batch.
                if not self._closed and (backoff or len(self._buffer) < self.batch_size):
                    self._wake.wait(backoff or self.flush_interval)
                if not self._buffer:
                    if self._closed:
                        return
                    continue
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._in_flight = len(batch)
            retry = self._upload(batch)
            with self._wake:
                self._in_flight = 0
                self._buffer.extendleft(reversed(retry))
                if retry and self._closed:
                    return  # shutting down: one last attempt, no waiting out an outage
            backoff = min(max(2 * backoff, self.flush_interval), _MAX_BACKOFF_S) if retry else 0.0

    def _upload(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Upload one batch; return the records worth retrying."""
        errors: list[LogsUploadError] = []
        try:
            self._client.upload(self.rule_id, self.stream_name, batch, on_error=errors.append)
        except Exception as exc:  # the worker thread must survive anything
            errors = [LogsUploadError(error=exc, failed_logs=batch)]
        retry: list[dict[str, Any]] = []
        rejected = 0
        for failure in errors:
            if _status(failure.error) in _REJECTED_STATUS:
                rejected += len(failure.failed_logs)
            else:
                retry.extend(failure.failed_logs)
        was_failing = self.last_error is not None
        with self._wake:
            self.sent += len(batch) - rejected - len(retry)
            self.rejected += rejected
            if errors:
                self.failed_uploads += 1
                error = errors[0].error
                # The type and status only: messages can echo request details.
                status = _status(error)
                self.last_error = type(error).__name__ + (f" (HTTP {status})" if status else "")
            else:
                self.last_error = None
        if errors and not was_failing:
            _log.warning(
                "Azure Monitor log upload failed: %s; buffering up to %d records", self.last_error, self.buffer_size
            )
        elif was_failing and not errors:
            _log.info("Azure Monitor log upload recovered")
        return retry


def handler_from_profile(profile: Profile, **options: Any) -> AzureMonitorHandler | None:
    """The handler for ``profile``, or None when the profile ships no logs."""
    settings = profile.azure_monitor
    if settings is None:
        return None
    return AzureMonitorHandler(
        settings.endpoint, settings.rule_id, settings.stream_name, environment=profile.name, **options
    )


def attach_to_root_logger(
    profile: Profile, *, run_id: str = "", level: int = logging.INFO
) -> AzureMonitorHandler | None:
    """Ship this process's logs (training workers, Pipes task scripts); idempotent.

    Lowers the root logger to ``level`` if it is stricter, so INFO records of
    the job reach the handler.
    """
    root = logging.getLogger()
    for existing in root.handlers:
        if isinstance(existing, AzureMonitorHandler):
            return existing
    handler = handler_from_profile(profile, run_id=run_id, level=level)
    if handler is not None:
        root.addHandler(handler)
        if root.getEffectiveLevel() > level:
            root.setLevel(level)
    return handler
