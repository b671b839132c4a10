"""Which files some process still has open for writing (Linux, /proc). Blocking scan + async batching.

One scan walks ``/proc/<pid>/fd`` of every process once, for a whole batch of files: each
descriptor's link is read (``readlink``: sockets, pipes and anonymous inodes are skipped without
touching a filesystem), a descriptor naming a path is ``stat``-ed through its link (the device and
inode of the open file, whatever name it has now: renamed, hard-linked or unlinked), and only a
descriptor on one of the files asked about has its ``/proc/<pid>/fdinfo/<fd>`` flags read: open
``O_WRONLY`` or ``O_RDWR`` makes that process a writer.

Limits (the README says them too): root, or CAP_SYS_PTRACE with CAP_DAC_READ_SEARCH, sees every
process; without them only processes of acqd's own user are visible (``hidden`` counts the others,
and a /proc mounted with ``hidepid`` hides them altogether). Writers on other hosts (NFS/SMB
clients) have no descriptor here: for those the settle window is the protection. A file written
through a shared writable memory mapping whose descriptor was closed (``mmap`` then ``close``) has
no descriptor either: a process whose ``/proc/<pid>/maps`` holds a shared writable mapping of a
file asked about (its device and inode; on btrfs, whose mappings name another anonymous device than
``stat`` does, its inode among anonymous devices) is a writer too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

FileKey = tuple[int, int]  # (st_dev, st_ino)

O_ACCMODE = 0o3
NEEDED_CAPS = {"CAP_SYS_PTRACE": 19, "CAP_DAC_READ_SEARCH": 2}  # bits in CapEff (linux/capability.h)


# -- pure ---------------------------------------------------------------------------------------
def fdinfo_writes(text: str) -> bool:
    """True if an fdinfo text's `flags:` (octal) open the file for writing (O_WRONLY or O_RDWR).
    Unparsable flags count as writing: a release is only ever held back by doubt, never let through."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            try:
                flags = int(value.strip(), 8)
            except ValueError:
                return True
            return flags & O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    return True


def shared_writable_inodes(maps: bytes) -> set[tuple[int, int, int, bool]]:
    """The files a /proc/<pid>/maps text maps shared and writable (`rw-s`, `-w-s`, `rwxs`), as (major,
    minor, inode): writes through such a mapping reach the file, with or without a descriptor open.
    Mappings of no file on a disk (shared memory: `/memfd:`, `/SYSV`, `/dev/zero`, `[anon]`) are not."""
    out: set[tuple[int, int, int, bool]] = set()
    if b"w-s " not in maps and b"wxs " not in maps:
        return out  # the common case: no shared writable mapping at all
    for line in maps.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[1][1:2] != b"w" or parts[1][3:4] != b"s":
            continue
        path = parts[5].strip()
        if not path.startswith(b"/") or path.startswith((b"/memfd:", b"/SYSV", b"/dev/zero", b"/proc/", b"/sys/")):
            continue
        try:
            major, minor = (int(x, 16) for x in parts[3].split(b":"))
            ino = int(parts[4])
        except ValueError:
            continue
        if ino:
            # under /dev: a device (a frame grabber's, a GPU's) or a file on a tmpfs mounted there; matched by
            # device and inode alone, never by inode among anonymous devices (`mapped_key`)
            out.add((major, minor, ino, path.startswith(b"/dev/")))
    return out


def mapped_key(dev: int, ino: int, mapped: set[tuple[int, int, int, bool]]) -> bool:
    """Is the file (`dev`, `ino`) among the `mapped` ones? By device and inode; where both devices are
    anonymous ones (major 0: btrfs, whose mappings name the filesystem's device and `stat` the
    subvolume's), by inode among those alone, but for mappings under /dev."""
    major, minor = os.major(dev), os.minor(dev)
    if (major, minor, ino, False) in mapped or (major, minor, ino, True) in mapped:
        return True
    return major == 0 and any(m == 0 and i == ino and not dev_path for m, _n, i, dev_path in mapped)


def names_a_path(link: str) -> bool:
    """A descriptor link worth a stat: a path (not `socket:[..]`, `pipe:[..]`, `anon_inode:..`), and not
    under /proc or /sys. Paths under /dev are looked at too (a tmpfs mounted there, /dev/shm or another,
    is a RAM disk an acquisition may write to, and a watch root may be a bind mount of it: two strangers'
    runs saw its writers unseen); a device node there never has a watched file's device and inode."""
    return link.startswith("/") and not link.startswith(("/proc/", "/sys/"))


def visibility_problem(status: str) -> str | None:
    """Why a scan may miss other users' writers, from /proc/self/status; None if it sees them all.
    Reading another user's /proc/PID/fd takes CAP_SYS_PTRACE (ptrace read access, which also lifts
    /proc's hidepid) and CAP_DAC_READ_SEARCH (the fd folder is mode 0500): root has both."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            try:
                eff = int(line.split()[1], 16)
            except (IndexError, ValueError):
                break
            missing = [name for name, bit in NEEDED_CAPS.items() if not eff >> bit & 1]
            if not missing:
                return None
            return f"acqd lacks {' and '.join(missing)}: files other users' processes have open are not seen"
    return "cannot read acqd's capabilities: files other users' processes have open may not be seen"


# -- blocking -----------------------------------------------------------------------------------
@dataclass
class Scan:
    """What one pass over /proc found for the files asked about."""

    writers: dict[FileKey, set[int]] = field(default_factory=dict)  # file -> pids with it open for writing
    processes: int = 0
    hidden: int = 0  # processes whose descriptors could not be read (another user's, without privilege)


def scan(files: Collection[FileKey], proc: str = "/proc") -> Scan:
    """One pass over every process's descriptors for the writers of `files`. Blocking."""
    out = Scan()
    wanted = set(files)
    if not wanted:
        return out
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue  # exited meanwhile
        except PermissionError:
            out.hidden += 1
            continue
        except OSError:
            continue
        out.processes += 1
        for fd in fds:
            link = f"{fd_dir}/{fd}"
            try:
                if not names_a_path(os.readlink(link)):
                    continue
                st = os.stat(link)  # through the link: the open file itself, whatever its name now
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in wanted:
                continue
            try:
                with open(f"{proc}/{pid}/fdinfo/{fd}", encoding="ascii", errors="replace") as f:
                    writes = fdinfo_writes(f.read())
            except FileNotFoundError:
                continue  # closed meanwhile
            except OSError:
                writes = True  # open on our file and its mode unknown: count it
            if writes:
                out.writers.setdefault(key, set()).add(int(pid))
        try:
            with open(f"{proc}/{pid}/maps", "rb") as m:
                mapped = shared_writable_inodes(m.read())
        except OSError:
            continue
        if mapped:
            for key in wanted:
                if mapped_key(key[0], key[1], mapped):
                    out.writers.setdefault(key, set()).add(int(pid))
    return out


def visibility(proc: str = "/proc") -> str | None:
    """`visibility_problem` for this process (None: every writer on this host is visible)."""
    status = ""
    with contextlib.suppress(OSError), open(f"{proc}/self/status", encoding="ascii", errors="replace") as f:
        status = f.read()
    return visibility_problem(status)


# -- async: many releases share one scan ----------------------------------------------------------
class _Batch:
    def __init__(self) -> None:
        self.keys: set[FileKey] = set()
        self.done: asyncio.Future[Scan] = asyncio.get_running_loop().create_future()
        self.leader = False


class WriterCheck:
    """Releases ask "who writes these files?"; requests that arrive while a scan runs share the next
    one. Every answer comes from a scan that started after the question was asked. `run_blocking` runs
    the scan in the I/O executor."""

    def __init__(
        self,
        run_blocking: Callable[[Callable[[], Scan]], Awaitable[Scan]],
        scanner: Callable[[Collection[FileKey]], Scan] = scan,
    ) -> None:
        self._run = run_blocking
        self._scan = scanner
        self._lock = asyncio.Lock()
        self._open: _Batch | None = None  # collecting keys; its scan has not started
        self.scans = 0
        self.last_hidden = 0

    def writers_now(self, keys: Collection[FileKey]) -> set[FileKey]:
        """Blocking, on the calling thread: which of `keys` a process has open for writing, from a
        scan of its own (a release's last look, after its file is moved aside)."""
        result = self._scan(frozenset(keys))
        self.last_hidden = result.hidden
        return set(result.writers)

    async def writers(self, keys: Collection[FileKey]) -> dict[FileKey, set[int]]:
        """The pids that have each of `keys` open for writing (files with none are left out)."""
        b = self._open
        if b is None:
            b = self._open = _Batch()
        b.keys.update(keys)
        if b.leader:
            result = await asyncio.shield(b.done)
        else:
            b.leader = True
            try:
                async with self._lock:  # one scan at a time; the batch grows while we wait
                    if self._open is b:
                        self._open = None
                    found = frozenset(b.keys)
                    result = await self._run(lambda: self._scan(found))
                    self.scans += 1
                    self.last_hidden = result.hidden
            except BaseException as exc:
                if self._open is b:
                    self._open = None  # nobody joins a batch whose scan will not run
                if not b.done.done():
                    if isinstance(exc, asyncio.CancelledError):
                        b.done.cancel()
                    else:
                        b.done.set_exception(exc)
                        b.done.exception()  # retrieved: followers see it; no "never retrieved" noise
                raise
            b.done.set_result(result)
        return {k: result.writers[k] for k in keys if k in result.writers}
