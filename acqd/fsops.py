"""The one rename primitive acqd needs that Python's os module lacks: rename without replacing.

Linux ``renameat2(..., RENAME_NOREPLACE)`` moves a name to another atomically and fails with EEXIST
if the target exists; where the filesystem does not support the flag, a hard link then an unlink of
the old name gives the same guarantee for files (a folder gets a check-then-rename). Names may be
relative to open folder descriptors (``dir_fd``), so a caller that walked a path without following
symlinks can rename inside the folder it holds.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from typing import Any

_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100
_libc: Any = None


def libc() -> Any:
    """The C library, loaded once (errno kept for ctypes.get_errno)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def rename_noreplace_at(src_dir_fd: int | None, src: str, dst_dir_fd: int | None, dst: str) -> None:
    """Rename `src` to `dst` (each relative to its folder descriptor, or to the working folder when
    None) only if `dst` does not exist, atomically. FileExistsError if it does; FileNotFoundError if
    `src` is gone; OSError for the rest."""
    fn = getattr(libc(), "renameat2", None)
    if fn is not None:
        rc = fn(
            _AT_FDCWD if src_dir_fd is None else src_dir_fd,
            os.fsencode(src),
            _AT_FDCWD if dst_dir_fd is None else dst_dir_fd,
            os.fsencode(dst),
            _RENAME_NOREPLACE,
        )
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err == errno.ENOENT:
            raise FileNotFoundError(err, os.strerror(err), src)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    st = os.stat(src, dir_fd=src_dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        if os.path.lexists(dst) if dst_dir_fd is None else _exists_at(dst_dir_fd, dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)  # EEXIST if there
    os.unlink(src, dir_fd=src_dir_fd)


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _ancestry(path: str) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of `path` (its real path, symlinks resolved) and of every folder above it,
    up to /; components that do not exist yet are passed over."""
    p = os.path.realpath(path)
    out: set[tuple[int, int]] = set()
    while True:
        try:
            st = os.stat(p)
        except OSError:
            pass
        else:
            out.add((st.st_dev, st.st_ino))
        parent = os.path.dirname(p)
        if parent == p:
            return out
        p = parent


def same_or_inside(inner: str, outer: str) -> bool:
    """Is `inner` the folder `outer` or below it, as the filesystem sees it (a symlink, a second
    mount of the same filesystem or a bind mount are not told apart from the folder itself)? False
    when `outer` does not exist."""
    try:
        st = os.stat(outer)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in _ancestry(inner)
