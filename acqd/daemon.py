"""The composition root: builds every part from the config and runs them; handles signals."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acqd.config import Config
from acqd.errors import ConfigError, JournalError, PermanentError
from acqd.journal import Journal
from acqd.layouts import build_layout
from acqd.pipeline import Pipeline, Reporter, RootCtx, RunStats
from acqd.profiles import DetectorProfile, load_profile, search_path
from acqd.storage import Tier
from acqd.watcher import EventSource, is_network_fs

log = logging.getLogger("acqd")

JOURNAL_NAME = "journal.sqlite"
DRAIN_SECONDS = 30.0


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_NAME


def load_profiles(config: Config) -> dict[str, DetectorProfile]:
    dirs = search_path(config.detectors_dir)
    return {w.detector: load_profile(w.detector, dirs) for w in config.watch}


def build_tiers(config: Config) -> dict[str, Tier]:
    tiers = {}
    for name, t in config.tiers.items():
        try:
            tiers[name] = Tier(name, t.url, t.options)
        except PermanentError as exc:
            raise ConfigError(f"tiers.{name}.url: {exc}") from None
    return tiers


def build_roots(config: Config, profiles: dict[str, DetectorProfile], tiers: dict[str, Tier]) -> list[RootCtx]:
    roots = []
    for i, w in enumerate(config.watch):
        profile = profiles[w.detector]
        p = w.placement
        layout = build_layout(p.layout, p.compress, p.zstd_level, config.limits.chunk_bytes)
        events = not is_network_fs(w.path) if w.mode == "auto" else w.mode == "events"
        interval = w.scan_interval if w.scan_interval is not None else (60.0 if events else 5.0)
        roots.append(
            RootCtx(
                index=i,
                root=str(w.path).rstrip("/"),
                watch=w,
                profile=profile,
                tier=tiers[config.tier_for(w)],
                layout=layout,
                release=p.release_local == "after_verify",
                window=w.settle if w.settle is not None else profile.settle.window,
                scan_interval=interval,
                events=events,
            )
        )
    return roots


def check(config: Config) -> list[str]:
    """Everything `run` validates before it starts, without starting anything. Returns notes."""
    profiles = load_profiles(config)
    tiers = build_tiers(config)
    roots = build_roots(config, profiles, tiers)
    notes = []
    for ctx in roots:
        exists = "exists" if Path(ctx.root).is_dir() else "MISSING"
        notes.append(
            f"watch {ctx.root} ({exists}): detector {ctx.profile.name}, {'events' if ctx.events else 'polling'}"
            f" + scan every {ctx.scan_interval:g}s, settle {ctx.window:g}s -> tier {ctx.tier.name}"
            f" ({ctx.tier.url('')}), layout {ctx.layout.name}"
            f"{' + zstd' if ctx.watch.placement.compress == 'zstd' else ''},"
            f" release_local {ctx.watch.placement.release_local}"
        )
    return notes


def require_roots(roots: list[RootCtx]) -> None:
    for c in roots:
        if not os.path.isdir(c.root):
            raise ConfigError(f"watch root {c.root} does not exist or is not a folder")


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """One daemon per state directory: a second one would corrupt nothing, but would ship twice."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "acqd.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise JournalError(f"cannot use the state directory {state_dir}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise JournalError(f"another acqd (pid {other}) is running with the state directory {state_dir}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@dataclass
class RunResult:
    code: int
    stats: RunStats
    pending: int


class Daemon:
    """Owns the executors, the journal, the pipeline and the watchers for one run."""

    def __init__(
        self,
        config: Config,
        *,
        once: bool = False,
        retry_for: float | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.config = config
        self.once = once
        self.retry_for = retry_for
        self.reporter = reporter
        self.pipeline: Pipeline | None = None

    async def run(self, install_signals: bool = True, ready: asyncio.Event | None = None) -> RunResult:
        config = self.config
        profiles = load_profiles(config)
        tiers = build_tiers(config)
        roots = build_roots(config, profiles, tiers)
        require_roots(roots)
        with state_lock(config.state_dir):
            io = ThreadPoolExecutor(config.limits.io_threads, thread_name_prefix="acqd-io")
            jexec = ThreadPoolExecutor(1, thread_name_prefix="acqd-journal")
            loop = asyncio.get_running_loop()
            journal = await loop.run_in_executor(jexec, Journal, journal_path(config.state_dir))
            events: EventSource | None = None
            try:
                pipeline = Pipeline(
                    instrument=config.instrument,
                    roots=roots,
                    journal=journal,
                    io=io,
                    jexec=jexec,
                    limits=config.limits,
                    reporter=self.reporter,
                    once=self.once,
                    retry_for=self.retry_for,
                )
                self.pipeline = pipeline
                watched = [(c.index, c.root) for c in roots if c.events]
                if watched:
                    events = EventSource(watched, pipeline.hint, pipeline.request_rescan_threadsafe)
                if install_signals:
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        loop.add_signal_handler(sig, self._on_stop, sig)
                task = asyncio.create_task(pipeline.run(), name="pipeline")
                if events is not None:
                    await loop.run_in_executor(None, events.start)
                log.info("acqd started: %d watch root(s), instrument %s", len(roots), config.instrument)
                if ready is not None:
                    ready.set()
                await self._drain(task, pipeline)
                await pipeline.flush_manifests()
                pending = len(await loop.run_in_executor(jexec, journal.pending))
                code = pipeline.outcome_code
                if self.once and pending and code == 0:
                    code = 1
                return RunResult(code, pipeline.stats, pending)
            finally:
                if install_signals:
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        loop.remove_signal_handler(sig)
                if events is not None:
                    events.stop()
                io.shutdown(wait=True, cancel_futures=True)
                await loop.run_in_executor(jexec, journal.close)
                jexec.shutdown(wait=True)

    async def _drain(self, task: asyncio.Task[None], pipeline: Pipeline) -> None:
        """Wait for the pipeline; after a stop request give in-flight files a deadline."""
        stop_wait = asyncio.create_task(pipeline.stopping.wait())
        done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            stop_wait.cancel()
            task.result()
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=DRAIN_SECONDS)
        except TimeoutError:
            log.warning(
                "drain deadline reached: %d file(s) left in flight for the next start",
                len(pipeline.in_flight),
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_stop(self, sig: signal.Signals) -> None:
        log.info("%s: stopping (finishing files in flight, taking no new ones)", sig.name)
        if self.pipeline is not None:
            self.pipeline.stop()

    def stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()


def summary(journal: Journal) -> dict[str, Any]:
    counts = journal.counts()
    return {
        "states": counts,
        "stored_bytes": journal.stored_bytes(),
        "quarantined": [{"path": r.relpath, "reason": r.reason} for r in journal.quarantined()],
    }
