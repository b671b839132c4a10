"""Storage tiers: one per configured name, chosen by URL scheme.

- file:// (local folder, NAS mount) and memory:// (tests): `Tier`, temporary + fsync + rename.
- s3://: `S3Tier` (s3fs), single PUT or multipart, acqd's checksum in the object metadata,
  create-only publication, orphaned uploads aborted.
- sftp://: `SftpTier` (sshfs/asyncssh), temporary + fsync@openssh.com + posix-rename, host keys
  checked against known_hosts, reconnects after a dropped connection.
"""

from __future__ import annotations

from typing import Any

from acqd.errors import PermanentError
from acqd.storage.base import NAME_MAX, Tier, is_temp, stalled_calls, stalled_tiers, temp_name
from acqd.storage.errors import ERROR_TABLE, ConflictError, DestinationError, NameTooLongError, translate

__all__ = [
    "ERROR_TABLE",
    "NAME_MAX",
    "ConflictError",
    "DestinationError",
    "NameTooLongError",
    "Tier",
    "check_name",
    "is_temp",
    "open_tier",
    "stalled_calls",
    "stalled_tiers",
    "temp_name",
    "translate",
]


def check_name(rel: str) -> None:
    """Refuse a stored name no destination can hold (a component over 255 bytes once the layout's
    suffix is added): the file is quarantined with this reason instead of being retried for ever."""
    for part in rel.split("/"):
        n = len(part.encode("utf-8", "surrogateescape"))
        if n > NAME_MAX:
            raise NameTooLongError(
                f"the stored name {part[:40]}... would be {n} bytes; a file name may have at most {NAME_MAX}"
            )


def open_tier(name: str, url: str, options: dict[str, Any] | None = None) -> Tier:
    """The tier for `url`, with the backend its scheme names."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("s3", "s3a"):
        try:
            from acqd.storage.s3 import S3Tier
        except ImportError as exc:
            raise PermanentError(f"tier {name}: s3:// needs s3fs: pip install 'acqd[s3]' ({exc})") from None
        return S3Tier(name, url, options)
    if scheme in ("sftp", "ssh"):
        try:
            from acqd.storage.sftp import SftpTier
        except ImportError as exc:
            raise PermanentError(f"tier {name}: sftp:// needs sshfs: pip install 'acqd[sftp]' ({exc})") from None
        return SftpTier(name, url, options)
    return Tier(name, url, options)
