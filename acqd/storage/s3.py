"""S3-compatible object stores (AWS, Ceph RGW, MinIO, SeaweedFS) through s3fs.

How a write stays atomic and verifiable on a store without rename:

- An object that fits in one part (``part_size``, default 16 MiB) is buffered and sent with one
  PUT to its final key. A PUT is atomic: readers see the whole object or none.
- A larger object is streamed as a multipart upload (``concurrency`` parts in flight) to a hidden
  temporary key, then published to its final key by a server-side copy. Until that copy completes
  nothing is under the final key; a crash leaves at most the temporary key and an unfinished upload,
  and both are removed by the next start (`abort_incomplete`).
- acqd's own checksum of the stored bytes (xxh3-128) travels as object metadata
  (``x-amz-meta-acqd-xxh3-128``) on every object it publishes. Multipart ETags are not MD5s, so
  acqd never uses them to verify; it reads the object back.
- Publication is create-only (``If-None-Match: *``). When something is already there: an object
  acqd wrote with the same checksum is the same bytes (done); anything else under the name, an older
  acqd object (a crash before the journal recorded it) or one without acqd's metadata, is never
  overwritten (`NameTakenError`, which says who wrote it).

Credentials never come from acqd.yaml: ``credentials_file`` (the AWS shared-credentials INI format)
and ``profile``, or else the standard AWS chain (environment, ~/.aws, instance metadata).
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import errno
import inspect
import logging
import posixpath
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, BinaryIO

import s3fs
import xxhash
from fsspec.asyn import sync

from acqd.checksum import Hasher
from acqd.config import redact_url
from acqd.crash import crash_point
from acqd.errors import NameTakenError, PermanentError, VerifyError
from acqd.storage.base import ReaderBase, Tier, check_options, is_temp, temp_name
from acqd.storage.errors import ConflictError, NameTooLongError

log = logging.getLogger("acqd")

META_CHECKSUM = "acqd-xxh3-128"
COPY_LIMIT = 5 * 2**30  # the largest object one CopyObject request copies
MIN_PART = 5 * 2**20  # S3's smallest part (all but the last)
MAX_COPY = 5 * 2**30  # the largest single-request server-side copy
COPY_PART = 2**30
SECRET_OPTIONS = ("key", "secret", "token", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")
OPTIONS = ("endpoint_url", "region", "profile", "credentials_file", "part_size", "concurrency", "create_only", "s3fs")


def _size(v: Any, field: str) -> int:
    from acqd.units import parse_size

    try:
        return int(parse_size(v))
    except ValueError as exc:
        raise PermanentError(f"options.{field}: {exc}") from None


def read_credentials(path: str, profile: str) -> dict[str, str]:
    """Key, secret (and token) from an AWS shared-credentials file; a clear error when they are not there."""
    cp = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            cp.read_file(f)
    except OSError as exc:
        raise PermanentError(f"options.credentials_file: cannot read {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise PermanentError(f"options.credentials_file: {path} is not an AWS credentials file: {exc}") from None
    if not cp.has_section(profile):
        raise PermanentError(f"options.credentials_file: {path} has no [{profile}] section")
    sec = cp[profile]
    try:
        out = {"key": sec["aws_access_key_id"], "secret": sec["aws_secret_access_key"]}
    except KeyError as exc:
        raise PermanentError(f"options.credentials_file: [{profile}] in {path} lacks {exc.args[0]}") from None
    if "aws_session_token" in sec:
        out["token"] = sec["aws_session_token"]
    return out


#: what acqd sets itself on every S3FileSystem (its own event loop, no instance cache, one session)
S3FS_RESERVED = ("asynchronous", "loop", "session", "skip_instance_cache")
#: s3fs's secrets by other names (s3fs takes `username`/`password` for key and secret)
S3FS_SECRETS = ("key", "secret", "token", "username", "password")
#: the keyword arguments fsspec's base classes take beside s3fs's own
FSSPEC_OPTIONS = ("use_listings_cache", "listings_expiry_time", "max_paths", "batch_size")


def s3fs_options(tier: str, raw: Any) -> dict[str, Any]:
    """`options.s3fs`, passed to s3fs.S3FileSystem, checked before anything connects: a mapping whose
    keys s3fs, botocore's client (`client_kwargs`) and botocore's Config (`config_kwargs`) know, and no
    secret. s3fs takes unknown keys silently and botocore refuses them only on the first request,
    where they would look like a failing server: a typo is said at start instead."""
    import botocore.config
    import botocore.exceptions
    import botocore.session

    where = f"tier {tier}: options.s3fs"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PermanentError(f"{where}: a mapping of s3fs.S3FileSystem arguments, not {type(raw).__name__}")
    own = [p for p in inspect.signature(s3fs.S3FileSystem.__init__).parameters if p not in ("self", "kwargs")]
    known = sorted({*own, *FSSPEC_OPTIONS} - {*S3FS_RESERVED, *S3FS_SECRETS})
    client = [
        p
        for p in inspect.signature(botocore.session.Session.create_client).parameters
        if p not in ("self", "service_name", "config") and p not in SECRET_OPTIONS
    ]
    config = sorted(botocore.config.Config.OPTION_DEFAULTS)
    for key, value in raw.items():
        if key in S3FS_SECRETS:
            raise PermanentError(
                f"{where}.{key}: secrets never go in acqd.yaml; use options.credentials_file (AWS credentials "
                "INI) or the AWS chain"
            )
        if key in S3FS_RESERVED:
            raise PermanentError(f"{where}.{key}: set by acqd itself; remove it")
        if key not in known:
            raise PermanentError(f"{where}: unknown s3fs argument {key!r}; known: {', '.join(known)}")
        if key in ("client_kwargs", "config_kwargs", "s3_additional_kwargs") and not isinstance(value, dict):
            raise PermanentError(f"{where}.{key}: a mapping, not {type(value).__name__}")
    for key in raw.get("client_kwargs") or {}:
        if key in SECRET_OPTIONS:
            raise PermanentError(
                f"{where}.client_kwargs.{key}: secrets never go in acqd.yaml; use options.credentials_file "
                "(AWS credentials INI) or the AWS chain"
            )
        if key not in client:
            raise PermanentError(
                f"{where}.client_kwargs: unknown botocore client argument {key!r}; known: {', '.join(client)}"
            )
    for key in raw.get("config_kwargs") or {}:
        if key not in config:
            raise PermanentError(
                f"{where}.config_kwargs: unknown botocore Config option {key!r}; known: {', '.join(config)}"
            )
    try:
        botocore.config.Config(**(raw.get("config_kwargs") or {}))
    except (TypeError, ValueError, botocore.exceptions.BotoCoreError) as exc:
        raise PermanentError(f"{where}.config_kwargs: {exc}") from None
    return dict(raw)


class S3Tier(Tier):
    backend = "s3"
    caches_listings = True
    atomic_trees = False  # a Zarr store is copied object by object (root zarr.json last)
    folders = False  # keys below an object are stored ('sess/run1' and 'sess/run1/x.mrc')

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None) -> None:
        opts = check_options(
            name, options, OPTIONS, SECRET_OPTIONS, "options.credentials_file (AWS credentials INI) or the AWS chain"
        )
        self.name = name
        self._url = url.rstrip("/")
        self.part_size = max(_size(opts.get("part_size", "16MiB"), "part_size"), MIN_PART)
        self.concurrency = max(1, int(opts.get("concurrency", 4)))
        self.create_only = bool(opts.get("create_only", True))
        kwargs = s3fs_options(name, opts.get("s3fs"))
        profile = str(opts.get("profile", "default"))
        self._secrets = (str(opts["credentials_file"]), profile) if "credentials_file" in opts else None
        if self._secrets is not None:
            kwargs.update(read_credentials(*self._secrets))
        elif "profile" in opts:
            kwargs["profile"] = profile
        if "endpoint_url" in opts:
            kwargs["endpoint_url"] = str(opts["endpoint_url"])
        if "region" in opts:
            kwargs.setdefault("client_kwargs", {})["region_name"] = str(opts["region"])
        self._kwargs = kwargs
        self.root = url.partition("://")[2].strip("/")
        if not self.root:
            raise PermanentError(f"tier {name}: {redact_url(url)!r} names no bucket: s3://bucket/prefix")
        self.local = False
        self._fs = None
        # uploads whose abort failed (the server was away): aborted once it answers again, not left for
        # the next start (a daemon runs for months, and the store bills them: an adversarial review)
        self._unaborted: list[tuple[str, str, str]] = []
        self._unaborted_lock = threading.Lock()
        self._uploading: set[str] = set()  # the upload ids of this process's uploads under way

    def reread_secrets(self) -> str | None:
        """The credentials file read again (a reload): new keys are used by the next requests (a fixed or
        refreshed file was read once, at the start: a stranger's review); a file that cannot be read now
        leaves the keys in use, said."""
        if self._secrets is None:
            return None
        try:
            fresh = read_credentials(*self._secrets)
        except PermanentError as exc:
            return f"tier {self.name}: {exc}: the credentials read before stay in use"
        if {k: self._kwargs[k] for k in ("key", "secret", "token") if k in self._kwargs} == fresh:
            return None
        for k in ("key", "secret", "token"):
            self._kwargs.pop(k, None)
        self._kwargs.update(fresh)
        self._fs = None  # the next request connects with them (requests under way finish with the old)
        return f"tier {self.name}: credentials_file {self._secrets[0]} read again: its new keys are in use"

    # -- connection ---------------------------------------------------------------------------
    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = s3fs.S3FileSystem(skip_instance_cache=True, **self._kwargs)
        return self._fs

    def _call(self, method: str, **kwargs: Any) -> Any:
        fs = self.fs
        out = sync(fs.loop, fs._call_s3, method, **kwargs)
        if self._unaborted:  # the server answers again
            self._abort_left()
        return out

    def _left_unaborted(self, bucket: str, key: str, upload_id: str) -> None:
        with self._unaborted_lock:
            self._unaborted.append((bucket, key, upload_id))

    def _abort_left(self) -> None:
        """Abort the uploads whose abort failed; each still failing is tried again after the next
        request that succeeds (one that is gone already counts as aborted)."""
        with self._unaborted_lock:
            left, self._unaborted = self._unaborted, []
        fs = self.fs
        for bucket, key, upload_id in left:
            try:
                sync(fs.loop, fs._call_s3, "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
            except FileNotFoundError:
                pass
            except Exception as exc:
                self._left_unaborted(bucket, key, upload_id)
                log.debug("tier %s: the unfinished upload of %s not aborted yet: %s", self.name, key, exc)
                continue
            log.info("tier %s: aborted the unfinished upload of %s a failed write left", self.name, key)

    def _sweep_key(self, bucket: str, key: str) -> None:
        """Abort the unfinished uploads of `key` that are not this process's uploads under way: those a
        create whose answer was lost left (a server that stalled executed the client's retries of it
        later, each an upload acqd never learnt of: a stranger's review found ten, kept until the next
        start). Once an upload of the key is done; one list request. A failure is left to the next one
        (and to every start)."""
        try:
            page = self._call("list_multipart_uploads", Bucket=bucket, Prefix=key)
        except Exception as exc:
            log.debug("tier %s: unfinished uploads of %s not listed: %s", self.name, key, exc)
            return
        with self._unaborted_lock:
            busy = set(self._uploading)
        for u in page.get("Uploads", []) or []:
            if u.get("Key") != key or u.get("UploadId") in busy:
                continue
            try:
                self._call("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=u["UploadId"])
            except FileNotFoundError:
                continue
            except Exception:
                self._left_unaborted(bucket, key, u["UploadId"])
                continue
            log.info("tier %s: aborted an unfinished upload of %s that a lost answer left", self.name, key)

    def _submit(self, method: str, **kwargs: Any) -> Future[Any]:
        fs = self.fs
        return asyncio.run_coroutine_threadsafe(fs._call_s3(method, **kwargs), fs.loop)

    def path(self, rel: str) -> str:
        if "?versionId=" in rel:
            # s3fs (and the AWS tools) read `?versionId=` in a path as an object version: the object
            # would be written under its name and read back under another
            raise NameTooLongError(
                f"the name {rel!r} holds '?versionId=', which S3 clients read as an object version: it cannot "
                "be stored on S3 under its name (rename the file)"
            )
        return super().path(rel)

    def _split(self, path: str) -> tuple[str, str]:
        bucket, _, key = path.partition("/")
        return bucket, key

    # -- writes -------------------------------------------------------------------------------
    def write_atomic(self, rel: str, chunks: Iterable[bytes], *, replace: bool = False, paced: bool = True) -> int:
        """Stream `chunks`; publish the whole object under `rel` or nothing (see the module doc).
        An object already under `rel` is never replaced (NameTakenError) unless `replace` is given
        (acqd's reserved names only); the same bytes already there count as written."""
        bucket, key = self._split(self.path(rel))
        _, tmp_key = self._split(self.path(temp_name(rel)))
        h = Hasher()
        buf = bytearray()
        written = 0
        upload: _Upload | None = None
        try:
            for block in chunks:  # errors from the source side propagate as they are
                if not block:
                    continue
                if paced:
                    self._paced(len(block))
                h.update(block)
                written += len(block)
                buf += block
                while len(buf) >= self.part_size:
                    if upload is None:
                        with self._edge("write", rel):
                            upload = _Upload(self, bucket, tmp_key)
                    with self._edge("write", rel):
                        upload.send(bytes(buf[: self.part_size]))
                    del buf[: self.part_size]
            meta = {META_CHECKSUM: h.hexdigest().partition(":")[2], "acqd-size": str(written)}
            if upload is None:
                with self._edge("write", rel):
                    self._put(bucket, key, rel, bytes(buf), meta, replace)
                crash_point("after_rename")
                return written
            with self._edge("write", rel):
                if buf:
                    upload.send(bytes(buf))
                upload.complete()
            crash_point("after_temp_write")
            with self._edge("commit", rel):
                self._publish(bucket, tmp_key, key, rel, written, meta, replace)
            crash_point("after_rename")
        except BaseException:
            if upload is not None:
                upload.abort()
            with contextlib.suppress(Exception):
                self._call("delete_object", Bucket=bucket, Key=tmp_key)
            raise
        with contextlib.suppress(Exception):  # a leftover temporary is removed by the next start
            self._call("delete_object", Bucket=bucket, Key=tmp_key)
        return written

    def _put(self, bucket: str, key: str, rel: str, body: bytes, meta: dict[str, str], replace: bool) -> None:
        args: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body, "Metadata": meta}
        if replace:
            self._call("put_object", **args)
            return
        if not self.create_only:  # a store without conditional writes: look first (not atomic)
            self._refuse_if_there(bucket, key, rel, meta)
            self._call("put_object", **args)
            return
        try:
            self._call("put_object", IfNoneMatch="*", **args)
        except Exception as exc:
            self._in_the_way(bucket, key, rel, meta, exc)

    def _publish(
        self, bucket: str, tmp_key: str, key: str, rel: str, size: int, meta: dict[str, str], replace: bool
    ) -> None:
        """Server-side copy of the finished temporary to its final key, with acqd's metadata."""
        if replace:
            self._copy(bucket, tmp_key, key, size, meta, {})
            return
        if not self.create_only:
            self._refuse_if_there(bucket, key, rel, meta)
            self._copy(bucket, tmp_key, key, size, meta, {})
            return
        try:
            self._copy(bucket, tmp_key, key, size, meta, {"IfNoneMatch": "*"})
        except Exception as exc:
            self._in_the_way(bucket, key, rel, meta, exc)

    def _copy(self, bucket: str, src: str, key: str, size: int, meta: dict[str, str], cond: dict[str, str]) -> None:
        if size <= MAX_COPY:
            self._call(
                "copy_object",
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": bucket, "Key": src},
                Metadata=meta,
                MetadataDirective="REPLACE",
                **cond,
            )
        else:
            self._copy_parts(bucket, src, key, size, meta, cond)

    def _copy_parts(
        self, bucket: str, src: str, key: str, size: int, meta: dict[str, str], cond: dict[str, str]
    ) -> None:
        up = _Upload(self, bucket, key, meta)
        try:
            for start in range(0, size, COPY_PART):
                end = min(size, start + COPY_PART) - 1
                up.copy_part({"Bucket": bucket, "Key": src}, f"bytes={start}-{end}")
            up.complete(**cond)
        except BaseException:
            up.abort()
            raise

    def _refuse_if_there(self, bucket: str, key: str, rel: str, meta: dict[str, str]) -> None:
        try:
            head = self._call("head_object", Bucket=bucket, Key=key)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) or "404" in str(exc) or "Not Found" in str(exc):
                return
            raise
        self._judge(head, rel, meta)

    def _in_the_way(self, bucket: str, key: str, rel: str, meta: dict[str, str], exc: Exception) -> None:
        """A create-only write failed on `exc`: fine if the same bytes are already there; otherwise
        NameTakenError (never replaced, whoever wrote it); anything else re-raised."""
        from acqd.storage.errors import translate

        if not isinstance(translate(self.name, "write", rel, exc), ConflictError):
            raise exc
        self._judge(self._call("head_object", Bucket=bucket, Key=key), rel, meta)

    def _judge(self, head: dict[str, Any], rel: str, meta: dict[str, str]) -> None:
        theirs = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        if theirs.get(META_CHECKSUM) == meta[META_CHECKSUM]:
            return  # the same bytes: written by an earlier attempt of this very write
        who = "by acqd" if META_CHECKSUM in theirs else "not by acqd (no acqd checksum metadata)"
        raise NameTakenError(
            f"tier {self.name}: {self.url(rel)} already holds another object, written {who}; acqd does not replace it"
        )

    # -- `acqd check` -------------------------------------------------------------------------
    def probe(self, under: str) -> None:
        """`acqd check`: write a small object below `under`, read it back and delete it (Tier.probe),
        then remove the folders that write left. Some servers (SeaweedFS) keep a folder once its last
        object is deleted, and list it: the instrument's prefix would then seem to hold data, and the
        first `acqd run` after a check would refuse it as another journal's."""
        rel = self._probe_name(under)
        bucket, key = self._split(self.path(rel))
        parts = key.split("/")[:-1]
        folders = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]  # deepest first
        with self._edge("list", under):
            empty = [f for f in folders if not self._holds_keys(bucket, f)]  # only these may be removed
        try:
            self._probe(rel)
        except BaseException:
            with contextlib.suppress(Exception):  # the probe's own error is what check reports
                self._remove_empty(bucket, empty)
            raise
        with self._edge("clean", under):
            self._remove_empty(bucket, empty)

    def _remove_empty(self, bucket: str, folders: list[str]) -> None:
        """Remove `folders` (deepest first) while each holds no key."""
        for folder in folders:
            if self._holds_keys(bucket, folder):  # something came in meanwhile (a running daemon)
                break
            # an empty folder's name as a key: deleting it removes that empty folder on a server that
            # keeps one, never anything in it, and is a no-op on one that keeps none
            self._call("delete_object", Bucket=bucket, Key=f"{folder}/")
        self.fs.invalidate_cache()

    def _holds_keys(self, bucket: str, folder: str) -> bool:
        """Whether any key lies below `folder/` (its own "folder/" marker key included: a folder an
        operator made is theirs). One short listing, whatever the folder holds."""
        page = self._call("list_objects_v2", Bucket=bucket, Prefix=f"{folder}/", MaxKeys=1)
        return bool(page.get("Contents"))

    # -- trees (a Zarr store is a prefix of objects) -----------------------------------------
    def commit_tree(self, rel: str) -> None:
        """Copy the temporary prefix to the final one, root metadata last, then drop the temporary.

        A Zarr store is readable only once its root ``zarr.json`` exists: it is copied last. A final
        prefix that already holds objects is never written into (NameTakenError). A crash part way
        leaves a prefix without a root (not a store, not in the journal), which the pipeline removes
        before it writes again, on the journal's word that it is this file's own name.
        """
        crash_point("after_temp_write")
        tmp, final = self.temp_tree(rel), self.path(rel)
        with self._edge("commit", rel):
            # every key by its exact name, through the S3 API itself: fsspec's copy and rm take a
            # path for a glob pattern (a source named `stack?.tif` or `run[1].tif`)
            bucket, fkey = self._split(final)
            if self._keys_below(final) or self._is_object(final):
                raise self._taken(rel)
            _, tkey = self._split(tmp)
            sizes = dict(self._keys_below(tmp))
            objects = sorted(sizes)
            # the chunks and shards first, then each array's and group's zarr.json, the deepest first and
            # the root's last: a commit cut part way (a server that failed for a while) left arrays whose
            # metadata was there before all their shards, readable with shards missing (a stranger's
            # review); now a partial prefix holds no array that opens until its data is all there
            meta = sorted((k for k in objects if posixpath.basename(k) == "zarr.json"), key=lambda k: -k.count("/"))
            first = [k for k in objects if posixpath.basename(k) != "zarr.json"]
            for i, k in enumerate(first + meta):
                dest = f"{fkey}/{k[len(tkey) + 1 :]}"
                if sizes[k] < COPY_LIMIT:
                    self._call("copy_object", Bucket=bucket, Key=dest, CopySource={"Bucket": bucket, "Key": k})
                else:  # one copy_object takes at most 5 GiB: a shard set larger is copied in parts
                    sync(self.fs.loop, self.fs._copy_managed, f"{bucket}/{k}", f"{bucket}/{dest}", sizes[k])
                if i == 0:
                    crash_point("during_commit")
            self._delete_keys(bucket, objects)
            self.fs.invalidate_cache()
        crash_point("after_rename")

    def _keys_below(self, path: str, markers: bool = False) -> list[tuple[str, int]]:
        """(key, size) of every object below the folder `path` (the prefix `path/`), exactly;
        `markers`: with the folder markers (keys ending in "/") some servers keep."""
        bucket, key = self._split(path)
        args: dict[str, Any] = {"Bucket": bucket, "Prefix": key.rstrip("/") + "/"}
        out: list[tuple[str, int]] = []
        while True:
            page = self._call("list_objects_v2", **args)
            # a key ending in "/" is a folder marker (some servers, e.g. SeaweedFS, keep an empty
            # folder after its objects were deleted): not an object
            found = page.get("Contents", []) or []
            out += [(str(o["Key"]), int(o["Size"])) for o in found if markers or not str(o["Key"]).endswith("/")]
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return out
            args["ContinuationToken"] = page["NextContinuationToken"]

    def _is_object(self, path: str) -> bool:
        bucket, key = self._split(path)
        try:
            self._call("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return False
        return True

    def _delete_keys(self, bucket: str, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            res = self._call(
                "delete_objects", Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            errors = res.get("Errors") or []
            if errors:
                e = errors[0]
                why = f"{len(errors)} object(s) not deleted, e.g. {e.get('Key')}: {e.get('Message')}"
                raise OSError(errno.EIO, why)

    def _rm_tree(self, path: str) -> None:
        """Every object below `path`, by its exact key (see Tier._rm_tree)."""
        bucket, _ = self._split(path)
        self._delete_keys(bucket, [k for k, _ in self._keys_below(path, markers=True)])
        self.fs.invalidate_cache()

    def open_read(self, rel: str) -> BinaryIO:
        """The object, checked against its acqd checksum metadata when read through to the end."""
        f = super().open_read(rel)
        expected = self.metadata(rel).get(META_CHECKSUM)
        if expected is None:
            return f
        return _CheckedReader(f, expected, self.url(rel))  # type: ignore[return-value]

    def metadata(self, rel: str) -> dict[str, str]:
        """The object's user metadata (acqd's checksum is under `META_CHECKSUM`)."""
        bucket, key = self._split(self.path(rel))
        with self._edge("stat", rel):
            head = self._call("head_object", Bucket=bucket, Key=key)
        return {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}

    def stored_checksum(self, rel: str) -> str | None:
        """acqd's checksum of the stored bytes, from the object's metadata (one HEAD request)."""
        return self.metadata(rel).get(META_CHECKSUM)

    def abort_incomplete(self, under: str) -> int:
        """Abort every unfinished multipart upload below `under` (acqd's namespace on this tier):
        what a crash or a dropped connection left, which the store would otherwise keep, and bill,
        for ever. Also removes leftover temporary objects there."""
        bucket, prefix = self._split(self.path(under))
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        aborted = 0
        with self._edge("clean", under):
            args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            while True:
                page = self._call("list_multipart_uploads", **args)
                for u in page.get("Uploads", []) or []:
                    self._call("abort_multipart_upload", Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
                    aborted += 1
                if not page.get("IsTruncated"):
                    break
                args["KeyMarker"] = page.get("NextKeyMarker", "")
                args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
            fs = self.fs
            fs.invalidate_cache()
            base = self.path(under)
            if fs.exists(base):
                for p in fs.find(base):
                    if any(is_temp(part) for part in p.split("/")):
                        fs.rm_file(p)
        return aborted

    def close(self) -> None:
        self._fs = None


class _CheckedReader(ReaderBase):
    """Hashes what is read in order from the start; at the end compares with the object's acqd
    checksum metadata (a seek out of order turns the check off: the layout verifies content anyway)."""

    def __init__(self, f: BinaryIO, expected: str, url: str) -> None:
        self._f, self._expected, self._url = f, expected, url
        self._h: Any = xxhash.xxh3_128()
        self._pos = 0
        self._checking = True

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._checking:
            self._h.update(data)
            self._pos += len(data)
            if not data and (n is None or n != 0):
                self._checking = False
                if self._h.hexdigest() != self._expected:
                    raise VerifyError(
                        f"{self._url}: bytes read back hash to {self._h.hexdigest()}, "
                        f"not the {self._expected} in its acqd checksum metadata"
                    )
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._f.seek(offset, whence)
        if pos != self._pos:
            self._checking = False
        return pos

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


class _Upload:
    """One multipart upload, `concurrency` parts in flight; blocking calls from an executor thread."""

    def __init__(self, tier: S3Tier, bucket: str, key: str, meta: dict[str, str] | None = None) -> None:
        self.tier, self.bucket, self.key = tier, bucket, key
        res = tier._call("create_multipart_upload", Bucket=bucket, Key=key, Metadata=meta or {})
        self.upload_id: str = res["UploadId"]
        with tier._unaborted_lock:
            tier._uploading.add(self.upload_id)
        self.parts: list[dict[str, Any]] = []
        self.pending: list[tuple[int, Future[Any]]] = []
        self.done = False

    def _drain(self, keep: int) -> None:
        while len(self.pending) > keep:
            n, fut = self.pending.pop(0)
            res = fut.result()
            etag = res["CopyPartResult"]["ETag"] if "CopyPartResult" in res else res["ETag"]
            self.parts.append({"PartNumber": n, "ETag": etag})

    def send(self, body: bytes) -> None:
        self._drain(self.tier.concurrency - 1)
        n = len(self.parts) + len(self.pending) + 1
        fut = self.tier._submit(
            "upload_part", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=n, Body=body
        )
        self.pending.append((n, fut))

    def copy_part(self, source: dict[str, str], byte_range: str) -> None:
        self._drain(self.tier.concurrency - 1)
        n = len(self.parts) + len(self.pending) + 1
        fut = self.tier._submit(
            "upload_part_copy",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=n,
            CopySource=source,
            CopySourceRange=byte_range,
        )
        self.pending.append((n, fut))

    def complete(self, **cond: str) -> None:
        self._drain(0)
        self.tier._call(
            "complete_multipart_upload",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": sorted(self.parts, key=lambda p: p["PartNumber"])},
            **cond,
        )
        self._finished()

    def _finished(self) -> None:
        """Done (completed or aborted): no longer under way; the key's other unfinished uploads go."""
        self.done = True
        with self.tier._unaborted_lock:
            self.tier._uploading.discard(self.upload_id)
        self.tier._sweep_key(self.bucket, self.key)

    def abort(self) -> None:
        if self.done:
            return
        for _, fut in self.pending:
            with contextlib.suppress(BaseException):
                fut.result(timeout=60)
        try:
            self.tier._call("abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except FileNotFoundError:
            pass
        except Exception:  # the server is away: aborted once it answers again (and at every start)
            self.tier._left_unaborted(self.bucket, self.key, self.upload_id)
            self.done = True
            with self.tier._unaborted_lock:
                self.tier._uploading.discard(self.upload_id)
            return
        self._finished()


__all__ = ["META_CHECKSUM", "S3Tier", "read_credentials"]
