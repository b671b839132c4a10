"""Plain values passed between the parts. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.StrEnum):
    SEEN = "seen"
    COMPLETE = "complete"
    STORED = "stored"
    VERIFIED = "verified"
    RELEASED = "released"
    QUARANTINED = "quarantined"
    VANISHED = "vanished"


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes a file on the acquisition disk "the same file" over time."""

    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int = 0

    def same_content_as(self, other: Identity) -> bool:
        """Same file and not modified (ctime ignored: chmod does not change content)."""
        return (self.size, self.mtime_ns, self.inode) == (other.size, other.mtime_ns, other.inode)


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A file under a watch root. `relpath` uses '/' separators."""

    root: str
    relpath: str

    @property
    def abspath(self) -> str:
        return self.root.rstrip("/") + "/" + self.relpath

    @property
    def session(self) -> str:
        """The top-level folder under the watch root ("." for files directly in the root)."""
        head, sep, _ = self.relpath.partition("/")
        return head if sep else "."


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a layout wrote: the checksum of the source content and what sits at rest."""

    source_checksum: str
    source_bytes: int
    stored_bytes: int
    codec: str
    stages: tuple[tuple[str, float], ...] = ()  # seconds spent reading, encoding, writing
    mismatch: str | None = None  # how a valid file differs from its detector profile (stored all the same)


@dataclass(slots=True)
class Counts:
    files: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Something that happened to one file: what logs, metrics and events are made from."""

    kind: str  # seen, complete, verified, released, quarantined, vanished, retry
    relpath: str
    session: str
    detector: str
    version: int = 1
    source_bytes: int = 0
    tier: str = ""
    dest: str = ""
    stored_bytes: int = 0
    checksum: str = ""
    codec: str = ""
    layout: str = ""
    reason: str = ""
    stage: str = ""  # retries: the stage that failed (read, write, verify)
    seconds: float = 0.0  # complete -> verified
    stages: tuple[tuple[str, float], ...] = ()  # seconds per stage: read, encode, write, verify


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The pipeline's gauges at one moment."""

    backlog_files: int
    backlog_bytes: int
    oldest_pending_seconds: float
    inflight_bytes: int
    in_flight: int
