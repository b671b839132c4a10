"""A release deletes only what is safe to delete (issue 12, part 2), against the real daemon.

- a file a process still has open for writing is shipped (as versions) but never released until the
  writer has closed it;
- the stored copy is re-checked before every release, and one that has gone or changed is shipped
  again, never trusted (also when a release interrupted by a crash is finished at start);
- the delete walks from the watch root without following a symlink, and compares the whole identity
  (device, inode, size, mtime, ctime) with what was shipped.

Windows between "shipped" and "released" are made deterministic with a process that holds the file
open (the release waits for it) or with the `before_release` crash point.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zstandard

from acqd.journal import Journal
from acqd.openfiles import (
    Scan,
    WriterCheck,
    fdinfo_writes,
    mapped_key,
    names_a_path,
    scan,
    shared_writable_inodes,
    visibility_problem,
)
from acqd.unlink import GONE, NotBelow, lstat_below, unlink_below, unlink_many
from tests.conftest import (
    REQUIRE,
    Background,
    acqd_yaml,
    journal_rows,
    journal_states,
    run_acqd,
    tree,
    wait_for,
    write_config,
)

# -- helpers --------------------------------------------------------------------------------------

HOLDER = (
    "import os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR)\n"
    "print('open', flush=True)\n"
    "sys.stdin.readline()\n"
    "os.close(fd)\n"
)

# appends one plane at a time to one open file, pausing longer than the settle window, and checks
# after each pause that the name still leads to the inode it writes (not unlinked under it)
WRITER = """
import os, random, sys, time
path, planes, size, pause, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
rng = random.Random(12)
fd = os.open(path + ".part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.rename(path + ".part", path)
for i in range(planes):
    os.write(fd, rng.randbytes(size))
    time.sleep(pause)
    deadline = time.monotonic() + 300  # the test says when the plane has been shipped (or gives up)
    while i == 0 and not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)
    mine, there = os.fstat(fd), os.stat(path)
    if mine.st_nlink == 0 or mine.st_ino != there.st_ino:
        print(f"released under the writer after plane {i + 1}", flush=True)
        sys.exit(3)
print("closed", flush=True)
os.close(fd)
"""


def fault_env(tmp_path: Path, control: Path) -> dict[str, str]:
    """The environment of a daemon whose os calls take the faults in `control` (tests/faults.py)."""
    from tests.faults import install_os_faults

    repo = Path(__file__).resolve().parent.parent
    hook = install_os_faults(tmp_path / "hook")
    return dict(
        os.environ,
        ACQD_TEST_OS_FAULTS=str(control),
        PYTHONPATH=os.pathsep.join([hook, str(repo), os.environ.get("PYTHONPATH", "")]),
    )


def planes(n: int, size: int) -> bytes:
    rng = random.Random(12)
    return b"".join(rng.randbytes(size) for _ in range(n))


def config(
    tmp_path: Path, watch: Path, dest: Path, state: Path, *, verify: str = "quick", url: str = "", poll: bool = False
) -> Path:
    """`poll`: scans every 0.3 s (a running daemon meets the same files again and again)."""
    scans = ", mode: poll, scan_interval: 0.3s" if poll else ""
    return acqd_yaml(
        tmp_path / "acqd.yaml",
        state=state,
        watch=f"path: {watch}, settle: 0.3s{scans}, placement: {{release_local: after_verify}}",
        tiers={"central": f'url: "{url}"'} if url else dest,
        limits=f"retry_initial: 50ms, retry_max: 300ms, release_verify: {verify}",
    )


def stored(dest: Path) -> dict[str, bytes]:
    base = dest / "scope"
    return {k: v for k, v in tree(base).items() if "acqd-manifest" not in k} if base.exists() else {}


def audit(state: Path, action: str) -> list[dict[str, Any]]:
    path = state / "journal.sqlite"
    if not path.exists():
        return []
    j = Journal(path, readonly=True)
    try:
        return [d for _, _, a, d in j.audit_log() if a == action]
    except Exception:  # the daemon is still creating the schema
        return []
    finally:
        j.close()


@contextmanager
def held_open(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with `path` open for writing (O_RDWR) until the block ends."""
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "open"
        yield p
    finally:
        if p.poll() is None:
            assert p.stdin is not None
            p.stdin.write("\n")
            p.stdin.flush()
        p.wait(timeout=30)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the writer scan (real processes, real /proc) -------------------------------------------------


def test_fdinfo_and_link_parsing() -> None:
    assert fdinfo_writes("pos:\t0\nflags:\t0100001\nmnt_id:\t24\n")  # O_WRONLY
    assert fdinfo_writes("pos:\t0\nflags:\t02100002\n")  # O_RDWR
    assert not fdinfo_writes("pos:\t0\nflags:\t0100000\nmnt_id:\t24\n")  # O_RDONLY
    assert fdinfo_writes("pos:\t0\nflags:\tzz\n") and fdinfo_writes("")  # doubt holds a release back
    assert names_a_path("/data/acq/s/f.raw") and names_a_path("/data/x (deleted)")
    assert not any(map(names_a_path, ("socket:[123]", "pipe:[9]", "anon_inode:[eventfd]", "/proc/1", "/sys/x")))
    assert names_a_path("/dev/shm/acq/f.raw")  # a tmpfs an acquisition may write to: its writers are seen
    assert names_a_path("/dev/ramdisk/acq/f.raw")  # and any other mounted under /dev (a review)
    assert visibility_problem("CapEff:\t000001ffffffffff\n") is None  # root
    assert visibility_problem("CapEff:\t0000000000080004\n") is None  # CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH
    assert "CAP_DAC_READ_SEARCH" in (visibility_problem("CapEff:\t0000000000080000\n") or "")
    assert "CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH" in (visibility_problem("CapEff:\t0000000000000000\n") or "")
    assert visibility_problem("") is not None


def test_scan_finds_writers_of_a_renamed_or_unlinked_file_and_not_readers(tmp_path: Path) -> None:
    written, read, gone = tmp_path / "w.raw", tmp_path / "r.raw", tmp_path / "gone.raw"
    for p in (written, read, gone):
        p.write_bytes(b"x" * 100)
    keys = {p: (os.stat(p).st_dev, os.stat(p).st_ino) for p in (written, read, gone)}
    code = (
        "import os, sys\n"
        "a = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\n"
        "b = os.open(sys.argv[2], os.O_RDONLY)\n"
        "c = os.open(sys.argv[3], os.O_RDWR)\n"
        "os.rename(sys.argv[1], sys.argv[1] + '.moved')\n"
        "os.unlink(sys.argv[3])\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(written), str(read), str(gone)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        found = scan(keys.values())
        assert found.writers.get(keys[written]) == {p.pid}  # renamed while open: still its writer
        assert found.writers.get(keys[gone]) == {p.pid}  # unlinked while open, O_RDWR
        assert keys[read] not in found.writers  # read-only is no writer
        assert found.processes > 1
    finally:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait(timeout=30)
    after = scan(keys.values()).writers  # closed: nobody writes them
    assert keys[written] not in after and keys[read] not in after, after
    # the unlinked file's inode is free once closed: another test's file may have it by now (seen once
    # under pytest-xdist), so of it only this: its writer is gone
    assert p.pid not in after.get(keys[gone], set()), after


def test_shared_writable_mappings_are_writers() -> None:
    maps = (
        b"55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1311 /usr/bin/python3.11\n"
        b"7f0000000000-7f0000400000 rw-s 00000000 fd:01 424242 /data/acq/s/movie.raw (deleted)\n"
        b"7f1000000000-7f1000001000 rw-p 00000000 fd:01 777 /data/acq/s/private.raw\n"  # copy on write
        b"7f2000000000-7f2000001000 r--s 00000000 fd:01 888 /data/acq/s/read.raw\n"  # read-only
        b"7f3000000000-7f3000001000 -w-s 00001000 08:10 999 /data/acq/s/w.raw\n"
        b"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n"
    )
    assert shared_writable_inodes(maps) == {(0xFD, 1, 424242, False), (8, 0x10, 999, False)}
    assert shared_writable_inodes(b"7f1000000000-7f1000001000 rw-p 00000000 fd:01 777 /x\n") == set()
    # shared memory is no file on a disk: its small inode numbers must not hold a file's release back
    shm = (
        b"7f4000000000-7f4000001000 rw-s 00000000 00:01 1031 /memfd:wayland-shm (deleted)\n"
        b"7f5000000000-7f5000001000 rw-s 00000000 00:05 32770 /dev/zero (deleted)\n"
        b"7f6000000000-7f6000001000 rw-s 00000000 00:01 65546 /SYSV00000000 (deleted)\n"
    )
    assert shared_writable_inodes(shm) == set()
    # but a file in /dev/shm or another tmpfs mounted under /dev (a RAM disk an acquisition may write to)
    # is a file: matched by device and inode; a device mapped there (a frame grabber's) never matches a
    # file on another anonymous device by its inode alone (the btrfs rule below)
    ram = (
        b"7f7000000000-7f7000100000 rw-s 00000000 00:1b 5170 /dev/shm/acq/movie.raw\n"
        b"7f8000000000-7f8000100000 rw-s 00000000 00:2e 12 /dev/ramdisk/acq/frames.raw\n"
        b"7f9000000000-7f9000100000 rw-s 00000000 00:05 733 /dev/grabber0\n"
    )
    on_dev = shared_writable_inodes(ram)
    assert on_dev == {(0, 0x1B, 5170, True), (0, 0x2E, 12, True), (0, 5, 733, True)}
    assert mapped_key(os.makedev(0, 0x1B), 5170, on_dev) and mapped_key(os.makedev(0, 0x2E), 12, on_dev)
    assert not mapped_key(os.makedev(0, 0x31), 733, on_dev)  # a tmpfs file of the device node's inode number
    # by device and inode: a file of the same inode number on another filesystem is no writer's
    mapped = shared_writable_inodes(maps)
    assert mapped_key(os.makedev(0xFD, 1), 424242, mapped)
    assert not mapped_key(os.makedev(0xFD, 2), 424242, mapped)
    assert not mapped_key(os.makedev(8, 0x10), 424242, mapped)
    # btrfs: the mapping names the filesystem's anonymous device, stat the subvolume's
    btrfs = shared_writable_inodes(b"7f0000000000-7f0000400000 rw-s 00000000 00:2c 257 /data/acq/m.raw\n")
    assert mapped_key(os.makedev(0, 0x31), 257, btrfs) and not mapped_key(os.makedev(0, 0x31), 258, btrfs)


def test_scan_finds_a_writer_through_a_mapping_whose_descriptor_is_closed(tmp_path: Path) -> None:
    """Found by a stranger's review (twenty-sixth session): a writer that maps a file shared and
    writable, closes its descriptor and goes on writing through the mapping has no descriptor for
    the scan to find: its file was released while it wrote, the rest of its data lost with the
    unlinked inode. A shared writable mapping in /proc/<pid>/maps makes its process a writer."""
    mapped = tmp_path / "mapped.raw"
    mapped.write_bytes(b"\0" * 8192)
    key = (os.stat(mapped).st_dev, os.stat(mapped).st_ino)
    code = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.mmap.restype = ctypes.c_void_p\n"
        "c = ctypes\n"
        "libc.mmap.argtypes = [c.c_void_p, c.c_size_t, c.c_int, c.c_int, c.c_int, c.c_long]\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "addr = libc.mmap(None, 8192, 3, 1, fd, 0)\n"  # PROT_READ|PROT_WRITE, MAP_SHARED
        "assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()\n"
        "os.close(fd)\n"  # no descriptor left: only the mapping
        "ctypes.memset(addr, 7, 100)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(mapped)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        assert not [
            fd for fd in os.listdir(f"/proc/{p.pid}/fd") if os.path.realpath(f"/proc/{p.pid}/fd/{fd}") == str(mapped)
        ]
        assert scan([key]).writers.get(key) == {p.pid}
    finally:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait(timeout=30)
    assert p.pid not in scan([key]).writers.get(key, set())


async def test_concurrent_questions_share_one_scan() -> None:
    calls: list[frozenset[tuple[int, int]]] = []

    def counting(files: Collection[tuple[int, int]]) -> Scan:
        calls.append(frozenset(files))
        time.sleep(0.05)
        return Scan(writers={(1, 2): {42}} if (1, 2) in files else {})

    async def run(fn: Any) -> Scan:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    check = WriterCheck(run, counting)
    answers = await asyncio.gather(*(check.writers([(1, n)]) for n in range(2, 40)))
    assert answers[0] == {(1, 2): {42}} and all(a == {} for a in answers[1:])
    # the first question scans alone; everything asked while it ran shares the second scan
    assert len(calls) == 2 and calls[0] == {(1, 2)} and len(calls[1]) == 37


# -- the delete: from the root's descriptor, no symlink followed ----------------------------------


def test_unlink_below_never_follows_a_symlinked_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "sess").mkdir(parents=True)
    (outside / "sess" / "f.raw").write_bytes(b"outside")
    root.mkdir()
    (root / "sess").symlink_to(outside / "sess")
    with pytest.raises(NotBelow):
        lstat_below(str(root), "sess/f.raw")
    why = unlink_below(str(root), "sess/f.raw", lambda st: None)
    assert why is not None and "symlink" in why
    assert (outside / "sess" / "f.raw").read_bytes() == b"outside"
    # a symlink as the last name is kept too; a plain file is unlinked; a missing one is GONE
    (root / "real").mkdir()
    (root / "real" / "link.raw").symlink_to(outside / "sess" / "f.raw")
    assert unlink_below(str(root), "real/link.raw", lambda st: None) == "no longer a regular file (kept)"
    (root / "real" / "f.raw").write_bytes(b"x")
    assert unlink_below(str(root), "real/f.raw", lambda st: "refused") == "refused"
    assert unlink_below(str(root), "real/f.raw", lambda st: None) is None
    assert not (root / "real" / "f.raw").exists()
    assert unlink_below(str(root), "real/f.raw", lambda st: None) == GONE
    assert (outside / "sess" / "f.raw").read_bytes() == b"outside"
    # in a batch, the folder opened for one file is not a way around the checks for the next
    (root / "top.raw").write_bytes(b"t")
    (root / "y").write_bytes(b"y")
    whys = unlink_many([(str(root), rel, lambda st: None) for rel in ("top.raw", "/y", "./y", "real/../y")], None)
    assert whys[0] is None and all(isinstance(w, str) and "not a plain relative path" in w for w in whys[1:]), whys
    assert (root / "y").exists()


@pytest.mark.parametrize(
    "name",
    [
        b"run." + b"x" * 246,  # a long "extension": everything after the last dot
        b"scan-\xff\xfe-" + b"y" * 240 + b".tif",  # bytes that are not UTF-8, near NAME_MAX
        b"z" * 255,  # no extension, NAME_MAX itself
    ],
    ids=["long-extension", "odd-bytes", "name-max"],
)
def test_a_file_put_back_beside_a_taken_name_gets_a_name_that_fits(tmp_path: Path, name: bytes) -> None:
    """A release interrupted with the file moved aside (crash point `after_move_aside`), and a new file
    under its name meanwhile: the moved file goes beside it, `NAME~acqd-kept-INODE.EXT`, which must fit
    in NAME_MAX (255 bytes) whatever the name. One that does not fit (ENAMETOOLONG) left the file under
    its hidden name, which no scan ships, and failed every start."""
    from acqd.naming import release_aside
    from acqd.unlink import put_back_aside

    folder = tmp_path / "root" / "sess"
    folder.mkdir(parents=True)
    fname = os.fsdecode(name)
    data, newer = os.urandom(5000), os.urandom(3000)
    (folder / fname).write_bytes(data)
    ino = (folder / fname).stat().st_ino
    os.rename(folder / fname, folder / release_aside(ino))  # where the crash left it
    (folder / fname).write_bytes(newer)
    done = put_back_aside(str(tmp_path / "root"), f"sess/{fname}", ino)
    assert done is not None and "~acqd-kept-" in done[0] and done[1] is None
    names = sorted(os.listdir(os.fsencode(folder)))
    [kept] = [n for n in names if n != name]
    assert len(kept) <= 255 and b"~acqd-kept-" in kept
    assert (folder / os.fsdecode(kept)).read_bytes() == data and (folder / fname).read_bytes() == newer
    if b"." in name:  # the extension kept where it fits, so that the layout still knows the file
        assert kept.endswith(name[name.rindex(b".") :]) or len(name) - name.rindex(b".") > 32
    assert kept.startswith(name[:5])


# -- the real daemon ------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_open_multipage_file_is_shipped_as_it_grows_and_released_only_after_close(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Micro-Manager's pattern: one open file, a plane appended every so often (longer than the
    settle window). Every plane reaches the destination, and the file is released after the close."""
    watch, dest, state = dirs
    (watch / "pos0").mkdir()
    target = watch / "pos0" / "MMStack_Pos0.ome.tif"
    n, size = 4, 200_000
    go = tmp_path / "go"
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)))
    try:
        w = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(n), str(size), "1.2", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # the first plane shipped while the file is open (on a loaded machine the daemon may start
        # late: the writer waits for it rather than finishing before anything is seen)
        wait_for(lambda: any(len(c) >= size for c in stored(dest).values()), 120, "the first plane shipped", d)
        go.touch()
        out, _ = w.communicate(timeout=300)
        assert w.returncode == 0, out  # never released under the writer
        wait_for(lambda: journal_states(state).get("pos0/MMStack_Pos0.ome.tif") == "released", 60, "the release")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    final = planes(n, size)
    copies = stored(dest)
    # shipped while it grew (as versions), each copy what the file was then (a prefix of the final
    # content; a heavily loaded machine may catch a plane half-written); the last one is all of it
    assert len(copies) >= 2, sorted(copies)
    assert all(final.startswith(c) for c in copies.values()), {k: len(v) for k, v in copies.items()}
    assert sha(final) in {sha(c) for c in copies.values()}
    assert not target.exists()
    held = audit(state, "release-held")
    assert held and all("open for writing by pid" in h["reason"] for h in held)
    # the copy `acqd restore` gives back is byte-exact
    out = tmp_path / "restored.tif"
    r = run_acqd("restore", "pos0/MMStack_Pos0.ome.tif", str(out), "--config", str(tmp_path / "acqd.yaml"))
    assert r.returncode == 0, r.stderr
    assert sha(out.read_bytes()) == sha(final)


def test_status_says_why_verified_files_are_not_released_yet(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """`acqd status` on a daemon with release on counted a file held for its writer as verified, with
    nothing to say why it was still on the acquisition disk (a stranger's first try). It says how
    many wait and for what, while they wait; once released, and once the daemon stops, nothing."""
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    (watch / "sess" / "f.raw").write_bytes(os.urandom(50_000))
    (watch / "sess" / "g.raw").write_bytes(os.urandom(50_000))

    def status() -> str:
        r = run_acqd("status", "--state-dir", str(state))
        assert r.returncode == 0, r.stderr
        return r.stdout

    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)))
    try:
        with held_open(watch / "sess" / "f.raw"):
            wait_for(lambda: journal_states(state).get("sess/g.raw") == "released", 60, "g released", d, state)
            wait_for(lambda: "release waiting: 1 verified file(s)" in status(), 60, "status to say why", d, state)
            assert "1 open for writing by a process: kept until it is closed" in status()
        wait_for(lambda: journal_states(state).get("sess/f.raw") == "released", 60, "f released", d, state)
        wait_for(lambda: "release waiting" not in status(), 60, "status to say nothing waits", d, state)
        (watch / "sess" / "h.raw").write_bytes(os.urandom(50_000))
        with held_open(watch / "sess" / "h.raw"):
            wait_for(lambda: "release waiting: 1" in status(), 60, "status to say why again", d, state)
            code, err = d.terminate()  # stopped while it waits
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "release waiting" not in status()  # a stopped daemon holds no release back
    assert journal_states(state).get("sess/h.raw") == "verified"
    # a crash while it waits leaves what it last recorded ("not running: as it last saw it"); the next
    # daemon's first look replaces it (a review: it stayed for good, "release waiting" for a file released)
    cfg = config(tmp_path, watch, dest, state)
    with held_open(watch / "sess" / "h.raw"):
        d = Background("run", "--config", str(cfg))
        try:
            wait_for(lambda: "release waiting: 1" in status(), 60, "status to say why once more", d, state)
        finally:
            d.kill()
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: journal_states(state).get("sess/h.raw") == "released", 60, "h released", d, state)
        wait_for(lambda: "release waiting" not in status(), 60, "the crash's leftover replaced", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err


@pytest.mark.slow
def test_a_session_folder_swapped_for_a_symlink_before_the_release_deletes_nothing_outside(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    data = os.urandom(50_000)
    (watch / "sess" / "f.raw").write_bytes(data)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)))
    try:
        with held_open(watch / "sess" / "f.raw"):
            wait_for(lambda: bool(audit(state, "release-held")), 60, "the release to be held for the writer")
            # the same folder (same files, inodes, sizes and times) now reached through a symlink
            os.rename(watch / "sess", outside / "sess")
            os.symlink(outside / "sess", watch / "sess")
        wait_for(lambda: any("symlink" in s["reason"] for s in audit(state, "release-skipped")), 60, "the refusal")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert (outside / "sess" / "f.raw").read_bytes() == data  # nothing outside the watch root deleted
    assert list(stored(dest).values()) == [data]
    assert journal_states(state)["sess/f.raw"] == "verified"


@pytest.mark.slow
def test_a_rewrite_keeping_size_and_mtime_is_shipped_as_a_new_version_not_released(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    target = watch / "sess" / "f.raw"
    old, new = os.urandom(60_000), os.urandom(60_000)
    target.write_bytes(old)
    other = tmp_path / "other.raw"
    other.write_bytes(new)
    cp = subprocess.run(["which", "cp"], capture_output=True, text=True).stdout.strip() or "/bin/cp"
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)))
    try:
        with held_open(target):
            wait_for(lambda: bool(audit(state, "release-held")), 60, "the release to be held for the writer")
            before = os.stat(target)
            os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
            subprocess.run([cp, "--preserve=timestamps", str(other), str(target)], check=True)
            after = os.stat(target)
            # what a size+mtime+inode identity cannot tell apart; only ctime moved
            assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
                before.st_size,
                before.st_mtime_ns,
                before.st_ino,
            )
            assert after.st_ctime_ns != before.st_ctime_ns
        wait_for(lambda: journal_states(state).get("sess/f.raw") == "released", 60, "the new version released")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    contents = sorted(stored(dest).values())
    assert contents == sorted([old, new]), "both contents are stored: the rewrite was shipped before the release"
    versions = {v: s for rel, s, _, v in journal_rows(state) if rel == "sess/f.raw"}
    assert versions[1] == "verified" and versions[max(versions)] == "released" and max(versions) >= 2
    assert not target.exists()


def _stored_path(dest: Path, data: bytes) -> Path:
    [rel] = [k for k, v in stored(dest).items() if v == data]
    return dest / "scope" / rel


@pytest.mark.slow
def test_stored_copy_deleted_while_a_release_is_pending_at_restart_is_shipped_again(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    data = os.urandom(80_000)
    (watch / "sess" / "f.raw").write_bytes(data)
    cfg = config(tmp_path, watch, dest, state)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="before_release"))
    assert r.returncode == -9, r.stderr  # killed with the release begun and nothing unlinked
    assert (watch / "sess" / "f.raw").read_bytes() == data
    _stored_path(dest, data).unlink()  # the destination lost the copy meanwhile
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    lost = audit(state, "copy-lost")
    assert lost and "is gone" in lost[0]["reason"]
    assert list(stored(dest).values()) == [data]  # shipped again, byte-exact
    assert journal_states(state)["sess/f.raw"] == "released" and not (watch / "sess" / "f.raw").exists()
    assert "copy_lost 'sess/f.raw'" in r.stderr


@pytest.mark.slow
def test_a_file_changed_in_place_while_its_release_was_interrupted_is_not_said_removed(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Killed with a release begun and nothing unlinked; the file then changed in place (its mtime put
    back) before the restart. The restart said "released ...: removed from the acquisition disk" and
    recorded it, while the file was there, kept and shipped as a new version (an adversarial run)."""
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    target, data = watch / "sess" / "log.dat", os.urandom(80_000)
    target.write_bytes(data)
    cfg = config(tmp_path, watch, dest, state)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="before_release"))
    assert r.returncode == -9, r.stderr
    st = target.stat()
    with open(target, "r+b") as f:  # changed in place, its size and mtime kept
        f.seek(100)
        f.write(os.urandom(8))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = target.read_bytes()
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "30s")
    assert r.returncode == 0, r.stderr
    assert "removed from the acquisition disk (" + str(target) + ") (interrupted" not in r.stderr, r.stderr
    assert "changed while its release was interrupted: not removed" in r.stderr, r.stderr
    assert sorted(stored(dest).values()) == sorted([data, changed])  # both contents stored
    assert [(row[3], row[1]) for row in journal_rows(state)] == [(1, "verified"), (2, "released")]
    assert not target.exists()  # the new version, verified, released


def test_an_empty_file_a_writer_holds_open_is_waited_for_not_quarantined(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A camera creates its file and writes the first frame later: an empty file open for writing was
    quarantined as a "zero-byte file" (the alert fed for files written normally). It is waited for."""
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    target, data = watch / "sess" / "later.raw", os.urandom(5000)
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)))
    try:
        with open(target, "wb") as f:
            wait_for(lambda: "is empty and a process has it open for writing" in d.stderr(), 60, "the wait", d, state)
            f.write(data)
        wait_for(lambda: journal_states(state).get("sess/later.raw") == "released", 60, "the release", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "quarantined" not in err, err
    assert list(stored(dest).values()) == [data]


def _overwrite_in_place(path: Path, at: int = 1000) -> None:
    """Bytes of a stored file changed, its size kept (a tool, a person, a bad disk's rewrite)."""
    time.sleep(0.02)  # past the filesystem's timestamp tick: the write moves its modification time
    with open(path, "r+b") as f:
        f.seek(at)
        old = f.read(8)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in old))


def _overwrite_times_kept(path: Path) -> None:
    """Changed in place, its modification time put back (os.utime): size and mtime as verified."""
    st = path.stat()
    _overwrite_in_place(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _replaced_times_kept(path: Path) -> None:
    """Replaced by a rename (a sync tool's way) with other bytes, its size and mtime kept."""
    st = path.stat()
    other = path.with_name(path.name + ".new")
    other.write_bytes(bytes(b ^ 0x55 for b in path.read_bytes()))
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)


@pytest.mark.parametrize("change", [_overwrite_in_place, _overwrite_times_kept, _replaced_times_kept])
def test_a_copy_changed_in_place_while_its_release_waits_for_the_writer_is_shipped_again(
    dirs: tuple[Path, Path, Path], tmp_path: Path, change: Any
) -> None:
    """A file still open for writing is verified and its release waits for the close, hours perhaps.
    A stored copy changed in between with its size kept passed the default (quick) re-check, which
    compared sizes: the source was deleted and the only copy left was the damaged one (an
    adversarial review). The copy's size and modification time as verified are compared now; and
    its inode and change time (a second review: the mtime put back, or the file replaced by a rename)."""
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    target, data = watch / "sess" / "held.raw", os.urandom(2_000_000)
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)))
    try:
        target.write_bytes(data)
        with open(target, "ab"):  # a writer that has not closed the file
            wait_for(lambda: "held 'sess/held.raw'" in d.stderr(), 60, "the release held for the writer", d, state)
            change(_stored_path(dest, data))
        wait_for(lambda: journal_states(state).get("sess/held.raw") == "released", 60, "the release", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    lost = audit(state, "copy-lost")
    assert lost and "written again after it was verified" in lost[0]["reason"], lost
    assert list(stored(dest).values()) == [data]  # shipped again before the source was deleted
    assert not target.exists()


@pytest.mark.parametrize("change", [_overwrite_in_place, _overwrite_times_kept])
def test_a_copy_changed_on_an_sftp_tier_while_its_release_waits_is_shipped_again(
    dirs: tuple[Path, Path, Path], tmp_path: Path, change: Any, request: pytest.FixtureRequest
) -> None:
    """The same on an SFTP tier, whose stamps are a size and a modification time in whole seconds: a
    rewrite within the second of the verification, or one that puts the time back, keeps the stamp
    (an adversarial run released 3 sources of 4 against damaged copies). A release there reads the
    copy back again."""
    from tests.servers import Sshd

    sshd: Sshd = request.getfixturevalue("sshd_server")
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    target, data = watch / "sess" / "held.raw", os.urandom(2_000_000)
    body = ", ".join(f"{k}: {v}" for k, v in sshd.options(connect_timeout=3).items())
    cfg = acqd_yaml(
        tmp_path / "acqd.yaml",
        state=state,
        watch=f"path: {watch}, settle: 0.3s, placement: {{release_local: after_verify}}",
        tiers={"central": f'url: "{sshd.url(dest)}", options: {{{body}}}'},
        limits="retry_initial: 50ms, retry_max: 300ms",
    )
    d = Background("run", "--config", str(cfg))
    try:
        target.write_bytes(data)
        with open(target, "ab"):  # a writer that has not closed the file: its release waits
            wait_for(lambda: "held 'sess/held.raw'" in d.stderr(), 60, "the release held for the writer", d, state)
            path = _stored_path(dest, data)
            st = path.stat()
            change(path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same second, as SFTP sees it
        wait_for(lambda: journal_states(state).get("sess/held.raw") == "released", 90, "the release", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    lost = audit(state, "copy-lost")
    assert lost and "re-verification failed" in lost[0]["reason"], lost
    assert list(stored(dest).values()) == [data]  # shipped again before the source was deleted
    assert not target.exists()


async def test_a_file_is_released_only_once_its_session_manifest_lists_it(
    dirs: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session manifest at the destination is the record a lost journal, or a takeover (`acqd
    adopt`), knows the copies from. A source was deleted up to a manifest rewrite (2 s) before the
    manifest listed its copy: a takeover in that moment (an adversarial review) left released files
    known to no journal and no manifest. Every unlink now finds its file in the manifest."""
    import json

    import acqd.pipeline
    from acqd.config import load_config
    from acqd.daemon import Daemon

    watch, dest, state = dirs
    files = {f"s{i % 3}/f{i}.raw": os.urandom(5000 + i) for i in range(24)}
    for rel, data in files.items():
        (watch / rel).parent.mkdir(exist_ok=True)
        (watch / rel).write_bytes(data)
    import acqd.unlink

    unlisted: list[str] = []
    moved: list[str] = []
    real = acqd.unlink.move_aside

    def move_aside(root: str, rel: str, *a: Any, **k: Any) -> Any:  # the first step of every release
        manifest = dest / "scope" / rel.partition("/")[0] / "~acqd-manifest.json"
        listed = {e["source"] for e in json.loads(manifest.read_text())["files"]} if manifest.exists() else set()
        if rel not in listed:
            unlisted.append(rel)
        moved.append(rel)
        return real(root, rel, *a, **k)

    monkeypatch.setattr(acqd.unlink, "move_aside", move_aside)
    result = await Daemon(load_config(config(tmp_path, watch, dest, state)), once=True, retry_for=60).run(
        install_signals=False
    )
    assert result.stats.released == len(files), result.stats
    assert unlisted == [], f"released before their session manifest listed them: {unlisted}"
    assert sorted(moved) == sorted(files), "every release was looked at"
    assert not any(p.is_file() for p in watch.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "change"), [("copy", "bytes"), ("zarr", "bytes"), ("copy", "times")])
def test_a_copy_changed_in_place_while_a_release_was_interrupted_is_shipped_again(
    dirs: tuple[Path, Path, Path], tmp_path: Path, layout: str, change: str
) -> None:
    """The same at a restart after a crash with the release begun: one object of a Zarr copy's tree
    changed, its size kept, is seen as well. A copy whose modification time alone moved (a network
    filesystem's times, a migration that kept the bytes) is read back, verifies, and is released
    without shipping it again (a review: every such copy would have been shipped again)."""
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    cfg = config(tmp_path, watch, dest, state)
    if layout == "zarr":
        import numpy as np
        import tifffile

        tifffile.imwrite(watch / "sess" / "f.tif", np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64))
        cfg.write_text(cfg.read_text().replace("path: ", "detector: hamamatsu-orca, path: ", 1))
        name = "sess/f.tif"
    else:
        (watch / "sess" / "f.raw").write_bytes(os.urandom(80_000))
        name = "sess/f.raw"
    source = (watch / name).read_bytes()
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="before_release"))
    assert r.returncode == -9, r.stderr  # killed with the release begun and nothing unlinked
    objects = sorted(p for p in (dest / "scope").rglob("*") if p.is_file() and "acqd-" not in p.name)
    victim = max(objects, key=lambda p: p.stat().st_size)  # the copy, or the Zarr's largest shard
    if change == "bytes":
        _overwrite_in_place(victim, at=min(1000, victim.stat().st_size // 2))
    else:
        os.utime(victim, ns=(time.time_ns(), victim.stat().st_mtime_ns + 1_000_000_000))
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    lost = audit(state, "copy-lost")
    if change == "times":
        assert not lost and stored(dest) == {name: source}, lost  # verified again where it is, not re-shipped
    else:
        assert lost and "written again after it was verified" in lost[0]["reason"], lost
    assert journal_states(state)[name] == "released" and not (watch / name).exists()
    out = tmp_path / "restored"
    r = run_acqd("restore", str(watch / name), str(out), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == source


@pytest.mark.slow
@pytest.mark.parametrize("name_taken", [False, True])
def test_a_crash_while_a_file_is_moved_aside_for_its_release_puts_it_back(
    dirs: tuple[Path, Path, Path], tmp_path: Path, name_taken: bool
) -> None:
    """Killed with the file under its hidden release name: the next start puts it back under its
    name and it is released from the start; if a new file has taken the name meanwhile, the moved
    file goes beside it under a visible name, and both are shipped."""
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    data = os.urandom(60_000)
    src = watch / "sess" / "f.raw"
    src.write_bytes(data)
    cfg = config(tmp_path, watch, dest, state)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_move_aside"))
    assert r.returncode == -9, r.stderr
    [aside] = [p for p in (watch / "sess").iterdir() if p.name.startswith(".~acqd-release.")]
    assert aside.read_bytes() == data and not src.exists()
    newer = os.urandom(30_000)
    if name_taken:
        src.write_bytes(newer)
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    assert "moved aside was put back" in r.stderr
    assert not any(p.name.startswith(".~acqd-release.") for p in (watch / "sess").iterdir())
    # put back under its own name, unchanged but for the ctime the move moved: not shipped again; under
    # another name (a newer file took its own): shipped as a file of its own
    assert sorted(stored(dest).values()) == sorted([data, newer, data] if name_taken else [data])
    states = journal_states(state)
    assert states["sess/f.raw"] == "released" and not src.exists()
    if name_taken:
        [kept] = [rel for rel in states if "~acqd-kept-" in rel]
        assert kept.endswith(".raw") and states[kept] == "released"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "same-size"])
def test_stored_copy_damaged_before_a_held_release_is_shipped_again(
    dirs: tuple[Path, Path, Path], tmp_path: Path, damage: str
) -> None:
    """Truncated at the destination: the quick check (size) catches it. Changed in place with its
    size kept: only `release_verify: full` can tell on a plain folder tier, and does."""
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    data = os.urandom(90_000)
    (watch / "sess" / "f.raw").write_bytes(data)
    verify = "quick" if damage == "truncate" else "full"
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state, verify=verify)))
    try:
        with held_open(watch / "sess" / "f.raw"):
            wait_for(lambda: bool(audit(state, "release-held")), 60, "the release to be held for the writer")
            copy = _stored_path(dest, data)
            if damage == "truncate":
                os.truncate(copy, 1000)
            else:
                copy.write_bytes(bytes(len(data)))
        wait_for(lambda: journal_states(state).get("sess/f.raw") == "released", 60, "the release")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert audit(state, "copy-lost")
    assert list(stored(dest).values()) == [data]
    assert not (watch / "sess" / "f.raw").exists()


@pytest.fixture
def mapped_dirs(dirs: tuple[Path, Path, Path]) -> Iterator[tuple[Path, Path, Path]]:
    """`dirs` with the watch folder on tmpfs (/dev/shm): a page written through a mapping there is never
    written back, so a write into it moves no time whatever else the host does. On a disk filesystem
    another process's sync can clean the page during the camera's pause, and its final write then
    moves the file's times (CI, with tests beside it calling sync): not the case these tests are for."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        why = "no writable /dev/shm (tmpfs) for the mapped camera's watch folder"
        if REQUIRE:
            pytest.fail(why + " (ACQD_REQUIRE_SERVICES=1)")
        pytest.skip(why)
    watch = Path(tempfile.mkdtemp(prefix="acqd-mapped-", dir=shm))
    try:
        yield watch, dirs[1], dirs[2]
    finally:
        shutil.rmtree(watch, ignore_errors=True)


def _camera_through_a_mapping(path: Path, size: int, pause: Callable[[], None]) -> None:
    """A camera that maps its movie (no descriptor kept), writes seven frames and its header, pauses
    (`pause`: what the test waits for), then writes its final header into page 0, dirty since its
    first write, and unmaps. Asserts that the final write moved nothing a stat shows (else the
    identity check alone tells the change, and the test would not test the comparison)."""
    import mmap

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, size)
    m = mmap.mmap(fd, size)
    os.close(fd)  # a writer through its mapping alone
    try:
        m[0:16] = b"HEADER frames=00"
        for i in range(1, 8):
            m[4096 * i : 4096 * (i + 1)] = bytes([i]) * 4096
            m[0:16] = b"HEADER frames=%02d" % i
        pause()
        before = os.stat(path)
        m[0:16] = b"HEADER FINAL =07"  # into page 0, dirty since the first write
        m.flush()  # msync: written to the disk, as a camera's close would have it
        after = os.stat(path)
    finally:
        m.close()
    assert [(st.st_size, st.st_mtime_ns, st.st_ctime_ns) for st in (before, after)] == [
        (after.st_size, after.st_mtime_ns, after.st_ctime_ns)
    ] * 2


def test_once_names_a_file_a_writer_still_holds_and_exits_1(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A stranger's run: `run --once --release` shipped a file a process kept open for writing (its
    copy of what it held then), kept it, and exited 0 saying nothing of it. It names it and exits 1:
    what was asked (shipped and freed) is not done, and the file may still change."""
    watch, dest, state = dirs
    (watch / "s").mkdir()
    data = os.urandom(100_000)
    (watch / "s" / "open.dat").write_bytes(data)
    (watch / "s" / "done.dat").write_bytes(b"closed")
    with held_open(watch / "s" / "open.dat"):
        r = run_acqd("run", "--config", str(config(tmp_path, watch, dest, state)), "--once", "--retry-for", "5s")
    assert r.returncode == 1, r.stderr
    assert "1 file(s) kept on the acquisition disk: a process still has them open for writing" in r.stderr
    assert "s/open.dat" in r.stderr.split("kept on the acquisition disk")[1]
    assert journal_states(state) == {"s/open.dat": "verified", "s/done.dat": "released"}
    assert (watch / "s" / "open.dat").read_bytes() == data and data in stored(dest).values()
    # a small file, shipped in a batch: noted as read under its writer (its content compared before release)
    assert [a["reason"] for a in audit(state, "read-while-written")] == [
        "open for writing while it was read: compared before release"
    ]


def test_a_held_file_whose_content_cannot_be_compared_ships_again_never_kept_for_ever(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A stranger's review: a compressed TIFF read as frames (`compressed_tiff: frames`: its checksum
    covers its frames, not its bytes), read while a writer held it, could not be compared with its copy
    once the writer was gone: kept for ever, read again every few seconds. It ships again as the next
    version (its copy of the file as it is now), which is released."""
    import numpy as np
    import tifffile

    from tests.test_frames import write_profiles

    watch, dest, state = dirs
    (watch / "s").mkdir()
    tifffile.imwrite(
        watch / "s" / "lzw.tif",
        np.arange(4 * 32 * 40, dtype=np.uint16).reshape(4, 32, 40),
        compression="lzw",
        photometric="minisblack",
    )
    det = write_profiles(tmp_path / "det")
    cfg = acqd_yaml(
        tmp_path / "acqd.yaml",
        state=state,
        watch=f"path: {watch}, detector: t-tiff-rewrite, settle: 0.3s, stream: false, "
        "placement: {release_local: after_verify}",
        tiers=dest,
        more=f"detectors_dir: {det}",
    )
    with held_open(watch / "s" / "lzw.tif"):
        r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "5s")
    assert r.returncode == 1 and "open for writing" in r.stderr, r.stderr
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "60s")
    assert r.returncode == 0, r.stderr
    assert [(s_, v) for _rel, s_, _w, v in journal_rows(state)] == [("verified", 1), ("released", 2)], (
        journal_rows(state),
        r.stderr,
    )
    assert "cannot be compared with its copy byte for byte" in r.stderr, r.stderr


def test_a_movie_cut_short_is_stored_and_never_released_until_it_grows(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A stranger's review: an MRC with fewer frames than its header counts, no writer acqd can see (one
    on another host, or one that closes the file between tilts), was stored byte-exact and **deleted**
    30 s later, its writer's next frames then going to a file gone. Stored, and kept on the acquisition
    disk (said once); once it has every frame, the whole movie ships as the next version and is released."""
    from tests.test_frames import fei_mrc, write_profiles

    watch, dest, state = dirs
    (watch / "t").mkdir()
    whole = fei_mrc()[0]
    cut = whole[:-1000]
    (watch / "t" / "tilt.mrc").write_bytes(cut)
    det = write_profiles(tmp_path / "det")
    cfg = acqd_yaml(
        tmp_path / "acqd.yaml",
        state=state,
        watch=f"path: {watch}, detector: t-mrc-tiff, settle: 0.3s, placement: {{release_local: after_verify}}",
        tiers=dest,
        more=f"detectors_dir: {det}",
    )
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    assert (watch / "t" / "tilt.mrc").read_bytes() == cut  # kept
    assert r.stderr.count("not releasing 't/tilt.mrc': kept on the acquisition disk: not whole by its own format") == 1
    assert journal_states(state) == {"t/tilt.mrc": "verified"}
    back = tmp_path / "back.mrc"
    assert run_acqd("restore", "t/tilt.mrc", str(back), "--config", str(cfg)).returncode == 0
    assert back.read_bytes() == cut  # every byte it had
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")  # a later run keeps it too
    assert r.returncode == 0 and (watch / "t" / "tilt.mrc").exists(), r.stderr
    with open(watch / "t" / "tilt.mrc", "ab") as f:  # the writer comes back with the last frames
        f.write(whole[len(cut) :])
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "60s")
    assert r.returncode == 0, r.stderr
    assert [(s_, v) for rel, s_, _w, v in journal_rows(state)] == [("verified", 1), ("released", 2)]
    assert not (watch / "t" / "tilt.mrc").exists()


@pytest.mark.slow
def test_a_final_write_through_a_mapping_that_moves_no_time_is_shipped_never_lost(
    mapped_dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A stranger's run: a camera maps its movie (no descriptor kept), writes the frames, pauses past
    the settle window (the movie ships, its release is held for the mapping), then writes the final
    header into a page it had dirtied already and unmaps. The kernel moves a file's times at the
    first write to a clean page only: size, mtime and ctime are as shipped, and the release took the
    only copy of the final header with it. The held file's content is compared first: the final
    content ships as the next version, then the file is released. A file held by a writer that wrote
    nothing more is compared too, and released."""
    watch, dest, state = mapped_dirs
    (watch / "sess").mkdir()
    path = watch / "sess" / "movie.raw"
    size = 4 << 20  # not a small file: one file's fsync of its copy, no barrier over the whole disk
    same = watch / "sess" / "same.raw"
    same_data = os.urandom(size)
    same.write_bytes(same_data)
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)))
    try:
        with held_open(same):
            _camera_through_a_mapping(
                path, size, lambda: wait_for(lambda: len(audit(state, "release-held")) == 2, 60, "holds", d, state)
            )
        final = path.read_bytes()
        wait_for(lambda: not path.exists() and not same.exists(), 60, "the releases", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    rows = journal_rows(state)
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("sess/movie.raw", "verified", 1),
        ("sess/movie.raw", "released", 2),
        ("sess/same.raw", "released", 1),
    ], rows
    assert final[:16] == b"HEADER FINAL =07" and final in stored(dest).values()
    assert audit(state, "release-skipped") and audit(state, "content-compared")
    assert same_data in stored(dest).values()


# opens the file for appending (writing nothing yet), says so, appends what stdin's first line asks
# for once it comes, and closes: a tilt-series writer that closes its stack between tilts
APPENDER = (
    "import os, sys\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\n"
    "print('open', flush=True)\n"
    "n = int(sys.stdin.readline())\n"
    "os.write(fd, bytes(range(256)) * n)\n"
    "os.close(fd)\n"
)


def _faulty_site(dirs: tuple[Path, Path, Path], tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A configuration on a `faulty://` tier (tests/faults.py: reads held on request) with
    `release_verify: full`; its path, the fault control file and the environment that loads the plugin."""
    from tests.faults import install_plugin

    watch, dest, state = dirs
    control = tmp_path / "faults.json"
    control.write_text("{}")
    plugin = install_plugin(tmp_path / "plugin")
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([plugin, str(repo), os.environ.get("PYTHONPATH", "")]))
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - {{path: {watch}, settle: 0.3s, placement: {{release_local: after_verify}}}}
tiers:
  central: {{url: "faulty://{dest}", options: {{control: "{control}"}}}}
limits: {{retry_initial: 50ms, retry_max: 300ms, release_verify: full}}
""",
    )
    return cfg, control, env


@pytest.mark.slow
def test_a_file_rewritten_while_its_copy_is_rechecked_is_kept_and_shipped_again(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The last look before the unlink: a file rewritten in place (same inode, same size) while its
    stored copy is re-checked right before the release (`release_verify: full`, the read held here)
    must not be unlinked; the new content ships as a new version. The unlink compares the file's
    identity (mtime and ctime moved) with what was shipped."""
    from tests.faults import set_faults

    watch, dest, state = dirs
    cfg, control, env = _faulty_site(dirs, tmp_path)
    (watch / "sess").mkdir()
    src = watch / "sess" / "f.raw"
    old, new = os.urandom(90_000), os.urandom(90_000)
    src.write_bytes(old)
    held_flag = Path(str(control) + ".held")
    d = Background("run", "--config", str(cfg), env=env)
    try:
        with held_open(src):  # verified, its release held for this writer
            wait_for(lambda: bool(audit(state, "release-held")), 60, "the release to be held", d, state)
            set_faults(control, hold_reads="*/scope/sess/f.raw")
        wait_for(held_flag.exists, 60, "the stored copy's re-check before the release", d, state)
        st = src.stat()
        with open(src, "r+b") as f:  # in place: same inode, same size
            f.write(new)
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        set_faults(control)
        wait_for(lambda: len(stored(dest)) == 2, 60, "the new content shipped as a new version", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert sorted(stored(dest).values()) == sorted([old, new])
    assert not src.exists() or src.read_bytes() == new


@pytest.mark.slow
def test_a_final_write_through_a_mapping_while_the_copy_is_made_is_shipped_never_lost(
    mapped_dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The camera of the test above, faster: it writes the final header into its dirty page and
    unmaps while the copy is being made (its read-back held here), so the release's own look finds
    no writer, and size and times are as shipped. The file was read while a writer had it mapped:
    its content is compared before the release, and the final content ships as the next version."""
    from tests.faults import set_faults

    watch, dest, state = dirs = mapped_dirs
    cfg, control, env = _faulty_site(dirs, tmp_path)
    (watch / "sess").mkdir()
    path = watch / "sess" / "movie.raw"
    size = 4 << 20
    held_flag = Path(str(control) + ".held")
    set_faults(control, hold_reads="*/scope/sess/movie.raw")  # the first copy's read-back waits here
    d = Background("run", "--config", str(cfg), env=env)
    try:
        _camera_through_a_mapping(path, size, lambda: wait_for(held_flag.exists, 60, "the read-back", d, state))
        set_faults(control)
        final = path.read_bytes()
        wait_for(lambda: not path.exists(), 60, "the release", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert final[:16] == b"HEADER FINAL =07" and final in stored(dest).values()
    assert [(r[1], r[3]) for r in journal_rows(state)] == [("verified", 1), ("released", 2)]
    assert audit(state, "read-while-written")


def test_a_writer_opening_the_file_while_its_copy_is_rechecked_keeps_it(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """SerialEM-style: a stack closed between tilts and opened again for the next one. The writer
    check came before the stored copy's re-check (with `release_verify: full` a read of the whole
    copy: seconds to minutes over a network) and nothing asked again before the unlink, so a writer
    that opened the file meanwhile and had not written yet had it unlinked under it: every tilt it
    wrote afterwards went to a file without a name. The re-check is held here at the destination
    (faulty://'s hold_reads) while the writer opens the file; the release must wait for its close,
    and what it appends must be shipped."""
    from tests.faults import set_faults

    watch, dest, state = dirs
    cfg, control, env = _faulty_site(dirs, tmp_path)
    (watch / "sess").mkdir()
    src = watch / "sess" / "f.raw"
    data = os.urandom(90_000)
    src.write_bytes(data)
    held_flag = Path(str(control) + ".held")
    d = Background("run", "--config", str(cfg), env=env)
    try:
        with held_open(src):  # the first look finds a writer: the release waits for its close
            wait_for(lambda: bool(audit(state, "release-held")), 60, "the release to be held", d, state)
            set_faults(control, hold_reads="*/scope/sess/*")
        # closed: the next look passes the writer check and re-reads the stored copy, held here
        wait_for(held_flag.exists, 60, "the stored copy's re-check to start", d, state)
        w = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(src)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert w.stdout is not None and w.stdout.readline().strip() == "open"
            set_faults(control)  # the re-check goes on and passes: the copy is as verified
            wait_for(
                lambda: len(audit(state, "release-held")) >= 2 or journal_states(state).get("sess/f.raw") == "released",
                60,
                "the release decision",
                d,
                state,
            )
            assert src.exists(), "released while a process had it open for writing"
            assert journal_states(state).get("sess/f.raw") != "released"
        finally:
            assert w.stdin is not None
            w.stdin.write("40\n")
            w.stdin.flush()
            w.wait(timeout=30)
        final = data + bytes(range(256)) * 40
        wait_for(lambda: final in stored(dest).values(), 60, "the appended content to be shipped", d, state)
        wait_for(lambda: not src.exists(), 60, "the release after the close", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    held = audit(state, "release-held")
    assert any("while its stored copy was re-checked" in h["reason"] for h in held), held


@pytest.mark.slow
def test_a_file_renamed_over_the_name_at_the_moment_of_the_release_is_kept(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The window is made deterministic in the daemon (tests/faults.py ``swap_at_release``): just
    before the release removes the name, another program renames its new version of the file over it."""
    from tests.faults import set_faults

    watch, dest, state = dirs
    control = tmp_path / "os-faults.json"
    staging = tmp_path / "staging"  # the other program's temporary (same filesystem, outside the watch root)
    staging.mkdir()
    new = os.urandom(50_000)
    (staging / "f.mdoc.new").write_bytes(new)
    set_faults(control, swap_at_release={"name": "f.mdoc", "from": str(staging / "f.mdoc.new")})
    env = fault_env(tmp_path, control)
    (watch / "sess").mkdir()
    src = watch / "sess" / "f.mdoc"
    old = os.urandom(40_000)
    src.write_bytes(old)
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)), env=env)
    try:
        wait_for(lambda: not (staging / "f.mdoc.new").exists(), 60, "the release of the first version", d, state)
        # the new version must survive: still in the watch folder, or shipped
        wait_for(lambda: src.exists() or new in stored(dest).values(), 30, "the new version kept", d, state)
        wait_for(lambda: new in stored(dest).values(), 60, "the new version shipped", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert old in stored(dest).values()


@pytest.mark.slow
@pytest.mark.parametrize("others", [0, 20])
def test_a_file_the_release_could_not_put_back_is_put_back_at_the_next_start(
    dirs: tuple[Path, Path, Path], tmp_path: Path, others: int
) -> None:
    """Another program renames its new version over the name at the instant of the release (so the
    new, unshipped file is the one moved aside), and moving it back fails (EIO). The release must stay
    begun in the journal, so that the next start puts the file back: it used to be ended, and the new
    version stayed under its hidden name, which no scan ships, for ever."""
    from tests.faults import set_faults

    watch, dest, state = dirs
    control, staging = tmp_path / "os-faults.json", tmp_path / "staging"
    staging.mkdir()
    new = b"new version " + os.urandom(30_000)
    (staging / "f.mdoc.new").write_bytes(new)
    set_faults(control, swap_at_release={"name": "f.mdoc", "from": str(staging / "f.mdoc.new")}, fail_put_back=True)
    env = fault_env(tmp_path, control)
    (watch / "sess").mkdir()
    old = os.urandom(40_000)
    (watch / "sess" / "f.mdoc").write_bytes(old)
    for i in range(others):  # released with it, as one batch
        (watch / "sess" / f"e_{i:02}.mdoc").write_bytes(os.urandom(1000 + i))
    cfg = config(tmp_path, watch, dest, state)
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "5s", env=env)
    assert not (staging / "f.mdoc.new").exists(), r.stderr  # the swap happened
    assert "put back at the next start" in r.stderr
    assert [p.name for p in (watch / "sess").iterdir() if p.name.startswith(".~acqd-release.")], r.stderr
    assert "left aside " not in r.stderr  # its release is begun in the journal: not a file nobody accounts for
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")  # the disk is well again
    assert r.returncode == 0, r.stderr
    assert not [p.name for p in (watch / "sess").iterdir() if p.name.startswith(".~acqd-release.")], r.stderr
    assert new in stored(dest).values() and old in stored(dest).values(), r.stderr
    assert len(stored(dest)) == others + 2


def test_a_copy_that_lies_in_the_watch_root_never_releases_its_source(tmp_path: Path) -> None:
    """Folders moved after the start (no check at start could see it): the tier's instrument folder
    becomes the watch root, reached from the tier by a symlink. A file written there is found as a
    source whose "copy" is the file itself, adopted as verified; the release must refuse it, as it
    refuses any copy inside a watch root. It used to delete the only copy."""
    central, state = tmp_path / "central", tmp_path / "state"
    central.mkdir()
    watch = tmp_path / "mnt" / "acq"  # not there at the start
    cfg = config(tmp_path, watch, central, state, poll=True)
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: "acqd started" in d.stderr(), 60, "the start", d)
        watch.parent.mkdir()
        (central / "scope").rename(watch)  # the instrument folder becomes the watch root
        (central / "scope").symlink_to(watch)  # and the tier still reaches it
        (watch / "s1").mkdir()
        (watch / "s1" / "a.dat").write_bytes(b"the only copy")
        wait_for(lambda: "not a copy elsewhere" in d.stderr(), 60, "the release refused", d, state)
        time.sleep(1.0)  # more scans and release attempts
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert (watch / "s1" / "a.dat").read_bytes() == b"the only copy", err
    assert journal_states(state).get("s1/a.dat") != "released", err


def test_a_file_whose_release_is_begun_is_not_said_left_aside_by_the_scans_that_meet_it(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The same failed put-back, in a running daemon that scans every 0.3 s: the file stays under its
    hidden name until the next start, and each scan meets it. Its release is begun in the journal,
    so the next start accounts for it: no scan may call it a file left aside (that report is for files
    nobody accounts for)."""
    from tests.faults import set_faults

    watch, dest, state = dirs
    control, staging = tmp_path / "os-faults.json", tmp_path / "staging"
    staging.mkdir()
    (staging / "f.mdoc.new").write_bytes(b"new version " + os.urandom(30_000))
    set_faults(control, swap_at_release={"name": "f.mdoc", "from": str(staging / "f.mdoc.new")}, fail_put_back=True)
    (watch / "sess").mkdir()
    (watch / "sess" / "f.mdoc").write_bytes(os.urandom(40_000))
    cfg = config(tmp_path, watch, dest, state, poll=True)
    d = Background("run", "--config", str(cfg), env=fault_env(tmp_path, control))
    try:
        wait_for(lambda: "put back at the next start" in d.stderr(), 60, "the failed put-back", d, state)
        # scans go on meeting the hidden file; this one may get the inode its name was made for, whose
        # release is then blocked (the hidden name is taken) until the next start: not waited for
        (watch / "sess" / "later.mdoc").write_bytes(os.urandom(5000))
        wait_for(lambda: journal_states(state).get("sess/later.mdoc") in ("verified", "released"), 60, "later", d)
        time.sleep(1.0)  # a few more scans
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert [p.name for p in (watch / "sess").iterdir() if p.name.startswith(".~acqd-release.")], err
    assert "left aside " not in err, err
    assert audit(state, "left_aside") == []


@pytest.mark.slow
def test_a_crash_while_a_batch_release_has_a_file_aside_puts_it_back_and_finishes(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Killed at the 7th move-aside of a batch of 30 small files (`after_move_aside:7`): a batch's files
    are all moved aside before one writers' scan and the unlinks, so seven are under their hidden
    names, none unlinked, the rest begun and untouched. The next start puts them back, and every
    file ends released with its copy stored once; no hidden name is left."""
    watch, dest, state = dirs
    (watch / "sess").mkdir()
    data = {f"m_{i:03}.mdoc": os.urandom(1500 + i) for i in range(30)}
    for name, b in data.items():
        (watch / "sess" / name).write_bytes(b)
    cfg = config(tmp_path, watch, dest, state)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_move_aside:7"))
    assert r.returncode == -9, r.stderr
    left = sorted(p.name for p in (watch / "sess").iterdir())
    assert len([n for n in left if n.startswith(".~acqd-release.")]) == 7 and len(left) == 30
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    assert list((watch / "sess").iterdir()) == []
    assert sorted(stored(dest).values()) == sorted(data.values())
    assert set(journal_states(state).values()) == {"released"}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["outside", "renamed"])
def test_a_crash_in_a_release_then_its_folder_moved_is_not_taken_for_released(
    dirs: tuple[Path, Path, Path], tmp_path: Path, where: str
) -> None:
    """A stranger's run: killed with a batch's files moved aside (`after_move_aside`), then the session
    folder filed away (out of the watch root, or renamed in it) while acqd is stopped. Its files are
    neither under their names nor under their hidden names in the old folder: that does not say they
    were unlinked. The next start records none released, says where to look (the hidden name), and a
    scan that finds one aside names it by the journal's path."""
    watch, dest, state = dirs
    (watch / "grid1").mkdir()
    data = {f"mov{i}.dat": os.urandom(2000 + i) for i in range(3)}
    for name, b in data.items():
        (watch / "grid1" / name).write_bytes(b)
    cfg = config(tmp_path, watch, dest, state)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_move_aside"))
    assert r.returncode == -9, r.stderr
    moved = tmp_path / "archive" / "grid1" if where == "outside" else watch / "grid1-renamed"
    moved.parent.mkdir(exist_ok=True)
    os.rename(watch / "grid1", moved)
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    states = journal_states(state)
    assert all(states[f"grid1/{n}"] == "verified" for n in data), states  # none taken for released
    assert r.stderr.count("has gone since (moved or renamed") == 3 and ".~acqd-release." in r.stderr, r.stderr
    assert len(audit(state, "release-unknown")) == 3
    kept = {p.name: p.read_bytes() for p in moved.iterdir()}
    assert any(n.startswith(".~acqd-release.") for n in kept)  # the one moved aside, where the folder went
    if where == "outside":
        assert " 0 released" in r.stdout, r.stdout
        assert sorted(kept.values()) == sorted(data.values())  # every byte where the folder went
    else:  # in the watch root: the two under their names ship as the new folder's and are released; the
        # hidden one is found and named as the journal knew it
        assert "the journal knew it as 'grid1/mov" in r.stderr and "its folder was moved or renamed" in r.stderr
        assert sorted([*kept.values(), *stored(dest).values()]) == sorted([*data.values(), *data.values()])


@pytest.mark.slow
def test_a_swap_in_the_middle_of_a_batch_release_of_small_files_keeps_it(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Small files ship and release as a batch (`_release_together`, one look, one journal group):
    another program renames its new version over one name in the middle of the batch at the instant of
    its release. That one is kept and shipped as a new version; the others before and after it are
    released; nothing is lost and no hidden release name is left."""
    from tests.faults import set_faults

    watch, dest, state = dirs
    control, staging = tmp_path / "os-faults.json", tmp_path / "staging"
    staging.mkdir()
    new = b"new version " + os.urandom(3000)
    (staging / "f_020.mdoc.new").write_bytes(new)
    set_faults(control, swap_at_release={"name": "f_020.mdoc", "from": str(staging / "f_020.mdoc.new")})
    env = fault_env(tmp_path, control)
    (watch / "sess").mkdir()
    olds = {f"f_{i:03}.mdoc": os.urandom(2000 + i) for i in range(40)}
    for name, data in olds.items():
        (watch / "sess" / name).write_bytes(data)
    d = Background("run", "--config", str(config(tmp_path, watch, dest, state)), env=env)
    try:
        wait_for(lambda: not (staging / "f_020.mdoc.new").exists(), 60, "the swap", d, state)
        wait_for(lambda: new in stored(dest).values(), 60, "the new version shipped", d, state)
        wait_for(lambda: list((watch / "sess").iterdir()) == [], 60, "every file released", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert sorted(stored(dest).values()) == sorted([*olds.values(), new])
    assert audit(state, "release-skipped"), "the swapped file was released as if it were the old one"


@pytest.mark.slow
@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_s3_object_replaced_with_the_same_size_is_caught_by_its_checksum_metadata(
    dirs: tuple[Path, Path, Path], tmp_path: Path, request: pytest.FixtureRequest, compress: str
) -> None:
    """On S3 the quick check compares acqd's checksum in the object metadata (a HEAD request): for a
    byte-exact copy with the content checksum, for a zstd copy with the one acqd saw when it verified
    the copy. An object replaced behind acqd's back by one of the same size is shipped again."""
    s3 = request.getfixturevalue("s3_server")
    watch, _, state = dirs
    bucket = s3.bucket(f"acqd-rel-{os.getpid()}-{int(time.time() * 1000) % 10**8}")
    opts = ", ".join(f"{k}: {v}" for k, v in s3.options().items())
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - {{path: {watch}, settle: 0.3s, placement: {{release_local: after_verify, compress: {compress}}}}}
tiers:
  central: {{url: "s3://{bucket}/facility", options: {{{opts}}}}}
limits: {{retry_initial: 50ms, retry_max: 300ms}}
""",
    )
    (watch / "sess").mkdir()
    data = os.urandom(70_000)
    (watch / "sess" / "f.raw").write_bytes(data)
    c = s3.client()
    key = "facility/scope/sess/f.raw" + ("~.zst" if compress == "zstd" else "")
    d = Background("run", "--config", str(cfg))
    try:
        with held_open(watch / "sess" / "f.raw"):
            wait_for(lambda: bool(audit(state, "release-held")), 60, "the release to be held for the writer")
            head = c.head_object(Bucket=bucket, Key=key)
            size, meta = head["ContentLength"], head["Metadata"]
            assert len(meta.get("acqd-xxh3-128", "")) == 32
            c.put_object(Bucket=bucket, Key=key, Body=bytes(size), Metadata={**meta, "acqd-xxh3-128": "0" * 32})
        wait_for(lambda: journal_states(state).get("sess/f.raw") == "released", 60, "the release")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    lost = audit(state, "copy-lost")
    assert lost and "carries checksum" in lost[0]["reason"]
    body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
    if compress == "zstd":
        body = zstandard.ZstdDecompressor().decompress(body)
    assert body == data  # shipped again, whole
    assert not (watch / "sess" / "f.raw").exists()


def test_a_journal_from_before_devices_were_recorded_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    from acqd.journal import _SCHEMA
    from acqd.values import Identity, SourceRef

    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        _SCHEMA.replace("    device INTEGER NOT NULL DEFAULT 0,\n", "").replace("    stored_checksum TEXT,\n", "")
    )
    db.execute(
        "INSERT INTO files(root, relpath, state, size, mtime_ns, inode, ctime_ns, detector, session, first_seen,"
        " updated) VALUES('/r', 'a', 'verified', 1, 2, 3, 4, 'generic', '.', 0, 0)"
    )
    db.commit()
    db.close()
    before = path.read_bytes()
    ro = Journal(path, readonly=True)  # a reader never changes it: the columns added since read as empty
    assert ro.lookup(SourceRef("/r", "a")).identity == Identity(1, 2, 3, 4, device=0)  # type: ignore[union-attr]
    ro.close()
    assert path.read_bytes() == before
    j = Journal(path)
    row = j.lookup(SourceRef("/r", "a"))
    j.close()
    assert row is not None and row.identity == Identity(1, 2, 3, 4, device=0)
    # device 0 is "not known": the file on its real device is still the one shipped
    assert row.identity.same_file_as(Identity(1, 2, 3, 4, device=2049))
    Journal(path, readonly=True).close()


@pytest.mark.parametrize("layout", ["copy", "zarr"])
def test_a_file_verified_on_a_tier_the_placement_no_longer_names_is_released_against_that_copy(
    tmp_path: Path, layout: str
) -> None:
    """A file verified on tier a while the local copy was kept; then the placement names tier b and
    releases. The verified copy on a is a copy elsewhere all the same: it is re-checked there (read
    with the layout it was written with) and the source released; before, the release looked for a
    copy on b only and kept the file for ever. With tier a no longer configured, the copy cannot be
    checked: kept, and the message says so."""
    import numpy as np
    import tifffile

    watch, a, b, state = tmp_path / "acq", tmp_path / "A", tmp_path / "B", tmp_path / "state"
    for d in (watch / "s", a, b):
        d.mkdir(parents=True)
    if layout == "zarr":
        frames = np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64)
        tifffile.imwrite(watch / "s" / "f.tif", frames, photometric="minisblack")
        name, detector = "f.tif", "detector: hamamatsu-orca, "
    else:
        (watch / "s" / "f.raw").write_bytes(os.urandom(300_000))
        name, detector = "f.raw", ""
    data = (watch / "s" / name).read_bytes()

    def cfg(tier: str, release: str, tiers: str) -> Path:
        return write_config(
            tmp_path / f"{tier}-{release}.yaml",
            f"""
instrument: scope
state_dir: {state}
watch:
  - {{path: {watch}, {detector}settle: 0.2s, placement: {{tier: {tier}, release_local: {release}}}}}
tiers:
{tiers}
limits: {{retry_initial: 50ms, retry_max: 300ms, release_verify: full}}
""",
        )

    both = f'  a: {{url: "file://{a}"}}\n  b: {{url: "file://{b}"}}'
    r = run_acqd("run", "--once", "--config", str(cfg("a", "never", both)))
    assert r.returncode == 0 and journal_states(state) == {f"s/{name}": "verified"}, r.stderr
    stored = [p.name for p in (a / "scope" / "s").iterdir()]
    assert (name + "~.zarr" if layout == "zarr" else name) in stored, stored
    # a chmod while the placement names b: the content is compared with the copy on a (the source
    # re-read by the detector's reader, as it was shipped), not shipped again to b
    os.chmod(watch / "s" / name, 0o600)
    r = run_acqd("run", "--once", "--config", str(cfg("b", "never", both)))
    assert r.returncode == 0 and journal_states(state) == {f"s/{name}": "verified"}, r.stderr
    assert len(audit(state, "identity-refreshed")) == 1, r.stderr
    assert not any(p.is_file() for p in b.rglob("*") if "~acqd" not in p.name), "shipped again to b"
    r = run_acqd(
        "run", "--once", "--retry-for", "3s", "--config", str(cfg("b", "after_verify", f'  b: {{url: "file://{b}"}}'))
    )
    assert "its verified copy is on tier(s) a, which the configuration no longer names" in r.stderr, r.stderr
    assert (watch / "s" / name).read_bytes() == data  # kept: its copy cannot be checked
    r = run_acqd("run", "--once", "--retry-for", "20s", "--config", str(cfg("b", "after_verify", both)))
    assert r.returncode == 0, r.stderr
    assert journal_states(state) == {f"s/{name}": "released"}, r.stderr
    assert not (watch / "s" / name).exists()
    assert not any(p.is_file() for p in b.rglob("*") if "~acqd" not in p.name), "nothing shipped to b"
    out = tmp_path / "restored"
    r = run_acqd("restore", f"s/{name}", str(out), "--config", str(cfg("b", "after_verify", both)))
    assert r.returncode == 0 and out.read_bytes() == data, r.stderr


def test_a_chmod_or_a_new_link_ships_nothing_again_and_a_rewrite_that_keeps_size_and_mtime_does(
    tmp_path: Path,
) -> None:
    """A verified file kept on the acquisition disk whose change time alone moved: a chmod (a nightly
    permission fix, `setfacl -R`) or a new hard link made every such file a new version, shipped
    again with the same bytes (a facility engineer's first try). Its content is hashed as it was
    shipped and compared with the copy's: the same, nothing is shipped and the row takes the new
    identity (a release then compares it); a rewrite that put size and mtime back is a new version."""
    import numpy as np
    import tifffile

    watch, dest, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (watch / "s").mkdir(parents=True)
    raw, tif = watch / "s" / "a.raw", watch / "s" / "b.tif"
    raw.write_bytes(os.urandom(200_000))
    frames = np.random.default_rng(3).integers(90, 4000, (5, 64, 48), dtype=np.uint16)
    tifffile.imwrite(tif, frames, photometric="minisblack")
    quick = ["--watch", str(watch), "--dest", str(dest), "--state-dir", str(state), "--settle", "0.2s"]
    quick += ["--detector", "hamamatsu-orca"]

    def run(*extra: str) -> str:
        r = run_acqd("run", "--once", "--retry-for", "20s", *quick, *extra)
        assert r.returncode == 0, r.stderr
        return r.stderr

    def versions() -> dict[str, list[tuple[int, str]]]:
        out: dict[str, list[tuple[int, str]]] = {}
        for rel, st, _reason, version in journal_rows(state):
            out.setdefault(rel, []).append((version, st))
        return {k: sorted(v) for k, v in out.items()}

    run()
    assert versions() == {"s/a.raw": [(1, "verified")], "s/b.tif": [(1, "verified")]}
    stored = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and "~acqd" not in p.name)
    for p in (raw, tif):
        os.chmod(p, 0o600)
        os.chmod(p, 0o644)  # the same mode as before: its ctime alone moved
    os.link(raw, watch / "a.hardlink")
    os.unlink(watch / "a.hardlink")
    run()
    assert versions() == {"s/a.raw": [(1, "verified")], "s/b.tif": [(1, "verified")]}
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and "~acqd" not in p.name) == stored
    assert len(audit(state, "identity-refreshed")) == 2, "both rows take the new identity"
    # a rewrite in place that puts size and mtime back is other content: a new version
    st = raw.stat()
    new = os.urandom(200_000)
    with open(raw, "r+b") as f:
        f.write(new)
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns))
    log = run()
    assert versions()["s/a.raw"] == [(1, "verified"), (2, "verified")]
    # said as loudly as any change after a file was stored (it was an INFO line only: a stranger's review)
    assert "WARNING 's/a.raw' changed after its version 1 was stored (its content rewritten" in log, log
    assert versions()["s/b.tif"] == [(1, "verified")]
    out = tmp_path / "r.raw"
    r = run_acqd("restore", "s/a.raw", str(out), "--state-dir", str(state), "--dest", str(dest))
    assert r.returncode == 0 and out.read_bytes() == new, r.stderr
    # the chmod'ed TIFF is released on its refreshed identity once releases are on
    run("--release")
    assert not tif.exists() and not raw.exists()
    assert versions()["s/b.tif"] == [(1, "released")]


@pytest.mark.parametrize(("before", "after"), [("zstd", "none"), ("none", "zstd")])
def test_a_copy_written_before_compress_changed_is_read_with_its_own_codec(
    tmp_path: Path, before: str, after: str
) -> None:
    """`compress:` changed while verified files were kept: their copies were read back, before a
    release, with the placement's new codec, failed to decode, were taken for lost and shipped again
    (a review). A copy is read with the codec it was written with."""
    watch, dest, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (watch / "s").mkdir(parents=True)
    data = os.urandom(1000) * 200  # compresses
    (watch / "s" / "f.raw").write_bytes(data)

    def cfg(compress: str, release: str) -> Path:
        return acqd_yaml(
            tmp_path / "acqd.yaml",
            state=state,
            watch=f"path: {watch}, settle: 0.2s, placement: {{compress: {compress}, release_local: {release}}}",
            tiers=dest,
            limits="retry_initial: 50ms, retry_max: 300ms, release_verify: full",
        )

    r = run_acqd("run", "--once", "--config", str(cfg(before, "never")))
    assert r.returncode == 0 and journal_states(state) == {"s/f.raw": "verified"}, r.stderr
    r = run_acqd("run", "--once", "--retry-for", "10s", "--config", str(cfg(after, "after_verify")))
    assert r.returncode == 0, r.stderr
    assert journal_rows(state) == [("s/f.raw", "released", None, 1)], r.stderr
    assert not audit(state, "copy-lost"), r.stderr
    assert len([p for p in dest.rglob("f.raw*") if p.is_file()]) == 1, "shipped again"


def test_a_release_of_thousands_of_files_holds_a_descriptor_per_folder_not_per_file(tmp_path: Path) -> None:
    """A release of many files (those waiting for their session manifest are released together) held
    one folder descriptor per file between its move aside and its unlink: 2,400 files ran out of
    descriptors (EMFILE; most files then kept for the next scan), and once, in a 100,000-file burst,
    the `dup` after a file's move failed, its release was taken for not begun, and the file stayed
    under its hidden name for an operator to find. A folder is opened once for its files now. And a
    batch of small files kept a descriptor open for each of its up to 256 temporaries until its
    durability barrier: a few batches at once peaked at ~480 descriptors here (EMFILE in CI under
    load); a batch now closes each temporary once written (syncfs) or keeps at most 64 (fsync)."""
    import resource

    watch, dest, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    for d in "ab":
        (watch / d).mkdir(parents=True)
        for i in range(1200):
            (watch / d / f"f{i:04d}.raw").write_bytes(os.urandom(100))

    def few_descriptors() -> None:  # a systemd service gets 1024 by default; 160 shows a leak sooner
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))

    args = ["run", "--once", "--release", "--watch", str(watch), "--dest", str(dest), "--state-dir", str(state)]
    r = subprocess.run(
        [sys.executable, "-m", "acqd", *args, "--settle", "0.2s"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=few_descriptors,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Too many open files" not in r.stderr, r.stderr[-3000:]
    assert not [p for p in watch.rglob("*") if p.is_file()], "files kept or left under a hidden name"
    assert set(journal_states(state).values()) == {"released"}


async def test_a_chmod_of_a_kept_tree_rereads_its_files_one_at_a_time_with_a_ship_slot(
    dirs: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `chmod -R` (or `setfacl -R`) of a kept tree makes every verified file's content be read again
    and compared with its copy: those reads go one at a time, each with a ship slot (so the backoff
    for the camera holds them too), rather than all at once ahead of new files in the I/O threads, or
    as thousands of tasks waiting for a slot (reviews: a nightly permission fix on a kept tree)."""
    from acqd.config import load_config
    from acqd.daemon import Daemon
    from acqd.pipeline import Pipeline

    watch, dest, state = dirs
    (watch / "s").mkdir()
    files = [watch / "s" / f"f{i}.raw" for i in range(6)]
    for p in files:
        p.write_bytes(os.urandom(5000))
    cfg = acqd_yaml(
        tmp_path / "acqd.yaml",
        state=state,
        watch=f"path: {watch}, settle: 0.2s",
        tiers=dest,
        limits="retry_initial: 50ms, retry_max: 300ms, concurrent_files: 2, io_threads: 8",
    )
    await Daemon(load_config(cfg), once=True, retry_for=10).run(install_signals=False)
    assert set(journal_states(state).values()) == {"verified"}
    for p in files:
        os.chmod(p, 0o600)
    real = Pipeline._source_digest
    at_once, most, slots = [0], [0], []
    lock = threading.Lock()

    def digest(self: Pipeline, *a: Any) -> Any:
        with lock:
            at_once[0] += 1
            most[0] = max(most[0], at_once[0])
            slots.append(self.slots.used)
        try:
            time.sleep(0.3)  # a big movie's read: the others would start meanwhile
            return real(self, *a)
        finally:
            with lock:
                at_once[0] -= 1

    monkeypatch.setattr(Pipeline, "_source_digest", digest)
    await Daemon(load_config(cfg), once=True, retry_for=10).run(install_signals=False)
    assert len(audit(state, "identity-refreshed")) == len(files)
    assert most[0] == 1, f"{most[0]} files read at once"
    assert min(slots) >= 1, "a recheck read without a ship slot"


# one file's release; a batch's (moved aside together, one scan); a writer whose first bytes land
# after the move, before the scan (kept and said so, not "replaced by another file")
@pytest.mark.parametrize(("files", "early"), [(1, b""), (6, b""), (1, b"first frame")])
async def test_a_writer_that_opens_the_file_in_the_instant_before_its_unlink_keeps_it(
    dirs: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int, early: bytes
) -> None:
    """The last look for writers came before the release's journal commit and the unlink: a process
    that opened the file in between (an adversarial review: 14 of 40 tries) wrote into an inode with
    no name. Once the file is moved aside nobody can open it by its name; a scan then finds any
    process that opened it before, and the file goes back under its name, kept until it is closed."""
    import acqd.unlink
    from acqd.config import load_config
    from acqd.daemon import Daemon

    watch, dest, state = dirs
    (watch / "s").mkdir()
    others = {watch / "s" / f"f{i}.raw": os.urandom(3000 + i) for i in range(files - 1)}
    for p, body in others.items():
        p.write_bytes(body)
    target, data = watch / "s" / "open.raw", os.urandom(4000)
    target.write_bytes(data)
    opened: list[int] = []
    real = acqd.unlink.move_aside

    def move_aside(root: str, rel: str, *a: Any, **k: Any) -> Any:
        if rel == "s/open.raw" and not opened:  # a writer opens it between the last look and the move
            opened.append(os.open(os.path.join(root, rel), os.O_WRONLY | os.O_APPEND))
            moved = real(root, rel, *a, **k)
            os.write(opened[0], early)
            return moved
        return real(root, rel, *a, **k)

    monkeypatch.setattr(acqd.unlink, "move_aside", move_aside)
    d = Daemon(load_config(config(tmp_path, watch, dest, state)), once=True, retry_for=10)
    await d.run(install_signals=False)
    assert opened, "the release was never tried"
    os.write(opened[0], b"more frames" * 10)
    os.close(opened[0])
    assert target.read_bytes() == data + early + b"more frames" * 10, "the writer's bytes went to a file with no name"
    assert any(
        "opened for writing at the instant of its release" in a.get("reason", "")
        for a in audit(state, "release-skipped")
    )
    assert stored(dest) and data in stored(dest).values()  # the verified copy is still there
    assert not any(p.exists() for p in others), "the other files of the batch were released"


def test_a_stale_temporary_whose_cleanup_failed_once_is_removed_at_a_later_start(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A crash left a temporary; the source was deleted; at the next start the tier was down and the
    cleanup failed: the row was marked vanished at once and never looked at again, its temporary left
    for ever (an adversarial review: 3 MB through two more starts). It stays pending until a start
    removes the temporary."""
    import json

    watch, dest, state = dirs
    cfg, control, env = _faulty_site(dirs, tmp_path)
    (watch / "s").mkdir()
    (watch / "s" / "big.dat").write_bytes(os.urandom(3_000_000))
    r = run_acqd("run", "--once", "--config", str(cfg), env=dict(env, ACQD_CRASH_AT="after_temp_write:2"))
    assert r.returncode == -9, r.stderr
    temps = lambda: [p for p in dest.rglob(".~acqd-tmp*")]  # noqa: E731
    assert temps(), "the crash left no temporary: the test would prove nothing"
    (watch / "s" / "big.dat").unlink()
    control.write_text(json.dumps({"down": True}))
    r = run_acqd("run", "--once", "--retry-for", "3s", "--config", str(cfg), env=env)
    assert "could not clean a temporary of 's/big.dat'" in r.stderr, r.stderr
    assert temps() and journal_states(state)["s/big.dat"] != "vanished"
    control.write_text("{}")
    r = run_acqd("run", "--once", "--retry-for", "20s", "--config", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    assert temps() == [], "the temporary survived the start after the tier came back"
    assert journal_states(state) == {"s/big.dat": "vanished"}
