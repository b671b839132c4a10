"""Log formats, defined in one place: one line per file outcome; journald priorities when under systemd."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TextIO

from acqd.values import RELEASED_AFTER_RESTART, Outcome

log = logging.getLogger("acqd")

#: a path in an error message (what differs between files that fail for one reason)
PATHLIKE = re.compile(r"\S*/\S*")

_LEVEL = {
    "seen": logging.DEBUG,
    "complete": logging.DEBUG,
    "verified": logging.INFO,
    "released": logging.INFO,
    "held": logging.INFO,
    "release_failed": logging.WARNING,
    "copy_lost": logging.WARNING,
    "vanished": logging.INFO,
    "quarantined": logging.WARNING,
    "retry": logging.WARNING,
    "conflict": logging.ERROR,
    "profile-mismatch": logging.WARNING,
    "stream_fallback": logging.WARNING,
    "retention.failed": logging.DEBUG,  # the retention runner logs each failure itself, once per digest
    "halted": logging.CRITICAL,
    "unreadable": logging.WARNING,
    "left_aside": logging.WARNING,
    "readable": logging.INFO,
    "retention.warned": logging.INFO,
    "retention.transitioned": logging.INFO,
    "retention.purged": logging.WARNING,
}


@dataclass
class _Seen:
    first: float
    text: str
    level: int
    count: int = 0  # repeats not logged yet
    total: int = 1
    since: float = 0.0  # start of the current count


class Repeats:
    """Turns a stream of identical errors into one line and a count.

    The first occurrence of an error (a `site` plus its text: a stage, a file's retry, the
    journal) is logged in full, with its traceback if one is given; identical ones after it are
    only counted. The count is logged as one line when the site works again (`ok`) and by `flush`
    (the daemon calls it every minute and at exit: "still failing"). Thread-safe."""

    def __init__(
        self,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str], None] = lambda site: None,
    ) -> None:
        self._log = logger
        self._clock = clock
        self._on_error = on_error  # every occurrence, logged or counted (the daemon's error metric)
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], _Seen] = {}

    def error(
        self, site: str, text: str, msg: str, *args: object, level: int = logging.WARNING, exc_info: bool = False
    ) -> bool:
        """Log `msg % args` unless `site` already reported `text` (then count it). True if logged."""
        now = self._clock()
        self._on_error(site)
        with self._lock:
            seen = self._seen.get((site, text))
            if seen is not None:
                seen.count += 1
                seen.total += 1
                return False
            self._seen[(site, text)] = _Seen(now, text, level, since=now)
        self._log.log(level, msg, *args, exc_info=exc_info)
        return True

    def ok(self, site: str) -> None:
        """`site` works again: one line with the count of each error it had, then forget them."""
        if not self._seen:  # nothing to forget (the common case, once per verified file): no lock
            return
        with self._lock:
            gone = [(k, v) for k, v in self._seen.items() if k[0] == site]
            for k, _ in gone:
                del self._seen[k]
        now = self._clock()
        for (_, text), v in gone:
            if v.total > 1:
                self._log.info(
                    "%s: recovered after %d occurrences over %.0fs of: %s", site, v.total, now - v.first, text
                )

    def flush(self) -> None:
        """One line per error still counted: how many more times it happened since the last line."""
        now = self._clock()
        with self._lock:
            due = [(k, v) for k, v in self._seen.items() if v.count]
            lines = [(k[0], v.level, v.count, now - v.since, v.total, v.text) for k, v in due]
            for _, v in due:
                v.count, v.since = 0, now
        for site, level, count, span, total, text in lines:
            self._log.log(
                level,
                "%s: repeated %d more times in %.0fs (%d in all, still failing): %s",
                site,
                count,
                span,
                total,
                text,
            )

    def active(self) -> int:
        with self._lock:
            return len(self._seen)


#: said after a quarantine's reason: the file is kept, and how it comes out of quarantine
QUARANTINE_NEXT = (
    " (kept on the acquisition disk, never released; looked at again when it changes: fix or replace it, "
    "or `touch` it to try again; `acqd status` lists it)"
)
_WITH_REASON = (
    "quarantined",
    "vanished",
    "retry",
    "held",
    "release_failed",
    "copy_lost",
    "profile-mismatch",
    "codec-choice",
)


def _verified_line(o: Outcome) -> tuple[Any, ...]:
    ratio = o.source_bytes / o.stored_bytes if o.stored_bytes else 0.0
    return (
        "verified %r -> %s (%d bytes, stored %d, ratio %.2f, %.3fs, %s)",
        o.relpath,
        o.dest,
        o.source_bytes,
        o.stored_bytes,
        ratio,
        o.seconds,
        o.checksum,
    )


def _released_line(o: Outcome) -> tuple[Any, ...]:
    after = " (interrupted by a stop, finished at this start)" if o.reason == RELEASED_AFTER_RESTART else ""
    return ("released %r: removed from the acquisition disk (%s)%s", o.relpath, o.path, after)


#: outcomes whose line is made the same way for every file: a batch's are one record (`outcomes`)
_GROUPED: dict[str, Callable[[Outcome], tuple[Any, ...]]] = {"verified": _verified_line, "released": _released_line}


#: a record holding many outcomes, one per line (`LogReporter.batch_outcomes`): `LinesFormatter`
#: gives each line its time and level
LINES = "acqd_lines"


class LogReporter:
    """One line per file outcome; a retry whose reason repeats what other files already said is
    counted, not logged again (one destination error for every file is one line and a count)."""

    def __init__(self, repeats: Repeats | None = None) -> None:
        self.repeats = repeats

    def outcome(self, o: Outcome) -> None:
        level = _LEVEL.get(o.kind, logging.INFO)
        if not log.isEnabledFor(level):
            return
        if o.kind.startswith("retention.clock_"):
            return  # the retention runner logs the clock guard's changes itself, with their reason
        if o.kind == "retry" and self.repeats is not None:
            site = f"retry ({o.stage or 'internal'})"
            self.repeats.error(site, PATHLIKE.sub("…", o.reason), "%s %r: %s", o.kind, o.relpath, o.reason)
            return
        if o.kind == "verified":
            self._working_again()
        if o.kind in _GROUPED:
            log.log(level, *_GROUPED[o.kind](o))
        elif o.kind == "unreadable":  # a path may be thousands of bytes long: its ends say where
            shown = o.relpath if len(o.relpath) <= 200 else f"{o.relpath[:80]}…{o.relpath[-80:]}"
            log.log(level, "unreadable %r: %s", shown, o.reason)
        elif o.kind in (*_WITH_REASON, "stream_fallback", "streamed") or o.kind.startswith("retention."):
            if o.kind == "quarantined" and "restore it" not in (o.reason or ""):  # what the operator does
                # about a file it kept (not one whose source is gone: its reason says to restore it)
                log.log(level, "%s %r: %s%s", o.kind, o.relpath, o.reason, QUARANTINE_NEXT)
            else:
                log.log(level, "%s %r: %s", o.kind, o.relpath, o.reason)
        elif o.kind == "left_aside":
            log.log(level, "left aside %r: %s", o.relpath, o.reason)
        elif o.kind == "halted":  # the daemon, not a file: the reason is the whole message
            log.log(level, "halted (%s): %s", o.stage or "claim", o.reason)
        else:
            log.log(level, "%s %r", o.kind, o.relpath)

    def batch_outcomes(self, batch: Sequence[Outcome]) -> None:
        """A batch's outcomes (small files shipped or released together): each run of verified or
        released files is one record of one line per file, made, queued and written once. On
        thousands of small files a record per file was most of the cost of their outcomes."""
        i = 0
        while i < len(batch):
            kind, j = batch[i].kind, i + 1
            while kind in _GROUPED and j < len(batch) and batch[j].kind == kind:
                j += 1
            if j - i == 1:
                self.outcome(batch[i])
            elif log.isEnabledFor(_LEVEL[kind]):
                if kind == "verified":
                    self._working_again()
                lines = [_GROUPED[kind](o) for o in batch[i:j]]
                log.log(
                    _LEVEL[kind],
                    "\n".join(f for f, *_a in lines),
                    *(a for _f, *args in lines for a in args),
                    extra={LINES: True},
                )
            i = j

    def _working_again(self) -> None:
        if self.repeats is not None:  # a verified copy: the destination, the journal and the shipping stage work again
            for site in ("retry (write)", "retry (verify)", "retry (internal)", "stage ship", "journal"):
                self.repeats.ok(site)


#: what str.splitlines() breaks a line at (a file name with one of these would split a log line in
#: two), and the other control characters but the tab (an ESC in a file name would reach the
#: operator's terminal as an escape sequence)
_BREAKS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with its line breaks and control characters but the tab escaped (as `repr` shows them):
    a file name or a reason holding a path, shown on one line, with no escape sequence in it."""
    return _BREAKS.sub(lambda m: repr(m.group())[1:-1], text)


class _OneLine(str):
    """An argument of a log line as `%s` shows it with its line breaks and control characters escaped;
    `%r` as before."""

    __slots__ = ("original",)
    original: str

    def __new__(cls, text: str) -> _OneLine:
        self = super().__new__(cls, one_line(text))
        self.original = text
        return self

    def __repr__(self) -> str:
        return repr(self.original)


class OneLineFilter(logging.Filter):
    """Every record one line, whatever the names in it: a path or URL with a newline (a file name may
    hold one) is shown escaped, so journald and log parsers see one entry; so is any other control
    character but the tab (an escape sequence never reaches a terminal). Line breaks of the format
    itself (a batch's lines) are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            changed = False
            out = []
            for a in args:
                text = a if isinstance(a, str) else str(a) if isinstance(a, BaseException) else None
                if text is not None and _BREAKS.search(text):
                    a, changed = _OneLine(text), True
                out.append(a)
            if changed:
                record.args = tuple(out)
        return True


class LinesFormatter(logging.Formatter):
    """Each line of a batch's record (marked `LINES`) formatted as a record of its own, its time and
    level first: a batch's outcomes come as one record of one line per file, and every line must
    read as one entry (`grep`, log parsers). Any other record as before: a traceback keeps its lines
    as they are (the log's queue has already joined it to the message)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        if not getattr(record, LINES, False):
            return super().formatMessage(record)
        try:
            out = []
            for line in message.split("\n"):
                record.message = line
                out.append(super().formatMessage(record))
            return "\n".join(out)
        finally:
            record.message = message


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


def queued_handler(
    stream: TextIO, journald: bool
) -> tuple[logging.handlers.QueueHandler, logging.handlers.QueueListener]:
    """The log's handler (to put on the root logger) and the writer thread behind it (to start):
    records go through a queue, so a slow stderr or journald never blocks the event loop. Lines to
    `stream` with their time and level (`LinesFormatter`), or under systemd (`journald`) with a
    `<N>` priority each (`JournaldFormatter`: journald adds the time)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JournaldFormatter("%(message)s") if journald else LinesFormatter("%(asctime)s %(levelname)s %(message)s")
    )
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queued = logging.handlers.QueueHandler(q)
    queued.addFilter(OneLineFilter())  # before the record's message is made, on the logging thread
    return queued, logging.handlers.QueueListener(q, handler)
