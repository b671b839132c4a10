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
    """The source file is not what its profile says: it is quarantined with this reason."""


class SourceChangedError(AcqdError):
    """The source changed, shrank, was replaced or vanished while acqd looked at it.

    Not a failure: the file is re-examined from the start, never shipped half.
    """


class SourceReadError(AcqdError):
    """The source cannot be read (permission, I/O error). Retried; quarantined if it persists."""


class VerifyError(AcqdError):
    """What was read back from the destination does not equal what was read from the source."""


class JournalError(AcqdError):
    """The journal cannot be opened or written (locked, corrupt, disk full)."""
