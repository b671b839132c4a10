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
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from acqd import fsops
from acqd.crash import crash_point
from acqd.naming import NAME_MAX, release_aside

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

GONE = "already gone"
_EXT_MAX = 32  # bytes of a name's extension (with its dot) kept in the name of a file put back beside it
BLOCKED = "kept: the hidden name a release moves a file to is taken by another file"


class LeftAside(OSError):
    """The file was moved to its hidden release name and neither unlinked nor put back (an I/O error):
    the release must stay begun in the journal, so that the next start puts it back (put_back_aside)."""


class NotBelow(Exception):
    """The path does not lead to a file below the root without a symlink (the reason is the message)."""


def open_parent(root: str, rel: str) -> tuple[int, str]:
    """The descriptor of the folder holding `rel` (walked from `root`, no symlink followed; the caller
    closes it) and the last name. Raises FileNotFoundError if a part is gone, NotBelow if a part is
    not a real folder, OSError otherwise."""
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
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


@contextmanager
def parent_of(root: str, rel: str) -> Iterator[tuple[int, str]]:
    """`open_parent` for the length of a `with` block."""
    fd, name = open_parent(root, rel)
    try:
        yield fd, name
    finally:
        os.close(fd)


class Folders:
    """The folders of a release's files, each opened once (`open_parent`) and closed together by
    `close`: a batch of hundreds of files in a few folders holds a few descriptors, not one a file
    (which ran a 100,000-file burst out of descriptors: EMFILE)."""

    def __init__(self) -> None:
        self._fds: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._fds)

    def holds(self, root: str, rel: str) -> bool:
        return (root, rel.rpartition("/")[0]) in self._fds

    def parent(self, root: str, rel: str) -> tuple[int, str]:
        """`open_parent`, the folder opened once: the same checks of `rel`, every time."""
        if any(p in ("", ".", "..") for p in rel.split("/")):
            raise NotBelow(f"not a plain relative path: {rel!r}")
        key = (root, rel.rpartition("/")[0])
        fd = self._fds.get(key)
        if fd is None:
            fd, name = open_parent(root, rel)
            self._fds[key] = fd
            return fd, name
        return fd, rel.rpartition("/")[2]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


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


#: why a file is kept when a process opened it for writing between the last look and the unlink
WRITTEN_AT_RELEASE = "opened for writing at the instant of its release (kept until it is closed)"

#: the writers of files (device, inode) -> the pids that have them open for writing (acqd.openfiles)
Writers = Callable[[Collection[tuple[int, int]]], Collection[tuple[int, int]]]


@dataclass
class Aside:
    """A file a release moved to its hidden name and has not unlinked yet: its folder's descriptor
    (a `Folders`'), the hidden name, its own name and what was looked at."""

    fd: int
    aside: str
    name: str
    st: os.stat_result

    @property
    def key(self) -> tuple[int, int]:
        return self.st.st_dev, self.st.st_ino


#: at most this many folders open at once in a release of many files: a batch spread over more
#: folders is moved aside, asked about and finished in parts
FOLDERS_MAX = 16


def move_aside(root: str, rel: str, refuse: Callable[[os.stat_result], str | None], folders: Folders) -> Aside | str:
    """The first half of a release: `rel` below `root` moved to its hidden name unless `refuse(lstat)`
    gives a reason. The Aside to finish, or the reason it was kept (GONE if there is nothing there).
    OSError for other failures, all of them before the move: nothing after the rename can fail, so an
    error never leaves a file moved that its caller takes for not moved."""
    try:
        fd, name = folders.parent(root, rel)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return GONE
        if not stat.S_ISREG(st.st_mode):
            return "no longer a regular file (kept)"
        why = refuse(st)
        if why is not None:
            return why
        aside = release_aside(st.st_ino)
        try:
            other = os.stat(aside, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if other.st_ino != st.st_ino:
                return BLOCKED  # a file acqd did not leave there: not touched
            # a second name of this very file (one folder, one filesystem, one inode), left by an
            # interrupted release the journal forgot: removing that name loses nothing
            os.unlink(aside, dir_fd=fd)
        # the hidden name is acqd's own and free: a plain rename, atomic on every filesystem,
        # takes whatever the name holds at this instant
        try:
            os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
        except FileNotFoundError:
            return GONE
        crash_point("after_move_aside")
        return Aside(fd, aside, name, st)
    except FileNotFoundError:
        return GONE
    except NotBelow as exc:
        return f"{exc} (kept)"


def finish_aside(a: Aside, written: bool) -> str | None:
    """The second half: the file moved aside is unlinked if it is the one looked at and no process
    had it open for writing once it was aside (`written`: a scan after the move, when nobody can
    open it by its name any more, found a writer); else it is put back. None once unlinked, else
    why it was kept. LeftAside if it could be neither unlinked nor put back."""
    try:
        moved = os.stat(a.aside, dir_fd=a.fd, follow_symlinks=False)
        if stat.S_ISREG(moved.st_mode) and _same(moved, a.st) and not written:
            os.unlink(a.aside, dir_fd=a.fd)
            crash_point("during_release")
            return None
        where = _put_back(a.fd, a.aside, a.name, moved)
    except OSError as exc:
        raise LeftAside(exc.errno, f"{exc.strerror}: left under its hidden name {a.aside!r}", a.name) from exc
    if written and (moved.st_dev, moved.st_ino) == a.key:  # the same file, maybe written to already
        return f"{WRITTEN_AT_RELEASE}{where}"
    return f"replaced by another file at the instant of its release (kept{where}; shipped as a new version)"


def unlink_below(
    root: str, rel: str, refuse: Callable[[os.stat_result], str | None], writers: Writers | None = None
) -> str | None:
    """Unlink `rel` below `root` unless `refuse(lstat)` gives a reason. Returns None once unlinked,
    else the reason it was kept (GONE if there is nothing there). OSError for other failures. The
    file is moved aside first and unlinked only if the file moved is the one that was looked at and,
    where `writers` is given, no process has it open for writing once it is aside."""
    why = unlink_many([(root, rel, refuse)], writers)[0]
    if isinstance(why, OSError):
        raise why
    return why


def unlink_many(
    items: list[tuple[str, str, Callable[[os.stat_result], str | None]]], writers: Writers | None = None
) -> list[str | OSError | None]:
    """`unlink_below` for several files with one writers' scan: each is moved aside, then one scan of
    /proc asks who has any of them open for writing (a process that opened one by its name before
    the move still holds it; none can open it by that name after), then each is unlinked or put
    back. Files in more than FOLDERS_MAX folders go in parts, a scan each. An OSError in the list for
    a file that could not be moved (LeftAside: moved, neither unlinked nor put back)."""
    out: list[str | OSError | None] = [None] * len(items)
    start = 0
    while start < len(items):
        folders = Folders()
        asides: list[tuple[int, Aside]] = []
        try:
            i = start
            while i < len(items):
                root, rel, refuse = items[i]
                if len(folders) >= FOLDERS_MAX and not folders.holds(root, rel):
                    break  # the rest in the next part
                try:
                    a = move_aside(root, rel, refuse, folders)
                except OSError as exc:
                    out[i] = exc
                else:
                    if isinstance(a, Aside):
                        asides.append((i, a))
                    else:
                        out[i] = a
                i += 1
            start = i
            written: Collection[tuple[int, int]] = ()
            if writers is not None and asides:
                try:
                    written = writers([a.key for _i, a in asides])
                except Exception:  # no /proc to look in: as before the scan, the last look decides
                    written = ()
            while asides:
                j, a = asides.pop(0)
                try:
                    out[j] = finish_aside(a, a.key in written)
                except LeftAside as exc:
                    out[j] = exc
        finally:
            # an interrupt between the halves: the journal's begun release puts them back
            folders.close()
    return out


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """The same file with the same content: a rename moves ctime, nothing else."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _put_back(fd: int, aside: str, name: str, st: os.stat_result) -> str:
    """Move the file at `aside` back to `name`; if a file has taken the name meanwhile, to a visible
    name beside it (shipped as a file of its own). Returns where it went (for the message)."""
    try:
        fsops.rename_noreplace_at(fd, aside, fd, name)
        return ""
    except FileExistsError:
        pass
    raw = os.fsencode(name)
    stem, dot, ext = raw.rpartition(b".")
    if not stem or len(dot + ext) > _EXT_MAX:  # no extension, a dot file, or an "extension" that is no such thing
        stem, dot, ext = raw, b"", b""
    for n in range(1, 1000):
        tail = f"~acqd-kept-{st.st_ino}{f'-{n}' if n > 1 else ''}".encode() + dot + ext
        room = NAME_MAX - len(tail)  # > 0: the tail is at most ~70 bytes
        while 0 < room < len(stem) and stem[room] & 0xC0 == 0x80:
            room -= 1  # not in the middle of a UTF-8 character
        kept = os.fsdecode(stem[:room] + tail)
        try:
            fsops.rename_noreplace_at(fd, aside, fd, kept)
        except FileExistsError:
            continue
        return f" as {kept!r}: a newer file has its name"
    raise FileExistsError(errno.EEXIST, "no free name to put it back under", aside)


def put_back_aside(root: str, rel: str, inode: int) -> tuple[str, os.stat_result | None] | None:
    """After a crash: a file a release moved aside (`rel`'s folder, named by `inode`) goes back to its
    name, or beside it if the name is taken. Returns what was done and, if it is back under its own
    name, its lstat there; None if nothing was aside."""
    try:
        with parent_of(root, rel) as (fd, name):
            aside = release_aside(inode)
            try:
                st = os.stat(aside, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return None
            where = _put_back(fd, aside, name, st)
            back = None if where else os.stat(name, dir_fd=fd, follow_symlinks=False)
            return f"a file its release had moved aside was put back{where}", back
    except (FileNotFoundError, NotBelow):
        return None
