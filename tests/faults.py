"""A fault-injecting fsspec filesystem for the daemon's storage edge: `faulty:///path`.

It is a local folder whose behaviour a JSON control file (tier option ``control``) changes while the
daemon runs, so the real `acqd run` child process meets the faults:

    {"down": true}                          every call fails: connection refused
    {"enospc": {"write": 2, "close": 1, "rename": 1}}
                                            the next N writes / closes (fsync) / renames fail ENOSPC
    {"eio": {"write": 1}}                   the same with EIO
    {"delay_per_mib": 0.2}                  a slow destination: each MiB written takes that long
    {"corrupt_reads": "*.raw"}              reads of matching paths (fnmatch on the full path)
                                            return flipped bytes: bit rot, a bad cable, a lying NAS
    {"hold_reads": "*/s/*"}                 opening a matching file for reading waits until this is
                                            lifted (the file ``<control>.held`` says that one waits)

The `file://` path itself (os.fsync, os.replace, os.rename on a real folder; a batch's syncfs(2)
barrier counts as ``fsync``) meets the same
``enospc``/``eio`` counts for the ops ``fsync`` (of a regular file) and ``rename``, for paths below
the control's ``"under"`` folder, through `install_os_faults` (a ``sitecustomize`` on the child's
PYTHONPATH that wraps those functions when ``ACQD_TEST_OS_FAULTS`` names a control file).

Counts restart whenever the control file is rewritten. The file ``<control>.stats`` keeps the
most files that were being written at once (``max_writers``; a file counts once 64 KiB are
written, so small manifests do not). The child finds the class through an
``fsspec.specs`` entry point the tests put on its PYTHONPATH (`install_plugin`).
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileOpener, LocalFileSystem


class _Control:
    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.doc: dict[str, Any] = {}
        self.used: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.doc, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                self.doc = json.loads(Path(self.path).read_text() or "{}")
            except json.JSONDecodeError:
                return  # being rewritten: keep the last one
            self._stamp = stamp
            self.used = {}

    def check(self, op: str) -> None:
        with self._lock:
            self._load()
            if self.doc.get("down"):
                raise ConnectionRefusedError(errno.ECONNREFUSED, "injected: destination down")
            for kind, code in (("enospc", errno.ENOSPC), ("eio", errno.EIO)):
                budget = int(self.doc.get(kind, {}).get(op, 0))
                if self.used.get((kind, op), 0) < budget:
                    self.used[(kind, op)] = self.used.get((kind, op), 0) + 1
                    raise OSError(code, f"injected: {os.strerror(code)} at {op}")

    def delay(self, n: int) -> float:
        with self._lock:
            self._load()
            return float(self.doc.get("delay_per_mib", 0.0)) * n / 2**20

    def corrupts(self, path: str) -> bool:
        with self._lock:
            self._load()
            pattern = self.doc.get("corrupt_reads")
            return bool(pattern) and fnmatch.fnmatch(path, str(pattern))

    def wait_for_reads(self, path: str) -> None:
        """Block while reads of `path` are held (a verify paused at a known moment), saying so in a file."""
        held = Path(self.path + ".held")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with self._lock:
                self._load()
                pattern = self.doc.get("hold_reads")
                if not pattern or not fnmatch.fnmatch(path, str(pattern)):
                    break
            held.touch()
            time.sleep(0.02)
        held.unlink(missing_ok=True)


class _Writers:
    """How many files are being written at once (big ones only), kept in ``<control>.stats``."""

    BIG = 64 << 10

    def __init__(self, control: str) -> None:
        self.path = control + ".stats"
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def grew(self, before: int, after: int) -> None:
        if before < self.BIG <= after:
            with self._lock:
                self.now += 1
                if self.now > self.most:
                    self.most = self.now
                    tmp = self.path + ".tmp"
                    Path(tmp).write_text(json.dumps({"max_writers": self.most}))
                    os.replace(tmp, self.path)

    def closed(self, written: int) -> None:
        if written >= self.BIG:
            with self._lock:
                self.now -= 1


def _flip(data: bytes) -> bytes:
    """The same bytes with every 4096th one inverted (at least the first): content that decodes but differs."""
    b = bytearray(data)
    for i in range(0, len(b), 4096):
        b[i] ^= 0xFF
    return bytes(b)


class _Opener(LocalFileOpener):  # type: ignore[misc]
    def __init__(self, control: _Control, writers: _Writers, *args: Any, **kwargs: Any) -> None:
        self._control = control
        self._writers = writers
        self._written = 0
        super().__init__(*args, **kwargs)

    def write(self, data: Any) -> int:
        self._control.check("write")
        d = self._control.delay(len(data))
        if d:
            time.sleep(d)
        n = int(self.f.write(data))
        self._writers.grew(self._written, self._written + n)
        self._written += n
        return n

    def read(self, *args: Any, **kwargs: Any) -> Any:
        data = self.f.read(*args, **kwargs)
        if data and self._control.corrupts(self.path):
            data = _flip(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(memoryview(buf).cast("B")))
        memoryview(buf).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if "w" in self.mode and not self.closed:
            self._writers.closed(self._written)
            try:
                self._control.check("close")
            except OSError:
                self.f.close()
                raise
        super().close()


class FaultyFileSystem(LocalFileSystem):  # type: ignore[misc]
    protocol = ("faulty",)
    root_marker = "/"

    def __init__(self, control: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.control = _Control(control)
        self.writers = _Writers(control)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        path = str(path)
        if path.startswith("faulty://"):
            path = path[len("faulty://") :]
        return LocalFileSystem._strip_protocol(path)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        self.control.check("open")
        if "w" in mode:
            self.makedirs(self._parent(path), exist_ok=True)
        else:
            self.control.wait_for_reads(path)
        return _Opener(self.control, self.writers, path, mode, fs=self, **kwargs)

    def mv(self, path1: str, path2: str, *args: Any, **kwargs: Any) -> None:
        self.control.check("rename")
        super().mv(path1, path2, *args, **kwargs)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        # a publish on a backend without rename (acqd copies the temporary by its exact name, then
        # removes it: fsspec's mv would take a name with `?` or `[..]` for a pattern)
        self.control.check("rename")
        super().cp_file(path1, path2, **kwargs)

    def info(self, path: str, **kwargs: Any) -> Any:
        self.control.check("stat")
        return super().info(path, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.control.check("mkdir")
        super().makedirs(path, exist_ok=exist_ok)


def patch_os(control: str) -> None:
    """Wrap os.fsync, os.replace and os.rename in this process with the control file's faults, and
    os.unlink and a release's move-aside with a rename another program makes at that moment
    (``swap_at_release``)."""
    ctl = _Control(control)
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def below(path: str) -> bool:
        with ctl._lock:
            ctl._load()
            under = str(ctl.doc.get("under", ""))
            within = str(ctl.doc.get("containing", ""))  # and only paths with this in them (a layout's objects)
        return bool(under) and (path == under or path.startswith(under.rstrip("/") + "/")) and within in path

    def fsync(fd: Any) -> None:
        n = fd if isinstance(fd, int) else fd.fileno()
        try:
            path = os.readlink(f"/proc/self/fd/{n}")
        except OSError:
            path = ""
        if stat.S_ISREG(os.fstat(n).st_mode) and below(path):
            ctl.check("fsync")
        real_fsync(fd)

    def renamer(real: Any) -> Any:
        def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if below(os.path.abspath(os.fsdecode(dst))):
                ctl.check("rename")
            real(src, dst, *args, **kwargs)

        return rename

    real_unlink = os.unlink

    def swap_at_release(path: Any, dir_fd: int | None) -> None:
        # {"swap_at_release": {"name": N, "from": P}}: just before acqd unlinks or moves away a name N
        # (relative to a folder descriptor, as a release does), another program renames its new file
        # P over N: the instant between the release's last look at the file and its removal
        with ctl._lock:
            ctl._load()
            swap = ctl.doc.get("swap_at_release")
        if swap and dir_fd is not None and os.fsdecode(path) == swap["name"] and os.path.exists(swap["from"]):
            real_rename(swap["from"], path, dst_dir_fd=dir_fd)

    def unlink(path: Any, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> None:
        swap_at_release(path, dir_fd)
        real_unlink(path, *args, dir_fd=dir_fd, **kwargs)

    def rename(src: Any, dst: Any, *args: Any, src_dir_fd: int | None = None, **kwargs: Any) -> None:
        swap_at_release(src, src_dir_fd)
        renamer(real_rename)(src, dst, *args, src_dir_fd=src_dir_fd, **kwargs)

    os.fsync = fsync
    os.replace = renamer(real_replace)
    os.rename = rename
    os.unlink = unlink
    # acqd publishes with renameat2(RENAME_NOREPLACE) through libc, which no os.* wrapper sees
    import acqd.storage.base as base

    base.rename_noreplace = renamer(base.rename_noreplace)  # type: ignore[assignment]
    # and makes a batch of small files durable with one syncfs(2) of the tier's filesystem
    real_syncfs = base.sync_filesystem

    def syncfs(fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if below(path):
            ctl.check("fsync")
        real_syncfs(fd)

    base.sync_filesystem = syncfs  # type: ignore[assignment]
    # {"fail_put_back": true}: a release's move of a file back to its name (renameat2 through libc,
    # acqd.fsops) fails with EIO, as on a disk going bad at that instant
    import acqd.fsops as fsops

    real_noreplace_at = fsops.rename_noreplace_at

    def noreplace_at(src_dir_fd: int | None, src: str, dst_dir_fd: int | None, dst: str) -> None:
        with ctl._lock:
            ctl._load()
            fail = bool(ctl.doc.get("fail_put_back"))
        if fail and src.startswith(".~acqd-release."):
            raise OSError(errno.EIO, os.strerror(errno.EIO), dst)
        real_noreplace_at(src_dir_fd, src, dst_dir_fd, dst)

    fsops.rename_noreplace_at = noreplace_at  # type: ignore[assignment]


def install_os_faults(where: Path) -> str:
    """A ``sitecustomize`` that applies `patch_os` in child processes started with
    ``ACQD_TEST_OS_FAULTS=<control file>``; returns the PYTHONPATH entry to put first."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('ACQD_TEST_OS_FAULTS'):\n"
        "    from tests.faults import patch_os\n"
        "    patch_os(os.environ['ACQD_TEST_OS_FAULTS'])\n"
    )
    return str(where)


def install_plugin(where: Path) -> str:
    """Make `faulty://` known to child processes; returns the PYTHONPATH entry to add."""
    dist = where / "acqd_test_faults-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acqd-test-faults\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fsspec.specs]\nfaulty = tests.faults:FaultyFileSystem\n")
    return str(where)


def set_faults(control: Path, **doc: Any) -> None:
    """Rewrite the control file atomically (the daemon reads it on every storage call)."""
    tmp = control.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, control)
    st = os.stat(control)
    os.utime(control, ns=(st.st_atime_ns, time.time_ns()))
