"""The side-by-side benchmark: acqd against a bare pipeline, rsync, cp, zstd and acquire-zarr.

    python -m bench compare [--runs 5] [--k3-files 6] [--ls-files 8] [--out BENCHMARKS.md]

Datasets: a simulated K3 session (MRC counting movies -> acqd's TIFF layout), a simulated light-sheet
session (uint16 TIFF stacks -> acqd's OME-Zarr layout), and the real files of ../shared/data when
present. Every contender reads the same files (from the page cache: the first, untimed run warms
it) and writes to a fresh folder on the same disk; each run ends with the data durable (acqd and
the bare pipeline fsync; for rsync, cp, zstd and acquire-zarr the timed command is followed by
`sync -f` on the destination). Runs alternate between contenders; figures are medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acqd.simulate import SimSpec, simulate

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
PY = sys.executable


@dataclass
class Dataset:
    name: str
    src: Path
    detector: str
    codec: str  # the codec acqd's profile uses, for the bare pipeline and acquire-zarr
    layout: str
    placement: str = ""  # acqd's watch placement override (YAML flow), when not the profile's default
    files: int = 0
    bytes: int = 0


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mib: float
    stored: int
    latency: list[float] = field(default_factory=list)
    start: float | None = None  # the same program's wall time on an empty folder: its start and stop


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _timed(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one child process, measured by
    GNU time (a small parent: getrusage after a fork from this process would count its memory)."""
    # as installed: a Python program starts from its compiled modules (a shell with
    # PYTHONDONTWRITEBYTECODE=1 would have every run compile acqd's from source: +0.3 s a start)
    env = {k: v for k, v in (env if env is not None else os.environ).items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.NamedTemporaryFile("r") as stats:
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%U %S %M", "-o", stats.name, *cmd],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
        user, sys_, rss = stats.read().split()[-3:]
    return wall, float(user) + float(sys_), int(rss) / 1024


def _sync(dest: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["sync", "-f", str(dest)], check=True)
    return time.perf_counter() - t0


# --- contenders --------------------------------------------------------------------------------


def _empty(ds: Dataset, work: Path) -> Dataset:
    """The dataset's settings with an empty source folder: what a program costs that has nothing to do."""
    empty = work / "empty"
    shutil.rmtree(empty, ignore_errors=True)
    empty.mkdir()
    shutil.rmtree(work / "empty-out", ignore_errors=True)
    (work / "empty-out").mkdir()
    return dataclasses.replace(ds, src=empty)


def run_acqd(ds: Dataset, dest: Path, work: Path, idle: bool = True) -> Run:
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    cfg = work / "acqd.yaml"
    cfg.write_text(
        f"""instrument: bench
state_dir: {state}
watch:
  - {{path: {ds.src}, detector: {ds.detector}, settle: 0.1s, mode: poll, scan_interval: 1h{ds.placement}}}
tiers:
  central: {{url: "file://{dest}"}}
"""
    )
    wall, cpu, rss = _timed([PY, "-m", "acqd", "run", "--once", "--retry-for", "60s", "--config", str(cfg)])
    db = sqlite3.connect(state / "journal.sqlite")
    lat: list[float] = []
    try:
        rows = db.execute(
            "SELECT file_id, action, ts FROM audit WHERE action IN ('complete', 'verified') ORDER BY id"
        ).fetchall()
        bad = db.execute("SELECT COUNT(*) FROM files WHERE state != 'verified'").fetchone()[0]
    finally:
        db.close()
    if bad:
        raise RuntimeError(f"acqd left {bad} file(s) of {ds.name} unverified")
    done: dict[int, float] = {}
    for fid, action, ts in rows:
        if action == "complete":
            done[fid] = ts
        elif fid in done:
            lat.append(ts - done[fid])
    stored = _du(dest) - sum(p.stat().st_size for p in dest.rglob("~acqd-manifest.json"))
    start = run_acqd(_empty(ds, work), work / "empty-out", work, idle=False).wall if idle else None
    return Run(wall, cpu, rss, stored, lat, start)


def run_bare(ds: Dataset, dest: Path, work: Path) -> Run:
    def bare(src: Path) -> tuple[float, float, float]:
        return _timed([PY, "-m", "bench.bare", "--codec", ds.codec, "--threads", "2", str(src), str(dest)], cwd=REPO)

    wall, cpu, rss = bare(ds.src)
    return Run(wall, cpu, rss, _du(dest), start=bare(_empty(ds, work).src)[0])


def run_rsync(ds: Dataset, dest: Path, work: Path) -> Run:
    wall, cpu, rss = _timed(["rsync", "-a", f"{ds.src}/", f"{dest}/"])
    return Run(wall + _sync(dest), cpu, rss, _du(dest))


def run_cp(ds: Dataset, dest: Path, work: Path) -> Run:
    dest.rmdir()
    wall, cpu, rss = _timed(["cp", "-a", str(ds.src), str(dest)])
    return Run(wall + _sync(dest), cpu, rss, _du(dest))


def run_zstd(ds: Dataset, dest: Path, work: Path) -> Run:
    wall, cpu, rss = _timed(
        ["zstd", "-T2", "-1", "-q", "-r", str(ds.src), "--output-dir-mirror", str(dest)], cwd=ds.src.parent
    )
    return Run(wall + _sync(dest), cpu, rss, _du(dest))


def run_acquire_zarr(ds: Dataset, dest: Path, work: Path) -> Run:
    wall, cpu, rss = _timed(
        [PY, "-m", "bench.azarr", "--codec", ds.codec, "--threads", "2", str(ds.src), str(dest)], cwd=REPO
    )
    return Run(wall + _sync(dest), cpu, rss, _du(dest))


CONTENDERS: dict[str, Callable[[Dataset, Path, Path], Run]] = {
    "acqd": run_acqd,
    "bare pipeline": run_bare,
    "rsync -a": run_rsync,
    "cp -a": run_cp,
    "zstd -T2 -1": run_zstd,
    "acquire-zarr": run_acquire_zarr,
}


def available(name: str, ds: Dataset) -> str | None:
    """Why a contender cannot run on a dataset (None: it can)."""
    if name == "rsync -a" and shutil.which("rsync") is None:
        return "rsync not installed"
    if name == "zstd -T2 -1" and shutil.which("zstd") is None:
        return "zstd not installed"
    if name == "acquire-zarr":
        if ds.layout != "zarr":
            return "a Zarr writer: compared on the Zarr datasets only"
        try:
            import acquire_zarr  # noqa: F401
        except ImportError:
            return "acquire-zarr not installed (pip install acquire-zarr)"
    return None


# --- datasets ----------------------------------------------------------------------------------


def _k3_default() -> str:
    """The K3 profile's default codec, as a label (lzw, deflate-1, zstd-1)."""
    from acqd.codec import codec_label, frame_codec
    from acqd.profiles import load_profile, search_path

    return codec_label(frame_codec(load_profile("gatan-k3", search_path()).codec))


def datasets(work: Path, k3_files: int, ls_files: int, k3_tiff: tuple[str, ...] = ()) -> list[Dataset]:
    out = []
    default = _k3_default()
    k3 = Dataset(
        f"simulated K3 session, TIFF + {default} (the profile's default)",
        work / "data" / "k3",
        "gatan-k3",
        default,
        "tiff",
    )
    simulate("gatan-k3", k3.src, SimSpec(files=k3_files, frames=10, height=4092, width=5760, sessions=2))
    out.append(k3)
    for label in k3_tiff:  # other TIFF codecs for the K3 (RELION, MotionCor2, cryoSPARC read TIFF in place)
        if label == default:
            continue
        from acqd.codec import codec_spec, parse_label

        spec = json.dumps(codec_spec(parse_label(label)))
        out.append(
            Dataset(
                f"simulated K3 session, TIFF + {label}",
                k3.src,
                "gatan-k3",
                label,
                "tiff",
                f", placement: {{layout: tiff, codec: {spec}}}",
            )
        )
    out.append(
        Dataset(
            "simulated K3 session, Zarr + Blosc LZ4",
            k3.src,
            "gatan-k3",
            "blosc-lz4-1",
            "zarr",
            ", placement: {layout: zarr, codec: {id: blosc, cname: lz4, clevel: 1, shuffle: bitshuffle}}",
        )
    )
    ls = Dataset("simulated light-sheet session", work / "data" / "ls", "hamamatsu-orca", "blosc-lz4-1", "zarr")
    simulate("hamamatsu-orca", ls.src, SimSpec(files=ls_files, frames=64, height=1024, width=1024, sessions=2))
    out.append(ls)
    real = [
        ("real light-sheet (im_raw.tif)", "lightsheet/im_raw.tif", "hamamatsu-orca", "blosc-lz4-1", "zarr"),
        ("real Falcon movie (epu2.9)", "falcon/epu2.9_example.mrc", "falcon", "deflate-1", "tiff"),
    ]
    for name, rel, det, codec, layout in real:
        if (SHARED / rel).exists():
            d = Dataset(name, work / "data" / rel.split("/")[0], det, codec, layout)
            d.src.mkdir(parents=True, exist_ok=True)
            shutil.copy(SHARED / rel, d.src / Path(rel).name)
            out.append(d)
    for d in out:
        files = [p for p in d.src.rglob("*") if p.is_file()]
        d.files, d.bytes = len(files), sum(p.stat().st_size for p in files)
    return out


# --- the run -----------------------------------------------------------------------------------


def measure(ds: Dataset, runs: int, work: Path, only: tuple[str, ...] = ()) -> dict[str, Any]:
    names = [n for n in CONTENDERS if available(n, ds) is None and (not only or n in only)]
    skipped = {n: why for n in CONTENDERS if (why := available(n, ds)) is not None}
    skipped.update({n: "not asked for (--contenders)" for n in CONTENDERS if only and n not in only | skipped.keys()})
    results: dict[str, list[Run]] = {n: [] for n in names}
    for n in names:  # warm the page cache and the imports; not counted
        dest = work / "out"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        CONTENDERS[n](ds, dest, work)
    for r in range(runs):
        order = names[r % len(names) :] + names[: r % len(names)]  # alternate who goes first
        for n in order:
            dest = work / "out"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            results[n].append(CONTENDERS[n](ds, dest, work))
            print(f"  {ds.name}: {n} run {r + 1}: {results[n][-1].wall:.2f}s", flush=True)
    shutil.rmtree(work / "out", ignore_errors=True)
    table = {}
    for n, rs in results.items():
        wall = statistics.median(x.wall for x in rs)
        lat = sorted(v for x in rs for v in x.latency)
        table[n] = {
            "wall_s": round(wall, 3),
            "walls": [round(x.wall, 3) for x in rs],
            "gb_s": round(ds.bytes / wall / 1e9, 3),
            "stored_bytes": int(statistics.median(x.stored for x in rs)),
            "ratio": round(ds.bytes / max(1, statistics.median(x.stored for x in rs)), 2),
            "cpu_s": round(statistics.median(x.cpu for x in rs), 2),
            "peak_rss_mib": round(max(x.rss_mib for x in rs), 1),
            "latency_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
            "latency_p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3) if lat else None,
        }
        starts = [x.start for x in rs if x.start is not None]
        if starts:  # the wall time with nothing to do, and the rest: the work on the data
            start = statistics.median(starts)
            table[n]["start_s"] = round(start, 3)
            table[n]["work_s"] = round(wall - start, 3)
    return {
        "dataset": ds.name,
        "files": ds.files,
        "bytes": ds.bytes,
        "layout": ds.layout,
        "codec": ds.codec,
        "results": table,
        "skipped": skipped,
    }


def first_verified_with_backlog(work: Path, n: int = 100_000) -> dict[str, float]:
    """Start acqd with `n` small files already waiting; seconds until the first is verified."""
    src = work / "many"
    for i in range(n // 1000):
        d = src / f"d{i:03d}"
        d.mkdir(parents=True)
        for k in range(1000):
            (d / f"f{k:04d}.raw").write_bytes(b"%d" % (i * 1000 + k))
    state, dest = work / "many-state", work / "many-out"
    cfg = work / "many.yaml"
    cfg.write_text(
        f"""instrument: bench
state_dir: {state}
watch: [{{path: {src}, settle: 0.1s}}]
tiers: {{central: {{url: "file://{dest}"}}}}
"""
    )
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [PY, "-m", "acqd", "run", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first = None
    assert proc.stderr is not None
    for line in proc.stderr:
        if b" verified " in line:
            first = time.monotonic() - t0
            break
    proc.terminate()
    proc.communicate(timeout=120)  # its log read to the end: a full pipe would hold up its stop
    shutil.rmtree(src)
    shutil.rmtree(dest, ignore_errors=True)
    return {"files": n, "first_verified_s": round(first, 2) if first else float("nan")}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("acqd", "numcodecs", "zarr", "tifffile", "imagecodecs", "acquire_zarr", "xxhash"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod.replace("_", "-"))
        except Exception:
            pass
    for tool, args in (("rsync", ["--version"]), ("zstd", ["--version"]), ("cp", ["--version"])):
        if shutil.which(tool):
            first = subprocess.run([tool, *args], capture_output=True, text=True).stdout.splitlines()[0]
            out[tool] = first.strip()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--k3-files", type=int, default=6)
    ap.add_argument("--ls-files", type=int, default=8)
    ap.add_argument(
        "--k3-tiff", default="", help="other TIFF codecs to measure on the K3 session, e.g. lzw,deflate-1,zstd-1"
    )
    ap.add_argument("--many", type=int, default=100_000, help="files waiting at start for the first-verified figure")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "compare.json")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--only",
        default=None,
        help="re-measure only the datasets whose name contains this (or one of these, '|'-separated), into the JSON",
    )
    ap.add_argument("--contenders", default="", help="measure only these (comma-separated), e.g. acqd,rsync -a")
    args = ap.parse_args(argv)
    contenders = tuple(c.strip() for c in args.contenders.split(",") if c.strip())
    with tempfile.TemporaryDirectory(prefix="acqd-bench-", dir=args.workdir) as d:
        work = Path(d)
        sets = datasets(work, args.k3_files, args.ls_files, tuple(c for c in args.k3_tiff.split(",") if c))
        doc: dict[str, Any] = {
            "command": "python -m bench compare " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            },
            "versions": versions(),
            "runs": args.runs,
            "datasets": [],
        }
        if args.only is not None and args.json.exists():
            old = json.loads(args.json.read_text())
            for ds in sets:
                if any(o in ds.name for o in args.only.split("|")):
                    print(f"{ds.name}: {ds.files} files, {ds.bytes / 1e9:.2f} GB", flush=True)
                    new = measure(ds, args.runs, work, contenders)
                    if any(d["dataset"] == ds.name for d in old["datasets"]):
                        old["datasets"] = [new if d["dataset"] == ds.name else d for d in old["datasets"]]
                    else:
                        old["datasets"].append(new)
            old.setdefault("remeasured", []).append({"command": doc["command"], "date": doc["date"]})
            doc = old
        else:
            for ds in sets:
                if args.only is not None and not any(o in ds.name for o in args.only.split("|")):
                    continue
                print(f"{ds.name}: {ds.files} files, {ds.bytes / 1e9:.2f} GB", flush=True)
                doc["datasets"].append(measure(ds, args.runs, work, contenders))
            if args.many:
                doc["backlog_start"] = first_verified_with_backlog(work, args.many)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
