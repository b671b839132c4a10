"""Frame buffers reused between reads: a block of frames is read into memory that is already mapped.

A K3 block (4 frames, 94 MB) is above the allocator's mmap threshold (acqd.memory), so a fresh
buffer for every block means fresh pages: the kernel zeroes and maps them one 4 KiB fault at a time,
and reading a block from the page cache ran at 1.8 GB/s instead of 14 GB/s (measured here). The
source's blocks are therefore read into buffers kept here and handed out again once nothing refers
to them any more.

A buffer is reused only when no array, view or memoryview anywhere still refers to it (its reference
count says so): a frame still queued for encoding, or kept by a caller, keeps its buffer out of the
pool for as long as it lives, so reuse can never overwrite pixels somebody still reads. The pool
keeps at most `limit` bytes; beyond it buffers are plain fresh arrays, freed as before. Buffers
idle for `idle_s` are dropped (at the next request or `trim()`), so an idle daemon gives the memory
back.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

LIMIT = 384 << 20
IDLE_S = 30.0
SMALLEST = 1 << 20  # below this a fresh array is cheap (it comes from the allocator's arenas)


class _Slot:
    __slots__ = ("buf", "last")

    def __init__(self, buf: np.ndarray, last: float) -> None:
        self.buf = buf
        self.last = last


def _unused(slot: _Slot) -> bool:
    # references: the slot's own and this call's argument; any array or view of it adds one
    return sys.getrefcount(slot.buf) <= 2


def _refcounts_work() -> bool:
    """Whether this interpreter counts references as `_unused` expects (CPython 3.11-3.13 does)."""
    slot = _Slot(np.empty(8, np.uint8), 0.0)
    if not _unused(slot):
        return False
    view = slot.buf[2:].view(np.uint16)
    held = not _unused(slot)
    del view
    return held and _unused(slot)


class Buffers:
    """A bounded pool of uint8 buffers (see the module's doc)."""

    def __init__(self, limit: int = LIMIT, idle_s: float = IDLE_S, smallest: int = SMALLEST) -> None:
        self.limit = limit
        self.idle_s = idle_s
        self.smallest = smallest
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._enabled = _refcounts_work()
        self.reused = 0
        self.fresh = 0

    @property
    def held(self) -> int:
        """Bytes the pool holds (in use or idle)."""
        with self._lock:
            return sum(s.buf.nbytes for s in self._slots)

    def get(self, n: int) -> np.ndarray:
        """A uint8 array of `n` bytes (contents undefined): a reused buffer when one is free."""
        if n < self.smallest or not self._enabled:
            return np.empty(n, np.uint8)
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            best: _Slot | None = None
            for s in self._slots:
                if n <= s.buf.nbytes <= 2 * n and _unused(s) and (best is None or s.buf.nbytes < best.buf.nbytes):
                    best = s
            if best is not None:
                best.last = now
                self.reused += 1
                return best.buf[:n]
            buf = np.empty(n, np.uint8)
            self.fresh += 1
            if sum(s.buf.nbytes for s in self._slots) + n <= self.limit:
                self._slots.append(_Slot(buf, now))
            return buf

    def trim(self) -> None:
        """Drop the buffers nobody uses that have been idle for `idle_s`."""
        with self._lock:
            self._trim(time.monotonic())

    def _trim(self, now: float) -> None:
        self._slots = [s for s in self._slots if now - s.last < self.idle_s or not _unused(s)]


POOL = Buffers()
