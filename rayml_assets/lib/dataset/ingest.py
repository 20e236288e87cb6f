"""Incremental, idempotent ingestion of a landing location into the ``raw_images`` table.

Every file is read once and hashed; only content not seen before is decoded and
validated, in a process pool that uses every core. Valid images are merged on
``image_id`` in one atomic Delta commit; rejected files go to ``quarantine`` with
their reason. Landing files are never moved or deleted, so nothing can be lost.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import sha256_hex
from rayml_assets.lib.dataset.file_checks import IngestPolicy, check_all
from rayml_assets.lib.dataset.landing import MANIFEST_SUFFIX, LandedFile, digest_lines, read_manifest, scan_folder


@dataclass
class IngestResult:
    batch_id: str
    delta_version: int
    rows_added: int
    total_rows: int
    files_seen: int
    already_present: int
    duplicates_in_batch: int
    quarantined: Counter
    label_counts: dict[str, int]
    content_hash: str
    # How the landing was found: "unchanged folders" or "unchanged files" (nothing read), or "listed and read".
    landing_check: str = "listed and read"


def _raw_table(rows: list[dict], images: pa.ChunkedArray) -> pa.Table:
    """raw_images rows: metadata from the rows, bytes straight from Arrow (never copied through Python)."""
    columns = [
        images if field.name == "bytes" else pa.array([row[field.name] for row in rows], field.type)
        for field in lake.RAW_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=lake.RAW_SCHEMA)


def _known_ids(uri: str, column: str, storage_options: dict | None) -> frozenset[str]:
    if not lake.exists(uri, storage_options):
        return frozenset()
    ids = lake.read_at(uri, None, columns=[column], storage_options=storage_options).column(column)
    return frozenset(ids.drop_null().to_pylist())


@dataclass(frozen=True)
class RawSummary:
    """What a caller reports about ``raw_images`` at one version."""

    version: int
    total_rows: int
    label_counts: dict[str, int]
    content_hash: str
    files_seen: int = 0  # the size of the listing that left the table in this state


def _summarize(raw_uri: str, files_seen: int, storage_options: dict | None) -> RawSummary:
    table = lake.open_table(raw_uri, storage_options=storage_options)
    summary = table.to_pyarrow_dataset().to_table(columns=["image_id", "label"])
    counts = {row["values"]: row["counts"] for row in pc.value_counts(summary.column("label")).to_pylist()}
    return RawSummary(table.version(), summary.num_rows, dict(sorted(counts.items())), content_hash(summary.column("image_id")), files_seen)


# Commit properties of the landing_index write that closes every ingest: digests of
# the listing it ingested, and raw_images as that ingest left it.
_STATE_DIGEST, _STATE_FOLDERS, _STATE_SUMMARY = "rayml.landing_digest", "rayml.folder_digest", "rayml.raw_summary"


@dataclass(frozen=True)
class _Landing:
    """The input of one ingest; its files and per-file digest are read only when needed."""

    files: Callable[[], list[LandedFile]]
    digest: Callable[[], str | None]  # of every file's stamp; None when some file has none (always read)
    folder_digest: str | None = None  # of the local folders' stamps, once they have settled


def _files_digest(items: list[LandedFile]) -> str | None:
    if any(item.size is None for item in items):
        return None
    return digest_lines(item.fingerprint for item in items)


def _landing(landing_uri: str, files: list[LandedFile] | None) -> _Landing:
    # The per-file digest is cached: a changed landing asks for it when comparing and again when recording.
    if files is not None:
        return _Landing(lambda: files, functools.cache(lambda: _files_digest(files)))
    if landing_uri.endswith(MANIFEST_SUFFIX):
        return _Landing(lambda: read_manifest(landing_uri), lambda: None)  # manifest rows carry no stamps
    listing = scan_folder(landing_uri)
    return _Landing(listing.files, functools.cache(listing.digest), listing.folder_digest())


def _unchanged_since_last_ingest(
    index_uri: str, raw_uri: str, landing: _Landing, policy: IngestPolicy, storage_options: dict | None
) -> tuple[RawSummary, str] | None:
    """The recorded summary (and which digest matched) when the same listing was ingested last
    and raw_images has not moved since."""
    if not lake.exists(index_uri, storage_options):
        return None
    last = lake.open_table(index_uri, storage_options=storage_options).history(1)[0]
    if _STATE_SUMMARY not in last:
        return None
    if not policy.check_every_file and landing.folder_digest and last.get(_STATE_FOLDERS) == landing.folder_digest:
        how = "unchanged folders"
    elif last.get(_STATE_DIGEST) and last.get(_STATE_DIGEST) == landing.digest():
        how = "unchanged files"
    else:
        return None
    summary = RawSummary(**json.loads(last[_STATE_SUMMARY]))
    return (summary, how) if lake.current_version(raw_uri, storage_options) == summary.version else None


def content_hash(image_ids: pa.ChunkedArray | list[str]) -> str:
    """Order-independent identity of a table's content: the basis of its Dagster DataVersion."""
    ids = sorted(image_ids.to_pylist() if hasattr(image_ids, "to_pylist") else image_ids)
    return sha256_hex("\n".join(ids).encode())[:16]


def ingest(
    landing_uri: str,
    lake_root: str,
    policy: IngestPolicy = IngestPolicy(),
    batch_id: str | None = None,
    files: list[LandedFile] | None = None,
    storage_options: dict | None = None,
) -> IngestResult:
    """Ingest ``files`` (default: the whole landing location) into ``raw_images`` and ``quarantine``."""
    batch_id = batch_id or uuid.uuid4().hex[:12]
    raw_uri = lake.table_uri(lake_root, lake.RAW_IMAGES)
    q_uri = lake.table_uri(lake_root, lake.QUARANTINE)
    index_uri = lake.table_uri(lake_root, lake.LANDING_INDEX)
    landed = _landing(landing_uri, files)
    unchanged = _unchanged_since_last_ingest(index_uri, raw_uri, landed, policy, storage_options)
    if unchanged is not None:  # the common schedule/CLI case: one walk of the folders and one log read
        recorded, how = unchanged
        return IngestResult(
            batch_id=batch_id,
            delta_version=recorded.version,
            rows_added=0,
            total_rows=recorded.total_rows,
            files_seen=recorded.files_seen,
            already_present=recorded.files_seen,
            duplicates_in_batch=0,
            quarantined=Counter(),
            label_counts=recorded.label_counts,
            content_hash=recorded.content_hash,
            landing_check=how,
        )
    items = landed.files()
    seen = _known_ids(index_uri, "fingerprint", storage_options)
    todo = [item for item in items if item.size is None or item.fingerprint not in seen]

    outcomes, images = (
        check_all(
            todo,
            policy,
            _known_ids(raw_uri, "image_id", storage_options),
            _known_ids(q_uri, "quarantine_id", storage_options),
        )
        if todo
        else ([], pa.chunked_array([], pa.binary()))  # an unchanged landing: nothing is read, not even the known ids
    )
    now = datetime.now(timezone.utc)
    valid_by_id: dict[str, dict] = {}
    first_copy: list[bool] = []  # per valid outcome, in order: does it add its image (not a copy) to this batch?
    rejected: list[dict] = []
    index_rows: list[dict] = []
    already_present, duplicates = len(items) - len(todo), 0
    for item, (kind, row) in zip(todo, outcomes):
        outcome = kind
        if kind == "known":
            already_present += 1
        elif kind == "rejected":
            rejected.append({**row, "quarantined_at": now, "batch_id": batch_id})
        elif row["image_id"] in valid_by_id:
            duplicates += 1  # byte-identical copy within this batch: the first path in sorted order wins
            outcome = "duplicate"
            first_copy.append(False)
        else:
            valid_by_id[row["image_id"]] = {**row, "ingested_at": now, "batch_id": batch_id}
            first_copy.append(True)
        if item.size is not None:
            index_rows.append({
                "fingerprint": item.fingerprint, "source_uri": item.source_uri, "outcome": outcome,
                "image_id": (row or {}).get("image_id"), "batch_id": batch_id, "seen_at": now,
            })

    tags = {"rayml.batch_id": batch_id, "rayml.landing_uri": landing_uri}
    inserted = 0
    # Commit order matters: the index is written last, so a crash before it only
    # means those files are read again next time (and then found by their hash),
    # and its recorded state always describes a completed ingest.
    if valid_by_id or not lake.exists(raw_uri, storage_options):
        metrics = lake.merge_insert_new(
            raw_uri,
            _raw_table(list(valid_by_id.values()), images.filter(pa.array(first_copy, pa.bool_()))),
            key="image_id",
            schema=lake.RAW_SCHEMA,
            metadata=tags,
            storage_options=storage_options,
        )
        inserted = int(metrics.get("num_target_rows_inserted", 0))
    if rejected:
        lake.merge_insert_new(
            q_uri, pa.Table.from_pylist(rejected, schema=lake.QUARANTINE_SCHEMA), "quarantine_id",
            lake.QUARANTINE_SCHEMA, tags, storage_options,
        )
    summary = _summarize(raw_uri, len(items), storage_options)
    digests = {_STATE_DIGEST: landed.digest(), _STATE_FOLDERS: landed.folder_digest}
    state = {_STATE_SUMMARY: json.dumps(summary.__dict__)} | {key: value for key, value in digests.items() if value}
    # Appended, not merged: a fingerprint listed twice by concurrent ingests is harmless in a set.
    lake.append(
        index_uri, pa.Table.from_pylist(index_rows, schema=lake.LANDING_INDEX_SCHEMA), lake.LANDING_INDEX_SCHEMA,
        tags | state, storage_options,
    )
    return IngestResult(
        batch_id=batch_id,
        delta_version=summary.version,
        rows_added=inserted,
        total_rows=summary.total_rows,
        files_seen=len(items),
        already_present=already_present,
        duplicates_in_batch=duplicates,
        quarantined=Counter(r["reason"] for r in rejected),
        label_counts=summary.label_counts,
        content_hash=summary.content_hash,
    )
