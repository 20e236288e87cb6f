"""Delta Lake tables of the platform: schemas, versioned reads and conflict-safe writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import ColumnProperties, CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from rayml_assets.lib.common.tables import (  # noqa: F401 - the table names are part of lake's API
    CLEANED_IMAGES,
    LANDING_INDEX,
    PREDICTIONS,
    QUARANTINE,
    RAW_IMAGES,
    table_uri,
)

_TS = pa.timestamp("us", tz="UTC")

RAW_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("source_uri", pa.string()),
        ("label", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("bytes", pa.binary()),
        ("ingested_at", _TS),
        ("batch_id", pa.string()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("quarantine_id", pa.string()),
        ("source_uri", pa.string()),
        ("label", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("size_bytes", pa.int64()),
        ("sha256", pa.string()),
        ("quarantined_at", _TS),
        ("batch_id", pa.string()),
    ]
)

# Every landed file seen, by (uri, size, mtime): an unchanged landing is skipped without reading it.
LANDING_INDEX_SCHEMA = pa.schema(
    [
        ("fingerprint", pa.string()),
        ("source_uri", pa.string()),
        ("outcome", pa.string()),
        ("image_id", pa.string()),
        ("batch_id", pa.string()),
        ("seen_at", _TS),
    ]
)

# cleaned_images: every raw column plus the cleaning verdict. Each version is a
# full snapshot of the dataset, so a version number pins exactly what trained a model.
CLEANED_SCHEMA = pa.schema(
    list(RAW_SCHEMA)
    + [
        ("split", pa.string()),
        ("excluded", pa.bool_()),
        ("exclusion_reason", pa.string()),
        ("raw_version", pa.int64()),
    ]
)

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("source_uri", pa.string()),
        ("date", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("predicted_label", pa.string()),
        ("confidence", pa.float32()),
        ("probabilities", pa.list_(pa.float32())),
        ("bytes", pa.binary()),
        ("predicted_at", _TS),
    ]
)

T = TypeVar("T")


class TableMissing(LookupError):
    """The Delta table has not been written yet."""


def open_table(uri: str, version: int | None = None, storage_options: dict | None = None) -> DeltaTable:
    try:
        return DeltaTable(uri, version=version, storage_options=storage_options)
    except TableNotFoundError as exc:
        raise TableMissing(f"no Delta table at {uri}") from exc


def exists(uri: str, storage_options: dict | None = None) -> bool:
    return DeltaTable.is_deltatable(uri, storage_options=storage_options)


def current_version(uri: str, storage_options: dict | None = None) -> int | None:
    if not exists(uri, storage_options):
        return None
    return open_table(uri, storage_options=storage_options).version()


def dataset_at(uri: str, version: int, storage_options: dict | None = None) -> pads.Dataset:
    """A lazily scanned pyarrow dataset of the table pinned at ``version``."""
    return open_table(uri, version, storage_options).to_pyarrow_dataset()


def read_at(
    uri: str,
    version: int | None,
    columns: list[str] | None = None,
    filter: pads.Expression | None = None,
    storage_options: dict | None = None,
) -> pa.Table:
    table = open_table(uri, version, storage_options)
    return table.to_pyarrow_dataset().to_table(columns=columns, filter=filter)


def iter_batches(
    uri: str,
    version: int,
    columns: list[str],
    filter: pads.Expression | None = None,
    batch_size: int = 512,
    storage_options: dict | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream a pinned version in record batches, never holding the table in memory."""
    yield from dataset_at(uri, version, storage_options).to_batches(
        columns=columns, filter=filter, batch_size=batch_size
    )


def with_commit_retry(action: Callable[[], T], attempts: int = 20, base_delay_s: float = 0.05) -> T:
    """Retry an optimistic Delta commit that lost a race with a concurrent writer."""
    for attempt in range(attempts):
        try:
            return action()
        except (CommitFailedError, DeltaError) as exc:
            retriable = isinstance(exc, CommitFailedError) or "already exists" in str(exc).lower() or "conflict" in str(exc).lower()
            if not retriable or attempt == attempts - 1:
                raise
            time.sleep(base_delay_s * (2**min(attempt, 6)))
    raise AssertionError("unreachable")


def writer_properties(schema: pa.Schema) -> WriterProperties | None:
    """How to write a table: one that carries encoded images (a ``bytes`` column) is left
    uncompressed, because PNG and JPEG bytes are compressed already and a second pass costs
    CPU for nothing; nor are min/max statistics kept for the bytes."""
    if "bytes" not in schema.names:
        return None
    return WriterProperties(
        compression="UNCOMPRESSED",
        column_properties={"bytes": ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE")},
    )


def _ensure_table(uri: str, schema: pa.Schema, storage_options: dict | None) -> None:
    if not exists(uri, storage_options):
        write_deltalake(uri, schema.empty_table(), mode="append", storage_options=storage_options)


def merge_insert_new(
    uri: str,
    rows: pa.Table,
    key: str,
    schema: pa.Schema,
    metadata: dict[str, str] | None = None,
    storage_options: dict | None = None,
    target_filter: str | None = None,
) -> dict:
    """Insert the rows whose ``key`` is not yet in the table, in one atomic commit.

    Returns the merge metrics (``num_target_rows_inserted`` and so on). Concurrent
    callers with overlapping rows are safe: a conflicting commit is retried against
    the new table state, so nothing is lost or duplicated.

    ``target_filter`` (SQL on the target ``t``) limits the rows the merge reads, and so its
    memory: the files its statistics rule out are skipped. The caller guarantees that no
    row outside it can match (``rows`` already leave out the keys it knew when it started).
    """
    rows = rows.cast(schema)

    def attempt() -> dict:
        _ensure_table(uri, schema, storage_options)
        if rows.num_rows == 0:
            return {"num_target_rows_inserted": 0}
        table = open_table(uri, storage_options=storage_options)
        return (
            table.merge(
                rows,
                predicate=f"t.{key} = s.{key}" + (f" AND ({target_filter})" if target_filter else ""),
                source_alias="s",
                target_alias="t",
                writer_properties=writer_properties(schema),
                commit_properties=CommitProperties(custom_metadata=metadata or {}),
            )
            .when_not_matched_insert_all()
            .execute()
        )

    return with_commit_retry(attempt)


def append(
    uri: str,
    rows: pa.Table,
    schema: pa.Schema,
    metadata: dict[str, str] | None = None,
    storage_options: dict | None = None,
) -> None:
    """A blind append (never conflicts); with no rows it still commits, to record ``metadata``."""
    write_deltalake(
        uri,
        rows.cast(schema),
        mode="append",
        writer_properties=writer_properties(schema),
        commit_properties=CommitProperties(custom_metadata=metadata or {}),
        storage_options=storage_options,
    )


def overwrite(
    uri: str,
    rows: pa.Table,
    schema: pa.Schema,
    metadata: dict[str, str] | None = None,
    predicate: str | None = None,
    storage_options: dict | None = None,
) -> int:
    """Write a full snapshot (or replace the rows matching ``predicate``); returns the new version."""
    write_deltalake(
        uri,
        rows.cast(schema),
        mode="overwrite",
        predicate=predicate,
        writer_properties=writer_properties(schema),
        commit_properties=CommitProperties(custom_metadata=metadata or {}),
        storage_options=storage_options,
    )
    return open_table(uri, storage_options=storage_options).version()


def commit_metadata(uri: str, version: int, storage_options: dict | None = None) -> dict:
    """The custom commit properties (tags) recorded on ``version``."""
    for entry in open_table(uri, storage_options=storage_options).history():
        if entry.get("version") == version:
            return {k: v for k, v in entry.items() if k not in {"version", "timestamp", "operation", "operationParameters", "operationMetrics", "clientVersion", "readVersion", "isBlindAppend"}}
    raise TableMissing(f"version {version} not found in history of {uri}")
