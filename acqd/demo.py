"""`acqd demo`: the daemon on an embedded default, fed by a simulated camera, with live progress."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from acqd.config import Config
from acqd.daemon import Daemon, journal_path, summary
from acqd.errors import AcqdError
from acqd.journal import Journal
from acqd.pipeline import Pipeline
from acqd.simulate import SimSpec, simulate_raw
from acqd.units import human_bytes

MARKER = ".acqd-demo"


def demo_config(base: Path) -> Config:
    return Config.model_validate(
        {
            "instrument": "demo-scope",
            "state_dir": str(base / "state"),
            "watch": [
                {
                    "path": str(base / "acquisition"),
                    "detector": "generic",
                    "settle": "1s",
                    "placement": {"compress": "zstd", "zstd_level": 3, "release_local": "after_verify"},
                }
            ],
            "tiers": {"central": {"url": "file://" + str(base / "central")}},
            "limits": {"inflight_bytes": "256MiB", "concurrent_files": 2, "io_threads": 2},
        }
    )


def _prepare(base: Path) -> None:
    if base.exists():
        if not (base / MARKER).exists():
            raise AcqdError(f"{base} exists and is not an acqd demo folder; pick another with --dir")
        shutil.rmtree(base)
    for sub in ("acquisition", "central", "state"):
        (base / sub).mkdir(parents=True)
    (base / MARKER).write_text("made by `acqd demo`; safe to delete\n")


def _progress(p: Pipeline | None, written: int, total: int, elapsed: float) -> Table:
    t = Table(title="acqd demo: simulated sCMOS camera -> local central storage", expand=False)
    for col in ("camera wrote", "verified", "in", "stored", "ratio", "MB/s", "in flight", "quarantined"):
        t.add_column(col, justify="right")
    if p is None:
        t.add_row(f"{written}/{total}", "0", "0", "0", "-", "-", "0", "0")
        return t
    s = p.stats
    ratio = s.bytes_in / s.bytes_out if s.bytes_out else 0.0
    rate = s.bytes_in / 1e6 / elapsed if elapsed > 0 else 0.0
    t.add_row(
        f"{written}/{total}",
        str(s.verified),
        human_bytes(s.bytes_in),
        human_bytes(s.bytes_out),
        f"{ratio:.2f}x" if ratio else "-",
        f"{rate:.0f}",
        str(len(p.in_flight)),
        str(s.quarantined),
    )
    return t


def run_demo(base: Path, files: int, rate: float, console: Console) -> int:
    base = base.resolve()
    _prepare(base)
    config = demo_config(base)
    spec = SimSpec(files=files, frames=24, height=512, width=512, sessions=2, rate_mb_s=rate, seed=42)
    console.print(f"simulated camera -> {base / 'acquisition'}   central storage -> {base / 'central'}")
    written: list[Path] = []
    camera_done = threading.Event()

    def camera() -> None:
        try:
            simulate_raw(base / "acquisition", spec, progress=written.append)
        finally:
            camera_done.set()

    async def main() -> int:
        daemon = Daemon(config, once=False)
        ready = asyncio.Event()
        task = asyncio.create_task(daemon.run(install_signals=False, ready=ready))
        await ready.wait()
        thread = threading.Thread(target=camera, name="camera", daemon=True)
        t0 = time.monotonic()
        thread.start()
        with Live(_progress(None, 0, files, 0), console=console, refresh_per_second=8) as live:
            while True:
                await asyncio.sleep(0.125)
                p = daemon.pipeline
                live.update(_progress(p, len(written), files, time.monotonic() - t0))
                if task.done():
                    break
                if camera_done.is_set() and p is not None and p.stats.verified + p.stats.quarantined >= len(written):
                    daemon.stop()
        result = await task
        return result.code

    code = asyncio.run(main())
    j = Journal(journal_path(config.state_dir), readonly=True)
    try:
        s = summary(j)
    finally:
        j.close()
    console.print()
    t = Table(title="summary (from the journal)")
    for col in ("state", "files", "bytes"):
        t.add_column(col, justify="right")
    for state, c in s["states"].items():
        t.add_row(state, str(c["files"]), human_bytes(c["bytes"]))
    console.print(t)
    central = base / "central" / config.instrument
    left = sum(1 for p in (base / "acquisition").rglob("*") if p.is_file())
    console.print(f"central copies: {central}  (each session has an acqd-manifest.json)", markup=False)
    console.print(f"files left on the acquisition disk: {left} (released after verification)")
    console.print(
        "restore one:  acqd restore session_000/stack_00000.raw /tmp/stack.raw "
        f"--state-dir {config.state_dir} --dest {base / 'central'}",
        markup=False,
    )
    console.print(f"journal:      acqd status --state-dir {config.state_dir}", markup=False)
    return code
