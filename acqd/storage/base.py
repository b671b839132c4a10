"""A storage tier on an fsspec filesystem: atomic writes, trees, reads; errors translated at the edge.

This class serves local folders (file://, a NAS mount) and any fsspec filesystem with a rename
(memory://). Object stores and SFTP servers subclass it (acqd.storage.s3, acqd.storage.sftp).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import posixpath
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO, TypeVar

import fsspec
import xxhash

from acqd.config import redact_url
from acqd.crash import crash_point
from acqd.errors import AcqdError, NameTakenError, PathBlockedError, PermanentError
from acqd.fsops import libc, rename_noreplace_at
from acqd.naming import HOLDS, NAME_MAX, is_temp, temp_name
from acqd.storage.errors import DestinationError, translate

T = TypeVar("T")

#: the storage calls under way (on the I/O threads), by a token of each: (tier, op, path, monotonic start)
UNDER_WAY: dict[object, tuple[Any, str, str, float]] = {}


def stalled_calls(older_than: float) -> list[tuple[object, str, str, str, float]]:
    """The storage calls under way for at least `older_than` seconds: (token, tier, op, URL, seconds).
    A server that takes connections and never answers (an S3 endpoint frozen) kept a daemon silent for
    19 minutes, its client retrying each call on its own: no error, no retry counted (a stranger's
    review); these are what the daemon says meanwhile."""
    now = time.monotonic()
    return [
        (token, tier.name, op, tier.url(rel), now - at)
        for token, (tier, op, rel, at) in list(UNDER_WAY.items())
        if now - at >= older_than
    ]


def stalled_tiers(older_than: float) -> frozenset[str]:
    """The names of the tiers with a storage call under way for at least `older_than` seconds."""
    now = time.monotonic()
    return frozenset(tier.name for tier, _op, _rel, at in list(UNDER_WAY.values()) if now - at >= older_than)


__all__ = ["NAME_MAX", "ReaderBase", "Tier", "check_options", "is_temp", "rename_noreplace", "temp_name"]

_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h
# bytes written to a local copy between two writeback starts: the disk works while the copy is encoded,
# so the fsync at commit has little left to do and a large copy's dirty pages do not pile up
WRITEBACK_EVERY = 8 << 20
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024


def rename_noreplace(src: str, dst: str) -> None:
    """Rename `src` to `dst` only if `dst` does not exist, atomically (Linux renameat2 with
    RENAME_NOREPLACE; where the filesystem lacks it, link-then-unlink for files, which is as atomic;
    a folder there gets a check-then-rename). Raises FileExistsError if `dst` exists."""
    rename_noreplace_at(None, src, None, dst)


def start_writeback(fd: int) -> None:
    """Start writing a file's dirty pages to disk without waiting (Linux sync_file_range with
    SYNC_FILE_RANGE_WRITE): a batch's fsyncs then find their data on its way, and the filesystem
    commits many files' allocations together. A hint only; durability still comes from fsync."""
    _libc = libc()
    fn = getattr(_libc, "sync_file_range", None)
    if fn is not None:
        fn(fd, ctypes.c_int64(0), ctypes.c_int64(0), ctypes.c_uint(_SYNC_FILE_RANGE_WRITE))


#: filesystems (statfs f_type) whose syncfs(2) writes back and commits every dirty page and inode and
#: flushes the device, as fsync(2) does for one file: ext2/3/4, XFS, Btrfs, F2FS, ZFS, tmpfs (memory:
#: nothing to flush), NFS (syncfs writes back and COMMITs every unstable page). Elsewhere (SMB/CIFS,
#: FUSE, ...) a batch keeps one fsync per object: their syncfs may not reach the server's disk.
SYNCFS_FILESYSTEMS = frozenset({0xEF53, 0x58465342, 0x9123683E, 0xF2F52010, 0x2FC12FC1, 0x01021994, 0x6969})
BARRIER_MIN = 8  # a batch of at least this many objects is made durable with one syncfs, not an fsync each
WRITE_MANY_OPEN = 64  # temporaries a batch keeps open for their fsync at most (then fsynced and closed)
_kernel_reports_syncfs_errors: bool | None = None


def syncfs_reports_errors() -> bool:
    """syncfs(2) returns writeback errors (EIO, ENOSPC) seen since the descriptor was opened from
    Linux 5.8 on; before, it always returned 0 and could not be a durability barrier."""
    global _kernel_reports_syncfs_errors
    if _kernel_reports_syncfs_errors is None:
        ok = False
        with contextlib.suppress(ValueError, IndexError):
            major, minor = (int(x) for x in os.uname().release.split(".")[:2])
            ok = os.uname().sysname == "Linux" and (major, minor) >= (5, 8)
        _kernel_reports_syncfs_errors = ok
    return _kernel_reports_syncfs_errors


def filesystem_type(fd: int) -> int | None:
    """The statfs f_type of the filesystem holding `fd` (Linux fstatfs; None where unknown)."""
    _libc = libc()
    fn = getattr(_libc, "fstatfs", None)
    if fn is None or ctypes.sizeof(ctypes.c_long) != 8:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs: f_type (a long) comes first on 64-bit Linux
    if fn(fd, buf) != 0:
        return None
    return int(ctypes.c_long.from_buffer(buf).value) & 0xFFFFFFFF


def sync_filesystem(fd: int) -> None:
    """syncfs(2): every dirty page and inode of the filesystem holding `fd` durable, as one fsync per
    file would make them; OSError for a writeback error on that filesystem since `fd` was opened."""
    _libc = libc()
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def check_options(
    tier: str, options: dict[str, Any] | None, known: tuple[str, ...], secrets: tuple[str, ...], instead: str
) -> dict[str, Any]:
    """A remote tier's options: secrets refused (saying what to use `instead`), unknown keys named."""
    opts = dict(options or {})
    bad = [k for k in opts if k in secrets]
    if bad:
        raise PermanentError(f"tier {tier}: options.{bad[0]}: secrets never go in acqd.yaml; use {instead}")
    unknown = [k for k in opts if k not in known]
    if unknown:
        raise PermanentError(f"tier {tier}: unknown option {unknown[0]!r}; known: {', '.join(known)}")
    return opts


def write_all(fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
    """Every byte of `parts`, in order, to `fd` (writev, as many pieces a call as the system takes;
    a short write goes on where it stopped)."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    at = 0
    while at < len(views):
        n = os.writev(fd, views[at : at + _IOV_MAX])
        if n <= 0:
            raise OSError(errno.EIO, "writev wrote nothing")
        while at < len(views) and n >= len(views[at]):
            n -= len(views[at])
            at += 1
        if n:
            views[at] = views[at][n:]


def _changed_mark(info: dict[str, Any]) -> str | None:
    """What of a backend's `info()` of one object changes when it is written again: its modification
    time in ns (local files: `mtime` in seconds, as a float; st_mtime_ns where fsspec gives the stat),
    an ETag (S3), or None if it gives neither."""
    for key in ("ETag", "etag"):
        if info.get(key):
            return f"etag:{info[key]}"
    for key in ("mtime", "LastModified", "last_modified", "modified", "time"):
        value = info.get(key)
        if value is not None:
            if isinstance(value, int | float):
                return f"t:{float(value)!r}"
            return f"t:{value}"
    return None


def is_placeholder(name: str, info: dict[str, Any]) -> bool:
    """Whether a listing's entry is a folder, not an object: what fsspec reports as a "directory"
    (an S3 common prefix; an empty folder SeaweedFS keeps after its last object is deleted, or that a
    write below it made), or a zero-byte key ending in "/" (the marker a console's "create folder" or
    some servers write). Neither is data anybody stored."""
    if info.get("type") == "directory":
        return True
    return (name.endswith("/") or str(info.get("Key", "")).endswith("/")) and int(info.get("size") or 0) == 0


class Tier:
    """A named storage tier on an fsspec filesystem. Blocking: call from the I/O executor."""

    #: what the backend is called in messages and in the error table
    backend = "fsspec"
    #: the filesystem caches listings (s3fs, sshfs): questions about what is there must not see a stale one
    caches_listings = False
    #: a tree (a Zarr store) gets its final name in one step (a rename); object stores copy it object
    #: by object, and a crash part way leaves a partial tree (without its root `zarr.json`)
    atomic_trees = True
    #: a copy rewritten in place with its size kept changes its stamp (`stamp`), whatever the writer does
    #: to its times: a local file's change time and inode, an S3 object's ETag. SFTP gives sizes and
    #: modification times in whole seconds, which such a rewrite keeps (or puts back): False, and a
    #: release there reads the copy back again (acqd.recheck)
    stamps_show_rewrites = True
    #: a name is a file or a folder, never both (a filesystem); an object store keeps keys below an
    #: object ('x' and 'x/a'; a key where a prefix of keys is, SeaweedFS and MinIO refuse)
    folders = True
    #: the tier's bandwidth schedule (acqd.pacing.TierPacer.reserve, set by the daemon): bytes about
    #: to be sent -> seconds to wait first; None: unlimited
    pace: Callable[[int], float] | None = None

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None) -> None:
        self.name = name
        self._url = url.rstrip("/")
        try:
            fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        except (ImportError, ValueError) as exc:
            raise PermanentError(f"tier {name}: cannot use {redact_url(url)!r}: {exc}") from None
        self._fs: Any = fs
        self.root = root.rstrip("/")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.local = protocol in ("file", "local")

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (remote backends connect on first use and again after a failure)."""
        return self._fs

    def _make_parents(self, parent: str) -> None:
        """The folders of a name below the tier's root, made as needed. A root that has gone since
        the journal stored copies there (a network share no longer mounted) is never written into:
        the claim below it has gone too, and `acqd.claims` stops every write there first."""
        try:
            if self.local:
                os.makedirs(parent, exist_ok=True)
            else:
                self.fs.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise PathBlockedError(
                f"tier {self.name}: {self.url(self._first_file(parent))} is a file where a folder is needed "
                f"(for {self.url(self._below_root(parent))}/...): acqd does not replace it"
            ) from None

    def _below_root(self, path: str) -> str:
        return path[len(self.root) + 1 :] if self.root and path.startswith(self.root + "/") else path

    def _first_file(self, parent: str) -> str:
        """The name, below the root, of the first folder of `parent` that is a file (or `parent`)."""
        parts = self._below_root(parent).split("/")
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            with contextlib.suppress(Exception):
                if self.fs.isfile(self.path(rel)):
                    return rel
        return "/".join(parts)

    def _looking(self) -> Any:
        """The filesystem, for a question about what is stored now (its listing cache dropped first)."""
        fs = self.fs
        if self.caches_listings:
            fs.invalidate_cache()
        return fs

    def abort_incomplete(self, under: str) -> int:
        """Clean up what a crash left below `under` beyond temporaries (S3: multipart uploads)."""
        return 0

    def close(self) -> None:
        """Release connections (remote backends)."""

    def reread_secrets(self) -> str | None:
        """Read the tier's secret files again (a reload): what changed, said; None if nothing did or the
        tier has none read once (SFTP's key file is read at each connection)."""
        return None

    # -- paths --------------------------------------------------------------------------------
    def path(self, rel: str) -> str:
        """Where `rel` is on the backend: below the tier's root, never outside it (a name from a
        manifest or the journal with `..` or a leading `/` is refused, not followed)."""
        if rel.startswith("/") or ".." in rel.split("/"):
            raise PermanentError(f"{self.name}: {rel!r} leaves the tier's location; refused")
        return f"{self.root}/{rel}" if self.root else rel

    def url(self, rel: str) -> str:
        """The URL of `rel`, for messages, events and manifests: never with a secret in it."""
        return redact_url(f"{self._url}/{rel}")

    @contextlib.contextmanager
    def _edge(self, op: str, rel: str) -> Iterator[None]:
        token = object()
        UNDER_WAY[token] = (self, op, rel, time.monotonic())  # `stalled_calls` sees it while it lasts
        try:
            yield
        except AcqdError:
            raise
        except Exception as exc:
            self._failed(exc)
            raise translate(self.name, op, self.url(rel), exc) from exc
        finally:
            UNDER_WAY.pop(token, None)

    def _failed(self, exc: BaseException) -> None:
        """Hook: a storage call failed (remote backends drop a broken connection here)."""

    def _translate(self, op: str, rel: str) -> Callable[[BaseException], AcqdError]:
        def tr(exc: BaseException) -> AcqdError:
            self._failed(exc)
            return translate(self.name, op, self.url(rel), exc)

        return tr

    # -- writes -------------------------------------------------------------------------------
    def _paced(self, n: int) -> None:
        """Wait as the bandwidth schedule says before sending `n` bytes (blocking: an I/O thread)."""
        if self.pace is not None:
            wait = self.pace(n)
            if wait > 0:
                time.sleep(wait)

    def write_atomic(self, rel: str, chunks: Iterable[bytes], *, replace: bool = False, paced: bool = True) -> int:
        """Stream `chunks` to a hidden temporary, make it durable, then rename it to `rel`.

        The rename never replaces an object already under `rel` (NameTakenError) unless `replace`
        is given, which only acqd's own reserved names (manifests, claims) use: replacing a stored
        copy is the caller's decision, made from the journal, by deleting it first.
        Only the filesystem calls are translated into storage errors; an error raised by `chunks`
        (the source side) propagates as it is. Either way the temporary is removed. `paced=False`: a
        record of acqd's own of a few hundred bytes (acqd.holdledger), not booked against the tier's
        bandwidth schedule (a 1 B/s window would hold its writer for minutes).
        """
        final = self.path(rel)
        tmp = self.path(temp_name(rel))
        written = 0
        with self._edge("open", rel):
            parent = posixpath.dirname(final)
            if parent:
                self._make_parents(parent)
            f = self.fs.open(tmp, "wb")
        try:
            unsynced = 0
            for block in chunks:
                if block:
                    if paced:
                        self._paced(len(block))
                    with self._edge("write", rel):
                        f.write(block)
                        unsynced += len(block)
                        if self.local and unsynced >= WRITEBACK_EVERY:  # the disk works while we encode
                            unsynced = 0
                            start_writeback(f.fileno())
                    written += len(block)
            with self._edge("write", rel):
                f.flush()
                self._durable(f)
                f.close()
            crash_point("after_temp_write")
            with self._edge("rename", rel):
                try:
                    self._rename(tmp, final, replace)
                except FileExistsError:
                    raise self._taken(rel) from None
            crash_point("after_rename")
        except BaseException:
            with contextlib.suppress(Exception):
                f.close()
            self._discard(tmp)
            raise
        return written

    @contextlib.contextmanager
    def _folders_undone(self, rel: str) -> Iterator[None]:
        """The folders a write of `rel` makes on a local tier, removed again afterwards (if empty):
        `acqd check`, run as root, must not leave the instrument's folder owned by root, where the
        daemon's own user then cannot write."""
        made: list[str] = []
        if self.local:
            d = os.path.dirname(self.path(rel))
            while len(d) >= len(self.root) and not os.path.lexists(d):
                made.append(d)
                d = os.path.dirname(d)
        try:
            yield
        finally:
            for d in made:  # deepest first
                with contextlib.suppress(OSError):
                    os.rmdir(d)

    def probe(self, under: str) -> None:
        """`acqd check`: write a small object below `under`, read it back and delete it, and the
        folders that made (`_folders_undone`). Its name is a temporary name (hidden, `.~acqd-tmp.`:
        acqd.naming), which no source file's stored copy ever has."""
        rel = self._probe_name(under)
        with self._folders_undone(rel):
            self._probe(rel)

    @staticmethod
    def _probe_name(under: str) -> str:
        return temp_name(f"{under}/acqd-check-{os.getpid()}" if under else f"acqd-check-{os.getpid()}")

    def _probe(self, rel: str) -> None:
        data = b"acqd check probe " + os.urandom(16).hex().encode()
        self.write_atomic(rel, [data], replace=True)  # a reserved name: a killed check's leftover may be there
        try:
            f = self.open_read(rel)
            try:
                back = f.read()
            finally:
                f.close()
            if back != data:
                raise DestinationError(
                    f"tier {self.name}: {self.url(rel)}: what was read back differs from what was written"
                )
        finally:
            self.remove(rel)

    def shares_storage_with(self, other: Tier, rel: str) -> bool:
        """Whether `other` sees what this tier writes next to `rel`: the two are one storage (one
        folder configured twice, a bind mount or a symlink, the same bucket), so `rel` on one IS
        `rel` on the other and "copy, then delete the old one" would delete the only copy. A small
        object under a temporary name (hidden, `.~acqd-tmp.`: no source's copy has one) is written
        here, looked for through `other`, and removed."""
        marker = temp_name(f"{rel}.alias-{os.getpid()}-{os.urandom(6).hex()}")
        with self._folders_undone(marker):
            self.write_atomic(marker, [b"acqd: are these two tiers one storage?"], replace=True)
            try:
                return other.exists(marker)
            finally:
                self.remove(marker)

    def write_many(self, items: list[tuple[str, bytes]]) -> list[int | AcqdError]:
        """Publish many small objects behind one durability barrier (a local tier only: `local`).

        Each object goes to its hidden temporary; then every temporary is made durable; then each is
        renamed to its name, never over an object already there (NameTakenError for that one);
        then the renames are made durable. An object's name never shows bytes that are not durable.
        The barrier is one syncfs(2) of the tier's filesystem before the renames and one after
        (`_syncfs_barrier` says when; a writeback error fails every object of the batch), else an
        fsync of each temporary before and of each folder after.
        Per item: the bytes written, or that item's error (the others go on; its temporary is
        removed). A crash leaves temporaries (removed at the next start) and published objects the
        journal does not record yet (adopted only if they decode to the file's content).
        """
        if not self.local:
            raise PermanentError(f"tier {self.name}: batched writes need a local folder")
        out: list[int | AcqdError] = [0] * len(items)
        fds: dict[int, int] = {}  # item -> descriptor of its temporary, while open
        temps: dict[int, str] = {}  # item -> its temporary, until renamed or removed
        made: dict[str, int] = {}  # folder -> its st_dev
        barrier: int | None = None  # a descriptor of the batch's filesystem, opened before any write
        try:
            for rel, _data in items:
                parent = posixpath.dirname(self.path(rel))
                if parent not in made:
                    try:
                        with self._edge("open", rel):
                            self._make_parents(parent or ".")
                            made[parent] = os.stat(parent or ".").st_dev
                    except AcqdError:
                        made[parent] = -1  # each of its items meets the error again below
            barrier = self._syncfs_barrier(made, len(items))
            for i, (rel, data) in enumerate(items):
                final, tmp = self.path(rel), self.path(temp_name(rel))
                try:
                    with self._edge("open", rel):
                        parent = posixpath.dirname(final)
                        if made.get(parent, -1) < 0:
                            self._make_parents(parent)
                        fds[i] = os.open(
                            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
                        )
                        temps[i] = tmp
                    self._paced(len(data))
                    with self._edge("write", rel):
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fds[i], view) :]
                        if barrier is None:
                            start_writeback(fds[i])
                    out[i] = len(data)
                except AcqdError as exc:
                    out[i] = exc
                if barrier is not None and i in fds:  # syncfs makes it durable: no descriptor kept
                    os.close(fds.pop(i))
                elif len(fds) >= WRITE_MANY_OPEN:  # a few batches at once must not run out of descriptors
                    self._fsync_all(fds, out, items)
            if barrier is not None:  # the barrier: every temporary durable before any rename
                for i in list(fds):
                    os.close(fds.pop(i))
                try:
                    with self._edge("write", items[0][0]):
                        sync_filesystem(barrier)
                except AcqdError as exc:
                    for i in temps:
                        out[i] = exc
            self._fsync_all(fds, out, items)
            renamed: set[str] = set()
            for i in list(temps):
                tmp = temps[i]
                if not isinstance(out[i], int):
                    self._discard(temps.pop(i))
                    continue
                crash_point("after_temp_write")
                rel = items[i][0]
                try:
                    with self._edge("rename", rel):
                        try:
                            rename_noreplace(tmp, self.path(rel))
                        except FileExistsError:
                            raise self._taken(rel) from None
                    del temps[i]
                    renamed.add(posixpath.dirname(self.path(rel)))
                except AcqdError as exc:
                    out[i] = exc
                    self._discard(temps.pop(i))
                    continue
                crash_point("after_rename")
            if barrier is not None and renamed:  # the renames durable: the filesystem once
                try:
                    with self._edge("rename", sorted(renamed)[0]):
                        sync_filesystem(barrier)
                except AcqdError as exc:
                    for i in range(len(items)):
                        if isinstance(out[i], int):
                            out[i] = exc
                renamed = set()
            for parent in sorted(renamed):  # the renames durable: each folder once
                try:
                    with self._edge("rename", parent):
                        self._sync_dir(parent)
                except AcqdError as exc:
                    for i, (rel, _data) in enumerate(items):
                        if isinstance(out[i], int) and posixpath.dirname(self.path(rel)) == parent:
                            out[i] = exc
        finally:
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            for tmp in temps.values():
                self._discard(tmp)
            if barrier is not None:
                os.close(barrier)
        return out

    def _fsync_all(self, fds: dict[int, int], out: list[int | AcqdError], items: list[tuple[str, bytes]]) -> None:
        """`write_many`'s temporaries still open made durable (fsync; an error is that item's) and closed."""
        for i in list(fds):
            if isinstance(out[i], int):
                try:
                    with self._edge("write", items[i][0]):
                        os.fsync(fds[i])
                except AcqdError as exc:
                    out[i] = exc
            os.close(fds.pop(i))

    def _syncfs_barrier(self, folders: dict[str, int], n: int) -> int | None:
        """A descriptor to syncfs(2) a batch of `n` objects into `folders` (folder -> st_dev) with, or
        None for an fsync of each: a batch of at least BARRIER_MIN objects whose folders are all on one
        filesystem of SYNCFS_FILESYSTEMS, on a kernel whose syncfs reports writeback errors. Opened
        before the batch writes anything, so that syncfs reports every error of its writes."""
        devices = set(folders.values())
        if n < BARRIER_MIN or len(devices) != 1 or -1 in devices or not syncfs_reports_errors():
            return None
        try:
            fd = os.open(next(iter(folders)) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        if filesystem_type(fd) not in SYNCFS_FILESYSTEMS:
            os.close(fd)
            return None
        return fd

    def read_many(self, rels: list[str]) -> list[bytes | AcqdError]:
        """The stored bytes of many small objects of a local tier (read back to verify them)."""
        out: list[bytes | AcqdError] = []
        for rel in rels:
            try:
                with self._edge("read", rel):
                    fd = os.open(self.path(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    try:
                        size = os.fstat(fd).st_size
                        chunks = []
                        while block := os.read(fd, max(size + 1, 1 << 16)):
                            chunks.append(block)
                    finally:
                        os.close(fd)
                out.append(b"".join(chunks))
            except AcqdError as exc:
                out.append(exc)
        return out

    def atomic_file(self, rel: str) -> AtomicFile | None:
        """A seekable file to write `rel` into in place (a local tier: its hidden temporary), published
        by `commit()` without replacing anything; None where objects cannot be written in place (a
        layout then spools and uses `write_atomic`)."""
        if not self.local:
            return None
        return AtomicFile(self, rel)

    def _durable(self, f: Any) -> None:
        """Make the written bytes durable before the rename publishes them."""
        if self.local:
            os.fsync(f.fileno())

    def _taken(self, rel: str) -> NameTakenError:
        return NameTakenError(
            f"tier {self.name}: {self.url(rel)} already holds an object; acqd does not replace it "
            "(the journal decides whether it is this file's own copy)"
        )

    def _rename(self, tmp: str, final: str, replace: bool = False) -> None:
        """Publish `tmp` as `final`; FileExistsError if `final` exists and `replace` is not given."""
        if self.local:
            if replace:
                os.replace(tmp, final)  # atomic on POSIX
            else:
                rename_noreplace(tmp, final)
            self._sync_dir(posixpath.dirname(final))
        else:
            if not replace and self._looking().exists(final):
                raise FileExistsError(errno.EEXIST, "exists", final)
            # by exact names: fsspec's mv (a copy, then rm) takes a path for a glob pattern
            self.fs.cp_file(tmp, final)
            self.fs.rm_file(tmp)

    @staticmethod
    def _sync_dir(path: str) -> None:
        dfd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _discard(self, tmp: str) -> None:
        with contextlib.suppress(Exception):  # it may not exist; a restart cleans what is left
            self.fs.rm_file(tmp)

    def remove_temp(self, rel: str) -> bool:
        """Remove a leftover temporary of `rel` (a file, or the folder of a multi-object layout).
        Temporaries have reserved names (acqd.naming) that no stored source can have."""
        with self._edge("clean", rel):
            fs = self._looking()
            tmp = self.path(temp_name(rel))
            try:  # not fsspec's exists(), which says False for a tier it cannot reach
                info = fs.info(tmp)
            except (FileNotFoundError, NotADirectoryError):  # a folder of the name is a file
                return False
            if info.get("type") == "directory":
                self._rm_tree(tmp)
            else:
                fs.rm_file(tmp)
            return True

    def _rm_tree(self, path: str) -> None:
        """Delete the folder `path` and everything below it, each object by its exact name (blocking,
        inside an edge). Never fsspec's `rm(path, recursive=True)`: it takes `path` for a glob
        pattern, and a source's name may hold `?`, `*` or `[..]` — the tree of `stack?.tif` would
        take `stackA.tif`'s copy with it."""
        if self.local:
            import shutil

            shutil.rmtree(path)
            return
        fs = self._looking()
        found = fs.find(path, withdirs=True, detail=True)
        for p, info in found.items():
            if info.get("type") != "directory":
                fs.rm_file(p)
        for p in sorted((p for p, i in found.items() if i.get("type") == "directory"), key=len, reverse=True):
            with contextlib.suppress(FileNotFoundError):
                fs.rmdir(p)
        with contextlib.suppress(FileNotFoundError):
            fs.rmdir(path)

    # -- multi-object layouts (a Zarr store is a folder of objects) --------------------------
    def temp_tree(self, rel: str) -> str:
        return self.path(temp_name(rel))

    def put_in_temp_tree(self, rel: str, key: str, data: bytes | Sequence[bytes]) -> None:
        """One object (`key`, '/'-separated) into the temporary tree of `rel` on a local tier, never
        over one already there, paced by the bandwidth schedule and with errors translated at this
        edge (a Zarr copy's shards); `data` in one piece or in pieces written one after the other
        (one writev: no joined copy). Made durable with the tree at `commit_tree`."""
        if not self.local:
            raise PermanentError(f"tier {self.name}: a temporary tree is written object by object only on a local tier")
        path = posixpath.join(self.temp_tree(rel), key)
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
        self._paced(sum(len(p) for p in parts))
        with self._edge("write", rel):
            self._make_parents(posixpath.dirname(path))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                write_all(fd, parts)
            finally:
                os.close(fd)

    def stream_into_temp_tree(self, rel: str, key: str, chunks: Iterable[bytes]) -> None:
        """One object (`key`, '/'-separated) of the temporary tree of `rel`, streamed from `chunks`, on
        any tier (a Zarr copy moving between tiers), with the backend's errors translated at this edge
        like every storage call's; an error raised by `chunks` (the other tier) propagates as it is.
        A failed object is left in the temporary tree, which the next attempt removes first."""
        path = posixpath.join(self.temp_tree(rel), key)
        where = posixpath.join(temp_name(rel), key)
        with self._edge("open", where):
            self._make_parents(posixpath.dirname(path))
            f = self.fs.open(path, "wb")
        try:
            for block in chunks:
                with self._edge("write", where):
                    f.write(block)
            with self._edge("write", where):
                f.close()
        except BaseException:
            with contextlib.suppress(Exception):
                discard = getattr(f, "discard", None)  # an object store's upload: dropped, not completed
                if discard is not None:
                    discard()
                f.close()
            raise

    def commit_tree(self, rel: str) -> None:
        """Give the temporary tree its final name in one rename: at every instant the final name
        holds a whole tree or nothing. Never over an existing object (NameTakenError): a stored
        copy is replaced only by the caller deleting it first, on the journal's word."""
        crash_point("after_temp_write")
        tmp, final = self.temp_tree(rel), self.path(rel)
        with self._edge("commit", rel):
            try:
                if self.local:
                    self._durable_tree(tmp)
                    rename_noreplace(tmp, final)
                    self._sync_dir(posixpath.dirname(final))
                else:
                    self._commit_tree_remote(tmp, final)
            except FileExistsError:
                raise self._taken(rel) from None
        crash_point("after_rename")

    @staticmethod
    def _durable_tree(tmp: str) -> None:
        """Every file of a local temporary tree, and every folder in it, durable before the tree gets
        its final name: a rename publishes the folder, not its contents, so without this a power cut
        just after the commit could leave a named copy with empty or short shards, recorded as
        verified (it was read back from the page cache) and its source released."""

        def fail(exc: OSError) -> None:
            raise exc

        folders = []
        for root, _dirs, files in os.walk(tmp, onerror=fail):
            folders.append(root)
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        for folder in reversed(folders):
            Tier._sync_dir(folder)

    def _commit_tree_remote(self, tmp: str, final: str) -> None:
        fs = self._looking()
        if fs.exists(final):
            raise FileExistsError(errno.EEXIST, "exists", final)
        # object by object, by exact names (fsspec's mv takes a path for a glob pattern), root
        # metadata last: a partial tree is never a readable store
        files = sorted(p for p, i in fs.find(tmp, detail=True).items() if i.get("type") != "directory")
        files.sort(key=lambda p: posixpath.relpath(p, tmp) == "zarr.json")
        for p in files:
            fs.cp_file(p, f"{final}/{posixpath.relpath(p, tmp)}")
        self._rm_tree(tmp)

    def tree_size(self, path: str, only: Callable[[str], bool] | None = None) -> int:
        """The bytes of every object of the tree at `path`, or of those whose path in it `only` takes."""
        with self._edge("stat", path):
            found = self.fs.find(path, detail=True)
            return int(
                sum(
                    int(v["size"])
                    for k, v in found.items()
                    if v.get("type") != "directory" and (only is None or only(posixpath.relpath(k, path)))
                )
            )

    def tree_names(self, rel: str) -> list[str]:
        """The paths of the objects of the tree at `rel`, relative to it."""
        with self._edge("list", rel):
            path = self.path(rel)
            found = self._looking().find(path, detail=True)
            return sorted(posixpath.relpath(k, path) for k, v in found.items() if v.get("type") != "directory")

    def zarr_store(self, path: str) -> Any:
        """A zarr store on the backend path `path` (a Zarr copy, or its temporary tree) whose errors
        are translated at this edge like every storage call's: zarr-python writes and reads a copy's
        objects itself, and a dropped connection there is the network failing (transient), not a bug."""
        from zarr.storage import FsspecStore, LocalStore

        if self.local:
            store: Any = LocalStore(path)
        else:
            from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

            # Always the blocking interface run in threads: a remote filesystem's own event loop (s3fs,
            # sshfs) is not the one zarr runs its coroutines on, and its connections belong to that loop.
            # zarr warns of that choice at every store (made on purpose: not the operator's to read, and
            # printed by `acqd verify` on every copy)
            warnings.filterwarnings("ignore", message=r"fs \(.*\) was not created with `asynchronous=True`")
            store = FsspecStore(AsyncFileSystemWrapper(self.fs), path=path)
        top = f"{self.root}/" if self.root else ""
        rel = path[len(top) :] if top and path.startswith(top) else path

        def tr(op: str, key: str, exc: BaseException) -> AcqdError:
            return self._translate(op, f"{rel}/{key}" if key else rel)(exc)

        store = _edge_store(store, tr)
        return store if self.pace is None else _paced_store(store, self.pace)

    def remove(self, rel: str) -> None:
        with self._edge("delete", rel):
            self.fs.rm_file(self.path(rel))

    def remove_any(self, rel: str, *, tree: bool) -> None:
        """Delete a stored object: exactly one object (`tree` False), or a folder of objects such as
        a Zarr store (`tree` True). Which it is comes from the copy's layout, never from what the
        backend says is there: on S3 a key can be an object and a prefix at once (a file `run1`
        shipped, later a folder `run1/`), and deleting the file `run1` must not take what is below."""
        with self._edge("delete", rel):
            path = self.path(rel)
            fs = self._looking()
            if tree:
                self._rm_tree(path)
            else:
                fs.rm_file(path)
            if self.caches_listings:
                fs.invalidate_cache()

    def stored_size(self, rel: str) -> int | None:
        """Bytes of a stored object: a file, or every object of a tree (a Zarr store); None if absent."""
        with self._edge("stat", rel):
            path = self.path(rel)
            fs = self._looking()
            if not fs.exists(path):
                return None
            if fs.isdir(path):
                return self.tree_size(path)
        return self.size(rel)

    def is_partial_tree(self, rel: str) -> bool:
        """A folder of objects without its root `zarr.json`: what a crash in a non-atomic tree commit
        leaves (never a whole store)."""
        with self._edge("stat", rel):
            fs = self._looking()
            path = self.path(rel)
            return bool(fs.exists(path) and fs.isdir(path) and not fs.exists(f"{path}/zarr.json"))

    def remove_any_if_there(self, rel: str, *, tree: bool) -> None:
        """Delete a stored object (one object, or a tree: `remove_any`) if it is there; the caller
        owns the name (journal)."""
        with self._edge("delete", rel):
            path = self.path(rel)
            fs = self._looking()
            if not fs.exists(path):
                return
        self.remove_any(rel, tree=tree)

    # -- reads --------------------------------------------------------------------------------
    def open_read(self, rel: str) -> BinaryIO:
        with self._edge("read", rel):
            f: BinaryIO = self._looking().open(self.path(rel), "rb")
            return _EdgeReader(f, self._translate("read", rel))  # type: ignore[return-value]

    def size(self, rel: str) -> int | None:
        with self._edge("stat", rel):
            try:
                info = self._looking().info(self.path(rel))
            except (FileNotFoundError, NotADirectoryError):
                return None
            return int(info["size"])

    def stored_checksum(self, rel: str) -> str | None:
        """The backend's own record of acqd's checksum of the stored object, where it keeps one (S3
        object metadata); None here. Cheap: no read of the object."""
        return None

    def stamp(self, rel: str, *, tree: bool, only: Callable[[str], bool] | None = None) -> str | None:
        """What changes when a stored object is written again, without reading it: each object's size
        and modification time (an S3 object's ETag), for one object or every object of a tree (a Zarr
        store; `only`: of those whose path in it it takes). Taken when a copy is verified and compared
        before its source is released, so that a copy changed in between, its size kept, is not taken
        for the one verified. None: the backend says neither (the size check alone then)."""
        with self._edge("stat", rel):
            path = self.path(rel)
            parts = self._local_marks(path, tree) if self.local else self._remote_marks(path, tree)
        if tree and only is not None:
            parts = [p for p in parts if only(p.partition("\0")[0])]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return f"{len(parts)}:{xxhash.xxh3_128_hexdigest(chr(10).join(parts).encode())}"

    @staticmethod
    def _local_marks(path: str, tree: bool) -> list[str]:
        """Size, inode, st_mtime_ns and st_ctime_ns of a local file, or of each file of a folder (by its
        path in it): a file written again in place with its size and modification time put back (os.utime)
        still has a new ctime, and one replaced by a rename a new inode."""

        def mark(st: os.stat_result) -> str:
            return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"

        try:
            if not tree:
                return [mark(os.stat(path))]
            out = []
            for top, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    st = os.stat(os.path.join(top, name))
                    out.append(f"{os.path.relpath(os.path.join(top, name), path)}\0{mark(st)}")
            return out
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _remote_marks(self, path: str, tree: bool) -> list[str]:
        fs = self._looking()
        try:
            infos = fs.find(path, detail=True) if tree else {path: fs.info(path)}
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in sorted(infos):
            info = infos[name]
            if info.get("type") == "directory":
                continue
            when = _changed_mark(info)
            if when is None:
                return []
            out.append(f"{posixpath.relpath(name, path) if tree else ''}\0{int(info['size'])}:{when}")
        return out

    def exists(self, rel: str) -> bool:
        with self._edge("stat", rel):
            return bool(self._looking().exists(self.path(rel)))

    def has_objects(self, rel: str) -> bool:
        """Whether anything is stored below `rel` (stops at the first object where it can). acqd's
        hidden temporaries do not count: they hold nothing anybody relies on (a write in flight, or
        one a crash left, removed at the next start), nor do the holds' records (`~acqd-holds/`: a
        hold placed before the daemon's first start is no data another journal wrote)."""
        with self._edge("list", rel):
            path = self.path(rel)
            if self.local:
                for _dirpath, dirs, files in os.walk(path):
                    dirs[:] = [d for d in dirs if d != HOLDS]
                    if any(not is_temp(name) for name in files):
                        return True
                return False
            fs = self._looking()
            if not fs.exists(path):
                return False
            return any(
                not is_placeholder(p, info) and not is_temp(p.rpartition("/")[2]) and f"/{HOLDS}/" not in p
                for p, info in fs.find(path, detail=True).items()
            )

    def find(self, rel: str = "") -> list[str]:
        """Every object below `rel`, relative to the tier root (for checks and tests)."""
        with self._edge("list", rel):
            base = self.path(rel) if rel else self.root
            fs = self._looking()
            if not fs.exists(base):
                return []
            found = fs.find(base, detail=True)
        cut = len(self.root) + 1 if self.root else 0
        # object stores may list folder markers (or the root itself): only objects count
        return sorted(p[cut:] for p, info in found.items() if not is_placeholder(p, info) and p[cut:])


class ReaderBase:
    """The file-object surface readers of stored objects share (what tifffile and zstd expect)."""

    def read(self, n: int = -1) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> ReaderBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _EdgeReader(ReaderBase):
    """A file object whose read errors are translated at the storage edge."""

    def __init__(self, f: BinaryIO, tr: Callable[[BaseException], AcqdError]) -> None:
        self._f = f
        self._tr = tr

    def read(self, n: int = -1) -> bytes:
        try:
            return self._f.read(n)
        except Exception as exc:
            raise self._tr(exc) from exc

    def readinto(self, b: bytearray | memoryview) -> int:
        """Straight into `b` where the file can (a local file: one copy, no bytes object the size of
        a TIFF page's strips or a Zarr shard in between)."""
        into = getattr(self._f, "readinto", None)
        if into is None:
            return super().readinto(b)
        try:
            return int(into(b))
        except Exception as exc:
            raise self._tr(exc) from exc

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return int(self._f.seek(offset, whence))
        except Exception as exc:
            raise self._tr(exc) from exc

    def tell(self) -> int:
        return int(self._f.tell())

    def close(self) -> None:
        self._f.close()


class AtomicFile:
    """A local tier's temporary of `rel`, written in place (seekable: TIFF writers seek back), then
    published with `commit()` (fsync, rename without replacing, fsync of the folder) or dropped with
    `abort()`. Errors are translated at this edge like every storage call."""

    def __init__(self, tier: Tier, rel: str) -> None:
        self.tier, self.rel = tier, rel
        self.final, self.tmp = tier.path(rel), tier.path(temp_name(rel))
        self.done = False
        with tier._edge("open", rel):
            parent = posixpath.dirname(self.final)
            if parent:
                tier._make_parents(parent)
            self._f: Any = open(self.tmp, "w+b")  # noqa: SIM115 (closed by commit or abort)

    @property
    def file(self) -> BinaryIO:
        return _EdgeWriter(self._f, self.tier._translate("write", self.rel), self.tier._paced, writeback=True)  # type: ignore[return-value]

    def commit(self) -> int:
        with self.tier._edge("write", self.rel):
            self._f.flush()
            size = int(self._f.seek(0, 2))
            os.fsync(self._f.fileno())
            self._f.close()
        crash_point("after_temp_write")
        with self.tier._edge("rename", self.rel):
            try:
                rename_noreplace(self.tmp, self.final)
            except FileExistsError:
                raise self.tier._taken(self.rel) from None
            self.done = True
            Tier._sync_dir(posixpath.dirname(self.final))
        crash_point("after_rename")
        return size

    def abort(self) -> None:
        if self.done:
            return
        with contextlib.suppress(Exception):
            self._f.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class _EdgeWriter:
    """A writable file object whose errors are translated at the storage edge."""

    def __init__(
        self, f: Any, tr: Callable[[BaseException], AcqdError], paced: Callable[[int], None], writeback: bool = False
    ) -> None:
        self._f, self._tr, self._paced = f, tr, paced
        self._writeback = writeback  # start the disk's writeback every WRITEBACK_EVERY bytes
        self._unsynced = 0

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._f, name)(*args)
        except Exception as exc:
            raise self._tr(exc) from exc

    def write(self, b: Any) -> int:
        self._paced(memoryview(b).nbytes)
        n = int(self._call("write", b))
        if self._writeback:
            self._unsynced += n
            if self._unsynced >= WRITEBACK_EVERY:
                self._unsynced = 0
                start_writeback(self._f.fileno())
        return n

    def read(self, n: int = -1) -> bytes:
        return bytes(self._call("read", n))

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._call("seek", offset, whence))

    def tell(self) -> int:
        return int(self._call("tell"))

    def flush(self) -> None:
        self._call("flush")

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def _edge_store(store: Any, tr: Callable[[str, str, BaseException], AcqdError]) -> Any:
    """A zarr store whose every call to the backend has its errors translated at the storage edge
    (`tr(op, key, exc)`): a network error while zarr-python writes a shard or reads a zarr.json is a
    TransientError, as it is for every other storage call. FileNotFoundError passes as it is: it is
    the store's answer "not there", which zarr itself interprets."""
    import asyncio
    from collections.abc import AsyncGenerator, AsyncIterator

    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype
    from zarr.storage import WrapperStore

    def translated(op: str, key: str, exc: Exception) -> BaseException:
        return exc if isinstance(exc, FileNotFoundError | AcqdError) else tr(op, key, exc)

    class EdgeStore(WrapperStore[Any]):
        def __init__(self, inner: Any) -> None:
            super().__init__(inner)

        def _with_store(self, store: Any) -> EdgeStore:
            return EdgeStore(store)

        async def _open(self) -> None:
            try:
                await self._store._open()
            except Exception as exc:
                raise translated("open", "", exc) from exc

        async def _ensure_open(self) -> None:
            try:
                await self._store._ensure_open()
            except Exception as exc:
                raise translated("open", "", exc) from exc

        async def _listed(self, op: str, prefix: str, it: Callable[[], AsyncIterator[str]]) -> AsyncIterator[str]:
            try:
                async for key in it():
                    yield key
            except Exception as exc:
                raise translated(op, prefix, exc) from exc

        async def get(
            self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
        ) -> Buffer | None:
            try:
                return await self._store.get(key, prototype, byte_range)  # type: ignore[no-any-return]
            except Exception as exc:
                raise translated("read", key, exc) from exc

        async def get_partial_values(
            self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
        ) -> list[Buffer | None]:
            key_ranges = list(key_ranges)
            try:
                return await self._store.get_partial_values(prototype, key_ranges)  # type: ignore[no-any-return]
            except Exception as exc:
                raise translated("read", key_ranges[0][0] if key_ranges else "", exc) from exc

        async def exists(self, key: str) -> bool:
            try:
                return bool(await self._store.exists(key))
            except Exception as exc:
                raise translated("stat", key, exc) from exc

        async def is_empty(self, prefix: str) -> bool:
            try:
                return bool(await self._store.is_empty(prefix))
            except Exception as exc:
                raise translated("list", prefix, exc) from exc

        async def set(self, key: str, value: Buffer) -> None:
            try:
                await self._store.set(key, value)
            except Exception as exc:
                raise translated("write", key, exc) from exc

        async def set_if_not_exists(self, key: str, value: Buffer) -> None:
            try:
                await self._store.set_if_not_exists(key, value)
            except Exception as exc:
                raise translated("write", key, exc) from exc

        async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
            await asyncio.gather(*(self.set(key, value) for key, value in values))  # each translated

        async def _get_many(
            self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
        ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
            for key, prototype, byte_range in requests:  # each translated
                yield key, await self.get(key, prototype, byte_range)

        async def delete(self, key: str) -> None:
            try:
                await self._store.delete(key)
            except Exception as exc:
                raise translated("delete", key, exc) from exc

        async def delete_dir(self, prefix: str) -> None:
            try:
                await self._store.delete_dir(prefix)
            except Exception as exc:
                raise translated("delete", prefix, exc) from exc

        async def clear(self) -> None:
            try:
                await self._store.clear()
            except Exception as exc:
                raise translated("delete", "", exc) from exc

        def list(self) -> AsyncIterator[str]:
            return self._listed("list", "", lambda: self._store.list())

        def list_prefix(self, prefix: str) -> AsyncIterator[str]:
            return self._listed("list", prefix, lambda: self._store.list_prefix(prefix))

        def list_dir(self, prefix: str) -> AsyncIterator[str]:
            return self._listed("list", prefix, lambda: self._store.list_dir(prefix))

    return EdgeStore(store)


def _paced_store(store: Any, pace: Callable[[int], float]) -> Any:
    """A zarr store whose writes wait as the tier's bandwidth schedule says."""
    import asyncio

    from zarr.storage import WrapperStore

    class PacedStore(WrapperStore[Any]):
        async def set(self, key: str, value: Any) -> None:
            wait = pace(len(value))
            if wait > 0:
                await asyncio.sleep(wait)
            await self._store.set(key, value)

    return PacedStore(store)
