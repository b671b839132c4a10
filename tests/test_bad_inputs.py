"""The bad-input corpus, one test each, against the real daemon: what a camera PC, a user or a
filesystem can do to a file while acqd watches it. Each ends quarantined with a reason, skipped
with a reason, or shipped correctly; none loses data. (Zero-byte, unreadable, symlinks, FIFOs,
odd names: test_e2e.py; format lies: test_frames.py; faults: test_faults.py.)

The races (a file replaced, renamed, truncated or swapped for a symlink while it is being shipped)
are made deterministic with a slow destination: the test waits until the temporary exists at the
destination, so the transfer is known to be under way, then acts.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from acqd.naming import CLAIM
from tests.conftest import Background, journal_rows, journal_states, run_acqd, tree, wait_for, write_config
from tests.faults import set_faults
from tests.test_faults import Site, populate

pytestmark = pytest.mark.slow


def _in_transfer(site: Site) -> bool:
    """A file's copy is being written: its temporary is there (not the destination claim's, written
    at the start, before the daemon has looked at any file)."""
    return any(p.name.startswith(".~acqd-tmp") and CLAIM not in p.name for p in site.dest.rglob(".*"))


def _slow_site(tmp_path: Path, files: dict[str, bytes] | None = None) -> tuple[Site, Background]:
    site = Site(tmp_path)
    site.write_config(limits="concurrent_files: 1, chunk_bytes: 256KiB")
    set_faults(site.control, delay_per_mib=0.8)
    return site, Background("run", "--config", str(site.config), env=site.env)


def _rows(site: Site) -> dict[tuple[str, int], tuple[str, str | None]]:
    return {(rel, v): (st, reason) for rel, st, reason, v in journal_rows(site.state)}


def test_file_replaced_by_another_with_the_same_name_during_shipping(tmp_path: Path) -> None:
    site, d = _slow_site(tmp_path)
    populate(site.watch, 1, 3 << 20)
    try:
        wait_for(lambda: _in_transfer(site), 30, "the transfer to start")
        new = os.urandom(1 << 20)
        (site.watch / "s/f000.raw.part").write_bytes(new)  # written under a temporary name
        os.replace(site.watch / "s/f000.raw.part", site.watch / "s/f000.raw")
        set_faults(site.control)
        wait_for(lambda: journal_states(site.state).get("s/f000.raw") == "released", 60, "the new file")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    # the old content is no longer on the disk (the user replaced it): the copy in flight is
    # abandoned, never committed, and the file now under that name is shipped and verified
    assert "replaced by another file while being read" in err
    assert site.stored() == {"s/f000.raw": new} and site.no_temporaries()
    assert _rows(site)[("s/f000.raw", 1)] == ("released", None)


def test_file_renamed_mid_copy(tmp_path: Path) -> None:
    site, d = _slow_site(tmp_path)
    data = populate(site.watch, 1, 3 << 20)["s/f000.raw"]
    try:
        wait_for(lambda: _in_transfer(site), 30, "the transfer to start")
        os.rename(site.watch / "s/f000.raw", site.watch / "s/renamed.raw")
        set_faults(site.control)
        wait_for(lambda: journal_states(site.state).get("s/renamed.raw") == "released", 60, "the new name shipped")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    # the old name is recorded as gone (its copy in flight is abandoned); the content ships under its
    # new name and is released after its own verification
    assert _rows(site)[("s/f000.raw", 1)] == ("vanished", "removed or renamed while being read")
    assert site.stored() == {"s/renamed.raw": data} and site.no_temporaries()
    assert tree(site.watch) == {}


def test_file_truncated_after_it_settled(tmp_path: Path) -> None:
    site, d = _slow_site(tmp_path)
    populate(site.watch, 1, 3 << 20)
    try:
        wait_for(lambda: _in_transfer(site), 30, "the transfer to start")
        with open(site.watch / "s/f000.raw", "r+b") as f:
            f.truncate(100_000)
            f.seek(0)
            short = f.read()
        set_faults(site.control)
        wait_for(lambda: journal_states(site.state).get("s/f000.raw") == "released", 60, "shipped")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert site.stored() == {"s/f000.raw": short}  # what the file is once it settled again
    assert "shrank while being read" in err or "modified while being read" in err


def test_symlink_swapped_in_during_reading(tmp_path: Path) -> None:
    site, d = _slow_site(tmp_path)
    populate(site.watch, 1, 3 << 20)
    outside = tmp_path / "outside.raw"
    outside.write_bytes(b"not acqd's business")
    try:
        wait_for(lambda: _in_transfer(site), 30, "the transfer to start")
        os.symlink(outside, site.watch / "s/link.tmp")
        os.replace(site.watch / "s/link.tmp", site.watch / "s/f000.raw")
        set_faults(site.control)
        wait_for(lambda: journal_states(site.state).get("s/f000.raw") == "quarantined", 60, "the quarantine")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "replaced by another file while being read" in err
    assert _rows(site)[("s/f000.raw", 1)] == ("quarantined", "symlink: not followed (acqd ships regular files only)")
    assert site.stored() == {} and site.no_temporaries()  # nothing followed, nothing half-written
    assert os.path.islink(site.watch / "s/f000.raw") and outside.read_bytes() == b"not acqd's business"


def test_hard_links_ship_as_two_files(tmp_path: Path) -> None:
    site = Site(tmp_path)
    data = populate(site.watch, 1, 200_000)["s/f000.raw"]
    os.link(site.watch / "s/f000.raw", site.watch / "s/hardlink.raw")
    site.write_config()
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s", env=site.env)
    assert r.returncode == 0, r.stderr
    # releasing one name moves the inode's ctime under the other name; that one may then be shipped
    # again as a version before its own release (never released on the strength of the old identity)
    assert {"s/f000.raw", "s/hardlink.raw"} <= set(site.stored()) and set(site.stored().values()) == {data}
    assert tree(site.watch) == {}


def test_device_nodes_and_sockets_are_quarantined(tmp_path: Path) -> None:
    site = Site(tmp_path)
    (site.watch / "s").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(site.watch / "s/camera.sock"))
    if os.geteuid() == 0:
        os.mknod(site.watch / "s/null.raw", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    (site.watch / "s/good.raw").write_bytes(b"good" * 100)
    site.write_config()
    try:
        r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s", env=site.env)
    finally:
        sock.close()
    assert r.returncode == 0, r.stderr
    rows = _rows(site)
    assert rows[("s/camera.sock", 1)] == ("quarantined", "not a regular file (FIFO, socket or device node)")
    if os.geteuid() == 0:
        assert rows[("s/null.raw", 1)][0] == "quarantined"
        assert stat.S_ISCHR(os.lstat(site.watch / "s/null.raw").st_mode)
    assert site.stored() == {"s/good.raw": b"good" * 100}


def test_a_directory_named_like_a_file(tmp_path: Path) -> None:
    site = Site(tmp_path)
    (site.watch / "s/movie_001.mrc").mkdir(parents=True)
    (site.watch / "s/movie_001.mrc/frame.raw").write_bytes(b"inside" * 100)
    site.write_config()
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s", env=site.env)
    assert r.returncode == 0, r.stderr
    assert site.stored() == {"s/movie_001.mrc/frame.raw": b"inside" * 100}


@pytest.mark.parametrize("journald", [False, True], ids=["stderr", "journald"])
def test_a_batch_of_small_files_is_one_log_line_per_file_each_with_its_time_and_level(
    tmp_path: Path, journald: bool
) -> None:
    """Small files ship and are released in batches, and a batch's outcomes are written to the log
    as one record: each file still has a line of its own, with its time and level (under systemd its
    priority), and a name with a line break, a `%`, quotes or an escape sequence stays on its line,
    reads back whole and never reaches the terminal raw."""
    site = Site(tmp_path)
    files = populate(site.watch, 300, 1000)  # more than one batch of 256
    odd = {
        "s/odd\nname.raw": b"o" * 100,
        "s/100% %s %(x)s.raw": b"p" * 100,
        's/it\'s "q".raw': b"q" * 100,
        "s/esc\x1b[31m.raw": b"e" * 100,
    }
    for rel, data in odd.items():
        (site.watch / rel).write_bytes(data)
    names = {**files, **odd}
    site.write_config(url=f"file://{site.dest}")
    env = {k: v for k, v in site.env.items() if k != "JOURNAL_STREAM"}
    if journald:
        env["JOURNAL_STREAM"] = "8:12345"
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s", env=env)
    assert r.returncode == 0, r.stderr
    assert site.stored() == names
    head = "<6>" if journald else r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO "
    assert "\x1b" not in r.stderr  # a name's escape sequence never reaches the operator's terminal
    lines = r.stderr.splitlines()
    assert all(re.match(r"<\d>" if journald else head[: -len("INFO ")] + "[A-Z]+ ", ln) for ln in lines), r.stderr
    for kind in ("verified", "released"):
        said = [m[1] for ln in lines if (m := re.match(head + kind + r" ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", ln))]
        assert sorted(ast.literal_eval(x) for x in said) == sorted(names), (kind, r.stderr[-3000:])


def test_awkward_names(tmp_path: Path) -> None:
    site = Site(tmp_path)
    s = site.watch / "s"
    s.mkdir()
    names = {
        "new\nline.raw": b"1" * 100,
        "tab\tand spaces .raw": b"2" * 100,
        "x..y.raw": b"3" * 100,
        "a" * 251 + ".raw": b"4" * 100,  # 255 bytes: the longest name there is
        "é" * 100 + ".raw": b"5" * 100,  # 204 bytes of UTF-8
    }
    for name, data in names.items():
        (s / name).write_bytes(data)
    bad = os.fsencode(str(s)) + b"/caf\xe9.raw"  # Latin-1, not UTF-8
    with open(bad, "wb") as f:
        f.write(b"latin-1 name")
    site.write_config()
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s", env=site.env)
    assert r.returncode == 0, r.stderr
    assert site.stored() == {f"s/{n}": d for n, d in names.items()}
    lines = r.stderr.splitlines()  # one line per record: the newline in a name (in a URL) is escaped
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", ln) for ln in lines), r.stderr
    assert any("new\\nline.raw (" in ln for ln in lines), r.stderr  # `verified 's/new\nline.raw' -> URL (`
    rows = journal_rows(site.state)
    badrow = [row for row in rows if row[1] == "quarantined"]
    assert len(badrow) == 1 and "not valid UTF-8" in (badrow[0][2] or "")
    assert os.path.exists(bad)
    assert site.no_temporaries()
    out = tmp_path / "restored"  # into a folder, under the file's own name: its temporary fits too
    out.mkdir()
    for name, data in names.items():
        r = run_acqd("restore", f"s/{name}", str(out), "--config", str(site.config), env=site.env)
        assert r.returncode == 0 and (out / name).read_bytes() == data, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary left


def test_a_name_too_long_once_compressed_is_quarantined_not_retried(tmp_path: Path) -> None:
    site = Site(tmp_path)
    (site.watch / "s").mkdir()
    name = "a" * 251 + ".raw"  # + "~.zst" would be 260 bytes
    (site.watch / "s" / name).write_bytes(b"x" * 1000)
    write_config(
        site.config,
        f"""
instrument: scope
state_dir: {site.state}
watch:
  - {{path: {site.watch}, settle: 0.2s, placement: {{compress: zstd, release_local: after_verify}}}}
tiers:
  central: {{url: "file://{site.dest}"}}
""",
    )
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s")
    assert r.returncode == 0, r.stderr
    [(_, state, reason, _)] = journal_rows(site.state)
    assert state == "quarantined" and "would be 260 bytes" in (reason or "")
    assert (site.watch / "s" / name).exists() and site.stored() == {}


def test_mtimes_far_in_the_past_or_future(tmp_path: Path) -> None:
    """A camera PC whose clock is wrong (or jumps) writes odd mtimes; settling uses the monotonic
    clock and stillness, never the wall clock, so such files ship normally."""
    site = Site(tmp_path)
    files = populate(site.watch, 2, 10_000)
    os.utime(site.watch / "s/f000.raw", (4_102_444_800, 4_102_444_800))  # 2100
    os.utime(site.watch / "s/f001.raw", (1, 1))  # 1970
    site.write_config()
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s", env=site.env)
    assert r.returncode == 0, r.stderr
    assert site.stored() == files


def test_sigterm_mid_transfer_drains_and_resumes(tmp_path: Path) -> None:
    site, d = _slow_site(tmp_path)
    files = populate(site.watch, 3, 2 << 20)
    try:
        wait_for(lambda: _in_transfer(site), 30, "the transfer to start")
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=60)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "stopping" in err
    stored = site.stored()
    assert all(stored[k] == files[k] for k in stored)  # whatever is there is whole
    assert len(stored) < 3, "a drain takes no new files"
    set_faults(site.control)
    r = run_acqd("run", "--config", str(site.config), "--once", "--retry-for", "120s", env=site.env)
    assert r.returncode == 0, r.stderr
    assert site.stored() == files and site.no_temporaries()


POLICY = """apiVersion: acqd/v1
kind: RetentionPolicy
metadata: {name: test}
spec:
  tiers: [central]
  default: {name: keep}
"""


def test_sighup_with_a_broken_policy_keeps_the_old_one(tmp_path: Path) -> None:
    site = Site(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    site.write_config(url=f"file://{site.dest}", extra=f"policy: {policy}\n")
    d = Background("run", "--config", str(site.config))
    try:
        populate(site.watch, 1, 1000, prefix="a/f")
        wait_for(lambda: journal_states(site.state).get("a/f000.raw") == "released", 30, "the first file")
        policy.write_text(POLICY.replace("tiers: [central]", "tiers: [central, nowhere]"))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in d.stderr(), 30, "the reload error")
        populate(site.watch, 1, 1000, seed=5, prefix="b/f")  # still shipping, with the old policy
        wait_for(lambda: journal_states(site.state).get("b/f000.raw") == "released", 30, "a file after the reload")
        policy.write_text(POLICY)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "retention policy" in d.stderr().rpartition("reload failed")[2], 30, "a good reload")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "keeping the running configuration" in err and "nowhere" in err


def test_sigusr1_dumps_what_each_task_and_thread_waits_on_and_changes_nothing(tmp_path: Path) -> None:
    """`systemctl kill -s USR1 acqd` on a daemon that seems stuck: its log says what each asyncio task
    (scanner, tracker, workers...) and each thread is waiting on; the daemon keeps shipping."""
    site = Site(tmp_path)
    site.write_config(url=f"file://{site.dest}")
    d = Background("run", "--config", str(site.config))
    try:
        populate(site.watch, 1, 1000, prefix="a/f")
        wait_for(lambda: journal_states(site.state).get("a/f000.raw") == "released", 30, "the first file")
        d.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "state dump:" in d.stderr(), 30, "the state dump")
        dump = d.stderr().partition("state dump:")[2]
        populate(site.watch, 1, 1000, seed=5, prefix="b/f")  # still shipping after the dump
        wait_for(lambda: journal_states(site.state).get("b/f000.raw") == "released", 30, "a file after the dump")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    for task in ("-- task tracker", "-- task intake", "-- task scanner"):
        assert task in dump, dump
    for held in ("waiting to settle or retry: ", "in flight: ", "releases waiting for their session manifest: "):
        assert held in dump, dump
    assert "_tracker" in dump and "-- thread acqd-io" in dump, dump
    assert "\n-- task scanner" in dump and "\\n-- task" not in dump, "one line per line, not escaped breaks"


def test_journal_locked_at_start_is_a_clear_error_and_touches_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.write_config(url=f"file://{site.dest}")
    files = populate(site.watch, 2, 1000)
    r = run_acqd("run", "--config", str(site.config), "--once")  # create the journal
    assert r.returncode == 0, r.stderr
    more = populate(site.watch, 2, 1000, seed=8, prefix="t/g")
    before = tree(site.dest)
    locked = threading.Event()
    release = threading.Event()

    def hold() -> None:
        db = sqlite3.connect(site.state / "journal.sqlite", isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(60)
        db.execute("ROLLBACK")
        db.close()

    t = threading.Thread(target=hold)
    t.start()
    try:
        locked.wait(10)
        r = run_acqd("run", "--config", str(site.config), "--once")
    finally:
        release.set()
        t.join()
    assert r.returncode != 0
    assert "cannot open the journal" in r.stderr and "locked" in r.stderr
    assert "Traceback" not in r.stderr
    assert tree(site.dest) == before and sorted(tree(site.watch)) == sorted(more)
    del files


def test_corrupt_journal_at_start_is_a_clear_error_and_touches_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.write_config(url=f"file://{site.dest}")
    files = populate(site.watch, 2, 1000)
    (site.state / "journal.sqlite").write_bytes(b"this is not SQLite " * 500)
    r = run_acqd("run", "--config", str(site.config), "--once")
    assert r.returncode != 0
    assert "file is not a database" in r.stderr and "Traceback" not in r.stderr
    assert tree(site.dest) == {} and tree(site.watch) == files
    assert (site.state / "journal.sqlite").read_bytes() == b"this is not SQLite " * 500  # left for forensics


BURST_FOLDERS, BURST_PER_FOLDER = 20, 1000


def test_a_burst_of_files_that_overflows_inotifys_queue_all_shipped(tmp_path: Path) -> None:
    """20,000 files created in a burst while the daemon is held (SIGSTOP: a daemon starved of CPU or
    swapped out): their events, three or more a file, overflow inotify's default queue (16,384), which
    watchdog says once the daemon runs again. Nothing is lost: every file ships and is released, with
    the periodic scan an hour away (watchdog reconciles its watches, and acqd rescans its roots). The
    burst ran 100,000 files while the daemon ran, 4-7 minutes of a CI run, and nothing showed that
    the queue overflowed at all; what a burst of that size takes is measured by `python -m bench
    smallfiles --files 100000`, which checks every file verified."""
    total = BURST_FOLDERS * BURST_PER_FOLDER
    site = Site(tmp_path)
    # the periodic scan an hour away: the files whose events were lost are found by what the
    # overflow sets off, not by the next scan
    write_config(
        site.config,
        f"""
instrument: scope
state_dir: {site.state}
watch:
  - {{path: {site.watch}, settle: 0.2s, scan_interval: 1h, placement: {{release_local: after_verify}}}}
tiers:
  central: {{url: "file://{site.dest}"}}
limits: {{concurrent_files: 8}}
""",
    )
    subs = [site.watch / f"burst/d{i:03d}" for i in range(BURST_FOLDERS)]
    for sub in subs:  # there at the start: watched from the start (a folder made later is watched
        sub.mkdir(parents=True)  # once its creation is read, and the daemon is held then)
    d = Background("run", "--config", str(site.config))
    try:
        wait_for(lambda: "is there: scanning it" in d.stderr(), 30, "the daemon to watch its root", d)
        time.sleep(1.0)
        d.proc.send_signal(signal.SIGSTOP)
        try:
            for i, sub in enumerate(subs):
                for k in range(BURST_PER_FOLDER):
                    (sub / f"f{k:04d}.raw").write_bytes(b"%d" % (i * BURST_PER_FOLDER + k))
        finally:
            d.proc.send_signal(signal.SIGCONT)
        # no deadline on the whole (speed is measured in the benchmarks): only a stall fails the test
        last, since = -1, time.monotonic()
        while (n := _count(site, "released")) < total:
            if n != last:
                last, since = n, time.monotonic()
            if time.monotonic() - since >= 300:  # a stall: what the daemon's journal and tasks say
                wait_for(lambda: False, 0, f"a file released ({n} of {total:,} after 5 minutes)\n{_stuck(site, d)}", d)
            assert d.proc.poll() is None, d.stderr()[-3000:]
            time.sleep(1.0)
    finally:
        code, err = d.terminate(timeout=120)
    assert code == 0, err
    assert "queue overflowed" in err, "inotify's queue did not overflow: the test proves nothing"
    assert sum(1 for _ in (site.dest / "scope/burst").rglob("*.raw")) == total
    assert not any((site.watch / "burst").rglob("*.raw"))


def _stuck(site: Site, d: Background, most: int = 20) -> str:
    """The files of a stalled burst not released: their rows, audit trails, log lines and folders."""
    db = sqlite3.connect(f"file:{site.state / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT id, relpath, version, state, attempts, reason FROM files WHERE state != 'released' LIMIT ?",
            (most,),
        ).fetchall()
        total = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        trails = {r[0]: db.execute("SELECT * FROM audit WHERE file_id = ?", (r[0],)).fetchall() for r in rows}
    finally:
        db.close()
    log = d.stderr().splitlines()
    out = [f"journal rows: {total}; not released: {rows}"]
    for r in rows:
        where = site.watch / r[1]
        out.append(f"-- {r[1]}: audit {trails[r[0]]}")
        out.append(f"   folder: {sorted(p.name for p in where.parent.iterdir() if not p.name.startswith('f'))[:20]}")
        out.append(f"   on disk: {where.exists()}; log lines: {[x for x in log if r[1] in x][-20:]}")
    listed = {str(p.relative_to(site.watch)) for p in (site.watch / "burst").rglob("*.raw")}
    out.append(f"files left in the watch folder: {len(listed)}: {sorted(listed)[:most]}")
    return "\n".join(out)


def _count(site: Site, state: str) -> int:
    try:
        db = sqlite3.connect(f"file:{site.state / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM files WHERE state = ?", (state,)).fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def test_once_names_the_files_its_ignore_globs_pass_over(tmp_path: Path) -> None:
    """`~*`, `.*`, `*.tmp` are a camera's temporary names and never shipped; a data file that happens
    to have such a name stayed on the disk, never backed up, and `run --once` said nothing and exited
    0 (a stranger's review). It is named (a warning; ignoring it is the configured rule); an ignored
    folder is named as a folder (not entered), and a shipped file is not named."""
    acq = tmp_path / "acq"
    (acq / "s" / ".cache").mkdir(parents=True)
    (acq / "s" / "~~~.dat").write_bytes(b"a data file with a temporary's name")
    (acq / "s" / "run.tmp").write_bytes(b"t")
    (acq / "s" / ".cache" / "inside.dat").write_bytes(b"c")
    (acq / "s" / "real.dat").write_bytes(b"r")
    r = run_acqd(
        "run", "--once", "--watch", str(acq), "--dest", str(tmp_path / "c"), "--state-dir", str(tmp_path / "st")
    )
    assert r.returncode == 0, r.stderr
    [line] = [ln for ln in r.stderr.splitlines() if "not shipped: their names match the ignore globs" in ln]
    assert "WARNING 3 file(s) or folder(s)" in line and "~*" in line, line
    assert f"'{acq}/s/~~~.dat'" in line and f"'{acq}/s/run.tmp'" in line and f"'{acq}/s/.cache/'" in line, line
    assert "inside.dat" not in line and "real.dat" not in line, line
    assert sorted(journal_states(tmp_path / "st")) == ["s/real.dat"]
