"""Storage errors: every backend's failures mapped to acqd's error tree in one table.

A `DestinationError` is the destination refusing (auth, permission, read-only, missing bucket): the
file is not at fault, acqd waits and retries slowly and an operator must act. A `TransientError` is
expected to pass (network, server busy, disk full until someone frees space). Nothing here is ever a
reason to touch the source.
"""

from __future__ import annotations

import errno

from acqd.errors import AcqdError, FormatError, PermanentError, TransientError


class DestinationError(PermanentError):
    """The destination refuses (permission, auth, read-only). Retried slowly; never the file's fault."""


class NameTooLongError(FormatError):
    """The destination cannot hold the file's name (too long, or a name the backend reads as something
    else): the file's fault, not the destination's; quarantined."""


class ConflictError(DestinationError):
    """An object that acqd did not write is in the way of a create-only write: never overwritten."""


# SFTP status codes (draft-ietf-secsh-filexfer-02, what OpenSSH speaks) and SSH disconnect reasons
# (RFC 4253 11.1), by number so this table needs neither asyncssh nor botocore imported.
_FX_NO_SUCH_FILE, _FX_PERMISSION_DENIED, _FX_FAILURE, _FX_NO_CONNECTION, _FX_CONNECTION_LOST = 2, 3, 4, 6, 7
_FX_NO_SPACE, _FX_QUOTA = 14, 15
_DISC_HOST_KEY_NOT_VERIFIABLE, _DISC_CONNECTION_LOST, _DISC_NO_MORE_AUTH = 9, 10, 14

#: (backend, code) -> (error class, what it means for an operator). Codes: errno numbers for "os",
#: S3 error codes or HTTP statuses for "s3", SFTP status codes for "sftp", SSH disconnect reasons
#: for "ssh". Anything not listed is transient: retried with backoff, never fatal to the file.
ERROR_TABLE: dict[tuple[str, int | str], tuple[type[AcqdError], str]] = {
    ("os", errno.EACCES): (DestinationError, "permission denied"),
    ("os", errno.EPERM): (DestinationError, "operation not permitted"),
    ("os", errno.EROFS): (DestinationError, "read-only filesystem"),
    ("os", errno.ENOSPC): (TransientError, "no space left on the destination"),
    ("os", errno.EDQUOT): (TransientError, "quota exceeded on the destination"),
    ("os", errno.EIO): (TransientError, "I/O error on the destination"),
    ("os", errno.ENAMETOOLONG): (NameTooLongError, "the name is too long for the destination"),
    ("os", errno.ENOENT): (TransientError, "path not found on the destination"),
    ("os", errno.ETIMEDOUT): (TransientError, "timed out"),
    ("os", errno.ECONNREFUSED): (TransientError, "connection refused"),
    ("os", errno.ECONNRESET): (TransientError, "connection reset"),
    ("os", errno.EHOSTUNREACH): (TransientError, "host unreachable"),
    ("s3", "AccessDenied"): (DestinationError, "access denied (credentials or bucket policy)"),
    ("s3", "InvalidAccessKeyId"): (DestinationError, "unknown access key (credentials)"),
    ("s3", "SignatureDoesNotMatch"): (DestinationError, "wrong secret key (credentials)"),
    ("s3", "ExpiredToken"): (DestinationError, "expired session token (credentials)"),
    ("s3", "RequestTimeTooSkewed"): (DestinationError, "this machine's clock is too far from the server's"),
    ("s3", "NoSuchBucket"): (DestinationError, "bucket does not exist"),
    ("s3", "InvalidBucketName"): (DestinationError, "invalid bucket name"),
    ("s3", "403"): (DestinationError, "forbidden"),
    ("s3", "NoSuchKey"): (TransientError, "object not found"),
    ("s3", "404"): (TransientError, "object not found"),
    ("s3", "SlowDown"): (TransientError, "server asks to slow down"),
    ("s3", "ServiceUnavailable"): (TransientError, "service unavailable"),
    ("s3", "InternalError"): (TransientError, "server internal error"),
    ("s3", "RequestTimeout"): (TransientError, "request timed out"),
    ("s3", "NoSuchUpload"): (TransientError, "multipart upload vanished (aborted elsewhere)"),
    ("s3", "PreconditionFailed"): (ConflictError, "an object is already there (create-only write)"),
    ("s3", "KeyTooLongError"): (NameTooLongError, "the key is too long for the store"),
    ("sftp", _FX_PERMISSION_DENIED): (DestinationError, "permission denied"),
    ("sftp", _FX_NO_SUCH_FILE): (TransientError, "path not found on the destination"),
    ("sftp", _FX_NO_SPACE): (TransientError, "no space left on the destination"),
    ("sftp", _FX_QUOTA): (TransientError, "quota exceeded on the destination"),
    # OpenSSH answers a full disk, a quota or a read-only filesystem with this bare code
    ("sftp", _FX_FAILURE): (
        TransientError,
        "the server reported a failure without a reason (OpenSSH's answer to a full disk, a quota, a "
        "read-only filesystem, or its sftp server ending mid-transfer: check the server's free space and "
        "that sshd runs)",
    ),
    ("sftp", _FX_NO_CONNECTION): (TransientError, "no connection"),
    ("sftp", _FX_CONNECTION_LOST): (TransientError, "connection lost"),
    ("ssh", _DISC_HOST_KEY_NOT_VERIFIABLE): (DestinationError, "host key not trusted (add it to known_hosts)"),
    ("ssh", _DISC_NO_MORE_AUTH): (DestinationError, "authentication failed (key_file)"),
    ("ssh", _DISC_CONNECTION_LOST): (TransientError, "connection lost"),
}


def _classify(exc: BaseException) -> tuple[str, int | str] | None:
    """The table key of a third-party exception, looking through its chain of causes."""
    seen: BaseException | None = exc
    while seen is not None:
        mod = type(seen).__module__ or ""
        if mod.startswith("botocore"):
            response = getattr(seen, "response", None)
            if isinstance(response, dict):
                err = response.get("Error", {})
                s3code = str(err.get("Code", ""))
                if ("s3", s3code) in ERROR_TABLE:
                    return ("s3", s3code)
                status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
                return ("s3", status)
        if mod.startswith("asyncssh"):
            sshcode = getattr(seen, "code", None)
            if isinstance(sshcode, int):
                return ("sftp" if type(seen).__name__.startswith("SFTP") else "ssh", sshcode)
        seen = seen.__cause__ or seen.__context__
    num = getattr(exc, "errno", None)
    if isinstance(exc, PermissionError):
        num = errno.EACCES
    elif isinstance(exc, FileNotFoundError):
        num = errno.ENOENT
    return ("os", num) if isinstance(num, int) else None


def translate(tier: str, op: str, path: str, exc: BaseException) -> AcqdError:
    """Map a third-party or OS error at the storage edge to acqd's error tree."""
    if isinstance(exc, AcqdError):
        return exc
    key = _classify(exc)
    if key is not None and key in ERROR_TABLE:
        cls, what = ERROR_TABLE[key]
        return cls(f"tier {tier}: {op} {path}: {what}")
    return TransientError(f"tier {tier}: {op} {path}: {type(exc).__name__}: {exc}")
