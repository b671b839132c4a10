"""Keep the daemon's resident memory near what it actually holds.

Frames are large (a K3 frame is 23.6 MB) and pass through several threads. glibc's allocator gives
each thread its own arena and, once a large block has been freed, raises its mmap threshold so that
later blocks of that size come from the arenas, where freed memory stays resident. Over hours the
RSS of a daemon that holds 512 MiB of frames at a time drifts towards the sum of every arena's high
water. Two settings stop that: large blocks always mmapped (returned to the kernel when freed) and
at most two arenas.

The threshold is 32 MiB, fixed: a K3 frame block or a Zarr shard is mmapped and returned when freed,
while frame-sized buffers below it are reused from the arenas (a 1 MiB threshold returned everything
but cost page faults: 40 % more wall time on light-sheet stacks). Measured with `python -m bench
resources`: peak RSS with a 10 GB K3 backlog and a 512 MiB in-flight budget 871 MiB with glibc's
defaults, 610 MiB with these.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os

log = logging.getLogger("acqd")

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_allocator(mmap_threshold: int = 32 << 20, arenas: int = 2) -> bool:
    """Apply the settings on glibc (a no-op elsewhere, or with ACQD_MALLOC=default); True if applied."""
    if os.environ.get("ACQD_MALLOC") == "default":
        return False
    try:  # the C library this process already runs on (find_library would spawn `ldconfig -p` at start)
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.debug("mallopt refused the allocator settings")
    return ok


_gc_tuned = False
GC_GEN0 = 50_000  # objects allocated between two young-generation collections (Python's default: 700)


def tune_gc() -> None:
    """Fewer garbage-collector passes in a long-running daemon: the objects made at start (modules,
    configuration, the journal's statements) are moved out of the collector's sight, and young
    collections run every 50,000 allocations instead of 700. Frames are numpy buffers freed by
    reference counting, not by the collector; what it finds are the few cycles asyncio and zarr
    make. Measured on a light-sheet session: the collector was 3.5 % of acqd's CPU."""
    global _gc_tuned
    if _gc_tuned:  # once per process (a test runs several daemons in one)
        return
    _gc_tuned = True
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0, g1, g2)


def warm_imports() -> None:
    """Import the frame layouts' libraries (zarr, numcodecs, tifffile, imagecodecs) in this thread,
    before the I/O threads start shipping. They are imported lazily, where first used; when several
    I/O threads reached zarr's first import at once, one of them could be handed the module half
    initialised (`module 'zarr' has no attribute 'api'`) and every Zarr ship of that process failed:
    seen once in CI, four files quarantined after five attempts each. numpy and mrcfile too: the
    readers import them where first used (acqd.lazy), and a broken installation must stop the daemon
    here (`_imported`), not quarantine each movie after five attempts."""
    import google_crc32c  # noqa: F401
    import imagecodecs  # noqa: F401
    import mrcfile.dtypes
    import mrcfile.utils  # noqa: F401
    import numcodecs.blosc  # noqa: F401
    import numpy  # noqa: F401
    import tifffile  # noqa: F401
    import zarr
    import zarr.api.asynchronous
    import zarr.codecs
    import zarr.core.buffer
    import zarr.storage  # noqa: F401
