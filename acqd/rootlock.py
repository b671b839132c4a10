"""One acqd per watch root on a machine.

Two daemons with journals of their own on one acquisition folder (the service and a hand-started
`acqd run --once --watch ... --dest ...`, or two configurations naming the same folder) would each
ship its files, one of them to a place the facility does not look, and with release on delete them
from under the other. The destination claim (acqd.claims) refuses two journals on one destination
prefix, not two on one watch root.

A daemon holds, for each watch root it watches, a listening socket in Linux's abstract Unix socket
namespace named after the root's real path: nothing is written into the acquisition folder (nor
held open there: its disk can still be unmounted), any user can see it, and the kernel lets it go
when the process ends, however it ends. A second daemon's bind fails; it connects to the socket and
learns the holder's process and user ids from the kernel (SO_PEERCRED). It gives way only to a
holder of its own user, root, or (when it runs as root) a system account: these names are open to
every process on the machine, and a user's process holding one must not stop the facility's daemon
(`deferred_to`). A root below another daemon's root
(`/data/k3` under `/data`) is refused the same way; a root above one already watched is not seen.
Within one machine's network namespace only: two PCs sharing a folder over NFS are not told apart
(the destination claim still refuses a shared destination).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct

import xxhash

log = logging.getLogger("acqd")

_PREFIX = b"\0acqd-watch-"
_UCRED = struct.Struct("3i")  # pid, uid, gid


def _name(real: str) -> bytes:
    return _PREFIX + xxhash.xxh3_64_hexdigest(real.encode(errors="surrogateescape")).encode()


def _holder(name: bytes) -> tuple[int, int] | None:
    """(process id, user id) of the process listening on `name`, or None (nobody; or it does not
    answer)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        probe.connect(name)
        pid, uid, _gid = _UCRED.unpack(probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        return (int(pid), int(uid)) if pid else None
    except OSError:
        return None
    finally:
        probe.close()


def deferred_to(uid: int, own: int) -> bool:
    """Whether a holder of user `uid` is one this process (of user `own`) gives way to: root, its own
    user, or, for root, a system account (a service's user, as acqd's). The names are open to any
    process on the machine: an unprivileged user's process holding one (by mistake or on purpose)
    must not stop the facility's daemon from shipping; any user it defers to could stop it anyway."""
    return uid == 0 or uid == own or (own == 0 and uid < SYSTEM_UID_MAX)


SYSTEM_UID_MAX = 1000  # Debian's and RHEL's first regular user id (login.defs UID_MIN)


def _who(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = " ".join(p.decode(errors="replace") for p in f.read().split(b"\0") if p)
    except OSError:
        cmd = ""
    return f"another acqd (pid {pid}{': ' + cmd[:200] if cmd else ''})"


class RootLocks:
    """The watch roots this process watches, held (see the module's doc). Not thread-safe: used on
    the event loop's thread (every call is non-blocking)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._held: dict[str, socket.socket] = {}
        self._ignored: set[str] = set()  # roots whose name another user's process holds: said once
        self.loop = loop  # where the held sockets answer probes (none: they answer nobody)

    def take(self, real: str) -> str | None:
        """Hold the watch root whose real path (`os.path.realpath`, the caller's: off the event loop)
        is `real` for this process: None if held now (or already), else why not, in words that follow
        the root's path ("is watched by another acqd (pid 4242: acqd run ...)")."""
        if real in self._held:
            return None
        own = os.geteuid()
        up = real
        while up != os.path.dirname(up):  # each folder it lies in, up to /
            up = os.path.dirname(up)
            if up not in self._held and (h := _holder(_name(up))) is not None and deferred_to(h[1], own):
                return f"lies inside {up}, which {_who(h[0])} watches: one acqd per acquisition folder"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.bind(_name(real))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:  # no abstract sockets here (a sandbox): not checked
                return None
            h = _holder(_name(real))
            if h is not None and deferred_to(h[1], own):
                return f"is watched by {_who(h[0])}: one acqd per acquisition folder"
            if real not in self._ignored:  # held by a process it does not give way to: watched all the same
                self._ignored.add(real)
                log.warning(
                    "watch root %s: its one-acqd-per-folder name is held by %s, of another user (uid %s), not "
                    "one this acqd gives way to: watched all the same (two daemons on one folder ship twice)",
                    real,
                    f"pid {h[0]}" if h else "a process that does not answer",
                    h[1] if h else "unknown",
                )
            return None
        self._held[real] = sock
        if self.loop is not None:
            self.loop.add_reader(sock.fileno(), _answer, sock)
        return None

    def close(self) -> None:
        for sock in self._held.values():
            if self.loop is not None:
                with contextlib.suppress(Exception):  # the loop closed already
                    self.loop.remove_reader(sock.fileno())
            with contextlib.suppress(OSError):
                sock.close()
        self._held.clear()


def _answer(sock: socket.socket) -> None:
    """Accept and close the connections of daemons that asked who holds a root: their probes would
    fill the listen queue, and the next one would learn no process id."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.close()
