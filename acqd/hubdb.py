"""The facility hub's PostgreSQL access (psycopg 3, blocking: the hub calls it on one thread).
An adapter: plain values in and out; the tables are migration 0002 (acqd/catalog_sql).

The lease: one row per hub name. A replica takes it when it is free or expired, keeps it by
renewing it, and every write the hub makes runs in a transaction that first checks, with a share
lock on the row, that this replica still holds it with its fencing token and at least `margin`
seconds to run (the server's clock only). A replica that lost it gets FenceError and stops.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from acqd.errors import CatalogError, ConfigError, FenceError

log = logging.getLogger("acqd.hub")

try:
    import psycopg
except ImportError:  # an optional extra
    psycopg = None  # type: ignore[assignment]

#: the catalog schema version the hub needs (0002_hub)
HUB_SCHEMA = 2


def _line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


# one stored copy the hub manages, with its file: the columns `items` returns, in order
ITEM_COLS = (
    "h.id, h.instrument, h.journal_id, h.file_id, h.tier, h.dest, h.layout, h.codec, h.source_bytes, "
    "h.stored_bytes, h.checksum, h.verified_at, h.added, f.root, f.relpath, f.version, f.state, f.size, "
    "f.mtime_ns, f.checksum, f.detector, f.session, extract(epoch FROM f.first_seen)::float8,"
    " extract(epoch FROM f.updated)::float8"
)
_ITEM_FROM = (
    " FROM acqd.hub_copies h"
    " JOIN acqd.files f ON (f.instrument, f.journal_id, f.file_id) = (h.instrument, h.journal_id, h.file_id)"
    " LEFT JOIN acqd.copies c ON (c.instrument, c.journal_id, c.copy_id) = (h.instrument, h.journal_id, h.copy_id)"
    " WHERE h.state = 'verified' AND (NOT h.origin OR c.state = 'verified')"
)
#: the copies the hub manages (see HubDb.item_batches)
ITEMS_SQL = f"SELECT {ITEM_COLS}{_ITEM_FROM}"
#: the sweep's cursor: the ids of the hub's live copies, oldest first (an index scan of
#: hub_copies_live_age, whatever the size: one table, no join for the planner to misjudge) ...
LIVE_IDS_SQL = "SELECT id FROM acqd.hub_copies WHERE state = 'verified' ORDER BY verified_at, id"
#: ... and per batch of ids (%s), those the hub manages with their files, in the batch's order
BATCH_SQL = (
    f"SELECT {ITEM_COLS} FROM unnest(%s::bigint[]) WITH ORDINALITY AS b(id, n) JOIN acqd.hub_copies h ON h.id = b.id"
    + _ITEM_FROM.split(" FROM acqd.hub_copies h", 1)[1]
    + " ORDER BY b.n"
)
#: ... and the daemons' copies on the hub's tiers that its next sweep would take in (%s: the tiers'
#: names and URLs), under negative ids: what `acqd hub plan` shows, without writing anything
PREVIEW_SQL = (
    ITEMS_SQL + " UNION ALL SELECT -row_number() OVER (ORDER BY c.instrument, c.journal_id, c.copy_id), c.instrument,"
    " c.journal_id, c.file_id, c.tier, c.dest, c.layout, c.codec, c.source_bytes, c.stored_bytes,"
    " c.checksum, extract(epoch FROM COALESCE(c.verified_at, c.stored_at)), 0, f.root"
    + ITEM_COLS.split(", f.root", 1)[1]
    + " FROM acqd.copies c JOIN unnest(%s::text[], %s::text[]) AS t(name, url)"
    " ON t.name = c.tier AND c.url = t.url || '/' || c.dest"
    " JOIN acqd.files f ON (f.instrument, f.journal_id, f.file_id) = (c.instrument, c.journal_id, c.file_id)"
    " WHERE c.state = 'verified' AND NOT EXISTS (SELECT 1 FROM acqd.hub_copies h WHERE"
    " (h.instrument, h.journal_id, h.copy_id, h.tier) = (c.instrument, c.journal_id, c.copy_id, c.tier)"
    " OR (h.instrument, h.journal_id, h.tier, h.dest) = (c.instrument, c.journal_id, c.tier, c.dest))"
)


class HubDb:
    """One connection to the catalog, reconnected when it breaks. Every method may raise
    CatalogError (one line); writes raise FenceError when the lease is not this replica's."""

    def __init__(
        self,
        url: str,
        password: str | None,
        *,
        name: str,
        holder: str,
        ttl: float,
        connect_timeout: float = 10.0,
        statement_timeout: float = 60.0,
    ) -> None:
        if psycopg is None:
            raise ConfigError("hub: the PostgreSQL client is not installed: pip install 'acqd[catalog]'")
        self.url, self._password = url, password
        self.name, self.holder, self.ttl = name, holder, ttl
        self.margin = ttl / 2  # a fenced step starts only with at least this much of the lease left
        self.connect_timeout, self.statement_timeout = connect_timeout, statement_timeout
        self.token: int | None = None
        self._conn: Any = None

    # -- connection ---------------------------------------------------------------------------

    def conn(self) -> Any:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self.close()
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, round(self.connect_timeout))}
        if self._password is not None:
            kwargs["password"] = self._password
        try:
            c = psycopg.connect(self.url, application_name="acqd-hub", **kwargs)
            c.execute(
                "SELECT set_config('statement_timeout', %s, false)", (f"{round(self.statement_timeout * 1000)}ms",)
            )
        except (psycopg.Error, OSError) as exc:
            raise CatalogError(_line(exc)) from None
        self._conn = c
        return c

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception as exc:  # a dead connection: nothing to flush
                log.debug("hub: closing the catalog connection: %s", exc)
            self._conn = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (FenceError, CatalogError):
            raise
        except (psycopg.Error, OSError) as exc:
            raise CatalogError(_line(exc)) from None

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._errors():
            return list(self.conn().execute(sql, args).fetchall())

    @contextmanager
    def _fenced(self) -> Iterator[Any]:
        """A transaction that holds a share lock on this replica's lease row (FenceError if it is not)."""
        with self._errors():
            c = self.conn()
            with c.transaction():
                cur = c.cursor()
                cur.execute(
                    "SELECT 1 FROM acqd.hub_lease WHERE name = %s AND holder = %s AND token = %s "
                    "AND expires > now() + make_interval(secs => %s) FOR SHARE",
                    (self.name, self.holder, self.token if self.token is not None else -1, self.margin),
                )
                if cur.fetchone() is None:
                    raise FenceError(f"the hub lease {self.name!r} is no longer this replica's ({self.holder})")
                yield cur

    def schema_version(self) -> int:
        rows = self._rows("SELECT to_regclass('acqd.schema_version') IS NOT NULL")
        if not rows or not rows[0][0]:
            return 0
        return int(self._rows("SELECT COALESCE(MAX(version), 0) FROM acqd.schema_version")[0][0])

    # -- the lease ------------------------------------------------------------------------------

    def acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it; True if this replica holds it now.
        The fencing token changes only when the holder does."""
        rows = self._rows(
            "INSERT INTO acqd.hub_lease AS l (name, holder, token, acquired, expires) "
            "VALUES (%s, %s, 1, now(), now() + make_interval(secs => %s)) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "token = CASE WHEN l.holder = excluded.holder THEN l.token ELSE l.token + 1 END, "
            "acquired = CASE WHEN l.holder = excluded.holder THEN l.acquired ELSE now() END, "
            "expires = excluded.expires "
            "WHERE l.holder = excluded.holder OR l.expires <= now() RETURNING token",
            (self.name, self.holder, self.ttl),
        )
        self.token = int(rows[0][0]) if rows else None
        return self.token is not None

    def release(self) -> None:
        """Give the lease up (a clean stop): another replica may take it at once."""
        self._rows(
            "UPDATE acqd.hub_lease SET expires = now() WHERE name = %s AND holder = %s RETURNING token",
            (self.name, self.holder),
        )
        self.token = None

    def lease(self) -> tuple[str, int, float] | None:
        """(holder, token, seconds left) of the lease, None if nobody ever took it."""
        rows = self._rows(
            "SELECT holder, token, extract(epoch FROM expires - now()) FROM acqd.hub_lease WHERE name = %s",
            (self.name,),
        )
        return (str(rows[0][0]), int(rows[0][1]), float(rows[0][2])) if rows else None

    # -- items ----------------------------------------------------------------------------------

    def adopt(self, tiers: dict[str, str], now: float) -> tuple[int, int]:
        """Take the daemons' verified copies on the hub's tiers into hub_copies (once each). A copy
        is the hub's only if its recorded URL is the hub's tier URL and its name. An object the hub
        already has of that journal (a transition's new copy, which the daemon records when it reads
        the hub's actions back) is not taken in again under the daemon's row. Returns (new,
        verified copies left alone: a tier the hub does not have, or another URL under its name)."""
        names, urls = list(tiers), [u.rstrip("/") for u in tiers.values()]
        with self._fenced() as cur:
            # Every copy to take in is found before the first is inserted (the sort in `todo` reads
            # them all first): probing hub_copies from inside the INSERT that fills it walked the index
            # entries it was adding (a first adoption of 10^6 copies took over 11 minutes, not seconds).
            cur.execute(
                "WITH todo AS MATERIALIZED (SELECT c.instrument, c.journal_id, c.copy_id, c.file_id, c.tier,"
                " c.dest, c.layout, c.codec, c.source_bytes, c.stored_bytes, c.checksum,"
                " extract(epoch FROM COALESCE(c.verified_at, c.stored_at)) AS verified_at"
                " FROM acqd.copies c JOIN unnest(%s::text[], %s::text[]) AS t(name, url)"
                " ON t.name = c.tier AND c.url = t.url || '/' || c.dest"
                # only the copies of journals that hand retention to the hub (`retention.owner: hub`):
                # a daemon that keeps it purges its own copies and keeps its holds in its journal
                " JOIN acqd.journals j ON j.instrument = c.instrument AND j.journal_id = c.journal_id"
                " AND j.retention_owner = 'hub'"
                " WHERE c.state = 'verified' AND NOT EXISTS (SELECT 1 FROM acqd.hub_copies h WHERE"
                " h.instrument = c.instrument AND h.tier = c.tier AND h.dest = c.dest AND h.journal_id = c.journal_id)"
                " ORDER BY c.instrument, c.journal_id, c.copy_id)"
                " INSERT INTO acqd.hub_copies (instrument, journal_id, copy_id, file_id, tier, dest, layout, codec,"
                " source_bytes, stored_bytes, checksum, verified_at, state, origin, added)"
                " SELECT instrument, journal_id, copy_id, file_id, tier, dest, layout, codec, source_bytes,"
                " stored_bytes, checksum, verified_at, 'verified', true, %s FROM todo"
                " ON CONFLICT (instrument, journal_id, copy_id, tier) DO NOTHING",
                (names, urls, now),
            )
            new = cur.rowcount
            cur.execute(
                "SELECT COUNT(*) FROM acqd.copies c WHERE c.state = 'verified' AND NOT EXISTS ("
                " SELECT 1 FROM unnest(%s::text[], %s::text[]) AS t(name, url)"
                " WHERE t.name = c.tier AND c.url = t.url || '/' || c.dest)",
                (names, urls),
            )
            row = cur.fetchone()
        return int(new), int(row[0]) if row else 0

    def has_copies_on(self, tier: str) -> bool:
        """Whether the hub has ever recorded a copy on `tier` (it is in use, not new)."""
        rows = self._rows("SELECT EXISTS (SELECT 1 FROM acqd.hub_copies WHERE tier = %s)", (tier,))
        return bool(rows and rows[0][0])

    def earliest_warned(self) -> float | None:
        """The earliest purge date a delivered warning announces for a copy the hub has verified
        (a superset of the copies it manages: `item_batches` may leave some out), None if none."""
        rows = self._rows(
            "SELECT min(w.purge_at) FROM acqd.hub_warnings w JOIN acqd.hub_copies h ON h.id = w.copy"
            " WHERE w.voided IS NULL AND h.state = 'verified'"
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def item_batches(
        self, batch: int, preview: dict[str, str] | None = None
    ) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[int, float, float, str]]]]:
        """The copies the hub manages now (ITEM_COLS): verified, and for a daemon's own copy, still
        verified in its journal (a copy its daemon purged or moved is not the hub's to act on);
        oldest first ((verified_at, id): the planner's order), `batch` at a time in one read-only
        snapshot: a server-side cursor yields their ids in that order, each batch's rows and its
        delivered warnings (copy, purge date, sent, recipient) are read by id. Only one batch is
        held at a time.
        `preview` (tier name -> URL, `acqd hub plan`): also the daemons' copies the next sweep would
        take in, under negative ids (they have no warnings yet); nothing is written."""
        with self._errors():
            conn = self.conn()
            with conn.transaction(), conn.cursor(name="acqd_hub_items") as cur:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.itersize = batch
                if preview is None:
                    cur.execute(LIVE_IDS_SQL)
                else:  # a dry run: the copies not taken in yet have no id to order by; sorted by the server
                    names, urls = list(preview), [u.rstrip("/") for u in preview.values()]
                    cur.execute(PREVIEW_SQL + " ORDER BY 12, 1", (names, urls))
                while rows := cur.fetchmany(batch):
                    ids = [int(r[0]) for r in rows]
                    if preview is None:
                        rows = conn.execute(BATCH_SQL, (ids,)).fetchall()
                    ws = conn.execute(
                        "SELECT copy, purge_at, sent_at, recipient FROM acqd.hub_warnings"
                        " WHERE voided IS NULL AND copy = ANY(%s) ORDER BY id",
                        (ids,),
                    ).fetchall()
                    yield rows, [(int(c), float(p), float(t), str(r)) for c, p, t, r in ws]

    def add_copy(self, copy: int, tier: str, now: float) -> int:
        """A hub transition's new copy (same name, another tier), keeping the first copy's age."""
        with self._fenced() as cur:
            cur.execute(
                "INSERT INTO acqd.hub_copies (instrument, journal_id, copy_id, file_id, tier, dest, layout, codec,"
                " source_bytes, stored_bytes, checksum, verified_at, state, origin, added)"
                " SELECT instrument, journal_id, copy_id, file_id, %s, dest, layout, codec, source_bytes,"
                " stored_bytes, checksum, verified_at, 'verified', false, %s FROM acqd.hub_copies WHERE id = %s"
                " ON CONFLICT (instrument, journal_id, copy_id, tier) DO UPDATE SET state = 'verified'"
                " RETURNING id",
                (tier, now, copy),
            )
            row = cur.fetchone()
            if row:  # the warnings delivered for the old copy announce the purge of the file: carried
                cur.execute(
                    "INSERT INTO acqd.hub_warnings (copy, recipient, purge_at, sent_at)"
                    " SELECT %s, recipient, purge_at, sent_at FROM acqd.hub_warnings WHERE copy = %s AND voided IS NULL"
                    " AND NOT EXISTS (SELECT 1 FROM acqd.hub_warnings WHERE copy = %s)",
                    (row[0], copy, row[0]),
                )
            self._audit(cur, copy, "retention.copy_added", {"tier": tier})
        return int(row[0]) if row else 0

    def mark_copy(self, copy: int, state: str, action: str, detail: dict[str, Any]) -> None:
        """A copy purged, moved off its tier or found missing; its open actions are done."""
        with self._fenced() as cur:
            cur.execute("UPDATE acqd.hub_copies SET state = %s WHERE id = %s", (state, copy))
            cur.execute("UPDATE acqd.hub_actions SET done = %s WHERE copy = %s AND done IS NULL", (time.time(), copy))
            self._audit(cur, copy, action, detail)

    def begin(self, kind: str, copy: int | None) -> bool:
        """Fence a step; with a copy, record it as begun. True if it was begun before and never finished."""
        with self._fenced() as cur:
            if copy is None:
                return False
            cur.execute(
                "INSERT INTO acqd.hub_actions (copy, kind, token, holder, begun) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (copy, kind) WHERE done IS NULL DO NOTHING RETURNING id",
                (copy, kind, self.token, self.holder, time.time()),
            )
            return cur.fetchone() is None

    # -- warnings -------------------------------------------------------------------------------

    def record_warnings(self, copies: list[int], recipient: str, purge_at: dict[int, float], now: float) -> None:
        with self._fenced() as cur:
            for c in copies:
                cur.execute(
                    "INSERT INTO acqd.hub_warnings (copy, recipient, purge_at, sent_at) VALUES (%s, %s, %s, %s)",
                    (c, recipient, purge_at[c], now),
                )
                self._audit(cur, c, "retention.warned", {"recipient": recipient, "purge_at": purge_at[c]})

    def void_warnings(self, copy: int, now: float, reason: str) -> int:
        with self._fenced() as cur:
            cur.execute("UPDATE acqd.hub_warnings SET voided = %s WHERE copy = %s AND voided IS NULL", (now, copy))
            n = cur.rowcount
            self._audit(cur, copy, "retention.warning.voided", {"warnings": n, "reason": reason})
        return int(n)

    # -- holds ----------------------------------------------------------------------------------

    def holds_ended_after(self, since: float) -> list[tuple[str, float, str, str, str]]:
        """(target, end, reason, root, instrument) of every hold whose end (`until`, or its release
        if sooner) is after `since`."""
        rows = self._rows(
            "SELECT target, LEAST(until, COALESCE(released, until)) AS e, reason, root, instrument FROM acqd.holds"
            " WHERE LEAST(until, COALESCE(released, until)) > %s ORDER BY id",
            (since,),
        )
        return [(str(t), float(u), str(r), str(w), str(i)) for t, u, r, w, i in rows]

    def active_holds(self, now: float) -> list[tuple[int, str, float, str, str, str, float, str]]:
        """(id, target, until, reason, root, instrument, created, placed_by) of the holds in force at `now`."""
        rows = self._rows(
            "SELECT id, target, until, reason, root, instrument, created, placed_by FROM acqd.holds"
            " WHERE released IS NULL AND until > %s ORDER BY id",
            (now,),
        )
        return [(int(a), str(b), float(c), str(d), str(e), str(f), float(g), str(h)) for a, b, c, d, e, f, g, h in rows]

    def add_hold(self, target: str, until: float, reason: str, now: float, root: str, instrument: str, by: str) -> int:
        """A hold (any process may place one: no lease needed); the same hold asked again, still in
        force, is not placed twice."""
        same = self._rows(
            "SELECT id FROM acqd.holds WHERE instrument = %s AND root = %s AND target = %s AND until = %s"
            " AND reason = %s AND released IS NULL",
            (instrument, root, target, until, reason),
        )
        if same:
            return int(same[0][0])
        rows = self._rows(
            "INSERT INTO acqd.holds (instrument, root, target, until, reason, created, placed_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (instrument, root, target, until, reason, now, by),
        )
        return int(rows[0][0])

    def release_holds(self, target: str, now: float, instrument: str | None) -> int:
        args: tuple[Any, ...] = (now, target)
        cond = ""
        if instrument is not None:
            cond, args = " AND instrument IN (%s, '')", (*args, instrument)
        rows = self._rows(
            f"UPDATE acqd.holds SET released = %s WHERE target = %s{cond} AND released IS NULL RETURNING id", args
        )
        return len(rows)

    def files_matching(self, target: str, instrument: str | None) -> list[tuple[str, str, str, int]]:
        """(instrument, root, session, stored bytes) of the catalogued files with a verified copy a
        hold on `target` (a session, or a folder or file relative to a watch root) covers."""
        t = target.strip("/")
        args: tuple[Any, ...] = (t, t, t + "/", t + "0")
        cond = ""
        if instrument is not None:
            cond, args = " AND f.instrument = %s", (*args, instrument)
        return [
            (str(a), str(b), str(c), int(d))
            for a, b, c, d in self._rows(
                "SELECT f.instrument, f.root, f.session, c.stored_bytes FROM acqd.files f JOIN acqd.copies c"
                " USING (instrument, journal_id, file_id) WHERE c.state = 'verified'"
                " AND (f.session = %s OR f.relpath = %s OR (f.relpath >= %s AND f.relpath < %s))" + cond,
                args,
            )
        ]

    # -- the clock guard and the audit ----------------------------------------------------------

    def state(self, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT value FROM acqd.hub_state WHERE key = %s", (key,))
        return dict(rows[0][0]) if rows else None

    def set_state(self, key: str, value: dict[str, Any], audit: str | None, detail: dict[str, Any]) -> None:
        with self._fenced() as cur:
            cur.execute(
                "INSERT INTO acqd.hub_state (key, value) VALUES (%s, %s::jsonb)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
            if audit is not None:
                self._audit(cur, None, audit, detail)

    def add_clock_ack(self, wall: float, boot_id: str, boottime: float, reason: str, who: str) -> int:
        rows = self._rows(
            "INSERT INTO acqd.hub_clock_acks (wall, boot_id, boottime, reason, who) VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id",
            (wall, boot_id, boottime, reason, who),
        )
        return int(rows[0][0])

    def pending_clock_acks(self) -> list[tuple[int, float, str, float, str, str]]:
        rows = self._rows(
            "SELECT id, wall, boot_id, boottime, reason, who FROM acqd.hub_clock_acks WHERE applied IS NULL ORDER BY id"
        )
        return [(int(i), float(w), str(b), float(bt), str(r), str(who)) for i, w, b, bt, r, who in rows]

    def clock_ack_applied(self, ack_id: int, now: float, detail: dict[str, Any]) -> None:
        with self._fenced() as cur:
            cur.execute("UPDATE acqd.hub_clock_acks SET applied = %s WHERE id = %s", (now, ack_id))
            self._audit(cur, None, "retention.clock.acknowledged", {"ack": ack_id, **detail})

    def audit(self, copy: int | None, action: str, detail: dict[str, Any]) -> None:
        with self._fenced() as cur:
            self._audit(cur, copy, action, detail)

    def _audit(self, cur: Any, copy: int | None, action: str, detail: dict[str, Any]) -> None:
        cur.execute(
            "INSERT INTO acqd.hub_audit (ts, copy, action, holder, detail) VALUES (%s, %s, %s, %s, %s::jsonb)",
            (time.time(), copy, action, self.holder, json.dumps(detail, default=str)),
        )
