"""The SQLite journal: transitions enforced, restart reconciliation, versions, append-only audit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from acqd.errors import JournalError
from acqd.journal import Journal, Observation
from acqd.states import IllegalTransition, Observed
from acqd.values import Identity, SourceRef, State, WriteResult

ROOT = "/data/acq"


def obs(rel: str, ident: Identity, release: bool = False) -> Observation:
    return Observation(SourceRef(ROOT, rel), ident, "generic", release)


@pytest.fixture
def j(tmp_path: Path) -> Journal:
    clock = iter(range(1_000_000))
    return Journal(tmp_path / "journal.sqlite", clock=lambda: float(next(clock)))


def ship(j: Journal, file_id: int, ident: Identity) -> None:
    j.mark_complete(file_id, ident, "still")
    res = WriteResult("xxh3-128:00", ident.size, ident.size, "none")
    j.record_stored(file_id, "central", f"x/{file_id}", "copy", res)
    j.record_verified(file_id, "central", f"x/{file_id}")


def test_lifecycle_and_restart_reconcile(j: Journal) -> None:
    a = Identity(10, 1, 1)
    [(action, row)] = j.observe_many([obs("s1/a.raw", a)])
    assert action is Observed.NEW and row.state is State.SEEN and row.session == "s1"
    assert j.get(row.id) == row  # the row a new file's observation answers with is the one written
    [(action, row2)] = j.observe_many([obs("s1/a.raw", a)])
    assert action is Observed.TRACK and row2.id == row.id
    ship(j, row.id, a)
    [(action, _)] = j.observe_many([obs("s1/a.raw", a)])
    assert action is Observed.SKIP  # a restart never re-ships a verified file
    [(action, _)] = j.observe_many([obs("s1/a.raw", a, release=True)])
    assert action is Observed.RELEASE
    b = Identity(20, 2, 1)
    [(action, row3)] = j.observe_many([obs("s1/a.raw", b)])
    assert action is Observed.NEW_VERSION and row3.version == 2 and row3.id != row.id
    assert [r.version for r in j.find_versions("s1/a.raw")] == [2, 1]
    assert j.counts()["verified"]["files"] == 1 and j.counts()["seen"]["files"] == 1


def test_illegal_transition_raises_and_changes_nothing(j: Journal) -> None:
    [(_, row)] = j.observe_many([obs("a", Identity(1, 1, 1))])
    with pytest.raises(IllegalTransition):
        j.mark(row.id, State.RELEASED)
    assert j.get(row.id).state is State.SEEN


def test_audit_is_append_only(j: Journal) -> None:
    [(_, row)] = j.observe_many([obs("a", Identity(1, 1, 1))])
    j.mark(row.id, State.QUARANTINED, "zero-byte")
    actions = [a for _, _, a, _ in j.audit_log(row.id)]
    assert actions == ["seen", "quarantined"]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        j._db.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        j._db.execute("UPDATE audit SET action = 'x'")


def test_quarantined_is_reexamined_when_it_changes(j: Journal) -> None:
    a = Identity(1, 1, 1, ctime_ns=5)
    [(_, row)] = j.observe_many([obs("a", a)])
    j.mark(row.id, State.QUARANTINED, "unreadable")
    [(action, _)] = j.observe_many([obs("a", a)])
    assert action is Observed.SKIP
    [(action, row)] = j.observe_many([obs("a", Identity(1, 1, 1, ctime_ns=6))])
    assert action is Observed.RESET and row.state is State.SEEN


def test_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "journal.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="journal"):
        Journal(p)
    assert p.read_bytes().startswith(b"this is not a database")  # untouched


def test_readonly_journal_missing(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        Journal(tmp_path / "nope.sqlite", readonly=True)


def test_a_journal_an_older_acqd_wrote_is_read_as_it_is_and_left_unchanged(tmp_path: Path) -> None:
    """`acqd status` beside a daemon not restarted since an upgrade: the columns added since read as
    empty, nothing is written (the daemon adds them at its next start)."""
    p = tmp_path / "journal.sqlite"
    old = Journal(p)
    [(_, row)] = old.observe_many([obs("s1/a.raw", Identity(10, 1, 1))])
    ship(old, row.id, Identity(10, 1, 1))
    old.close()
    db = sqlite3.connect(p)
    for table, column in (("files", "device"), ("copies", "stamp"), ("copies", "meta_checksum")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.commit()
    db.close()
    before = p.read_bytes()
    ro = Journal(p, readonly=True)
    [copy] = ro.copies_of(row.id)
    assert (copy.tier, copy.state, copy.stamp, copy.meta_checksum) == ("central", "verified", None, None)
    assert ro.get(row.id).state is State.VERIFIED and ro.counts()["verified"]["files"] == 1
    ro.close()
    assert p.read_bytes() == before
    assert "meta_checksum" not in {r[1] for r in sqlite3.connect(p).execute("PRAGMA table_info(copies)")}
    assert "meta_checksum" in {r[1] for r in Journal(p)._db.execute("PRAGMA table_info(copies)")}


def test_release_intent_survives_a_crash_and_is_cleared(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    a, b = Identity(10, 1, 1), Identity(11, 1, 2)
    [(_, ra)], [(_, rb)] = j.observe_many([obs("s/a.raw", a)]), j.observe_many([obs("s/b.raw", b)])
    ship(j, ra.id, a)
    ship(j, rb.id, b)
    j.begin_release(ra.id, f"{ROOT}/s/a.raw")
    j.begin_release(rb.id, f"{ROOT}/s/b.raw")
    j.mark(rb.id, State.RELEASED, None)
    j.close()  # a crash after a's unlink, before "released"
    j = Journal(path)
    assert [(r.id, p) for r, p in j.interrupted_releases()] == [(ra.id, f"{ROOT}/s/a.raw")]
    j.end_release(ra.id)
    assert j.interrupted_releases() == []
    j.close()


def test_a_release_is_begun_only_on_a_verified_row_and_its_end_marks_the_manifest(j: Journal) -> None:
    """`acqd verify` finding the copy damaged between the daemon's look at it and the unlink: the
    release is refused (the source was deleted with only the damaged copy left, and every start then
    stopped at `illegal journal transition seen -> released`: a review). A release recorded marks its
    session's manifest in the same transaction (a crash right after left it saying `verified`)."""
    a, b = Identity(10, 1, 1), Identity(11, 1, 2)
    [(_, ra)], [(_, rb)] = j.observe_many([obs("s/a.raw", a)]), j.observe_many([obs("s/b.raw", b)])
    ship(j, ra.id, a)
    ship(j, rb.id, b)
    [copy] = j.copies_of(ra.id)
    assert j.copy_damaged(ra.id, copy.id, "fixity: corrupt") is not None
    with pytest.raises(IllegalTransition):
        j.begin_release(ra.id, f"{ROOT}/s/a.raw")
    assert j.interrupted_releases() == []
    for root, session in j.dirty_manifests():
        j.manifest_written(root, session, 1e12)
    j.begin_release(rb.id, f"{ROOT}/s/b.raw")
    j.mark(rb.id, State.RELEASED, None)
    assert j.dirty_manifests() == [(ROOT, "s")]


def test_a_copy_moved_or_purged_during_a_manifest_write_keeps_its_session_marked(j: Journal) -> None:
    """The manifest flush reads a session's rows, writes its manifest, then clears the session's mark
    unless a row is newer than its read. A retention purge (or move) in between marked the session
    without a newer row, and the mark was cleared: the manifest kept listing a purged copy (review)."""
    from acqd import journal as jr

    a = Identity(10, 1, 1)
    [(_, row)] = j.observe_many([obs("s/a.raw", a)])
    ship(j, row.id, a)
    for root, session in j.dirty_manifests():
        j.manifest_written(root, session, 1e12)
    as_of = j._clock()  # the flush reads the session's rows ...
    [copy] = j.copies_of(row.id)
    jr.mark_copy(j, copy.id, "purged", "retention.purged")  # ... a sweep purges the copy ...
    j.manifest_written(ROOT, "s", as_of)  # ... the manifest written from what was read
    assert j.dirty_manifests() == [(ROOT, "s")]


def test_a_release_begun_is_found_by_its_inode_and_folder_and_the_name_by_the_inode(tmp_path: Path) -> None:
    """What a scan asks of a file found under a release's hidden name: is a release of that inode in
    that folder begun (the next start puts it back), and what was it called."""
    j = Journal(tmp_path / "journal.sqlite")
    a, b = Identity(10, 1, 77), Identity(11, 1, 78)
    [(_, ra)], [(_, rb)] = j.observe_many([obs("s/a.raw", a)]), j.observe_many([obs("t/b.raw", b)])
    ship(j, ra.id, a)
    ship(j, rb.id, b)
    assert not j.release_begun(ROOT, "s", 77)
    j.begin_release(ra.id, f"{ROOT}/s/a.raw")
    assert j.release_begun(ROOT, "s", 77)
    assert not j.release_begun(ROOT, "t", 77)  # the same inode in another folder: another file
    assert not j.release_begun(ROOT, "s", 78) and not j.release_begun("/elsewhere", "s", 77)
    assert j.name_of_inode(ROOT, "s", 77) == "s/a.raw" and j.name_of_inode(ROOT, "t", 78) == "t/b.raw"
    assert j.name_of_inode(ROOT, "s", 99) is None
    # in another folder: the name the journal knew it by elsewhere (a folder moved or renamed since)
    assert j.name_of_inode(ROOT, "t", 77) == "s/a.raw" and j.name_of_inode(ROOT, "renamed", 78) == "t/b.raw"
    j.mark(ra.id, State.RELEASED, None)
    assert not j.release_begun(ROOT, "s", 77)
    j.close()


def test_group_commit_isolates_a_failing_call_and_commits_the_rest(tmp_path: Path) -> None:
    from acqd.journal import GroupCommitExecutor

    ex = GroupCommitExecutor()
    try:
        j = ex.submit(Journal, tmp_path / "journal.sqlite").result()
        ex.journal = j
        a, b = Identity(10, 1, 1), Identity(20, 2, 2)
        [(_, ra)] = ex.submit(j.observe_many, [obs("s/a.raw", a)]).result()
        [(_, rb)] = ex.submit(j.observe_many, [obs("s/b.raw", b)]).result()
        gate = ex.submit(time.sleep, 0.2)  # hold the thread so the next calls queue up into one group
        ok = ex.submit(j.mark_complete, ra.id, a, "still")
        bad = ex.submit(j.mark, rb.id, State.RELEASED, None)  # seen -> released: illegal
        ok2 = ex.submit(j.audit, rb.id, "note", reason="after the failure")
        gate.result()
        assert ok.result().state is State.COMPLETE
        with pytest.raises(IllegalTransition):
            bad.result()
        assert ok2.result() is None
        j.close()
    finally:
        ex.shutdown()
    j2 = Journal(tmp_path / "journal.sqlite")
    assert j2.get(ra.id).state is State.COMPLETE and j2.get(rb.id).state is State.SEEN
    assert any(action == "note" for _, _, action, _ in j2.audit_log(rb.id))
    j2.close()


def test_a_batchs_steps_change_every_file_they_can_and_say_why_not_for_the_others(j: Journal) -> None:
    """The small-files batch records its three steps for all its files at once (one transaction and
    a few statements each); a file that cannot take a step (a transition the state table forbids, no
    such row, twice in one call, its name recorded as another file's copy) is left exactly as it was
    and says why, and the others are recorded all the same, with their audit entries."""
    idents = {n: Identity(10 + i, i + 1, i + 1) for i, n in enumerate("abcd")}
    seen = j.observe_many([obs(f"s/{n}.raw", i) for n, i in idents.items()])
    ids = {n: row.id for n, (_, row) in zip("abcd", seen, strict=True)}
    j.mark(ids["d"], State.QUARANTINED, "bad")  # quarantined -> complete is not a step the table allows
    out = j.mark_complete_many(
        [(ids[n], idents[n], "still") for n in "abd"] + [(ids["a"], idents["a"], "again"), (999, idents["a"], "x")]
    )
    assert [ok for ok, _ in out] == [True, True, False, False, False]
    assert out[0][1].state is State.COMPLETE and out[0][1].identity.same_content_as(idents["a"])
    assert isinstance(out[2][1], IllegalTransition)
    assert isinstance(out[3][1], JournalError) and "twice" in str(out[3][1])
    assert isinstance(out[4][1], JournalError) and "999" in str(out[4][1])
    assert j.get(ids["d"]).state is State.QUARANTINED and j.get(ids["c"]).state is State.SEEN
    res = {n: WriteResult(f"xxh3-128:{n}", 10, 10, "none") for n in "abc"}
    j.mark_complete(ids["c"], idents["c"], "still")
    # c's name is already a's: refused, a and b recorded
    out = j.record_stored_many(
        "central", "copy", [(ids["a"], "x/a", res["a"]), (ids["b"], "x/b", res["b"]), (ids["c"], "x/a", res["c"])]
    )
    assert [ok for ok, _ in out] == [True, True, False]
    assert "another file's copy" in str(out[2][1])
    assert j.get(ids["c"]).state is State.COMPLETE and j.get(ids["b"]).checksum == "xxh3-128:b"
    assert j.copy_owners("central", ["x/a", "x/b"]) == {"x/a": ids["a"], "x/b": ids["b"]}
    out = j.record_verified_many("central", [(ids["a"], "x/a"), (ids["c"], "x/c")])
    assert [ok for ok, _ in out] == [True, False]  # c was never stored: complete -> verified is refused
    assert out[0][1].state is State.VERIFIED and j.get(ids["b"]).state is State.STORED
    assert [c.state for c in j.copies_of(ids["a"])] == ["verified"] and [c.state for c in j.copies_of(ids["b"])] == [
        "stored"
    ]
    assert j.dirty_manifests() == [(ROOT, "s")]
    actions = {n: [action for _, _, action, _ in j.audit_log(ids[n])] for n in "abcd"}
    assert actions["a"][-3:] == ["complete", "stored", "verified"]
    assert actions["b"][-2:] == ["complete", "stored"] and actions["c"][-1] == "complete"
    assert "complete" not in actions["d"]
    # a file whose own copy has the name, after another item refused it in the same call: recorded
    j.mark(ids["b"], State.COMPLETE, "verify failed")  # stored -> complete: written again under its name
    out = j.record_stored_many("central", "copy", [(ids["c"], "x/b", res["c"]), (ids["b"], "x/b", res["b"])])
    assert [ok for ok, _ in out] == [False, True], out


def test_the_daemons_queries_use_indexes_not_table_scans(tmp_path: Path) -> None:
    """With 10^6 rows a table scan per file would make the journal the bottleneck: every statement
    the per-file path runs must search an index (checked on SQLite's own query plans)."""
    j = Journal(tmp_path / "journal.sqlite")
    seen: list[str] = []
    j._db.set_trace_callback(seen.append)
    a = Identity(10, 1, 1)
    [(_, row)] = j.observe_many([obs("s1/a.raw", a)])
    j.mark_complete(row.id, a, "still")
    j.record_stored(row.id, "central", "x/a", "copy", WriteResult("xxh3-128:00", 10, 10, "none"))
    j.record_verified(row.id, "central", "x/a")
    [(_, row_b)] = j.observe_many([obs("s1/b.raw", a)])  # a batch's steps (small files)
    j.mark_complete_many([(row_b.id, a, "still")])
    j.record_stored_many("central", "copy", [(row_b.id, "x/b", WriteResult("xxh3-128:00", 10, 10, "none"))])
    j.record_verified_many("central", [(row_b.id, "x/b")])
    j.begin_release(row.id, f"{ROOT}/s1/a.raw")
    j.release_begun(ROOT, "s1", a.inode)  # a scan meeting a file under a release's hidden name
    j.mark(row.id, State.RELEASED, None)
    j.observe_many([obs("s1/a.raw", a, release=True)])
    j.pending()
    j.session_files(ROOT, "s1")
    j.manifest_written(ROOT, "s1", 0.0)
    j._db.set_trace_callback(None)
    plans = {}
    for sql in {s for s in seen if s.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))}:
        params = sql.count("?")
        plan = j._db.execute("EXPLAIN QUERY PLAN " + sql, [None] * params).fetchall()
        plans[sql] = " | ".join(p[3] for p in plan)
    assert plans, "no statements traced"
    scans = {sql: p for sql, p in plans.items() if any(f"SCAN {t}" in p for t in ("files", "copies", "f ", "c "))}
    assert scans == {}, scans
    j.close()


def test_copies_in_a_frame_layout_are_told_apart_from_a_journal_of_copies_alone(j: Journal) -> None:
    """The daemon asks at start whether any copy is stored in a frame layout (then the frame
    libraries are imported before any is read back): false for copies in the copy layout alone,
    true once one is Zarr, answered from a partial index, not by reading every copy."""
    for i in range(3):
        [(_, row)] = j.observe_many([obs(f"s/{i}.xml", Identity(10 + i, i + 1, 1))])
        ship(j, row.id, Identity(10 + i, i + 1, 1))
    assert not j.has_frame_copies()
    [(_, row)] = j.observe_many([obs("s/stack.tif", Identity(99, 50, 1))])
    j.mark_complete(row.id, Identity(99, 50, 1), "still")
    j.record_stored(row.id, "central", "x/stack.tif~.zarr", "zarr", WriteResult("xxh3-128:01", 99, 40, "blosc"))
    assert j.has_frame_copies()
    plan = " ".join(str(r) for r in j._db.execute("EXPLAIN QUERY PLAN SELECT 1 FROM copies WHERE layout != 'copy'"))
    assert "copies_framed" in plan, plan


def _verified_at(j: Journal, file_id: int) -> float:
    [(at,)] = j._db.execute("SELECT verified_at FROM copies WHERE file_id = ?", (file_id,)).fetchall()
    return float(at)


@pytest.mark.parametrize("same_boot", [True, False])
def test_a_copy_verified_while_the_wall_clock_is_behind_is_dated_by_the_trusted_calendar(
    tmp_path: Path, same_boot: bool
) -> None:
    """Found by a stranger's review (twenty-sixth session): a copy's age (retention's) counts from
    its `verified_at`, the raw wall clock. Shipped while the clock was 1000 s behind (the clock guard
    saw it and suspended purges), the copies looked 1000 s older once the clock was put right, and
    were purged that much early. A copy is dated no earlier than the guard's trusted calendar, carried
    forward by CLOCK_BOOTTIME within a boot; a clock that runs ahead dates it by the wall, as before."""
    from acqd.journal import _boot_id, set_clock_state

    wall = [1_000_000.0]
    path = tmp_path / "journal.sqlite"
    j = Journal(path, clock=lambda: wall[0])
    boottime = time.clock_gettime(time.CLOCK_BOOTTIME)
    boot = _boot_id() if same_boot else "another-boot"
    calendar = 1_001_000.0  # real time, by the guard's count: the wall clock is 1000 s behind
    doc = {"last": [wall[0], boot, boottime], "trusted": 500.0, "anchor": [calendar - 500.0, 0.0], "suspension": None}
    set_clock_state(j, doc)
    [(_, a)] = j.observe_many([obs("s1/a.raw", Identity(10, 1, 1))])
    ship(j, a.id, Identity(10, 1, 1))
    assert calendar <= _verified_at(j, a.id) <= calendar + 60  # not 1000 s in the past
    j.close()
    j = Journal(path, clock=lambda: wall[0])  # a restart: the calendar is read from the journal
    [(_, b)] = j.observe_many([obs("s1/b.raw", Identity(10, 2, 2))])
    ship(j, b.id, Identity(10, 2, 2))
    assert calendar <= _verified_at(j, b.id) <= calendar + 60
    # the rows' own times stay the wall clock's: a session's manifest, written as of the wall clock
    # after its copies were verified, is up to date (found by a review of the fix: every session
    # verified while the clock was behind was written again every few seconds until it caught up)
    j.manifest_written(a.root, a.session, wall[0] + 1.0)
    assert j.dirty_manifests() == []
    wall[0] = calendar + 5000.0  # a wall clock ahead of the calendar: the later of the two
    [(_, c)] = j.observe_many([obs("s1/c.raw", Identity(10, 3, 3))])
    ship(j, c.id, Identity(10, 3, 3))
    assert _verified_at(j, c.id) == wall[0]
    j.close()


def test_a_move_resumed_after_a_crash_returns_its_own_copy_and_carries_the_warning_to_it(j: Journal) -> None:
    """Found by an adversarial review (thirty-first session): a tier move killed after the new copy
    was recorded is resumed at the next start, and its `add_copy` meets the row already there (an
    upsert that updates). It returned SQLite's `lastrowid`, which after an update is the last row the
    connection inserted anywhere: another file's copy. The first file's warning was carried onto that
    copy, whose file was then purged though no mail ever named it."""
    from acqd import journal as jr

    ids = {}
    for name in ("a1.mrc", "x04.mrc"):
        ident = Identity(size=10, mtime_ns=1, inode=len(ids) + 1, ctime_ns=1, device=1)
        [(_action, row)] = j.observe_many([obs(name, ident)])
        ship(j, row.id, ident)
        ids[name] = row.id
    [a1] = j.copies_of(ids["a1.mrc"])
    jr.record_warnings(j, [a1.id], "alice@lab.net", {a1.id: 5000.0}, 100.0)
    first = jr.add_copy(j, ids["a1.mrc"], "capacity", a1.dest, "copy", a1.as_result(), 200.0, 50.0)
    # the crash, then the start: the other file's copy is the last row inserted
    [x04] = j.copies_of(ids["x04.mrc"])
    other = jr.add_copy(j, ids["x04.mrc"], "capacity", x04.dest, "copy", x04.as_result(), 210.0, 60.0)
    again = jr.add_copy(j, ids["a1.mrc"], "capacity", a1.dest, "copy", a1.as_result(), 220.0, 50.0)
    assert again == first != other
    jr.carry_warnings(j, a1.id, again)
    warned = {c for c, _p, _s, _r in jr.delivered_warnings(j)}
    assert other not in warned and first in warned, warned
    with pytest.raises(JournalError, match="a copy of another file"):  # one name, two files: refused
        jr.add_copy(j, ids["x04.mrc"], "capacity", a1.dest, "copy", a1.as_result(), 230.0, 50.0)
