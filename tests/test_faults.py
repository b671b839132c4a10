"""Faults at the storage edge, met by the real daemon: a destination that is down, full (ENOSPC at
write, at close/fsync, at rename; and a real full tmpfs), failing with EIO, flipping permissions,
returning corrupt bytes on read, or slow (backpressure, bounded memory); the `file://` path itself
failing at fsync and rename; and read errors on the source."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import random
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import pytest

from acqd.config import Config
from acqd.daemon import Daemon
from acqd.journal import Journal
from tests.conftest import REPO, REQUIRE, Background, journal_states, run_acqd, tree, wait_for, write_config
from tests.faults import install_os_faults, install_plugin, set_faults
from tests.servers import free_port

pytestmark = pytest.mark.slow


def populate(watch: Path, n: int, size: int, seed: int = 3, prefix: str = "s/f") -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        rel = f"{prefix}{i:03d}.raw"
        p = watch / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size // 2) + bytes(size - size // 2)
        p.write_bytes(data)
        out[rel] = data
    return out


class Site:
    def __init__(self, tmp_path: Path) -> None:
        self.watch, self.dest, self.state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
        for d in (self.watch, self.dest, self.state):
            d.mkdir()
        self.control = tmp_path / "faults.json"
        self.control.write_text("{}")
        plugin = install_plugin(tmp_path / "plugin")
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([plugin, str(REPO), os.environ.get("PYTHONPATH", "")]))
        self.config = tmp_path / "acqd.yaml"

    def write_config(self, url: str | None = None, limits: str = "", extra: str = "") -> Path:
        url = url or f"faulty://{self.dest}"
        return write_config(
            self.config,
            f"""
instrument: scope
state_dir: {self.state}
watch:
  - {{path: {self.watch}, settle: 0.2s, placement: {{release_local: after_verify}}}}
tiers:
  central: {{url: "{url}", options: {{control: "{self.control}"}}}}
limits: {{retry_initial: 50ms, retry_max: 300ms{", " + limits if limits else ""}}}
{extra}""",
        )

    def attempts(self, of: Collection[str] | None = None) -> dict[str, int]:
        if not (self.state / "journal.sqlite").exists():
            return {}
        db = sqlite3.connect(f"file:{self.state / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT relpath, attempts FROM files WHERE current = 1").fetchall()
            return {rel: n for rel, n in rows if of is None or rel in of}
        except sqlite3.OperationalError:  # the daemon is still creating the schema
            return {}
        finally:
            db.close()

    def stored(self) -> dict[str, bytes]:
        base = self.dest / "scope"
        return (
            {k: v for k, v in tree(base).items() if not k.rpartition("/")[2].startswith("~acqd-")}
            if base.exists()
            else {}
        )

    def no_temporaries(self) -> bool:
        return not [p for p in self.dest.rglob(".*")]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield Site(tmp_path)


def test_destination_down_then_back(site: Site) -> None:
    files = populate(site.watch, 8, 200_000)
    site.write_config()
    set_faults(site.control, down=True)
    d = Background("run", "--config", str(site.config), env=site.env)
    try:
        wait_for(lambda: len(site.attempts()) == 8 and min(site.attempts().values()) >= 2, 60, "retries")
        assert site.stored() == {} and sorted(tree(site.watch)) == sorted(files), "nothing moves while it is down"
        set_faults(site.control)  # back
        wait_for(lambda: set(journal_states(site.state).values()) == {"released"}, 60, "all released")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert site.stored() == files and tree(site.watch) == {}
    assert site.no_temporaries()
    assert "connection refused" in err


@pytest.mark.parametrize(
    ("kind", "op"), [("enospc", "write"), ("enospc", "close"), ("enospc", "rename"), ("eio", "write")]
)
def test_full_or_failing_destination_is_retried(site: Site, kind: str, op: str) -> None:
    site.write_config()
    r = run_acqd("run", "--config", str(site.config), "--once", env=site.env)  # claims the prefix first:
    assert r.returncode == 0, r.stderr  # so that every injected failure below falls on a file
    files = populate(site.watch, 5, 300_000)
    set_faults(site.control, **{kind: {op: 4}})
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "30s", env=site.env)
    assert r.returncode == 0, r.stderr
    assert site.stored() == files and tree(site.watch) == {}
    assert site.no_temporaries()
    # each injected failure cost exactly one retry: of a file, or of this run's claim (written at
    # every start, before the first file; claimed again before the first commit when it failed)
    late = r.stderr.count("claim not written yet")
    assert late <= 1 and sum(site.attempts().values()) == 4 - late, r.stderr
    what = "no space left" if kind == "enospc" else "I/O error"
    assert what in r.stderr


def _mount_tmpfs(path: Path, size: str) -> None:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        msg = f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): the real-ENOSPC test needs root"
        if REQUIRE:
            pytest.fail(msg + " (ACQD_REQUIRE_SERVICES=1)")
        pytest.skip(msg)


def test_really_full_destination_keeps_everything_and_resumes(site: Site) -> None:
    files = populate(site.watch, 6, 1 << 20)  # 6 MiB, half incompressible, to a 3 MiB filesystem
    _mount_tmpfs(site.dest, "3m")
    try:
        site.write_config(url=f"file://{site.dest}")
        r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "3s")
        assert r.returncode == 1, r.stderr
        assert "no space left" in r.stderr
        states = journal_states(site.state)
        # verified (under load the 3 s may end before a release: its manifest's write comes first)
        done = {k for k, v in states.items() if v in ("verified", "released")}
        released = {k for k, v in states.items() if v == "released"}
        assert 0 < len(done) < len(files)
        stored = site.stored()
        assert set(stored) == done and all(stored[k] == files[k] for k in done), "a partial copy under a final name"
        assert sorted(tree(site.watch)) == sorted(set(files) - released), "an unverified file was released"
        assert site.no_temporaries(), "a failed write left its temporary on the full disk"
        subprocess.run(["mount", "-o", "remount,size=64m", str(site.dest)], check=True)
        r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s")
        assert r.returncode == 0, r.stderr
        assert site.stored() == files and tree(site.watch) == {}
    finally:
        subprocess.run(["umount", "-l", str(site.dest)], capture_output=True)


@contextlib.contextmanager
def _read_only_watch(site: Site, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """The watch root bind-mounted read-only over its files (kept in <tmp>/real), as an acquisition
    share exported read-only; yields what makes it writable again. Needs root."""
    real = tmp_path / "real"
    site.watch.rename(real)
    site.watch.mkdir()
    r = subprocess.run(["mount", "--bind", str(real), str(site.watch)], capture_output=True, text=True)
    if r.returncode != 0:
        msg = f"cannot bind-mount here ({r.stderr.strip()}): the read-only watch root tests need root"
        if REQUIRE:
            pytest.fail(msg + " (ACQD_REQUIRE_SERVICES=1)")
        pytest.skip(msg)

    def writable() -> None:
        subprocess.run(["mount", "-o", "remount,rw,bind", str(site.watch)], check=True)

    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(site.watch)], check=True)
        yield writable
    finally:
        subprocess.run(["umount", "-l", str(site.watch)], capture_output=True)


def test_a_release_the_acquisition_disk_refuses_is_said_counted_and_listed(site: Site, tmp_path: Path) -> None:
    """The watch root mounted read-only (a bind mount, as an acquisition share exported read-only):
    every release fails. It was a WARNING at every scan and nothing else: `run --once --release` said
    0 released and exited 0, `acqd status` said nothing, the disk the release was to free filling.
    Now: exit 1 naming the files, an event and a metric per file, `acqd status` lists them; once the
    disk is writable again the next run releases them."""
    files = populate(site.watch, 3, 20_000)
    site.write_config(url=f"file://{site.dest}")
    real = tmp_path / "real"
    with _read_only_watch(site, tmp_path) as writable:
        r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "20s")
        assert r.returncode == 1, r.stdout + r.stderr
        said = " ".join(r.stderr.split())
        assert "3 file(s) verified and not released: the acquisition disk refused to remove them" in said, said
        assert "Read-only file system" in said
        assert said.count("release_failed 's/f000.raw'") == 1, said  # once per file, not at every look
        assert set(journal_states(site.state).values()) == {"verified"}
        assert tree(real) == files and site.stored() == files
        st = run_acqd("status", "--config", str(site.config), "--json")
        listed = json.loads(st.stdout)["release_failed"]
        assert sorted(x["path"] for x in listed) == sorted(files), listed
        assert {x["root"] for x in listed} == {str(site.watch)}, listed  # two roots can hold the same path
        text = run_acqd("status", "--config", str(site.config)).stdout
        assert f"release failed: 's/f000.raw' in {site.watch}:" in text, text
        db = sqlite3.connect(site.state / "journal.sqlite")
        try:
            (n,) = db.execute("SELECT COUNT(*) FROM audit WHERE action = 'release-failed'").fetchone()
        finally:
            db.close()
        assert n == 3
        writable()
        r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "20s")
        assert r.returncode == 0, r.stderr
        assert tree(real) == {} and site.stored() == files
        st = run_acqd("status", "--config", str(site.config), "--json")
        assert json.loads(st.stdout)["release_failed"] == []


async def test_a_refused_release_is_an_event_and_a_metric(site: Site, tmp_path: Path) -> None:
    """The same refusal seen by what a facility watches: one `file.release_failed` event per file
    (not one per scan), and `acqd_files_total{outcome="release_failed"}` for the AcqdReleaseFailed
    alert."""
    from prometheus_client import CollectorRegistry

    from acqd.config import load_config
    from acqd.daemon import Fanout
    from acqd.events import event_payload
    from acqd.metrics import Metrics
    from acqd.values import Outcome

    populate(site.watch, 2, 5_000)
    site.write_config(url=f"file://{site.dest}")
    seen: list[Outcome] = []

    class Keep:
        def outcome(self, o: Outcome) -> None:
            seen.append(o)

    metrics = Metrics(CollectorRegistry(), "scope")
    with _read_only_watch(site, tmp_path):
        async with asyncio.timeout(120):
            result = await Daemon(
                load_config(site.config), once=True, retry_for=20, reporter=Fanout([Keep(), metrics])
            ).run(install_signals=False)
    assert result.code == 1, result
    refused = [o for o in seen if o.kind == "release_failed"]
    assert sorted(o.relpath for o in refused) == ["s/f000.raw", "s/f001.raw"], seen
    body = event_payload("scope", refused[0])
    assert body["type"] == "file.release_failed" and "Read-only file system" in body["reason"], body
    assert metrics.value("acqd_files_total", detector="generic", outcome="release_failed") == 2


def test_destination_permission_flip(site: Site) -> None:
    first = populate(site.watch, 3, 50_000, prefix="a/f")
    site.write_config(url=f"file://{site.dest}")
    d = Background("run", "--config", str(site.config), drop_caps=True)
    try:
        wait_for(lambda: set(journal_states(site.state).values()) == {"released"}, 60, "the first files")
        for p in [site.dest, *site.dest.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)
        second = populate(site.watch, 3, 50_000, seed=4, prefix="b/f")
        wait_for(lambda: sum(site.attempts().get(k, 0) for k in second) >= 3, 60, "refused writes")
        assert all(journal_states(site.state)[k] != "released" for k in second)
        assert all((site.watch / k).exists() for k in second)
        for p in [site.dest, *site.dest.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        wait_for(
            lambda: len(journal_states(site.state)) == 6 and set(journal_states(site.state).values()) == {"released"},
            60,
            "all",
        )
    finally:
        for p in [site.dest, *site.dest.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        code, err = d.terminate()
    assert code == 0, err
    assert site.stored() == {**first, **second}
    assert "permission denied" in err


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return float("nan")


def test_slow_destination_backpressure_bounded_memory_nothing_dropped(site: Site) -> None:
    files = populate(site.watch, 30, 2 << 20)  # 60 MiB waiting; the destination takes ~2 MiB/s
    port = free_port()
    site.write_config(
        limits="inflight_bytes: 8MiB, chunk_bytes: 1MiB", extra=f"metrics: {{bind: '127.0.0.1:{port}'}}\n"
    )
    set_faults(site.control, delay_per_mib=0.5)
    d = Background("run", "--config", str(site.config), env=site.env)
    peak_rss = peak_fds = 0
    backlog: list[float] = []
    try:
        wait_for(lambda: len(journal_states(site.state)) == 30, 30, "all 30 files seen")
        more = populate(site.watch, 30, 2 << 20, seed=9, prefix="t/g")  # the camera goes on writing
        wait_for(lambda: len(journal_states(site.state)) == 60, 30, "the watcher keeps up while shipping is slow")
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, _rss_kib(d.proc.pid))
            peak_fds = max(peak_fds, _fds(d.proc.pid))
            backlog.append(_metric(port, "acqd_backlog_files"))
            time.sleep(0.2)
        set_faults(site.control)  # the destination speeds up
        wait_for(lambda: set(journal_states(site.state).values()) == {"released"}, 120, "all released")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert site.stored() == {**files, **more}, "something was dropped"
    assert max(backlog) >= 40, f"the backlog gauge did not show the backlog: {backlog}"
    # bounded: the in-flight budget (8 MiB) plus the interpreter and libraries, whatever the backlog
    assert peak_rss < 300 * 1024, f"peak RSS {peak_rss} KiB"
    assert peak_fds < 64, f"{peak_fds} file descriptors open"


async def test_source_read_errors_quarantine_after_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watch, dest = tmp_path / "acq", tmp_path / "central"
    files = populate(watch, 4, 100_000)
    bad = str(watch / "s/f002.raw")
    real_read = os.read

    def failing_read(fd: int, n: int) -> bytes:  # a disk sector that cannot be read
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == bad:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        except FileNotFoundError:
            pass
        return real_read(fd, n)

    monkeypatch.setattr("acqd.pipeline.os.read", failing_read)
    cfg = Config.model_validate(
        {
            "instrument": "scope",
            "state_dir": str(tmp_path / "state"),
            "watch": [{"path": str(watch), "settle": "0.1s", "placement": {"release_local": "after_verify"}}],
            "tiers": {"central": {"url": f"file://{dest}"}},
            "limits": {"retry_initial": "20ms", "retry_max": "50ms"},
        }
    )
    result = await asyncio.wait_for(Daemon(cfg, once=True, retry_for=120).run(install_signals=False), 300)
    assert result.stats.verified == 3 and result.stats.quarantined == 1
    states = journal_states(tmp_path / "state")
    assert states["s/f002.raw"] == "quarantined"
    assert (watch / "s/f002.raw").read_bytes() == files["s/f002.raw"], "the unreadable file is kept"
    assert not (dest / "scope/s/f002.raw").exists()
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite")
    (reason,) = db.execute("SELECT reason FROM files WHERE relpath = 's/f002.raw'").fetchone()
    db.close()
    assert "Input/output error" in reason


def _verified_copies(state: Path) -> dict[str, str]:
    """relpath -> destination name of every verified copy, from the journal (names are not guessed)."""
    j = Journal(state / "journal.sqlite", readonly=True)
    try:
        return {row.relpath: copy.dest for row, copy in j.verified_copies()}
    finally:
        j.close()


def _audit_actions(state: Path) -> list[str]:
    j = Journal(state / "journal.sqlite", readonly=True)
    try:
        return [a for _, _, a, _ in j.audit_log()]
    finally:
        j.close()


def _holding_source_data(dest: Path, files: dict[str, bytes]) -> list[Path]:
    """Files at the destination whose content is (a prefix of) a source's: copies, partial or whole,
    under any name (the oracle does not depend on how acqd names objects or temporaries)."""
    out = []
    for p in dest.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            if len(data) >= 4096 and any(src.startswith(data) for src in files.values()):
                out.append(p)
    return out


def test_corrupt_reads_are_caught_by_verification(site: Site) -> None:
    """A destination that returns flipped bytes on read: every copy fails its read-back, is retried,
    never recorded verified and never released; once reads are right again everything ships, and
    `acqd verify` reports the corruption when it comes back."""
    files = populate(site.watch, 4, 300_000)
    site.write_config()
    set_faults(site.control, corrupt_reads="*/s/f0*")
    d = Background("run", "--config", str(site.config), env=site.env)

    def retried_or_done() -> bool:
        a, states = site.attempts(), journal_states(site.state)
        done = any(s in ("verified", "released") for s in states.values())
        return done or (len(a) == 4 and min(a.values()) >= 2)

    try:
        wait_for(retried_or_done, 60, "every file retried at its read-back")
        states = journal_states(site.state)
        assert not any(s in ("verified", "released") for s in states.values()), f"a corrupt copy passed: {states}"
        assert "verified" not in _audit_actions(site.state), "recorded verified with a corrupt copy"
        assert tree(site.watch) == files, "a source was released while its copy read back corrupt"
        set_faults(site.control)  # reads are right again
        wait_for(lambda: set(journal_states(site.state).values()) == {"released"}, 60, "all released")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "verify" in err.lower() or "decoded" in err
    copies = _verified_copies(site.state)
    assert sorted(copies) == sorted(files)
    assert all((site.dest / dest).read_bytes() == files[rel] for rel, dest in copies.items())
    r = run_acqd("verify", "--config", str(site.config), env=site.env)
    assert r.returncode == 0 and "4 copies OK, 0 failed" in r.stdout, r.stdout + r.stderr
    set_faults(site.control, corrupt_reads="*/s/f002*")
    r = run_acqd("verify", "--config", str(site.config), env=site.env)
    assert r.returncode == 1 and "3 copies OK, 1 failed" in r.stdout, r.stdout + r.stderr
    assert "s/f002.raw" in r.stderr


@pytest.mark.parametrize(
    ("kind", "op", "n"),
    [("eio", "fsync", 4), ("eio", "rename", 4), ("enospc", "fsync", 4), ("enospc", "rename", 4), ("eio", "fsync", 16)],
)
def test_local_destination_failing_at_fsync_or_rename(site: Site, tmp_path: Path, kind: str, op: str, n: int) -> None:
    """The `file://` tier itself (os.fsync / os.replace on a real folder, failing inside the child):
    nothing partial under a final name, the temporary removed, nothing released; once the fault is
    lifted every file ships, verifies and is released. 16 small files make one batch, made durable
    with one syncfs(2) of the tier's filesystem (Tier.write_many): its failure fails them all."""
    site.write_config(url=f"file://{site.dest}")
    if n >= 8:  # the claim first (its own write would meet the fault before any batch does)
        (site.watch / "first.raw").write_bytes(b"claims the prefix")
        r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "30s", env=site.env)
        assert r.returncode == 0, r.stderr
    files = populate(site.watch, n, 300_000 if n < 8 else 20_000)
    control = tmp_path / "os-faults.json"
    set_faults(control, under=str(site.dest), **{kind: {op: 1_000_000}})
    env = dict(
        site.env,
        PYTHONPATH=os.pathsep.join([install_os_faults(tmp_path / "osfaults"), site.env["PYTHONPATH"]]),
        ACQD_TEST_OS_FAULTS=str(control),
    )
    d = Background("run", "--config", str(site.config), env=env)
    try:
        wait_for(
            lambda: len(a := site.attempts(files)) == n and min(a.values()) >= 2,
            240,
            "retries",
            daemon=d,
            state=site.state,
        )
    finally:
        code, err = d.terminate()  # drains: the attempt in flight fails and cleans up too
    assert code == 0, err
    assert ("I/O error" if kind == "eio" else "no space left") in err
    states = {rel: s for rel, s in journal_states(site.state).items() if rel in files}
    assert not any(s in ("verified", "released") for s in states.values()), states
    assert tree(site.watch) == files, "released without a verified copy"
    assert _holding_source_data(site.dest, files) == [], "a partial copy or a temporary was left behind"
    set_faults(control, under=str(site.dest))  # lifted
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "30s", env=env)
    assert r.returncode == 0, r.stderr
    assert set(journal_states(site.state).values()) == {"released"} and tree(site.watch) == {}
    copies = {rel: dest for rel, dest in _verified_copies(site.state).items() if rel in files}
    assert sorted(copies) == sorted(files)
    assert all((site.dest / dest).read_bytes() == files[rel] for rel, dest in copies.items())


def test_a_zarr_copy_is_named_only_once_every_file_in_it_is_durable(site: Site, tmp_path: Path) -> None:
    """A Zarr copy is a folder of objects published by renaming the folder, and a rename makes the
    name durable, not what the folder holds: each shard and metadata file must be fsynced first.
    With every fsync under the destination failing (EIO), no copy may be named, verified or
    released (read back from the page cache it would pass, and a power cut would leave it empty);
    once lifted, every movie ships and reads back as written."""
    import numpy as np
    import zarr

    from tests.test_frames import k3_mrc, write_profiles

    movies = {}
    for i in range(3):
        raw, data = k3_mrc(n=5 + i)
        (site.watch / "s").mkdir(exist_ok=True)
        (site.watch / f"s/m{i}.mrc").write_bytes(raw)
        movies[f"s/m{i}.mrc"] = data
    files = {rel: (site.watch / rel).read_bytes() for rel in movies}
    det = write_profiles(tmp_path / "det")
    site.config.write_text(
        f"""
instrument: scope
state_dir: {site.state}
detectors_dir: {det}
watch:
  - {{path: {site.watch}, detector: t-mrc-zarr, settle: 0.2s, placement: {{release_local: after_verify}}}}
tiers:
  central: {{url: "file://{site.dest}"}}
limits: {{retry_initial: 50ms, retry_max: 300ms}}
"""
    )
    control = tmp_path / "os-faults.json"
    # the objects of the Zarr copies only (the claim and the session manifest are written as before)
    set_faults(control, under=str(site.dest), containing="~.zarr/", eio={"fsync": 1_000_000})
    env = dict(
        site.env,
        PYTHONPATH=os.pathsep.join([install_os_faults(tmp_path / "osfaults"), site.env["PYTHONPATH"]]),
        ACQD_TEST_OS_FAULTS=str(control),
    )
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "3s", env=env)
    states = {rel: s for rel, s in journal_states(site.state).items() if rel in files}
    assert not any(s in ("verified", "released") for s in states.values()), (states, r.stderr[-2000:])
    assert "I/O error" in r.stderr, r.stderr[-2000:]
    assert tree(site.watch) == files, "released without a durable copy"
    from acqd.naming import is_temp

    named = [p for p in site.dest.rglob("*.zarr") if not is_temp(p.name)]
    assert named == [], f"a copy was named before its files were durable: {named}"
    set_faults(control, under=str(site.dest))  # lifted
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "30s", env=env)
    assert r.returncode == 0, r.stderr
    assert tree(site.watch) == {}
    copies = _verified_copies(site.state)
    assert sorted(copies) == sorted(files)
    for rel, dest in copies.items():
        arr = zarr.open_group(str(site.dest / dest), mode="r")["0"]
        assert np.array_equal(arr[:], movies[rel])


def test_byte_budget_bounds_concurrent_ships(site: Site) -> None:
    """The in-flight budget is what bounds memory: with room for one file's two chunks, four ship
    workers write one file at a time; with a bigger budget they write several at once (so the
    observation can see concurrency)."""
    stats = Path(str(site.control) + ".stats")
    files = populate(site.watch, 6, 4 << 20)
    set_faults(site.control, delay_per_mib=0.2)  # each 4 MiB file takes 0.8 s or more to write
    site.write_config(limits="inflight_bytes: 2MiB, chunk_bytes: 1MiB, concurrent_files: 4, io_threads: 4")
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "60s", env=site.env)
    assert r.returncode == 0, r.stderr
    assert sorted(_verified_copies(site.state)) == sorted(files)
    assert json.loads(stats.read_text())["max_writers"] == 1, "ships went past the in-flight budget"
    stats.unlink()
    more = populate(site.watch, 6, 4 << 20, seed=5, prefix="t/g")
    site.write_config(limits="inflight_bytes: 64MiB, chunk_bytes: 1MiB, concurrent_files: 4, io_threads: 4")
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "60s", env=site.env)
    assert r.returncode == 0, r.stderr
    assert sorted(_verified_copies(site.state)) == sorted({**files, **more})
    assert json.loads(stats.read_text())["max_writers"] >= 2
