"""Small files at copy speed: `acqd run --once` against `rsync -a` + sync on many small files.

    python -m bench smallfiles [--files 5000] [--size 2048] [--folders 10] [--runs 3] [--workdir /tmp]

A watch folder of `--files` files of `--size` random bytes spread over `--folders` folders (sidecars:
EPU XML/JPG, per-plane TIFFs). acqd ships them with the `copy` layout to a local-folder tier,
verification on (each file read back and its checksum compared), release off; `rsync -a` copies them
and `sync -f` makes them durable (as in `python -m bench compare`). Both read from the page cache
(an untimed first run of each warms it); runs alternate; figures are medians. acqd's figure also
checks that every file ended verified in the journal. Each run also records its CPU seconds and the
load average before it, and `run --once` on an empty folder (acqd's start and stop) is timed beside.
Each run writes into a folder of its own; all are kept until the end (see `main`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.compare import PY, REPO, _sync, _timed


def make_source(src: Path, files: int, size: int, folders: int) -> None:
    per = -(-files // folders)
    for i in range(files):
        d = src / f"session_{i // per:02d}"
        if i % per == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"FoilHole_{i:06d}_Data.xml").write_bytes(os.urandom(size))


def run_acqd(src: Path, dest: Path, work: Path, files: int) -> tuple[float, float]:
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    cfg = work / "acqd.yaml"
    cfg.write_text(
        f"""instrument: bench
state_dir: {state}
watch:
  - {{path: {src}, settle: 0.1s, mode: poll, scan_interval: 1h}}
tiers:
  central: {{url: "file://{dest}"}}
"""
    )
    wall, cpu, _rss = _timed([PY, "-m", "acqd", "run", "--once", "--retry-for", "60s", "--config", str(cfg)])
    if files == 0:
        return wall, cpu
    db = sqlite3.connect(state / "journal.sqlite")
    try:
        verified = db.execute("SELECT COUNT(*) FROM files WHERE state = 'verified'").fetchone()[0]
    finally:
        db.close()
    if verified != files:
        raise RuntimeError(f"acqd verified {verified} of {files} files")
    return wall, cpu


def run_rsync(src: Path, dest: Path, work: Path, files: int) -> tuple[float, float]:
    wall, cpu, _rss = _timed(["rsync", "-a", f"{src}/", f"{dest}/"])
    return wall + _sync(dest), cpu


def run_empty(src: Path, dest: Path, work: Path, files: int) -> tuple[float, float]:
    """acqd's start and stop alone: `run --once` on an empty watch folder."""
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    return run_acqd(empty, dest, work, 0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench smallfiles", description=__doc__)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "smallfiles.json")
    args = ap.parse_args(argv)
    contenders = {"acqd run --once": run_acqd, "rsync -a + sync": run_rsync, "acqd run --once, empty folder": run_empty}
    walls: dict[str, list[float]] = {n: [] for n in contenders}
    cpus: dict[str, list[float]] = {n: [] for n in contenders}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="acqd-bench-small-", dir=args.workdir) as d:
        work = Path(d)
        src = work / "acq"
        make_source(src, args.files, args.size, args.folders)
        for r in range(args.runs + 1):  # run 0 warms the page cache and the imports: not counted
            names = list(contenders)
            order = names[r % 2 :] + names[: r % 2]
            for n in order:
                # a fresh folder each run, the earlier ones kept until the end: deleting 5,000 files just
                # before creating 5,000 more made ext4's inode allocator skip the recently deleted ones one
                # by one (`recently_deleted`, a third of all CPU time, with acqd's I/O threads spinning on
                # the folder's lock meanwhile), a cost no real destination has
                dest = work / f"out-{r}-{names.index(n)}"
                dest.mkdir()
                load = os.getloadavg()[0]
                wall, cpu = contenders[n](src, dest, work, args.files)
                if r:
                    walls[n].append(wall)
                    cpus[n].append(cpu)
                    loads.append(load)
                    print(f"  {n} run {r}: {wall:.2f}s (CPU {cpu:.2f}s, load {load:.1f})", flush=True)
    med = {n: statistics.median(v) for n, v in walls.items()}
    med_cpu = {n: statistics.median(v) for n, v in cpus.items()}
    acqd, rsync = med["acqd run --once"], med["rsync -a + sync"]
    doc = {
        "command": "python -m bench smallfiles " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "files": args.files,
        "size": args.size,
        "folders": args.folders,
        "runs": args.runs,
        "walls": {n: [round(x, 3) for x in v] for n, v in walls.items()},
        "median_s": {n: round(v, 3) for n, v in med.items()},
        "cpu_s": {n: [round(x, 3) for x in v] for n, v in cpus.items()},
        "median_cpu_s": {n: round(v, 3) for n, v in med_cpu.items()},
        "files_per_s": {n: round(args.files / v) for n, v in med.items() if "empty" not in n},
        "load_average_1min": [round(x, 1) for x in loads],
        "acqd_over_rsync": round(acqd / rsync, 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{args.files} files of {args.size} B in {args.folders} folders, median of {args.runs}:")
    print(f"  acqd run --once   {acqd:7.2f} s  ({args.files / acqd:,.0f} files/s)")
    print(f"  rsync -a + sync   {rsync:7.2f} s  ({args.files / rsync:,.0f} files/s)")
    print(f"  acqd, empty folder {med['acqd run --once, empty folder']:6.2f} s  (its start and stop)")
    print(f"  acqd / rsync      {acqd / rsync:7.2f}x  (load average {min(loads):.1f}-{max(loads):.1f})")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
