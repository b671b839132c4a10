"""The camera rate acqd keeps up with, per core count, and its last byte -> verified latency on the way.

    python -m bench rate [--rates 50,100,150,200,250,300,400] [--cores 1,2] [--movies 5] [--frames 8]
                         [--layout tiff|zarr] [--format mrc] [--workdir /var/tmp] [--dest /dev/shm]

For each core count n, `acqd run` is started under `taskset` on n of this machine's cores (its frame
threads follow its CPU affinity: one per core), and a simulated camera (this process, not pinned)
writes `--movies` movies one after another at each `--rates` MB/s, as `python -m bench stream` does
(the K3 profile's deflate-1 TIFF, tail-follow streaming on). Per rate: each movie's time from its
last byte to the journal's `verified`. acqd **kept up** at a rate when the backlog did not grow over
the run and stayed within the issue's latency goal: every movie verified within 1 s of its last byte
(with 5 movies of 189 MB a daemon slower than the camera cannot stay under it for long; a bounded
but longer delay is shown on the plot, hollow). The sustained rate of n cores is the highest rate
kept up at.

Writes bench/results/rate.json and a plot (bench/results/rate.svg): latency against camera rate for
each core count, and the sustained rate against cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.stream import EXT, LAYOUTS, REPO, scenario, source

GOAL_S = 1.0  # kept up: every movie verified within this of its last byte (issue 15's latency goal)


def kept_up(lat: list[float]) -> bool:
    return len(lat) >= 2 and max(lat) <= GOAL_S


def plot(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    sustained = []
    for n, rows in sorted(doc["by_cores"].items(), key=lambda kv: int(kv[0])):
        rates = [r["rate_mb_s"] for r in rows]
        p50 = [r["p50_s"] for r in rows]
        line = left.plot(rates, p50, "-", label=f"{n} core{'s' if int(n) > 1 else ''}")[0]
        for r in rows:
            left.plot(
                r["rate_mb_s"], r["p50_s"], "o", color=line.get_color(), fillstyle="full" if r["kept_up"] else "none"
            )
        sustained.append((int(n), max((r["rate_mb_s"] for r in rows if r["kept_up"]), default=0.0)))
    left.set_yscale("log")
    left.set_xlabel("camera rate, MB/s")
    left.set_ylabel("last byte -> verified, p50 (s)")
    left.set_title(f"latency (filled: every movie within {GOAL_S:g} s)")
    left.axhline(GOAL_S, color="grey", linestyle=":", linewidth=1)
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    right.bar([str(n) for n, _ in sustained], [r for _, r in sustained], color="tab:green")
    for i, (_, r) in enumerate(sustained):
        right.annotate(f"{r:.0f}", (i, r), ha="center", va="bottom")
    right.set_xlabel("cores")
    right.set_ylabel("highest rate kept up, MB/s")
    right.set_title("sustained rate")
    fig.suptitle(f"acqd, {doc['what']}; {doc['when']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, format="svg")
    plt.close(fig)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench rate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="50,100,150,200,300,400,500,600,800", help="camera MB/s, comma-separated")
    ap.add_argument("--cores", default="1,2", help="core counts to pin acqd to, comma-separated")
    ap.add_argument("--movies", type=int, default=5, help="movies per rate (the backlog's growth shows over them)")
    ap.add_argument("--frames", type=int, default=8, help="frames per movie (23.6 MB each)")
    ap.add_argument("--workdir", default="/var/tmp", help="the acquisition disk")
    ap.add_argument("--dest", default="/dev/shm", help="the tier's folder (central storage: another device)")
    ap.add_argument("--format", default="mrc", choices=sorted(EXT))
    ap.add_argument("--layout", default="tiff", choices=sorted(LAYOUTS), help="how the copies are stored")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "rate.json"))
    ap.add_argument("--plot", default=str(REPO / "bench" / "results" / "rate.svg"))
    args = ap.parse_args(argv)
    args.runs = 1
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    mine = sorted(os.sched_getaffinity(0))
    counts = [int(c) for c in args.cores.split(",") if c.strip()]
    if not counts or any(c < 1 or c > len(mine) for c in counts):
        ap.error(f"--cores: between 1 and the {len(mine)} this process may use")
    work = Path(args.workdir) / f"acqd-bench-rate-{os.getpid()}"
    staging = Path(args.workdir) / f"acqd-bench-rate-src-{os.getpid()}"
    try:
        movie, header, extra = source(args.format, args.frames, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    by_cores: dict[str, list[dict[str, Any]]] = {}
    for n in counts:
        prefix = ("taskset", "-c", ",".join(str(c) for c in mine[:n]))
        rows = by_cores.setdefault(str(n), [])
        for rate in rates:
            args.rate = rate
            r = scenario(work, Path(args.dest), movie, header, args, True, args.format, extra, prefix)
            lat = r["latencies"]
            row = {
                "rate_mb_s": rate,
                "latencies_s": [round(x, 3) for x in lat],
                "p50_s": round(statistics.median(lat), 3) if lat else None,
                "kept_up": kept_up(lat) and len(lat) == args.movies,
                "acqd_cpu_s": round(r["acqd_cpu_s"], 2),
                "fallbacks": r["fallbacks"],
                "load_1m": round(r["load_1m"], 2),
            }
            rows.append(row)
            print(f"  {n} core(s), {rate:.0f} MB/s: {json.dumps(row)}", flush=True)
    doc = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "what": f"{args.format} movies of {len(movie) / 1e6:.0f} MB stored as {args.layout}, tail-follow",
        "args": vars(args),
        "goal_s": GOAL_S,
        "by_cores": by_cores,
        "sustained_mb_s": {
            n: max((r["rate_mb_s"] for r in rows if r["kept_up"]), default=0.0) for n, rows in by_cores.items()
        },
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, Path(args.plot))
    print(f"\n{'cores':>5} {'rate MB/s':>9} {'p50 s':>7} {'first s':>8} {'last s':>7} {'kept up':>8}")
    for n, rows in by_cores.items():
        for r in rows:
            lat = r["latencies_s"]
            first, last = (f"{lat[0]:.2f}", f"{lat[-1]:.2f}") if lat else ("-", "-")
            p50 = f"{r['p50_s']:.2f}" if r["p50_s"] is not None else "-"
            print(f"{n:>5} {r['rate_mb_s']:>9.0f} {p50:>7} {first:>8} {last:>7} {'yes' if r['kept_up'] else 'no':>8}")
    print("sustained:", ", ".join(f"{n} core(s) {v:.0f} MB/s" for n, v in doc["sustained_mb_s"].items()))
    print(f"written to {args.out} and {args.plot}")
