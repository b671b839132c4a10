"""Named crash points for the torture suite: SIGKILL the process at an exact step of a file's flow.

Off unless ``ACQD_CRASH_AT`` is set (read once at import; the daemon never sets it), so in
production each point costs one comparison. ``ACQD_CRASH_AT=after_rename`` kills at the first time
the point is reached, ``after_rename:3`` at the third. The points, in the order a file meets them:

- ``after_read``: the source has been read to its end (identity checked), nothing committed yet
- ``after_encode``: the last block is encoded
- ``after_temp_write``: the temporary is written and made durable, not yet renamed
- ``during_commit``: an object store has copied part of a tree (a Zarr store) to its final prefix
- ``after_rename``: the copy has its final name; the journal does not know yet
- ``before_journal_commit``: the write returned; the journal row "stored" is not written
- ``after_verify``: the copy was read back and matched; "verified" is not written
- ``before_release``: every release check passed and the release is journaled as begun; nothing unlinked
- ``after_move_aside``: the acquisition-disk file is moved to its hidden release name, not unlinked
- ``during_release``: the acquisition-disk file is unlinked; "released" is not written
- ``retention_after_delete``: a retention purge or transition deleted a stored copy; the journal
  (or the facility catalog) does not record it yet

Small files shipped in a batch meet ``after_read``, ``after_encode``, ``after_temp_write`` (before
its rename, every temporary of the batch durable) and ``after_rename`` once per file, and
``before_journal_commit`` and ``after_verify`` once per batch.

A movie streamed while it grows (acqd.layouts.stream) meets two more, before ``after_encode``:

- ``during_stream``: frames written so far are encoded into the temporary and read back; the camera
  is still writing
- ``after_compare``: the file is complete and its re-read matched what was streamed; not committed

They are kept apart (`STREAM_POINTS`) from the points the torture cycles through, whose workloads
stream nothing.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "after_read",
    "after_encode",
    "after_temp_write",
    "during_commit",
    "after_rename",
    "before_journal_commit",
    "after_verify",
    "before_release",
    "after_move_aside",
    "during_release",
)
#: points off a file's whole-file flow (the torture suite's rounds cycle through POINTS only)
STREAM_POINTS = ("during_stream", "after_compare")
RETENTION_POINTS = ("retention_after_delete",)


def _parse(spec: str) -> tuple[str | None, int]:
    if not spec:
        return None, 0
    name, _, n = spec.partition(":")
    if name not in POINTS + STREAM_POINTS + RETENTION_POINTS:
        known = ", ".join(POINTS + STREAM_POINTS + RETENTION_POINTS)
        raise SystemExit(f"ACQD_CRASH_AT: unknown crash point {name!r}; known: {known}")
    return name, int(n or 1)


_POINT, _AT = _parse(os.environ.get("ACQD_CRASH_AT", ""))
_hits = 0


def crash_point(name: str) -> None:
    """SIGKILL this process if `name` is the armed crash point and this is its armed hit."""
    global _hits
    if name != _POINT:
        return
    _hits += 1
    if _hits == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
