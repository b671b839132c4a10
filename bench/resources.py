"""Resource bounds: acqd's memory and file descriptors with a 50 GB backlog, and the journal at
1,000,000 rows.

    python -m bench resources [--backlog-gb 50] [--seconds 180] [--inflight 512MiB] [--journal-rows 1000000]

The backlog is real simulated camera data: K3 MRC movies (5760 x 4092 uint8 counting frames) and
light-sheet TIFF stacks, multiplied by hard links so that 50 GB of files to ship take one GB of disk.
acqd treats every name as a file of its own (it ships names, not inodes), so it faces the full
backlog: it scans and journals every file and reads every byte it ships. The daemon runs for
`--seconds`; VmRSS, VmHWM and open descriptors are sampled twice a second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from acqd.simulate import SimSpec, simulate
from acqd.units import parse_size


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def backlog(work: Path, gb: float) -> tuple[Path, int, int]:
    """Watch folder with `gb` GB of files (hard links of a few simulated ones); (root, files, bytes)."""
    seed = work / "seed"
    k3 = simulate("gatan-k3", seed / "k3", SimSpec(files=1, frames=20, height=4092, width=5760))[0]
    ls = simulate("hamamatsu-orca", seed / "ls", SimSpec(files=1, frames=64, height=1024, width=1024))[0]
    watch = work / "acq"
    total = files = 0
    target = gb * 1e9
    i = 0
    while total < target:
        for src, sub in ((k3, "k3"), (ls, "ls")):
            n = 1 if sub == "k3" else 8
            for j in range(n):
                d = watch / sub / f"session_{i // 50:03d}"
                d.mkdir(parents=True, exist_ok=True)
                os.link(src, d / f"{src.stem}_{i:05d}_{j}{src.suffix}")
                total += src.stat().st_size
                files += 1
        i += 1
    return watch, files, total


def measure_daemon(work: Path, watch: Path, seconds: float, inflight: str) -> dict[str, float]:
    state, dest = work / "state", work / "central"
    cfg = work / "acqd.yaml"
    cfg.write_text(
        f"""instrument: bench
state_dir: {state}
watch:
  - {{path: {watch / "k3"}, name: k3, prefix: k3, detector: gatan-k3, settle: 1s}}
  - {{path: {watch / "ls"}, name: ls, prefix: ls, detector: hamamatsu-orca, settle: 1s}}
tiers:
  central: {{url: "file://{dest}"}}
limits: {{inflight_bytes: {inflight}}}
"""
    )
    log = open(work / "daemon.log", "wb")  # noqa: SIM115 (a pipe nobody reads would fill and block it)
    proc = subprocess.Popen([sys.executable, "-m", "acqd", "run", "--config", str(cfg)], stdout=log, stderr=log)
    samples: list[dict[str, int]] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds and proc.poll() is None:
            samples.append(_status(proc.pid))
            time.sleep(0.5)
        window = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True)
    seen = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    verified = db.execute("SELECT COUNT(*), COALESCE(SUM(size),0) FROM files WHERE state='verified'").fetchone()
    db.close()
    return {
        "seconds_sampled": round(window, 1),
        "seconds_to_drain_and_exit": round(time.monotonic() - t0 - window, 1),
        "files_seen": seen,
        "files_verified": verified[0],
        "bytes_verified": verified[1],
        "peak_rss_mib": max(s["VmRSS"] for s in samples) / 1024,
        "hwm_rss_mib": max(s["VmHWM"] for s in samples) / 1024,
        "median_rss_mib": statistics.median(s["VmRSS"] for s in samples) / 1024,
        "peak_fds": max(s["fds"] for s in samples),
    }


def measure_journal(work: Path, rows: int) -> dict[str, float]:
    from acqd.journal import Journal, Observation
    from acqd.values import Identity, SourceRef, WriteResult

    path = work / "big.sqlite"
    j = Journal(path)
    root = "/data/acq"
    t0 = time.perf_counter()
    # bulk: the rows a long-running instrument accumulates (most of them verified long ago)
    batch = 10_000
    db = j._db
    now = time.time()
    db.execute("BEGIN")
    for start in range(0, rows, batch):
        db.executemany(
            "INSERT INTO files(root, relpath, version, current, state, size, mtime_ns, inode, ctime_ns, "
            "detector, session, attempts, first_seen, updated, checksum) "
            "VALUES(?, ?, 1, 1, 'verified', 1000, 1, ?, 1, 'generic', ?, 0, ?, ?, 'xxh3-128:00')",
            [
                (root, f"s{i // 1000:05d}/f{i:07d}.raw", i, f"s{i // 1000:05d}", now, now)
                for i in range(start, min(rows, start + batch))
            ],
        )
        db.executemany(
            "INSERT INTO copies(file_id, tier, dest, layout, codec, checksum, source_bytes, stored_bytes, state, "
            "stored_at, verified_at) "
            "VALUES(?, 'central', ?, 'copy', 'none', 'xxh3-128:00', 1000, 1000, 'verified', ?, ?)",
            [(i + 1, f"inst/s{i // 1000:05d}/f{i:07d}.raw", now, now) for i in range(start, min(rows, start + batch))],
        )
    db.execute("COMMIT")
    fill = time.perf_counter() - t0
    j.close()
    out: dict[str, float] = {"rows": rows, "fill_seconds": round(fill, 1), "size_mib": path.stat().st_size / 2**20}

    def timed(name: str, fn: object, n: int = 1) -> None:
        t = time.perf_counter()
        for _ in range(n):
            fn()  # type: ignore[operator]
        out[name] = round((time.perf_counter() - t) / n * 1000, 3)

    t = time.perf_counter()
    j = Journal(path)
    out["open_ms"] = round((time.perf_counter() - t) * 1000, 1)
    timed("pending_ms", j.pending, 5)
    timed("counts_ms", j.counts, 3)
    # a restart's scan of a session already shipped: 1,000 known files observed again
    obs = [
        Observation(SourceRef(root, f"s00500/f{i:07d}.raw"), Identity(1000, 1, i), "generic", False)
        for i in range(500_000, 501_000)
    ]
    timed("observe_1000_known_ms", lambda: j.observe_many(obs), 3)
    # the life of one new file: seen, complete, stored, verified (4 transactions)
    k = [0]

    def one_file() -> None:
        k[0] += 1
        ident = Identity(10, 1, 10_000_000 + k[0])
        [(_, row)] = j.observe_many([Observation(SourceRef(root, f"new/f{k[0]}.raw"), ident, "generic", False)])
        j.mark_complete(row.id, ident, "still")
        j.record_stored(row.id, "central", f"inst/new/f{k[0]}.raw", "copy", WriteResult("xxh3-128:00", 10, 10, "none"))
        j.record_verified(row.id, "central", f"inst/new/f{k[0]}.raw")

    timed("new_file_lifecycle_ms", one_file, 200)
    timed("session_files_ms", lambda: j.session_files(root, "s00500"), 5)
    timed("find_versions_ms", lambda: j.find_versions("s00500/f0500000.raw"), 20)
    j.close()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench resources", description=__doc__)
    ap.add_argument("--backlog-gb", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--inflight", default="512MiB")
    ap.add_argument("--journal-rows", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acqd-bench-res-", dir=args.workdir) as d:
        work = Path(d)
        if args.backlog_gb > 0:
            watch, files, total = backlog(work, args.backlog_gb)
            print(
                f"backlog: {files} files, {total / 1e9:.1f} GB "
                "(hard links of simulated K3 movies and light-sheet stacks)"
            )
            res = measure_daemon(work, watch, args.seconds, args.inflight)
            budget = parse_size(args.inflight) / 2**20
            print(f"in-flight budget {budget:.0f} MiB")
            for k, v in res.items():
                print(f"  {k}: {v:.1f}" if isinstance(v, float) else f"  {k}: {v}")
            print(f"  peak RSS above the budget: {res['peak_rss_mib'] - budget:.0f} MiB")
            shutil.rmtree(work / "central", ignore_errors=True)
        if args.journal_rows > 0:
            print(f"journal with {args.journal_rows:,} rows:")
            for k, v in measure_journal(work, args.journal_rows).items():
                print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
