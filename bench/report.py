"""`python -m bench report [compare.json]`: the side-by-side tables of a compare run, as Markdown
(what BENCHMARKS.md quotes), with the targets of the performance issue checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).parent / "results" / "compare.json"


def table(ds: dict[str, Any]) -> str:
    when = f"; {ds['runs']} runs, {ds['when']}" if "runs" in ds else f"; {ds['when']}" if "when" in ds else ""
    lines = [
        f"**{ds['dataset']}**: {ds['files']} files, {ds['bytes'] / 1e9:.2f} GB, acqd layout `{ds['layout']}`, "
        f"codec `{ds['codec']}`{when}",
        "",
        "| contender | wall s (median) | GB/s | stored MB | ratio | CPU s | peak RSS MiB "
        "| complete->verified p50 / p99 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in ds["results"].items():
        lat = f"{r['latency_p50_s']:.2f} / {r['latency_p99_s']:.2f}" if r.get("latency_p50_s") is not None else ""
        lines.append(
            f"| {name} | {r['wall_s']:.2f} | {r['gb_s']:.3f} | {r['stored_bytes'] / 1e6:.1f} | {r['ratio']:.2f} | "
            f"{r['cpu_s']:.1f} | {r['peak_rss_mib']:.0f} | {lat} |"
        )
    for name, why in ds.get("skipped", {}).items():
        lines.append(f"| {name} | - | | | | | | {why} |")
    return "\n".join(lines)


def targets(doc: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    by = {d["dataset"]: d for d in doc["datasets"]}
    out: list[tuple[str, bool | None, str]] = []
    for d in doc["datasets"]:
        r = d["results"]
        if "acqd" in r and "bare pipeline" in r:
            x = r["bare pipeline"]["wall_s"] / r["acqd"]["wall_s"]
            out.append((f"{d['dataset']}: acqd >= 0.9 x the bare pipeline's throughput", x >= 0.9, f"{x:.2f} x"))
    for name, d in by.items():
        r = d["results"]
        if name.startswith("simulated K3") and "rsync -a" in r:
            faster = r["acqd"]["wall_s"] < r["rsync -a"]["wall_s"]
            fewer = r["rsync -a"]["stored_bytes"] / max(1, r["acqd"]["stored_bytes"])
            out.append(
                (
                    f"{name}: acqd faster than rsync -a and >= 3x fewer bytes",
                    faster and fewer >= 3,
                    f"{r['acqd']['wall_s']:.2f} s vs {r['rsync -a']['wall_s']:.2f} s; {fewer:.2f}x fewer bytes",
                )
            )
        if name.startswith("simulated light-sheet") and "rsync -a" in r:
            x = r["acqd"]["wall_s"] / r["rsync -a"]["wall_s"]
            out.append((f"{name}: acqd within 1.2 x of rsync -a", x <= 1.2, f"{x:.2f} x rsync's wall time"))
        if "acquire-zarr" in r:
            speed = r["acquire-zarr"]["wall_s"] / r["acqd"]["wall_s"]
            size = r["acqd"]["stored_bytes"] / max(1, r["acquire-zarr"]["stored_bytes"]) - 1
            out.append(
                (
                    f"{name}: acqd's zarr layout at least as fast as acquire-zarr, size within 5 %",
                    speed >= 1 and abs(size) <= 0.05,
                    f"acqd at {speed:.2f} x acquire-zarr's speed; stored size {size * 100:+.1f} %",
                )
            )
    if "backlog_start" in doc:
        b = doc["backlog_start"]
        out.append(
            (
                f"{b['files']:,} small files waiting at start: the first verified within 10 s",
                b["first_verified_s"] <= 10,
                f"{b['first_verified_s']:.2f} s",
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    doc = json.loads(Path(args[0] if args else DEFAULT).read_text())
    print(f"`{doc['command']}`, {doc['date']}; {doc['runs']} runs per contender, medians.\n")
    for ds in doc["datasets"]:
        print(table(ds))
        print()
    print("| target | met | figure |\n|---|---|---|")
    for what, ok, fig in targets(doc):
        print(f"| {what} | {'yes' if ok else 'no'} | {fig} |")


if __name__ == "__main__":
    main()
