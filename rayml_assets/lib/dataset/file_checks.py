"""Checking landed files for ``ingest``: read, hash, validate, in a forked process pool.

A worker classifies each file of its chunk as ``known``, ``valid`` (with its row) or
``rejected`` (with its reason) and spools the valid images' bytes to an Arrow file that
the parent maps, so bytes never travel back through the pool's pipe.
"""

from __future__ import annotations

import functools
import gc
import json
import multiprocessing
import os
import tempfile
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import pyarrow as pa

from rayml_assets.lib.common.images import (
    DEFAULT_ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    ImageRejected,
    RejectReason,
    sha256_hex,
    validate_image,
)
from rayml_assets.lib.dataset import pool_hygiene
from rayml_assets.lib.common.storage_options import StorageSettings
from rayml_assets.lib.dataset.landing import FileTooLarge, LandedFile, NotARegularFile, read_bytes

# Below this many new files a process pool costs more than it saves.
MIN_FILES_FOR_POOL = 64
# Larger files are refused from their size, before they are read into memory.
DEFAULT_MAX_FILE_BYTES = 256 * 2**20
DEFAULT_BATCH_BYTES = 32 * 2**20


@dataclass(frozen=True)
class IngestPolicy:
    allowed_formats: tuple[str, ...] = DEFAULT_ALLOWED_FORMATS
    max_pixels: int = DEFAULT_MAX_PIXELS
    taxonomy: tuple[str, ...] | None = None
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Off: landed files are write-once (as Databricks Auto Loader assumes by default), so an
    # ingest whose local folders are all unchanged returns after one stat per folder. A file
    # rewritten in place is read by the next ingest that finds any folder changed, or at once
    # with this on (one stat per file), as the landing sensor's runs do.
    check_every_file: bool = False
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    # Files are checked and committed in batches of about this many bytes (by their listed size),
    # so an ingest's memory does not grow with the landing; each batch is its own commits.
    batch_bytes: int = DEFAULT_BATCH_BYTES
    # How the landing authenticates (variable names only): it reaches the pool workers with the policy.
    storage: StorageSettings | None = None

    def fingerprint(self) -> str:
        """Identity of what decides a rejection: when it changes, every rejected file is checked again."""
        taxonomy = sorted(self.taxonomy) if self.taxonomy is not None else None
        decisive = [taxonomy, sorted(self.allowed_formats), self.max_pixels, self.max_file_bytes]
        return sha256_hex(json.dumps(decisive).encode())[:16]


@functools.lru_cache(maxsize=4096)  # a landing has few labels and many files
def label_problem(label: str) -> str | None:
    """Why ``label`` cannot name a class (it becomes a folder and a metric key downstream), or None."""
    if not label:
        return "empty label"
    if "/" in label or "\\" in label or label in (".", ".."):
        return f"label {label!r} is a path, not a class name"
    if any(unicodedata.category(ch).startswith("C") for ch in label):
        return f"label {label!r} contains a control character"
    return None


def quarantine_id(source_uri: str, sha256: str | None, reason: str) -> str:
    return sha256_hex(f"{source_uri}\0{sha256 or ''}\0{reason}".encode())


def quarantine_row(item: LandedFile, reason: RejectReason, detail: str, size: int | None, sha: str | None) -> dict:
    return {
        "quarantine_id": quarantine_id(item.source_uri, sha, reason.value),
        "source_uri": item.source_uri,
        "label": item.label,
        "reason": reason.value,
        "detail": detail[:500],
        "size_bytes": size,
        "sha256": sha,
    }


class ReadRejected(ImageRejected):
    """A file that could not be read, with the reason it is quarantined (or skipped in prediction)."""

    def __init__(self, reason: RejectReason, detail: str, size: int | None = None):
        super().__init__(reason, detail)
        self.size = size


def read_checked(uri: str, max_bytes: int | None = None, storage: StorageSettings | None = None) -> bytes:
    """``landing.read_bytes``, its failures told apart as ``ReadRejected`` reasons (shared with prediction)."""
    try:
        return read_bytes(uri, max_bytes, storage)
    except FileTooLarge as exc:
        raise ReadRejected(RejectReason.TOO_LARGE, str(exc), exc.size) from exc
    except NotARegularFile as exc:
        raise ReadRejected(RejectReason.NOT_A_REGULAR_FILE, str(exc)) from exc
    except FileNotFoundError as exc:  # listed, then removed or renamed before it was read
        raise ReadRejected(RejectReason.VANISHED, f"{type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise ReadRejected(RejectReason.UNREADABLE, f"{type(exc).__name__}: {exc}") from exc


# Set in each pool worker by _init_worker, so the known-id set is shipped once per process.
_KNOWN_IMAGES: frozenset[str] = frozenset()
_POLICY = IngestPolicy()
_SPOOL = ""  # the folder where pool workers leave their chunks' image bytes
_CHUNKS: list[list[LandedFile]] = []  # the work, inherited by forked workers: a task names its chunk's index


def _init_worker(
    known_images: frozenset[str],
    policy: IngestPolicy,
    spool: str = "",
    chunks: list[list[LandedFile]] | None = None,
) -> None:
    global _KNOWN_IMAGES, _POLICY, _SPOOL, _CHUNKS
    _KNOWN_IMAGES, _POLICY, _SPOOL, _CHUNKS = known_images, policy, spool, chunks or []


def _reject(item: LandedFile, reason: RejectReason, detail: str, data: bytes | None, size: int | None = None) -> tuple[str, dict]:
    sha = sha256_hex(data) if data is not None else None
    return "rejected", quarantine_row(item, reason, detail, len(data) if data is not None else size, sha)


def check_file(item: LandedFile) -> tuple[str, dict]:
    """Classify one landed file as ``known`` (its image is in raw_images), ``valid`` (with its row)
    or ``rejected`` (with its quarantine row)."""
    if item.problem is not None:
        return _reject(item, item.problem, item.detail, None)
    if (problem := label_problem(item.label)) is not None:
        return _reject(item, RejectReason.INVALID_LABEL, problem, None)
    try:
        data = read_checked(item.source_uri, _POLICY.max_file_bytes, _POLICY.storage)
    except ReadRejected as exc:
        return _reject(item, exc.reason, exc.detail, None, exc.size)
    image_id = sha256_hex(data)
    # Before the known-id test: a copy of a known image under a label outside the taxonomy is no copy to keep.
    if _POLICY.taxonomy is not None and item.label not in _POLICY.taxonomy:
        return _reject(item, RejectReason.UNKNOWN_LABEL, f"label {item.label!r} is not in the taxonomy", data)
    if image_id in _KNOWN_IMAGES:
        return "known", {"image_id": image_id}
    try:
        info = validate_image(data, allowed_formats=_POLICY.allowed_formats, max_pixels=_POLICY.max_pixels)
    except ImageRejected as exc:
        return _reject(item, exc.reason, exc.detail, data)
    return "valid", {
        "image_id": image_id,
        "source_uri": item.source_uri,
        "label": item.label,
        "width": info.width,
        "height": info.height,
        "format": info.format,
        "bytes": data,
    }


def check_chunk(items: list[LandedFile]) -> list[tuple[str, dict]]:
    return [check_file(item) for item in items]


def _split_bytes(outcomes: list[tuple[str, dict]]) -> list[pa.Array]:
    """Move the valid images' bytes out of their rows into Arrow, in outcome order."""
    images = pa.array([row.pop("bytes") for kind, row in outcomes if kind == "valid"], pa.binary())
    return images.chunks if isinstance(images, pa.ChunkedArray) else [images]  # over 2 GiB: several


def _init_pool_worker(*init_args) -> None:
    pool_hygiene.exit_with_parent()
    _init_worker(*init_args)


def _spool_path(index: int) -> str:
    return os.path.join(_SPOOL, f"chunk_{index:06d}.arrow")


def _check_spooled(index: int) -> list[tuple[str, dict]]:
    """A pool worker's chunk. Its image bytes go to an Arrow file that the parent maps, instead of
    back through the pool's pipe, where the parent would spend its own time unpickling them."""
    pool_hygiene.mark_started(_SPOOL, index)
    outcomes = check_chunk(_CHUNKS[index])
    table = pa.table({"bytes": pa.chunked_array(_split_bytes(outcomes), pa.binary())})
    with pa.OSFile(_spool_path(index), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return outcomes


def _read_spooled(index: int) -> list[pa.Array]:
    return pa.ipc.open_file(pa.memory_map(_spool_path(index))).read_all().column("bytes").chunks


def check_all(
    items: list[LandedFile], policy: IngestPolicy, known_images: frozenset[str]
) -> tuple[list[tuple[str, dict]], pa.ChunkedArray]:
    """Every item's outcome, and the valid ones' bytes in outcome order (rows keep no bytes)."""
    try:
        if policy.workers <= 1 or len(items) < MIN_FILES_FOR_POOL:
            _init_worker(known_images, policy)
            outcomes = check_chunk(items)
            return outcomes, pa.chunked_array(_split_bytes(outcomes), pa.binary())
        results = _check_in_pool(items, policy, known_images)
    finally:
        _init_worker(frozenset(), policy)  # the parent lets go of the work and the known ids
    outcomes = [outcome for chunk_outcomes, _ in results for outcome in chunk_outcomes]
    return outcomes, pa.chunked_array([array for _, arrays in results for array in arrays], pa.binary())


def _check_in_pool(
    items: list[LandedFile], policy: IngestPolicy, known_images: frozenset[str]
) -> list[tuple[list, list[pa.Array]]]:
    """Each chunk's outcomes and valid bytes, checked by the parent and ``policy.workers - 1`` forked workers."""
    size = max(1, len(items) // (policy.workers * 16))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    # fork shares the parent's already-imported modules; spawn would re-import the stack per worker.
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    # Frozen objects are not traversed by the workers' garbage collector, so the
    # forked workers do not copy the parent's whole heap page by page.
    gc.freeze()
    try:
        # Mapped spool files stay readable after the folder is removed, until their arrays are freed.
        pool_hygiene.remove_stale_spools()
        with tempfile.TemporaryDirectory(prefix=pool_hygiene.spool_prefix()) as spool:
            # Forked workers inherit the arguments (spawned ones get them pickled once), so no task ships files.
            init_args = (known_images, policy, spool, chunks)
            _init_worker(*init_args)  # the parent checks files too
            with ProcessPoolExecutor(policy.workers - 1, mp_context=ctx, initializer=_init_pool_worker, initargs=init_args) as pool:
                futures = [pool.submit(_check_spooled, i) for i in range(len(chunks))]
                # The parent is the last worker: it takes chunks from the end until it meets one a
                # worker has started. Its share skips the spool, and one process fewer is forked.
                results: list[tuple[list, list[pa.Array]] | None] = [None] * len(chunks)
                for i in reversed(range(len(chunks))):
                    if not futures[i].cancel():
                        break
                    outcomes = check_chunk(chunks[i])
                    results[i] = (outcomes, _split_bytes(outcomes))
                try:
                    for i, future in enumerate(futures):
                        if results[i] is None:
                            results[i] = (future.result(), _read_spooled(i))
                except BrokenProcessPool as exc:
                    finished = {i for i, result in enumerate(results) if result is not None}
                    finished |= {i for i, f in enumerate(futures) if f.done() and not f.cancelled() and f.exception() is None}
                    raise pool_hygiene.died_error(spool, chunks, finished) from exc
                return results
    finally:
        gc.unfreeze()
