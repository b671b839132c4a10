"""Last byte -> verified: how long after a camera's last byte of a movie acqd has its copy verified.

    python -m bench stream [--movies 3] [--rate 50] [--frames 20] [--runs 1]
                           [--workdir /var/tmp] [--dest /dev/shm]

A simulated Gatan K3 (`acqd simulate gatan-k3`: MRC counting movies of 5760 x 4092 uint8 frames,
header first) writes `--movies` movies one after another into the watch folder, in place and at
`--rate` MB/s (4 MiB writes), as SerialEM and DigitalMicrograph do, while `acqd run` (the shipped
gatan-k3 profile: LZW TIFF, settled by its MRC header) ships them to a folder on `--dest`. For each
movie: the wall time from the write of its last byte to the journal's `verified`. Scenarios: `stream:
false` on the watch root (the whole-file path: everything starts once the movie is complete) and
`stream: true` (tail-follow: frames encoded while the movie is written, compared at completion).
Figures are medians over every movie of every run. Writes bench/results/stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from acqd.simulate import SimSpec, simulate

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
CHUNK = 4 << 20


def camera(movie: bytes, header: int, out: Path, count: int, rate_mb_s: float) -> list[float]:
    """Write `count` copies of `movie` one after another at the rate; the wall time of each last byte."""
    rate = rate_mb_s * 1e6
    ends = []
    t0 = time.monotonic()
    written = 0
    for n in range(count):
        fd = os.open(out / f"movie_{n:04d}.mrc", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, movie[:header])
            for at in range(header, len(movie), CHUNK):
                due = t0 + written / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                block = movie[at : at + CHUNK]
                os.write(fd, block)
                written += len(block)
            ends.append(time.time())
        finally:
            os.close(fd)
    return ends


def details(state: Path) -> dict[str, dict[str, Any]]:
    """Per movie: when the journal recorded it complete, and the `streamed` audit entry (if any)."""
    db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT f.relpath, a.action, a.ts, a.detail FROM audit a JOIN files f ON f.id = a.file_id "
            "WHERE a.action IN ('complete', 'streamed', 'stream_fallback') ORDER BY a.id"
        ).fetchall()
    finally:
        db.close()
    out: dict[str, dict[str, Any]] = {}
    for rel, action, ts, detail in rows:
        d = out.setdefault(rel, {})
        if action == "complete":
            d["complete_ts"] = float(ts)
        elif action == "streamed":
            d["while_growing"] = json.loads(detail).get("while_growing")
        else:
            d["fallback"] = json.loads(detail).get("reason")
    return out


def verified_at(state: Path) -> dict[str, float]:
    db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT relpath, updated FROM files WHERE state = 'verified'").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {r: float(u) for r, u in rows}


def scenario(
    work: Path, dest_root: Path, movie: bytes, header: int, args: argparse.Namespace, stream: bool
) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    watch, state = work / "acq", work / "state"
    dest = dest_root / f"acqd-bench-stream-{os.getpid()}"
    shutil.rmtree(dest, ignore_errors=True)
    for p in (watch / "sess", state, dest):
        p.mkdir(parents=True)
    cfg = work / "acqd.yaml"
    cfg.write_text(
        f"""instrument: bench
state_dir: {state}
watch:
  - {{path: {watch}, detector: gatan-k3, stream: {"true" if stream else "false"}}}
tiers:
  central: {{url: "file://{dest}"}}
metrics: {{enabled: false}}
"""
    )
    daemon = subprocess.Popen([PY, "-m", "acqd", "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (state / "journal.sqlite").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the first scan
        cpu0 = os.times()
        ends = camera(movie, header, watch / "sess", args.movies, args.rate)
        names = [f"sess/movie_{n:04d}.mrc" for n in range(args.movies)]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = verified_at(state)
            if all(n in done for n in names):
                break
            time.sleep(0.05)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=120)
    cpu1 = os.times()
    done = verified_at(state)
    lat = [done[n] - e for n, e in zip(names, ends, strict=True) if n in done]
    more = details(state)
    per_movie = [
        {
            "complete_after_last_byte_s": more.get(n, {}).get("complete_ts", e) - e,
            "verified_after_last_byte_s": done.get(n, e) - e,
            **{k: v for k, v in more.get(n, {}).items() if k != "complete_ts"},
        }
        for n, e in zip(names, ends, strict=True)
    ]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "stream": stream,
        "latencies": lat,
        "movies": per_movie,
        "verified": len(lat),
        "fallbacks": err.count("stream_fallback"),
        "streamed": err.count("streaming '"),
        "load_1m": os.getloadavg()[0],
        "acqd_cpu_s": (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system),
    }


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench stream")
    ap.add_argument("--movies", type=int, default=3)
    ap.add_argument("--rate", type=float, default=50.0, help="camera MB/s")
    ap.add_argument("--frames", type=int, default=20, help="frames per movie (23.6 MB each)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--workdir", default="/var/tmp", help="the acquisition disk")
    ap.add_argument("--dest", default="/dev/shm", help="the tier's folder (central storage: another device)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "stream.json"))
    args = ap.parse_args(argv)
    work = Path(args.workdir) / f"acqd-bench-stream-{os.getpid()}"
    staging = Path(args.workdir) / f"acqd-bench-stream-src-{os.getpid()}"
    try:
        [m] = simulate(
            "gatan-k3", staging, SimSpec(files=1, frames=args.frames, height=4092, width=5760, temp_rename=False)
        )
        movie = m.read_bytes()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    header = 1024 + int.from_bytes(movie[92:96], "little")
    every: dict[str, list[dict[str, Any]]] = {"whole file (stream: false)": [], "tail-follow (stream: true)": []}
    for _ in range(args.runs):
        for name, on in (("whole file (stream: false)", False), ("tail-follow (stream: true)", True)):
            r = scenario(work, Path(args.dest), movie, header, args, on)
            every[name].append(r)
            print(name, json.dumps(r), flush=True)
    results = []
    for name, rs in every.items():
        lat = sorted(x for r in rs for x in r["latencies"])
        results.append(
            {
                "scenario": name,
                "movies": len(lat),
                "last_byte_to_verified_p50_s": statistics.median(lat) if lat else None,
                "max_s": lat[-1] if lat else None,
                "fallbacks": sum(r["fallbacks"] for r in rs),
            }
        )
    doc = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores (shared), {platform.platform()}",
        "loadavg_at_end": os.getloadavg(),
        "args": vars(args),
        "movie_bytes": len(movie),
        "results": results,
        "every_run": every,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\n{'scenario':30} {'movies':>6} {'last byte -> verified p50':>26} {'max':>7} {'fallbacks':>9}")
    for r in results:
        p50 = f"{r['last_byte_to_verified_p50_s']:.2f} s" if r["movies"] else "-"
        mx = f"{r['max_s']:.2f} s" if r["movies"] else "-"
        print(f"{r['scenario']:30} {r['movies']:>6} {p50:>26} {mx:>7} {r['fallbacks']:>9}")
    print(f"load average at the end: {doc['loadavg_at_end'][0]:.2f} (2 cores shared with other work)")
