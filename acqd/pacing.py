"""Pacing, the kernel side: the acquisition disk's counters and free space, and each tier's token bucket.

The decisions are pure (acqd.pace); this module reads what they are made from and does the waiting.
The disk's counters come from sysfs (/sys/dev/block/MAJOR:MINOR/stat, found from the watch root's
st_dev), which the systemd unit's ProcSubset=pid leaves readable (/proc/diskstats and
/proc/pressure are hidden there). A watch root on a filesystem without one block device (NFS, SMB,
tmpfs, overlay, btrfs) has no counters: no back-off for it, free space still counts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from acqd.pace import Bucket, DiskStat, Mode, Window, limit_at, take

SYS_BLOCK = "/sys/dev/block"


def stat_file(path: str, sys_block: str = SYS_BLOCK) -> str | None:
    """The sysfs stat file of the block device holding `path`, or None (no such device, not there)."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    major, minor = os.major(dev), os.minor(dev)
    if major == 0:  # an anonymous device: NFS, tmpfs, overlay, btrfs subvolumes
        return None
    f = os.path.join(sys_block, f"{major}:{minor}", "stat")
    return f if os.path.exists(f) else None


def read_stat(path: str, at: float) -> DiskStat | None:
    """One reading of the stat file (None if it cannot be read or parsed)."""
    try:
        with open(path) as f:
            return DiskStat.parse(f.read(), at)
    except (OSError, ValueError):
        return None


def free_fraction(path: str) -> float | None:
    """Free space on the filesystem of `path` as available to acqd (0..1), or None."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail / st.f_blocks if st.f_blocks else None


@dataclass
class Disk:
    """One acquisition disk (watch roots on the same device share it) and its last reading."""

    name: str  # the first watch root's metrics name
    root: str  # a watch root on it (for the free space)
    stat: str | None  # its sysfs stat file
    last: DiskStat | None = None
    mode: Mode = "normal"  # this disk's own pace (the daemon combines the disks')


def disks(roots: list[tuple[str, str]], override: str | None = None, sys_block: str = SYS_BLOCK) -> list[Disk]:
    """The distinct disks of the watch roots (name, path), in order; a root not there yet is a disk
    of its own without counters (the daemon looks again). `override`: one stat file for all roots."""
    out: list[Disk] = []
    seen: set[str] = set()
    for name, root in roots:
        f = override or stat_file(root, sys_block)
        if f is not None and f in seen:
            continue
        if f is not None:
            seen.add(f)
        out.append(Disk(name, root, f))
    return out


class TierPacer:
    """A tier's bandwidth schedule as a token bucket, shared by every thread writing to the tier.
    `reserve(n)` books `n` bytes and returns the seconds to wait before sending them (0 while the
    schedule says unlimited); the storage edge does the waiting. Thread-safe."""

    def __init__(
        self,
        schedule: tuple[Window, ...],
        *,
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schedule = schedule
        self.clock, self.mono = clock, mono
        self._lock = threading.Lock()
        self._bucket = Bucket()
        self._rate: int | None = None
        self.waited = 0.0  # seconds of waits handed out (a counter for the metrics)

    def limit(self) -> int | None:
        """Bytes per second now (None: unlimited), from the schedule and the local time."""
        t = time.localtime(self.clock())
        return limit_at(self.schedule, t.tm_wday, t.tm_hour * 60 + t.tm_min)

    def reserve(self, n: int) -> float:
        rate = self.limit()
        with self._lock:
            if rate != self._rate:  # a new window of the schedule: a fresh bucket at the new rate
                self._rate, self._bucket = rate, Bucket()
            if rate is None or n <= 0:
                return 0.0
            self._bucket, wait = take(self._bucket, self.mono(), rate, n)
            self.waited += wait
            return wait
