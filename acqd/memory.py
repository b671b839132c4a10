"""Keep the daemon's resident memory near what it actually holds.

Frames are large (a K3 frame is 23.6 MB) and pass through several threads. glibc's allocator gives
each thread its own arena and, once a large block has been freed, raises its mmap threshold so that
later blocks of that size come from the arenas, where freed memory stays resident. Over hours the
RSS of a daemon that holds 512 MiB of frames at a time drifts towards the sum of every arena's high
water. Two settings stop that: large blocks always mmapped (returned to the kernel when freed) and
at most two arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("acqd")

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_allocator(mmap_threshold: int = 1 << 20, arenas: int = 2) -> bool:
    """Apply the settings on glibc (a no-op elsewhere); True if they were applied."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.debug("mallopt refused the allocator settings")
    return ok
