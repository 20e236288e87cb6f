"""core.watch: every change reported exactly once, in bounded ticks, with a cursor that does not grow with files."""

import json
import os
import time
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rayml_assets.lib.common.watch import Entry, FileSet, FsspecTree, LocalTree, poll, tree_for
from rayml_assets.sample import write_batches


class FakeTree:
    """An in-memory store on a logical clock: a folder's stamp moves when an entry is added or removed in it."""

    def __init__(self):
        self.clock = 0
        self.dirs = {"": 0}
        self.files: dict[str, tuple[int, int]] = {}  # path -> (changed, version)

    def _now(self) -> int:
        self.clock += 1
        return self.clock

    def write(self, path: str) -> None:
        t = self._now()
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in self.dirs:
                self.dirs[folder] = t
                self.dirs["/".join(parts[: depth - 1])] = t
        if path not in self.files:
            self.dirs["/".join(parts[:-1])] = t
        self.files[path] = (t, t)  # the version is the write's time: a re-created file is a new state

    def delete(self, path: str) -> None:
        if self.files.pop(path, None):
            self.dirs[path.rpartition("/")[0]] = self._now()

    def fingerprint(self, path: str) -> str:
        version = self.files[path][1]
        return f"fake://{path}|{version}|{version}"

    def stamp(self, rel: str) -> int:
        if rel not in self.dirs:
            raise FileNotFoundError(rel)
        return self.dirs[rel]

    def names(self, rel):
        return [(e.name, e.is_dir) for e in self._kids(rel).values()]

    def children(self, rel, after, limit, names=None):
        kids = self._kids(rel)
        names = [n for n in kids if after is None or n > after]
        return [kids[n] for n in names[:limit]], len(names) <= limit

    def _kids(self, rel) -> dict:
        if rel not in self.dirs:
            raise FileNotFoundError(rel)
        prefix = f"{rel}/" if rel else ""
        kids = {}
        for d in self.dirs:
            if d and d.startswith(prefix) and "/" not in d[len(prefix):]:
                kids[d[len(prefix):]] = Entry(d[len(prefix):], True)
        for f, (changed, version) in self.files.items():
            if f.startswith(prefix) and "/" not in f[len(prefix):]:
                kids[f[len(prefix):]] = Entry(f[len(prefix):], False, version, str(version), changed, f"fake://{f}")
        return dict(sorted(kids.items()))


PATHS = [f"{folder}/f{i}" for folder in ("a", "b", "a/x", "c/y/z") for i in range(4)] + ["top"]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from(PATHS)),
        st.tuples(st.just("delete"), st.sampled_from(PATHS)),
        st.tuples(st.just("poll"), st.integers(1, 6)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
# A rewrite under an old name, then a new later name: the pass that skips the old names must not vouch for them.
@example([("write", "a/f0"), ("poll", 5), ("write", "a/f0"), ("write", "a/f3"), ("poll", 5)])
# The folder changes while the audit is half-way through it: the audit's reports must not be repeated.
@example([("write", "a/f0"), ("write", "a/f1"), ("poll", 1), ("poll", 2), ("write", "a/f0"), ("poll", 1), ("poll", 1),
          ("delete", "a/f1")])
# The same, when the interrupted audit's progress is kept as the folder's marks.
@example([("write", "a/f0"), ("write", "a/f1"), ("write", "a/f2"), ("poll", 10), ("write", "a/f2"), ("poll", 1),
          ("poll", 1), ("write", "a/f3"), ("poll", 5)])
def test_every_change_is_reported_once_and_none_is_missed(ops):
    tree, cursor, reported = FakeTree(), None, []

    def tick(limit: int) -> None:
        nonlocal cursor
        result = poll(tree, cursor, limit=limit, settle_s=0, now_ns=tree.clock)
        assert result.inspected <= limit + limit // 10 + 1, "a tick reads at most limit entries (+ the audit's share)"
        cursor = json.loads(json.dumps(result.cursor))  # as Dagster stores it
        reported.extend(c.fingerprint for c in result.changes)

    for op, arg in ops:
        if op == "write":
            tree.write(arg)
        elif op == "delete":
            tree.delete(arg)
        else:
            tick(arg)
    for _ in range(len(PATHS) + 10):  # quiet ticks: enough for one full audit round at limit 2
        tick(2)
    assert len(reported) == len(set(reported)), "a file state was reported twice"
    missed = {tree.fingerprint(p) for p in tree.files} - set(reported)
    assert not missed, f"never reported: {missed}"


def test_a_file_rewritten_in_place_is_found_by_the_audit():
    tree = FakeTree()
    for i in range(30):
        tree.write(f"a/f{i:02d}")
    first = poll(tree, None, limit=100, settle_s=0, now_ns=tree.clock)
    assert len(first.changes) == 30
    now = tree._now()
    tree.files["a/f17"] = (now, now)  # same name, new content: the folder's stamp does not move
    cursor, found, ticks = first.cursor, [], 0
    while not found:
        ticks += 1
        result = poll(tree, cursor, limit=5, settle_s=0, now_ns=tree.clock)
        cursor, found = result.cursor, result.changes
        assert ticks <= 10
    assert [c.path for c in found] == ["a/f17"]


def _files(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


def test_interleaved_batches_on_disk(tmp_path):
    """sample batches interleave names inside the label folders, so a last-path cursor alone would miss them."""
    landing = tmp_path / "landing"
    tree, cursor, reported = LocalTree(str(landing)), None, []
    assert poll(tree, None).missing
    for batch in range(3):
        write_batches(landing, batches=3, only_batch=batch, limit=60)
        result = poll(tree, cursor, settle_s=0)
        assert result.caught_up
        cursor = result.cursor
        reported += [c.path for c in result.changes]
        assert len(reported) == _files(landing), f"batch {batch}"
    assert len(reported) == len(set(reported))
    assert poll(tree, cursor, settle_s=0).changes == []


def test_files_younger_than_the_settle_margin_wait(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"1")
    result = poll(LocalTree(str(tmp_path)), None, settle_s=60)
    assert result.changes == [] and result.cursor["folders"]["a"][0] is None, "scanned again next tick"
    later = poll(LocalTree(str(tmp_path)), result.cursor, settle_s=60, now_ns=time.time_ns() + 61 * 10**9)
    assert [c.path for c in later.changes] == ["a/x.png"]


def test_ticks_are_bounded_and_the_cursor_does_not_grow_with_files(tmp_path):
    for label in "abcd":
        (tmp_path / label).mkdir()
        for i in range(500):
            (tmp_path / label / f"{i:04d}.png").write_bytes(b"x")
    cursor, seen, ticks = None, [], 0
    while True:
        ticks += 1
        result = poll(LocalTree(str(tmp_path)), cursor, limit=100, settle_s=0)
        assert result.inspected <= 110
        cursor, seen = result.cursor, seen + [c.path for c in result.changes]
        if result.caught_up:
            break
    assert sorted(seen) == sorted(f"{label}/{i:04d}.png" for label in "abcd" for i in range(500))
    assert ticks == 21, "2,000 files and 4 folders at 100 entries a tick"
    assert len(json.dumps(cursor)) < 1_000


def test_fingerprints_match_ingest_and_object_stores_find_new_folders_at_once(tmp_path):
    from rayml_assets.lib.dataset.landing import list_folder

    write_batches(tmp_path, limit=20, dirty=False)
    local = poll(LocalTree(str(tmp_path)), None, settle_s=0)
    assert sorted(c.fingerprint for c in local.changes) == sorted(f.fingerprint for f in list_folder(str(tmp_path)))

    store = FsspecTree(f"file://{tmp_path}")  # how abfss:// is watched: no folder stamps
    cursor = poll(store, None, settle_s=0).cursor
    (tmp_path / "3" / "batch-7").mkdir()
    (tmp_path / "3" / "batch-7" / "new.png").write_bytes(b"x")
    assert [c.path for c in poll(store, cursor, settle_s=0).changes] == ["3/batch-7/new.png"]
    assert isinstance(tree_for(str(tmp_path / "manifest.csv")), LocalTree)


def test_a_file_set_key_depends_on_the_set_not_the_order():
    from rayml_assets.lib.common.watch import Change

    changes = [Change(f"p{i}", f"uri{i}|1|2") for i in range(5)]
    forward, backward = FileSet(), FileSet()
    for c in changes:
        forward.add(c)
    for c in reversed(changes):
        backward.add(c)
    assert forward.key == backward.key and FileSet.from_json(forward.to_json()).key == forward.key
    backward.add(Change("p9", "uri9|1|2"))
    assert backward.key != forward.key


def test_local_folder_names_are_listed_again_only_when_the_folder_changes(tmp_path, monkeypatch):
    folder = tmp_path / "3"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(b"x")
    old = time.time() - 60
    os.utime(folder, (old, old))  # an old stamp: a coarse clock cannot give the next change the same one
    listings = []
    for lister in ("scandir", "listdir"):  # a leaf folder is read with listdir, others with scandir
        real = getattr(os, lister)
        monkeypatch.setattr(os, lister, lambda path, real=real: listings.append(path) or real(path))
    tree = LocalTree(str(tmp_path))

    first, again = tree.names("3"), LocalTree(str(tmp_path)).names("3")
    assert first == again == [(f"{i}.png", False) for i in range(5)]
    assert len(listings) == 1, "an unchanged folder is not listed again, even by a new tree (a new tick)"

    (folder / "10.png").write_bytes(b"x")  # moves the folder's mtime
    assert ("10.png", False) in tree.names("3") and len(listings) == 2
    assert tree.names("3") == tree.names("3") and len(listings) == 4, "a fresh stamp is not trusted: listed each time"


def test_names_cache_is_bounded_and_ignores_fresh_stamps():
    from rayml_assets.lib.common.watch_trees import _NamesCache

    cache = _NamesCache(max_names=5, min_age_ns=10**9)
    old = time.time_ns() - 10 * 10**9
    cache.put("/a", old, [("1", False), ("2", False), ("3", False)])
    cache.put("/b", old, [("4", False), ("5", False)])
    assert cache.get("/a", old) and cache.get("/b", old)
    assert cache.get("/a", old + 1) is None, "another stamp is another listing"
    cache.put("/c", old, [("6", False)])  # 6 names > 5: the oldest folder goes
    assert cache.get("/a", old) is None and cache.get("/b", old) and cache.get("/c", old)
    fresh = time.time_ns()
    cache.put("/d", fresh, [("7", False)])
    assert cache.get("/d", fresh) is None, "a stamp under min_age could be shared with the next change"
