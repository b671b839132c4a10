"""SFTP servers (OpenSSH and compatible) through sshfs/asyncssh.

A write goes to a hidden temporary in the same folder, is made durable with the
``fsync@openssh.com`` extension, and is renamed over the final name with ``posix-rename@openssh.com``
(atomic, replaces). A dropped connection leaves at most the temporary, which the next start
removes; nothing partial ever has a final name.

Host keys are checked: against ``known_hosts`` (default ``~/.ssh/known_hosts``); an unknown or
changed key is a `DestinationError`, never a silent accept. Authentication is by key
(``key_file``); passwords and passphrases never go in acqd.yaml. A connection that fails is dropped
and the next call connects again, so a server that comes back is used again without a restart.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import warnings
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():  # asyncssh names DSA, which cryptography deprecates: some ten lines at
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)  # every start, of keys acqd never uses
    import asyncssh
    import sshfs
from fsspec.asyn import sync
from fsspec.utils import infer_storage_options

from acqd.config import redact_url
from acqd.errors import PermanentError
from acqd.storage.base import Tier, check_options

log = logging.getLogger("acqd")

SECRET_OPTIONS = ("password", "passphrase")
OPTIONS = ("key_file", "known_hosts", "username", "port", "connect_timeout", "keepalive")


class SftpTier(Tier):
    backend = "sftp"
    caches_listings = True
    stamps_show_rewrites = False  # SFTP's attributes: size and mtime in whole seconds, no inode or ctime

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None) -> None:
        opts = check_options(name, options, OPTIONS, SECRET_OPTIONS, "options.key_file")
        parsed = infer_storage_options(url)
        host = parsed.get("host")
        if not host:
            raise PermanentError(f"tier {name}: {redact_url(url)!r} names no host: sftp://user@host:port/path")
        self.name = name
        self._url = url.rstrip("/")
        self.root = str(parsed.get("path") or "").rstrip("/")
        self.local = False
        known = os.path.expanduser(str(opts.get("known_hosts", "~/.ssh/known_hosts")))
        if not os.path.exists(known):
            raise PermanentError(
                f"tier {name}: options.known_hosts: {known} does not exist; host keys are always checked "
                f"(add the server's key: ssh-keyscan -p PORT HOST >> {known})"
            )
        self._connect: dict[str, Any] = {
            "port": int(opts.get("port", parsed.get("port") or 22)),
            "known_hosts": known,
            "connect_timeout": float(opts.get("connect_timeout", 15)),
            "keepalive_interval": float(opts.get("keepalive", 10)),
            "keepalive_count_max": 3,
        }
        user = opts.get("username") or parsed.get("username")
        if user:
            self._connect["username"] = str(user)
        if "key_file" in opts:
            key = os.path.expanduser(str(opts["key_file"]))
            if not os.access(key, os.R_OK):
                raise PermanentError(f"tier {name}: options.key_file: cannot read {key}")
            self._connect["client_keys"] = [key]
        self._host = str(host)
        self._fs = None
        self._lock = threading.Lock()

    # -- connection ---------------------------------------------------------------------------
    @property
    def fs(self) -> Any:
        with self._lock:
            if self._fs is None:
                self._fs = sshfs.SSHFileSystem(self._host, skip_instance_cache=True, **self._connect)
            return self._fs

    def _failed(self, exc: BaseException) -> None:
        """Drop the connection after a connection-level failure; the next call connects again."""
        lost = isinstance(exc, asyncssh.DisconnectError | ConnectionError | EOFError | BrokenPipeError | TimeoutError)
        if isinstance(exc, asyncssh.SFTPError) and exc.code in (
            asyncssh.FX_NO_CONNECTION,
            asyncssh.FX_CONNECTION_LOST,
        ):
            lost = True
        if isinstance(exc, OSError) and exc.errno is None and not isinstance(exc, PermissionError):
            lost = True  # asyncssh reports a closed channel as a bare OSError
        if lost:
            self.close()

    def close(self) -> None:
        with self._lock:
            fs, self._fs = self._fs, None
        if fs is not None:
            with contextlib.suppress(Exception):
                fs.client.close()

    def _channel_call(self, method: str, *args: Any) -> Any:
        fs = self.fs

        async def call() -> Any:
            async with fs._pool.get() as channel:
                return await getattr(channel, method)(*args)

        return sync(fs.loop, call)

    # -- hooks of the atomic write ------------------------------------------------------------
    def _durable(self, f: Any) -> None:
        try:
            f.fsync()
        except asyncssh.SFTPOpUnsupported:
            log.warning("tier %s: the server has no fsync@openssh.com; durability is up to the server", self.name)

    def _rename(self, tmp: str, final: str, replace: bool = False) -> None:
        if replace:
            try:
                self._channel_call("posix_rename", tmp, final)
                return
            except asyncssh.SFTPOpUnsupported:
                # plain SFTP rename refuses to replace: remove the older one first (a short window
                # with nothing under the final name, never a partial one); reserved names only
                with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                    self._channel_call("remove", final)
        self._plain_rename(tmp, final)

    def _plain_rename(self, tmp: str, final: str) -> None:
        """SFTP's own rename never replaces (OpenSSH: link() then unlink() for a file; a folder is
        renamed only if nothing is there): the no-replace publish acqd needs."""
        try:
            self._channel_call("rename", tmp, final)
        except asyncssh.SFTPFailure:
            fs = self._looking()
            if fs.exists(final):
                raise FileExistsError(errno.EEXIST, "exists", final) from None
            raise

    def _commit_tree_remote(self, tmp: str, final: str) -> None:
        # every file of the tree durable on the server (fsync@openssh.com) before the tree is named; its
        # folders are up to the server (SFTP cannot fsync a folder), as a single file's folder is
        for path in self._looking().find(tmp):
            with self.fs.open(path, "rb") as f:
                try:
                    f.fsync()
                except asyncssh.SFTPOpUnsupported:
                    self._durable(f)  # says once per commit that durability is up to the server
                    break
        self._plain_rename(tmp, final)
        self.fs.invalidate_cache()
