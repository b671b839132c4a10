"""`python -m bench cores`: every core on one movie.

    python -m bench cores threads [--codec lzw] [--layout tiff] [--frames 10] [--runs 5]
    python -m bench cores codecs [--runs 3]

`threads`: one simulated K3 movie (MRC, 5760 x 4092 uint8 counting frames at 0.8 e/pixel/frame)
written by acqd's frame layout to a local folder (read, hash, encode, write, fsync) and verified
(read back, decode, hash, compare), with 1 and then 2 (... up to the cores) frame threads, runs
alternating; medians. The figure: the rate with N threads over the rate with 1.

`codecs`: the TIFF compressions RELION (libtiff), MotionCor2 and cryoSPARC may read in place, per
~256 KiB strip as acqd writes them: ratio, encode and decode GB/s on 1 and 2 threads, on simulated
K3 counting frames and on the real Falcon and DE movies of ../shared/data (when present).

Results go to bench/results/cores.json (merged by subcommand). The machine is shared: the load
average before and after each subcommand is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# ../shared/data beside the checkout (or beside the folder of worktrees), as bench/codecs.py finds it
SHARED = next(
    (p / "shared" / "data" for p in REPO.parents[:2] if (p / "shared" / "data").is_dir()),
    REPO.parent / "shared" / "data",
)
RESULTS = REPO / "bench" / "results" / "cores.json"


class _Src:
    """What a layout's write reads from (the pipeline's source object, without identity checks)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.file = open(path, "rb")  # noqa: SIM115 (closed by the caller)

    def check(self) -> None:
        pass


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def ship_once(path: Path, layout: Any, work: Path) -> tuple[float, float, int, float, float]:
    """Seconds to write (durable) and to verify one file with `layout`; stored bytes; CPU seconds of
    the process and of the calling thread alone (what cannot run on the pool) over both."""
    from acqd.storage import open_tier

    with tempfile.TemporaryDirectory(prefix="acqd-cores-", dir=work) as d:
        tier = open_tier("t", f"file://{d}")
        src = _Src(path)
        try:
            c0, m0 = time.process_time(), time.thread_time()
            t0 = time.perf_counter()
            res = layout.write(src, path.stat().st_size, tier, "m" + layout.suffix)
            t1 = time.perf_counter()
            layout.verify(tier, "m" + layout.suffix, res)
            t2 = time.perf_counter()
            cpu, main = time.process_time() - c0, time.thread_time() - m0
        finally:
            src.file.close()
    return t1 - t0, t2 - t1, res.stored_bytes, cpu, main


def threads_cmd(args: argparse.Namespace) -> dict[str, Any]:
    from acqd.layouts import build_layout
    from acqd.layouts.tiffwrite import cores
    from acqd.readers import Expect
    from acqd.simulate import SimSpec, simulate

    work = Path(tempfile.mkdtemp(prefix="acqd-cores-", dir=args.workdir))
    try:
        [movie] = simulate("gatan-k3", work / "src", SimSpec(files=1, frames=args.frames, height=4092, width=5760))
        size = movie.stat().st_size
        codec = json.loads(args.codec) if args.codec.startswith("{") else None
        if codec is None:
            from acqd.codec import codec_spec, parse_label

            codec = codec_spec(parse_label(args.codec))
        counts = sorted({1, *range(2, max(2, cores()) + 1)}) if args.threads is None else args.threads
        lays = {
            n: build_layout(args.layout, codec=codec, reader="mrc", expect=Expect(), shard_bytes=96 << 20, threads=n)
            for n in counts
        }
        load0 = _load()
        ship_once(movie, lays[counts[-1]], work)  # warm the page cache and the imports
        runs: dict[int, list[tuple[float, float, int, float, float]]] = {n: [] for n in counts}
        for r in range(args.runs):
            order = counts[r % len(counts) :] + counts[: r % len(counts)]
            for n in order:
                runs[n].append(ship_once(movie, lays[n], work))
                w, v, _, cpu, main = runs[n][-1]
                print(
                    f"  {n} thread(s) run {r + 1}: write {w:.2f} s, verify {v:.2f} s, CPU {cpu:.2f} s "
                    f"(calling thread {main:.2f} s), load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        out: dict[str, Any] = {
            "file": f"simulated K3 movie, {args.frames} frames 5760 x 4092 uint8 (MRC), {size / 1e9:.3f} GB",
            "layout": args.layout,
            "codec": args.codec,
            "runs": args.runs,
            "load_before": load0,
            "load_after": _load(),
            "threads": {},
        }
        base = None
        one_cpu = statistics.median(x[3] for x in runs[counts[0]])
        for n in counts:
            w = statistics.median(x[0] for x in runs[n])
            v = statistics.median(x[1] for x in runs[n])
            total = statistics.median(x[0] + x[1] for x in runs[n])
            rate = size / total / 1e9
            base = base or rate
            cpu = statistics.median(x[3] for x in runs[n])
            main = statistics.median(x[4] for x in runs[n])
            out["threads"][str(n)] = {
                "cpu_s": round(cpu, 3),
                "calling_thread_cpu_s": round(main, 3),
                # on idle cores: the pool's work spread over n threads, the calling thread's beside it
                # on idle cores: this many threads' time is at least the calling thread's CPU and at
                # least an n-th of all the CPU; against one thread's time (its CPU)
                "cpu_bound_speedup_limit": round(one_cpu / max(main, cpu / n), 2),
                "best_total_s": round(min(x[0] + x[1] for x in runs[n]), 3),
                "write_s": round(w, 3),
                "verify_s": round(v, 3),
                "total_s": round(total, 3),
                "totals": [round(x[0] + x[1], 3) for x in runs[n]],
                "gb_s": round(rate, 3),
                "write_gb_s": round(size / w / 1e9, 3),
                "verify_gb_s": round(size / v / 1e9, 3),
                "speedup": round(rate / base, 2),
                "ratio": round(size / runs[n][0][2], 2),
            }
        return out
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


# --- TIFF compressions per strip ---------------------------------------------------------------

CANDIDATES = [
    ("lzw", 5, 1, None),
    ("deflate-1", 8, 1, 1),  # ISA-L (acqd.codec.deflate_encoder)
    ("deflate-1 (libdeflate)", 8, 1, -1),
    ("deflate-2", 8, 1, 2),
    ("deflate-6", 8, 1, 6),
    ("deflate-1+predictor", 8, 2, 1),
    ("zstd-1", 50000, 1, 1),
    ("zstd-3", 50000, 1, 3),
    ("zstd-1+predictor", 50000, 2, 1),
]


def _strips(frames: np.ndarray) -> list[np.ndarray]:
    from acqd.layouts.tiffwrite import default_rows_per_strip

    out = []
    for f in frames:
        rps = default_rows_per_strip(f.shape, f.dtype.itemsize, 5)
        out += [np.ascontiguousarray(f[i : i + rps]) for i in range(0, f.shape[0], rps)]
    return out


def _codec_figures(strips: list[np.ndarray], comp: int, pred: int, level: int | None, runs: int) -> dict[str, Any]:
    import tifffile

    from acqd.layouts.tiffwrite import encode_strip

    n = sum(s.nbytes for s in strips)
    dec = tifffile.TIFF.DECOMPRESSORS[comp]

    def enc_one(s: np.ndarray) -> bytes:
        if level == -1:  # deflate level 1 through tifffile's own codec (libdeflate), not ISA-L
            return bytes(tifffile.TIFF.COMPRESSORS[comp](s, level=1))
        return encode_strip(s, comp, pred, level)

    def dec_one(item: tuple[bytes, np.ndarray]) -> None:
        data, s = item
        out = np.empty(s.nbytes, np.uint8)
        dec(data, out=out)
        if pred == 2:
            tifffile.TIFF.UNPREDICTORS[2](
                out.view(s.dtype).reshape(s.shape), axis=-1, out=out.view(s.dtype).reshape(s.shape)
            )

    fig: dict[str, Any] = {}
    encoded: list[bytes] = []
    for threads in (1, 2):
        with ThreadPoolExecutor(threads) as pool:
            te, td, ce, cd = [], [], [], []
            for _ in range(runs):
                c0, t0 = time.process_time(), time.perf_counter()
                encoded = list(pool.map(enc_one, strips))
                te.append(time.perf_counter() - t0)
                ce.append(time.process_time() - c0)
                c0, t0 = time.process_time(), time.perf_counter()
                list(pool.map(dec_one, zip(encoded, strips, strict=True)))
                td.append(time.perf_counter() - t0)
                cd.append(time.process_time() - c0)
        fig[f"encode_gb_s_{threads}"] = round(n / min(te) / 1e9, 3)
        fig[f"decode_gb_s_{threads}"] = round(n / min(td) / 1e9, 3)
        if threads == 1:  # CPU per byte: what the load of a shared machine does not change much
            fig["encode_cpu_ns_per_b"] = round(min(ce) * 1e9 / n, 2)
            fig["decode_cpu_ns_per_b"] = round(min(cd) * 1e9 / n, 2)
    fig["ratio"] = round(n / sum(len(e) for e in encoded), 3)
    return fig


def codecs_cmd(args: argparse.Namespace) -> dict[str, Any]:
    import mrcfile

    from acqd.simulate import poisson_frames

    data: list[tuple[str, np.ndarray]] = [
        (
            "simulated K3 (2 frames 5760 x 4092 uint8, Poisson 0.8)",
            poisson_frames(np.random.default_rng(0), 2, 4092, 5760, 0.8),
        )
    ]
    for name, rel in (
        ("Falcon EPU 2.9 (4096 x 4096 uint16, real)", "falcon/epu2.9_example.mrc"),
        ("DE Celeritas movie (348 x 16 x 16 uint16, real)", "de-celeritas/ROI_Random_Scan_movie.mrc"),
    ):
        if (SHARED / rel).exists():
            with mrcfile.open(SHARED / rel, permissive=True) as m:
                a = np.asarray(m.data)
            data.append((name, a.reshape(-1, *a.shape[-2:])))
    load0 = _load()
    out: dict[str, Any] = {"runs": args.runs, "load_before": load0, "data": {}}
    for name, frames in data:
        strips = _strips(frames)
        rows = {}
        for label, comp, pred, level in CANDIDATES:
            rows[label] = _codec_figures(strips, comp, pred, level, args.runs)
            print(f"  {name}: {label}: {rows[label]}", flush=True)
        out["data"][name] = rows
    out["load_after"] = _load()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench cores", description=__doc__)
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("threads", help="one K3 movie: write + verify on 1 and 2 threads")
    t.add_argument("--codec", default="lzw", help="a label (lzw, deflate-1, zstd-1, blosc-lz4-1) or a JSON spec")
    t.add_argument("--layout", default="tiff", choices=("tiff", "zarr"))
    t.add_argument("--frames", type=int, default=10)
    t.add_argument("--runs", type=int, default=5)
    t.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts (default: 1 .. cores)")
    t.add_argument("--workdir", type=Path, default=None)
    c = sub.add_parser("codecs", help="TIFF compressions per strip: ratio, encode/decode GB/s on 1 and 2 threads")
    c.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    result = threads_cmd(args) if args.what == "threads" else codecs_cmd(args)
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = args.what if args.what == "codecs" else f"threads/{args.layout}/{args.codec}"
    doc[key] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
