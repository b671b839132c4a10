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
#: for "ssh", the kind of failure for "net" (the network between acqd and the server, whichever
#: library reports it: `NETWORK_ERRORS`). Anything not listed is transient: retried with backoff,
#: never fatal to the file.
ERROR_TABLE: dict[tuple[str, int | str], tuple[type[AcqdError], str]] = {
    ("os", errno.EACCES): (DestinationError, "permission denied"),
    ("os", errno.EPERM): (DestinationError, "operation not permitted"),
    ("os", errno.EROFS): (DestinationError, "read-only filesystem"),
    ("os", errno.ENOSPC): (TransientError, "no space left on the destination"),
    ("os", errno.EDQUOT): (TransientError, "quota exceeded on the destination"),
    ("os", errno.EIO): (TransientError, "I/O error on the destination"),
    ("os", errno.ENAMETOOLONG): (NameTooLongError, "the name is too long for the destination"),
    ("os", errno.ENOENT): (TransientError, "path not found on the destination"),
    ("os", errno.ETIMEDOUT): (TransientError, "network error: timed out"),
    ("os", errno.ECONNREFUSED): (TransientError, "network error: connection refused"),
    ("os", errno.ECONNRESET): (TransientError, "network error: connection reset"),
    ("os", errno.EHOSTUNREACH): (TransientError, "network error: host unreachable"),
    ("os", errno.ENETUNREACH): (TransientError, "network error: network unreachable"),
    ("os", errno.ECONNABORTED): (TransientError, "network error: connection aborted"),
    ("s3", "AccessDenied"): (DestinationError, "access denied (credentials or bucket policy)"),
    ("s3", "InvalidAccessKeyId"): (DestinationError, "unknown access key (credentials)"),
    ("s3", "SignatureDoesNotMatch"): (DestinationError, "wrong secret key (credentials)"),
    ("s3", "ExpiredToken"): (DestinationError, "expired session token (credentials)"),
    # the time signed into the request is too far from the server's: this machine's clock, or a request
    # signed long before the server read it (a server that stalled for minutes: a stranger's review)
    ("s3", "RequestTimeTooSkewed"): (
        DestinationError,
        "the server found the request's time too far from its own (RequestTimeTooSkewed): this machine's clock is "
        "off, or the request waited long for a server that stalled",
    ),
    ("s3", "NoSuchBucket"): (DestinationError, "bucket does not exist"),
    ("s3", "InvalidBucketName"): (DestinationError, "invalid bucket name"),
    # a HEAD request's 403 carries no error code: the credentials refused (wrong key or secret, an
    # expired token) or a policy that does not allow the request
    ("s3", "403"): (DestinationError, "forbidden (the credentials refused, or a bucket policy that denies it)"),
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
    # an unknown host and a host whose key changed answer alike: "add it" is no advice for the second (a
    # reinstalled server, or another machine answering: a stranger's review)
    ("ssh", _DISC_HOST_KEY_NOT_VERIFIABLE): (
        DestinationError,
        "host key not trusted: the server's key is not in known_hosts, or differs from the one there (a "
        "reinstalled server, or another machine answering: check with the server's owner before adding or "
        "replacing the entry; `ssh-keyscan -p PORT HOST` shows the key offered)",
    ),
    ("ssh", _DISC_NO_MORE_AUTH): (DestinationError, "authentication failed (key_file)"),
    ("ssh", _DISC_CONNECTION_LOST): (TransientError, "connection lost"),
    ("net", "connection"): (
        TransientError,
        "network error: no connection to the server, or it was cut mid-request (retried until the network is back)",
    ),
    ("net", "timeout"): (TransientError, "network error: the server did not answer in time (retried)"),
}

#: Exception classes that are the network failing, by (top-level module, class name) so that this
#: table needs none of those libraries imported: a class anywhere in an error's MRO (the most
#: specific first) or in its chain of causes makes it a "net" error of that kind. The OS's own
#: (ConnectionError: reset, refused, aborted, broken pipe; TimeoutError, which asyncio's, socket's and
#: fsspec's timeouts are), the name lookup's, http.client's, aiohttp's (s3fs), botocore's and urllib3's.
NETWORK_ERRORS: dict[tuple[str, str], str] = {
    ("builtins", "TimeoutError"): "timeout",
    ("builtins", "ConnectionError"): "connection",
    ("socket", "gaierror"): "connection",
    ("socket", "herror"): "connection",
    ("http", "HTTPException"): "connection",  # IncompleteRead, RemoteDisconnected, BadStatusLine
    ("aiohttp", "ServerTimeoutError"): "timeout",
    ("aiohttp", "ClientConnectionError"): "connection",  # ServerDisconnected, ClientOSError, ClientConnectorError
    ("aiohttp", "ClientPayloadError"): "connection",  # the body cut short
    ("botocore", "ConnectTimeoutError"): "timeout",
    ("botocore", "ReadTimeoutError"): "timeout",
    ("botocore", "ConnectionError"): "connection",  # EndpointConnectionError, ProxyConnectionError, ...
    ("botocore", "HTTPClientError"): "connection",  # ConnectionClosedError, ResponseStreamingError
    ("botocore", "IncompleteReadError"): "connection",
    ("urllib3", "NewConnectionError"): "connection",
    ("urllib3", "ProtocolError"): "connection",
    ("urllib3", "TimeoutError"): "timeout",
}


def network_error(exc: BaseException) -> tuple[str, BaseException] | None:
    """The kind of network failure `exc` is ("connection" or "timeout": `NETWORK_ERRORS`) and the
    exception of its chain that says so, or None when it is not the network failing."""
    seen: BaseException | None = exc
    while seen is not None:
        for cls in type(seen).__mro__:
            kind = NETWORK_ERRORS.get(((cls.__module__ or "").partition(".")[0], cls.__name__))
            if kind is not None:
                return kind, seen
        seen = seen.__cause__ or seen.__context__
    return None


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
    oskey: tuple[str, int | str] | None = ("os", num) if isinstance(num, int) else None
    if oskey is not None and oskey in ERROR_TABLE and ERROR_TABLE[oskey][0] is TransientError:
        return oskey  # its own words ("network error: connection refused", "... connection reset", ...)
    net = network_error(exc)
    if net is not None:  # the network failing is never the destination refusing nor the file's fault
        return ("net", net[0])
    return oskey


def translate(tier: str, op: str, path: str, exc: BaseException) -> AcqdError:
    """Map a third-party or OS error at the storage edge to acqd's error tree."""
    if isinstance(exc, AcqdError):
        return exc
    key = _classify(exc)
    if key is not None and key in ERROR_TABLE:
        cls, what = ERROR_TABLE[key]
        net = network_error(exc) if key[0] == "net" else None
        if net is not None:  # which library said what: the endpoint, the reset, the timeout
            what = f"{what}: {type(net[1]).__name__}: {net[1]}"
        return cls(f"tier {tier}: {op} {path}: {what}")
    return TransientError(f"tier {tier}: {op} {path}: {type(exc).__name__}: {exc}")
