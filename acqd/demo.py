"""`acqd demo`: the daemon on an embedded default, fed by two simulated cameras, with live progress.

A simulated Gatan K3 writes MRC counting movies (frames appended over time) and a simulated
light-sheet sCMOS camera writes TIFF stacks plane by plane; acqd ships the movies as deflate TIFF and the
stacks as sharded OME-Zarr to a local folder standing in for central storage, verifies every copy and
frees the acquisition folder. No server is needed.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from acqd.config import Config
from acqd.daemon import Daemon
from acqd.errors import AcqdError
from acqd.simulate import SimSpec, simulate
from acqd.units import human_bytes
from acqd.values import Outcome

MARKER = ".acqd-demo"
CAMERAS = (
    # (watch folder, detector, spec, settle window)
    # The K3's movies complete by their MRC header (settle.format: mrc). A movie still for the window
    # between two frames (a simulated 5760x4092 frame takes ~0.7 s of CPU, several seconds on a busy
    # machine) reads as truncated while the camera has it open for writing: waited for, not
    # quarantined. A movie is released once it has also been still for the window (the profile's 5 s).
    ("k3", "gatan-k3", SimSpec(files=2, frames=4, height=4092, width=5760, seed=3), "5s"),
    # The light-sheet camera writes a stack under a hidden temporary name and renames it when done.
    ("lightsheet", "hamamatsu-orca", SimSpec(files=4, frames=24, height=1024, width=1024, seed=7), "1s"),
)


def demo_config(base: Path) -> Config:
    return Config.model_validate(
        {
            "instrument": "demo-scope",
            "state_dir": str(base / "state"),
            "watch": [
                {
                    "path": str(base / "acquisition" / name),
                    "name": name,
                    "prefix": name,
                    "detector": detector,
                    "settle": settle,
                    "placement": {"release_local": "after_verify", "compress": "zstd"},
                }
                for name, detector, _, settle in CAMERAS
            ],
            "tiers": {"central": {"url": "file://" + str(base / "central")}},
            "limits": {"inflight_bytes": "512MiB", "concurrent_files": 2, "io_threads": 2},
        }
    )


RELEASE_WAIT = 30.0  # seconds the demo waits, once every file is verified, for their releases


@dataclass
class Tally:
    files: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    quarantined: int = 0
    released: int = 0
    layouts: set[str] = field(default_factory=set)
    example: str = ""


class DemoReporter:
    def __init__(self) -> None:
        self.by_detector: dict[str, Tally] = {}

    def outcome(self, o: Outcome) -> None:
        t = self.by_detector.setdefault(o.detector, Tally())
        if o.kind == "verified":
            t.files += 1
            t.bytes_in += o.source_bytes
            t.bytes_out += o.stored_bytes
            t.layouts.add(o.layout)
            t.example = t.example or o.dest
        elif o.kind == "quarantined":
            t.quarantined += 1
        elif o.kind == "released":
            t.released += 1


def _prepare(base: Path) -> None:
    if base.exists():
        if not (base / MARKER).exists():
            raise AcqdError(f"{base} exists and is not an acqd demo folder; pick another with --dir")
        shutil.rmtree(base)
    for name, *_ in CAMERAS:
        (base / "acquisition" / name).mkdir(parents=True)
    (base / "central").mkdir()
    (base / MARKER).write_text("made by `acqd demo`; safe to delete\n")


def _table(rep: DemoReporter, written: dict[str, int], elapsed: float, final: bool = False) -> Table:
    title = "acqd demo: summary" if final else "acqd demo: two simulated cameras -> local central storage"
    t = Table(title=title)
    for col in ("camera", "written", "verified", "in", "stored", "ratio", "layout", "MB/s"):
        t.add_column(col, justify="right")
    for name, detector, spec, _ in CAMERAS:
        tl = rep.by_detector.get(detector, Tally())
        ratio = tl.bytes_in / tl.bytes_out if tl.bytes_out else 0.0
        rate = tl.bytes_in / 1e6 / elapsed if elapsed > 0 else 0.0
        t.add_row(
            f"{name} ({detector})",
            f"{written.get(name, 0)}/{spec.files}",
            str(tl.files),
            human_bytes(tl.bytes_in),
            human_bytes(tl.bytes_out),
            f"{ratio:.2f}x" if ratio else "-",
            ",".join(sorted(tl.layouts)) or "-",
            f"{rate:.0f}",
        )
    return t


def run_demo(base: Path, scale: int, rate: float, console: Console) -> int:
    base = base.resolve()
    _prepare(base)
    config = demo_config(base)
    rep = DemoReporter()
    written: dict[str, int] = {}
    done = threading.Event()
    console.print(f"cameras write to {base / 'acquisition'}; central storage is {base / 'central'}", markup=False)

    def counter(name: str) -> Callable[[Path], None]:
        def count(_: Path) -> None:
            written[name] = written.get(name, 0) + 1

        return count

    def camera(name: str, detector: str, spec: SimSpec) -> None:
        s = SimSpec(
            files=spec.files * scale,
            frames=spec.frames,
            height=spec.height,
            width=spec.width,
            seed=spec.seed,
            rate_mb_s=rate,
            sessions=2,
        )
        simulate(detector, base / "acquisition" / name, s, progress=counter(name))

    def cameras() -> None:
        """Both cameras at once, as on a facility's network, each in its own thread."""
        try:
            threads = [
                threading.Thread(target=camera, args=(name, detector, spec), name=f"camera-{name}")
                for name, detector, spec, _ in CAMERAS
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            done.set()

    async def main() -> int:
        daemon = Daemon(config, reporter=rep)
        ready = asyncio.Event()
        task = asyncio.create_task(daemon.run(install_signals=False, ready=ready))
        await ready.wait()
        t0 = time.monotonic()
        threading.Thread(target=cameras, name="cameras", daemon=True).start()
        all_verified: float | None = None
        with Live(_table(rep, written, 0.0), console=console, refresh_per_second=4, transient=True) as live:
            while not task.done():
                await asyncio.sleep(0.25)
                live.update(_table(rep, written, time.monotonic() - t0))
                verified = sum(t.files for t in rep.by_detector.values())
                released = sum(t.released for t in rep.by_detector.values())
                quarantined = sum(t.quarantined for t in rep.by_detector.values())
                # done when every file the cameras wrote is verified and released (a movie its format
                # proved complete is released once it has been still for its settle window); a
                # quarantined file never will be (it stays on the acquisition disk): then the demo
                # stops and fails. A release held longer than RELEASE_WAIT is left to a later run.
                total = sum(written.values())
                if done.is_set() and verified >= total and all_verified is None:
                    all_verified = time.monotonic()
                waited = all_verified is not None and time.monotonic() - all_verified > RELEASE_WAIT
                if done.is_set() and ((verified >= total and (released >= total or waited)) or quarantined):
                    daemon.stop()
        result = await task
        console.print(_table(rep, written, time.monotonic() - t0, final=True))
        quarantined = sum(t.quarantined for t in rep.by_detector.values())
        if quarantined:
            console.print(
                f"acqd demo: {quarantined} file(s) quarantined (see the warnings above and `acqd status`)",
                markup=False,
            )
            return 1
        return result.code

    code = asyncio.run(main())
    central = base / "central" / config.instrument
    left = sum(1 for p in (base / "acquisition").rglob("*") if p.is_file())
    zarrs = sorted(central.glob("lightsheet/*/*.zarr"))
    tiffs = sorted(central.glob("k3/*/*.tif"))
    console.print(f"files left on the acquisition disk: {left} (each released once its copy was verified)")
    console.print(f"central storage: {central}  (each session has a ~acqd-manifest.json)", markup=False)
    if tiffs:
        console.print(f"  K3 movie as deflate TIFF (RELION/cryoSPARC/MotionCor): {tiffs[0]}", markup=False)
    if zarrs:
        console.print(f"  light-sheet stack as OME-Zarr 0.5:  {zarrs[0]}", markup=False)
        console.print(f"  open it in napari:  napari --plugin napari-ome-zarr {zarrs[0]}", markup=False)
        console.print(f"  or in Python:       zarr.open_group('{zarrs[0]}')['0']", markup=False)
    me, state = invocation(), shlex.quote(str(config.state_dir))
    console.print(f"journal: {me} status --state-dir {state}", markup=False)
    console.print(
        f"restore: {me} restore session_000/movie_00000.mrc {shlex.quote(str(base))}/ --state-dir {state}",
        markup=False,
    )
    console.print(f"fixity:  {me} verify --state-dir {state}", markup=False)
    return code


def invocation() -> str:
    """How to run this acqd again, to paste from here: `acqd` when that is the one on PATH, else the
    script's path as it was run (`.venv/bin/acqd` from the clone), or this Python with `-m acqd`."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "acqd" and os.path.isfile(script):
        on_path = shutil.which("acqd")
        if on_path is not None and os.path.realpath(on_path) == os.path.realpath(script):
            return "acqd"
        return shlex.quote(script)
    return f"{shlex.quote(sys.executable)} -m acqd"
