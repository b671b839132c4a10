"""Deleting a released file without following a symlink at any level. Blocking.

The path below the watch root is walked from an opened descriptor of the root, one folder at a time
(``openat`` with ``O_NOFOLLOW | O_DIRECTORY``), so a session folder swapped for a symlink to another
folder stops the walk (ELOOP) instead of leading elsewhere. The last name is ``lstat``-ed relative to
its folder's descriptor, compared with what was shipped, and only then ``unlinkat``-ed in that same
folder.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from acqd.crash import crash_point

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

GONE = "already gone"


class NotBelow(Exception):
    """The path does not lead to a file below the root without a symlink (the reason is the message)."""


@contextmanager
def parent_of(root: str, rel: str) -> Iterator[tuple[int, str]]:
    """The descriptor of the folder holding `rel` (walked from `root`, no symlink followed) and the
    last name. Raises FileNotFoundError if a part is gone, NotBelow if a part is not a real folder."""
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise NotBelow(f"not a plain relative path: {rel!r}")
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise _walk_error(exc, "the watch root") from None
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _walk_error(exc, "/".join(parts[: i + 1])) from None
            os.close(fd)
            fd = nfd
        yield fd, parts[-1]
    finally:
        os.close(fd)


def _walk_error(exc: OSError, where: str) -> Exception:
    if exc.errno == errno.ENOENT:
        return FileNotFoundError(exc.errno, exc.strerror, where)
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return NotBelow(f"{where} is no longer a folder (a symlink or a file now): not followed")
    return exc


def lstat_below(root: str, rel: str) -> os.stat_result | None:
    """lstat of `rel` reached without following a symlink; None if it is gone. NotBelow as above."""
    try:
        with parent_of(root, rel) as (fd, name):
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def unlink_below(root: str, rel: str, refuse: Callable[[os.stat_result], str | None]) -> str | None:
    """Unlink `rel` below `root` unless `refuse(lstat)` gives a reason. Returns None once unlinked,
    else the reason it was kept (GONE if there is nothing there). OSError for other failures."""
    try:
        with parent_of(root, rel) as (fd, name):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return GONE
            if not stat.S_ISREG(st.st_mode):
                return "no longer a regular file (kept)"
            why = refuse(st)
            if why is not None:
                return why
            os.unlink(name, dir_fd=fd)
            crash_point("during_release")
            return None
    except FileNotFoundError:
        return GONE
    except NotBelow as exc:
        return f"{exc} (kept)"
