"""What one ingest does with the files it read: the landing is the source of truth for labels.

- The same bytes under one label are one image: the first path in sorted order is stored,
  later copies are duplicates.
- The same bytes under several labels are a labelling error: every copy is quarantined as
  ``label_conflict`` and the image leaves raw_images until the landing is fixed.
- An image of raw_images whose file moved (another label folder, another name) keeps its
  image_id and gets the new label and source_uri: a relabel.

landing_index keeps each file's outcome by fingerprint: ``valid``, ``known``, ``duplicate``
or ``rejected:<reason>@<policy fingerprint>``; the last row of a fingerprint wins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
from deltalake import CommitProperties

from rayml_assets.lib.common import lake
from rayml_assets.lib.common.images import TRANSIENT_REASONS, RejectReason
from rayml_assets.lib.dataset.file_checks import quarantine_row
from rayml_assets.lib.dataset.landing import LandedFile

ACCEPTED = frozenset({"valid", "known", "duplicate"})
# A conflict is resolved by changing another file, so the file's own fingerprint proves nothing.
_RECHECKED = TRANSIENT_REASONS | {RejectReason.LABEL_CONFLICT.value}


def rejected_outcome(reason: str, policy_fp: str) -> str:
    return f"rejected:{reason}@{policy_fp}"


def needs_check(last: tuple[str, str | None] | None, policy_fp: str) -> bool:
    """Whether a file whose fingerprint last had ``(outcome, image_id)`` is read again under the policy ``policy_fp``."""
    if last is None:
        return True
    outcome, image_id = last
    if outcome in ACCEPTED:
        return image_id is None  # older versions recorded a known rejection as "known", without an image
    reason, _, policy = outcome.removeprefix("rejected:").partition("@")
    return reason in _RECHECKED or policy != policy_fp  # rows of older versions ("rejected") have no policy


def last_outcomes(index_uri: str, storage_options: dict | None) -> dict[str, tuple[str, str | None]]:
    """Each fingerprint's last (outcome, image_id) in the append-only landing_index."""
    if not lake.exists(index_uri, storage_options):
        return {}
    columns = ["fingerprint", "outcome", "image_id", "seen_at"]
    table = lake.read_at(index_uri, None, columns, storage_options=storage_options).sort_by("seen_at")  # stable
    outcomes = zip(table.column("outcome").to_pylist(), table.column("image_id").to_pylist())
    return dict(zip(table.column("fingerprint").to_pylist(), outcomes))


@dataclass
class Plan:
    """The changes of one ingest, all decided before anything is committed."""

    inserts: list[dict] = field(default_factory=list)  # raw rows without their bytes
    insert_mask: list[bool] = field(default_factory=list)  # per valid outcome: are its bytes inserted
    updates: list[dict] = field(default_factory=list)  # image_id with its new label and source_uri
    deletes: list[str] = field(default_factory=list)  # image ids taken out of raw_images by a label conflict
    quarantine: list[dict] = field(default_factory=list)  # new quarantine rows
    index_rows: list[dict] = field(default_factory=list)
    already_present: int = 0
    duplicates: int = 0
    relabeled: int = 0
    recovered: int = 0  # files whose last outcome was a rejection and that are accepted now
    recheck: int = 0  # transient rejections: the next ingest reads these files again
    inserted: int = 0  # rows the commits inserted (set by the caller)
    removed: int = 0  # images the commits took out for a label conflict

    @property
    def quarantined(self) -> Counter:
        return Counter(row["reason"] for row in self.quarantine)

    def absorb(self, batch: Plan, inserted: int) -> None:
        """Add one committed batch's counts (and its quarantine rows, for their reasons) to this total."""
        for name in ("already_present", "duplicates", "relabeled", "recovered", "recheck"):
            setattr(self, name, getattr(self, name) + getattr(batch, name))
        self.quarantine += batch.quarantine
        self.inserted += inserted
        self.removed += len(batch.deletes)


@dataclass(frozen=True)
class _Copy:
    source_uri: str
    label: str
    position: int | None  # in the listing; None for raw_images' recorded file outside a partial listing


class _Planner:
    def __init__(self, items, outcomes_at, last, known_q, policy_fp, batch_id, now):
        self.items: list[LandedFile] = items
        self.outcomes_at: dict[int, tuple[str, dict]] = outcomes_at
        self.last, self.known_q, self.policy_fp = last, known_q, policy_fp
        self.batch_id, self.now = batch_id, now
        self.plan = Plan()
        self.final: dict[int, str] = {}  # position -> outcome recorded in landing_index
        self._qids: set[str] = set()

    def quarantine(self, row: dict, position: int | None) -> None:
        if position is not None:
            self.final[position] = rejected_outcome(row["reason"], self.policy_fp)
        if row["quarantine_id"] in self.known_q or row["quarantine_id"] in self._qids:
            if position in self.outcomes_at:
                self.plan.already_present += 1  # the same rejection as before
            return
        if position is not None and position not in self.outcomes_at:
            self.plan.already_present -= 1  # a file not read again, now in a conflict
        self._qids.add(row["quarantine_id"])
        self.plan.quarantine.append({**row, "quarantined_at": self.now, "batch_id": self.batch_id})

    def image_of(self, position: int) -> str | None:
        """The image id of an accepted file: read now, or recorded when it was last read."""
        if position in self.outcomes_at:
            kind, row = self.outcomes_at[position]
            return row["image_id"] if kind != "rejected" else None
        outcome, image_id = self.last.get(self.items[position].fingerprint, (None, None))
        return image_id if outcome in ACCEPTED else None

    def conflict(self, image_id: str, copies: list[_Copy], in_raw: bool) -> None:
        for copy in copies:
            others = ", ".join(f"{c.source_uri} (label {c.label!r})" for c in copies if c != copy)
            item = self.items[copy.position] if copy.position is not None else LandedFile(copy.source_uri, copy.label, "")
            detail = f"the same bytes landed as {others}; resolve it in the landing"
            self.quarantine(quarantine_row(item, RejectReason.LABEL_CONFLICT, detail, item.size, image_id), copy.position)
        if in_raw:
            self.plan.deletes.append(image_id)

    def one_label(self, image_id: str, copies: list[_Copy], recorded: tuple[str, str] | None, valid: dict[int, dict]) -> None:
        read = [c.position for c in copies if c.position in self.outcomes_at]
        fresh = [p for p in read if p in valid]
        for position in read:
            self.final[position] = "known"
        self.plan.already_present += len(read) - len(fresh)
        if recorded is not None:
            source_uri, label = recorded
            uris = [c.source_uri for c in copies]
            if label != copies[0].label or source_uri not in uris:
                new_uri = source_uri if source_uri in uris else uris[0]
                update = {"image_id": image_id, "label": copies[0].label, "source_uri": new_uri, "batch_id": self.batch_id}
                self.plan.updates.append(update)
                self.plan.relabeled += label != copies[0].label
            return
        if not fresh:
            return  # known when read, gone from raw_images since (another writer)
        first, *copies_in_batch = fresh
        self.final[first] = "valid"
        self.plan.inserts.append({**valid[first], "ingested_at": self.now, "batch_id": self.batch_id})
        for position in copies_in_batch:
            self.final[position] = "duplicate"
        self.plan.duplicates += len(copies_in_batch)

    def index_row(self, position: int) -> dict:
        item, outcome = self.items[position], self.final[position]
        image_id = self.image_of(position) if outcome in ACCEPTED else None
        return {
            "fingerprint": item.fingerprint, "source_uri": item.source_uri, "outcome": outcome,
            "image_id": image_id, "batch_id": self.batch_id, "seen_at": self.now,
        }


def plan_ingest(
    items: list[LandedFile],
    todo: list[int],
    outcomes: list[tuple[str, dict]],
    last: dict[str, tuple[str, str | None]],
    recorded: Callable[[set[str]], dict[str, tuple[str, str]]],
    present: Callable[[str], bool],
    known_q: frozenset[str],
    policy_fp: str,
    batch_id: str,
    now: datetime,
) -> Plan:
    """Decide every change of one batch: ``todo`` are the positions in ``items`` that were read (with
    ``outcomes``), ``recorded`` gives raw_images' (source_uri, label) of image ids, and ``present``
    tells whether a recorded file outside ``items`` still exists (a caller's partial listing)."""
    outcomes_at = dict(zip(todo, outcomes))
    planner = _Planner(items, outcomes_at, last, known_q, policy_fp, batch_id, now)
    plan = planner.plan  # already_present counts files read now; the caller adds those it skipped
    valid = {p: row for p, (kind, row) in outcomes_at.items() if kind == "valid"}
    for position, (kind, row) in outcomes_at.items():
        if kind == "rejected":
            planner.quarantine(row, position)
            plan.recheck += row["reason"] in TRANSIENT_REASONS
    touched = {row["image_id"] for kind, row in outcomes if kind != "rejected"}
    groups: dict[str, list[_Copy]] = {}
    for position, item in enumerate(items):  # every copy in the landing of an image read now
        if (image_id := planner.image_of(position)) in touched:
            groups.setdefault(image_id, []).append(_Copy(item.source_uri, item.label, position))
    raw = recorded({row["image_id"] for kind, row in outcomes if kind == "known"})
    for image_id, copies in groups.items():
        in_raw = raw.get(image_id)
        if in_raw is not None and in_raw[0] not in {c.source_uri for c in copies} and present(in_raw[0]):
            copies.append(_Copy(in_raw[0], in_raw[1], None))
        if len({c.label for c in copies}) > 1:
            planner.conflict(image_id, copies, in_raw is not None)
        else:
            planner.one_label(image_id, copies, in_raw, valid)
    plan.insert_mask = [planner.final.get(p) == "valid" for p in valid]
    for position in todo:
        previous = last.get(items[position].fingerprint, (None, None))[0]
        plan.recovered += previous is not None and previous not in ACCEPTED and planner.final[position] in ACCEPTED
    # Skipped files whose outcome changed (copies now in a conflict) are recorded too.
    plan.index_rows = [planner.index_row(p) for p in sorted(planner.final) if items[p].size is not None]
    return plan


_ACTION = "rayml_action"


def commit_raw(
    uri: str, inserts: pa.Table, plan: Plan, metadata: dict[str, str], storage_options: dict | None, others: str | None = None
) -> int:
    """Inserts, relabels and conflict removals in one atomic commit; returns the rows inserted.

    ``others`` (a target filter) names the rows another writer may have added since the caller
    read the known ids: an insert-only commit reads just those, not the whole table.
    """
    if not plan.updates and not plan.deletes:
        metrics = lake.merge_insert_new(uri, inserts, "image_id", lake.RAW_SCHEMA, metadata, storage_options, others)
        return int(metrics.get("num_target_rows_inserted", 0))
    changes = plan.updates + [{"image_id": image_id} for image_id in plan.deletes]
    source = pa.concat_tables([inserts.cast(lake.RAW_SCHEMA), pa.Table.from_pylist(changes, schema=lake.RAW_SCHEMA)])
    actions = ["insert"] * inserts.num_rows + ["update"] * len(plan.updates) + ["delete"] * len(plan.deletes)
    source = source.append_column(_ACTION, pa.array(actions, pa.string()))
    counts = {"rayml.relabeled": str(plan.relabeled), "rayml.label_conflicts_removed": str(len(plan.deletes))}

    def attempt() -> dict:
        merger = lake.open_table(uri, storage_options=storage_options).merge(
            source, "t.image_id = s.image_id", source_alias="s", target_alias="t",
            writer_properties=lake.writer_properties(lake.RAW_SCHEMA), commit_properties=CommitProperties(custom_metadata=metadata | counts),
        )
        return (
            merger.when_matched_update({c: f"s.{c}" for c in ("label", "source_uri", "batch_id")}, predicate=f"s.{_ACTION} = 'update'")
            .when_matched_delete(predicate=f"s.{_ACTION} = 'delete'")
            .when_not_matched_insert({c: f"s.{c}" for c in lake.RAW_SCHEMA.names}, predicate=f"s.{_ACTION} = 'insert'")
            .execute()
        )

    return int(lake.with_commit_retry(attempt).get("num_target_rows_inserted", 0))
