"""Log formats, defined in one place: one line per file outcome; journald priorities when under systemd."""

from __future__ import annotations

import logging
from typing import ClassVar

from acqd.values import Outcome

log = logging.getLogger("acqd")

_LEVEL = {
    "seen": logging.DEBUG,
    "complete": logging.DEBUG,
    "verified": logging.INFO,
    "released": logging.INFO,
    "vanished": logging.INFO,
    "quarantined": logging.WARNING,
    "retry": logging.WARNING,
    "conflict": logging.ERROR,
    "profile-mismatch": logging.WARNING,
    "halted": logging.CRITICAL,
    "retention.warned": logging.INFO,
    "retention.transitioned": logging.INFO,
    "retention.purged": logging.WARNING,
}


class LogReporter:
    def outcome(self, o: Outcome) -> None:
        level = _LEVEL.get(o.kind, logging.INFO)
        if not log.isEnabledFor(level):
            return
        if o.kind == "verified":
            ratio = o.source_bytes / o.stored_bytes if o.stored_bytes else 0.0
            log.log(
                level,
                "verified %r -> %s (%d bytes, stored %d, ratio %.2f, %.3fs, %s)",
                o.relpath,
                o.dest,
                o.source_bytes,
                o.stored_bytes,
                ratio,
                o.seconds,
                o.checksum,
            )
        elif o.kind in ("quarantined", "vanished", "retry", "profile-mismatch") or o.kind.startswith("retention."):
            log.log(level, "%s %r: %s", o.kind, o.relpath, o.reason)
        else:
            log.log(level, "%s %r", o.kind, o.relpath)


class JournaldFormatter(logging.Formatter):
    """`<N>` syslog priority prefixes, which journald turns into the entry's PRIORITY."""

    _PRIO: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        prio = self._PRIO.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())
