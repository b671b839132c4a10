"""The facility views at scale: a real PostgreSQL (a throwaway cluster from Debian's packages, as in
the tests) holding N catalogued files of 50 instruments, loaded by bulk COPY; then the usage pass
(`acqd hub usage`), the retention planner streamed over the catalog (server-side cursor, chunks in
age order), the fleet query and the supersede rule's lookup, each timed, each in a fresh process
whose peak RSS is reported; and EXPLAIN (ANALYZE, BUFFERS) of each query with and without the
index that migration 0003 adds for it.

python -m bench facility [--files 1000000] [--explain]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import time
from pathlib import Path
from typing import Any

from acqd.overview import usage
from acqd.overview.forecast import Tally, groups_of, plan_stream
from acqd.policy.model import load_policy
from tests.servers import PG_PASSWORD, Postgres, postgres_bindir

NOW = 1_796_083_200.0  # 2026-12-01 00:00 UTC
DAY = 86400.0
INSTRUMENTS = 50
OWNERS = 200
SESSION = 1000  # files per session
SECONDARY = [
    *("files_path", "files_state", "files_pending"),
    *("copies_file", "copies_tier_state", "copies_object", "copies_live_age"),
]


def _rows(n: int, seed: int = 1) -> Any:
    """(file row, copy row) tuples: 50 instruments, 200 owners, sessions of 1,000 files over 120
    days; 70% movies, 20% sums, 10% metadata; movies older than 14 days on `capacity` (5% of them
    overdue on `central`), older than 60 days purged; 0.05% waiting, 0.05% quarantined."""
    rng = random.Random(seed)
    kinds = ["movie_{:07d}.eer"] * 7 + ["sum_{:07d}.mrc"] * 2 + ["meta_{:07d}.xml"]
    for i in range(n):
        s = i // SESSION
        inst = f"scope{s % INSTRUMENTS:02d}"
        owner = f"user{(s * 7919) % OWNERS:03d}"
        session = f"{owner}_proj{s % 13}_{s:06d}"
        name = kinds[i % 10].format(i)
        rel = f"{session}/{name}"
        age = ((n - i) / n) * 120 * DAY  # older sessions first
        verified = NOW - age
        r = rng.random()
        fstate, cstate, tier = "released", "verified", "central"
        if r < 0.0005:
            fstate, cstate = rng.choice(["seen", "complete", "stored"]), None
        elif r < 0.001:
            fstate, cstate = "quarantined", None
        elif name.startswith("movie"):
            if age > 60 * DAY:
                cstate = "purged"
            if age > 14 * DAY and rng.random() > 0.05:
                tier = "capacity"
        size = 200_000_000 if name.startswith("movie") else 20_000_000 if name.startswith("sum") else 20_000
        ts = f"{verified:.3f}"
        f = (inst, "j1", i, "/data", rel, 1, "t", fstate, None, size, 1, f"xxh3-128:{i:032x}", "k3", session, ts, ts, i)
        c = None
        if cstate is not None:
            c = (
                *(inst, "j1", i, i, tier, f"s3://b/{inst}/{rel}", f"{inst}/{rel}", "tiff", "zstd", size, size // 3),
                *(f"xxh3-128:{i:032x}", None, cstate, ts, ts, i),
            )
        yield f, c


def load(url: str, n: int) -> dict[str, float]:
    """Migrate, drop the secondary indexes, COPY n files and their copies, rebuild, ANALYZE."""
    import psycopg

    out: dict[str, float] = {}
    with psycopg.connect(url, password=PG_PASSWORD, autocommit=True) as conn:
        from acqd.catalog import migrations

        conn.execute("CREATE SCHEMA acqd")
        defs: list[str] = []
        for m in migrations():  # (the versions table is `acqd catalog migrate`'s: not needed here)
            conn.execute(m.sql)
        for name in SECONDARY:
            row = conn.execute("SELECT pg_get_indexdef(%s::regclass)", (f"acqd.{name}",)).fetchone()
            assert row is not None
            defs.append(row[0])
            conn.execute(f"DROP INDEX acqd.{name}")
        conn.execute(
            "INSERT INTO acqd.journals(instrument, journal_id)"
            " SELECT 'scope' || lpad(g::text, 2, '0'), 'j1' FROM generate_series(0, %s) g",
            (INSTRUMENTS - 1,),
        )
        t0 = time.perf_counter()
        fcols = (
            "instrument, journal_id, file_id, root, relpath, version, current, state, reason, size, mtime_ns,"
            " checksum, detector, session, first_seen, updated, seq"
        )
        ccols = (
            "instrument, journal_id, copy_id, file_id, tier, url, dest, layout, codec, source_bytes, stored_bytes,"
            " checksum, stored_checksum, state, stored_at, verified_at, seq"
        )
        # two connections: one COPY per connection at a time (the copies go in blocks beside the files)
        with (
            psycopg.connect(url, password=PG_PASSWORD, autocommit=True) as conn2,
            conn.cursor() as cf,
            cf.copy(f"COPY acqd.files ({fcols}) FROM STDIN") as fc,
        ):
            copies = []
            for f, c in _rows(n):
                fc.write_row((*f[:14], _tz(f[14]), _tz(f[15]), f[16]))
                if c is not None:
                    copies.append(c)
                if len(copies) >= 200_000:
                    with conn2.cursor() as cc:
                        _copy_copies(cc, ccols, copies)
                    copies = []
            with conn2.cursor() as cc:
                _copy_copies(cc, ccols, copies)
        out["copy_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '256MB'")
        for d in defs:
            conn.execute(d)
        out["index_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE acqd.files")
        conn.execute("VACUUM ANALYZE acqd.copies")
        out["analyze_seconds"] = time.perf_counter() - t0
    return out


def _tz(ts: str) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts))) + f".{ts.split('.')[1]}+00"


def _copy_copies(cur: Any, cols: str, rows: list[Any]) -> None:
    with cur.copy(f"COPY acqd.copies ({cols}) FROM STDIN") as cp:
        for c in rows:
            cp.write_row((*c[:14], _tz(c[14]), _tz(c[15]), c[16]))


# -- each measurement in a fresh process: its own peak RSS ------------------------------------------


def _measure(what: str, url: str) -> dict[str, Any]:
    policy = load_policy(Path(__file__).resolve().parent.parent / "policies" / "cryoem-facility.yaml")
    conn = usage.open_catalog(url, PG_PASSWORD, 10, 3600)
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        if what == "usage":
            groups = {f"group{g}": [f"user{o:03d}" for o in range(OWNERS) if o % 20 == g] for g in range(20)}
            t = usage.tally(conn, Tally(policy, NOW, groups_of(groups), 8))
            out["copies"] = t.total.files
            out["owners"] = len(t.by_owner)
        elif what == "stream":  # the rows only: what the database and the driver cost
            n = 0
            for rows in usage._stream(conn, usage.USAGE_SQL, 10_000):
                n += len(rows)
            out["copies"] = n
        elif what == "plan":
            kinds: dict[str, int] = {}

            def chunks() -> Any:
                for chunk in usage.plan_chunks(conn):
                    out.setdefault("first_chunk_seconds", time.perf_counter() - t0)
                    yield chunk

            for a in plan_stream(NOW, chunks(), policy):
                kinds[a.kind] = kinds.get(a.kind, 0) + 1
            out["actions"] = kinds
        elif what == "fleet":
            out["instruments"] = len(usage.fleet(conn))
    finally:
        conn.close()
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mib"] = _hwm_mib()
    return out


def _hwm_mib() -> float:
    """This process's peak resident set (VmHWM: since its exec, unlike ru_maxrss, which a spawned
    child inherits from the parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(what: str, url: str) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_measure, (what, url))
    return result


# -- EXPLAIN with and without each index -----------------------------------------------------------

SUPERSEDE_PROBE = """
SELECT o.copy_id FROM acqd.copies b JOIN acqd.copies o ON o.instrument = b.instrument AND o.tier = b.tier
    AND o.dest = b.dest AND o.journal_id <> b.journal_id
WHERE b.instrument = 'scope07' AND b.journal_id = 'j1' AND b.copy_id = ANY(%s::bigint[])
"""


def explain(url: str, n: int) -> dict[str, list[str]]:
    import psycopg

    # a batch of 500 copies of scope07 (session 7 + 50k: one session, the middle of the catalog)
    first = (7 + 50 * max(0, (n // SESSION // 2 - 7) // 50)) * SESSION
    ids = list(range(first, first + 500))
    cases = {
        "plan stream (cursor)": (f"DECLARE c NO SCROLL CURSOR FOR {usage.PLAN_SQL}", None, "copies_live_age", False),
        "usage pass": (usage.USAGE_SQL, None, None, True),
        "fleet": (usage.FLEET_SQL, None, "files_pending", True),
        "quarantines": (usage.QUARANTINE_SQL, None, None, True),
        "supersede lookup (a batch of 500 copies)": (SUPERSEDE_PROBE, (ids,), "copies_object", True),
    }
    out: dict[str, list[str]] = {}
    with psycopg.connect(url, password=PG_PASSWORD, autocommit=True) as conn:
        for name, (sql, params, index, analyze) in cases.items():
            opts = "ANALYZE, BUFFERS, TIMING OFF" if analyze else "COSTS"
            for dropped in [False, True] if index else [False]:
                with conn.transaction(force_rollback=True):  # the index comes back
                    if dropped:
                        conn.execute(f"DROP INDEX acqd.{index}")
                    rows = conn.execute(f"EXPLAIN ({opts}) {sql}", params).fetchall()
                key = f"{name} ({'without' if dropped else 'with'} {index})" if index else name
                out[key] = [r[0] for r in rows]
    return out


def _drop_and(url: str, index: str, fn: Any) -> None:
    """Run `fn` with `index` dropped, then build it again."""
    import psycopg

    with psycopg.connect(url, password=PG_PASSWORD, autocommit=True) as conn:
        row = conn.execute("SELECT pg_get_indexdef(%s::regclass)", (f"acqd.{index}",)).fetchone()
        assert row is not None
        conn.execute(f"DROP INDEX acqd.{index}")
        try:
            fn()
        finally:
            conn.execute(row[0])


def sizes(url: str) -> list[tuple[str, int]]:
    import psycopg

    with psycopg.connect(url, password=PG_PASSWORD, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'acqd' AND c.relkind IN ('r', 'i') ORDER BY 2 DESC"
        ).fetchall()
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return [(str(a), int(b)) for a, b in rows] + [("database", int(total[0]) if total else 0)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench facility", description=__doc__)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--explain", action="store_true", help="print the EXPLAIN output in full")
    a = ap.parse_args(argv)
    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    pg = Postgres(bindir)
    try:
        pg.start(durable=True)
        url = pg.create_db("facility")
        version = bindir.split("/")[-2]
        print(f"PostgreSQL {version} (defaults: shared_buffers 128MB, work_mem 4MB), fsync on; {a.files:,} files")
        t = load(url, a.files)
        print(
            f"load: COPY {t['copy_seconds']:.0f}s ({a.files / t['copy_seconds']:,.0f} files/s with their copies), "
            f"7 secondary indexes {t['index_seconds']:.0f}s, VACUUM ANALYZE {t['analyze_seconds']:.0f}s"
        )
        for name, size in sizes(url):
            print(f"  {name:24s} {size / 2**20:10,.0f} MiB")
        for what in ("stream", "usage", "plan", "fleet"):
            r = measure(what, url)
            print(f"{what}: {r}")
        _drop_and(url, "copies_live_age", lambda: print(f"plan without copies_live_age: {measure('plan', url)}"))
        for name, lines in explain(url, a.files).items():
            print(f"\n-- {name}")
            keep = ("Scan", "Sort", "Execution", "Join", "Loop", "Aggregate", "Limit")
            for line in lines if a.explain else [ln for ln in lines if any(k in ln for k in keep)]:
                print("  " + line)
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
