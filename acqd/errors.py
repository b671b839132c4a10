"""One error tree. Third-party errors are translated into these where they enter acqd."""

from __future__ import annotations

EX_CONFIG = 78  # sysexits.h: configuration error; systemd's RestartPreventExitStatus=78


class AcqdError(Exception):
    """Base of every error acqd raises on purpose."""


class ConfigError(AcqdError):
    """A configuration or profile file is invalid. The message names the file, line and field."""


class TransientError(AcqdError):
    """Might succeed later (destination down, disk full, network). The work is retried."""


class PermanentError(AcqdError):
    """Will not succeed by retrying (auth, permission on the destination, a bug in the input)."""


class FormatError(PermanentError):
    """The source file is damaged (truncated, corrupt, contradicts itself): it cannot be stored
    faithfully, and is quarantined with this reason."""


class UnfinishedFormatError(FormatError):
    """The source's format says more is to come (a TIFF whose last IFD points past the file's end, an
    MRC with more bytes than its header counts frames): a writer still at work, or one that stopped.
    Waited for while a process has the file open for writing; once none has, the file is stored
    byte-exact (every byte kept, flagged with this reason), never as the frames found so far."""


class CutShortError(UnfinishedFormatError):
    """The source is shorter than its own format says (an MRC with fewer frames than its header counts,
    a TIFF whose pixel data runs past its end, a MIB with a frame half there or fewer frames than its
    .hdr counts): stored byte-exact like any unfinished file, and never removed from the acquisition
    disk by a release (a writer acqd cannot see, on another host, may still add to it)."""


class UnsupportedFormatError(AcqdError):
    """A valid source that a frame layout cannot represent faithfully (an RGB or tiled TIFF, a JPEG
    TIFF, a 4-bit MRC). Not damaged, so never quarantined: nothing was published, and the file is
    stored byte-exact (the copy layout) instead, with a profile-mismatch note saying why."""


class SourceChangedError(AcqdError):
    """The source changed, shrank, was replaced or vanished while acqd looked at it.

    Not a failure: the file is re-examined from the start, never shipped half.
    """


class SourceReadError(AcqdError):
    """The source cannot be read (permission, I/O error). Retried; quarantined if it persists."""


class StoredLargerError(AcqdError):
    """A frame layout's copy came out larger than its source (incompressible data). Nothing was
    published: the file is planned again and stored byte-exact (the copy layout) instead."""


class VerifyError(AcqdError):
    """What was read back from the destination does not equal what was read from the source."""


class JournalError(AcqdError):
    """The journal cannot be opened or written (locked, corrupt, disk full)."""


class NameTakenError(PermanentError):
    """A write found an object already under its final name and did not replace it.

    Whether that object is this same source's earlier copy (adopt it, or delete it and write again)
    is decided by the caller from the journal. `result` is what the write computed from the source
    (a WriteResult), so the object in the way can be verified against it.
    """

    def __init__(self, message: str, result: object | None = None) -> None:
        super().__init__(message)
        self.result = result


class PathBlockedError(PermanentError):
    """A folder of a write's name is a file at the destination (a file and a folder cannot share a
    name there): nothing is replaced; the source waits, said as a conflict."""


class ClaimError(AcqdError):
    """The destination belongs to another daemon (or journal): this one must not write there.
    `reason`: what a halt for it is labelled (`acqd_halted{reason}`): "claim", or "journal" when
    this daemon's own journal was deleted or replaced."""

    def __init__(self, message: str, reason: str = "claim") -> None:
        super().__init__(message)
        self.reason = reason


class CatalogError(AcqdError):
    """The facility catalog (PostgreSQL) cannot be reached or used; the daemon ships on regardless."""


class FenceError(AcqdError):
    """This process no longer holds the facility hub's lease: another replica acts now."""
