"""`python -m bench codecs [DATA_DIR]`: every real file in ../shared/data shipped with its profile by
the real daemon (`acqd run --once`), against every codec candidate of that profile stored by the same
layout: stored size vs the best candidate's (all of them, and those within the CPU budget the daemon
measured) vs the source, and `acqd restore` compared byte for byte. Not a CI test (the data is not in
the repository); results go to bench/results/codecs.json.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# ../shared/data beside the checkout (or beside the folder of worktrees)
DATA = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents[2:4] if (p / "shared" / "data").is_dir()),
    Path(__file__).resolve().parents[2] / "shared" / "data",
)
RESULTS = Path(__file__).parent / "results" / "codecs.json"

# (file, sidecars shipped beside it, profile, what it is)
FILES = [
    ("lightsheet/im_raw.tif", (), "hamamatsu-orca", "lattice light-sheet `im_raw.tif` (88 x 320 x 256 uint16)"),
    ("falcon/epu2.9_example.mrc", (), "falcon", "Falcon EPU 2.9 `epu2.9_example.mrc` (FEI2 ext. header)"),
    ("de-celeritas/ROI_Random_Scan_movie.mrc", (), "direct-electron", "DE Celeritas movie (348 x 16 x 16)"),
    ("velox/HAADFscan.mrc", (), "direct-electron", "Velox `HAADFscan.mrc` (FEI2, 16 x 16)"),
    (
        "medipix/Quad_9_Frame_CounterDepth_12_Rows_256.mib",
        ("medipix/Quad_9_Frame_CounterDepth_12_Rows_256.hdr",),
        "merlin-medipix",
        "Merlin `Quad_9_Frame….mib` (9 x 512 x 512, 96 % zeros)",
    ),
    ("tvips/TVIPS_bin4.tif", (), "hamamatsu-orca", "TVIPS `TVIPS_bin4.tif` (uint8, private pointer tag)"),
]


class _Src:
    """What a layout's write reads from (the pipeline's source object, without identity checks)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.file = open(path, "rb")  # noqa: SIM115 (closed by the caller)

    def check(self) -> None:
        pass


def _tree_bytes(p: Path) -> int:
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def candidates_stored(path: Path, profile: Any, layout: str) -> dict[str, int]:
    """Stored bytes of `path` with each candidate codec of the profile, fixed, by the same layout."""
    from acqd.codec import codec_label, codec_spec
    from acqd.daemon import frame_layout
    from acqd.storage import open_tier

    tried, _, _ = profile.codec_choice(layout, cores=os.cpu_count() or 1)
    out = {}
    for c in tried:
        lay: Any = frame_layout(profile, layout, codec_spec(c))
        lay.never_larger = False  # what the codec itself stores, even where it is larger
        with tempfile.TemporaryDirectory(prefix="acqd-bench-") as d:
            tier = open_tier("t", f"file://{d}")
            src = _Src(path)
            try:
                res = lay.write(src, path.stat().st_size, tier, "x")
            finally:
                src.file.close()
            out[codec_label(c)] = res.stored_bytes
    return out


def ship(path: Path, sidecars: tuple[Path, ...], profile: str, work: Path) -> dict[str, Any]:
    """Ship with the real daemon, restore, compare; the manifest entry and the session's record."""
    from acqd.daemon import journal_path
    from acqd.journal import Journal

    watch, dest, state = work / "acq", work / "central", work / "state"
    (watch / "s").mkdir(parents=True)
    dest.mkdir()
    for f in (path, *sidecars):
        shutil.copy2(f, watch / "s" / f.name)
    cfg = work / "acqd.yaml"
    cfg.write_text(
        f"instrument: bench\nstate_dir: {state}\nwatch:\n  - path: {watch}\n    detector: {profile}\n"
        f"    settle: 0.2s\ntiers:\n  central: {{url: 'file://{dest}'}}\n"
    )
    run = [sys.executable, "-m", "acqd"]
    r = subprocess.run([*run, "run", "--config", str(cfg), "--once"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"acqd run failed on {path.name}: {r.stderr[-2000:]}")
    doc = json.loads((dest / "bench" / "s" / "~acqd-manifest.json").read_text())
    entry = next(f for f in doc["files"] if f["source"] == f"s/{path.name}")
    out = work / "restored"
    r = subprocess.run(
        [*run, "restore", f"s/{path.name}", str(out), "--config", str(cfg)], capture_output=True, text=True
    )
    exact = r.returncode == 0 and out.read_bytes() == path.read_bytes()
    j = Journal(journal_path(state))  # the daemon has exited
    try:
        rows = j._db.execute("SELECT value FROM meta WHERE key LIKE 'codec-choice/%'").fetchall()
    finally:
        j.close()
    trials: dict[str, float] = {}
    budget = None
    chosen = None
    if entry["layout"] != "copy" and not rows:
        raise RuntimeError(f"{path.name}: no codec choice recorded in the journal")
    for (value,) in rows:
        for ch in json.loads(value)["choices"].values():
            budget, chosen = ch["budget_ns_per_byte"], ch["codec"]
            for label, n, _stored, cpu in ch["trials"]:
                trials[label] = cpu * 1e9 / max(1, n)
    note = r.stdout.strip()
    return {
        "entry": entry,
        "chosen": chosen,
        "restore_exact": exact,
        "restore_note": note,
        "ns": trials,
        "budget": budget,
    }


def run(data: Path = DATA) -> list[dict[str, Any]]:
    from acqd.profiles import load_profile, search_path

    rows = []
    for rel, side, profile_name, what in FILES:
        path = data / rel
        if not path.exists():
            print(f"skipped {rel}: not in {data}", file=sys.stderr)
            continue
        profile = load_profile(profile_name, search_path())
        with tempfile.TemporaryDirectory(prefix="acqd-bench-codecs-") as d:
            shipped = ship(path, tuple(data / s for s in side), profile_name, Path(d))
        stored_by = candidates_stored(path, profile, profile.layout)
        ns, budget = shipped["ns"], shipped["budget"] or 1e9
        within = {k: v for k, v in stored_by.items() if ns.get(k, 0.0) <= budget}
        if not within and ns:  # none within the budget: the daemon takes the cheapest (see choose_codec)
            cheapest = min((k for k in stored_by if k in ns), key=lambda k: ns[k])
            within = {cheapest: stored_by[cheapest]}
        e = shipped["entry"]
        best = min(stored_by.items(), key=lambda kv: kv[1])
        best_in = min(within.items(), key=lambda kv: kv[1]) if within else best
        rows.append(
            {
                "file": rel,
                "what": what,
                "profile": profile_name,
                "layout": e["layout"],
                "codec": shipped["chosen"] or e["codec"],
                "codec_why": e.get("codec_why"),
                "source_bytes": e["source_bytes"],
                "stored_bytes": e["stored_bytes"],
                "candidates_stored": stored_by,
                "best": best[0],
                "best_bytes": best[1],
                "best_within_budget": best_in[0],
                "best_within_budget_bytes": best_in[1],
                "budget_ns_per_byte": shipped["budget"],
                "within_10pct_of_best_within_budget": e["stored_bytes"] <= 1.10 * best_in[1],
                "within_10pct_of_best": e["stored_bytes"] <= 1.10 * best[1],
                "not_larger_than_source": e["stored_bytes"] <= e["source_bytes"],
                "restore_exact": shipped["restore_exact"],
                "restore_note": shipped["restore_note"],
            }
        )
    return rows


def human(n: float) -> str:
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def table(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    buf.write(
        "| file | profile → layout, codec chosen | source | stored | ratio | best candidate (all) "
        "| best within budget | restore |\n|---|---|---:|---:|---:|---|---|---|\n"
    )
    for r in rows:
        ratio = r["source_bytes"] / max(1, r["stored_bytes"])
        codec = r["codec"] if r["layout"] != "copy" else "byte-exact"
        restore = "byte-exact" if r["restore_exact"] else "pixels and tags"
        buf.write(
            f"| {r['what']} | {r['profile']} → {r['layout']}, {codec} | {human(r['source_bytes'])} | "
            f"{human(r['stored_bytes'])} | {ratio:.2f} | {r['best']} {human(r['best_bytes'])} | "
            f"{r['best_within_budget']} {human(r['best_within_budget_bytes'])} | {restore} |\n"
        )
    return buf.getvalue()


def main(argv: list[str]) -> None:
    data = Path(argv[0]) if argv else DATA
    rows = run(data)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"cpu_count": os.cpu_count(), "files": rows}, indent=1) + "\n")
    print(table(rows))
    bad = [r["file"] for r in rows if not (r["not_larger_than_source"] and r["within_10pct_of_best_within_budget"])]
    for r in rows:
        print(
            f"{r['file']}: stored {r['stored_bytes']} vs best within budget {r['best_within_budget_bytes']} "
            f"({r['stored_bytes'] / max(1, r['best_within_budget_bytes']):.3f}x), best of all "
            f"{r['best_bytes']} ({r['stored_bytes'] / max(1, r['best_bytes']):.3f}x), source {r['source_bytes']}"
        )
    if bad:
        print(f"NOT MET for: {', '.join(bad)}", file=sys.stderr)
        raise SystemExit(1)
