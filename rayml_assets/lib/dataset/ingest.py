"""Incremental, idempotent ingestion of a landing location into the ``raw_images`` table.

Every file is read once and hashed; only content not seen before is decoded and
validated, in a process pool that uses every core. Valid images are merged on
``image_id`` in one atomic Delta commit (with the relabels and label-conflict removals
that ``reconcile`` decides); rejected files go to ``quarantine`` with their reason.
A rejected file is read again when it changes, when the policy changes, and at every
ingest while its reason is transient (unreadable, vanished) or a label conflict.
Landing files are never moved or deleted, so nothing can be lost.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import sha256_hex
from rayml_assets.lib.common.listing import filesystem
from rayml_assets.lib.common.storage_options import StorageSettings
from rayml_assets.lib.dataset.file_checks import IngestPolicy, check_all
from rayml_assets.lib.dataset.landing import MANIFEST_SUFFIX, LandedFile, digest_lines, read_manifest, scan_folder
from rayml_assets.lib.dataset.reconcile import Plan, commit_raw, last_outcomes, needs_check, plan_ingest


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
    relabeled: int = 0  # images whose file moved to another label folder
    label_conflicts_removed: int = 0  # images taken out of raw_images: their bytes landed under several labels
    recovered: int = 0  # files quarantined before and ingested now (their quarantine rows stay as history)
    recheck: int = 0  # files rejected for a transient reason, read again by the next ingest


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
# the listing it ingested, raw_images as that ingest left it, the policy it applied and
# how many of its rejections were transient.
_STATE_DIGEST, _STATE_FOLDERS, _STATE_SUMMARY = "rayml.landing_digest", "rayml.folder_digest", "rayml.raw_summary"
_STATE_POLICY, _STATE_RECHECK = "rayml.policy", "rayml.recheck"


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


def _landing(landing_uri: str, files: list[LandedFile] | None, storage: StorageSettings | None) -> _Landing:
    # The per-file digest is cached: a changed landing asks for it when comparing and again when recording.
    if files is not None:
        return _Landing(lambda: files, functools.cache(lambda: _files_digest(files)))
    if landing_uri.endswith(MANIFEST_SUFFIX):
        return _Landing(lambda: read_manifest(landing_uri, storage), lambda: None)  # manifest rows carry no stamps
    listing = scan_folder(landing_uri, storage)
    return _Landing(listing.files, functools.cache(listing.digest), listing.folder_digest())


def _unchanged_since_last_ingest(
    index_uri: str, raw_uri: str, landing: _Landing, policy: IngestPolicy, storage_options: dict | None
) -> tuple[RawSummary, str] | None:
    """The recorded summary (and which digest matched) when the same listing was ingested last
    and raw_images has not moved since."""
    if not lake.exists(index_uri, storage_options):
        return None
    last = lake.open_table(index_uri, storage_options=storage_options).history(1)[0]
    if _STATE_SUMMARY not in last or last.get(_STATE_POLICY) != policy.fingerprint() or last.get(_STATE_RECHECK) != "0":
        return None  # another policy, or files to read again, decide otherwise even on the same landing
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
    if not _BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch_id {batch_id!r} must be letters, digits, '-' or '_'")
    started = datetime.now(timezone.utc)
    raw_uri = lake.table_uri(lake_root, lake.RAW_IMAGES)
    q_uri = lake.table_uri(lake_root, lake.QUARANTINE)
    index_uri = lake.table_uri(lake_root, lake.LANDING_INDEX)
    landed = _landing(landing_uri, files, policy.storage)
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
    policy_fp = policy.fingerprint()
    last = last_outcomes(index_uri, storage_options)
    todo = [
        p for p, item in enumerate(items)
        if item.size is None or needs_check(last.get(item.fingerprint), policy_fp)
    ]
    known_images = _known_ids(raw_uri, "image_id", storage_options) if todo else frozenset()
    known_q = _known_ids(q_uri, "quarantine_id", storage_options) if todo else frozenset()
    tags = {"rayml.batch_id": batch_id, "rayml.landing_uri": landing_uri}
    total = Plan(already_present=len(items) - len(todo))
    batches = list(_batches(items, todo, policy.batch_bytes)) or [[]]
    present = _present_outside(items, policy.storage) if files is not None else lambda uri: False  # a whole listing shows every file
    for number, positions in enumerate(batches, start=1):
        outcomes, images = (
            check_all([items[p] for p in positions], policy, known_images)
            if positions
            else ([], pa.chunked_array([], pa.binary()))  # an unchanged landing: nothing is read
        )
        plan = plan_ingest(
            items, positions, outcomes, last,
            lambda ids: _recorded(raw_uri, ids, storage_options),
            present,
            known_q, policy_fp, batch_id, datetime.now(timezone.utc),
        )
        inserted = 0
        # Commit order matters: the index is written last, so a crash before it only
        # means those files are read again next time (and then found by their hash).
        if plan.inserts or plan.updates or plan.deletes or not lake.exists(raw_uri, storage_options):
            inserts = _raw_table(plan.inserts, images.filter(pa.array(plan.insert_mask, pa.bool_())))
            inserted = commit_raw(raw_uri, inserts, plan, tags, storage_options, _written_by_others(batch_id, started))
        del images, outcomes  # this batch's bytes are in the table now
        if plan.quarantine:
            lake.merge_insert_new(
                q_uri, pa.Table.from_pylist(plan.quarantine, schema=lake.QUARANTINE_SCHEMA), "quarantine_id",
                lake.QUARANTINE_SCHEMA, tags, storage_options,
            )
        # Later batches see this one as if an earlier ingest had recorded it.
        last |= {row["fingerprint"]: (row["outcome"], row["image_id"]) for row in plan.index_rows}
        known_images |= {row["image_id"] for row in plan.inserts}
        known_q |= {row["quarantine_id"] for row in plan.quarantine}
        total.absorb(plan, inserted)
        state = {"rayml.ingest_batch": f"{number}/{len(batches)}"}
        if number == len(batches):  # only a completed ingest records the state the shortcut trusts
            summary = _summarize(raw_uri, len(items), storage_options)
            digests = {_STATE_DIGEST: landed.digest(), _STATE_FOLDERS: landed.folder_digest}
            state |= {_STATE_SUMMARY: json.dumps(summary.__dict__), _STATE_POLICY: policy_fp, _STATE_RECHECK: str(total.recheck)}
            state |= {key: value for key, value in digests.items() if value}
        # Appended, not merged: later rows of a fingerprint win (reconcile.last_outcomes).
        lake.append(
            index_uri, pa.Table.from_pylist(plan.index_rows, schema=lake.LANDING_INDEX_SCHEMA), lake.LANDING_INDEX_SCHEMA,
            tags | state, storage_options,
        )
    return IngestResult(
        batch_id=batch_id,
        delta_version=summary.version,
        rows_added=total.inserted,
        total_rows=summary.total_rows,
        files_seen=len(items),
        already_present=total.already_present,
        duplicates_in_batch=total.duplicates,
        quarantined=total.quarantined,
        label_counts=summary.label_counts,
        content_hash=summary.content_hash,
        relabeled=total.relabeled,
        label_conflicts_removed=total.removed,
        recovered=total.recovered,
        recheck=total.recheck,
    )


_BATCH_ID = re.compile(r"[A-Za-z0-9_-]+")
# How long before this ingest's start another writer's rows may be stamped (ingested_at is set
# when a batch is planned, before its commit): a batch takes seconds, the margin is generous.
_CONCURRENT_WINDOW = timedelta(hours=1)


def _written_by_others(batch_id: str, started: datetime) -> str:
    """The raw_images rows this ingest's known ids may miss: other writers', stamped in its window.
    Its own earlier batches and everything older are known, so their files are not read."""
    return f"t.batch_id <> '{batch_id}' AND t.ingested_at >= '{(started - _CONCURRENT_WINDOW).isoformat()}'"


def _batches(items: list[LandedFile], todo: list[int], batch_bytes: int) -> Iterator[list[int]]:
    """``todo`` in listing order, cut where the listed sizes reach ``batch_bytes`` (a file of unknown size counts 0)."""
    batch: list[int] = []
    size = 0
    for position in todo:
        if batch and size + (items[position].size or 0) > batch_bytes:
            yield batch
            batch, size = [], 0
        batch.append(position)
        size += items[position].size or 0
    if batch:
        yield batch


def _recorded(raw_uri: str, image_ids: set[str], storage_options: dict | None) -> dict[str, tuple[str, str]]:
    """raw_images' (source_uri, label) of ``image_ids``."""
    if not image_ids:
        return {}
    # Filtered after the scan: Delta's string_view columns defeat a pushed-down isin filter.
    table = lake.read_at(raw_uri, None, ["image_id", "source_uri", "label"], storage_options=storage_options)
    ids = table.column("image_id").cast(pa.string())
    table = table.filter(pc.is_in(ids, value_set=pa.array(sorted(image_ids), pa.string())))
    ids, uris, labels = (table.column(c).to_pylist() for c in ("image_id", "source_uri", "label"))
    return {image_id: (uri, label) for image_id, uri, label in zip(ids, uris, labels)}


def _present_outside(items: list[LandedFile], storage: StorageSettings | None) -> Callable[[str], bool]:
    """For a caller's partial listing: does a file it does not name still exist?"""
    listed = {item.source_uri for item in items}

    def present(uri: str) -> bool:
        if uri in listed:
            return False  # listed, and not a copy: its bytes changed, or it was rejected
        fs, path = filesystem(uri, storage)
        return fs.exists(path)

    return present
