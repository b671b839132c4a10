"""One acqd per watch root on a machine.

Two daemons with journals of their own on one acquisition folder (the service and a hand-started
`acqd run --once --watch ... --dest ...`, or two configurations naming the same folder) would each
ship its files, one of them to a place the facility does not look, and with release on delete them
from under the other. The destination claim (acqd.claims) refuses two journals on one destination
prefix, not two on one watch root.

A daemon holds, for each watch root it watches, listening sockets in Linux's abstract Unix socket
namespace: one named after the root's real path, one after its device and inode (the same folder
through a bind mount), and a marker for each folder the root lies in (so that a daemon asked to
watch `/data` finds the one watching `/data/k3`, whichever starts first). Nothing is written into
the acquisition folder (nor held open there: its disk can still be unmounted), and the kernel lets
the names go when the process ends, however it ends. A second daemon's bind fails, or it finds a
marker below its root (in /proc/net/unix) or a name of a folder above it; it connects to the holder
and learns its process and user ids from the kernel (SO_PEERCRED). It gives way only to a holder of
its own user, root, or (when it runs as root) a system account: the names are open to every process
on the machine, and another user's process holding one must not stop the facility's daemon
(`deferred_to`). Within one machine's network namespace only: two PCs sharing a folder over NFS
are not told apart (the destination claim still refuses a shared destination).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import threading

import xxhash

log = logging.getLogger("acqd")

_WATCH = "acqd-watch-"  # + hash of a root's real path
_INODE = "acqd-inode-"  # + hash of a root's device and inode
_BELOW = "acqd-below-"  # + hash of a folder a root lies in + "-" + hash of the root's real path
_UCRED = struct.Struct("3i")  # pid, uid, gid
SYSTEM_UID_MAX = 1000  # Debian's and RHEL's first regular user id (login.defs UID_MIN)


def _h(text: str) -> str:
    return xxhash.xxh3_64_hexdigest(text.encode(errors="surrogateescape"))


def _name(kind: str, text: str) -> bytes:
    return b"\0" + (kind + _h(text)).encode()


def _below(up: str, real: str) -> bytes:
    return b"\0" + f"{_BELOW}{_h(up)}-{_h(real)}".encode()


def _above(real: str) -> list[str]:
    """Each folder `real` lies in, nearest first, up to /."""
    out = []
    up = real
    while up != os.path.dirname(up):
        up = os.path.dirname(up)
        out.append(up)
    return out


def _holder(name: bytes) -> tuple[int, int] | None:
    """(process id, user id) of the process listening on `name`, or None (nobody, or it does not
    answer: its queue full)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        probe.connect(name)
        pid, uid, _gid = _UCRED.unpack(probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        return (int(pid), int(uid)) if pid else None
    except OSError:
        return None
    finally:
        probe.close()


def _markers_below(real: str) -> list[bytes]:
    """The markers of roots below `real` that are listened on now (from /proc/net/unix)."""
    prefix = f"@{_BELOW}{_h(real)}-"
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
            paths = {line.rsplit(None, 1)[-1] for line in f if prefix in line}
    except OSError:
        return []
    return sorted(b"\0" + p[1:].encode() for p in paths if p.startswith(prefix))


def deferred_to(uid: int, own: int) -> bool:
    """Whether a holder of user `uid` is one this process (of user `own`) gives way to: root, its own
    user, or, for root, a system account (a service's user, as acqd's). The names are open to any
    process on the machine: an unprivileged user's process holding one (by mistake or on purpose)
    must not stop the facility's daemon from shipping; any user it defers to could stop it anyway."""
    return uid == 0 or uid == own or (own == 0 and uid < SYSTEM_UID_MAX)


def _who(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = " ".join(p.decode(errors="replace") for p in f.read().split(b"\0") if p)
    except OSError:
        cmd = ""
    return f"another acqd (pid {pid}{': ' + cmd[:200] if cmd else ''})"


class RootLocks:
    """The watch roots this process watches, held (see the module's doc). `take` and `blocked` block
    (a path resolved, /proc read): call them off the event loop; any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop  # where the held sockets answer probes (None: they answer nobody)
        self._lock = threading.Lock()
        self._roots: set[str] = set()  # real paths held
        self._held: list[socket.socket] = []
        self._own: set[bytes] = set()  # the names this process holds
        self._known: dict[bytes, tuple[int, int]] = {}  # a name's holder as last learnt (no probe a second)
        self._ignored: set[str] = set()  # roots whose name another user's process holds: said once
        self._closed = False

    def blocked(self, root: str) -> str | None:
        """Why another acqd this process gives way to keeps `root` from it (words that follow the
        root's path: "is watched by another acqd (pid 4242: acqd run ...)"), or None. Looks only."""
        real = os.path.realpath(root)
        st = os.stat(real)
        with self._lock:
            return self._blocked(real, f"{st.st_dev}:{st.st_ino}", os.geteuid())

    def take(self, root: str) -> str | None:
        """Hold `root` for this process: None if held now (or already; or it cannot be checked here),
        else why not (as `blocked`)."""
        real = os.path.realpath(root)
        st = os.stat(real)
        ident = f"{st.st_dev}:{st.st_ino}"
        own = os.geteuid()
        with self._lock:
            if real in self._roots or self._closed:
                return None
            if (why := self._blocked(real, ident, own)) is not None:
                return why
            names = [_name(_WATCH, real), _name(_INODE, ident), *(_below(up, real) for up in _above(real))]
            bound: list[tuple[bytes, socket.socket]] = []
            for n in names:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                try:
                    sock.bind(n)
                    sock.listen(socket.SOMAXCONN)
                except OSError as exc:
                    sock.close()
                    if exc.errno == errno.EADDRINUSE and n not in self._own:  # held: by someone not given way to
                        self._not_deferred(real, self._probe(n))
                    continue  # else no abstract sockets here (a sandbox): not checked
                bound.append((n, sock))
            for n, sock in bound:
                self._held.append(sock)
                self._own.add(n)
                if self.loop is not None:
                    self.loop.call_soon_threadsafe(self._serve, sock)
            self._roots.add(real)
        return None

    def _blocked(self, real: str, ident: str, own: int) -> str | None:
        for n, words in (
            (_name(_WATCH, real), "is watched by"),
            (_name(_INODE, ident), "is watched (by another path) by"),
        ):
            if n not in self._own and (h := self._probe(n)) is not None and deferred_to(h[1], own):
                return f"{words} {_who(h[0])}: one acqd per acquisition folder"
        for up in _above(real):
            n = _name(_WATCH, up)
            if n not in self._own and (h := self._probe(n)) is not None and deferred_to(h[1], own):
                return f"lies inside {up}, which {_who(h[0])} watches: one acqd per acquisition folder"
        for n in _markers_below(real):
            if n not in self._own and (h := self._probe(n)) is not None and deferred_to(h[1], own):
                return f"holds a folder that {_who(h[0])} watches: one acqd per acquisition folder"
        return None

    def _probe(self, name: bytes) -> tuple[int, int] | None:
        """The holder of `name`: as learnt before while that process lives (a waiting daemon looks
        every second; each probe would stay in the holder's queue while it is stopped), else asked."""
        known = self._known.get(name)
        if known is not None and os.path.exists(f"/proc/{known[0]}"):
            return known
        h = _holder(name)
        if h is not None:
            self._known[name] = h
        else:
            self._known.pop(name, None)
        return h

    def _not_deferred(self, real: str, h: tuple[int, int] | None) -> None:
        if real in self._ignored:
            return
        self._ignored.add(real)
        log.warning(
            "watch root %s: its one-acqd-per-folder name is held by %s, of another user (uid %s), not one "
            "this acqd gives way to: watched all the same (two daemons on one folder ship twice)",
            real,
            f"pid {h[0]}" if h else "a process that does not answer",
            h[1] if h else "unknown",
        )

    def _serve(self, sock: socket.socket) -> None:
        """On the event loop: answer probes on `sock` (unless closed meanwhile)."""
        if self.loop is not None and sock.fileno() >= 0:
            self.loop.add_reader(sock.fileno(), _answer, sock)

    def close(self) -> None:
        """On the event loop's thread (or with no loop): every name given up."""
        with self._lock:
            self._closed = True
            for sock in self._held:
                if self.loop is not None and sock.fileno() >= 0:
                    with contextlib.suppress(Exception):  # the loop closed already
                        self.loop.remove_reader(sock.fileno())
                with contextlib.suppress(OSError):
                    sock.close()
            self._held.clear()
            self._own.clear()
            self._roots.clear()


def _answer(sock: socket.socket) -> None:
    """Accept and close the connections of daemons that asked who holds a root: their probes would
    fill the listen queue, and the next one would learn no process id."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.close()
