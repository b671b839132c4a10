"""The command line. Thin: parse, call the daemon layer, print. Errors are one line, not a traceback.

Imports are lazy: `acqd --help` and `acqd status` load neither the daemon nor numpy, zarr or pydantic.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat as stat_mod
import sys
import time
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from acqd import __version__
from acqd.errors import EX_CONFIG, AcqdError, ClaimError, ConfigError
from acqd.journal import Journal, journal_path
from acqd.states import DONE

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from rich.console import Console
    from rich.table import Table as RichTable

    from acqd.config import Config
    from acqd.journal import CopyRow, FileRow
    from acqd.profiles import DetectorProfile
    from acqd.storage.base import Tier

EX_USAGE = 2  # a bad option or argument (click's convention)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help=(
        "acqd: takes every file a microscope camera finishes off the acquisition disk, stores it on central "
        "storage, verifies the copy, and (if configured) frees the local disk. "
        "Start with `acqd demo`, then `acqd run --watch DIR --dest DIR --once`."
    ),
)


def make_console(stderr: bool = False) -> Console:
    """A rich Console; output that is not a terminal (a pipe, a file) is not cut to 80 columns."""
    from rich.console import Console

    tty = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if tty else 1000)


class _LazyConsole:
    """A Console made on first use (importing rich costs a tenth of a second)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            self._console = make_console(self._stderr)
        return getattr(self._console, name)


err = cast("Console", _LazyConsole(stderr=True))
out = cast("Console", _LazyConsole(stderr=False))


def Table(*args: Any, **kwargs: Any) -> RichTable:  # rich's Table, imported on first use
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


def human_bytes(n: float) -> str:
    from acqd.units import human_bytes as hb

    return hb(n)


def load_config(path: Path) -> Config:
    from acqd.config import load_config as load

    return load(path)


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="acqd.yaml", show_default=False)]
StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="state directory of a quick-form run (default: ~/.local/state/acqd)"),
]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "acqd"


def usage(message: str, option: str | None = None) -> Exception:
    """A bad option or argument: one line, exit 2."""
    return typer.BadParameter(message, param_hint=option)


def _duration(option: str, text: str) -> float:
    from acqd.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise usage(str(exc), option) from None


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        text = str(exc)
        if "\n" in text:
            err.print(f"acqd: configuration error:\n{text}", markup=False)
        else:
            err.print(f"acqd: configuration error: {text}", markup=False)
        raise typer.Exit(EX_CONFIG) from None
    except ClaimError as exc:  # the destination is another daemon's: systemd must not restart us
        err.print(f"acqd: {exc}", markup=False)
        raise typer.Exit(EX_CONFIG) from None
    except AcqdError as exc:
        err.print(f"acqd: {exc}", markup=False)
        raise typer.Exit(1) from None
    except OSError as exc:  # a file or folder named on the command line that cannot be used
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"acqd: {exc.strerror or exc}{where}", markup=False)
        raise typer.Exit(1) from None


def _setup_logging(verbose: bool) -> None:
    """Log records go through a queue to a writer thread: a slow stderr or journald never blocks the
    event loop."""
    import atexit
    import logging

    from acqd.logs import queued_handler

    # the formats use none of these: not gathered for each record (the logging documentation's
    # "Optimization": no stack walk for the caller, no thread or process lookup; a line per file adds up)
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    setattr(logging, "logAsyncioTasks", False)  # noqa: B010 (Python 3.12 and later)
    queued, listener = queued_handler(sys.stderr, journald=bool(os.environ.get("JOURNAL_STREAM")))
    listener.start()
    atexit.register(listener.stop)
    root = logging.getLogger()
    root.handlers[:] = [queued]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("watchdog", "fsspec", "numcodecs", "zarr", "aiomqtt", "asyncssh"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # tifffile's own lines name neither the file nor what acqd did about it (a damaged TIFF is
    # quarantined, or stored byte-exact, with acqd's own line saying why): with -v only, as detail
    logging.getLogger("tifffile").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


#: where acqd.yaml says what a quick-form option says
_IN_CONFIG = {
    "state_dir": "state_dir",
    "instrument": "instrument",
    "detector": "watch: detector",
    "release": "watch: placement.release_local",
    "compress": "watch: placement.compress",
}


def _config_alone(config: Path | None, **quick: object) -> None:
    """A quick-form option beside --config would be passed over in silence: a usage error instead."""
    names = [k for k, v in quick.items() if v is not None]
    given = [f"--{k.replace('_', '-')}" for k in names]
    if config is not None and given:
        keys = "; ".join(_IN_CONFIG.get(k, k) for k in names)
        raise usage(
            f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for the quick form: with --config, "
            f"the configuration says it ({keys}); give one or the other",
            given[0],
        )


def running_pid(state_dir: Path) -> int | None:
    """The pid of the acqd daemon running with this state directory, or None: the pid its lock file
    names, if that process is alive and is acqd. A look only: the lock is not taken, not even for
    an instant (a daemon starting then would take that for another one running)."""
    lock = state_dir / "acqd.lock"
    try:
        pid = int(lock.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    if b"acqd" not in cmdline:
        return None
    # the lock file is never emptied, and its pid may be another acqd's now (one on another state
    # directory, an `acqd verify`): the daemon holds this very file open for its whole life
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # another user's process: its name is all there is to go by
        return pid
    mine = os.path.realpath(lock)
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == mine:
                return pid
    return None


def _state_dir(config: Path | None, state_dir: Path | None) -> Path:
    _config_alone(config, state_dir=state_dir)
    if config is not None:
        return load_config(config).state_dir
    return state_dir or default_state_dir()


def _instrument_default() -> str:
    name = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in socket.gethostname())[:63]
    return name.strip("-.") or "acqd"


def _version(value: bool) -> None:
    if value:
        print(f"acqd {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Options that come before the command (the help text is the Typer's)."""


@app.command()
def run(
    ctx: typer.Context,
    config: ConfigOpt = None,
    watch: Annotated[Path | None, typer.Option(help="quick form: the acquisition folder to watch")] = None,
    dest: Annotated[str | None, typer.Option(help="quick form: central storage (a folder or fsspec URL)")] = None,
    detector: Annotated[str, typer.Option(help="quick form: detector profile")] = "generic",
    state_dir: StateOpt = None,
    instrument: Annotated[
        str | None, typer.Option(help="quick form: first folder level at the destination (default: hostname)")
    ] = None,
    release: Annotated[bool, typer.Option(help="quick form: delete local files once verified")] = False,
    compress: Annotated[str, typer.Option(help="quick form: 'none' or 'zstd' (copy layout)")] = "none",
    settle: Annotated[str | None, typer.Option(help="override the settle window, e.g. '2s'")] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="ship what is there, wait until nothing is pending, print a summary, exit"),
    ] = False,
    retry_for: Annotated[
        str,
        typer.Option(
            help="with --once: give up on failing files, and on files still being written, after this long "
            "(exit 1; they stay pending for the next run)"
        ),
    ] = "5m",
    json_out: Annotated[bool, typer.Option("--json", help="with --once: print the summary as JSON")] = False,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="take over the destination prefix another journal claimed (see `acqd adopt --help`) before running",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the daemon (systemd runs `acqd run --config /etc/acqd/acqd.yaml`)."""
    window = _duration("--settle", settle) if settle is not None else None
    if window is not None:
        from acqd.units import check_settle

        try:
            check_settle(window)
        except ValueError as exc:
            raise usage(str(exc), "--settle") from None
    give_up = _duration("--retry-for", retry_for)
    if compress not in ("none", "zstd"):
        raise usage(f"must be 'none' or 'zstd', not {compress!r}", "--compress")
    if json_out and not once:
        raise usage("--json prints the summary of a --once run (a daemon has no summary: see `acqd status`)", "--json")
    _setup_logging(verbose)
    import asyncio

    from acqd.daemon import Daemon, summary

    made: list[Path] = []
    with _unmade_if_refused(made), _errors():
        quick_defaults = ("detector", "release", "compress")  # said when given beside --config
        given = {n for n in quick_defaults if getattr(ctx.get_parameter_source(n), "name", "") != "DEFAULT"}
        cfg = _build_config(config, watch, dest, detector, state_dir, instrument, release, compress, given, made)
        if window is not None:
            cfg = cfg.model_copy(update={"watch": tuple(w.model_copy(update={"settle": window}) for w in cfg.watch)})
        daemon = Daemon(cfg, once=once, retry_for=give_up if once else None, config_path=config, adopt=adopt)
        try:
            result = asyncio.run(daemon.run())
        except ConfigError as exc:  # the quick form's own option, not a key of a file the user never wrote
            if config is None and str(exc).startswith("watch.0.detector ("):
                raise ConfigError("--detector: " + str(exc).split("): ", 1)[1]) from None
            raise
        if once:
            j = _read_journal(journal_path(cfg.state_dir))
            try:
                s = summary(j)
            finally:
                j.close()
            run_stats = {
                "verified": result.stats.verified,
                "quarantined": result.stats.quarantined,
                "released": result.stats.released,
                "retries": result.stats.retries,
                "bytes_in": result.stats.bytes_in,
                "bytes_out": result.stats.bytes_out,
                "pending": result.pending,
            }
            if json_out:
                print(json.dumps({"run": run_stats, "journal": s}, indent=2))
            else:
                _print_run(run_stats, s)
                _detector_hint(cfg, result.stats)
        if daemon.stuck_io:
            # the interpreter's exit would wait for the blocked storage threads for ever; the journal
            # is closed and every state is durable, so leave them behind
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(result.code)
        raise typer.Exit(result.code)


def _build_config(
    config: Path | None,
    watch: Path | None,
    dest: str | None,
    detector: str,
    state_dir: Path | None,
    instrument: str | None,
    release: bool,
    compress: str,
    given: Collection[str] = (),
    made: list[Path] | None = None,
) -> Config:
    """The configuration of --config, or of the quick form (whose --dest folder, made when missing,
    is appended to `made`)."""
    from acqd.config import make_quick_dest, quick_config

    if config is not None:
        if watch is not None or dest is not None:
            raise usage("use either --config or the quick form (--watch and --dest), not both")
        defaulted = {"detector": detector, "release": release, "compress": compress}
        _config_alone(
            config, state_dir=state_dir, instrument=instrument, **{n: v for n, v in defaulted.items() if n in given}
        )
        return load_config(config)
    if watch is None or dest is None:
        raise usage("give --config FILE, or --watch DIR and --dest URL")
    folder = make_quick_dest(dest)
    if folder is not None and made is not None:
        made.append(folder)
    try:
        return quick_config(
            watch,
            dest,
            detector,
            state_dir or default_state_dir(),
            instrument or _instrument_default(),
            release=release,
            compress=compress,
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(_validation_line(exc)) from None


@contextlib.contextmanager
def _unmade_if_refused(made: list[Path]) -> Iterator[None]:
    """A quick-form `--dest` folder this command made is removed again when the command fails while
    the folder is still empty (a configuration refused, an unknown detector, a missing watch folder,
    an adopt refused): no folder is left behind by a refused run. A folder holding anything (acqd's
    claim, a copy) is never touched."""
    ok = False
    try:
        yield
        ok = True
    except (typer.Exit, SystemExit) as exc:
        ok = (exc.exit_code if isinstance(exc, typer.Exit) else exc.code) in (0, None)
        raise
    finally:
        if not ok:
            for folder in made:
                with contextlib.suppress(OSError):  # not empty: kept
                    folder.rmdir()


def _validation_line(exc: ValueError) -> str:
    """pydantic's multi-line report as one line per error, without its URLs."""
    from acqd.yamlfile import wording

    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for e in errors():
        where = ".".join(str(p) for p in e.get("loc", ()))
        lines.append(f"{where}: {wording(e)}" if where else wording(e))
    return "; ".join(lines)


def _print_run(run_stats: dict[str, int], s: dict[str, Any]) -> None:
    ratio = run_stats["bytes_in"] / run_stats["bytes_out"] if run_stats["bytes_out"] else 0.0
    print(
        f"this run: {run_stats['verified']} verified ({human_bytes(run_stats['bytes_in'])} in, "
        f"{human_bytes(run_stats['bytes_out'])} stored, ratio {ratio:.2f}), {run_stats['quarantined']} quarantined, "
        f"{run_stats['released']} released, {run_stats['retries']} retries, {run_stats['pending']} pending"
    )
    _print_states(s)


def _detector_hint(cfg: Config, stats: Any) -> None:
    """Camera files stored byte-exact by a run that stored no frames: the detector profile took none
    of them (the quick form's `generic` takes none; another camera's profile other globs)."""
    copied = stats.frame_formats_copied
    if stats.framed or not copied:
        return
    from acqd.profiles import available, search_path

    detectors = sorted({w.detector for w in cfg.watch})
    cameras = [n for n in available(search_path(cfg.detectors_dir)) if n not in ("generic", *detectors)]
    what = ", ".join(f"{n} {ext}" for ext, n in sorted(copied.items()))
    print(
        f"hint: {what} file(s) were stored byte-exact, none as frames: detector {', '.join(detectors)} did not "
        f"take them. A camera's profile compresses its movies losslessly: --detector {', '.join(cameras)} "
        "(`detector:` in acqd.yaml)",
        file=sys.stderr,
        flush=True,
    )


def _read_journal(path: Path) -> Journal:
    """The journal, read-only, for a command: one that is empty, being made or another program's is
    said in one line (`Journal.check_schema`)."""
    from acqd.journal import Journal

    j = Journal(path, readonly=True)
    try:
        j.check_schema()
    except BaseException:
        j.close()
        raise
    return j


def _print_states(s: dict[str, Any]) -> None:
    """Files and bytes per state, as plain aligned text (`run --once` prints it at every run: rich's
    import alone would add a tenth of a second to each)."""
    from acqd.logs import one_line

    rows = [("state", "files", "bytes")]
    for state in ("seen", "complete", "stored", "verified", "released", "purged", "quarantined", "vanished"):
        c = s["states"].get(state)
        if c:
            rows.append((state, str(c["files"]), human_bytes(c["bytes"])))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["journal" if len(rows) > 1 else "journal: no files yet"]
    if len(rows) > 1:
        lines += [f"  {a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}" for a, b, c in rows]
    earlier = (s["states"].get("verified") or {}).get("earlier_versions", 0)
    if earlier:  # verified copies of versions since written over: not waiting for a release
        lines.append(
            f"  of the verified: {earlier} earlier version(s) of files written again since (their copies kept, "
            "nothing to release: `acqd restore --version N`)"
        )
    for tier, op, url, since in s.get("storage_stalled") or ():  # the daemon says it once they pass 2 minutes
        lines.append(
            f"  storage: a {op} of {url} on tier {tier} under way since {_iso(since)} (a slow or stalled server)"
        )
    incomplete = s.get("incomplete") or {}
    if incomplete:  # found, not complete yet: why (the daemon's view, every 5 s)
        lines.append(f"  not complete yet: {sum(incomplete.values())} file(s):")
        lines += [f"    {n} {why}" for why, n in sorted(incomplete.items(), key=lambda x: -x[1])]
    waiting = s.get("release_waiting") or {}
    if waiting:  # verified, to be removed from the acquisition disk, and not yet: why
        lines.append(f"  release waiting: {sum(waiting.values())} verified file(s), not removed yet:")
        lines += [f"    {n} {why}" for why, n in sorted(waiting.items(), key=lambda x: -x[1])]
    # each with its watch root: two roots can hold the same path
    quarantined = s["quarantined"]
    lines += [f"  quarantined: {q['path']!r} in {q['root']}: {one_line(q['reason'])}" for q in quarantined[:20]]
    if len(quarantined) > 20:
        lines.append(f"  quarantined: {len(quarantined) - 20} more file(s) (`acqd status --json` lists all)")
    for root, rels in (s.get("left_aside") or {}).items():  # as the daemon's last whole scan of the root found them
        lines += [
            f"  left aside: {rel!r} in {root}: under a release's hidden name, which no release accounts for (the "
            "log says what the journal knows of it): rename it back to have it shipped"
            for rel in rels[:20]
        ]
    failed = s.get("release_failed", [])
    lines += [
        f"  release failed: {f['path']!r} in {f['root']}: {one_line(f['reason'])} (kept; tried again at the next scan)"
        for f in failed[:20]
    ]
    if len(failed) > 20:
        lines.append(f"  release failed: {len(failed) - 20} more file(s) (`acqd status --json` lists all)")
    lines += [
        f"  kept, not verified: {k['path']!r} (version {k['version']}) in {k['root']}: {one_line(k['reason'])}"
        for k in s.get("kept_unverified", [])[:20]
    ]
    if len(s.get("kept_unverified", [])) > 20:
        lines.append(f"  kept, not verified: {len(s['kept_unverified']) - 20} more (`acqd status --json` lists all)")
    print("\n".join(lines), flush=True)


@app.command()
def status(
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Files and bytes per state, from the journal (works while the daemon runs)."""
    from acqd.journal import activity, last_sweep_result, summary

    with _errors():
        sd = _state_dir(config, state_dir)
        j = _read_journal(journal_path(sd))
        try:
            s = summary(j)
            s.update(activity(j))
            clock = _clock_doc(j)
            swept = last_sweep_result(j)
        finally:
            j.close()
    if clock is not None:
        s["retention_clock"] = clock
    if swept is not None:
        s["retention_last_sweep"] = swept
    pid = running_pid(sd)
    s["daemon"] = {"running": pid is not None, "pid": pid}
    if json_out:
        out.print_json(json.dumps(s))
    else:
        started = f", last started {_at(s['last_start'])}" if s["last_start"] is not None else ""
        out.print(
            f"acqd is running (pid {pid}){started.replace(', last started', ', started')}"
            if pid is not None
            else f"acqd is not running{started}: what follows is as it last saw it",
            markup=False,
        )
        for root, st in s["watch_roots"].items():  # as the running daemon last saw them
            if not st["up"]:
                since = datetime.fromtimestamp(st["since"], UTC).strftime("%Y-%m-%d %H:%M:%SZ")
                why = st.get("why") or "is missing"  # a journal of a release before "why" says missing
                out.print(f"watch root {root}: WAITING since {since}: it {why}", markup=False)
        pace = s.get("pace")
        if pace and pace["mode"] != "normal":  # as the running daemon last decided
            since = datetime.fromtimestamp(pace["since"], UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            what = (
                f"backing off for the camera, {pace['slots']} file(s) at once"
                if pace["mode"] == "backoff"
                else "nearly full, shipping at full speed"
            )
            out.print(f"acquisition disk: {what} since {since} ({pace['why']})", markup=False)
        _print_states(s)
        _print_activity(s)
        _print_clock(clock)
        _print_sweep(swept)
        if "catalog" in s:
            _print_catalog(s["catalog"])


def _at(ts: float) -> str:
    """A journal time as UTC, with how long ago: '2026-12-06 02:15:43Z (3 min ago)'."""
    ago = max(0.0, time.time() - ts)
    since = f"{ago:.0f} s" if ago < 120 else f"{ago / 60:.0f} min" if ago < 7200 else f"{ago / 3600:.1f} h"
    return f"{datetime.fromtimestamp(ts, UTC).strftime('%Y-%m-%d %H:%M:%SZ')} ({since} ago)"


def _print_activity(s: dict[str, Any]) -> None:
    """Each tier's verified copies, and the files failing and retried with their last error."""
    from acqd.logs import one_line

    for name, t in s["tiers"].items():
        ratio = t["source_bytes"] / t["stored_bytes"] if t["stored_bytes"] else 0.0
        last = f", the last verified {_at(t['last_verified'])}" if t["last_verified"] is not None else ""
        where = f" ({t['url']})" if t["url"] else ""
        print(
            f"tier {name}{where}: {t['copies']} verified cop{'y' if t['copies'] == 1 else 'ies'}, "
            f"{human_bytes(t['source_bytes'])} stored as {human_bytes(t['stored_bytes'])} (ratio {ratio:.2f}){last}"
        )
    r = s["retrying"]
    if r["files"]:
        print(f"retrying: {r['files']} file(s) failed and are tried again; waiting longest:")
        for f in r["oldest"]:
            print(f"  {f['path']!r}: {f['attempts']} attempt(s) since {_at(f['since'])}: {one_line(f['reason'] or '')}")
    sys.stdout.flush()


def _print_catalog(c: dict[str, Any]) -> None:
    """One line: what waits for the catalog, and how the publisher last fared."""
    st = c.get("status") or {}
    parts = [f"catalog: {c['depth']} record(s) in the outbox (cap {c['cap']})"]
    if c["resync_since"] is not None:
        full = c["depth"] >= c["cap"]
        parts.append("FULL, resync from the journal due" if full else "resync from the journal due")
    if st.get("last_ok"):
        parts.append(f"last published {_iso(st['last_ok'])}")
    parts.append(f"{st.get('published_total', 0)} row(s) published")
    if st.get("last_error"):
        parts.append(f"last error: {st['last_error']}")
    out.print("; ".join(parts), markup=False)


@app.command("check")
def check_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="acqd.yaml to validate")],
    strict: Annotated[
        bool,
        typer.Option("--strict", help="exit 1 on warnings too: a missing watch folder, a tier not writable"),
    ] = False,
    probe: Annotated[
        bool, typer.Option(help="write, read back and delete a small temporary object on each tier")
    ] = True,
) -> None:
    """Validate a configuration exactly as `run` does (exit 78 if `run` would refuse it), and warn about
    what `run` would wait on: a missing watch folder, a tier it cannot write to."""
    from acqd.daemon import check

    with _errors():
        cfg = load_config(config)
        report = check(cfg, probe=probe)
    verdict = f"OK, {len(report.warnings)} warning(s)" if report.warnings else "OK"
    out.print(f"{config}: {verdict} (instrument {cfg.instrument}, state {cfg.state_dir})", markup=False)
    for n in report.notes:
        out.print(f"  {n}", markup=False)
    for w in report.warnings:
        err.print(f"acqd: warning: {w}", markup=False)
    raise typer.Exit(1 if strict and report.warnings else 0)


@app.command()
def adopt(
    config: ConfigOpt = None,
    watch: Annotated[Path | None, typer.Option(help="quick form: the acquisition folder")] = None,
    dest: Annotated[str | None, typer.Option(help="quick form: central storage (a folder or fsspec URL)")] = None,
    state_dir: StateOpt = None,
    instrument: Annotated[str | None, typer.Option(help="quick form: the instrument name")] = None,
) -> None:
    """Take over this instrument's destination prefix on purpose: after a lost or replaced journal,
    a new state folder, or a new acquisition PC. The prefix is claimed for this machine and journal
    first (a daemon still running elsewhere on that prefix stops at its next commit); then every file
    the session manifests there record is imported into this journal as a verified copy (so nothing
    stored is shipped over; a file that changed since becomes a new version with a name of its own).
    Stopped half way, run it again: the journal is refused by `run` until an adopt has finished.
    Exit 78 if the configuration is bad."""
    from acqd.daemon import adopt_command

    _setup_logging(False)
    made: list[Path] = []
    with _unmade_if_refused(made), _errors():
        cfg = _build_config(config, watch, dest, "generic", state_dir, instrument, False, "none", made=made)
        counts = adopt_command(cfg)
    skipped = f", {counts['skipped']} manifest(s) or entries skipped (the log says why)" if counts["skipped"] else ""
    out.print(
        f"adopted {counts['files']} stored file(s) from {counts['manifests']} manifest(s){skipped}; "
        f"{cfg.instrument} is now claimed by this journal ({cfg.state_dir})",
        markup=False,
    )


def _open_for_reading(
    config: Path | None, state_dir: Path | None, dest: str | None = None
) -> tuple[Config | None, Journal]:
    _config_alone(config, state_dir=state_dir, dest=dest)
    cfg = load_config(config) if config is not None else None
    sd = cfg.state_dir if cfg is not None else (state_dir or default_state_dir())
    return cfg, _read_journal(journal_path(sd))


@app.command()
def restore(
    source_path: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE_PATH",
            help="the file's path: relative to its watch root, absolute, or relative to the current folder",
        ),
    ],
    out_arg: Annotated[
        str,
        typer.Argument(
            metavar="OUT",
            help="where to write the restored file (a folder, existing or ending in '/': under the file's own name)",
        ),
    ],
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    dest: Annotated[
        str | None, typer.Option(help="quick form: where the file was shipped (default: what the journal recorded)")
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="a specific version, 1 or more (default: the latest shipped)", min=1)
    ] = None,
    into_watch_root: Annotated[
        bool,
        typer.Option(
            "--into-watch-root",
            help="allow OUT inside a watch root: acqd then ships the restored file again as a new version and,"
            " with release on, frees it from there",
        ),
    ] = False,
) -> None:
    """Write a stored file back in its source form and check it against the journal's checksum.
    OUT inside a watch folder is refused unless --into-watch-root: the running daemon would take
    the restored file for a new one, ship it again and (with release on) delete it from there."""
    out_path = Path(out_arg)
    # `restore X /tmp/new/`: a folder, made once the file is found
    make = out_arg.endswith(("/", os.sep)) and not out_path.is_dir()
    if make and (out_path.exists() or out_path.is_symlink()):
        raise usage(f"{out_path} is not a folder", "OUT")
    into_folder = make or out_path.is_dir()  # `acqd restore X /tmp/out/`: the file under its own name there
    if (make or not into_folder) and not out_path.parent.is_dir():
        raise usage(f"the folder {out_path.parent} does not exist", "OUT")
    from acqd.fixity import Tiers, restore_copy, stale_restores

    with _errors():
        cfg, j = _open_for_reading(config, state_dir, dest)
        try:
            source_path = _from_here(j, source_path)
            try:
                row, copy = _find_copy(j, source_path, version)
                lost = False
            except AcqdError as none:
                # no verified copy: one recorded lost (`acqd verify` found it missing or damaged once: a
                # share away, a sync in progress) is tried, restored only if its content's checksum is
                # the journal's now; otherwise what was said stands
                found = _lost_copy(j, source_path, version)
                if found is None:
                    raise none from None
                row, copy = found
                lost = True
            versions = sorted({r.version for r in j.find_versions(row.relpath, row.root) if r.state in DONE})
            folder = out_path
            if into_folder:
                out_path = out_path / os.path.basename(row.relpath)
            watched = _watch_root_of(out_path, [*j.roots(), *(str(w.path) for w in (cfg.watch if cfg else []))])
            if watched is not None and not into_watch_root:
                raise usage(
                    f"{out_path} lies in the watch folder {watched}: acqd would ship the restored file again as a"
                    " new version and, with release on, delete it from there; restore it elsewhere, or pass"
                    " --into-watch-root if that is what you want",
                    "OUT",
                )
            if make:
                folder.mkdir()
            tiers = Tiers(cfg, dest, j)
        finally:
            j.close()
        for left in stale_restores(out_path):
            err.print(f"acqd: removed {left}, the temporary of a restore that was cut short", markup=False)
        try:
            checksum = restore_copy(tiers.get(copy.tier), copy, out_path, tiers.chunk, mtime_ns=row.identity.mtime_ns)
        except AcqdError as exc:
            if lost:
                raise AcqdError(
                    f"no verified copy of {source_path!r}: its copy on tier {copy.tier}, recorded lost, was "
                    f"tried: {exc}"
                ) from None
            raise
        finally:
            tiers.close()
    from acqd.layouts import restore_verdict

    out.print(
        f"restored {row.relpath!r} (version {row.version}) to {out_path}: {copy.checksum} {restore_verdict(checksum)}",
        markup=False,
    )
    if lost:
        out.print(
            f"  note: this copy (tier {copy.tier}) is recorded lost in the journal (`acqd verify` found it missing or "
            "damaged once); it reads back whole now and its content is the one shipped. The journal still says "
            "lost: retention and releases do not count it",
            markup=False,
        )
    if len(versions) > 1:  # a file changed after it was shipped (or written in parts with long pauses)
        out.print(
            f"  note: versions {', '.join(map(str, versions))} of this path are stored; this is version "
            f"{row.version}. Another: --version N",
            markup=False,
        )


def _watch_root_of(out_path: Path, roots: list[str]) -> str | None:
    """The watch root OUT would lie in (symlinks resolved on both sides), or None."""
    where = os.path.realpath(out_path.parent)
    for r in roots:
        real = os.path.realpath(r)
        if where == real or where.startswith(real.rstrip("/") + "/"):
            return r
    return None


def _why_none(j: Journal, rel: str, root: str | None) -> str:
    """What the journal says of a file that has no verified copy: its current state and reason."""
    rows = j.find_versions(rel, root)
    if not rows:
        named = j.paths_named(rel.rpartition("/")[2])
        return (
            f" (acqd has never seen a file of that path{'; files of that name: ' + ', '.join(named) if named else ''})"
        )
    last = max(rows, key=lambda r: r.version)
    where = f"{last.root.rstrip('/')}/{last.relpath}"
    reason = f": {last.reason}" if last.reason else ""
    if last.state.value == "quarantined":
        return f"; {where} (version {last.version}) is quarantined{reason} (acqd leaves such a file at its source)"
    return f"; {where} (version {last.version}) is {last.state.value}{reason}"


def _from_here(j: Journal, source_path: str) -> str:
    """A relative SOURCE_PATH that names a path below a watch root from the current folder (`acqd
    restore W/sess1/a.tif` typed beside the watch root W, or from inside it) and no file relative to a
    watch root, taken as that absolute path; any other as it is (relative to its watch root). One
    that names a file both ways, two different files, is refused: restoring either, unasked, would
    hand back the wrong file without a word."""
    if source_path.startswith("/"):
        return source_path
    here = os.path.abspath(source_path)
    below = _below_root(j, here)
    there = j.find_versions(source_path, None)
    if below is None or not j.find_versions(below[0], below[1]):
        return source_path
    if not there or {(r.root, r.relpath) for r in there} == {(below[1], below[0])}:
        return here
    other = sorted({f"{r.root.rstrip('/')}/{r.relpath}" for r in there})
    raise AcqdError(
        f"{source_path!r} names two files: {here} (from the current folder) and {', '.join(other)} (relative to "
        "its watch root): give the absolute path of the one to restore"
    )


def _below_root(j: Journal, source_path: str) -> tuple[str, str | None] | None:
    """(path relative to its watch root, the root) of `source_path`: a relative path is taken as it is
    (root None); an absolute one must lie below one of the journal's watch roots (else None)."""
    if not source_path.startswith("/"):
        return source_path, None
    for r in j.roots():
        if source_path.startswith(r.rstrip("/") + "/"):
            return source_path[len(r.rstrip("/")) + 1 :], r
    return None


def _find_copy(j: Journal, source_path: str, version: int | None) -> tuple[FileRow, CopyRow]:
    rel, root = source_path, None
    if source_path.startswith("/"):
        below = _below_root(j, source_path)
        if below is not None:
            rel, root = below
        else:
            stored = j.file_of_stored_path(source_path)  # a copy's path at the destination, as seen on the NAS
            if stored is None:
                raise AcqdError(
                    f"{source_path} is not below any watch root in the journal, nor a stored copy's path "
                    f"(watch roots: {', '.join(j.roots()) or 'none'})"
                )
            rel, root = stored.relpath, stored.root
            if version is None:  # the path names one version's copy (a later one is stored as name~vN)
                version = stored.version
            elif version != stored.version:
                raise AcqdError(
                    f"{source_path} is the copy of version {stored.version} of {stored.relpath!r}, not of "
                    f"version {version}: give the source path with --version {version}"
                )
    rows = [r for r in j.find_versions(rel, root) if r.state in DONE]
    roots = sorted({r.root for r in rows})
    if root is None and len(roots) > 1:
        # two watch roots each shipped a file of this relative path: restoring one of them, unnamed,
        # would hand back the wrong camera's file without a word
        paths = ", ".join(f"{r.rstrip('/')}/{rel}" for r in roots)
        raise AcqdError(f"{source_path!r} is a path below more than one watch root: give one of {paths}")
    if version is not None:
        shipped = sorted(r.version for r in rows)
        rows = [r for r in rows if r.version == version]
        if not rows and shipped:
            raise AcqdError(
                f"{source_path!r} has no version {version} with a verified copy "
                f"(shipped: {', '.join(map(str, shipped))})"
            )
    if not rows:
        raise AcqdError(f"no verified copy of {source_path!r} in the journal{_why_none(j, rel, root)}")
    row = rows[0]
    every = j.copies_of(row.id)
    copies = [c for c in every if c.state == "verified"]
    if not copies:
        raise AcqdError(
            f"no verified copy of {source_path!r} in the journal{_copies_gone(j, row.id, every)}{_source_left(row)}"
        )
    return row, copies[-1]


def _lost_copy(j: Journal, source_path: str, version: int | None) -> tuple[FileRow, CopyRow] | None:
    """A copy recorded lost of the file at `source_path` (below a watch root, or relative to one; the
    version asked, else the latest one with such a copy), or None."""
    from acqd.journal import LOST_FOR_GOOD

    below = _below_root(j, source_path)
    if below is None:
        return None
    rel, root = below
    rows = [
        r
        for r in j.find_versions(rel, root)
        if (r.state in DONE or (r.state.value == "quarantined" and (r.reason or "").startswith(LOST_FOR_GOOD)))
        and (version is None or r.version == version)
    ]
    if len({r.root for r in rows}) > 1:
        return None  # ambiguous: `_find_copy` said so
    for row in sorted(rows, key=lambda r: r.version, reverse=True):
        lost = [c for c in j.copies_of(row.id) if c.state == "lost" and c.checksum]
        if lost:
            return row, lost[-1]
    return None


def _source_left(row: FileRow) -> str:
    """Said when a file has no copy to restore: its source, if it is still where it was shipped from,
    as it was shipped (the same size and modification time)."""
    path = os.path.join(row.root, row.relpath)
    try:
        st = os.stat(path)
    except OSError:
        return ""
    if (st.st_size, st.st_mtime_ns) != (row.identity.size, row.identity.mtime_ns):
        return ""
    return f"; its source is still on the acquisition disk, as it was shipped: {path}"


def _copies_gone(j: Journal, file_id: int, copies: list[CopyRow]) -> str:
    """What became of a file's copies, none verified now: purged by retention (when, which rule),
    moved, lost (`acqd verify`, a release's re-check)."""
    said = []
    log = j.audit_log(file_id)
    for c in copies:
        entry = next((a for a in reversed(log) if a[3].get("copy") == c.id), None)
        when = f" on {datetime.fromtimestamp(entry[0], UTC):%Y-%m-%d %H:%M UTC}" if entry is not None else ""
        rule = f" (rule {entry[3]['rule']})" if entry is not None and entry[3].get("rule") else ""
        by = f" by {entry[2].partition('.')[0]}" if entry is not None and "." in entry[2] else ""
        said.append(f"its copy on tier {c.tier} was {c.state}{by}{when}{rule}")
    return ": " + "; ".join(said) if said else ""


@app.command()
def verify(
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    dest: Annotated[
        str | None, typer.Option(help="quick form: where files were shipped (default: what the journal recorded)")
    ] = None,
) -> None:
    """Fixity check: re-read every stored copy, decode it and compare its checksum with the journal's.
    Reports every bad copy (missing, truncated, corrupt), then a summary; exit 1 if any is bad.
    A bad copy is recorded in the journal: it is no longer counted as verified, so its source is never
    released for it, and a source still on the acquisition disk is shipped again. A missing or short
    copy is recorded only where other copies on its tier read back whole (a share that is not mounted
    looks like every copy gone), and not where the facility hub owns retention (it may have purged it).
    Each session's manifest at the destination is checked too (there, readable, listing every verified
    copy); one that is not is marked in the journal, and the daemon writes it again."""
    from acqd.fixity import Tiers, check_copy, check_manifests

    with _errors():
        cfg, j = _open_for_reading(config, state_dir, dest)
        sd = cfg.state_dir if cfg is not None else (state_dir or default_state_dir())
        try:
            pairs = list(j.verified_copies())
            marked = set(j.dirty_manifests())  # after the copies: a copy verified since is in a marked session
            tiers = Tiers(cfg, dest, j)
        finally:
            j.close()
        bad: dict[str, int] = {}
        damaged: list[tuple[FileRow, CopyRow, str]] = []
        gone: dict[str, list[tuple[FileRow, CopyRow, str]]] = {}  # missing or short, by tier
        whole: dict[str, int] = {}  # copies that read back whole, by tier
        hub_owned = cfg is not None and cfg.retention.owner == "hub"
        ok = 0
        try:
            for row, copy in pairs:
                problem = check_copy(tiers.get(copy.tier), copy, tiers.chunk)
                if problem is None:
                    ok += 1
                    whole[copy.tier] = whole.get(copy.tier, 0) + 1
                else:
                    bad[problem.kind] = bad.get(problem.kind, 0) + 1
                    err.print(f"FAILED {_where(row)!r} (version {row.version}): {problem}", markup=False)
                    # recorded: a copy that is not what was verified (a source still on the acquisition
                    # disk is shipped again; with no release configured nothing else would see it). Not
                    # a tier that did not answer, nor a decoder failing in this environment (a codec
                    # plugin missing); a missing or short copy with the caveats below
                    if tiers.elsewhere(copy.tier) is not None:
                        continue  # read from a --dest that is not the tier: said below, never recorded
                    if problem.kind == "corrupt" and "cannot be decoded" not in problem.detail:
                        damaged.append((row, copy, f"fixity: {problem}"))
                    elif problem.kind in ("missing", "truncated") and not hub_owned:
                        gone.setdefault(copy.tier, []).append((row, copy, f"fixity: {problem}"))
            others = sorted({u for u in map(tiers.elsewhere, {c.tier for _r, c in pairs}) if u is not None})
            stale = check_manifests(tiers, pairs, marked, whole)
        finally:
            tiers.close()
        for url in others:
            err.print(
                f"  -> copies read from {url}, not where the journal recorded their tier: what is found there is "
                "said, not recorded (run `acqd verify` without --dest to check and record the tier's own copies; "
                "a tier moved in acqd.yaml is recorded where it is once the daemon starts with it)",
                markup=False,
            )
        for m in stale:
            bad["manifest"] = bad.get("manifest", 0) + 1
            err.print(f"FAILED manifest of session {m.session!r} (watch root {m.root}): {m}", markup=False)
        if stale and not others:  # nor what its manifests say when read from elsewhere
            _record_stale_manifests(sd, [(m.root, m.session) for m in stale])
        for tier, rows in sorted(gone.items()):
            if whole.get(tier):
                damaged.extend(rows)
            else:
                err.print(
                    f"  -> none of the copies on tier {tier} read back whole: is it mounted and reachable? "
                    f"Not recorded (the {len(rows)} file(s) stay verified); run `acqd verify` again once it is",
                    markup=False,
                )
        if hub_owned and any(p in bad for p in ("missing", "truncated")):
            err.print(
                "  -> retention.owner is hub: a missing copy may be one the hub purged; not recorded",
                markup=False,
            )
        if damaged:
            _record_damaged(sd, damaged)
    kinds = f" ({', '.join(f'{n} {kind}' for kind, n in sorted(bad.items()))})" if bad else ""
    out.print(f"verify: {ok} {'copy' if ok == 1 else 'copies'} OK, {sum(bad.values())} failed{kinds}", markup=False)
    raise typer.Exit(1 if bad else 0)


def _journal_for_verify(sd: Path) -> Journal | None:
    """The journal opened for writing what `acqd verify` found; None (said) if this user cannot."""
    try:
        return Journal(journal_path(sd))
    except AcqdError as exc:
        err.print(f"not recorded in the journal ({exc}): run `acqd verify` as the daemon's user", markup=False)
        return None


def _record_stale_manifests(sd: Path, sessions: list[tuple[str, str]]) -> None:
    """Mark the sessions whose manifest is missing or out of date: the daemon writes them again from
    the journal (a running one within seconds, else at its next start)."""
    from acqd.journal import manifests_to_rewrite

    j = _journal_for_verify(sd)
    if j is None:
        return
    try:
        manifests_to_rewrite(j, sessions)
    finally:
        j.close()
    err.print(
        f"  -> {len(sessions)} session manifest(s) marked to be written again from the journal: by the running "
        "daemon within seconds, or at the next `acqd run`",
        markup=False,
    )


def _record_damaged(sd: Path, damaged: list[tuple[FileRow, CopyRow, str]]) -> None:
    """Tell the journal which verified copies failed the fixity check, and say what follows for each.
    A copy whose source is still on the acquisition disk (verified, not released) is recorded lost:
    the daemon never releases the source for it and ships the file again. A released file's copy is
    recorded lost too and the file quarantined (`acqd status` says it, retention no longer counts the
    copy as good): a person restores it from another copy or a backup."""
    j = _journal_for_verify(sd)
    if j is None:
        return
    try:
        for row, copy, why in damaged:
            if j.get(row.id).state == "released":  # its source is gone: this copy may be the only one
                others = [c for c in j.copies_of(row.id) if c.state == "verified" and c.id != copy.id]
                where = f"its other copies: {', '.join(c.tier for c in others)}" if others else "no other copy"
                if j.copy_lost_for_good(row.id, copy.id, f"{why}; the file was released: {where}") is not None:
                    err.print(
                        f"  -> {_where(row)!r} (version {row.version}) is released: its source is not on the "
                        f"acquisition disk, and its copy on tier {copy.tier} is recorded lost ({where}); restore "
                        "it from another copy or a backup. Quarantined: `acqd status` lists it",
                        markup=False,
                    )
                    continue
            became = _source_as_shipped(row)
            if became is not None and not became.startswith("could not"):
                others = [c for c in j.copies_of(row.id) if c.state == "verified" and c.id != copy.id]
                where = f"its other copies: {', '.join(c.tier for c in others)}" if others else "no other copy"
                lost = j.copy_lost_for_good(row.id, copy.id, f"{why}; its source is {became}: {where}")
                if lost is not None:
                    err.print(
                        f"  -> {_where(row)!r} (version {row.version}): copy recorded lost, and its source is "
                        f"{became}: nothing can ship this version again ({where}); restore it from another copy "
                        "or a backup. Quarantined: `acqd status` lists it",
                        markup=False,
                    )
                    continue
            elif j.copy_damaged(row.id, copy.id, why) is not None:
                note = f" ({became})" if became else ""
                err.print(
                    f"  -> {_where(row)!r}: copy recorded lost; its source is still on the acquisition disk{note}: "
                    "never released for this copy, shipped again (by the running daemon, or the next `acqd run`)",
                    markup=False,
                )
                continue
            fresh = j.get(row.id)
            if fresh.state == "verified":  # a release of it has begun: the daemon's to finish or undo
                err.print(
                    f"  -> {_where(row)!r}: a release of it is in progress; not recorded: run `acqd verify` again",
                    markup=False,
                )
            elif fresh.state == "released":
                others = [c for c in j.copies_of(row.id) if c.state == "verified" and c.id != copy.id]
                where = f"its other copies: {', '.join(c.tier for c in others)}" if others else "no other copy"
                err.print(
                    f"  -> {_where(row)!r} is released: its source is not on the acquisition disk ({where}); "
                    "restore it from another copy or a backup",
                    markup=False,
                )
            else:
                err.print(f"  -> {_where(row)!r} is {fresh.state} now: not recorded", markup=False)
    finally:
        j.close()


def _where(row: FileRow) -> str:
    """A file as `acqd verify` names it: its path on the acquisition disk (two watch roots may each
    have a file of one relative path)."""
    return os.path.join(row.root, row.relpath)


def _source_as_shipped(row: FileRow) -> str | None:
    """None if the file is on the acquisition disk as it was shipped (same inode, size, mtime and
    ctime); else what became of it ("no longer on the acquisition disk", "changed …"), or why this
    user cannot tell ("could not be looked at …": treated as there, the daemon decides)."""
    from acqd.pipeline import out_of_view
    from acqd.watcher import identity_of

    why = out_of_view(row.root)  # the acquisition disk not mounted, or verify run on another PC
    if why is not None:
        return f"could not be looked at: its watch root {row.root} {why}"
    try:
        st = os.lstat(os.path.join(row.root, row.relpath))
    except FileNotFoundError:
        return "no longer on the acquisition disk"
    except OSError as exc:
        return f"could not be looked at by this user: {exc.strerror}"
    if not stat_mod.S_ISREG(st.st_mode) or not identity_of(st).same_content_as(row.identity):
        return "changed on the acquisition disk since it was shipped (a newer version, or another file, is there)"
    return None


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="the folder the simulated camera writes to")],
    detector: Annotated[
        str, typer.Option(help="gatan-k3, gatan-k2, falcon, direct-electron, hamamatsu-orca, merlin-medipix or generic")
    ] = "hamamatsu-orca",
    files: Annotated[int, typer.Option(min=1, help="files in all, spread over the session folders")] = 4,
    frames: Annotated[int, typer.Option(min=1)] = 16,
    size: Annotated[str | None, typer.Option(help="frame HEIGHTxWIDTH (default: the detector's own)")] = None,
    sessions: Annotated[int, typer.Option(min=1)] = 1,
    rate: Annotated[float, typer.Option(help="write rate in MB/s (0: as fast as possible)", min=0)] = 0.0,
    dose: Annotated[float, typer.Option(help="counting detectors: electrons per pixel per frame", min=0.01)] = 0.8,
    seed: int = 0,
) -> None:
    """Write files the way a camera's acquisition software does, with realistic seeded pixels."""
    from acqd.simulate import FRAME_SHAPES, SIMULATED, SimSpec
    from acqd.simulate import simulate as run_sim

    if detector not in SIMULATED:
        raise usage(f"no simulator for {detector!r} (have: {', '.join(SIMULATED)})", "--detector")
    h, w = FRAME_SHAPES[detector]
    if size is not None:
        try:
            h, w = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise usage(f"wants HEIGHTxWIDTH, e.g. 512x512, not {size!r}", "--size") from None
        if h < 1 or w < 1:
            raise usage(f"wants a positive HEIGHTxWIDTH, not {size!r}", "--size")
    if out_dir.exists() and not out_dir.is_dir():
        raise usage(f"{out_dir} is not a folder", "--out")
    spec = SimSpec(
        files=files, frames=frames, height=h, width=w, sessions=sessions, rate_mb_s=rate, seed=seed, dose=dose
    )
    sizes: list[int] = []

    def wrote(p: Path) -> None:
        with contextlib.suppress(FileNotFoundError):  # a watching acqd with release on may have taken it
            sizes.append(p.stat().st_size)

    t0 = time.monotonic()
    with _errors():
        written = run_sim(detector, out_dir, spec, progress=wrote)
    total = sum(sizes)
    out.print(
        f"{detector}: wrote {len(written)} files, {human_bytes(total)}, to {out_dir} in {time.monotonic() - t0:.1f}s",
        markup=False,
    )


def _bench_profile(name: str) -> DetectorProfile:
    from acqd.profiles import load_profile, search_path

    try:
        return load_profile(name, search_path())
    except ConfigError as exc:
        raise usage(str(exc), "--detector") from None


@app.command("bench")
def bench_cmd(
    detector: Annotated[
        str | None,
        typer.Option(
            help="benchmark this detector's simulated frames (default: hamamatsu-orca); with --data: the "
            "profile whose codec candidates and budget the choice uses"
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="benchmark your own file, or the first GiB of a folder, instead")
    ] = None,
    codecs: Annotated[
        list[str] | None,
        typer.Option(
            "--codecs",
            help="codecs to try (repeat the option): blosc-lz4-1, blosc-zstd-3, blosc-lz4-1-shuffle, zstd-3, "
            "deflate-1, lzw, none (default: a sweep of all of them)",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="measure on 1..N threads (default: 1 and every core)", min=1)
    ] = None,
    link: Annotated[
        str, typer.Option(help="the link to central storage: 1GbE, 10GbE, 25GbE, or e.g. 800MB/s")
    ] = "10GbE",
    frames: Annotated[int, typer.Option(help="simulated frames to use", min=1)] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Size an acquisition PC: ratio, encode and decode GB/s per codec and thread count, the rate a
    link sustains with each (min(encode, ratio x link)), and the cores the detector's peak needs."""
    from acqd import sizing
    from acqd.profiles import load_profile, search_path

    with _errors():
        # a bad option is a usage error (exit 2), as for every command; 78 is a bad configuration file
        try:
            link_rate = sizing.parse_link(link)
        except ValueError as exc:
            raise usage(str(exc), "--link") from None
        try:
            chosen = [sizing.parse_codec(c) for c in (codecs or list(sizing.DEFAULT_CODECS))]
        except ValueError as exc:
            raise usage(str(exc), "--codecs") from None
        peak = None
        if data is not None:
            if not data.exists():
                raise usage(f"{data}: no such file or folder", "--data")
            try:
                stack = sizing.file_frames(data)
            except ValueError as exc:
                raise AcqdError(f"--data {exc}") from None
            source = str(data)
            if detector is not None:
                peak = float(_bench_profile(detector).peak_rate or 0) or None
        else:
            name = detector or "hamamatsu-orca"
            try:
                stack = sizing.detector_frames(name, frames)
            except ValueError as exc:
                raise usage(str(exc), "--detector") from None
            prof = _bench_profile(name)
            peak = float(prof.peak_rate) if prof.peak_rate else None
            source = f"{name} (simulated)"
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        counts = sorted({1, cores}) if threads is None else list(range(1, threads + 1))
        progress = None if as_json else (lambda what: err.print(f"  {what}...", markup=False))
        results = sizing.bench(stack, chosen, counts, link_rate, peak, progress=progress)
        # what acqd itself would choose for these frames: the profile's candidates within its budget
        prof = load_profile(detector or ("generic" if data is not None else "hamamatsu-orca"), search_path())
        lay = prof.layout if prof.layout != "copy" else "zarr"
        tried, budget, budget_why = prof.codec_choice(lay, cores=cores)
        choice = sizing.would_choose(stack, tried, lay, budget, budget_why)
    doc = {
        "source": source,
        "frames": int(stack.shape[0]),
        "frame_shape": [int(v) for v in stack.shape[1:]],
        "dtype": str(stack.dtype),
        "bytes": int(stack.nbytes),
        "link": link,
        "link_bytes_per_s": link_rate,
        "peak_rate_bytes_per_s": peak,
        "cpu_count": cores,
        "results": [r.as_dict() for r in results],
        "choice": {
            "profile": prof.name,
            "layout": lay,
            "codec": choice.shown,
            "ratio": round(choice.ratio, 3),
            "ns_per_byte": round(choice.ns_per_byte, 3),
            "budget_ns_per_byte": round(choice.budget_ns, 3),
            "why": choice.why,
        },
    }
    if as_json:
        print(json.dumps(doc, indent=1))
        return
    from rich.table import Table

    shape = "x".join(str(v) for v in stack.shape[1:])
    table = Table(title=f"{source}: {stack.shape[0]} frames {shape} {stack.dtype}")
    for col in ("codec", "threads", "ratio", "encode GB/s", "decode GB/s", f"{link} carries GB/s", "sustained GB/s"):
        table.add_column(col, justify="left" if col == "codec" else "right")
    if peak:
        table.add_column(f"cores for {peak / 1e9:.1f} GB/s", justify="right")
    for r in results:
        row = [r.codec, str(r.threads), f"{r.ratio:.2f}", f"{r.encode_gb_s:.2f}", f"{r.decode_gb_s:.2f}"]
        row += [f"{r.link_gb_s:.2f}", f"{r.effective_gb_s:.2f}"]
        if peak:
            row.append(str(r.cores_for_peak))
        table.add_row(*row)
    out.print(table)
    best = max(results, key=lambda r: (r.effective_gb_s, r.ratio))
    out.print(
        f"best sustained rate over {link}: {best.codec} on {best.threads} thread(s), {best.effective_gb_s:.2f} GB/s "
        f"of camera data (ratio {best.ratio:.2f})",
        markup=False,
    )
    out.print(f"acqd would choose ({prof.name} profile, {lay} layout): {choice.why}", markup=False)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="where the demo's folders go")] = Path("acqd-demo"),
    scale: Annotated[int, typer.Option(help="multiply the number of files each camera writes", min=1)] = 1,
    rate: Annotated[float, typer.Option(help="each camera's write rate, MB/s (0: as fast as the disk)")] = 0.0,
) -> None:
    """Run acqd on an embedded default: a simulated K3 and a simulated light-sheet camera, a local
    folder as central storage, no servers."""
    import logging

    from acqd.demo import run_demo

    _setup_logging(False)
    logging.getLogger("acqd").setLevel(logging.WARNING)
    with _errors():
        code = run_demo(directory, scale, rate, make_console())
    raise typer.Exit(code)


def _when(text: str | None, option: str = "--until") -> float:
    """Seconds since the epoch from an ISO date or time (UTC unless it says otherwise); a bad one is
    a usage error (exit 2)."""
    if text is None:
        return time.time()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise usage(f"not an ISO date or time: {text!r} (e.g. 2026-12-24 or 2026-12-24T08:00)", option) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _hold_until(text: str) -> float:
    """A hold's end: a bare day keeps the data all that day, anywhere on Earth (acqd.units.day_end,
    as the owner page does); a date and time is that moment (UTC unless it says otherwise)."""
    from acqd.units import day_end, is_day

    if is_day(text):
        try:
            return day_end(text)
        except ValueError:
            raise usage(f"not a day the calendar has: {text!r}", "--until") from None
    return _when(text)


def _until_text(given: str | None, ts: float) -> str:
    """A hold's end as said back: a bare day is kept all of that day, anywhere on Earth."""
    from acqd.units import is_day

    if given is not None and is_day(given):
        return f"the end of {given.strip()} everywhere on Earth ({_iso(ts)})"
    return _iso(ts)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@app.command()
def plan(
    config: Annotated[Path, typer.Option("--config", "-c", help="acqd.yaml with a `policy:`")],
    now: Annotated[str | None, typer.Option(help="plan as of this ISO date/time (default: now)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Dry run of the retention policy: what would be warned, moved and purged, when and why (and
    whether the clock guard holds purges back, and how to lift it)."""
    from acqd import journal as jr
    from acqd.daemon import load_retention, running_policy_differs
    from acqd.policy.clock import ClockState, Reading, lift_hint
    from acqd.retention import plan_from_journal, project_clock, read_clock

    with _errors():
        cfg = load_config(config)
        if cfg.retention.owner == "hub":
            raise ConfigError(
                f"{config}: retention.owner is hub: the facility hub plans and sweeps this instrument's data "
                "(with the catalog's holds and warnings, which this journal does not have); ask it: acqd hub "
                "plan --config /etc/acqd/hub.yaml"
            )
        policy = load_retention(cfg)
        if policy is None:
            raise ConfigError(f"{config}: no `policy:` configured; there is nothing to plan")
        t = _when(now, "--now")
        j = _read_journal(journal_path(cfg.state_dir))
        try:
            reading: Reading | None = read_clock()
            if now is not None:  # as if time passed normally since the last sweep
                kept = jr.clock_state(j)
                last = ClockState.from_json(kept).last if kept is not None else None
                reading = (
                    None
                    if last is not None and t < last.wall
                    else Reading(t, last.boot_id, last.boottime + t - last.wall)
                    if last is not None
                    else Reading(t, "simulated", t)
                )
            view = project_clock(j, policy, reading) if reading is not None else None
            clock = view.after if view is not None else None
            actions, _ = plan_from_journal(j, policy, t, clock)
        finally:
            j.close()
        stale = running_policy_differs(cfg.state_dir, policy, running_pid(cfg.state_dir))
        if stale is not None:
            err.print(f"acqd: warning: {stale}", markup=False)
    owners: dict[str, dict[str, int]] = {}
    tiers: dict[str, dict[str, int]] = {}
    out_actions: list[dict[str, Any]] = []
    counted: set[tuple[str, int]] = set()  # a held file is blocked from moving and from its purge: one file
    for act in actions:
        owner = policy.spec.owners.owner_of(act.item.relpath) or "(unknown)"
        if (act.kind, act.item.id) in counted:
            owner_tiers: tuple[tuple[str, dict[str, dict[str, int]]], ...] = ()
        else:
            counted.add((act.kind, act.item.id))
            owner_tiers = ((owner, owners), (act.item.tier, tiers))
        for key, table in owner_tiers:
            tot = table.setdefault(key, {})
            tot[f"{act.kind}_files"] = tot.get(f"{act.kind}_files", 0) + 1
            tot[f"{act.kind}_bytes"] = tot.get(f"{act.kind}_bytes", 0) + act.item.size
        out_actions.append(
            {
                "action": act.kind,
                "path": act.item.relpath,
                "session": act.item.session,
                "owner": owner,
                "tier": act.item.tier,
                "bytes": act.item.size,
                "rule": act.rule,
                "due": _iso(act.at),
                "reason": act.reason,
                **({"to_tier": act.tier} if act.tier else {}),
                **({"recipients": list(act.recipients)} if act.recipients else {}),
            }
        )
    doc: dict[str, Any] = {
        "now": _iso(t),
        "policy": policy.metadata.name,
        "actions": out_actions,
        "totals": {"by_owner": owners, "by_tier": tiers},
    }
    if clock is not None:
        doc["clock"] = {
            "wall": _iso(clock.last.wall),
            "trusted": _iso(clock.calendar),
            "effective": _iso(clock.effective),
            "skew_seconds": round(clock.skew, 3),
            "suspended": clock.suspension is not None,
            "reason": clock.suspension.reason if clock.suspension else "",
            "lift": lift_hint(clock).replace("FILE", str(config)),
        }
    if json_out:
        out.print_json(json.dumps(doc))
        return
    if clock is not None and clock.suspension is not None:
        out.print(f"CLOCK GUARD: {clock.suspension.reason}", markup=False)
        out.print(f"  {doc['clock']['lift']}", markup=False)
    if not out_actions:
        out.print(f"nothing due as of {doc['now']} (policy {policy.metadata.name})", markup=False)
        return
    tbl = Table(title=f"retention plan as of {doc['now']} ({policy.metadata.name})")
    for col in ("action", "path", "owner", "tier", "size", "due", "why"):
        tbl.add_column(col)
    for a in out_actions:
        tbl.add_row(
            str(a["action"]),
            str(a["path"]),
            str(a["owner"]),
            str(a["tier"]) + (f" -> {a['to_tier']}" if "to_tier" in a else ""),
            human_bytes(int(a["bytes"])),
            str(a["due"]),
            str(a["reason"]),
        )
    out.print(tbl)
    for owner, tot in sorted(owners.items()):
        parts = [
            f"{k.removesuffix('_files')} {v} files ({human_bytes(tot[k.replace('_files', '_bytes')])})"
            for k, v in sorted(tot.items())
            if k.endswith("_files")
        ]
        out.print(f"  {owner}: " + ", ".join(parts), markup=False)


@app.command()
def hold(
    target: Annotated[
        str | None,
        typer.Argument(
            help="what to keep: a session; a source file or folder (absolute, or relative to a watch root); "
            "a destination path or URL (file:///mnt/central/inst/sess/x.tif, s3://bucket/inst/sess); "
            "or instrument/session as stored"
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="required to place a hold: the last day kept: YYYY-MM-DD keeps the data all that day, anywhere on "
            "Earth (until 12:00 UTC the next day), as the owner page does; or an ISO date and time (UTC unless it says)"
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="required to place a hold: why (shown in `hold --list` and the audit log)")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the active holds")] = False,
    release: Annotated[bool, typer.Option("--release", help="release the holds on TARGET")] = False,
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    hub: Annotated[
        Path | None,
        typer.Option("--hub", help="hub.yaml: the hold goes into the facility catalog (the hub owns retention)"),
    ] = None,
    instrument: Annotated[
        str | None, typer.Option(help="with --hub: only this instrument's files (default: any instrument's)")
    ] = None,
    wait: Annotated[
        str, typer.Option("--wait", help="how long to wait for the tiers to take the hold's record (e.g. 30s)")
    ] = "30s",
) -> None:
    """Keep a session, a folder or one file from being purged or moved off its tier until a date."""
    from acqd import journal as jr
    from acqd.holds import resolve

    if hub is not None:
        _hold_in_catalog(hub, target, until, reason, list_, release, instrument)
        return
    if instrument is not None:
        raise usage("--instrument goes with --hub (a daemon's journal holds one instrument)", "--instrument")
    _config_alone(config, state_dir=state_dir)
    with _errors():
        cfg = load_config(config) if config is not None else None
        if cfg is not None and cfg.retention.owner == "hub" and not list_:
            raise ConfigError(
                f"{config}: retention.owner is hub: the facility hub ignores this journal's holds; "
                "hold in the catalog: acqd hold TARGET --hub /etc/acqd/hub.yaml --instrument "
                f"{cfg.instrument} --until DATE --reason TEXT"
            )
        sd = cfg.state_dir if cfg is not None else (state_dir or default_state_dir())
        if list_:
            j = _read_journal(journal_path(sd))
            try:
                holds = jr.active_holds(j, time.time())
            finally:
                j.close()
            for t, u, why, root in dict.fromkeys(holds):  # one line for a hold an older acqd placed twice
                where = f"{root.rstrip('/')}/{t}" if root else t
                out.print(f"{where}\tuntil {_iso(u)}\t{why}", markup=False)
            if not holds:
                out.print("no active holds")
            return
        if target is None:
            raise usage("give the TARGET to hold or release (or --list)", "TARGET")
        if not release and (until is None or not reason):
            missing = "--until DATE" if until is None else "--reason TEXT"
            raise usage(f"a hold needs --until DATE and --reason TEXT: {missing} is missing", missing.split()[0])
        u = _hold_until(until) if until is not None else 0.0
        wait_s = _duration("--wait", wait)
        if not release and u <= time.time():
            raise usage(f"{until} is in the past", "--until")
        roots = [str(w.path) for w in cfg.watch] if cfg is not None else []
        tier_urls = {name: t.url for name, t in cfg.tiers.items()} if cfg is not None else {}
        j = Journal(journal_path(sd))
        try:
            if release:
                now = time.time()
                lifted = [(target, *h) for h in jr.release_holds(j, target, now)]
                if not lifted:
                    for tg in resolve(j, target, roots, tier_urls).targets:
                        lifted += [(tg.path, *h) for h in jr.release_holds(j, tg.path, now, root=tg.root)]
                out.print(f"released {len(lifted)} hold(s) on {target}", markup=False)
                for t, root, end, why in lifted:  # which, where: one name may be held in several roots
                    where = f"{root.rstrip('/')}/{t}" if root else t
                    out.print(f"  {where}\tuntil {_iso(end)}\t{why}", markup=False)
                if not lifted:
                    for _i, t, end, why, root, _c, _b in jr.hold_records(j, now):
                        if target.strip("/").startswith(t.rstrip("/") + "/"):
                            where = f"{root.rstrip('/')}/{t}" if root else t
                            out.print(
                                f"  {target} is kept by the hold on {where} (until {_iso(end)}: {why}): release "
                                "that one to let it go",
                                markup=False,
                            )
                _hold_records(j, cfg, wait_s)
                return
            assert reason is not None
            res = resolve(j, target, roots, tier_urls)
            for tg in res.targets:
                jr.add_hold(j, tg.path, u, reason, time.time(), root=tg.root, asked=target)
            # said before the tiers are asked: the hold is in force from here, whatever they answer
            out.print(f"held {target} until {_until_text(until, u)}: {reason}", markup=False)
            out.print(f"  covers {res.describe()}", markup=False)
            _hold_records(j, cfg, wait_s)
        finally:
            j.close()


def _hold_records(j: Journal, cfg: Config | None, wait: float) -> None:
    """Write the journal's holds (and releases) as records on every tier (acqd.holdledger), where a
    journal restored from a backup finds them again. The hold is in the journal already: whatever
    happens here is a warning, never a failure of the command. Each tier gets at most `wait` seconds
    (a server that accepts and never answers would hold the command for minutes); a tier that cannot
    be reached is named, and the daemon's next retention sweep writes its records."""
    import threading
    from collections.abc import Callable

    from acqd import claims, holdledger
    from acqd.daemon import build_tiers

    later = "the hold is in the journal, and the daemon's next retention sweep records it there"
    if cfg is None:
        err.print(
            "note: without --config the hold is in the journal only; the daemon's next retention sweep "
            "also records it on its tiers",
            markup=False,
        )
        return
    try:
        tiers = build_tiers(cfg)
    except Exception as exc:
        err.print(f"warning: hold records not written: {exc}; {later}", markup=False)
        return
    problems: list[str] = []
    stuck: set[str] = set()
    refused: set[str] = set()  # not this journal's tier now (acqd.claims.not_ours): left alone

    def each(step: Callable[[Tier], list[str]]) -> None:
        """`step` on every tier not stuck yet, at once, for at most `wait` seconds in all; the
        problems it returns, and a line per tier that did not finish in time, go to `problems`."""

        def run(t: Tier) -> None:
            try:
                problems.extend(step(t))
            except Exception as exc:
                problems.append(f"tier {t.name}: hold records: {exc}")

        threads = {
            n: threading.Thread(target=run, args=(t,), daemon=True)
            for n, t in tiers.items()
            if n not in stuck and n not in refused
        }
        for th in threads.values():
            th.start()
        deadline = time.monotonic() + wait
        for n, th in threads.items():
            th.join(max(0.0, deadline - time.monotonic()))
            if th.is_alive():  # left behind: a daemon thread, it ends with the command
                stuck.add(n)
                problems.append(f"tier {n}: did not answer within {wait:g} s")

    got: dict[str, holdledger.TierRecords] = {}  # written by the threads (a stuck one may still, later)

    def read(t: Tier) -> list[str]:
        recs, more = holdledger.read_tiers([t], cfg.instrument)
        got.update(recs)
        return more

    known = {n: j.has_copies(n) for n in tiers}  # asked here: the journal is not the threads' to use

    def ours(t: Tier) -> list[str]:
        why = claims.not_ours(t, j.journal_id, cfg.instrument, known[t.name])
        if why is None:
            return []
        refused.add(t.name)
        return [f"tier {t.name}: {why}: hold records not written there"]

    try:
        each(ours)
        each(read)
        seen = {n: r for n, r in list(got.items()) if n not in stuck and n not in refused}
        holdledger.to_journal(j, seen, len(tiers))
        mine = holdledger.journal_holds(j)
        each(lambda t: holdledger.to_tiers(mine, [t], cfg.instrument, seen)[1])
    except Exception as exc:
        problems.append(f"hold records not synced: {exc}")
    finally:
        for n, t in tiers.items():
            if n not in stuck:
                t.close()
    for p in problems:
        err.print(f"warning: {p}; {later}", markup=False)


def _hold_in_catalog(
    hub: Path, target: str | None, until: str | None, reason: str | None, list_: bool, release: bool, inst: str | None
) -> None:
    """`acqd hold --hub hub.yaml`: holds in the facility catalog, honoured by the hub's sweeps."""
    import getpass

    from acqd.hub import hold as hub_hold
    from acqd.hub import open_db

    with _errors():
        cfg = load_hub(hub)
        if list_:
            db = open_db(cfg)
            try:
                rows = db.active_holds(time.time())
            finally:
                db.close()
            for _, t, u, why, root, i, _, _ in rows:
                where = "/".join(p for p in (i, root.rstrip("/"), t) if p)
                out.print(f"{where}\tuntil {_iso(u)}\t{why}", markup=False)
            if not rows:
                out.print("no active holds")
            return
        if target is None:
            raise usage("give the TARGET to hold or release (or --list)", "TARGET")
        if release:
            db = open_db(cfg)
            try:
                n = db.release_holds(target.strip().strip("/"), time.time(), inst)
            finally:
                db.close()
            out.print(f"released {n} hold(s) on {target}", markup=False)
            return
        if until is None or not reason:
            missing = "--until DATE" if until is None else "--reason TEXT"
            raise usage(f"a hold needs --until DATE and --reason TEXT: {missing} is missing", missing.split()[0])
        u = _hold_until(until)
        if u <= time.time():
            raise usage(f"{until} is in the past", "--until")
        what, _ = hub_hold(cfg, target, u, reason, inst, getpass.getuser())
    out.print(f"held {target} until {_until_text(until, u)}: {reason}", markup=False)
    out.print(f"  covers {what}", markup=False)


async def _owner_page_records(
    j: Journal, jexec: Executor, tier_io: Executor, tiers: list[Tier], instrument: str
) -> None:
    """`acqd owner-page`'s sync of the holds' records with the tiers (acqd.holdledger), after a hold
    placed or released there: the tiers on threads of their own (a tier that does not answer must not
    hold the journal's one thread, which every page needs); only into a tier folder that is this
    journal's (acqd.claims.not_ours), as `acqd hold` does; a release counts only if every tier has it."""
    import asyncio
    import logging

    from acqd import claims, holdledger

    loop = asyncio.get_running_loop()
    known = {t.name: await loop.run_in_executor(jexec, j.has_copies, t.name) for t in tiers}

    def ours(t: Tier) -> bool:  # not a folder swapped in for the tier, nor another journal's
        why = claims.not_ours(t, j.journal_id, instrument, known[t.name])
        if why is not None:
            logging.getLogger("acqd").warning("tier %s: %s: hold records not written there", t.name, why)
        return why is None

    mine_tiers = [t for t in tiers if await loop.run_in_executor(tier_io, ours, t)]
    seen, _ = await loop.run_in_executor(tier_io, holdledger.read_tiers, mine_tiers, instrument)
    await loop.run_in_executor(jexec, holdledger.to_journal, j, seen, len(tiers))
    held = await loop.run_in_executor(jexec, holdledger.journal_holds, j)
    await loop.run_in_executor(tier_io, holdledger.to_tiers, held, mine_tiers, instrument, seen)


@app.command("owner-page")
def owner_page_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="acqd.yaml with `owner_page:` and a `policy:`")],
    bind: Annotated[str | None, typer.Option(help="host:port (default: owner_page.bind)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the owner page and the facility view alone, over the daemon's journal (for testing, or
    beside a daemon that does not serve it); `acqd run` serves it itself when owner_page.enabled."""
    _setup_logging(verbose)
    import asyncio
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from acqd.daemon import build_mailer, build_tiers, load_retention
    from acqd.owners import serve as op_serve

    with _errors():
        cfg = load_config(config)
        if cfg.owner_page is None:
            raise ConfigError(f"{config}: no `owner_page:` section (secret_file, and optionally bind, base_url)")
        policy = load_retention(cfg)
        if policy is None:
            raise ConfigError(f"{config}: no `policy:` configured; the owner page shows the policy's dates")
        address = bind or cfg.owner_page.bind
        jexec = ThreadPoolExecutor(1, thread_name_prefix="acqd-journal")
        tier_io = ThreadPoolExecutor(2, thread_name_prefix="acqd-records")
        j = Journal(journal_path(cfg.state_dir))
        try:
            tiers = build_tiers(cfg)

            async def records() -> None:  # the holds' records on the tiers (acqd.holdledger)
                await _owner_page_records(j, jexec, tier_io, list(tiers.values()), cfg.instrument)

            app = op_serve.build(
                cfg, journal=j, jexec=jexec, policy=lambda: policy, mailer=build_mailer(cfg), on_holds_changed=records
            )
            sock = op_serve.bind(address)
            err.print(f"owner page on http://{address} (links: {cfg.owner_page.url()}/o/...)", markup=False)

            async def main() -> None:
                task = asyncio.ensure_future(op_serve.serve(app, sock))
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, task.cancel)
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            asyncio.run(main())
        finally:
            tier_io.shutdown(wait=False, cancel_futures=True)
            jexec.shutdown(wait=True)
            j.close()


catalog_app = typer.Typer(
    no_args_is_help=True, help="The facility catalog (PostgreSQL): create or upgrade its schema, import a journal."
)
app.add_typer(catalog_app, name="catalog")
CatalogConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="acqd.yaml with a `catalog:` section")]


@catalog_app.command("migrate")
def catalog_migrate(config: CatalogConfigOpt) -> None:
    """Create the catalog's schema or bring it to this acqd's version (versioned SQL migrations,
    each applied once; running it again changes nothing)."""
    from acqd.publish import migrate_command

    with _errors():
        cfg = load_config(config)
        applied = migrate_command(cfg)
    assert cfg.catalog is not None
    if applied:
        out.print(f"catalog {cfg.catalog.url}: applied {', '.join(applied)}", markup=False)
    else:
        out.print(f"catalog {cfg.catalog.url}: schema up to date", markup=False)


@catalog_app.command("import")
def catalog_import(config: CatalogConfigOpt) -> None:
    """Publish everything this instrument's journal knows to the catalog (its history, including
    copies adopted from session manifests with `acqd adopt`). Idempotent; safe beside a running daemon."""
    from acqd.publish import import_command

    with _errors():
        cfg = load_config(config)
        n = import_command(cfg)
    assert cfg.catalog is not None
    out.print(f"catalog {cfg.catalog.url}: imported {n} journal row(s) of {cfg.instrument}", markup=False)


hub_app = typer.Typer(
    invoke_without_command=True,
    help="The facility service beside central storage: one retention for every instrument, over the catalog.",
)
app.add_typer(hub_app, name="hub")
HubConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="hub.yaml (catalog, tiers, policy, SMTP)")]


def load_hub(path: Path) -> Any:
    from acqd.config import load_hub_config

    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return load_hub_config(path)


@hub_app.callback()
def hub(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="hub.yaml (catalog, tiers, policy, SMTP)")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="one sweep (if this replica gets the lease), then exit")] = False,
    now: Annotated[
        str | None, typer.Option(help="with --once: sweep as if the clock read this ISO time (rehearsals, tests)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the facility hub: retention over the catalog (warnings, transitions, purges on central
    storage), one replica acting at a time. Subcommands read the same hub.yaml."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    if config is None:
        raise usage("give the hub's configuration: acqd hub --config hub.yaml", "--config")
    if now is not None and not once:
        raise usage("--now needs --once (a service follows the real clock)", "--now")
    _setup_logging(verbose)
    import asyncio

    from acqd.hub import Hub

    with _errors():
        cfg = load_hub(config)
        t = _when(now, "--now") if now is not None else None
        rc = asyncio.run(Hub(cfg, config_path=config, once=once, now=t).run())
    raise typer.Exit(rc)


@hub_app.command("plan")
def hub_plan(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="hub.yaml")] = None,
    now: Annotated[str | None, typer.Option(help="plan as of this ISO time (default: now)")] = None,
    json_: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Dry run of the hub's next sweep over every instrument: what would be warned, moved, purged or
    is blocked (by a hold, the caps, the clock guard), and why. Reads only; needs no lease."""
    from acqd.hub import plan as hub_plan_

    path = config or ctx.obj
    if path is None:
        raise usage("give the hub's configuration: acqd hub plan --config hub.yaml", "--config")
    with _errors():
        cfg = load_hub(path)
        actions, t, suspended = hub_plan_(cfg, _when(now, "--now") if now is not None else None)
        unmarked = _unmarked_tiers(cfg)
    rows = [
        {
            "kind": a.kind,
            "instrument": a.item.instrument,
            "relpath": a.item.relpath,
            "tier": a.item.tier,
            "to": a.tier or None,
            "at": _iso(a.at),
            "rule": a.rule,
            "reason": a.reason,
            "recipients": list(a.recipients),
        }
        for a in actions
    ]
    if json_:
        doc = {"as_of": _iso(t), "suspended": suspended or None, "unmarked_tiers": unmarked, "actions": rows}
        out.print_json(json.dumps(doc))
        return
    if suspended:
        out.print(f"PURGES SUSPENDED: {suspended}", markup=False)
    for why in unmarked.values():  # the sweep's moves and purges there would fail, saying this
        out.print(f"NOT USABLE: {why}", markup=False)
    for r in rows:
        out.print(
            f"{r['kind']:10} {r['instrument']}/{r['relpath']} ({r['tier']}) {r['at']}: {r['reason']}", markup=False
        )
    if not rows:
        out.print(f"nothing due as of {_iso(t)}", markup=False)


def _unmarked_tiers(cfg: Any) -> dict[str, str]:
    """The hub's local tiers whose folder lacks its marker (`acqd hub mark-tier`), with why."""
    from acqd.errors import AcqdError
    from acqd.hub import build_tiers
    from acqd.retention import check_marker

    out: dict[str, str] = {}
    for name, tier in build_tiers(cfg).items():
        if tier.local:
            try:
                check_marker(tier)
            except AcqdError as exc:
                out[name] = str(exc)
    return out


@hub_app.command("ack-clock")
def hub_ack_clock(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="hub.yaml")] = None,
    reason: Annotated[str, typer.Option(help="why the wall clock is right (the hub's audit)")] = "no reason given",
) -> None:
    """Vouch that the wall clock is right now, after a clock jump suspended the hub's purges: the
    hub's next sweep re-anchors the trusted calendar kept in the catalog."""
    import getpass

    from acqd.hub import ack_clock

    path = config or ctx.obj
    if path is None:
        raise usage("give the hub's configuration: acqd hub ack-clock --config hub.yaml", "--config")
    with _errors():
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = f"uid {os.getuid()}"
        over = ack_clock(load_hub(path), reason, who)
    out.print(f"acknowledged the wall clock over: {over}. The hub's next sweep re-anchors the trusted clock.")


@hub_app.command("mark-tier")
def hub_mark_tier(
    ctx: typer.Context,
    tier: Annotated[str, typer.Argument(help="the tier's name in hub.yaml (a local folder: a NAS mount)")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="hub.yaml")] = None,
) -> None:
    """Mark a local tier's folder as the tier, once, with its network share mounted. The hub keeps no
    claims: it moves copies onto a local tier and purges from it only while the folder holds this
    marker (~acqd-tier.json), so that an unmounted share's mount point (empty, or with a stray file in
    it) is never taken for the tier."""
    from acqd.hub import build_tiers
    from acqd.retention import mark_tier

    path = config or ctx.obj
    if path is None:
        raise usage("give the hub's configuration: acqd hub mark-tier NAME --config hub.yaml", "--config")
    with _errors():
        cfg = load_hub(path)
        tiers = build_tiers(cfg)
        if tier not in tiers:
            raise usage(f"no tier {tier!r} in {path} (its tiers: {', '.join(sorted(tiers))})", "TIER")
        where = mark_tier(tiers[tier], cfg.facility)
    out.print(f"tier {tier}: marked ({where}). Mark it only with its share mounted.", markup=False)


retention_app = typer.Typer(
    no_args_is_help=True, help="Retention guards: acknowledge a clock jump that suspended purges."
)
app.add_typer(retention_app, name="retention")


@retention_app.command("ack-clock")
def ack_clock(
    config: Annotated[Path, typer.Option("--config", "-c", help="acqd.yaml with a `policy:`")],
    reason: Annotated[str, typer.Option(help="why the wall clock is right (audit log)")] = "no reason given",
) -> None:
    """Vouch that the wall clock is right now: the clock guard re-anchors its trusted calendar at the
    daemon's next sweep, and purges follow the wall clock again."""
    import getpass

    from acqd import journal as jr
    from acqd.daemon import load_retention
    from acqd.policy.clock import ClockState
    from acqd.retention import project_clock, read_clock

    with _errors():
        cfg = load_config(config)
        policy = load_retention(cfg)
        if policy is None:
            raise ConfigError(f"{config}: no `policy:` configured; there is no retention clock")
        j = Journal(journal_path(cfg.state_dir))
        try:
            reading = read_clock()
            doc = jr.clock_state(j)
            kept = ClockState.from_json(doc) if doc is not None else None
            projected = project_clock(j, policy, reading).after
            suspension = (kept.suspension if kept is not None else None) or projected.suspension
            if suspension is None:
                raise AcqdError(
                    "nothing to acknowledge: the wall clock agrees with the trusted clock "
                    f"(skew {projected.skew:+.0f}s)"
                )
            try:
                who = getpass.getuser()
            except (KeyError, OSError):
                who = f"uid {os.getuid()}"
            jr.add_clock_ack(j, reading.wall, reading.boot_id, reading.boottime, reason, who)
        finally:
            j.close()
    import logging

    logging.getLogger("acqd.retention").warning("clock acknowledged by %s: %s", who, reason)
    out.print(
        f"acknowledged the wall clock ({_iso(reading.wall)}) over: {suspension.reason}. The daemon's next sweep "
        "re-anchors the trusted clock; purges then follow the wall clock (`acqd plan` shows what is due).",
        markup=False,
    )


def _clock_doc(j: Journal) -> dict[str, Any] | None:
    from acqd import journal as jr
    from acqd.policy.clock import ClockState, lift_hint

    doc = jr.clock_state(j)
    if doc is None:
        return None
    st = ClockState.from_json(doc)
    return {
        "as_of": _iso(st.last.wall),
        "trusted": _iso(st.calendar),
        "skew_seconds": round(st.skew, 3),
        "suspended": st.suspension is not None,
        "reason": st.suspension.reason if st.suspension else "",
        "lift": lift_hint(st),
        "pending_acks": len(jr.pending_clock_acks(j)),
    }


def _print_sweep(doc: dict[str, Any] | None) -> None:
    """The last retention sweep in one line, and what failed in it (retried at the next)."""
    if doc is None:
        return
    line = (
        f"retention: last sweep {_iso(float(doc.get('now', 0)))}: {doc.get('warned', 0)} warned, "
        f"{doc.get('transitioned', 0)} moved, {doc.get('purged', 0)} purged, {doc.get('blocked', 0)} blocked"
    )
    if doc.get("failed"):
        line += f", {doc['failed']} FAILED (retried at the next sweep)"
    out.print(line, markup=False)
    for why, n in sorted((doc.get("blocked_why") or {}).items()):
        out.print(f"  {n} blocked: {why}", markup=False)
    if doc.get("suspended"):
        out.print(f"  sweep stopped: {doc['suspended']}", markup=False)
    for e in doc.get("errors") or ():
        out.print(f"  {e}", markup=False)


def _print_clock(clock: dict[str, Any] | None) -> None:
    if clock is None or not clock["suspended"]:
        return
    out.print(f"retention: PURGES SUSPENDED (clock guard, as of {clock['as_of']}): {clock['reason']}", markup=False)
    out.print(f"  {clock['lift']}", markup=False)
    if clock["pending_acks"]:
        out.print("  an acknowledgement is waiting for the daemon's next sweep", markup=False)


@app.command()
def version() -> None:
    """Print the version."""
    print(f"acqd {__version__}")


# click's UsageError and ClickException, whether typer uses click or its own copy of it
_USAGE_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _command_path(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        return str(ctx.command_path)
    commands = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback is not None}
    return " ".join(["acqd", *[a for a in sys.argv[1:2] if a in commands]])


# -- the facility views: `acqd hub usage`, `acqd hub fleet` (issue 16) ---------------------------
HubViewConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub.yaml (catalog:, policy:, groups:, mqtt:)")
]
HubCatalogOpt = Annotated[
    str | None, typer.Option("--catalog", help="postgresql://user@host/db instead of --config (no password in it)")
]
HubPasswordOpt = Annotated[Path | None, typer.Option("--password-file", help="the catalog's password")]


def _hub_source(ctx: typer.Context, config: Path | None, catalog_url: str | None, password_file: Path | None) -> Any:
    from pydantic import ValidationError

    from acqd.overview.settings import load_view
    from acqd.overview.views import Source
    from acqd.yamlfile import wording

    if config is None and catalog_url is None and isinstance(ctx.obj, Path):
        config = ctx.obj  # acqd hub --config hub.yaml usage

    if (config is None) == (catalog_url is None):
        raise ConfigError("give either --config hub.yaml or --catalog postgresql://...")
    if config is not None:
        return Source.of(load_view(config), password_file)
    try:
        return Source.from_url(str(catalog_url), password_file)
    except ValidationError as exc:
        raise ConfigError(f"--catalog: {wording(exc.errors()[0])}") from None


@hub_app.command("usage")
def hub_usage(
    ctx: typer.Context,
    config: HubViewConfigOpt = None,
    catalog_url: HubCatalogOpt = None,
    password_file: HubPasswordOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Bytes and files stored per owner, group, instrument, tier and data class; purges and
    transitions the policy makes due per week; quarantines per instrument. From the catalog."""
    from acqd.overview.views import usage_report
    from acqd.units import human_bytes

    with _errors():
        doc = usage_report(_hub_source(ctx, config, catalog_url, password_file)).as_dict()
    if json_out:
        print(json.dumps(doc, indent=1))
        return
    total = doc["total"]
    out.print(f"{total['files']} files, {human_bytes(total['bytes'])} stored (policy: {doc['policy']})", markup=False)
    for title, rows, keys in (
        ("per owner", doc["owners"], ("owner", "group")),
        ("per group", doc["groups"], ("group",)),
        ("per instrument", doc["instruments"], ("instrument",)),
        ("per tier", doc["tiers"], ("tier",)),
        ("per data class", doc["data_classes"], ("data_class",)),
        ("due purges (week 0: now)", doc["due"]["purges"], ("week",)),
        ("due transitions (week 0: now)", doc["due"]["transitions"], ("week", "tier")),
        ("quarantined (source bytes)", doc["quarantined"], ("instrument",)),
    ):
        t = Table(title=title)
        for k in (*keys, "files", "bytes"):
            t.add_column(k.replace("_", " "), justify="right" if k in ("files", "bytes", "week") else "left")
        for r in rows:
            t.add_row(*(str(r[k]) for k in keys), str(r["files"]), human_bytes(r["bytes"]))
        out.print(t)


@hub_app.command("fleet")
def hub_fleet(
    ctx: typer.Context,
    config: HubViewConfigOpt = None,
    catalog_url: HubCatalogOpt = None,
    password_file: HubPasswordOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Each instrument's last contact, backlog and oldest waiting file (catalog and MQTT status).
    Exit 1 if an instrument is silent (longer than fleet.silent_after) while files wait."""
    from acqd.overview.views import fleet_report

    with _errors():
        src = _hub_source(ctx, config, catalog_url, password_file)
        health = fleet_report(src)
    now, after = time.time(), src.view.fleet.silent_after
    docs = [h.as_dict(now, after) for h in health]
    if json_out:
        print(json.dumps({"now": now, "silent_after": after, "instruments": docs}, indent=1))
    else:
        t = Table(title="fleet")
        for k in ("instrument", "last contact", "via", "backlog", "oldest pending", "online", ""):
            t.add_column(k)
        for d in docs:
            age = d["last_contact_age_seconds"]
            oldest = d["oldest_pending_age_seconds"]
            t.add_row(
                d["instrument"],
                "never" if age is None else f"{age:.0f}s ago",
                d["via"],
                str(d["backlog_files"]),
                "-" if oldest is None else f"{oldest:.0f}s",
                {None: "?", True: "online", False: "offline"}[d["online"]],
                "SILENT" if d["silent"] else "",
            )
        out.print(t)
    if any(d["silent"] for d in docs):
        raise typer.Exit(1)


def main() -> None:
    """Every error a user can make ends in one line on stderr and an exit code: 2 for a bad option or
    argument, 78 for a bad configuration, 1 for a failure. Never a traceback."""
    import logging

    # libraries' own warnings about a damaged file (tifffile: "invalid page offset") would add lines
    # to acqd's one-line error; the commands that log set their own levels (`_setup_logging`)
    for noisy in ("tifffile", "zarr", "numcodecs", "fsspec"):  # tifffile logs a bad page offset as ERROR
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        rc = app(standalone_mode=False, prog_name="acqd")
    except _USAGE_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `acqd` alone: the help
            print(exc.format_message())  # type: ignore[attr-defined]
            sys.exit(EX_USAGE)
        cmd = _command_path(exc)
        err.print(f"{cmd}: {exc.format_message()} (see `{cmd} --help`)", markup=False)  # type: ignore[attr-defined]
        sys.exit(EX_USAGE)
    except _CLICK_EXCEPTION as exc:
        err.print(f"acqd: {exc.format_message()}", markup=False)  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 1))
    except (typer.Abort, KeyboardInterrupt):
        err.print("acqd: interrupted", markup=False)
        sys.exit(130)
    except BrokenPipeError:  # `acqd status | head`
        sys.stderr.close()
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
