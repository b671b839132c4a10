"""The journal: SQLite in WAL mode, one row per version of a source file, one per stored copy,
and an append-only audit log. Blocking: every call runs on the journal's single writer thread."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import os
import queue
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acqd.errors import JournalError, NameTakenError
from acqd.states import PENDING, IllegalTransition, Observed, on_observed, transition
from acqd.values import HubAction, Identity, OutboxRecord, SourceRef, State, WriteResult

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- every run this journal made (acqd.claims): a claim naming this journal and a run not here was
-- written by a copy of it, or by the journal a backup was restored over
CREATE TABLE IF NOT EXISTS runs(run TEXT PRIMARY KEY, epoch INTEGER NOT NULL, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY,
    root TEXT NOT NULL,
    relpath TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    current INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    reason TEXT,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL DEFAULT 0,
    device INTEGER NOT NULL DEFAULT 0,
    checksum TEXT,
    detector TEXT NOT NULL,
    session TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS files_current ON files(root, relpath) WHERE current = 1;
CREATE UNIQUE INDEX IF NOT EXISTS files_version ON files(root, relpath, version);
CREATE INDEX IF NOT EXISTS files_state ON files(state);
CREATE INDEX IF NOT EXISTS files_session ON files(root, session);
CREATE TABLE IF NOT EXISTS copies(
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    tier TEXT NOT NULL,
    dest TEXT NOT NULL,
    layout TEXT NOT NULL,
    codec TEXT NOT NULL,
    source_bytes INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    state TEXT NOT NULL,
    stored_at REAL NOT NULL,
    verified_at REAL,
    stored_checksum TEXT,
    stamp TEXT,
    meta_checksum TEXT,
    UNIQUE(tier, dest)
);
CREATE INDEX IF NOT EXISTS copies_file ON copies(file_id);
CREATE INDEX IF NOT EXISTS copies_framed ON copies(layout) WHERE layout != 'copy';
CREATE TABLE IF NOT EXISTS manifests_dirty(
    root TEXT NOT NULL,
    session TEXT NOT NULL,
    PRIMARY KEY (root, session)
);
CREATE TABLE IF NOT EXISTS publishing(
    tier TEXT NOT NULL,
    dest TEXT NOT NULL,
    file_id INTEGER NOT NULL REFERENCES files(id),
    ts REAL NOT NULL,
    PRIMARY KEY (tier, dest)
);
CREATE TABLE IF NOT EXISTS releasing(
    file_id INTEGER PRIMARY KEY REFERENCES files(id),
    path TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit(
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    file_id INTEGER,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS warnings(
    id INTEGER PRIMARY KEY,
    copy_id INTEGER NOT NULL REFERENCES copies(id),
    recipient TEXT NOT NULL,
    purge_at REAL NOT NULL,
    sent_at REAL NOT NULL,
    voided REAL
);
CREATE INDEX IF NOT EXISTS warnings_copy ON warnings(copy_id);
CREATE TABLE IF NOT EXISTS holds(
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    until REAL NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    released REAL,
    root TEXT NOT NULL DEFAULT '',
    placed_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS clock_acks(
    id INTEGER PRIMARY KEY,
    wall REAL NOT NULL,
    boot_id TEXT NOT NULL,
    boottime REAL NOT NULL,
    reason TEXT NOT NULL,
    who TEXT NOT NULL,
    applied REAL
);
CREATE TABLE IF NOT EXISTS outbox(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_notes ON audit(file_id) WHERE action = 'profile-mismatch';
CREATE INDEX IF NOT EXISTS audit_codec ON audit(file_id) WHERE action = 'codec-choice';
CREATE INDEX IF NOT EXISTS audit_release_failed ON audit(file_id) WHERE action = 'release-failed';
CREATE INDEX IF NOT EXISTS audit_release_checks ON audit(file_id)
    WHERE action IN ('release-held', 'read-while-written', 'content-compared', 'cut-short');
CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

#: columns added after the first release of the schema: (table, column, definition), added at open
_ADDED_COLUMNS = (
    ("files", "device", "INTEGER NOT NULL DEFAULT 0"),
    ("copies", "stored_checksum", "TEXT"),
    ("copies", "stamp", "TEXT"),
    ("copies", "meta_checksum", "TEXT"),
)


#: the journal database and its -wal and -shm files: only the daemon's user reads them (SQLite
#: gives the -wal and -shm files the mode of the database file)
JOURNAL_MODE = 0o600


def private(path: Path) -> None:
    """Create `path` as an empty file with JOURNAL_MODE if it is missing; tighten it (and its -wal
    and -shm files) if a looser mode is there from an older version."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, JOURNAL_MODE)
    os.close(fd)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_mode & 0o777 & ~JOURNAL_MODE:
                p.chmod(JOURNAL_MODE)


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    root: str
    relpath: str
    version: int
    state: State
    reason: str | None
    identity: Identity
    checksum: str | None
    detector: str
    session: str
    attempts: int
    first_seen: float
    updated: float

    @property
    def ref(self) -> SourceRef:
        return SourceRef(self.root, self.relpath)


@dataclass(frozen=True, slots=True)
class CopyRow:
    id: int
    file_id: int
    tier: str
    dest: str
    layout: str
    codec: str
    source_bytes: int
    stored_bytes: int
    checksum: str
    state: str
    stored_at: float
    verified_at: float | None
    stored_checksum: str | None = None  # the tier's own checksum of the stored object (S3 metadata), once seen
    stamp: str | None = None  # sizes and modification times of its object(s) when verified (Tier.stamp)
    meta_checksum: str | None = None  # of its metadata as written (Layout.meta_checksum): the calibration

    def as_result(self) -> WriteResult:
        return WriteResult(
            self.checksum, self.source_bytes, self.stored_bytes, self.codec, meta_checksum=self.meta_checksum
        )


@dataclass(frozen=True, slots=True)
class Observation:
    ref: SourceRef
    identity: Identity
    detector: str
    release: bool
    #: its content was hashed and differs from its verified copy's (`Observed.RECHECK`): a new version
    changed: bool = False


def _identity_cols(i: Identity) -> tuple[int, int, int, int, int]:
    """size, mtime_ns, inode, ctime_ns, device: the columns of a file row that say its identity."""
    return i.size, i.mtime_ns, i.inode, i.ctime_ns, i.device


_FILE_COLS = (
    "id, root, relpath, version, state, reason, size, mtime_ns, inode, ctime_ns, checksum, detector, "
    "session, attempts, first_seen, updated, device"
)
#: the reason of a row `copy_lost_for_good` quarantined starts with this (acqd.states.on_observed)
LOST_FOR_GOOD = "copy lost, its source gone: "
#: a superseded version quarantined because its copy was lost with its source (`copy_lost_for_good`)
_LOST_FOR_GOOD = (
    "state = 'quarantined' AND EXISTS (SELECT 1 FROM copies c WHERE c.file_id = files.id AND c.state = 'lost')"
)
#: a stored copy found gone or changed: never trusted again (what was seen of it is forgotten)
_COPY_LOST = "UPDATE copies SET state = 'lost', stored_checksum = NULL, stamp = NULL WHERE id = ?"

_COPY_COLS = (
    "id, file_id, tier, dest, layout, codec, source_bytes, stored_bytes, checksum, state, stored_at, verified_at,"
    " stored_checksum, stamp, meta_checksum"
)


#: the tables of acqd's journal (a reader that finds some of them alone finds one being made)
ACQD_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA))


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added after a table first shipped (CREATE TABLE IF NOT EXISTS keeps old tables as they are)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(holds)")}
    if "root" not in cols:
        db.execute("ALTER TABLE holds ADD COLUMN root TEXT NOT NULL DEFAULT ''")
    if "placed_by" not in cols:  # who placed a hold: "owner:<name>" from the owner page, else the facility
        db.execute("ALTER TABLE holds ADD COLUMN placed_by TEXT NOT NULL DEFAULT ''")
    if "voided" not in {r[1] for r in db.execute("PRAGMA table_info(warnings)")}:  # a warning called off
        db.execute("ALTER TABLE warnings ADD COLUMN voided REAL")


_STATES = {s.value: s for s in State}


def _file_row(r: tuple[Any, ...]) -> FileRow:
    return FileRow(
        id=r[0],
        root=r[1],
        relpath=r[2],
        version=r[3],
        state=_STATES[r[4]],
        reason=r[5],
        identity=Identity(r[6], r[7], r[8], r[9], r[16]),
        checksum=r[10],
        detector=r[11],
        session=r[12],
        attempts=r[13],
        first_seen=r[14],
        updated=r[15],
    )


def _copy_row(r: tuple[Any, ...]) -> CopyRow:
    return CopyRow(*r)


class Journal:
    """SQLite journal. Not thread-safe by design: the daemon owns one thread that calls it."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time, readonly: bool = False) -> None:
        self.path = path
        self._clock = clock
        self._calendar: tuple[float, str, float] | None = None  # `_verified_now`: (calendar, boot id, boottime)
        self._calendar_read = False
        try:
            if readonly:
                if not path.exists():
                    raise JournalError(f"no journal at {path} (has acqd run with this state directory?)")
                self._db = sqlite3.connect(
                    f"file:{path}?mode=ro",
                    uri=True,
                    check_same_thread=False,
                    timeout=10,
                    isolation_level=None,
                )
                self._older_columns_empty()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                private(path)
                self._db = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA foreign_keys=ON")
                ok = self._db.execute("PRAGMA quick_check").fetchone()
                if ok is None or ok[0] != "ok":
                    raise JournalError(f"journal {path} is corrupt: {ok[0] if ok else 'no answer'}")
                self._db.executescript(_SCHEMA)
                self._add_columns()
                _migrate(self._db)
                with self._tx():
                    self._db.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                    # who this journal is: the destination's claim names it (acqd.claims)
                    self._db.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES('journal_id', ?)", (uuid.uuid4().hex,)
                    )
            st = path.stat()
            self._identity = (st.st_dev, st.st_ino)
            self.journal_id: str = ""
            with contextlib.suppress(sqlite3.OperationalError):  # a reader early: no schema yet
                r = self._db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
                self.journal_id = r[0] if r else ""
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None
        except OSError as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None

    def check_schema(self) -> None:
        """For a command that reads the journal: JournalError in one line if it is not one acqd can read
        (empty, being made by a daemon starting, or another program's database); a traceback at its first
        query before (a stranger's review). Readers of the daemon itself (tests, the owner page) open a
        journal being made as it is, and wait for its tables."""
        path = self.path
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:  # an empty file, or a daemon that has only just made it
            raise JournalError(f"the journal {path} is empty: no acqd has recorded anything in it yet")
        if not {"files", "copies", "meta"} <= tables and tables <= ACQD_TABLES:  # a daemon making it now
            raise JournalError(f"the journal {path} is being made (an acqd starting): try again in a moment")
        if not {"files", "copies", "meta"} <= tables:  # said in one line, not a traceback at the first query
            raise JournalError(
                f"{path} is not an acqd journal (an SQLite database without acqd's tables): is this "
                "the state directory of an acqd?"
            )

    def still_mine(self) -> str | None:
        """None while the journal file this object opened is still the one at its path; otherwise
        why not (deleted, or replaced by another file): a daemon must not go on shipping then."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return f"the journal {self.path} was deleted while acqd was running"
        except OSError as exc:
            return f"the journal {self.path} cannot be checked: {exc.strerror}"
        if (st.st_dev, st.st_ino) != self._identity:
            return f"the journal {self.path} was replaced by another file while acqd was running"
        return None

    def _older_columns_empty(self) -> None:
        """A read-only look at a journal an older acqd wrote (the daemon not restarted since the
        upgrade: `acqd status` beside it): each table that lacks a column added since is read through
        a temporary view of the same name (the temp schema comes first for unqualified names) that
        gives the missing columns their default (NULL where none), as the upgrade would. Nothing is
        written to the journal."""
        missing: dict[str, list[str]] = {}
        for table, column, definition in _ADDED_COLUMNS:
            have = {r[1] for r in self._db.execute(f"PRAGMA main.table_info({table})")}
            if have and column not in have:
                default = definition.partition(" DEFAULT ")[2] or "NULL"
                missing.setdefault(table, []).append(f"{default} AS {column}")
        for table, columns in missing.items():
            extra = ", ".join(columns)
            self._db.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {extra} FROM main.{table}")

    def _add_columns(self) -> None:
        """Bring a journal written by an earlier acqd up to the current columns (idempotent)."""
        for table, column, definition in _ADDED_COLUMNS:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA optimize")  # keeps the planner's statistics current (cheap)
        self._db.close()

    # -- plumbing -----------------------------------------------------------------------------
    class _Tx:
        """One unit of change: its own transaction, or a savepoint inside a group commit."""

        def __init__(self, db: sqlite3.Connection, grouped: bool) -> None:
            self.db, self.grouped = db, grouped

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("SAVEPOINT unit" if self.grouped else "BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, et: object, ev: object, tb: object) -> None:
            if self.grouped:
                if et is not None:
                    self.db.execute("ROLLBACK TO unit")
                self.db.execute("RELEASE unit")
            elif et is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")

    _grouped = False

    def _tx(self) -> Journal._Tx:
        return Journal._Tx(self._db, self._grouped)

    def run_group(self, calls: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        """Run `calls` in one transaction, each in its own savepoint (a failing call changes nothing
        and does not affect the others), and commit once: one fsync for many changes. Returns
        (ok, result or exception) per call; if the commit itself fails, every call failed."""
        out: list[tuple[bool, Any]] = []
        if self._grouped:  # called inside a group commit already: its transaction holds these too
            for call in calls:
                try:
                    out.append((True, call()))
                except BaseException as exc:
                    out.append((False, exc))
            return out
        self._db.execute("BEGIN IMMEDIATE")
        self._grouped = True
        try:
            for call in calls:
                try:
                    out.append((True, call()))
                except BaseException as exc:
                    out.append((False, exc))
        finally:
            self._grouped = False
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            err = JournalError(f"journal commit failed: {exc}")
            return [(False, err) for _ in calls]
        return out

    def _verified_now(self) -> float:
        """The time a copy is recorded verified at (`copies.verified_at`, which retention ages it from):
        the wall clock, never earlier than the retention clock guard's trusted calendar (as of its last
        sweep, carried forward by CLOCK_BOOTTIME within the same boot). A wall clock set back (a dead
        CMOS battery, no NTP) would otherwise date copies in the past, and once it is put right they
        would be purged early by as much (a stranger's review); a clock that runs ahead only makes a
        copy look younger (its purge waits longer)."""
        now = self._clock()
        if not self._calendar_read:
            self._calendar_read = True
            try:
                r = self._db.execute("SELECT value FROM meta WHERE key = 'retention_clock'").fetchone()
                if r is not None:
                    self._note_calendar(json.loads(r[0]))
            except (sqlite3.Error, ValueError, KeyError, TypeError, IndexError):
                self._calendar = None
        if self._calendar is None:
            return now
        calendar, boot, boottime = self._calendar
        if boot == _boot_id():
            calendar += max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - boottime)
        return max(now, calendar)

    def _note_calendar(self, doc: dict[str, Any]) -> None:
        """The clock guard's state as `set_clock_state` writes it: its trusted calendar, for `_verified_now`."""
        anchor_wall, anchor_trusted = (float(x) for x in doc["anchor"])
        _wall, boot, boottime = doc["last"]
        self._calendar = (anchor_wall + float(doc["trusted"]) - anchor_trusted, str(boot), float(boottime))

    def _audit(self, file_id: int | None, action: str, **detail: Any) -> None:
        self._db.execute(
            "INSERT INTO audit(ts, file_id, action, detail) VALUES(?, ?, ?, ?)",
            (self._clock(), file_id, action, json.dumps(detail, sort_keys=True, default=str)),
        )

    def _get(self, file_id: int) -> FileRow:
        r = self._db.execute(f"SELECT {_FILE_COLS} FROM files WHERE id = ?", (file_id,)).fetchone()
        if r is None:
            raise JournalError(f"no journal row {file_id}")
        return _file_row(r)

    def _rows(self, ids: Iterable[int]) -> dict[int, FileRow]:
        """The rows of `ids` (those that exist), with one statement per 500 of them."""
        ids = list(ids)
        out: dict[int, FileRow] = {}
        for k in range(0, len(ids), 500):
            part = ids[k : k + 500]
            marks = ",".join("?" * len(part))
            for r in self._db.execute(f"SELECT {_FILE_COLS} FROM files WHERE id IN ({marks})", part):
                out[r[0]] = _file_row(r)
        return out

    def _movable(self, ids: list[int], new: State) -> list[BaseException | None]:
        """Per id of `ids`, why its row cannot move to `new` (None: it can): no such row, a transition
        the state table forbids, or the same row twice in one call."""
        states: dict[int, State] = {}
        for k in range(0, len(ids), 500):
            part = ids[k : k + 500]
            marks = ",".join("?" * len(part))
            for fid, state in self._db.execute(f"SELECT id, state FROM files WHERE id IN ({marks})", part):
                states[fid] = _STATES[state]
        why: list[BaseException | None] = []
        seen: set[int] = set()
        for fid in ids:
            old = states.get(fid)
            if old is None:
                why.append(JournalError(f"no journal row {fid}"))
            elif fid in seen:
                why.append(JournalError(f"journal row {fid} twice in one change"))
            else:
                try:
                    transition(old, new)
                    why.append(None)
                except IllegalTransition as exc:
                    why.append(exc)
            seen.add(fid)
        return why

    def _audits(self, rows: list[tuple[int, str, dict[str, Any]]], ts: float) -> None:
        self._db.executemany(
            "INSERT INTO audit(ts, file_id, action, detail) VALUES(?, ?, ?, ?)",
            [(ts, fid, action, json.dumps(detail, sort_keys=True, default=str)) for fid, action, detail in rows],
        )

    @staticmethod
    def _results(why: list[BaseException | None], ids: list[int], rows: dict[int, FileRow]) -> list[tuple[bool, Any]]:
        return [(False, w) if w is not None else (True, rows[fid]) for fid, w in zip(ids, why, strict=True)]

    @staticmethod
    def _one(results: list[tuple[bool, Any]]) -> Any:
        ok, value = results[0]
        if not ok:
            raise value
        return value

    def _set(self, row: FileRow, new: State, reason: str | None = None, **cols: Any) -> None:
        transition(row.state, new)
        sets = ", ".join(f"{k} = ?" for k in cols)
        self._db.execute(
            f"UPDATE files SET state = ?, reason = ?, updated = ?{', ' + sets if sets else ''} WHERE id = ?",
            (new.value, reason, self._clock(), *cols.values(), row.id),
        )

    # -- intake -------------------------------------------------------------------------------
    def lookup(self, ref: SourceRef) -> FileRow | None:
        r = self._db.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE root = ? AND relpath = ? AND current = 1",
            (ref.root, ref.relpath),
        ).fetchone()
        return _file_row(r) if r else None

    def observe_many(self, observations: Iterable[Observation]) -> list[tuple[Observed, FileRow]]:
        """Reconcile observed files with the journal in one transaction; return what to do with each."""
        out: list[tuple[Observed, FileRow]] = []
        now = self._clock()
        with self._tx() as db:
            for ob in observations:
                row = self.lookup(ob.ref)
                action = on_observed(
                    row.state if row else None,
                    row.identity if row else None,
                    ob.identity,
                    ob.release,
                    row is not None and row.state is State.QUARANTINED and (row.reason or "").startswith(LOST_FOR_GOOD),
                )
                if ob.changed and (action is Observed.RECHECK or (row is not None and row.state is State.VERIFIED)):
                    # its content is known to differ from the copy's (`Pipeline._recheck`, a held file's
                    # compared before its release: `_still_shipped`), its identity the same or not
                    action = Observed.NEW_VERSION
                i = ob.identity
                if action is Observed.NEW or action is Observed.NEW_VERSION:
                    version = 1
                    if row is not None:
                        version = row.version + 1
                        db.execute("UPDATE files SET current = 0 WHERE id = ?", (row.id,))
                    cur = db.execute(
                        "INSERT INTO files(root, relpath, version, state, size, mtime_ns, inode, ctime_ns, device,"
                        " detector, session, first_seen, updated) VALUES(?, ?, ?, 'seen', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            ob.ref.root,
                            ob.ref.relpath,
                            version,
                            i.size,
                            i.mtime_ns,
                            i.inode,
                            i.ctime_ns,
                            i.device,
                            ob.detector,
                            ob.ref.session,
                            now,
                            now,
                        ),
                    )
                    fid = int(cur.lastrowid or 0)
                    self._audit(fid, "seen", size=i.size, version=version)
                    row = FileRow(  # the row just inserted, as `_get` would read it back
                        id=fid,
                        root=ob.ref.root,
                        relpath=ob.ref.relpath,
                        version=version,
                        state=State.SEEN,
                        reason=None,
                        identity=i,
                        checksum=None,
                        detector=ob.detector,
                        session=ob.ref.session,
                        attempts=0,
                        first_seen=now,
                        updated=now,
                    )
                elif action is Observed.RESET and row is not None:
                    self._set(
                        row,
                        State.SEEN,
                        None,
                        size=i.size,
                        mtime_ns=i.mtime_ns,
                        inode=i.inode,
                        ctime_ns=i.ctime_ns,
                        device=i.device,
                        attempts=0,
                    )
                    self._audit(row.id, "seen", size=i.size, changed=True, was=row.state.value)
                    row = self._get(row.id)
                assert row is not None
                out.append((action, row))
        return out

    def refresh_identity(self, file_id: int, identity: Identity) -> FileRow:
        """A verified file whose change time alone moved (`Observed.RECHECK`), its content hashed and
        found to be the verified copy's: the row takes the file's identity as it is now (what a release
        compares). Refused (IllegalTransition) unless the row is still verified and current."""
        with self._tx() as db:
            row = self._get(file_id)
            current = db.execute("SELECT current FROM files WHERE id = ?", (file_id,)).fetchone()
            if row.state is not State.VERIFIED or not current or not current[0]:
                raise IllegalTransition(row.state, State.VERIFIED)
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, inode = ?, ctime_ns = ?, device = ?, updated = ?"
                " WHERE id = ?",
                (*_identity_cols(identity), self._clock(), file_id),
            )
            self._audit(
                file_id,
                "identity-refreshed",
                reason="only its change time moved (a chmod, a new link); its content is the verified copy's",
                ctime_ns=identity.ctime_ns,
                was=row.identity.ctime_ns,
            )
            return self._get(file_id)

    # -- state changes ------------------------------------------------------------------------
    def mark(self, file_id: int, new: State, reason: str | None = None, **detail: Any) -> FileRow:
        with self._tx() as db:
            row = self._get(file_id)
            self._set(row, new, reason)
            self._audit(file_id, new.value, reason=reason, **detail)
            if new is State.RELEASED:
                db.execute("DELETE FROM releasing WHERE file_id = ?", (file_id,))
                # the manifest says each file's state: written again, also after a crash right now
                db.execute(
                    "INSERT OR IGNORE INTO manifests_dirty(root, session) VALUES (?, ?)", (row.root, row.session)
                )
            return self._get(file_id)

    # -- release intent: a crash between the unlink and "released" must not leave a row "verified"
    def begin_release(self, file_id: int, path: str) -> None:
        """Record that the source is about to be unlinked (committed before the unlink). Refused
        (IllegalTransition) unless the row is still verified: `acqd verify` may have found its copy
        damaged since the release looked at it (the row is then pending, to be shipped again)."""
        with self._tx() as db:
            row = self._get(file_id)
            if row.state is not State.VERIFIED:
                raise IllegalTransition(row.state, State.RELEASED)
            db.execute(
                "INSERT OR REPLACE INTO releasing(file_id, path, ts) VALUES (?, ?, ?)", (file_id, path, self._clock())
            )

    def end_release(self, file_id: int) -> None:
        """The unlink did not happen (the file changed or was already gone): forget the intent."""
        with self._tx() as db:
            db.execute("DELETE FROM releasing WHERE file_id = ?", (file_id,))

    def release_begun(self, root: str, folder: str, inode: int) -> bool:
        """Is a release begun in the journal of a file of this inode in `folder` of `root` (the next
        start puts such a file back)? Looks only at the releases begun, a handful of rows: the files
        table is searched from them by key, never scanned (a burst of 100,000 files moves many aside
        for an instant, each looked at here)."""
        rows = self._db.execute(
            "SELECT f.relpath FROM releasing r CROSS JOIN files f ON f.id = r.file_id WHERE f.root = ? AND f.inode = ?",
            (root, inode),
        ).fetchall()
        return any(rel.rpartition("/")[0] == folder for (rel,) in rows)

    def name_of_inode(self, root: str, folder: str, inode: int) -> str | None:
        """The path the journal last knew a file of this inode by in `folder` of `root`, else in any
        folder of it (a folder moved or renamed since); None if none: what a file found under a
        release's hidden name was called. A scan of the root's files
        (there is no index on inodes): asked once per file left aside, not per file moved aside."""
        rows = self._db.execute(
            "SELECT relpath FROM files WHERE root = ? AND inode = ? ORDER BY id DESC", (root, inode)
        ).fetchall()
        here = next((rel for (rel,) in rows if rel.rpartition("/")[0] == folder), None)
        return here if here is not None or not rows else str(rows[0][0])  # else: its folder moved or renamed

    def interrupted_releases(self) -> list[tuple[FileRow, str]]:
        """Releases begun and not recorded as done (a crash in between): row and source path."""
        rows = self._db.execute("SELECT file_id, path FROM releasing ORDER BY file_id").fetchall()
        return [(self._get(fid), path) for fid, path in rows]

    def pin_stamp(self, copy_id: int, stamp: str) -> None:
        """A verified copy whose stamp changed (a network filesystem's times, a storage migration) and
        whose content was read back and verified again: its stamp as it is now."""
        with self._tx() as db:
            db.execute("UPDATE copies SET stamp = ? WHERE id = ? AND state = 'verified'", (stamp, copy_id))

    def pin_stored_checksum(self, copy_id: int, checksum: str) -> None:
        """Remember the tier's own checksum of a verified copy (read right after its verification), so
        that a later re-check before a release can tell a replaced object from the one verified."""
        with self._tx() as db:
            db.execute(
                "UPDATE copies SET stored_checksum = ? WHERE id = ? AND stored_checksum IS NULL", (checksum, copy_id)
            )

    def copy_lost(self, file_id: int, copy_id: int, reason: str) -> FileRow:
        """The verified copy was found gone or changed before the local file was released: the copy
        is no longer counted, the row goes back to seen and the file is shipped again."""
        with self._tx() as db:
            row = self._get(file_id)
            self._set(row, State.SEEN, reason, attempts=0)
            db.execute(_COPY_LOST, (copy_id,))
            db.execute("DELETE FROM releasing WHERE file_id = ?", (file_id,))
            db.execute("INSERT OR IGNORE INTO manifests_dirty(root, session) VALUES (?, ?)", (row.root, row.session))
            self._audit(file_id, "copy-lost", copy=copy_id, reason=reason)
            return self._get(file_id)

    def copy_damaged(self, file_id: int, copy_id: int, reason: str) -> FileRow | None:
        """`acqd verify` found the verified copy of a file not yet released damaged: as `copy_lost`,
        in one transaction with the checks, unless a release of the file has begun (the daemon's
        intent, with which its next start puts back a source it moved aside, is never dropped
        here). None when nothing was recorded (released, or a release in progress)."""
        with self._tx() as db:
            row = self._get(file_id)
            if row.state is not State.VERIFIED:
                return None
            if db.execute("SELECT 1 FROM releasing WHERE file_id = ?", (file_id,)).fetchone():
                return None
            self._set(row, State.SEEN, reason, attempts=0)
            db.execute(_COPY_LOST, (copy_id,))
            db.execute("INSERT OR IGNORE INTO manifests_dirty(root, session) VALUES (?, ?)", (row.root, row.session))
            self._audit(file_id, "copy-lost", copy=copy_id, reason=reason)
            return self._get(file_id)

    def copy_lost_for_good(self, file_id: int, copy_id: int, reason: str) -> FileRow | None:
        """`acqd verify` found the verified copy of a file not yet released damaged, and its source is
        no longer on the acquisition disk as it was shipped (deleted, or a newer version there): this
        version has no copy left that acqd knows. The row is quarantined with the reason, so that
        `acqd status`, the quarantine metric and its alert keep saying so (not `seen`, which the next
        scan would turn into "vanished" and forget). The same for a file already released: its copy is
        no longer counted as good (retention neither moves nor purges it, nor counts it), and the file
        is said until a person restores it. None as for `copy_damaged`."""
        with self._tx() as db:
            row = self._get(file_id)
            if row.state is not State.VERIFIED and row.state is not State.RELEASED:
                return None
            if db.execute("SELECT 1 FROM releasing WHERE file_id = ?", (file_id,)).fetchone():
                return None
            self._set(row, State.QUARANTINED, f"{LOST_FOR_GOOD}{reason}")
            db.execute(_COPY_LOST, (copy_id,))
            db.execute("INSERT OR IGNORE INTO manifests_dirty(root, session) VALUES (?, ?)", (row.root, row.session))
            self._audit(file_id, "copy-lost", copy=copy_id, reason=reason)
            return self._get(file_id)

    def mark_complete(self, file_id: int, identity: Identity, reason: str) -> FileRow:
        """The file settled: record the identity it settled at (what release compares against)."""
        return self._one(self.mark_complete_many([(file_id, identity, reason)]))  # type: ignore[no-any-return]

    def mark_complete_many(self, items: list[tuple[int, Identity, str]]) -> list[tuple[bool, Any]]:
        """`mark_complete` for many files in one transaction and a few statements. Per item (ok, the
        row as it now is) or (False, why it was not changed): the others are changed all the same."""
        ids = [fid for fid, _i, _r in items]
        with self._tx() as db:
            why = self._movable(ids, State.COMPLETE)
            now = self._clock()
            do = [x for x, w in zip(items, why, strict=True) if w is None]
            db.executemany(
                "UPDATE files SET state = ?, reason = NULL, updated = ?, size = ?, mtime_ns = ?, inode = ?,"
                " ctime_ns = ?, device = ? WHERE id = ?",
                [
                    (State.COMPLETE.value, now, i.size, i.mtime_ns, i.inode, i.ctime_ns, i.device, fid)
                    for fid, i, _r in do
                ],
            )
            self._audits([(fid, "complete", {"reason": r, "size": i.size}) for fid, i, r in do], now)
            return self._results(why, ids, self._rows(fid for fid, _i, _r in do))

    def put_back(self, file_id: int, ctime_ns: int, reason: str) -> FileRow:
        """A file its interrupted release had moved aside is back under its name, the same inode with
        the same size and mtime: only the move changed its ctime. Recorded, so that it is not taken
        for a rewrite and shipped again; the release then starts over with every check."""
        with self._tx() as db:
            db.execute("UPDATE files SET ctime_ns = ?, updated = ? WHERE id = ?", (ctime_ns, self._clock(), file_id))
            self._audit(file_id, "release-undone", reason=reason, ctime_ns=ctime_ns)
            return self._get(file_id)

    def bump_attempts(self, file_id: int, reason: str) -> int:
        with self._tx() as db:
            db.execute(
                "UPDATE files SET attempts = attempts + 1, reason = ?, updated = ? WHERE id = ?",
                (reason, self._clock(), file_id),
            )
            self._audit(file_id, "retry", reason=reason)
            return int(db.execute("SELECT attempts FROM files WHERE id = ?", (file_id,)).fetchone()[0])

    def begin_publish(self, file_id: int, tier: str, dest: str, roots: Collection[str] | None = None) -> bool:
        """About to publish a copy under `dest`: if a crash comes between its publication and its record
        (`record_stored`, which ends this), the journal knows that an object there may be this file's
        (a copy of its earlier content, if it changed meanwhile: kept, `keep_unrecorded`), and
        whose part of a tree an object store's copy, cut short, is. Returns whether an earlier attempt
        of this file had noted it already (its end unknown: a crash may have come after the rename)."""
        noted = self.publishing_owner(tier, dest) == file_id
        if not self.begin_publish_many(tier, [(file_id, dest)], roots)[0]:
            r = self.publishing_owner(tier, dest)
            other = self._get(r) if r is not None else None
            where = f"{os.path.join(other.root, other.relpath)!r} (version {other.version})" if other else f"row {r}"
            raise NameTakenError(
                f"{tier}:{dest} is being published for {where}, another file of this journal with the same "
                "stored name, still shipping: give each watch root its own `prefix`"
            )
        return noted

    def keep_unrecorded(self, file_id: int, tier: str, dest: str, why: str) -> FileRow:
        """An object this journal does not record is under `dest`, not a copy of the file as it is now,
        and an earlier attempt of this row had noted publishing it (its end unknown): this file's copy of
        an earlier content (a crash between its publication and its record, the file changed since),
        or somebody else's (an object put there after an attempt that failed before its rename). Never
        removed: the row ends (vanished, not current; its note goes; the audit names the object) and a
        new row, the next version, takes the file, shipped under a name of its own. Returns the new row.
        Refused (IllegalTransition) unless the row is current and not yet shipped."""
        with self._tx() as db:
            row = self._shipping_row(file_id, State.VANISHED)
            reason = f"an object not recorded is under its name, kept ({tier}:{dest}); shipped as the next version"
            self._set(row, State.VANISHED, reason)
            self._audit(file_id, "unrecorded-kept", tier=tier, dest=dest, reason=why)
            return self._next_version(db, row)

    def keep_stored(
        self, file_id: int, tier: str, dest: str, verified: bool, why: str, *, gone: bool = False, lost: bool = False
    ) -> FileRow:
        """This row's copy under `dest`, recorded stored and never verified (a crash came between its
        record and its verification), or recorded lost by `acqd verify`, is not a copy of the file as it
        is now: the file changed since (rewritten, or deleted and written again under its name). Never
        removed (it may be the only copy of the earlier content): the row ends, not current. `verified`
        (the copy was just read back and matched the checksum recorded when it was written): the row
        and the copy are verified, a superseded version like any other, its size the one shipped; else
        the row is vanished, the copy left as it was recorded. A new row, the next version, takes the
        file, shipped under a name of its own. Returns the new row. `gone`: the file is gone from the
        acquisition disk (deleted by its owner): no next version; returns this row, verified or vanished.
        `lost`: nothing is under `dest` any more (the copy recorded lost, nothing kept; the row vanished).
        Refused (IllegalTransition) unless the row is current and not yet shipped, or (JournalError) if no
        such copy is recorded."""
        with self._tx() as db:
            row = self._shipping_row(file_id, State.VERIFIED if verified else State.VANISHED)
            copy = db.execute(
                "SELECT source_bytes, checksum, id FROM copies WHERE file_id = ? AND tier = ? AND dest = ?",
                (file_id, tier, dest),
            ).fetchone()
            if copy is None:
                raise JournalError(f"no copy {tier}:{dest} of journal row {file_id} is recorded")
            now = self._clock()  # the rows' `updated` (what a manifest is written as of): the wall clock
            if verified:
                db.execute(
                    "UPDATE files SET state = ?, reason = ?, updated = ?, size = ?, checksum = ? WHERE id = ?",
                    (State.VERIFIED.value, None, now, copy[0], copy[1], file_id),
                )
                db.execute(
                    "UPDATE copies SET state = 'verified', verified_at = ? WHERE tier = ? AND dest = ?",
                    (self._verified_now(), tier, dest),
                )
                self._audit(file_id, "verified", tier=tier, dest=dest, checksum=copy[1])
                db.execute(
                    "INSERT OR IGNORE INTO manifests_dirty(root, session) VALUES (?, ?)", (row.root, row.session)
                )
            elif lost:
                db.execute(_COPY_LOST, (copy[2],))
                self._set(row, State.VANISHED, f"its stored copy ({tier}:{dest}) is not there either: {why}")
                self._audit(file_id, "copy-lost", tier=tier, dest=dest, reason=why)
                return self._get(file_id)
            else:
                self._set(row, State.VANISHED, f"its stored copy kept ({tier}:{dest}): {why}")
            self._audit(file_id, "stored-kept", tier=tier, dest=dest, verified=verified, reason=why)
            return self._get(file_id) if gone else self._next_version(db, row)

    def _shipping_row(self, file_id: int, new: State) -> FileRow:
        """The row of `file_id`, current and not yet shipped; else IllegalTransition to `new`."""
        row = self._get(file_id)
        current = self._db.execute("SELECT current FROM files WHERE id = ?", (file_id,)).fetchone()
        if not current or not current[0] or row.state not in (State.SEEN, State.COMPLETE, State.STORED):
            raise IllegalTransition(row.state, new)
        return row

    def _next_version(self, db: sqlite3.Connection, row: FileRow) -> FileRow:
        """`row` ends (not current, its publication notes gone); a new row, its next version, takes
        the file as it is now (`row`'s identity), seen."""
        now = self._clock()
        db.execute("DELETE FROM publishing WHERE file_id = ?", (row.id,))
        db.execute("UPDATE files SET current = 0 WHERE id = ?", (row.id,))
        cur = db.execute(
            "INSERT INTO files(root, relpath, version, state, size, mtime_ns, inode, ctime_ns, device,"
            " detector, session, first_seen, updated) VALUES(?, ?, ?, 'seen', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.root,
                row.relpath,
                row.version + 1,
                *_identity_cols(row.identity),
                row.detector,
                row.session,
                now,
                now,
            ),
        )
        fid = int(cur.lastrowid or 0)
        self._audit(fid, "seen", size=row.identity.size, version=row.version + 1)
        return self._get(fid)

    def begin_publish_many(
        self, tier: str, items: list[tuple[int, str]], roots: Collection[str] | None = None
    ) -> list[bool]:
        """`begin_publish` for many copies in one transaction: False where `dest` is being published
        for another row still shipping from one of the watch `roots` (all roots: None); nothing
        recorded for it. The note of a row gone since, or of a root no longer watched, is taken over
        (an object under the name is then kept, never taken for this file's: `keep_unrecorded`)."""
        out = []
        with self._tx() as db:
            now = self._clock()
            for file_id, dest in items:
                r = db.execute("SELECT file_id FROM publishing WHERE tier = ? AND dest = ?", (tier, dest)).fetchone()
                if r is not None and r[0] != file_id:
                    other = db.execute("SELECT current, state, root FROM files WHERE id = ?", (r[0],)).fetchone()
                    if (
                        other is not None
                        and other[0]
                        and other[1] in ("seen", "complete", "stored")
                        and (roots is None or other[2] in roots)
                    ):
                        out.append(False)  # a file still shipping under this name (two roots, one prefix)
                        continue
                    # the note of a row gone since (vanished, superseded): this file's now
                db.execute(
                    "INSERT OR REPLACE INTO publishing(tier, dest, file_id, ts) VALUES(?, ?, ?, ?)",
                    (tier, dest, file_id, now),
                )
                out.append(True)
        return out

    def end_publish_many(self, tier: str, items: list[tuple[int, str]]) -> None:
        """Publications known not to have happened (the name was taken, nothing renamed): their notes
        go, so that a later object under the name is never taken for this file's own."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM publishing WHERE tier = ? AND dest = ? AND file_id = ?", [(tier, d, f) for f, d in items]
            )

    def publishing_owners(self, tier: str, dests: list[str]) -> dict[str, int]:
        """`publishing_owner` of many names: dest -> the row noted as publishing it, where one is."""
        out: dict[str, int] = {}
        for k in range(0, len(dests), 500):
            part = dests[k : k + 500]
            q = f"SELECT dest, file_id FROM publishing WHERE tier = ? AND dest IN ({','.join('?' * len(part))})"
            out.update((str(d), int(f)) for d, f in self._db.execute(q, (tier, *part)))
        return out

    def publishing_owner(self, tier: str, dest: str) -> int | None:
        r = self._db.execute("SELECT file_id FROM publishing WHERE tier = ? AND dest = ?", (tier, dest)).fetchone()
        return int(r[0]) if r else None

    def record_stored(self, file_id: int, tier: str, dest: str, layout: str, res: WriteResult) -> None:
        self._one(self.record_stored_many(tier, layout, [(file_id, dest, res)]))

    def record_stored_many(
        self, tier: str, layout: str, items: list[tuple[int, str, WriteResult]]
    ) -> list[tuple[bool, Any]]:
        """`record_stored` for many copies on one tier in one transaction: per item (ok, None) or
        (False, why nothing was recorded for it: its row cannot move to stored, or `dest` is
        recorded as another file's copy)."""
        ids = [fid for fid, _d, _r in items]
        with self._tx() as db:
            why = self._movable(ids, State.STORED)
            dests = [d for _f, d, _r in items]
            owner: dict[str, int] = {}
            for k in range(0, len(dests), 500):
                part = dests[k : k + 500]
                marks = ",".join("?" * len(part))
                owner.update(
                    db.execute(f"SELECT dest, file_id FROM copies WHERE tier = ? AND dest IN ({marks})", (tier, *part))
                )
            for n, (fid, dest, _res) in enumerate(items):
                if why[n] is None:
                    if owner.get(dest, fid) != fid:
                        why[n] = JournalError(f"{tier}:{dest} is recorded as another file's copy; not recorded again")
                    else:
                        owner[dest] = fid  # a second item with the same name is another file's copy
            now = self._clock()
            do = [x for x, w in zip(items, why, strict=True) if w is None]
            db.executemany("DELETE FROM publishing WHERE tier = ? AND dest = ?", [(tier, d) for _f, d, _r in do])
            db.executemany(
                "UPDATE files SET state = ?, reason = NULL, updated = ?, checksum = ? WHERE id = ?",
                [(State.STORED.value, now, res.source_checksum, fid) for fid, _d, res in do],
            )
            db.executemany(
                "INSERT INTO copies(file_id, tier, dest, layout, codec, source_bytes, stored_bytes, checksum, state,"
                " stored_at, meta_checksum) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 'stored', ?, ?)"
                " ON CONFLICT(tier, dest) DO UPDATE SET layout = excluded.layout,"
                " codec = excluded.codec, source_bytes = excluded.source_bytes,"
                " stored_bytes = excluded.stored_bytes, checksum = excluded.checksum, state = 'stored',"
                " stored_at = excluded.stored_at, verified_at = NULL, stored_checksum = NULL, stamp = NULL,"
                " meta_checksum = excluded.meta_checksum"
                " WHERE copies.file_id = excluded.file_id",
                [
                    (
                        fid,
                        tier,
                        dest,
                        layout,
                        r.codec,
                        r.source_bytes,
                        r.stored_bytes,
                        r.source_checksum,
                        now,
                        r.meta_checksum,
                    )
                    for fid, dest, r in do
                ],
            )
            self._audits(
                [
                    (fid, "stored", {"tier": tier, "dest": dest, "stored_bytes": r.stored_bytes, "codec": r.codec})
                    for fid, dest, r in do
                ],
                now,
            )
            return [(False, w) if w is not None else (True, None) for w in why]

    def record_verified(self, file_id: int, tier: str, dest: str, stamp: str | None = None) -> FileRow:
        return self._one(self.record_verified_many(tier, [(file_id, dest)], [stamp]))  # type: ignore[no-any-return]

    def record_verified_many(
        self, tier: str, items: list[tuple[int, str]], stamps: Sequence[str | None] | None = None
    ) -> list[tuple[bool, Any]]:
        """`record_verified` for many copies on one tier in one transaction: per item (ok, the row as
        it now is) or (False, why it was not changed). `stamps`: each copy's Tier.stamp, taken before
        it was read back, compared before its source is released."""
        ids = [fid for fid, _d in items]
        stamp_of = dict(zip((d for _f, d in items), stamps or [None] * len(items), strict=True))
        with self._tx() as db:
            why = self._movable(ids, State.VERIFIED)
            now = self._clock()  # the rows' `updated` (what a manifest is written as of): the wall clock
            at = self._verified_now()  # the copies' age, for retention: never before the trusted calendar
            do = [x for x, w in zip(items, why, strict=True) if w is None]
            db.executemany(
                "UPDATE files SET state = ?, reason = NULL, updated = ? WHERE id = ?",
                [(State.VERIFIED.value, now, fid) for fid, _d in do],
            )
            db.executemany(
                "UPDATE copies SET state = 'verified', verified_at = ?, stamp = ? WHERE tier = ? AND dest = ?",
                [(at, stamp_of[dest], tier, dest) for _f, dest in do],
            )
            rows = self._rows(fid for fid, _d in do)
            self._audits(
                [(fid, "verified", {"tier": tier, "dest": dest, "checksum": rows[fid].checksum}) for fid, dest in do],
                now,
            )
            # the session's manifest must be rewritten, even if acqd dies before it gets to it
            db.executemany(
                "INSERT OR IGNORE INTO manifests_dirty(root, session) VALUES (?, ?)",
                sorted({(rows[fid].root, rows[fid].session) for fid, _d in do}),
            )
            return self._results(why, ids, rows)

    def dirty_manifests(self) -> list[tuple[str, str]]:
        """Sessions whose manifest has not been written since their last verified file."""
        return [(r, s) for r, s in self._db.execute("SELECT root, session FROM manifests_dirty ORDER BY root, session")]

    def manifest_written(self, root: str, session: str, as_of: float) -> None:
        """The manifest of (root, session) was written from the journal as it was at `as_of`."""
        with self._tx() as db:
            newer = db.execute(
                "SELECT 1 FROM files WHERE root = ? AND session = ? AND updated > ? LIMIT 1", (root, session, as_of)
            ).fetchone()
            if newer is None:
                db.execute("DELETE FROM manifests_dirty WHERE root = ? AND session = ?", (root, session))

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def epoch(self) -> int:
        """How many runs this journal has counted (acqd.claims): 0 for a journal from before."""
        v = self.get_meta("epoch")
        return int(v) if v is not None and v.isdigit() else 0

    def count_run(self, run: str, epoch: int) -> None:
        """Record a run (its token, and its epoch, which never lowers the count), durably, before
        its claims are written."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO runs(run, epoch, started) VALUES(?, ?, ?)", (run, epoch, self._clock()))
            db.execute(
                "INSERT INTO meta(key, value) VALUES('epoch', ?) ON CONFLICT(key) DO UPDATE SET value ="
                " CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
                (str(epoch),),
            )

    def runs(self) -> frozenset[str]:
        """The tokens of every run this journal made (acqd.claims)."""
        try:
            return frozenset(r[0] for r in self._db.execute("SELECT run FROM runs"))
        except sqlite3.OperationalError:  # a reader of a journal from before runs were kept
            return frozenset()

    def get_meta(self, key: str) -> str | None:
        r = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(r[0]) if r else None

    def audit(self, file_id: int | None, action: str, **detail: Any) -> None:
        with self._tx():
            self._audit(file_id, action, **detail)

    # -- queries ------------------------------------------------------------------------------
    def get(self, file_id: int) -> FileRow:
        return self._get(file_id)

    def adopt_manifest(self, root: str, tier: str, files: list[dict[str, Any]], stat: Callable[[str], Any]) -> int:
        """Import the verified copies a session manifest records (`acqd adopt`), each on the tier its
        entry names (a policy's placement, a retention move: not always the manifest's own `tier`). A
        source still on disk with the recorded size and mtime gets its real identity (so it is not
        shipped again); any other keeps an identity no file has (inode 0), so a file there now is a
        new version with a name of its own. A row of that version with no verified copy (a journal
        backed up while the file was in flight) takes the copy. Returns how many copies were imported."""
        manifest_tier = tier
        n = 0
        now = self._clock()
        with self._tx() as db:
            touched: set[str] = set()
            for e in files:
                if e.get("state") not in ("verified", "released") or not e.get("dest") or not e.get("checksum"):
                    continue
                rel, version = str(e["source"]), int(e.get("version", 1))
                tier = str(e["tier"]) if isinstance(e.get("tier"), str) else manifest_tier
                if db.execute("SELECT 1 FROM copies WHERE tier = ? AND dest = ?", (tier, e["dest"])).fetchone():
                    continue
                size = int(e["source_bytes"])
                mtime_ns = int(e["source_mtime_ns"]) if "source_mtime_ns" in e else 0
                ident = Identity(size, mtime_ns, 0, 0)
                st = stat(f"{root}/{rel}")
                if st is not None and st.st_size == size and st.st_mtime_ns == mtime_ns:
                    ident = Identity(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)
                state = "verified" if ident.inode else str(e["state"])
                columns = (state, ident.size, ident.mtime_ns, ident.inode, ident.ctime_ns, ident.device, e["checksum"])
                known = db.execute(
                    "SELECT id, state FROM files WHERE root = ? AND relpath = ? AND version = ?", (root, rel, version)
                ).fetchone()
                if known is not None:
                    fid = int(known[0])
                    if known[1] not in ("verified", "released"):
                        # a row of this version that never reached a verified copy here (a journal backed up
                        # while the file was in flight, which then shipped elsewhere): it takes the copy the
                        # manifest records, as a new row would
                        db.execute(
                            "UPDATE files SET state = ?, reason = NULL, size = ?, mtime_ns = ?, inode = ?,"
                            " ctime_ns = ?, device = ?, checksum = ?, updated = ? WHERE id = ?",
                            (*columns, now, fid),
                        )
                else:
                    cur = db.execute(
                        "INSERT INTO files(root, relpath, version, current, state, size, mtime_ns, inode, ctime_ns,"
                        " device, checksum, detector, session, first_seen, updated)"
                        " VALUES(?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            root,
                            rel,
                            version,
                            *columns,
                            str(e.get("detector", "generic")),
                            SourceRef(root, rel).session,
                            now,
                            now,
                        ),
                    )
                    fid = int(cur.lastrowid or 0)
                db.execute(
                    "INSERT INTO copies(file_id, tier, dest, layout, codec, source_bytes, stored_bytes, checksum,"
                    " state, stored_at, verified_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 'verified', ?, ?)",
                    (
                        fid,
                        tier,
                        e["dest"],
                        e.get("layout", "copy"),
                        e.get("codec", ""),
                        size,
                        int(e.get("stored_bytes", 0)),
                        e["checksum"],
                        now,
                        now,
                    ),
                )
                self._audit(fid, "adopted", tier=tier, dest=e["dest"])
                touched.add(rel)
                n += 1
            for rel in touched:
                top = db.execute(
                    "SELECT id, current FROM files WHERE root = ? AND relpath = ? ORDER BY version DESC LIMIT 1",
                    (root, rel),
                ).fetchone()
                if top is not None and not top[1]:
                    db.execute("UPDATE files SET current = 0 WHERE root = ? AND relpath = ?", (root, rel))
                    db.execute("UPDATE files SET current = 1 WHERE id = ?", (top[0],))
        return n

    def copy_owner(self, tier: str, dest: str) -> int | None:
        """The journal row whose copy `dest` on `tier` is, if any."""
        r = self._db.execute("SELECT file_id FROM copies WHERE tier = ? AND dest = ?", (tier, dest)).fetchone()
        return int(r[0]) if r else None

    def held_uncompared(self, file_ids: list[int]) -> set[int]:
        """Of `file_ids`, the rows whose release was held for a writer, or that were read while one
        had the file open ('release-held', 'read-while-written'), with no comparison of the file's
        content since ('content-compared'): a write through a shared mapping into a page already
        dirty moves neither the file's size nor its times, so only its content tells whether it is
        still what was shipped."""
        out: set[int] = set()
        for i in range(0, len(file_ids), 500):
            part = file_ids[i : i + 500]
            rows = self._db.execute(
                "SELECT file_id, action FROM audit WHERE action IN ('release-held', 'read-while-written', "
                "'content-compared', 'cut-short') AND "
                f"file_id IN ({','.join('?' * len(part))}) ORDER BY id",
                part,
            )
            last = {int(f): a for f, a in rows if a != "cut-short"}
            out.update(f for f, a in last.items() if a != "content-compared")
        return out

    def cut_short(self, file_ids: list[int]) -> set[int]:
        """Of `file_ids`, the rows stored byte-exact because the file is shorter than its own format
        says (audit 'cut-short'): never released (`Pipeline._release`)."""
        out: set[int] = set()
        for i in range(0, len(file_ids), 500):
            part = file_ids[i : i + 500]
            rows = self._db.execute(
                "SELECT DISTINCT file_id FROM audit WHERE action IN ('release-held', 'read-while-written', "
                "'content-compared', 'cut-short') AND action = 'cut-short' AND file_id IN "
                f"({','.join('?' * len(part))})",
                part,
            )
            out.update(int(f) for (f,) in rows)
        return out

    def copy_in_the_way(self, tier: str, dest: str, folders: bool = True) -> tuple[str, int] | None:
        """A copy recorded on `tier`, and there as far as the journal knows (not purged, moved off or
        lost), that takes the shape `dest` needs: one below `dest` (a folder of copies where `dest`
        would be a file) or, on a tier of `folders`, one under a folder name of `dest` (a file where
        `dest` needs a folder; an object store keeps keys below an object). Its name and journal row,
        or None."""
        live = "tier = ? AND state NOT IN ('purged', 'moved', 'lost')"
        r = self._db.execute(  # below dest: the names from 'dest/' up to, not including, 'dest0'
            f"SELECT dest, file_id FROM copies WHERE {live} AND dest >= ? AND dest < ? LIMIT 1",
            (tier, dest + "/", dest + "0"),
        ).fetchone()
        if r is None and folders:
            parts = dest.split("/")
            above = ["/".join(parts[:i]) for i in range(1, len(parts))]
            if above:
                r = self._db.execute(
                    f"SELECT dest, file_id FROM copies WHERE {live} AND dest IN ({','.join('?' * len(above))}) LIMIT 1",
                    (tier, *above),
                ).fetchone()
        return (str(r[0]), int(r[1])) if r else None

    def copy_owners(self, tier: str, dests: list[str]) -> dict[str, int]:
        """The journal rows whose copies the `dests` on `tier` are (those that have one)."""
        out: dict[str, int] = {}
        for i in range(0, len(dests), 500):
            part = dests[i : i + 500]
            rows = self._db.execute(
                f"SELECT dest, file_id FROM copies WHERE tier = ? AND dest IN ({','.join('?' * len(part))})",
                (tier, *part),
            )
            out.update((d, int(f)) for d, f in rows)
        return out

    def has_copies(self, tier: str) -> bool:
        return self._db.execute("SELECT 1 FROM copies WHERE tier = ? LIMIT 1", (tier,)).fetchone() is not None

    def has_frame_copies(self) -> bool:
        """Whether any copy is stored in a frame layout (zarr, tiff): reading it back (a release's
        check, a recheck, a retention move) needs the frame layouts' libraries. Answered from the
        partial index `copies_framed` (not a scan of every copy of a journal of copies alone)."""
        return self._db.execute("SELECT 1 FROM copies WHERE layout != 'copy' LIMIT 1").fetchone() is not None

    def copies_of(self, file_id: int) -> list[CopyRow]:
        rows = self._db.execute(f"SELECT {_COPY_COLS} FROM copies WHERE file_id = ? ORDER BY id", (file_id,))
        return [_copy_row(r) for r in rows]

    def retry_internal(self, roots: Collection[str], marker: str) -> list[FileRow]:
        """Files of `roots` quarantined by an internal error (their reason ends with `marker`): back to
        seen with their attempts reset, for a start (an upgrade, or a configuration fixed) to ship them
        again. The rows so reset."""
        if not roots:
            return []
        marks = ",".join("?" * len(roots))
        with self._tx() as db:
            q = f"SELECT id, reason FROM files WHERE current = 1 AND state = 'quarantined' AND root IN ({marks})"
            ids = [int(fid) for fid, reason in db.execute(q, list(roots)) if (reason or "").endswith(marker)]
            out = []
            for fid in ids:
                row = self._get(fid)
                self._set(row, State.SEEN, "tried again at this start: quarantined by an internal error", attempts=0)
                self._audit(fid, "retry", reason=f"tried again at this start (was: {row.reason})")
                out.append(self._get(fid))
            return out

    def verified_in(self, roots: Iterable[str]) -> list[FileRow]:
        """The current rows of `roots` that are verified and not released (nor purged, nor lost)."""
        roots = list(roots)
        if not roots:
            return []
        marks = ",".join("?" * len(roots))
        q = f"SELECT {_FILE_COLS} FROM files WHERE current = 1 AND state = 'verified' AND root IN ({marks})"
        return [_file_row(r) for r in self._db.execute(q, roots)]

    def pending(self) -> list[FileRow]:
        marks = ",".join("?" * len(PENDING))
        q = f"SELECT {_FILE_COLS} FROM files WHERE current = 1 AND state IN ({marks})"
        return [_file_row(r) for r in self._db.execute(q, [s.value for s in PENDING])]

    def counts(self) -> dict[str, dict[str, int]]:
        """Files and source bytes per state (current versions and superseded ones that were shipped).
        A shipped file whose every stored copy retention purged (none verified left) counts as `purged`,
        not as the `verified` or `released` its row still says."""
        out: dict[str, dict[str, int]] = {}
        q = (
            "SELECT CASE WHEN state IN ('verified', 'released') AND EXISTS (SELECT 1 FROM copies c WHERE"
            " c.file_id = files.id AND c.state = 'purged') AND NOT EXISTS (SELECT 1 FROM copies c WHERE"
            " c.file_id = files.id AND c.state = 'verified') THEN 'purged' ELSE state END AS st,"
            " COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE current = 1 OR state IN "
            f"('verified', 'released') OR ({_LOST_FOR_GOOD}) GROUP BY st"
        )
        for state, n, size in self._db.execute(q):
            out[state] = {"files": int(n), "bytes": int(size)}
        if "verified" in out:  # of them, earlier versions of a file written again since (never released: their
            # sources are gone); they read as files waiting for a release (a stranger's review)
            q = (
                "SELECT COUNT(*) FROM files WHERE current = 0 AND state = 'verified' AND EXISTS (SELECT 1 FROM"
                " copies c WHERE c.file_id = files.id AND c.state = 'verified')"
            )
            out["verified"]["earlier_versions"] = int(self._db.execute(q).fetchone()[0])
        return out

    def stored_bytes(self) -> int:
        r = self._db.execute("SELECT COALESCE(SUM(stored_bytes), 0) FROM copies WHERE state = 'verified'").fetchone()
        return int(r[0])

    def tier_totals(self) -> dict[str, dict[str, Any]]:
        """Per tier: its verified copies, their source and stored bytes, and when the last was verified."""
        q = (
            "SELECT tier, COUNT(*), COALESCE(SUM(source_bytes), 0), COALESCE(SUM(stored_bytes), 0), MAX(verified_at)"
            " FROM copies WHERE state = 'verified' GROUP BY tier ORDER BY tier"
        )
        return {
            str(t): {"copies": int(n), "source_bytes": int(src), "stored_bytes": int(st), "last_verified": last}
            for t, n, src, st, last in self._db.execute(q)
        }

    def last_start(self) -> float | None:
        """When a daemon last started on this journal (its claim), or None."""
        r = self._db.execute("SELECT MAX(started) FROM runs").fetchone()
        return float(r[0]) if r and r[0] is not None else None

    def retrying(self, limit: int = 5) -> tuple[int, list[FileRow]]:
        """Files not yet shipped that failed and are to be tried again (their reason is the last
        failure): how many, and the `limit` waiting longest. Not one that failed once and has moved on
        since (its reason cleared: stored after a retry), nor one that found its reason elsewhere."""
        where = "current = 1 AND state IN ('seen', 'complete', 'stored') AND attempts > 0 AND reason IS NOT NULL"
        n = int(self._db.execute(f"SELECT COUNT(*) FROM files WHERE {where}").fetchone()[0])
        rows = self._db.execute(f"SELECT {_FILE_COLS} FROM files WHERE {where} ORDER BY first_seen LIMIT ?", (limit,))
        return n, [_file_row(r) for r in rows]

    def quarantined_count(self) -> int:
        """How many files `quarantined` lists (whoever quarantined them: the daemon, `acqd verify`)."""
        q = f"SELECT COUNT(*) FROM files WHERE state = 'quarantined' AND (current = 1 OR {_LOST_FOR_GOOD})"
        return int(self._db.execute(q).fetchone()[0])

    def quarantined(self) -> list[tuple[FileRow, bool]]:
        """The quarantined files (current versions, and superseded ones whose copy was lost with their
        source: `copy_lost_for_good`), each with whether it is the path's current version."""
        q = (
            f"SELECT {_FILE_COLS}, current FROM files WHERE state = 'quarantined' AND (current = 1 OR "
            f"{_LOST_FOR_GOOD}) ORDER BY relpath, version"
        )
        n = len(_FILE_COLS.split(","))
        return [(_file_row(r[:n]), bool(r[n])) for r in self._db.execute(q)]

    def release_failed(self) -> list[tuple[FileRow, str]]:
        """Files verified, whose release the acquisition disk refused (read-only, permission) and that
        are still there to release, each with the last refusal: `acqd status` lists them."""
        q = (
            f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLS.split(','))}, a.detail "
            "FROM audit a INDEXED BY audit_release_failed JOIN files f ON f.id = a.file_id "
            "WHERE a.action = 'release-failed' AND f.state = 'verified' AND f.current = 1 ORDER BY a.id"
        )
        n = len(_FILE_COLS.split(","))
        last: dict[int, tuple[FileRow, str]] = {}
        for r in self._db.execute(q):
            row = _file_row(r[:n])
            last[row.id] = (row, str(json.loads(r[n]).get("reason", "")))
        return sorted(last.values(), key=lambda x: x[0].relpath)

    def kept_unverified(self) -> list[tuple[FileRow, CopyRow]]:
        """Copies kept at a destination and never verified, their file vanished: stored before a crash,
        then found not as recorded (`keep_stored`). Nothing restores them on its own; `acqd status`
        names them, so that somebody looks."""
        q = (
            f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLS.split(','))}, "
            f"{', '.join('c.' + c.strip() for c in _COPY_COLS.split(','))} "
            "FROM files f JOIN copies c ON c.file_id = f.id WHERE f.state = 'vanished' AND c.state = 'stored' "
            "ORDER BY f.relpath, f.version"
        )
        n = len(_FILE_COLS.split(","))
        return [(_file_row(r[:n]), _copy_row(r[n:])) for r in self._db.execute(q)]

    def session_files(self, root: str, session: str) -> list[tuple[FileRow, CopyRow]]:
        q = (
            f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLS.split(','))}, "
            f"{', '.join('c.' + c.strip() for c in _COPY_COLS.split(','))} "
            "FROM files f INDEXED BY files_session JOIN copies c ON c.file_id = f.id "
            "WHERE f.root = ? AND f.session = ? AND c.state = 'verified' ORDER BY f.relpath, f.version"
        )
        n = len(_FILE_COLS.split(","))
        return [(_file_row(r[:n]), _copy_row(r[n:])) for r in self._db.execute(q, (root, session))]

    def session_copy_names(self, root: str, session: str) -> set[tuple[str, int, str]]:
        """(relpath, version, dest) of every copy, in any state, of a session's files."""
        q = (
            "SELECT f.relpath, f.version, c.dest FROM files f INDEXED BY files_session JOIN copies c "
            "ON c.file_id = f.id WHERE f.root = ? AND f.session = ?"
        )
        return {(rel, int(v), dest) for rel, v, dest in self._db.execute(q, (root, session))}

    def mismatch_notes(self, root: str, session: str) -> dict[int, str]:
        """Per file of a session, the latest reason of its 'profile-mismatch' audit entry (a valid
        file its detector profile did not expect), for the session's manifest. A partial index keeps
        this cheap however long the audit log grows."""
        q = (
            "SELECT a.file_id, a.detail FROM audit a INDEXED BY audit_notes JOIN files f ON f.id = a.file_id"
            " WHERE a.action = 'profile-mismatch' AND f.root = ? AND f.session = ? ORDER BY a.id"
        )
        return {fid: json.loads(d).get("reason", "") for fid, d in self._db.execute(q, (root, session))}

    def codec_notes(self, root: str, session: str) -> dict[int, str]:
        """Per file of a session, why its codec (or a byte-exact copy) was chosen: the latest
        'codec-choice' audit entry, for the session's manifest."""
        q = (
            "SELECT a.file_id, a.detail FROM audit a INDEXED BY audit_codec JOIN files f ON f.id = a.file_id"
            " WHERE a.action = 'codec-choice' AND f.root = ? AND f.session = ? ORDER BY a.id"
        )
        return {fid: json.loads(d).get("reason", "") for fid, d in self._db.execute(q, (root, session))}

    def verified_copies(self) -> Iterator[tuple[FileRow, CopyRow]]:
        q = (
            f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLS.split(','))}, "
            f"{', '.join('c.' + c.strip() for c in _COPY_COLS.split(','))} "
            "FROM files f JOIN copies c ON c.file_id = f.id WHERE c.state = 'verified' ORDER BY f.id"
        )
        n = len(_FILE_COLS.split(","))
        for r in self._db.execute(q).fetchall():
            yield _file_row(r[:n]), _copy_row(r[n:])

    def find_versions(self, relpath: str, root: str | None = None) -> list[FileRow]:
        if root is None:
            q = f"SELECT {_FILE_COLS} FROM files WHERE relpath = ? ORDER BY version DESC"
            rows = self._db.execute(q, (relpath,))
        else:
            q = f"SELECT {_FILE_COLS} FROM files WHERE relpath = ? AND root = ? ORDER BY version DESC"
            rows = self._db.execute(q, (relpath, root))
        return [_file_row(r) for r in rows]

    def roots(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT root FROM files")]

    def file_of_stored_path(self, path: str) -> FileRow | None:
        """The file whose copy is stored at `path` (a path at the destination: it ends with the copy's
        name below its tier; a Zarr copy's inner objects count), the latest version if several."""
        rows = self._db.execute(
            f"SELECT c.dest, {', '.join('f.' + c.strip() for c in _FILE_COLS.split(','))} FROM copies c"
            " JOIN files f ON f.id = c.file_id WHERE ? LIKE '%/' || c.dest OR ? LIKE '%/' || c.dest || '/%'"
            " ORDER BY f.version DESC LIMIT 100",
            (path, path),
        ).fetchall()
        for dest, *r in rows:  # LIKE takes a name's _ and % for wildcards: the exact match decides
            if path.endswith("/" + dest) or f"/{dest}/" in path:
                return _file_row(tuple(r))
        return None

    def paths_named(self, name: str, limit: int = 5) -> list[str]:
        """Source paths (root/relpath) of files named `name` (their last component)."""
        rows = self._db.execute("SELECT DISTINCT root, relpath FROM files WHERE relpath LIKE ?", ("%" + name,))
        out = [f"{root.rstrip('/')}/{rel}" for root, rel in rows if rel.rpartition("/")[2] == name]
        return sorted(out)[:limit]

    def audit_log(self, file_id: int | None = None) -> list[tuple[float, int | None, str, dict[str, Any]]]:
        if file_id is None:
            rows = self._db.execute("SELECT ts, file_id, action, detail FROM audit ORDER BY id")
        else:
            rows = self._db.execute(
                "SELECT ts, file_id, action, detail FROM audit WHERE file_id = ? ORDER BY id", (file_id,)
            )
        return [(ts, fid, action, json.loads(d)) for ts, fid, action, d in rows]


class GroupCommitExecutor(concurrent.futures.Executor):
    """The journal's one thread, with group commit: calls queued while a commit is in progress
    run together in the next transaction (each in its own savepoint) and are committed with one
    fsync. A caller's future resolves only after its change is durable, exactly as with one
    transaction per call; under load (many small files) the fsyncs no longer bound throughput.

    Until `journal` is set (its constructor runs here too) calls run one by one."""

    def __init__(self, max_group: int = 256) -> None:
        self.journal: Journal | None = None
        self._q: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._max = max_group
        self._shutdown = False
        self._thread = threading.Thread(target=self._run, name="acqd-journal", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if self._shutdown:
            raise RuntimeError("the journal executor is shut down")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._q.put((fut, functools.partial(fn, *args, **kwargs)))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._shutdown:
            self._shutdown = True
            self._q.put(None)
        if wait:
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self._max:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            live = [(f, c) for f, c in batch if f.set_running_or_notify_cancel()]
            journal = self.journal
            if journal is None or len(live) == 1:
                for fut, call in live:
                    try:
                        fut.set_result(call())
                    except sqlite3.Error as exc:  # translated where it enters: "database or disk is full"
                        fut.set_exception(JournalError(f"journal: {exc}"))
                    except BaseException as exc:
                        fut.set_exception(exc)
            else:
                try:
                    results = journal.run_group([c for _, c in live])
                except BaseException as exc:  # BEGIN failed (locked, I/O): every call fails
                    results = [(False, exc) for _ in live]
                for (fut, _), (ok, value) in zip(live, results, strict=True):
                    if ok:
                        fut.set_result(value)
                    elif isinstance(value, sqlite3.Error):
                        fut.set_exception(JournalError(f"journal: {value}"))
                    else:
                        fut.set_exception(value)
            if stop:
                return


# --- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetentionRow:
    copy: CopyRow
    file: FileRow


def retention_items(j: Journal) -> list[RetentionRow]:
    """Every verified copy (current or superseded file versions) that retention manages."""
    q = (
        f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLS.split(','))}, "
        f"{', '.join('c.' + c.strip() for c in _COPY_COLS.split(','))} "
        "FROM files f JOIN copies c ON c.file_id = f.id WHERE c.state = 'verified' ORDER BY c.id"
    )
    n = len(_FILE_COLS.split(","))
    return [RetentionRow(_copy_row(r[n:]), _file_row(r[:n])) for r in j._db.execute(q)]


def delivered_warnings(j: Journal) -> list[tuple[int, float, float, str]]:
    """(copy, purge date, sent, recipient) of every delivered warning that was not called off."""
    where = " WHERE voided IS NULL" if _has_column(j, "warnings", "voided") else ""
    rows = j._db.execute(f"SELECT copy_id, purge_at, sent_at, recipient FROM warnings{where}")
    return [(int(a), float(b), float(c), str(d or "")) for a, b, c, d in rows]


def earliest_warned(j: Journal) -> float | None:
    """The earliest purge date a delivered warning not called off announces for a verified copy."""
    voided = " AND w.voided IS NULL" if _has_column(j, "warnings", "voided") else ""
    row = j._db.execute(
        f"SELECT MIN(w.purge_at) FROM warnings w JOIN copies c ON c.id = w.copy_id WHERE c.state = 'verified'{voided}"
    ).fetchone()
    return float(row[0]) if row is not None and row[0] is not None else None


def void_warnings(j: Journal, copy_id: int, now: float, reason: str) -> int:
    """Call off the delivered warnings of one copy (its purge was called off): a purge needs a new one."""
    with j._tx() as db:
        n = db.execute("UPDATE warnings SET voided = ? WHERE copy_id = ? AND voided IS NULL", (now, copy_id)).rowcount
        fid = db.execute("SELECT file_id FROM copies WHERE id = ?", (copy_id,)).fetchone()
        j._audit(fid[0] if fid else None, "retention.warning.voided", copy=copy_id, warnings=n, reason=reason)
        return int(n)


def carry_warnings(j: Journal, old: int, new: int) -> int:
    """A transition's new copy (`new`) takes the delivered warnings of the copy it replaces (`old`):
    the purge they announced stays the purge of the file wherever its copy is (the move after the
    warning sent a second one, with a later date and another place, and put the purge off: a
    stranger's review). Not again when the new copy has warnings of its own. How many were carried."""
    voided = " AND voided IS NULL" if _has_column(j, "warnings", "voided") else ""
    with j._tx() as db:
        if db.execute("SELECT 1 FROM warnings WHERE copy_id = ?", (new,)).fetchone() is not None:
            return 0
        n = db.execute(
            "INSERT INTO warnings(copy_id, recipient, purge_at, sent_at)"
            f" SELECT ?, recipient, purge_at, sent_at FROM warnings WHERE copy_id = ?{voided}",
            (new, old),
        ).rowcount
        return int(n)


def record_warnings(j: Journal, copy_ids: list[int], recipient: str, purge_at: dict[int, float], now: float) -> None:
    with j._tx() as db:
        for cid in copy_ids:
            db.execute(
                "INSERT INTO warnings(copy_id, recipient, purge_at, sent_at) VALUES(?, ?, ?, ?)",
                (cid, recipient, purge_at[cid], now),
            )
            fid = db.execute("SELECT file_id FROM copies WHERE id = ?", (cid,)).fetchone()[0]
            j._audit(fid, "retention.warned", copy=cid, recipient=recipient, purge_at=purge_at[cid])


def add_hold(
    j: Journal,
    target: str,
    until: float,
    reason: str,
    now: float,
    root: str = "",
    *,
    placed_by: str = "",
    **detail: Any,
) -> int:
    """A hold on `target` (a path relative to the watch root `root`; "" = any root). The same hold
    asked again (target, root, end and reason, still in force) is not placed twice: its id is given."""
    with j._tx() as db:
        same = db.execute(
            "SELECT id FROM holds WHERE target = ? AND root = ? AND until = ? AND reason = ? AND released IS NULL",
            (target, root, until, reason),
        ).fetchone()
        if same is not None:
            return int(same[0])
        cur = db.execute(
            "INSERT INTO holds(target, until, reason, created, root, placed_by) VALUES(?, ?, ?, ?, ?, ?)",
            (target, until, reason, now, root, placed_by),
        )
        j._audit(None, "hold", target=target, root=root, until=until, reason=reason, **detail)
        return int(cur.lastrowid or 0)


def restore_hold(
    j: Journal,
    target: str,
    until: float,
    reason: str,
    created: float,
    root: str,
    placed_by: str,
    released: float | None,
) -> int:
    """Put back a hold this journal lacks, as it was placed (acqd.holdledger: a journal restored from
    a backup taken before the hold)."""
    with j._tx() as db:
        cur = db.execute(
            "INSERT INTO holds(target, until, reason, created, root, placed_by, released) VALUES(?, ?, ?, ?, ?, ?, ?)",
            (target, until, reason, created, root, placed_by, released),
        )
        detail = {"until": until, "reason": reason, "created": created, "released": released}
        j._audit(None, "hold.restored", target=target, root=root, **detail)
        return int(cur.lastrowid or 0)


def all_holds(j: Journal) -> list[tuple[int, str, float, str, str, float, str, float | None]]:
    """(id, target, until, reason, root, created, placed_by, released) of every hold ever placed."""
    rows = j._db.execute("SELECT id, target, until, reason, root, created, placed_by, released FROM holds ORDER BY id")
    return [
        (int(i), str(t), float(u), str(r), str(w), float(c), str(b), None if x is None else float(x))
        for i, t, u, r, w, c, b, x in rows
    ]


def release_hold(j: Journal, target: str, now: float, root: str | None = None) -> int:
    """Release the active holds on `target` (under `root`; None: under any root); how many."""
    return len(release_holds(j, target, now, root))


def release_holds(j: Journal, target: str, now: float, root: str | None = None) -> list[tuple[str, float, str]]:
    """`release_hold`, saying which: (root, until, reason) of each hold released."""
    with j._tx() as db:
        if root is None:
            q, args = "target = ?", (target,)
        else:
            q, args = "target = ? AND root IN (?, '')", (target, root)  # type: ignore[assignment]
        rows = db.execute(f"SELECT id, root, until, reason FROM holds WHERE {q} AND released IS NULL", args).fetchall()
        db.executemany("UPDATE holds SET released = ? WHERE id = ?", [(now, r[0]) for r in rows])
        j._audit(None, "hold.released", target=target, root=root, holds=len(rows))
        return [(str(r[1] or ""), float(r[2]), str(r[3])) for r in rows]


HoldRecord = tuple[int, str, float, str, str, float, str]


def hold_records(j: Journal, now: float) -> list[HoldRecord]:
    """(id, target, until, reason, root, created, placed_by) of every hold in force at `now`."""
    by = "placed_by" if _has_column(j, "holds", "placed_by") else "''"
    root = "root" if _has_column(j, "holds", "root") else "''"
    rows = j._db.execute(
        f"SELECT id, target, until, reason, {root}, created, {by} FROM holds "
        "WHERE released IS NULL AND until > ? ORDER BY id",
        (now,),
    )
    return [(int(i), str(t), float(u), str(r), str(w), float(c), str(b)) for i, t, u, r, w, c, b in rows]


def release_hold_id(j: Journal, hold_id: int, now: float, **detail: Any) -> int:
    """Release one hold by its id (the owner page); 0 if it was not in force."""
    with j._tx() as db:
        row = db.execute("SELECT target, root FROM holds WHERE id = ? AND released IS NULL", (hold_id,)).fetchone()
        if row is None:
            return 0
        db.execute("UPDATE holds SET released = ? WHERE id = ?", (now, hold_id))
        j._audit(None, "hold.released", target=row[0], root=row[1], holds=1, hold=hold_id, **detail)
        return 1


def audit_actions(j: Journal, prefix: str, limit: int = 200) -> list[tuple[float, str, dict[str, Any]]]:
    """The latest audit entries whose action starts with `prefix`, newest first."""
    rows = j._db.execute(
        "SELECT ts, action, detail FROM audit WHERE action >= ? AND action < ? ORDER BY id DESC LIMIT ?",
        (prefix, prefix + "\uffff", limit),
    )
    return [(float(t), str(a), json.loads(d)) for t, a, d in rows]


def _has_column(j: Journal, table: str, column: str) -> bool:
    """A read-only journal written by an older acqd is not migrated: look before asking."""
    return any(r[1] == column for r in j._db.execute(f"PRAGMA table_info({table})"))


def holds_ended_after(j: Journal, since: float) -> list[tuple[str, float, str, str]]:
    """(target, end, reason, root) of every hold whose end (its `until`, or its release if sooner)
    is after `since`: those in force, and those that may have outlived a warned date."""
    root = "root" if _has_column(j, "holds", "root") else "''"
    end = "MIN(until, COALESCE(released, until))"
    rows = j._db.execute(f"SELECT target, {end}, reason, {root} FROM holds WHERE {end} > ? ORDER BY id", (since,))
    return [(str(t), float(u), str(r), str(w)) for t, u, r, w in rows]


def active_holds(j: Journal, now: float) -> list[tuple[str, float, str, str]]:
    """(target, until, reason, root) of every hold in force at `now`."""
    root = "root" if _has_column(j, "holds", "root") else "''"
    rows = j._db.execute(
        f"SELECT target, until, reason, {root} FROM holds WHERE released IS NULL AND until > ? ORDER BY id", (now,)
    )
    return [(str(t), float(u), str(r), str(w)) for t, u, r, w in rows]


LAST_SWEEP_RESULT = "retention_last_result"  # meta: the last sweep's counts and first failures (JSON)


def last_sweep_result(j: Journal) -> dict[str, Any] | None:
    """What the daemon's last retention sweep did and what failed (acqd.retention.SweepResult.summary)."""
    r = j._db.execute("SELECT value FROM meta WHERE key = ?", (LAST_SWEEP_RESULT,)).fetchone()
    if r is None:
        return None
    try:
        doc = json.loads(r[0])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def last_sweep(j: Journal) -> float | None:
    """The wall clock at the last sweep of a journal written before the clock guard (see clock_state)."""
    r = j._db.execute("SELECT value FROM meta WHERE key = 'retention_last_sweep'").fetchone()
    return float(r[0]) if r else None


@functools.cache
def _boot_id() -> str:
    """This boot's id (the clock guard's readings name it): "" where the kernel does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def clock_state(j: Journal) -> dict[str, Any] | None:
    """The retention clock guard's state (acqd.policy.clock.ClockState as JSON), None before the first sweep."""
    r = j._db.execute("SELECT value FROM meta WHERE key = 'retention_clock'").fetchone()
    return json.loads(r[0]) if r else None


def set_clock_state(j: Journal, doc: dict[str, Any], audit: str | None = None, **detail: Any) -> None:
    with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
        j._note_calendar(doc)
        j._calendar_read = True
    with j._tx() as db:
        db.execute(
            "INSERT INTO meta(key, value) VALUES('retention_clock', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (json.dumps(doc),),
        )
        if audit is not None:
            j._audit(None, audit, **detail)


def add_clock_ack(j: Journal, wall: float, boot_id: str, boottime: float, reason: str, who: str) -> int:
    """An operator vouched for the wall clock (`acqd retention ack-clock`); the daemon applies it at its next sweep."""
    with j._tx() as db:
        cur = db.execute(
            "INSERT INTO clock_acks(wall, boot_id, boottime, reason, who) VALUES(?, ?, ?, ?, ?)",
            (wall, boot_id, boottime, reason, who),
        )
        j._audit(None, "retention.clock.ack", wall=wall, reason=reason, who=who)
        return int(cur.lastrowid or 0)


def pending_clock_acks(j: Journal) -> list[tuple[int, float, str, float, str, str]]:
    """(id, wall, boot_id, boottime, reason, who) of acknowledgements not applied yet, oldest first."""
    if not _has_column(j, "clock_acks", "applied"):
        return []
    rows = j._db.execute(
        "SELECT id, wall, boot_id, boottime, reason, who FROM clock_acks WHERE applied IS NULL ORDER BY id"
    )
    return [(int(i), float(w), str(b), float(bt), str(r), str(who)) for i, w, b, bt, r, who in rows]


def clock_ack_applied(j: Journal, ack_id: int, now: float, **detail: Any) -> None:
    with j._tx() as db:
        db.execute("UPDATE clock_acks SET applied = ? WHERE id = ?", (now, ack_id))
        j._audit(None, "retention.clock.acknowledged", ack=ack_id, **detail)


_SCOPE = (
    "SELECT f.root, f.relpath, f.session, f.id, c.tier, c.dest, c.stored_bytes, c.state FROM files f "
    "JOIN copies c ON c.file_id = f.id WHERE "
)
ScopeRow = tuple[str, str, str, int, str, str, int, str]


def _scope(j: Journal, where: str, args: tuple[Any, ...]) -> list[ScopeRow]:
    q = _SCOPE + where + " ORDER BY f.root, f.relpath, f.version"
    return [
        (str(a), str(b), str(c), int(d), str(e), str(f), int(g), str(h))
        for a, b, c, d, e, f, g, h in j._db.execute(q, args)
    ]


def copies_below(j: Journal, root: str | None, prefix: str) -> list[ScopeRow]:
    """Copies (any state) of the files at or below `prefix` (relative to `root`; None: any root):
    (root, relpath, session, file_id, tier, dest, stored_bytes, copy state)."""
    p = prefix.strip("/")
    cond = "1" if p in ("", ".") else "(f.relpath = ? OR (f.relpath >= ? AND f.relpath < ?))"
    args: tuple[Any, ...] = () if p in ("", ".") else (p, p + "/", p + "0")  # "0" sorts right after "/"
    if root is not None:
        cond += " AND f.root = ?"
        args += (root,)
    return _scope(j, cond, args)


def copies_at_dest(j: Journal, dest: str, tier: str | None = None) -> list[ScopeRow]:
    """Copies whose destination name is `dest`, lies below the folder `dest`, or contains `dest`
    (a path inside a Zarr store), by the names the journal recorded."""
    d = dest.strip("/")
    parts = d.split("/")
    above = ["/".join(parts[:i]) for i in range(1, len(parts))]
    inside = f" OR c.dest IN ({','.join('?' * len(above))})" if above else ""
    cond = f"(c.dest = ? OR (c.dest >= ? AND c.dest < ?){inside})"
    args: tuple[Any, ...] = (d, d + "/", d + "0", *above)
    if tier is not None:
        cond += " AND c.tier = ?"
        args += (tier,)
    return _scope(j, cond, args)


def session_names(j: Journal) -> list[tuple[str, str, str, str]]:
    """(root, session, one relpath, its dest) per session: what a hold's close matches are built from."""
    q = (
        "SELECT f.root, f.session, MIN(f.relpath), c.dest FROM files f JOIN copies c ON c.file_id = f.id "
        "GROUP BY f.root, f.session"
    )
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in j._db.execute(q)]


#: the session manifest of a file's (root, session) is to be written again (a copy of it moved,
#: purged, added): the daemon rewrites every session the journal marks, at start and while it runs
_SESSION_DIRTY = "INSERT OR IGNORE INTO manifests_dirty(root, session) SELECT root, session FROM files WHERE id = ?"
#: ... and the file's row is newer than a manifest write that began before: `manifest_written` keeps the
#: mark (a move or purge landing during a flush had its mark cleared, the manifest not written again)
_ROW_NEWER = "UPDATE files SET updated = ? WHERE id = ?"


def _fence_key(kind: str, copy_id: int) -> str:
    return f"retention.begun.{kind}.{copy_id}"


def begin_step(j: Journal, kind: str, copy_id: int | None) -> bool:
    """A retention step (`kind`: purge, transition) on a copy recorded as begun, before it deletes
    anything; True if it was begun before and never finished (`mark_copy` finishes it): a sweep killed
    between a delete and its record (the hub's `begin` does the same in the catalog)."""
    if copy_id is None:
        return False
    key = _fence_key(kind, copy_id)
    with j._tx() as db:
        if db.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone() is not None:
            return True
        db.execute("INSERT INTO meta(key, value) VALUES(?, ?)", (key, repr(j._clock())))
    return False


def mark_copy(j: Journal, copy_id: int, state: str, action: str, **detail: Any) -> None:
    """A copy was purged or moved off its tier (the old copy: only after the new one verified); the
    steps begun on it are finished."""
    with j._tx() as db:
        db.execute("UPDATE copies SET state = ? WHERE id = ?", (state, copy_id))
        db.execute(
            "DELETE FROM meta WHERE key IN (?, ?)", (_fence_key("purge", copy_id), _fence_key("transition", copy_id))
        )
        fid = db.execute("SELECT file_id FROM copies WHERE id = ?", (copy_id,)).fetchone()[0]
        db.execute(_SESSION_DIRTY, (fid,))
        db.execute(_ROW_NEWER, (j._clock(), fid))
        j._audit(fid, action, copy=copy_id, **detail)


def manifests_to_rewrite(j: Journal, sessions: Iterable[tuple[str, str]]) -> None:
    """Mark (root, session) manifests to be written again from the journal (`acqd verify` found one
    missing, unreadable or not listing every verified copy)."""
    with j._tx() as db:
        db.executemany("INSERT OR IGNORE INTO manifests_dirty(root, session) VALUES (?, ?)", list(sessions))


def add_copy(
    j: Journal, file_id: int, tier: str, dest: str, layout: str, res: WriteResult, now: float, verified_at: float
) -> int:
    """A verified copy on another tier (a transition); it keeps the first copy's age (`verified_at`)."""
    with j._tx() as db:
        db.execute(
            "INSERT INTO copies(file_id, tier, dest, layout, codec, source_bytes, stored_bytes, checksum, state,"
            " stored_at, verified_at, meta_checksum) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 'verified', ?, ?, ?)"
            " ON CONFLICT(tier, dest) DO UPDATE SET state = 'verified', verified_at = excluded.verified_at,"
            " stamp = NULL, meta_checksum = excluded.meta_checksum WHERE copies.file_id = excluded.file_id",
            (
                file_id,
                tier,
                dest,
                layout,
                res.codec,
                res.source_bytes,
                res.stored_bytes,
                res.source_checksum,
                now,
                verified_at,
                res.meta_checksum,  # the same bytes on the other tier
            ),
        )
        # its id by its name: an upsert that updated a row (a move resumed after a crash) leaves
        # `lastrowid` as the last row this connection inserted, anywhere (another file's copy, whose
        # purge then took this file's warning: an adversarial review)
        found = db.execute("SELECT id, file_id FROM copies WHERE tier = ? AND dest = ?", (tier, dest)).fetchone()
        if found is None or int(found[1]) != file_id:
            raise JournalError(
                f"{tier}:{dest} is recorded as a copy of another file (journal row {found and found[1]})"
            )
        db.execute(_SESSION_DIRTY, (file_id,))
        db.execute(_ROW_NEWER, (j._clock(), file_id))
        j._audit(file_id, "retention.copied", tier=tier, dest=dest)
        return int(found[0])


def record_tiers(j: Journal, tiers: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Where each tier is (URL without a password, and its options, which never hold secrets), so that
    `restore` and `verify` after a quick-form run find the copies without being told again."""
    with j._tx() as db:
        for name, (url, options) in tiers.items():
            db.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"tier:{name}", json.dumps({"url": without_password(url), "options": options}, sort_keys=True)),
            )


def recorded_tiers(j: Journal) -> dict[str, tuple[str, dict[str, Any]]]:
    found = {}
    for key, value in j._db.execute("SELECT key, value FROM meta WHERE key LIKE 'tier:%'"):
        doc = json.loads(value)
        found[str(key)[5:]] = (str(doc["url"]), dict(doc.get("options") or {}))
    return found


def _shown(url: str) -> str:
    """A recorded tier URL (no password) as `status` shows it: an S3 URL's user part (an access key)
    masked too."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    _user, at, host = netloc.rpartition("@")
    if sep and at and scheme.lower() == "s3":
        return f"{scheme}{sep}***@{host}{slash}{path}"
    return url


def without_password(url: str) -> str:
    """`scheme://user:secret@host/p` -> `scheme://user@host/p` (a URL may carry credentials; the journal does not)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = userinfo.split(":", 1)[0] + "@" + host
    return f"{scheme}://{netloc}{slash}{path}"


JOURNAL_NAME = "journal.sqlite"
#: meta key: the running daemon's verified files whose release waits, by why ({why: files}; "" when none)
RELEASE_WAITING = "release_waiting"
#: meta key: the running daemon's files found and not complete yet, by why ({why: files}; "" when none)
INCOMPLETE_META = "incomplete"
#: meta key: the running daemon's storage calls under way for minutes ([[tier, op, url, since]]; "" when none)
STALLED_META = "storage_stalled"
#: meta key: files under a release's hidden name that nothing accounts for, as each root's last whole scan
#: found them ({root: [paths]})
LEFT_ASIDE_META = "left_aside"


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_NAME


def summary(journal: Journal) -> dict[str, Any]:
    """Files and bytes per state, the quarantined files with their reasons, and the watch roots the
    daemon is waiting for (`acqd status`)."""
    roots = journal.get_meta("watch_roots")
    pace = journal.get_meta("pace")
    waiting = journal.get_meta(RELEASE_WAITING)
    stalled = journal.get_meta(STALLED_META)
    incomplete = journal.get_meta(INCOMPLETE_META)
    aside = journal.get_meta(LEFT_ASIDE_META)
    out = {
        "release_waiting": json.loads(waiting) if waiting else {},
        "storage_stalled": json.loads(stalled) if stalled else [],
        "incomplete": json.loads(incomplete) if incomplete else {},
        "left_aside": json.loads(aside) if aside else {},
        "watch_roots": json.loads(roots) if roots else {},
        "pace": json.loads(pace) if pace else None,
        "states": journal.counts(),
        "stored_bytes": journal.stored_bytes(),
        "quarantined": [
            {"path": r.relpath if current else f"{r.relpath} (version {r.version})", "root": r.root, "reason": r.reason}
            for r, current in journal.quarantined()
        ],
        "release_failed": [{"path": r.relpath, "root": r.root, "reason": why} for r, why in journal.release_failed()],
        "kept_unverified": [
            {
                "path": r.relpath,
                "root": r.root,
                "version": r.version,
                "tier": c.tier,
                "dest": c.dest,
                "reason": r.reason,
            }
            for r, c in journal.kept_unverified()
        ],
    }
    catalog = outbox_state(journal)
    if catalog["cap"] is not None:  # a catalog is configured
        out["catalog"] = catalog
    return out


def activity(journal: Journal) -> dict[str, Any]:
    """What `acqd status` adds to `summary`: when the daemon last started, each tier's verified
    copies (how many, the bytes in and stored, the last one's time, its URL without credentials) and
    the files failing and retried (how many, and the longest waiting with their last error)."""
    tiers = journal.tier_totals()
    for name, t in tiers.items():
        doc = journal.get_meta(f"tier:{name}")
        t["url"] = _shown(json.loads(doc)["url"]) if doc else None
    started = journal.last_start()
    n, rows = journal.retrying()
    return {
        "last_start": started,
        "tiers": tiers,
        "retrying": {
            "files": n,
            "oldest": [
                {"path": r.relpath, "attempts": r.attempts, "since": r.first_seen, "reason": r.reason} for r in rows
            ],
        },
    }


# --- the catalog's outbox ---------------------------------------------------------------------
#
# With a catalog configured (`catalog:` in acqd.yaml) every change of a file row (new, a new
# version, a state change, a new checksum) and of a copy row (stored, verified, moved, purged, lost)
# appends a snapshot of the row to `outbox` in the SAME SQLite transaction: SQLite triggers, so no
# code path that changes a row can forget it. The publisher (acqd.catalog) drains the outbox in
# `seq` order; the catalog keeps a row only if its `seq` is newer than the one it has, so a replay
# after a crash neither doubles nor reorders anything.
#
# The outbox is bounded (`catalog.outbox_cap`). At the cap the journal never blocks and never drops
# its own work: the outbox stops growing and the journal notes `outbox_resync` (the time it filled).
# What is then missing from the outbox are only intermediate states: the journal's files and copies
# tables still hold every row's current state, and once the server is back and the outbox drained
# the publisher resynchronises the catalog from them: it clears the note (the outbox records changes
# again from then on), publishes a snapshot of the tables under one `seq`, and only then marks the
# resync finished (a crash in between: it is done again). Without a catalog the triggers do not exist.

OUTBOX_CAP_KEY, OUTBOX_RESYNC_KEY, CATALOG_STATUS_KEY = "outbox_cap", "outbox_resync", "catalog_status"
#: a resync begun and not finished (a crash in between: it is done again at the next start)
RESYNC_RUNNING_KEY = "outbox_resync_running"

#: the published columns of a file row and of a copy row, as a JSON object (`{p}` is NEW. or a table alias)
_FILE_DOC = (
    "json_object('id', {p}id, 'root', {p}root, 'relpath', {p}relpath, 'version', {p}version, 'current', {p}current,"
    " 'state', {p}state, 'reason', {p}reason, 'size', {p}size, 'mtime_ns', {p}mtime_ns, 'checksum', {p}checksum,"
    " 'detector', {p}detector, 'session', {p}session, 'first_seen', {p}first_seen, 'updated', {p}updated)"
)
_COPY_DOC = (
    "json_object('id', {p}id, 'file_id', {p}file_id, 'tier', {p}tier, 'dest', {p}dest, 'layout', {p}layout,"
    " 'codec', {p}codec, 'source_bytes', {p}source_bytes, 'stored_bytes', {p}stored_bytes, 'checksum', {p}checksum,"
    " 'stored_checksum', {p}stored_checksum, 'state', {p}state, 'stored_at', {p}stored_at,"
    " 'verified_at', {p}verified_at)"
)
_FULL = (
    "COALESCE((SELECT MAX(seq) FROM outbox) - (SELECT MIN(seq) FROM outbox) + 1, 0)"
    f" >= CAST((SELECT value FROM meta WHERE key = '{OUTBOX_CAP_KEY}') AS INTEGER)"
)
_OPEN = f"NOT EXISTS (SELECT 1 FROM meta WHERE key = '{OUTBOX_RESYNC_KEY}')"
_NOW = "(julianday('now') - 2440587.5) * 86400.0"
#: changes worth publishing (a retry's attempt counter and reason are not)
_FILE_CHANGED = (
    "OLD.state IS NOT NEW.state OR OLD.current IS NOT NEW.current OR OLD.checksum IS NOT NEW.checksum"
    " OR OLD.size IS NOT NEW.size OR OLD.mtime_ns IS NOT NEW.mtime_ns"
)
_COPY_CHANGED = (
    "OLD.state IS NOT NEW.state OR OLD.checksum IS NOT NEW.checksum OR OLD.stored_bytes IS NOT NEW.stored_bytes"
    " OR OLD.verified_at IS NOT NEW.verified_at OR OLD.stored_checksum IS NOT NEW.stored_checksum"
    " OR OLD.layout IS NOT NEW.layout OR OLD.codec IS NOT NEW.codec"
)


def _trigger(name: str, event: str, table: str, kind: str, doc: str, when: str | None) -> str:
    return (
        f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table}"
        f"{' WHEN ' + when if when else ''} BEGIN"
        f" INSERT INTO meta(key, value) SELECT '{OUTBOX_RESYNC_KEY}', {_NOW} WHERE {_OPEN} AND {_FULL};"
        f" INSERT INTO outbox(kind, row_id, doc) SELECT '{kind}', NEW.id, {doc.format(p='NEW.')} WHERE {_OPEN};"
        " END;"
    )


_OUTBOX_TRIGGERS = {
    "outbox_files_i": _trigger("outbox_files_i", "INSERT", "files", "file", _FILE_DOC, None),
    "outbox_files_u": _trigger("outbox_files_u", "UPDATE", "files", "file", _FILE_DOC, _FILE_CHANGED),
    "outbox_copies_i": _trigger("outbox_copies_i", "INSERT", "copies", "copy", _COPY_DOC, None),
    "outbox_copies_u": _trigger("outbox_copies_u", "UPDATE", "copies", "copy", _COPY_DOC, _COPY_CHANGED),
}


def configure_outbox(j: Journal, cap: int | None) -> bool:
    """The daemon at start: with a catalog (`cap`), install the outbox triggers and its cap; the
    first time (or after a run without a catalog) note that the catalog needs a full resync.
    Without one, remove the triggers and the outbox (a later catalog resyncs from the tables).
    Returns True if a resync is due."""
    with j._tx() as db:
        had = db.execute("SELECT value FROM meta WHERE key = ?", (OUTBOX_CAP_KEY,)).fetchone()
        if cap is None:
            for name in _OUTBOX_TRIGGERS:
                db.execute(f"DROP TRIGGER IF EXISTS {name}")
            db.execute("DELETE FROM outbox")
            db.execute(
                "DELETE FROM meta WHERE key IN (?, ?, ?)", (OUTBOX_CAP_KEY, OUTBOX_RESYNC_KEY, RESYNC_RUNNING_KEY)
            )
            return False
        for sql in _OUTBOX_TRIGGERS.values():
            db.execute(sql)
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (OUTBOX_CAP_KEY, str(cap)))
        if had is None:
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (OUTBOX_RESYNC_KEY, repr(j._clock())))
            j._audit(None, "catalog.enabled", outbox_cap=cap)
        due = db.execute("SELECT 1 FROM meta WHERE key IN (?, ?)", (OUTBOX_RESYNC_KEY, RESYNC_RUNNING_KEY))
        return due.fetchone() is not None


def outbox_next(j: Journal, limit: int) -> list[OutboxRecord]:
    """The oldest `limit` records of the outbox, in order."""
    rows = j._db.execute("SELECT seq, kind, row_id, doc FROM outbox ORDER BY seq LIMIT ?", (limit,))
    return [OutboxRecord(int(s), str(k), int(r), json.loads(d)) for s, k, r, d in rows]


def outbox_done(j: Journal, upto: int, status: dict[str, Any]) -> None:
    """The records up to `upto` are in the catalog (committed there): drop them; remember `status`."""
    with j._tx() as db:
        db.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (CATALOG_STATUS_KEY, json.dumps(status)))


def set_catalog_status(j: Journal, status: dict[str, Any]) -> None:
    """What the publisher last said (published, errors, last success): `acqd status` shows it."""
    with j._tx() as db:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (CATALOG_STATUS_KEY, json.dumps(status)))


def outbox_state(j: Journal) -> dict[str, Any]:
    """depth (records waiting), cap (None: no catalog), resync_since (the outbox filled up, the
    catalog was just enabled, or a resync was interrupted: a resync from the tables is due), status
    (the publisher's last word)."""
    if not _has_column(j, "outbox", "seq"):  # a read-only journal of an older acqd
        return {"depth": 0, "cap": None, "resync_since": None, "status": None}
    meta = dict(
        j._db.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?, ?, ?)",
            (OUTBOX_CAP_KEY, OUTBOX_RESYNC_KEY, CATALOG_STATUS_KEY, RESYNC_RUNNING_KEY),
        ).fetchall()
    )
    # the outbox is contiguous (appended in order, drained from the front): no COUNT(*) over a million rows
    depth = j._db.execute("SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0) FROM outbox").fetchone()[0]
    cap = meta.get(OUTBOX_CAP_KEY)
    since = meta.get(OUTBOX_RESYNC_KEY, meta.get(RESYNC_RUNNING_KEY))
    status = meta.get(CATALOG_STATUS_KEY)
    return {
        "depth": int(depth),
        "cap": int(cap) if cap is not None else None,
        "resync_since": float(since) if since is not None else None,
        "status": json.loads(status) if status else None,
    }


def begin_resync(j: Journal) -> None:
    """The outbox is drained and a resync is due: record changes again from now on (the snapshot the
    publisher reads next is at least as new as anything dropped meanwhile)."""
    with j._tx() as db:
        r = db.execute("SELECT value FROM meta WHERE key = ?", (OUTBOX_RESYNC_KEY,)).fetchone()
        db.execute("DELETE FROM meta WHERE key = ?", (OUTBOX_RESYNC_KEY,))
        db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (RESYNC_RUNNING_KEY, r[0] if r else repr(j._clock()))
        )
        j._audit(None, "catalog.resync")


def outbox_floor(j: Journal, published: int) -> bool:
    """The catalog has records of this journal up to sequence number `published`, but the outbox
    numbers below it: the journal was restored from a backup. Its rows and changes would look
    older than what the catalog holds and be refused, so: number on from `published`, drop the
    waiting records and note a resync (the journal's tables, published at that number, replace what
    the catalog holds). True if the journal was behind."""
    with j._tx() as db:
        r = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        have = int(r[0]) if r else 0
        if have >= published:
            return False
        if r:
            db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox'", (published,))
        else:
            db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('outbox', ?)", (published,))
        db.execute("DELETE FROM outbox")  # all older than `published`: the resync carries their rows
        db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (OUTBOX_RESYNC_KEY, repr(j._clock())))
        j._audit(None, "catalog.rewound", journal_seq=have, catalog_seq=published)
        return True


def end_resync(j: Journal) -> None:
    """The snapshot begun by `begin_resync` is in the catalog."""
    with j._tx() as db:
        db.execute("DELETE FROM meta WHERE key = ?", (RESYNC_RUNNING_KEY,))


def snapshot(path: Path, batch: int = 5000) -> Iterator[list[OutboxRecord]]:
    """Every file and copy row of the journal at `path`, read in one read transaction (a consistent
    snapshot beside a running daemon), in batches; each record carries the outbox sequence number at
    the snapshot, so anything the outbox records later supersedes it in the catalog."""
    try:
        db = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=10, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}") from None
    try:
        db.execute("BEGIN")
        have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        seq = 0
        if "sqlite_sequence" in have:
            r = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            seq = int(r[0]) if r else 0
        if "files" not in have:
            return
        has_stored = any(r[1] == "stored_checksum" for r in db.execute("PRAGMA table_info(copies)"))
        copy_doc = _COPY_DOC if has_stored else _COPY_DOC.replace("{p}stored_checksum", "NULL")
        for kind, table, doc in (("file", "files", _FILE_DOC), ("copy", "copies", copy_doc)):
            cur = db.execute(f"SELECT id, {doc.format(p='')} FROM {table} ORDER BY id")
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                yield [OutboxRecord(seq, kind, int(i), json.loads(d)) for i, d in rows]
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}") from None
    finally:
        db.close()


# --- what the facility hub did (read back from the catalog) -------------------------------------
#
# A daemon whose retention the hub owns does not purge or move its copies itself: the hub does, on
# central storage, and records it in the catalog. The publisher reads those records back (acqd.catalog
# `hub_actions`) and the journal applies them here, each batch in one transaction with the highest
# hub audit id seen, so a batch is applied once even if the daemon dies in between. The copies'
# changes go to the outbox like any other (the catalog's daemon rows then agree with the hub's).

HUB_SEEN_KEY = "hub_actions_seen"


def hub_seen(j: Journal) -> int:
    """The highest hub audit id this journal has looked at (0: none)."""
    r = j._db.execute("SELECT value FROM meta WHERE key = ?", (HUB_SEEN_KEY,)).fetchone()
    return int(r[0]) if r else 0


def apply_hub_actions(j: Journal, actions: Iterable[HubAction], seen: int) -> int:
    """Record the hub's purges and moves of this journal's copies (a purged copy: `purged`; a moved
    one: `moved`, and its new copy on the other tier, same name, `verified`, keeping the first
    copy's age) and that audit ids up to `seen` were looked at. Returns the copies changed. An
    object the journal has no verified copy of (already applied, or not this journal's) is skipped."""
    n = 0
    with j._tx() as db:
        for a in actions:
            row = db.execute(
                "SELECT id, file_id, layout, codec, source_bytes, stored_bytes, checksum, verified_at, meta_checksum"
                " FROM copies WHERE tier = ? AND dest = ? AND state = 'verified'",
                (a.tier, a.dest),
            ).fetchone()
            if row is None:
                continue
            cid, fid, layout, codec, sbytes, stored, checksum, verified_at, meta = row
            if a.kind == "moved" and a.to_tier:
                db.execute(
                    "INSERT INTO copies(file_id, tier, dest, layout, codec, source_bytes, stored_bytes, checksum,"
                    " state, stored_at, verified_at, meta_checksum) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 'verified', ?, ?, ?)"
                    " ON CONFLICT(tier, dest) DO UPDATE SET state = 'verified', stamp = NULL",
                    (fid, a.to_tier, a.dest, layout, codec, sbytes, stored, checksum, a.at, verified_at, meta),
                )
                db.execute("UPDATE copies SET state = 'moved' WHERE id = ?", (cid,))
                j._audit(fid, "hub.moved", copy=cid, tier=a.tier, to=a.to_tier, hub_audit=a.id)
            elif a.kind == "purged":
                db.execute("UPDATE copies SET state = 'purged' WHERE id = ?", (cid,))
                j._audit(fid, "hub.purged", copy=cid, tier=a.tier, hub_audit=a.id)
            else:
                continue
            db.execute(_SESSION_DIRTY, (fid,))
            db.execute(_ROW_NEWER, (j._clock(), fid))
            n += 1
        db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (HUB_SEEN_KEY, str(seen)),
        )
    return n
