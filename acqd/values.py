"""Plain values passed between the parts. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


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
    device: int = 0  # st_dev; 0 = not known (a journal row written before acqd recorded it)

    def same_content_as(self, other: Identity) -> bool:
        """Same inode, and nothing about it changed: size, mtime and ctime. ctime counts because a
        rewrite can restore size and mtime (`cp --preserve=timestamps`, `touch -d`) but not ctime; a
        chmod or a new hard link also moves ctime: a verified file whose ctime alone moved has its
        content compared with its copy's (`Observed.RECHECK`), never released on the old identity."""
        return (self.size, self.mtime_ns, self.inode, self.ctime_ns) == (
            other.size,
            other.mtime_ns,
            other.inode,
            other.ctime_ns,
        )

    def same_device_as(self, other: Identity) -> bool:
        """On the same filesystem (st_dev), or one of the two does not know its device."""
        return self.device == other.device or not self.device or not other.device

    def same_file_as(self, other: Identity) -> bool:
        """The whole identity a release compares: device, inode, size, mtime and ctime."""
        return self.same_content_as(other) and self.same_device_as(other)


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
    codec_why: str | None = None  # why this file's codec (or byte-exact copy) was chosen, for the manifest
    meta_checksum: str | None = None  # of what the copy says besides its pixels (Layout.meta_checksum)


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
    path: str = ""  # released: the absolute path of the local file that was removed
    stage: str = ""  # retries: the stage that failed (read, write, verify)
    seconds: float = 0.0  # complete -> verified
    stages: tuple[tuple[str, float], ...] = ()  # seconds per stage: read, encode, write, verify
    root: str = ""  # the watch root the file is under (its path), where known: `relpath` is below it


#: the reason of a `released` outcome (its event's `reason`; the removed file's path is its `path`)
RELEASED_REASON = "removed from the acquisition disk: its stored copy is verified"
RELEASED_AFTER_RESTART = RELEASED_REASON + " (a release interrupted by a stop, finished at this start)"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The pipeline's gauges at one moment."""

    backlog_files: int
    backlog_bytes: int
    oldest_pending_seconds: float
    inflight_bytes: int
    in_flight: int
    #: verified files whose source is to be removed and is not yet (waiting for their session
    #: manifest's write, a writer to close, a re-check of the copy), and the longest such wait
    release_waiting: int = 0
    release_waiting_seconds: float = 0.0
    #: of the backlog, the files complete and not verified (being shipped, or waiting for a retry): not
    #: those still being written or settling (AcqdStalled: a file written for an hour is no stall)
    ready_files: int = 0


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One published state of a journal row: the journal's outbox, or a snapshot of its tables."""

    seq: int  # the outbox sequence number of this state (a snapshot: the outbox's at the snapshot)
    kind: str  # "file" or "copy"
    row_id: int  # the journal's files.id or copies.id
    doc: dict[str, Any]  # the row's published columns


@dataclass(frozen=True, slots=True)
class HubAction:
    """What the facility hub did to one of this journal's stored objects (the catalog's hub audit),
    read back by the daemon so that its journal stops calling a purged or moved copy verified."""

    id: int  # the hub audit row's id: the journal keeps the highest it applied
    kind: str  # "purged" or "moved"
    tier: str  # the object's tier and name, as the journal's copies have them
    dest: str
    to_tier: str | None  # "moved": the tier the object is on now (same name)
    at: float  # when the hub recorded it (seconds since the epoch)
