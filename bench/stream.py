"""Last byte -> verified: how long after a camera's last byte of a movie acqd has its copy verified.

    python -m bench stream [--movies 3] [--rate 50] [--frames 20] [--runs 1]
                           [--format mrc,raw,mib,tiff] [--workdir /var/tmp] [--dest /dev/shm]

A simulated Gatan K3 (`acqd simulate gatan-k3`: MRC counting movies of 5760 x 4092 uint8 frames,
header first) writes `--movies` movies one after another into the watch folder, in place and at
`--rate` MB/s (4 MiB writes), as SerialEM and DigitalMicrograph do, while `acqd run` (the shipped
gatan-k3 profile: LZW TIFF, settled by its MRC header) ships them to a folder on `--dest`. For each
movie: the wall time from the write of its last byte to the journal's `verified`. Scenarios: `stream:
false` on the watch root (the whole-file path: everything starts once the movie is complete) and
`stream: true` (tail-follow: frames encoded while the movie is written, compared at completion).
Figures are medians over every movie of every run. Writes bench/results/stream.json.

`--layout zarr` stores the copies as Zarr (Blosc LZ4 with bitshuffle, a shard per `shard_bytes`:
96 MiB) instead, as the shipped .mib and light-sheet profiles do.

`--format` (one or several, comma-separated) runs the same for the other formats acqd streams, each
file about the size of the K3 movie, stored as deflate-1 TIFF by a profile written for the run and
completed by a marker file written right after the last byte (their formats do not announce their
size): `raw` (the K3 movie's bytes read as raw frames of the profile's geometry, its MRC header as
1,024+ opaque header bytes), `mib` (a Merlin series of 512 x 512 12-bit frames, each behind its
768-byte header), `tiff` (a light-sheet stack of 2048 x 2048 uint16 planes, written plane by plane).
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


# profiles of the formats besides MRC (the shipped ones store .mib and TIFF stacks as Zarr): TIFF layout
PROFILE = """apiVersion: acqd/v1
kind: DetectorProfile
name: bench-{fmt}
reader: {reader}
{extra}{layout}
files: ["*.{ext}"]
ignore: [".*", "*.done"]
shard_bytes: 96MiB
settle: {{window: 5s, marker: "{{name}}.done"}}
"""
EXT = {"mrc": "mrc", "raw": "raw", "mib": "mib", "tiff": "tif"}
# --layout: how the copies are stored (the K3 profile's own TIFF for MRC, else as below)
LAYOUTS = {
    "tiff": "layout: tiff\ncodec: {id: deflate, level: 1}\n",
    "zarr": "layout: zarr\ncodec: {id: blosc, cname: lz4, clevel: 1, shuffle: bitshuffle}\n",
}
PLACEMENT = {"zarr": ", placement: {layout: zarr, codec: {id: blosc, cname: lz4, clevel: 1, shuffle: bitshuffle}}"}


def source(fmt: str, frames: int, staging: Path) -> tuple[bytes, int, str]:
    """A file of the format (about the K3 movie's size): its bytes, the bytes before its first frame,
    and the profile's extra lines."""
    k3 = 4092 * 5760 * frames
    if fmt in ("mrc", "raw"):
        [m] = simulate("gatan-k3", staging, SimSpec(files=1, frames=frames, height=4092, width=5760, temp_rename=False))
        movie = m.read_bytes()
        header = 1024 + int.from_bytes(movie[92:96], "little")
        extra = f"raw: {{shape: [4092, 5760], dtype: uint8, header_bytes: {header}, axis0: t}}\n"
        return movie, header, extra if fmt == "raw" else ""
    if fmt == "mib":
        n = max(1, k3 // (768 + 512 * 512 * 2))
        [m] = simulate("merlin-medipix", staging, SimSpec(files=1, frames=n, height=512, width=512, temp_rename=False))
        return m.read_bytes(), 0, ""
    n = max(1, k3 // (2048 * 2048 * 2))
    [m] = simulate("hamamatsu-orca", staging, SimSpec(files=1, frames=n, height=2048, width=2048, temp_rename=False))
    return m.read_bytes(), 0, "axis0: z\n"


def camera(
    movie: bytes, header: int, out: Path, count: int, rate_mb_s: float, ext: str = "mrc", marker: bool = False
) -> list[float]:
    """Write `count` copies of `movie` one after another at the rate; the wall time of each last byte
    (`marker`: then its marker file, at once)."""
    rate = rate_mb_s * 1e6
    ends = []
    t0 = time.monotonic()
    written = 0
    for n in range(count):
        path = out / f"movie_{n:04d}.{ext}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
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
        if marker:
            path.with_name(path.name + ".done").touch()
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
    work: Path,
    dest_root: Path,
    movie: bytes,
    header: int,
    args: argparse.Namespace,
    stream: bool,
    fmt: str = "mrc",
    extra: str = "",
    prefix: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One run: the daemon (started with `prefix` before it, e.g. `taskset -c 0`) and the camera."""
    shutil.rmtree(work, ignore_errors=True)
    watch, state = work / "acq", work / "state"
    dest = dest_root / f"acqd-bench-stream-{os.getpid()}"
    shutil.rmtree(dest, ignore_errors=True)
    for p in (watch / "sess", state, dest):
        p.mkdir(parents=True)
    cfg = work / "acqd.yaml"
    det = work / "det"
    det.mkdir()
    detector = "gatan-k3"
    if fmt != "mrc":
        detector = f"bench-{fmt}"
        reader = "tiff" if fmt == "tiff" else fmt
        text = PROFILE.format(fmt=fmt, reader=reader, extra=extra, ext=EXT[fmt], layout=LAYOUTS[args.layout])
        (det / f"{detector}.yaml").write_text(text)
    placement = PLACEMENT.get(args.layout, "") if fmt == "mrc" else ""
    cfg.write_text(
        f"""instrument: bench
state_dir: {state}
detectors_dir: {det}
watch:
  - {{path: {watch}, detector: {detector}, stream: {"true" if stream else "false"}{placement}}}
tiers:
  central: {{url: "file://{dest}"}}
metrics: {{enabled: false}}
"""
    )
    daemon = subprocess.Popen(
        [*prefix, PY, "-m", "acqd", "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (state / "journal.sqlite").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the first scan
        cpu0 = os.times()
        ext = EXT[fmt]
        ends = camera(movie, header, watch / "sess", args.movies, args.rate, ext, fmt != "mrc")
        names = [f"sess/movie_{n:04d}.{ext}" for n in range(args.movies)]
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
        "format": fmt,
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
    ap.add_argument("--format", default="mrc", help="mrc, raw, mib, tiff, or several (comma-separated)")
    ap.add_argument("--layout", default="tiff", choices=sorted(LAYOUTS), help="how the copies are stored")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "stream.json"))
    args = ap.parse_args(argv)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats or any(f not in EXT for f in formats):
        ap.error(f"--format: one or several of {', '.join(EXT)}")
    work = Path(args.workdir) / f"acqd-bench-stream-{os.getpid()}"
    staging = Path(args.workdir) / f"acqd-bench-stream-src-{os.getpid()}"
    results = []
    every: dict[str, list[dict[str, Any]]] = {}
    sizes = {}
    for fmt in formats:
        try:
            movie, header, extra = source(fmt, args.frames, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        sizes[fmt] = len(movie)
        label = ("" if formats == ["mrc"] else f"{fmt}: ") + ("" if args.layout == "tiff" else f"{args.layout}, ")
        names = (f"{label}whole file (stream: false)", f"{label}tail-follow (stream: true)")
        for name in names:
            every[name] = []
        for _ in range(args.runs):
            for name, on in zip(names, (False, True), strict=True):
                r = scenario(work, Path(args.dest), movie, header, args, on, fmt, extra)
                every[name].append(r)
                print(name, json.dumps(r), flush=True)
        for name in names:
            rs = every[name]
            lat = sorted(x for r in rs for x in r["latencies"])
            results.append(
                {
                    "scenario": name,
                    "format": fmt,
                    "movies": len(lat),
                    "last_byte_to_verified_p50_s": statistics.median(lat) if lat else None,
                    "max_s": lat[-1] if lat else None,
                    "fallbacks": sum(r["fallbacks"] for r in rs),
                    "acqd_cpu_s": [round(r["acqd_cpu_s"], 2) for r in rs],
                }
            )
        del movie
    doc = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores (shared), {platform.platform()}",
        "loadavg_at_end": os.getloadavg(),
        "args": vars(args),
        "file_bytes": sizes,
        "results": results,
        "every_run": every,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\n{'scenario':36} {'movies':>6} {'last byte -> verified p50':>26} {'max':>7} {'fallbacks':>9}")
    for r in results:
        p50 = f"{r['last_byte_to_verified_p50_s']:.2f} s" if r["movies"] else "-"
        mx = f"{r['max_s']:.2f} s" if r["movies"] else "-"
        print(f"{r['scenario']:36} {r['movies']:>6} {p50:>26} {mx:>7} {r['fallbacks']:>9}")
    print(f"load average at the end: {doc['loadavg_at_end'][0]:.2f} (2 cores shared with other work)")
