"""A fault-injecting fsspec filesystem for the daemon's storage edge: `faulty:///path`.

It is a local folder whose behaviour a JSON control file (tier option ``control``) changes while the
daemon runs, so the real `acqd run` child process meets the faults:

    {"down": true}                          every call fails: connection refused
    {"enospc": {"write": 2, "close": 1, "rename": 1}}
                                            the next N writes / closes (fsync) / renames fail ENOSPC
    {"eio": {"write": 1}}                   the same with EIO
    {"delay_per_mib": 0.2}                  a slow destination: each MiB written takes that long

Counts restart whenever the control file is rewritten. The child finds the class through an
``fsspec.specs`` entry point the tests put on its PYTHONPATH (`install_plugin`).
"""

from __future__ import annotations

import errno
import json
import os
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


class _Opener(LocalFileOpener):  # type: ignore[misc]
    def __init__(self, control: _Control, *args: Any, **kwargs: Any) -> None:
        self._control = control
        super().__init__(*args, **kwargs)

    def write(self, data: Any) -> int:
        self._control.check("write")
        d = self._control.delay(len(data))
        if d:
            time.sleep(d)
        return int(self.f.write(data))

    def close(self) -> None:
        if "w" in self.mode and not self.closed:
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
        return _Opener(self.control, path, mode, fs=self, **kwargs)

    def mv(self, path1: str, path2: str, *args: Any, **kwargs: Any) -> None:
        self.control.check("rename")
        super().mv(path1, path2, *args, **kwargs)

    def info(self, path: str, **kwargs: Any) -> Any:
        self.control.check("stat")
        return super().info(path, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.control.check("mkdir")
        super().makedirs(path, exist_ok=exist_ok)


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
