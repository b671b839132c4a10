"""sd_notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING over $NOTIFY_SOCKET (no libsystemd)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Mapping

_early_reloads: list[int] = []


def hold_reloads() -> None:
    """From the start of `acqd run`: a SIGHUP before the daemon's own handler is in place (its journal,
    claims and tiers being set up) is noted, not fatal (the default action ends the process), and
    applied once the daemon runs (`reload_asked_early`)."""
    signal.signal(signal.SIGHUP, lambda signum, _frame: _early_reloads.append(signum))


def reload_asked_early() -> bool:
    """Whether a SIGHUP came while the daemon was starting (`hold_reloads`); said once."""
    asked = bool(_early_reloads)
    _early_reloads.clear()
    return asked


class Notifier:
    """Speaks to systemd when started by it (Type=notify); does nothing otherwise."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr: str | None = None
        if addr.startswith("@"):
            self._addr = "\0" + addr[1:]
        elif addr.startswith("/"):
            self._addr = addr
        self._sock: socket.socket | None = None
        if self._addr is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_seconds: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        if self._sock is None or self._addr is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self._addr)
            return True
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            return False  # systemd gone or busy: never block or crash the daemon for a notification

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
