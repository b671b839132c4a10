"""The facility catalog: a shared PostgreSQL that every daemon publishes its journal to (psycopg 3,
async). An adapter: the daemon hands it an `OutboxSource` (the journal's outbox, through the
journal's thread) and a metric callback; nothing here touches SQLite.

Guarantees (see README "A facility: the catalog"): a record reaches the catalog at least once
(the outbox row is dropped only after PostgreSQL committed it) and is applied at most once in
effect (rows are keyed by instrument, journal id and journal row id; a row is replaced only by a
state whose outbox sequence number is at least as new), so a PostgreSQL outage, a daemon crash or
a replay never loses, doubles or reorders anything. A catalog that is down never stops shipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

from acqd.aio import within
from acqd.errors import CatalogError, ConfigError
from acqd.values import HubAction, OutboxRecord

log = logging.getLogger("acqd.catalog")


def _psycopg() -> Any:
    """psycopg, imported at first use: an optional extra, and a daemon without a catalog (or one
    starting) does not pay for loading it."""
    try:
        import psycopg
    except ImportError:  # an optional extra: a PC without a catalog needs no PostgreSQL client
        raise ConfigError("catalog: the PostgreSQL client is not installed: pip install 'acqd[catalog]'") from None
    return psycopg


def require_psycopg() -> None:
    _psycopg()


# -- migrations -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The schema's versions: acqd/catalog_sql/NNNN_name.sql, in order."""
    out = []
    for f in resources.files("acqd").joinpath("catalog_sql").iterdir():
        if f.name.endswith(".sql"):
            num, _, rest = f.name.partition("_")
            out.append(Migration(int(num), rest.removesuffix(".sql"), f.read_text()))
    out.sort(key=lambda m: m.version)
    if [m.version for m in out] != list(range(1, len(out) + 1)):
        raise CatalogError(f"catalog migrations are not numbered 1..n: {[m.version for m in out]}")
    return out


SCHEMA_VERSION = len(migrations())
_LOCK = 0x61637164  # pg_advisory_xact_lock key ("acqd"): one migration at a time


def one_line(exc: BaseException) -> str:
    """A PostgreSQL or network error as one line, with no password in it."""
    text = str(exc).strip() or type(exc).__name__
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


async def connect(url: str, password: str | None, timeout: float) -> Any:  # noqa: ASYNC109 (libpq's connect_timeout)
    """An autocommit connection (transactions are explicit). CatalogError with one line if it fails."""
    psycopg = _psycopg()
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, round(timeout))}
    if password is not None:
        kwargs["password"] = password
    try:
        return await within(psycopg.AsyncConnection.connect(url, application_name="acqd", **kwargs), timeout + 5)
    except TimeoutError:
        raise CatalogError(f"no answer from {url} within {timeout:g}s") from None
    except (psycopg.Error, OSError) as exc:
        raise CatalogError(one_line(exc)) from None


async def schema_version(conn: Any) -> int | None:
    """The catalog's schema version; None if it has none (never migrated)."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT to_regclass('acqd.schema_version') IS NOT NULL")
        row = await cur.fetchone()
        if not row or not row[0]:
            return None
        await cur.execute("SELECT COALESCE(MAX(version), 0) FROM acqd.schema_version")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def migrate(conn: Any) -> list[str]:
    """Apply the migrations the catalog lacks, each in its own transaction under an advisory lock
    (two `acqd catalog migrate` at once apply each once). Returns the names applied ([] = up to date)."""
    applied: list[str] = []
    for m in migrations():
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            await cur.execute("CREATE SCHEMA IF NOT EXISTS acqd")
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS acqd.schema_version("
                "version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())"
            )
            await cur.execute("SELECT 1 FROM acqd.schema_version WHERE version = %s", (m.version,))
            if await cur.fetchone():
                continue
            await cur.execute(m.sql)
            await cur.execute("INSERT INTO acqd.schema_version(version, name) VALUES (%s, %s)", (m.version, m.name))
            applied.append(f"{m.version:04d}_{m.name}")
    return applied


async def require_schema(conn: Any) -> int:
    have = await schema_version(conn)
    if have is None or have < SCHEMA_VERSION:
        raise CatalogError(
            f"the catalog's schema is at version {have or 0}, this acqd needs {SCHEMA_VERSION}: "
            "run `acqd catalog migrate --config ...`"
        )
    return have


# -- publishing -----------------------------------------------------------------------------------


def _ts(x: Any) -> datetime | None:
    return None if x is None else datetime.fromtimestamp(float(x), UTC)


_FILE_UPSERT = """
INSERT INTO acqd.files AS t (instrument, journal_id, file_id, root, relpath, version, current, state, reason,
    size, mtime_ns, checksum, detector, session, first_seen, updated, seq)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (instrument, journal_id, file_id) DO UPDATE SET
    root = excluded.root, relpath = excluded.relpath, version = excluded.version, current = excluded.current,
    state = excluded.state, reason = excluded.reason, size = excluded.size, mtime_ns = excluded.mtime_ns,
    checksum = excluded.checksum, detector = excluded.detector, session = excluded.session,
    first_seen = excluded.first_seen, updated = excluded.updated, seq = excluded.seq, published = now()
WHERE t.seq <= excluded.seq
"""

_COPY_UPSERT = """
INSERT INTO acqd.copies AS t (instrument, journal_id, copy_id, file_id, tier, url, dest, layout, codec,
    source_bytes, stored_bytes, checksum, stored_checksum, state, stored_at, verified_at, seq)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (instrument, journal_id, copy_id) DO UPDATE SET
    file_id = excluded.file_id, tier = excluded.tier, url = excluded.url, dest = excluded.dest,
    layout = excluded.layout, codec = excluded.codec, source_bytes = excluded.source_bytes,
    stored_bytes = excluded.stored_bytes, checksum = excluded.checksum, stored_checksum = excluded.stored_checksum,
    state = excluded.state, stored_at = excluded.stored_at, verified_at = excluded.verified_at, seq = excluded.seq,
    published = now()
WHERE t.seq <= excluded.seq
"""

_JOURNAL_UPSERT = """
INSERT INTO acqd.journals AS t (instrument, journal_id, host, published_seq, retention_owner)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (instrument, journal_id) DO UPDATE SET host = excluded.host, last_contact = now(),
    published_seq = GREATEST(t.published_seq, excluded.published_seq), retention_owner = excluded.retention_owner
"""

_TIER_UPSERT = """
INSERT INTO acqd.tiers (instrument, journal_id, tier, url) VALUES (%s, %s, %s, %s)
ON CONFLICT (instrument, journal_id, tier) DO UPDATE SET url = excluded.url
"""


_HEARTBEAT = "UPDATE acqd.journals SET last_contact = now() WHERE instrument = %s AND journal_id = %s"

# One name, one source (DESIGN invariant 8): a stored object (instrument, tier, name) and a file
# version (instrument, watch root, path, version) are one thing, whichever journal publishes it. A
# fresh journal that adopted an older journal's copies (`acqd adopt` after a lost journal, a new PC)
# publishes rows for the same objects under its own id: of two journals holding one object, the
# row of the journal that met the catalog later stays and the other's goes; a file version goes
# with its copy. Run for each batch, on the batch's rows only (indexes copies_object, files_path),
# whichever of the two journals publishes last.
_PAIRS = """
WITH b AS MATERIALIZED (
    SELECT * FROM acqd.{table} WHERE instrument = %(i)s AND journal_id = %(j)s AND {id} = ANY(%(ids)s)
), pairs AS MATERIALIZED (
    SELECT b.journal_id AS bj, b.{id} AS bid, o.journal_id AS oj, o.{id} AS oid,
           (jb.first_contact, jb.journal_id) > (jo.first_contact, jo.journal_id) AS b_newer
    FROM b JOIN acqd.{table} o ON o.instrument = b.instrument AND {same} AND o.journal_id <> b.journal_id
    JOIN acqd.journals jb ON jb.instrument = b.instrument AND jb.journal_id = b.journal_id
    JOIN acqd.journals jo ON jo.instrument = o.instrument AND jo.journal_id = o.journal_id
), doomed AS MATERIALIZED (
    SELECT oj AS journal_id, oid AS id FROM pairs WHERE b_newer
    UNION SELECT bj, bid FROM pairs WHERE NOT b_newer
)
DELETE FROM acqd.{table} x USING doomed d
WHERE x.instrument = %(i)s AND x.journal_id = d.journal_id AND x.{id} = d.id
RETURNING x.journal_id, {ret}
"""
_SUPERSEDE_COPIES = _PAIRS.format(
    table="copies", id="copy_id", same="o.tier = b.tier AND o.dest = b.dest", ret="x.file_id"
)
_SUPERSEDE_FILES = _PAIRS.format(
    table="files",
    id="file_id",
    same="o.root = b.root AND o.relpath = b.relpath AND o.version = b.version",
    ret="x.file_id",
)
_DROP_FILES = """
DELETE FROM acqd.files f USING unnest(%(js)s::text[], %(ids)s::bigint[]) AS d(journal_id, file_id)
WHERE f.instrument = %(i)s AND f.journal_id = d.journal_id AND f.file_id = d.file_id
"""


async def supersede(conn: Any, target: Target, file_ids: list[int], copy_ids: list[int]) -> int:
    """Of this batch's rows and another journal's rows for the same stored objects or file
    versions, drop the older journal's (see _PAIRS); returns how many rows went."""
    key = {"i": target.instrument, "j": target.journal_id}
    n = 0
    async with conn.cursor() as cur:
        await cur.execute("SELECT count(*) FROM acqd.journals WHERE instrument = %s", (target.instrument,))
        row = await cur.fetchone()
        if row is None or int(row[0]) < 2:  # one journal: nothing to supersede (the common case)
            return 0
        gone: list[tuple[str, int]] = []
        if copy_ids:
            await cur.execute(_SUPERSEDE_COPIES, {**key, "ids": copy_ids})
            gone = [(str(j), int(f)) for j, f in await cur.fetchall()]
            n += len(gone)
        if gone:  # the file of a superseded copy is the same file version: it goes with it
            await cur.execute(_DROP_FILES, {**key, "js": [g[0] for g in gone], "ids": [g[1] for g in gone]})
            n += cur.rowcount
        if file_ids:
            await cur.execute(_SUPERSEDE_FILES, {**key, "ids": file_ids})
            n += len(await cur.fetchall())
    return n


def copy_url(tiers: dict[str, str], tier: str, dest: str) -> str:
    """Where a copy is: its tier's URL and its name (a tier the journal does not know: `tier:name`)."""
    base = tiers.get(tier)
    return f"{tier}:{dest}" if base is None else f"{base.rstrip('/')}/{dest}"


@dataclass(frozen=True)
class Target:
    """Whose records these are in the catalog."""

    instrument: str
    journal_id: str
    tiers: dict[str, str]  # tier name -> its URL (no password)
    host: str = socket.gethostname()
    #: who runs retention for these copies (`retention.owner`): the hub takes in only a 'hub' journal's
    retention_owner: str = "daemon"


async def upsert(conn: Any, target: Target, records: list[OutboxRecord]) -> int:
    """Publish `records` (in outbox order) in one transaction; returns how many rows were written.
    Of several states of one row in a batch only the newest is sent (the others would be replaced)."""
    latest: dict[tuple[str, int], OutboxRecord] = {}
    top = 0
    for r in records:
        latest[(r.kind, r.row_id)] = r
        top = max(top, r.seq)
    t = target
    files, copies = [], []
    for r in latest.values():
        d = r.doc
        if r.kind == "file":
            files.append(
                (
                    *(t.instrument, t.journal_id, r.row_id, d["root"], d["relpath"], d["version"]),
                    *(bool(d["current"]), d["state"], d["reason"], d["size"], d["mtime_ns"], d["checksum"]),
                    *(d["detector"], d["session"], _ts(d["first_seen"]), _ts(d["updated"]), r.seq),
                )
            )
        elif r.kind == "copy":
            copies.append(
                (
                    *(t.instrument, t.journal_id, r.row_id, d["file_id"], d["tier"]),
                    *(copy_url(t.tiers, d["tier"], d["dest"]), d["dest"], d["layout"], d["codec"]),
                    *(d["source_bytes"], d["stored_bytes"], d["checksum"], d["stored_checksum"], d["state"]),
                    *(_ts(d["stored_at"]), _ts(d["verified_at"]), r.seq),
                )
            )
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(_JOURNAL_UPSERT, (t.instrument, t.journal_id, t.host, top, t.retention_owner))
        if files:
            await cur.executemany(_FILE_UPSERT, files)
        if copies:
            await cur.executemany(_COPY_UPSERT, copies)
        await supersede(conn, t, [f[2] for f in files], [c[2] for c in copies])
    return len(files) + len(copies)


async def register(conn: Any, target: Target) -> int:
    """This journal and where its tiers are (a copy's URL is its tier's URL and its name). Returns
    the highest outbox sequence number the catalog holds of this journal."""
    async with conn.transaction(), conn.cursor() as cur:
        key = (target.instrument, target.journal_id)
        await cur.execute(_JOURNAL_UPSERT + " RETURNING published_seq", (*key, target.host, 0, target.retention_owner))
        row = await cur.fetchone()
        for name, url in target.tiers.items():
            await cur.execute(_TIER_UPSERT, (target.instrument, target.journal_id, name, url))
    return int(row[0]) if row else 0


async def import_snapshot(conn: Any, target: Target, batches: Iterator[list[OutboxRecord]]) -> int:
    """`acqd catalog import`: every row of a journal snapshot (acqd.journal.snapshot). Idempotent.
    The snapshot is read after the registration: a journal numbering below what the catalog holds
    of it was restored from a backup, and its rows would be refused as older (CatalogError)."""
    published = await register(conn, target)
    n = 0
    for batch in batches:
        if batch and batch[0].seq < published:
            raise CatalogError(
                f"the journal numbers its records below the {published} the catalog holds of it (restored from "
                "a backup?): start `acqd run` with it once, it republishes the journal, then import"
            )
        n += await upsert(conn, target, batch)
    return n


# What the facility hub did to a journal's stored objects (its audit, schema version 2): a purge, or
# a move (transition) whose new copy has the same name on `detail.to`. Read in audit order, up to
# an upper bound taken first: the hub writes its audit one transaction at a time, under its lease.
_HUB_TOP = "SELECT COALESCE(max(id), 0) FROM acqd.hub_audit"
_HUB_ACTIONS = """
SELECT a.id, a.action, h.tier, h.dest, a.detail->>'to', a.ts FROM acqd.hub_audit a
JOIN acqd.hub_copies h ON h.id = a.copy
WHERE a.id > %s AND a.id <= %s AND h.instrument = %s AND h.journal_id = %s
  AND a.action IN ('retention.purged', 'retention.transitioned')
ORDER BY a.id LIMIT %s
"""


async def hub_actions(conn: Any, target: Target, after: int, limit: int) -> tuple[list[HubAction], int]:
    """The hub's purges and moves of `target`'s objects recorded after audit id `after` (at most
    `limit`), and the audit id they cover up to (look again from there)."""
    async with conn.cursor() as cur:
        await cur.execute(_HUB_TOP)
        row = await cur.fetchone()
        top = int(row[0]) if row else 0
        if top <= after:
            return [], after
        await cur.execute(_HUB_ACTIONS, (after, top, target.instrument, target.journal_id, limit))
        rows = await cur.fetchall()
    out = [
        HubAction(int(i), "purged" if act == "retention.purged" else "moved", str(t), str(d), to, float(ts))
        for i, act, t, d, to, ts in rows
    ]
    return out, (out[-1].id if len(out) == limit else top)


class OutboxSource(Protocol):
    """The journal's outbox as the publisher sees it (the daemon runs each call on the journal's thread)."""

    async def next(self, limit: int) -> list[OutboxRecord]: ...

    async def done(self, upto: int, status: dict[str, Any]) -> None: ...

    async def state(self) -> dict[str, Any]: ...

    async def set_status(self, status: dict[str, Any]) -> None: ...

    async def floor(self, published: int) -> bool:
        """The catalog holds this journal's records up to `published`: a journal numbering below it
        (restored from a backup) numbers on from there and resyncs. True if it was behind."""
        ...

    async def begin_resync(self) -> None: ...

    async def end_resync(self) -> None: ...

    async def snapshot(self) -> Iterator[list[OutboxRecord]]:
        """A snapshot of the journal's tables (begun on the calling thread; iterate with `next_batch`)."""
        ...

    async def next_batch(self, it: Iterator[list[OutboxRecord]]) -> list[OutboxRecord] | None: ...

    async def hub_seen(self) -> int:
        """The highest hub audit id the journal has looked at."""
        ...

    async def apply_hub(self, actions: list[HubAction], seen: int) -> int:
        """Record the hub's actions in the journal (one transaction, with `seen`); the copies changed."""
        ...


#: the longest a statement of the publisher may run (a batch takes well under a second)
STATEMENT_TIMEOUT = 60.0
#: while idle, the publisher touches its journal's `last_contact` at least this often (fleet health)
HEARTBEAT = 30.0
#: the publisher reads back what the facility hub did to this journal's copies at least this often
READBACK = 60.0


class Publisher:
    """Drains the outbox into the catalog; reconnects with backoff; never raises out of `run`."""

    def __init__(
        self,
        url: str,
        password: str | None,
        target: Target,
        source: OutboxSource,
        *,
        batch: int = 500,
        connect_timeout: float = 10.0,
        retry_max: float = 60.0,
        poll: float = 0.2,
        statement_timeout: float = STATEMENT_TIMEOUT,
        heartbeat: float = HEARTBEAT,
        readback: float = READBACK,
        on_metric: Callable[[str, float], None] = lambda event, value: None,
    ) -> None:
        self.url, self._password, self.target, self.source = url, password, target, source
        self.batch, self.connect_timeout, self.retry_max, self.poll = batch, connect_timeout, retry_max, poll
        self.on_metric = on_metric
        self.statement_timeout = statement_timeout
        self.heartbeat = heartbeat
        self.readback = readback
        self._readback_at = 0.0  # monotonic time of the last look at the hub's actions (0: look at once)
        self.hub_applied = 0  # copies the hub purged or moved, recorded in the journal this run
        self.hub_looked = False  # the hub's actions were read back at least once in this run
        self.connected = False
        self.published = 0  # records written this run
        self.errors = 0
        self.last_error: str | None = None
        self._logged_error: str | None = None
        self._failures = 0
        self._full_logged = False
        self._status: dict[str, Any] = {}
        self.depth = 0

    def status(self) -> dict[str, Any]:
        return {
            **self._status,
            "connected": self.connected,
            "published_total": int(self._status.get("published_total", 0)),
            "last_error": self.last_error,
            "errors": self.errors,
            "at": time.time(),
        }

    async def run(self) -> None:
        st = await self.source.state()
        self._status = dict(st.get("status") or {})
        self._status.pop("connected", None)
        delay = 1.0
        while True:
            try:
                conn = await connect(self.url, self._password, self.connect_timeout)
                try:
                    # a server that takes the connection but never answers a statement (a lock held
                    # by someone, a stuck disk): an error after a bound, retried, not a silent stall
                    ms = f"{max(1, round(self.statement_timeout * 1000))}ms"
                    await conn.execute("SELECT set_config('statement_timeout', %s, false)", (ms,))
                    await require_schema(conn)
                    published = await register(conn, self.target)
                    if await self.source.floor(published):
                        log.warning(
                            "catalog: the journal numbers its records below the %d the catalog holds of it "
                            "(restored from a backup?): its tables are published again and replace them",
                            published,
                        )
                    self._up()
                    delay = 1.0
                    await self._pump(conn)
                finally:
                    self.connected = False
                    self.on_metric("connected", 0)
                    await asyncio.shield(self._close(conn))
            except CatalogError as exc:
                await self._failed(one_line(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # psycopg's errors: the server went away, a statement failed
                psycopg = sys.modules.get("psycopg")  # loaded by connect(), if it got that far
                if isinstance(exc, OSError) or (psycopg is not None and isinstance(exc, psycopg.Error)):
                    await self._failed(one_line(exc))
                else:
                    log.exception("catalog publisher: unexpected error (retried)")
                    await self._failed(f"{type(exc).__name__}: {exc}")
            await self._wait(delay)
            delay = min(delay * 2, self.retry_max)

    async def _wait(self, delay: float) -> None:
        """The backoff before the next attempt; the outbox's figures stay current meanwhile."""
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 1.0))
            try:
                await self._observe()
            except Exception as exc:
                log.debug("catalog: outbox figures not read: %s", exc)

    async def _close(self, conn: Any) -> None:
        with contextlib.suppress(Exception):  # a dead connection: nothing to flush
            await within(conn.close(), 5)

    def _up(self) -> None:
        self.connected = True
        self.on_metric("connected", 1)
        if not self._failures:
            log.info("catalog %s: connected", self.url)

    def _working(self) -> None:
        """A transaction committed: an error that was going on is over (said once, with its count)."""
        if self._failures:
            log.info("catalog %s: publishing again after %d failed attempt(s)", self.url, self._failures)
        self._failures = 0
        self._logged_error = None
        self.last_error = None

    async def _failed(self, text: str) -> None:
        self.errors += 1
        self._failures += 1
        self.last_error = text
        self.on_metric("error", 1)
        if text != self._logged_error:  # one line per distinct error, not one per retry
            log.warning("catalog %s: %s (shipping goes on; the outbox keeps the records)", self.url, text)
            self._logged_error = text
        try:
            await self.source.set_status(self.status())
            await self._observe()
        except Exception as exc:  # the journal itself failing is the pipeline's to report
            log.debug("catalog status not recorded: %s", exc)

    async def _pump(self, conn: Any) -> None:
        beat = time.monotonic()  # `register` just touched last_contact
        while True:
            pending = await self._observe()
            if pending and self.depth == 0:
                await self._resync(conn)
                continue
            if time.monotonic() - self._readback_at >= self.readback:
                await self._read_hub(conn)
            records = await self.source.next(self.batch)
            if not records:
                if time.monotonic() - beat >= self.heartbeat:  # alive and idle: the fleet view's last contact
                    await conn.execute(_HEARTBEAT, (self.target.instrument, self.target.journal_id))
                    beat = time.monotonic()
                await asyncio.sleep(self.poll)
                continue
            beat = time.monotonic()  # a batch touches last_contact too
            n = await upsert(conn, self.target, records)
            self._working()
            self.published += n
            self._status["published_total"] = int(self._status.get("published_total", 0)) + n
            self._status["published_seq"] = records[-1].seq
            self._status["last_ok"] = time.time()
            self.on_metric("published", n)
            await self.source.done(records[-1].seq, self.status())

    async def _read_hub(self, conn: Any) -> None:
        """Record in the journal what the hub purged or moved of this journal's copies since the last
        look (its audit in the catalog), so that the journal, `acqd verify` and `acqd restore`
        stop pointing at a copy that is gone or elsewhere."""
        self._readback_at = time.monotonic()
        seen = await self.source.hub_seen()
        n = 0
        while True:
            actions, upto = await hub_actions(conn, self.target, seen, self.batch)
            if upto == seen:
                break
            n += await self.source.apply_hub(actions, upto)
            seen = upto
            if len(actions) < self.batch:
                break
        self.hub_looked = True
        if n:
            self.hub_applied += n
            self.on_metric("hub", n)
            log.info("catalog: the facility hub purged or moved %d of this journal's copies; journal updated", n)

    async def _observe(self) -> bool:
        """Refresh the outbox figures (metrics; a full outbox said once, loudly). True if a resync is due."""
        st = await self.source.state()
        self.depth = int(st["depth"])
        self.on_metric("depth", self.depth)
        cap = st.get("cap") or 0
        pending = st.get("resync_since") is not None
        full = pending and self.depth >= cap
        self.on_metric("full", int(full))
        if full and not self._full_logged:
            log.error(
                "catalog: the journal's outbox reached its cap of %d records (the catalog unreachable too long); "
                "it stops recording changes, the journal and shipping go on, and the catalog is resynchronised "
                "from the journal once the outbox is drained",
                cap,
            )
            self._full_logged = True
        return pending

    async def _resync(self, conn: Any) -> None:
        """Publish the journal's tables as they are now (after a full outbox, or the first time)."""
        await self.source.begin_resync()
        t0 = time.monotonic()
        it = await self.source.snapshot()
        n = 0
        while (batch := await self.source.next_batch(it)) is not None:
            n += await upsert(conn, self.target, batch)
            self._working()
        await self.source.end_resync()
        self._full_logged = False
        self._status["published_total"] = int(self._status.get("published_total", 0)) + n
        self._status["last_resync"] = time.time()
        self._status["last_ok"] = time.time()
        self.on_metric("published", n)
        self.on_metric("resync", 1)
        await self.source.set_status(self.status())
        log.info("catalog: resynchronised %d journal row(s) in %.1fs", n, time.monotonic() - t0)

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 (a deadline over many polls)
        """Wait (at most `timeout`) until the hub's actions were read back once in this run, the
        outbox is empty and no resync is due: `--once` and a stop give the catalog its last records
        and take what the hub did. False if not (they wait for the next start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.connected and self.last_error is not None:
                return False
            st = await self.source.state()
            if self.hub_looked and st["depth"] == 0 and st.get("resync_since") is None:
                return True
            await asyncio.sleep(self.poll)
        return False


async def probe(url: str, password: str | None, timeout: float) -> str:  # noqa: ASYNC109
    """`acqd check`: connect and read the schema version. One line; CatalogError if it cannot."""
    conn = await connect(url, password, timeout)
    try:
        have = await schema_version(conn)
    except Exception as exc:
        raise CatalogError(one_line(exc)) from None
    finally:
        await conn.close()
    if have is None or have < SCHEMA_VERSION:
        raise CatalogError(
            f"connected, but the schema is at version {have or 0} and this acqd needs {SCHEMA_VERSION}: "
            "run `acqd catalog migrate --config ...`"
        )
    return f"connected, schema version {have}"
