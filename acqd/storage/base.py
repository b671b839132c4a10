"""A storage tier on an fsspec filesystem: atomic writes, trees, reads; errors translated at the edge.

This class serves local folders (file://, a NAS mount) and any fsspec filesystem with a rename
(memory://). Object stores and SFTP servers subclass it (acqd.storage.s3, acqd.storage.sftp).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, TypeVar

import fsspec
import xxhash

from acqd.crash import crash_point
from acqd.errors import AcqdError, PermanentError
from acqd.storage.errors import DestinationError, translate

T = TypeVar("T")

TEMP_SUFFIX = ".acqd-tmp"


NAME_MAX = 255  # bytes in one path component, on every filesystem acqd ships to


def temp_name(rel: str) -> str:
    """The temporary name of `rel`: hidden, in the same folder, deterministic (so a restart finds it).
    A name too long to take the prefix and suffix gets a short temporary derived from its hash."""
    head, _, base = rel.rpartition("/")
    tmp = f".{base}{TEMP_SUFFIX}"
    if len(tmp.encode("utf-8", "surrogateescape")) > NAME_MAX:
        tmp = f".acqd-{xxhash.xxh3_64_hexdigest(base.encode('utf-8', 'surrogateescape'))}{TEMP_SUFFIX}"
    return f"{head}/{tmp}" if head else tmp


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


class Tier:
    """A named storage tier on an fsspec filesystem. Blocking: call from the I/O executor."""

    #: what the backend is called in messages and in the error table
    backend = "fsspec"
    #: the filesystem caches listings (s3fs, sshfs): questions about what is there must not see a stale one
    caches_listings = False

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None) -> None:
        self.name = name
        self._url = url.rstrip("/")
        try:
            fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        except (ImportError, ValueError) as exc:
            raise PermanentError(f"tier {name}: cannot use {url!r}: {exc}") from None
        self._fs: Any = fs
        self.root = root.rstrip("/")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.local = protocol in ("file", "local")

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (remote backends connect on first use and again after a failure)."""
        return self._fs

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

    # -- paths --------------------------------------------------------------------------------
    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.root else rel

    def url(self, rel: str) -> str:
        return f"{self._url}/{rel}"

    @contextlib.contextmanager
    def _edge(self, op: str, rel: str) -> Iterator[None]:
        try:
            yield
        except AcqdError:
            raise
        except Exception as exc:
            self._failed(exc)
            raise translate(self.name, op, self.url(rel), exc) from exc

    def _failed(self, exc: BaseException) -> None:
        """Hook: a storage call failed (remote backends drop a broken connection here)."""

    def _translate(self, op: str, rel: str) -> Callable[[BaseException], AcqdError]:
        def tr(exc: BaseException) -> AcqdError:
            self._failed(exc)
            return translate(self.name, op, self.url(rel), exc)

        return tr

    # -- writes -------------------------------------------------------------------------------
    def write_atomic(self, rel: str, chunks: Iterable[bytes]) -> int:
        """Stream `chunks` to a hidden temporary, make it durable, then rename it to `rel`.

        Only the filesystem calls are translated into storage errors; an error raised by `chunks`
        (the source side) propagates as it is. Either way the temporary is removed.
        """
        final = self.path(rel)
        tmp = self.path(temp_name(rel))
        written = 0
        with self._edge("open", rel):
            parent = posixpath.dirname(final)
            if parent:
                self.fs.makedirs(parent, exist_ok=True)
            f = self.fs.open(tmp, "wb")
        try:
            for block in chunks:
                if block:
                    with self._edge("write", rel):
                        f.write(block)
                    written += len(block)
            with self._edge("write", rel):
                f.flush()
                self._durable(f)
                f.close()
            crash_point("after_temp_write")
            with self._edge("rename", rel):
                self._rename(tmp, final)
            crash_point("after_rename")
        except BaseException:
            with contextlib.suppress(Exception):
                f.close()
            self._discard(tmp)
            raise
        return written

    def probe(self, under: str) -> None:
        """`acqd check`: write a small object below `under`, read it back and delete it. Its name is a
        temporary name (hidden, `.acqd-tmp`), which no source file's stored copy ever has."""
        rel = temp_name(f"{under}/acqd-check-{os.getpid()}" if under else f"acqd-check-{os.getpid()}")
        data = b"acqd check probe " + os.urandom(16).hex().encode()
        self.write_atomic(rel, [data])
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

    def _durable(self, f: Any) -> None:
        """Make the written bytes durable before the rename publishes them."""
        if self.local:
            os.fsync(f.fileno())

    def _rename(self, tmp: str, final: str) -> None:
        if self.local:
            os.replace(tmp, final)  # atomic on POSIX, replaces an older copy of the same version
            dfd = os.open(posixpath.dirname(final) or ".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        else:
            self.fs.mv(tmp, final)

    def _discard(self, tmp: str) -> None:
        with contextlib.suppress(Exception):  # it may not exist; a restart cleans what is left
            self.fs.rm_file(tmp)

    def remove_temp(self, rel: str) -> bool:
        """Remove a leftover temporary of `rel` (a file, or the folder of a multi-object layout) and
        an older tree a crashed commit had renamed aside."""
        found = False
        with self._edge("clean", rel):
            fs = self._looking()
            for tmp in (self.path(temp_name(rel)), self.path(temp_name(rel + ".old"))):
                if fs.exists(tmp):
                    if fs.isdir(tmp):
                        fs.rm(tmp, recursive=True)
                    else:
                        fs.rm_file(tmp)
                    found = True
        return found

    # -- multi-object layouts (a Zarr store is a folder of objects) --------------------------
    def temp_tree(self, rel: str) -> str:
        return self.path(temp_name(rel))

    def commit_tree(self, rel: str) -> None:
        """Give the temporary tree its final name. An older tree under that name (an unrecorded copy
        from a run that crashed) is first renamed aside, never deleted in place: at every instant
        the final name holds a whole tree or nothing."""
        crash_point("after_temp_write")
        tmp, final, aside = self.temp_tree(rel), self.path(rel), self.path(temp_name(rel + ".old"))
        with self._edge("commit", rel):
            if self.local:
                if os.path.isdir(aside):
                    shutil.rmtree(aside)
                if os.path.isdir(final):
                    os.rename(final, aside)
                os.rename(tmp, final)
                dfd = os.open(posixpath.dirname(final) or ".", os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
                if os.path.isdir(aside):
                    shutil.rmtree(aside)
            else:
                self._commit_tree_remote(tmp, final, aside)
        crash_point("after_rename")

    def _commit_tree_remote(self, tmp: str, final: str, aside: str) -> None:
        fs = self.fs
        if fs.exists(aside):
            fs.rm(aside, recursive=True)
        if fs.exists(final):
            fs.mv(final, aside, recursive=True)
        fs.mv(tmp, final, recursive=True)
        if fs.exists(aside):
            fs.rm(aside, recursive=True)

    def tree_size(self, path: str) -> int:
        with self._edge("stat", path):
            return int(sum(int(v["size"]) for v in self.fs.find(path, detail=True).values()))

    def zarr_store(self, path: str) -> Any:
        from zarr.storage import FsspecStore, LocalStore

        if self.local:
            return LocalStore(path)
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

        # Always the blocking interface run in threads: a remote filesystem's own event loop (s3fs,
        # sshfs) is not the one zarr runs its coroutines on, and its connections belong to that loop.
        return FsspecStore(AsyncFileSystemWrapper(self.fs), path=path)

    def remove(self, rel: str) -> None:
        with self._edge("delete", rel):
            self.fs.rm_file(self.path(rel))

    def remove_any(self, rel: str) -> None:
        """Delete a stored object: a file, or a folder of objects (a Zarr store)."""
        with self._edge("delete", rel):
            path = self.path(rel)
            if self.fs.isdir(path):
                self.fs.rm(path, recursive=True)
            else:
                self.fs.rm_file(path)

    # -- reads --------------------------------------------------------------------------------
    def open_read(self, rel: str) -> BinaryIO:
        with self._edge("read", rel):
            f: BinaryIO = self.fs.open(self.path(rel), "rb")
            return _EdgeReader(f, self._translate("read", rel))  # type: ignore[return-value]

    def size(self, rel: str) -> int | None:
        with self._edge("stat", rel):
            try:
                info = self._looking().info(self.path(rel))
            except FileNotFoundError:
                return None
            return int(info["size"])

    def exists(self, rel: str) -> bool:
        with self._edge("stat", rel):
            return bool(self._looking().exists(self.path(rel)))

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
        return sorted(p[cut:] for p, info in found.items() if info.get("type") != "directory" and p[cut:])


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

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return int(self._f.seek(offset, whence))
        except Exception as exc:
            raise self._tr(exc) from exc

    def tell(self) -> int:
        return int(self._f.tell())

    def close(self) -> None:
        self._f.close()
