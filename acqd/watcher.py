"""Finding files: a full scan (the truth) and watchdog events (hints). Blocking parts run in threads.

Event hints reach the event loop through `on_hint(root_index, abspath)` (called from watchdog's
thread; the caller makes it thread-safe) and `on_overflow(root_index)` when events were lost.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from acqd.values import Identity

log = logging.getLogger("acqd.watcher")

NETWORK_FS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "9p",
    "afs",
    "ceph",
    "fuse.glusterfs",
    "lustre",
}


class Kind(enum.Enum):
    FILE = "file"
    SYMLINK = "symlink"
    SPECIAL = "special"  # fifo, socket, device node
    BADNAME = "badname"  # not valid UTF-8
    UNREADABLE = "unreadable"  # a folder or entry that cannot be listed or stat'ed (EIO, ENOTCONN, ...)


@dataclass(frozen=True, slots=True)
class Entry:
    relpath: str
    kind: Kind
    identity: Identity | None
    reason: str = ""  # UNREADABLE: what went wrong, for a person
    error: str = ""  # UNREADABLE: the class of error, a low-cardinality metric label (see ERROR_CLASSES)


#: errno -> (metric label, what it means); anything else is "other"
ERROR_CLASSES: dict[int, tuple[str, str]] = {
    errno.ENAMETOOLONG: ("name_too_long", "path longer than PATH_MAX (4096 bytes): shorten the folder names"),
    errno.EIO: ("io_error", "I/O error"),
    errno.ENOTCONN: ("not_connected", "the mount is not connected (a dead FUSE/NFS mount?)"),
    errno.ESTALE: ("not_connected", "stale file handle (a remounted or dead NFS mount?)"),
    errno.EHOSTDOWN: ("not_connected", "host is down (a network mount)"),
    errno.ETIMEDOUT: ("not_connected", "timed out (a network mount)"),
    errno.EACCES: ("permission", "permission denied"),
    errno.EPERM: ("permission", "operation not permitted"),
}
ERROR_LABELS = ("name_too_long", "io_error", "not_connected", "permission", "other")


def unreadable(rel: str, what: str, exc: OSError) -> Entry:
    """An entry recording that `rel` (a folder or a file) could not be listed or looked at."""
    label, meaning = ERROR_CLASSES.get(exc.errno or 0, ("other", exc.strerror or str(exc)))
    return Entry(display(rel), Kind.UNREADABLE, None, f"{what}: {meaning}", label)


def identity_of(st: os.stat_result) -> Identity:
    return Identity(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)


def display(rel: str) -> str:
    """A printable, storable form of a path that may hold undecodable bytes."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def classify(root: str, rel: str) -> Entry | None:
    """lstat one path below `root` (never following a symlink). None if it is gone or a directory;
    an UNREADABLE entry if it cannot be looked at (never raises OSError)."""
    try:
        st = os.lstat(os.path.join(root, rel))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return unreadable(rel, "cannot look at this file", exc)
    return _entry(rel, st)


def _entry(rel: str, st: os.stat_result) -> Entry | None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return Entry(display(rel), Kind.BADNAME, identity_of(st))
    if stat.S_ISREG(st.st_mode):
        return Entry(rel, Kind.FILE, identity_of(st))
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, Kind.SYMLINK, identity_of(st))
    if stat.S_ISDIR(st.st_mode):
        return None
    return Entry(rel, Kind.SPECIAL, identity_of(st))


PASSED_MAX = 1000  # ignored files a scan names (`run --once` says how many, and the first few)


def scan_tree(
    root: str,
    ignored: Callable[[str], bool],
    skipped_file: Callable[[str], bool] | None = None,
    noticed: Callable[[str], bool] | None = None,
    found: list[tuple[str, os.stat_result]] | None = None,
    passed: list[str] | None = None,
) -> Iterator[Entry]:
    """Every entry below `root` that is not ignored, depth first; symlinked folders are not entered.
    `ignored` is asked for every name (folders and files), `skipped_file` for the names of what is not
    a folder. An ignored name that `noticed` picks out (acqd's own hidden names) is put in `found`
    with its lstat, for the caller to account for; any other ignored regular file or folder (its path
    ending in `/`, not entered) in `passed` (the first PASSED_MAX of them).

    Never raises OSError: a folder that cannot be listed (EACCES, EIO, ENOTCONN, a path longer than
    PATH_MAX) or an entry that cannot be stat'ed yields one UNREADABLE entry naming it and why, and
    the walk goes on with everything else."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel_dir) if rel_dir else root)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            yield unreadable(rel_dir, "cannot list this folder", exc)
            continue
        with it:
            while True:
                try:
                    de = next(it)
                except StopIteration:
                    break
                except OSError as exc:  # a listing that fails half way (EIO on a bad block, a dead mount)
                    yield unreadable(rel_dir, "cannot list this folder", exc)
                    break
                if ignored(de.name):
                    if noticed is not None and found is not None and noticed(de.name):
                        with contextlib.suppress(OSError):
                            found.append(
                                (f"{rel_dir}/{de.name}" if rel_dir else de.name, de.stat(follow_symlinks=False))
                            )
                    elif passed is not None and len(passed) < PASSED_MAX:
                        with contextlib.suppress(OSError):  # the listing's type: no system call
                            if de.is_file(follow_symlinks=False):
                                passed.append(f"{rel_dir}/{de.name}" if rel_dir else de.name)
                            elif de.is_dir(follow_symlinks=False):  # not entered: named as a folder
                                passed.append(f"{rel_dir}/{de.name}/" if rel_dir else f"{de.name}/")
                    continue
                rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
                try:
                    st = de.stat(follow_symlinks=False)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as exc:
                    yield unreadable(rel, "cannot look at this entry", exc)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(rel)
                    continue
                if skipped_file is not None and skipped_file(de.name):
                    continue
                entry = _entry(rel, st)
                if entry is not None:
                    yield entry


def relative(root: str, path: str) -> str | None:
    """`path` relative to `root` with '/' separators, or None if it is not below it."""
    root = root.rstrip("/")
    if not path.startswith(root + "/"):
        return None
    return path[len(root) + 1 :]


def is_network_fs(path: Path) -> bool:
    """True if `path` lies on a filesystem where inotify sees no remote writes (NFS, SMB, ...)."""
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        return False
    return fstype in NETWORK_FS


class _Overflow(logging.Filter):
    """watchdog rebuilds its inotify watches after IN_Q_OVERFLOW and only logs it: turn that into
    a rescan request. (Events lost in the overflow are found by that scan.)"""

    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self._notify = notify

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in record.getMessage().lower():
            self._notify()
        return True


class EventSource:
    """watchdog observers for the watch roots in events mode; hints only.

    The roots given at construction are watched from `start`; `watch` adds one later (a watch root
    that was mounted late) and `unwatch` drops one that went away. Both block (a recursive inotify
    watch of a big tree takes a while): call them from a thread."""

    def __init__(
        self,
        roots: list[tuple[int, str]],
        on_hint: Callable[[int, str], None],
        on_overflow: Callable[[], None],
    ) -> None:
        self._observer: BaseObserver = Observer()
        self._filter = _Overflow(on_overflow)
        self._on_hint = on_hint
        self._watches: dict[int, ObservedWatch] = {}
        for index, root in roots:
            self.watch(index, root)

    def watch(self, index: int, root: str) -> None:
        if index not in self._watches:
            self._watches[index] = self._observer.schedule(
                _Handler(index, self._on_hint), root, recursive=True, event_filter=list(HINT_EVENTS)
            )

    def unwatch(self, index: int) -> None:
        w = self._watches.pop(index, None)
        if w is not None:
            with contextlib.suppress(KeyError, OSError):  # its inotify watch may be gone with the mount
                self._observer.unschedule(w)

    def start(self) -> None:
        for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).addFilter(self._filter)
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
        for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).removeFilter(self._filter)


#: The events that can change what acqd should do. Not opens, reads and closes without writing: acqd's
#: own reads of every file it ships would otherwise come back as a stream of events to handle.
HINT_EVENTS = (
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
)


class _Handler(FileSystemEventHandler):
    def __init__(self, index: int, on_hint: Callable[[int, str], None]) -> None:
        self._index = index
        self._on_hint = on_hint

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        path = getattr(event, "dest_path", "") or event.src_path
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                self._on_hint(self._index, path + "/")  # a new folder: scan it
            return
        self._on_hint(self._index, path)
