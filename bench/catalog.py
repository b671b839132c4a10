"""The facility catalog's ingest rate: journals filled with shipped files (every change recorded in
the outbox by the journal's triggers), then drained into a real PostgreSQL (a throwaway cluster
from Debian's packages, as in the tests) by the daemon's own publisher, one journal per process,
1 and several at once. Also: what the outbox costs the journal, and `acqd catalog import`'s rate.

python -m bench catalog [--files 5000] [--daemons 1,3] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import shutil
import tempfile
import time
from pathlib import Path

from acqd import catalog
from acqd.journal import (
    GroupCommitExecutor,
    Journal,
    Observation,
    begin_resync,
    configure_outbox,
    end_resync,
    outbox_state,
    record_tiers,
    snapshot,
)
from acqd.publish import JournalOutbox
from acqd.values import Identity, SourceRef, WriteResult
from tests.servers import PG_PASSWORD, Postgres, postgres_bindir


def fill(path: Path, files: int, outbox: bool, group: int = 100) -> tuple[float, int]:
    """Ship `files` files through the journal (seen, complete, stored, verified), `group` files per
    transaction (the group commit of a busy daemon). Returns (seconds, outbox records)."""
    j = Journal(path)
    record_tiers(j, {"central": ("file:///mnt/central", {})})
    if outbox:
        configure_outbox(j, 10_000_000)
        begin_resync(j)  # an empty journal: nothing to resync
        end_resync(j)
    else:
        configure_outbox(j, None)
    t0 = time.perf_counter()
    for start in range(0, files, group):

        def one(i: int) -> None:
            rel = f"session_{i // 1000}/movie_{i:07d}.tif"
            ident = Identity(100_000_000 + i, 1_700_000_000_000_000_000 + i, 1000 + i, 1)
            [(_, row)] = j.observe_many([Observation(SourceRef("/data/acq", rel), ident, "k3", False)])
            j.mark_complete(row.id, ident, "settled")
            res = WriteResult(f"xxh3-128:{i:032x}", ident.size, ident.size // 3, "zstd")
            j.record_stored(row.id, "central", f"k3/{rel}", "tiff", res)
            j.record_verified(row.id, "central", f"k3/{rel}")

        j.run_group([lambda i=i: one(i) for i in range(start, min(files, start + group))])
    took = time.perf_counter() - t0
    depth = int(outbox_state(j)["depth"])
    j.close()
    return took, depth


def drain(args: tuple[str, str, int, int]) -> tuple[int, int, float]:
    """One daemon's publisher draining its journal's outbox: (records, rows written, seconds)."""
    url, path, instrument_no, batch = args

    async def go() -> tuple[int, int, float]:
        jexec = GroupCommitExecutor()
        loop = asyncio.get_running_loop()
        j = await loop.run_in_executor(jexec, Journal, Path(path))
        jexec.journal = j
        io = concurrent.futures.ThreadPoolExecutor(2)
        depth = int((await loop.run_in_executor(jexec, outbox_state, j))["depth"])
        target = catalog.Target(f"scope{instrument_no}", j.journal_id, {"central": "file:///mnt/central"})
        pub = catalog.Publisher(url, PG_PASSWORD, target, JournalOutbox(j, jexec, io), batch=batch)
        t0 = time.perf_counter()
        task = asyncio.create_task(pub.run())
        while not await pub.drain(600):
            if task.done():
                task.result()
        took = time.perf_counter() - t0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
        return depth, pub.published, took

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench catalog", description=__doc__)
    ap.add_argument("--files", type=int, default=5000, help="files per journal")
    ap.add_argument("--daemons", default="1,3", help="how many daemons publish at once, e.g. 1,3")
    ap.add_argument("--batch", type=int, default=500, help="records per PostgreSQL transaction")
    a = ap.parse_args(argv)
    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    work = Path(tempfile.mkdtemp(prefix="acqd-bench-catalog-"))
    pg = Postgres(bindir)
    try:
        pg.start(durable=True)
        print(f"PostgreSQL {bindir.split('/')[-2]} on loopback (fsync on); {a.files} files per journal")
        plain, _ = fill(work / "plain.sqlite", a.files, outbox=False)
        with_outbox, depth = fill(work / "outbox.sqlite", a.files, outbox=True)
        print(
            f"journal, {a.files} files x 4 changes, 100 files per commit: without outbox {a.files / plain:,.0f} "
            f"files/s, with outbox {a.files / with_outbox:,.0f} files/s ({depth} outbox records, "
            f"{depth / a.files:.1f} per file)"
        )
        for k in [int(x) for x in a.daemons.split(",")]:
            url = pg.create_db(f"bench{k}")
            asyncio.run(_migrate(url))
            paths = []
            for i in range(k):
                p = work / f"d{k}_{i}.sqlite"
                fill(p, a.files, outbox=True)
                paths.append(str(p))
            t0 = time.perf_counter()
            with concurrent.futures.ProcessPoolExecutor(k) as ex:
                results = list(ex.map(drain, [(url, p, i, a.batch) for i, p in enumerate(paths)]))
            wall = time.perf_counter() - t0
            records = sum(r[0] for r in results)
            rows = sum(r[1] for r in results)
            print(
                f"{k} daemon(s) at once, batch {a.batch}: {records:,} outbox records ({rows:,} rows written) in "
                f"{wall:.1f}s: {records / wall:,.0f} records/s, {rows / wall:,.0f} rows/s "
                f"(per daemon {records / k / max(r[2] for r in results):,.0f} records/s)"
            )
        url = pg.create_db("import")
        asyncio.run(_migrate(url))
        t0 = time.perf_counter()
        n = asyncio.run(_import(url, work / "plain.sqlite"))
        took = time.perf_counter() - t0
        print(f"acqd catalog import: {n:,} journal rows in {took:.1f}s: {n / took:,.0f} rows/s")
    finally:
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)


async def _migrate(url: str) -> None:
    conn = await catalog.connect(url, PG_PASSWORD, 10)
    try:
        await catalog.migrate(conn)
    finally:
        await conn.close()


async def _import(url: str, path: Path) -> int:
    conn = await catalog.connect(url, PG_PASSWORD, 10)
    try:
        target = catalog.Target("imported", "bench", {"central": "file:///mnt/central"})
        return await catalog.import_snapshot(conn, target, snapshot(path))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
