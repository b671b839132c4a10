"""The facility views' queries on the catalog (PostgreSQL, psycopg 3, synchronous: a CLI command,
a scrape in the metrics server's thread, a refresh in an executor). An adapter: it reads, it never
writes, and every statement runs under a statement timeout in a read-only transaction.

Rows are streamed with server-side cursors (`DECLARE ... CURSOR`, fetched in batches): a
catalog of 10^7 copies is never held in memory (see BENCHMARKS.md "Facility views").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from acqd.catalog import one_line, require_psycopg
from acqd.errors import CatalogError
from acqd.overview.forecast import Copy, Tally
from acqd.overview.health import CatalogContact
from acqd.policy.planner import Item

try:
    import psycopg
except ImportError:  # the optional extra
    psycopg = None  # type: ignore[assignment]

_COPY_COLS = (
    "c.instrument, f.root, f.relpath, f.session, f.detector, c.tier, c.stored_bytes,"
    " extract(epoch FROM COALESCE(c.verified_at, c.stored_at))::float8"
)
_DAEMON_LIVE = (
    f"SELECT {_COPY_COLS} FROM acqd.copies c JOIN acqd.files f USING (instrument, journal_id, file_id)"
    " WHERE c.state = 'verified'"
)
#: every live stored copy with its file, any order: the daemons' verified copies unless the hub
#: purged or moved that object (hub_copies, by instrument, tier and name: a daemon's row says
#: verified until its daemon learns what the hub did), and the copies the hub's transitions made
#: that no daemon row counts yet
USAGE_SQL = (
    _DAEMON_LIVE + " AND NOT EXISTS (SELECT 1 FROM acqd.hub_copies h WHERE"
    " (h.instrument, h.tier, h.dest) = (c.instrument, c.tier, c.dest) AND h.state <> 'verified')"
    " UNION ALL SELECT h.instrument, f.root, f.relpath, f.session, f.detector, h.tier, h.stored_bytes,"
    " h.verified_at FROM acqd.hub_copies h JOIN acqd.files f"
    " ON (f.instrument, f.journal_id, f.file_id) = (h.instrument, h.journal_id, h.file_id)"
    " WHERE h.state = 'verified' AND NOT h.origin AND NOT EXISTS (SELECT 1 FROM acqd.copies c WHERE"
    " (c.instrument, c.tier, c.dest) = (h.instrument, h.tier, h.dest) AND c.state = 'verified')"
)
#: the daemons' live copies oldest first (the planner's stream, measured in bench/facility.py)
PLAN_SQL = _DAEMON_LIVE + " ORDER BY c.verified_at, c.instrument, c.journal_id, c.copy_id"
QUARANTINE_SQL = (
    "SELECT instrument, count(*), COALESCE(sum(size), 0)::bigint FROM acqd.files"
    " WHERE state = 'quarantined' AND current GROUP BY instrument"
)
#: per instrument: its last contact (any of its journals), and of its latest journal (the others
#: were superseded, e.g. by `acqd adopt`) the files waiting to be shipped and the oldest of them
FLEET_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (instrument) instrument, journal_id FROM acqd.journals
    ORDER BY instrument, last_contact DESC, journal_id
), contact AS (
    SELECT instrument, max(last_contact) AS last_contact FROM acqd.journals GROUP BY instrument
), pending AS (
    SELECT f.instrument, count(*) AS files, min(f.first_seen) AS oldest
    FROM acqd.files f JOIN latest l USING (instrument, journal_id)
    WHERE f.state IN ('seen', 'complete', 'stored') AND f.current
    GROUP BY f.instrument
)
SELECT c.instrument, extract(epoch FROM c.last_contact)::float8, COALESCE(p.files, 0)::bigint,
       extract(epoch FROM p.oldest)::float8
FROM contact c LEFT JOIN pending p USING (instrument) ORDER BY c.instrument
"""


def open_catalog(url: str, password: str | None, connect_timeout: float, statement_timeout: float) -> Any:
    """A read-only connection whose every statement ends after `statement_timeout` (CatalogError,
    one line, if it cannot connect)."""
    require_psycopg()
    kwargs: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout)), "application_name": "acqd-hub"}
    if password is not None:
        kwargs["password"] = password
    try:
        conn = psycopg.connect(url, **kwargs)
        conn.read_only = True
        ms = f"{max(1, round(statement_timeout * 1000))}ms"
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (ms,))
        conn.commit()
    except (psycopg.Error, OSError) as exc:
        raise CatalogError(one_line(exc)) from None
    return conn


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """psycopg's and the network's errors as one-line CatalogErrors (a statement timeout included)."""
    try:
        yield
    except CatalogError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) or (psycopg is not None and isinstance(exc, psycopg.Error)):
            raise CatalogError(one_line(exc)) from None
        raise


def _stream(conn: Any, sql: str, batch: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `sql` in batches from a server-side cursor, in one read-only transaction."""
    with translated(), conn.transaction(), conn.cursor(name="acqd_facility_stream") as cur:
        cur.itersize = batch
        cur.execute(sql)
        while rows := cur.fetchmany(batch):
            yield rows


def copies(conn: Any, batch: int = 10_000) -> Iterator[Copy]:
    for rows in _stream(conn, USAGE_SQL, batch):
        for r in rows:
            yield Copy(*r)


def plan_chunks(conn: Any, batch: int = 10_000) -> Iterator[list[Item]]:
    """The daemons' live copies as planner items, oldest first, in chunks (ids: the stream's numbering)."""
    n = 0
    for rows in _stream(conn, PLAN_SQL, batch):
        chunk = []
        for instrument, root, relpath, session, detector, tier, size, verified_at in rows:
            n += 1
            chunk.append(Item(n, relpath, session, detector, tier, size, verified_at, root=f"{instrument}:{root}"))
        yield chunk


def tally(conn: Any, t: Tally, batch: int = 10_000) -> Tally:
    """Add every live copy and the quarantines of the catalog to `t`."""
    for c in copies(conn, batch):
        t.add(c)
    with translated(), conn.transaction():
        for instrument, files, size in conn.execute(QUARANTINE_SQL):
            t.add_quarantined(instrument, int(files), int(size))
    return t


def fleet(conn: Any) -> list[CatalogContact]:
    with translated(), conn.transaction():
        rows = conn.execute(FLEET_SQL).fetchall()
    return [CatalogContact(str(i), float(lc), int(n), None if o is None else float(o)) for i, lc, n, o in rows]
