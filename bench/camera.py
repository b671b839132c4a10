"""Acquisition comes first: does the camera keep its rate while acqd catches up a backlog beside it?

    python -m bench camera [--rate 150] [--seconds 15] [--backlog-mb 2048] [--runs 3]
                           [--workdir /var/tmp] [--dest /dev/shm] [--latency-above MS]

A simulated camera (a child process) streams movie files into the watch folder at a fixed rate
(`--rate` MB/s, 4 MiB writes with O_DIRECT, as acquisition software streaming to its RAID does;
with write + fdatasync where O_DIRECT is refused), while acqd ships a backlog of `--backlog-mb` of
earlier movies (evicted from the page cache first, so acqd reads them from the disk) and the new ones.
Scenarios, each `--seconds` long, the backlog made anew each time:

  camera alone                          the camera's own rate and write latency on this disk
  acqd alone                            acqd's catch-up rate with no camera
  camera + acqd                         acqd at the camera's priorities, limits.backoff.enabled: false
  camera + acqd, unit priorities        acqd as the systemd unit runs it: nice 10, ionice -c2 -n7
  camera + acqd, priorities + back-off  and limits.backoff at `--latency-above` (default: twice the
                                        disk's mean write latency under the camera alone), 1 file
                                        at once while backing off

For each: the camera's achieved rate and the p50/p99/max latency of its 4 MiB writes, the disk's own
mean write latency over the run (its block counters: what acqd's back-off watches), and acqd's
catch-up rate (source bytes of backlog files verified per second) with the time it spent backing
off. The tier is a folder on `--dest` (default /dev/shm: central storage is another machine, so
only acqd's reads of the acquisition disk compete with the camera). Each of `--runs`
rounds runs every scenario once; figures are medians. Writes `bench/results/camera.json`.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from acqd.pace import load_between
from acqd.pacing import read_stat, stat_file

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
CHUNK = 4 << 20
MOVIE = 64 << 20  # bytes per movie file (16 chunks)


def camera(out: Path, rate_mb_s: float, seconds: float, report: Path) -> None:
    """The camera, in its own process: movie files of MOVIE bytes, CHUNK-sized writes paced to the
    rate (a write that falls behind the schedule goes at once: the achieved rate shows the loss)."""
    buf = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT needs
    buf.write(os.urandom(CHUNK))
    rate = rate_mb_s * 1e6
    lat: list[float] = []
    written, n = 0, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        tmp, final = out / f".movie_{n:04d}.raw.tmp", out / f"movie_{n:04d}.raw"
        direct = True
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
        except OSError:
            direct = False
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(MOVIE // CHUNK):
                due = t0 + written / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                t = time.monotonic()
                try:
                    os.write(fd, buf)
                except OSError:
                    if not direct:
                        raise
                    direct = False  # a filesystem that takes O_DIRECT at open but not the write
                    os.close(fd)
                    fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
                    os.write(fd, buf)
                if not direct:
                    os.fdatasync(fd)
                lat.append(time.monotonic() - t)
                written += CHUNK
        finally:
            os.close(fd)
        os.rename(tmp, final)  # as EPU/SerialEM do: a finished movie appears under its name
        n += 1
    elapsed = time.monotonic() - t0
    report.write_text(json.dumps({"bytes": written, "seconds": elapsed, "latencies": lat, "direct": direct}))


def make_backlog(watch: Path, mb: int) -> int:
    """Earlier movies waiting to be shipped, written and then dropped from the page cache."""
    d = watch / "backlog"
    d.mkdir(parents=True)
    block = os.urandom(CHUNK)
    total = 0
    for i in range(max(1, mb * 2**20 // MOVIE)):
        p = d / f"old_{i:04d}.raw"
        with open(p, "wb") as f:
            for _ in range(MOVIE // CHUNK):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        total += MOVIE
    return total


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for name in ("acqd_backoff", "acqd_acquisition_disk_write_latency_seconds"):
        m = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scenario(
    work: Path,
    dest_root: Path,
    name: str,
    args: argparse.Namespace,
    cam: bool,
    acqd: str | None,
    prio: bool = False,
    latency_above: str = "50ms",
) -> dict[str, Any]:
    """One run: `acqd` is None (no acqd), "off" (no back-off) or "on"; `prio`: acqd at the systemd
    unit's priorities (Nice=10, best-effort I/O priority 7)."""
    shutil.rmtree(work, ignore_errors=True)
    watch, state = work / "acq", work / "state"
    dest = dest_root / f"acqd-bench-camera-{os.getpid()}"
    shutil.rmtree(dest, ignore_errors=True)
    for p in (watch, state, dest):
        p.mkdir(parents=True)
    backlog = make_backlog(watch, args.backlog_mb) if acqd else 0
    result: dict[str, Any] = {"scenario": name}
    daemon = None
    port = free_port()
    t0 = time.monotonic()
    cam_proc = None
    report = work / "camera.json"
    if cam:  # the camera first: acqd starts beside a camera already writing
        cam_proc = subprocess.Popen(
            [
                PY,
                "-c",
                "from bench.camera import camera; from pathlib import Path; "
                f"camera(Path({str(watch)!r}), {args.rate}, {args.seconds}, Path({str(report)!r}))",
            ],
            cwd=REPO,
        )
    launched = time.time()
    dev = stat_file(str(watch))
    before = read_stat(dev, time.monotonic()) if dev else None
    if acqd:
        cfg = work / "acqd.yaml"
        cfg.write_text(
            f"""instrument: bench
state_dir: {state}
watch:
  - {{path: {watch}, settle: 0.5s}}
tiers:
  central: {{url: "file://{dest}"}}
metrics: {{bind: "127.0.0.1:{port}"}}
limits:
  backoff: {{enabled: {"true" if acqd == "on" else "false"}, write_latency_above: {latency_above},
             concurrent_files: 1, interval: 1s}}
"""
        )
        nice = ["nice", "-n", "10", "ionice", "-c", "2", "-n", "7"] if prio else []
        daemon = subprocess.Popen(
            [*nice, PY, "-m", "acqd", "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True
        )
    backing_off, samples = 0, 0
    while time.monotonic() - t0 < args.seconds:
        time.sleep(1.0)
        if daemon is not None:
            m = scrape(port)
            if m:
                samples += 1
                backing_off += int(m.get("acqd_backoff", 0) == 1)
    if cam_proc is not None:
        cam_proc.wait(timeout=120)
        rep = json.loads(report.read_text())
        lat = sorted(rep["latencies"])
        result["camera_mb_s"] = rep["bytes"] / rep["seconds"] / 1e6
        result["camera_write_ms_p50"] = 1000 * statistics.median(lat)
        result["camera_write_ms_p99"] = 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        result["camera_write_ms_max"] = 1000 * lat[-1]
        result["camera_o_direct"] = rep["direct"]
    ended = time.time()
    after = read_stat(dev, time.monotonic()) if dev else None
    load = load_between(before, after) if before and after else None
    if load is not None:  # the disk's own view over the whole run (all writers: camera, acqd's journal)
        result["disk_write_ms_mean"] = 1000 * (load.write_latency or 0.0)
        result["disk_busy"] = load.busy
    if acqd == "on":
        result["latency_above"] = latency_above
    if daemon is not None:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=120)
        db = sqlite3.connect(state / "journal.sqlite")
        try:
            done, last = db.execute(
                "SELECT COALESCE(SUM(size), 0), MAX(updated) FROM files "
                "WHERE state = 'verified' AND relpath LIKE 'backlog/%' AND updated <= ?",
                (ended,),
            ).fetchone()
        finally:
            db.close()
        # the backlog shipped before the camera stopped: its rate up to the last file, not the idle tail
        span = (last if done >= backlog and last else ended) - launched
        result["acqd_catchup_mb_s"] = done / span / 1e6
        result["backlog_mb"] = backlog / 1e6
        result["backlog_shipped_mb"] = done / 1e6
        result["backing_off_share"] = backing_off / samples if samples else 0.0
        result["backoff_log_lines"] = err.count("backing off for the camera")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench camera")
    ap.add_argument("--rate", type=float, default=150.0, help="camera MB/s")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--backlog-mb", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=3, help="rounds of all scenarios; figures are medians")
    ap.add_argument("--workdir", default="/var/tmp", help="on the acquisition disk")
    ap.add_argument("--dest", default="/dev/shm", help="the tier's folder (another device)")
    ap.add_argument(
        "--latency-above",
        default=None,
        help="limits.backoff.write_latency_above; default: twice the disk's mean write latency under the camera alone",
    )
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "camera.json"))
    args = ap.parse_args(argv)
    work = Path(args.workdir) / f"acqd-bench-camera-{os.getpid()}"
    runs = [
        ("camera alone", True, None, False),
        ("acqd alone", False, "off", False),
        ("camera + acqd", True, "off", False),
        ("camera + acqd, unit priorities", True, "off", True),
        ("camera + acqd, priorities + back-off", True, "on", True),
    ]
    every: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in runs}
    above = args.latency_above
    for _round in range(args.runs):
        for name, cam, acqd, prio in runs:  # each round runs every scenario once, in this order
            r = scenario(work, Path(args.dest), name, args, cam, acqd, prio, above or "50ms")
            r["loadavg_1m_at_end"] = os.getloadavg()[0]
            every[name].append(r)
            print(json.dumps(r), flush=True)
            if name == "camera alone" and not above:  # calibrated: twice the disk's latency under the camera alone
                above = f"{max(1.0, 2 * r.get('disk_write_ms_mean', 25.0)):.1f}ms"
    results = []
    for name, rs in every.items():  # medians over the runs
        med: dict[str, Any] = {"scenario": name, "runs": len(rs)}
        for k, v in rs[0].items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                med[k] = statistics.median(r[k] for r in rs if k in r)
            elif k != "scenario":
                med[k] = v
        results.append(med)
    load = os.getloadavg()
    doc = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "loadavg_at_end": load,
        "args": vars(args),
        "results": results,
        "every_run": every,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    head = ("scenario", "camera MB/s", "write p50/p99/max ms", "disk ms", "acqd catch-up MB/s", "backing off")
    print(f"\n{head[0]:38} {head[1]:>11} {head[2]:>22} {head[3]:>8} {head[4]:>19} {head[5]:>11}")
    for r in results:
        cam = f"{r['camera_mb_s']:.1f}" if "camera_mb_s" in r else "-"
        lat = (
            f"{r['camera_write_ms_p50']:.1f} / {r['camera_write_ms_p99']:.0f} / {r['camera_write_ms_max']:.0f}"
            if "camera_mb_s" in r
            else "-"
        )
        up = f"{r['acqd_catchup_mb_s']:.1f}" if "acqd_catchup_mb_s" in r else "-"
        off = f"{r['backing_off_share']:.0%}" if "backing_off_share" in r else "-"
        disk = f"{r['disk_write_ms_mean']:.1f}" if "disk_write_ms_mean" in r else "-"
        print(f"{r['scenario']:38} {cam:>11} {lat:>22} {disk:>8} {up:>19} {off:>11}")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
