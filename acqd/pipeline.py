"""The flow of a file: intake → settle → ship (read, encode, write, verify) → journal → release.

Stages are asyncio tasks joined by bounded queues; every blocking call runs in a bounded executor
(the I/O pool, or the journal's single thread). Memory is bounded by a byte budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fnmatch
import glob
import heapq
import io
import itertools
import json
import logging
import os
import random
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Any, TypeVar

from acqd.aio import wait_set, within
from acqd.codec import codec_label
from acqd.config import Limits, WatchRoot
from acqd.crash import crash_point
from acqd.errors import (
    AcqdError,
    ClaimError,
    CutShortError,
    FormatError,
    JournalError,
    NameTakenError,
    PathBlockedError,
    PermanentError,
    SourceChangedError,
    SourceReadError,
    StoredLargerError,
    TransientError,
    UnfinishedFormatError,
    UnsupportedFormatError,
    VerifyError,
)
from acqd.journal import LEFT_ASIDE_META, CopyRow, FileRow, Journal, Observation
from acqd.layouts import FilePlan, FrameLayout, reading_layout
from acqd.layouts.copy import CopyLayout
from acqd.layouts.stream import (
    STREAMED_READERS,
    FrameStream,
    NotStreamable,
    NotYet,
    Surprise,
    Unfit,
    open_stream,
    plan_growing,
    streamable,
    verify_streamed,
)
from acqd.logs import PATHLIKE as _PATHLIKE
from acqd.logs import Repeats
from acqd.manifest import ManifestEntry, build, manifest_path, other_roots, own_entries
from acqd.mounts import describe as describe_mount
from acqd.mounts import folder_identity, lies_within, moved_below, unmounted_mount_point, views_below
from acqd.naming import CLAIM, aside_inode, is_release_aside, is_temp, release_aside, stored_name, zarr_own
from acqd.openfiles import WriterCheck, visibility
from acqd.pace import MANIFEST_PAUSE_MIN, MANIFEST_SLOW, Lanes, manifest_pause
from acqd.ports import BatchReporter, Layout, Reporter
from acqd.profiles import DetectorProfile
from acqd.recheck import TREE_LAYOUTS, CopyCheck, check_copy
from acqd.rootlock import RootLocks
from acqd.settle import (
    FORMAT_PROOF,
    Verdict,
    decide,
    marker_name,
    mrc_expected_size,
    mrc_shape,
    tail_unwritten,
    tiff_chain_complete,
)
from acqd.states import DONE, IllegalTransition, Observed
from acqd.storage import Tier, check_name, stalled_tiers
from acqd.units import human_bytes
from acqd.unlink import (
    BLOCKED,
    GONE,
    LeftAside,
    NotBelow,
    lstat_below,
    put_back_aside,
    unlink_below,
    unlink_many,
)
from acqd.values import (
    RELEASED_AFTER_RESTART,
    RELEASED_REASON,
    Identity,
    Outcome,
    Snapshot,
    SourceRef,
    State,
    WriteResult,
)
from acqd.watcher import Entry, Kind, classify, identity_of, relative, scan_tree

log = logging.getLogger("acqd")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

SOURCE_READ_ATTEMPTS = 3  # an unreadable source is quarantined after this many tries
MANIFEST_USUAL = 9  # the last flushes whose median says how long a usual manifest flush takes
PROFILE_MISMATCH = "profile-mismatch"  # a valid file its detector profile did not expect: stored, flagged
CODEC_CHOICE = "codec-choice"  # a session's codec chosen from measurement (metrics, log); per file: audit, manifest
INTERNAL_GAVE_UP = "; please report it)"  # how such a quarantine's reason ends: tried again at the next start
INTERNAL_ATTEMPTS = 5  # an unexpected error on one file (a bug, a reader crash): quarantined after this many
ROOT_POLL = 1.0  # seconds between looks at a watch root that is missing (a late or lost mount)
JOURNAL_RETRY = 5.0  # seconds before a file whose journal write failed (state disk full) is tried again
JOURNAL_RETRY_MAX = 60.0  # ... half as long as the journal has failed, up to this (no hot loop of failures)
#: verified rows of the sessions' last manifests kept, at most (a release of one forgotten waits for a rewrite):
#: counted in rows, not sessions (a thousand one-file sessions were released 256 at a time, a slow
#: manifest flush apart: a review); ~100 bytes each
LISTED_ROWS = 500_000
RELEASE_RECHECK_MAX = 10.0  # seconds: a release held back (a writer, a tier not answering) is looked at again
SMALL_FILE = 1 << 20  # files up to this size, copied to a local tier, ship in batches (_ship_batch)
BATCH_FILES = 256  # at most this many files in one batch
BATCH_BYTES = 16 << 20  # and at most this many source bytes
RELEASE_BATCH = (-1, -1)  # the batch key of files due for release only (never a tier's and layout's ids)
STRAY_LOOK_LIMIT = 10_000  # files counted in a waiting watch root's empty mount point, at most, per look
SCAN_CHUNK = 500  # a scan admits the entries it lists this many at a time (shipping begins during a long scan)
STREAM_POLL = 0.25  # seconds between looks at a movie being streamed (a watcher hint wakes it sooner)
LEFT_ASIDE = "left_aside"
FENCE_SECONDS = 2.0  # the longest a look for a tier's folder inside a watch root may hold an admission up


class _NextVersion(Exception):
    """`_take_over` kept an object it cannot account for under the file's name; `row` (the next
    version) takes the file."""

    def __init__(self, said: str, row: FileRow) -> None:
        super().__init__(said)
        self.row = row


def fenced(rel: str, folder: str) -> bool:
    """Is `rel` at or below `folder` ("" : the whole root)?"""
    return not folder or rel == folder or rel.startswith(folder + "/")


class TiersSeen:
    """Each local tier's folder as it was seen (`tiers_below`), by path: (device, inode) pairs."""

    def __init__(self) -> None:
        self.ids: dict[str, set[tuple[int, int]]] = {}
        self.lock = threading.Lock()  # two roots' admissions may look at once


def tiers_below(root: str, local: list[str], rels: list[str], seen: TiersSeen) -> list[str]:
    """Blocking (`Pipeline._fences`): where the local tiers' folders `local` are below the watch root
    `root`, by their paths and mounts (`views_below`) and, when a tier's path no longer leads to the
    folder it led to, by that folder's identity among the folders above the files `rels` being
    admitted (moved in: its path is gone until a symlink is made there, and its files were taken for
    new ones in that instant: CI at e29e4e8), if it holds a claim (acqd's own: a folder made since
    may have the freed inode of a tier's folder deleted)."""
    fences = views_below(root, local)
    moved: set[tuple[int, int]] = set()
    for path in local:
        now = folder_identity(path)
        with seen.lock:
            ids = seen.ids.setdefault(path, set())
            moved |= ids - {now}
            if now is not None:
                ids.add(now)
    if moved:
        found = [f for f in moved_below(root, rels, moved) if f not in fences]
        fences += [f for f in found if glob.glob(os.path.join(glob.escape(os.path.join(root, f)), "*", CLAIM))]
    return fences


TRACKER_RETRY = 5.0  # seconds before a file whose look failed is looked at again
ASIDE_MAX = 100  # files under a release's hidden name looked at per scan (the rest at the next one)
#: how long a streamed movie still open for writing here may stand still before its writer is taken
#: for one that will not write again (then the part written ships, as any file still open)
STREAM_WRITER_PATIENCE = 120.0
#: how long a file stored as it is although its format said more was to come (a TIFF's IFD chain
#: running past its end, no writer left), or seen growing part by part and complete by its stillness,
#: stays still on the acquisition disk before its release
UNFINISHED_HOLD = 30.0
#: a new version of a file whose last version was released less than this long ago (seconds): its writer
#: adds to it in parts with pauses longer than the settle window (said; kept as one seen growing)
REAPPEARED_SPAN = 3600.0
#: an empty file seen again this much later by its modification time, and larger: written in parts
GROWN_SPAN_NS = 100_000_000
UNFILLED_KEPT = (
    "kept on the acquisition disk: an MRC movie whose size is its header's but whose last 4 KiB are zeros "
    "(pre-allocated and not filled yet: a writer that closes it between frames and pauses longer than the "
    "settle window; or its last frame is truly blank); its copy holds what it held. Once filled it ships again "
    "as a new version and is released; if its last frame is blank, remove it by hand once checked"
)
RELEASE_WAIT_GRACE = 120.0  # seconds a release not held any more keeps its first-held time (a re-look's gap)
STREAM_WAIT = 1.0  # seconds between looks at a movie whose header or first frame is not there yet
#: seconds a file its format proves complete at its first looks, closed and written less than this ago,
#: stays still before the proof counts (the daemon): a writer that closes a movie after each frame and
#: rewrites its header's count made a version of its first frame (`Pipeline._proof_final`)
PROOF_GRACE = 2.0
# why a verified file's release waits (`acqd status`, from `Pipeline.release_reasons`)
WAIT_WRITER = "open for writing by a process: kept until it is closed"
WAIT_HOLD = "held a while after completing, should its writer come back to it"
WAIT_MANIFEST = "until their session's manifest records their copies"
WAIT_CHECK = "their stored copy could not be re-checked (asked again)"
WAIT_AGAIN = "looked at again shortly"
INCOMPLETE_WRITER = "open for writing by a process: shipped once it is closed (or still for its settle window)"
INCOMPLETE_SETTLING = "settling: still changing, or its settle window not over"
STREAM_FALLBACK = "stream_fallback"  # a streamed copy dropped; the file ships whole (event, metric, audit)
STREAMED = "streamed"  # a copy written while its file grew (audit: frames encoded before it completed)
UNSTREAMED_MAX = 4096  # files remembered as not to be streamed again (their stream was dropped)


@dataclass(frozen=True)
class Placed:
    """Where and how one file is stored: from the watch root's placement, or its policy rule."""

    tier: Tier
    layout: Layout
    release: bool


@dataclass
class RootCtx:
    """Everything the pipeline needs to know about one watch root."""

    index: int
    root: str
    watch: WatchRoot
    profile: DetectorProfile
    tier: Tier
    layout: Layout  # the copy layout: unknown formats, sidecars
    release: bool
    window: float
    scan_interval: float
    events: bool
    frames: Layout | None = None  # the frame layout (zarr, tiff) for files the profile's reader takes
    placer: Callable[[str], Placed] | None = None  # a retention policy's placement rules, if any
    up: bool | None = None  # the root is there (None: not looked at yet)
    why: str | None = None  # why it is not (out_of_view's words), while it is not
    stream: bool = False  # tail-follow streaming of growing movies (acqd.streaming)
    #: the profile and watch root the ignore regex was made for, and the regex (`ignored`)
    _ignore: tuple[object, object, re.Pattern[str]] = field(
        default=(None, None, re.compile(r"(?!)")), repr=False, compare=False
    )

    @property
    def ignore_globs(self) -> tuple[str, ...]:
        return (*self.profile.ignore, *self.watch.ignore)

    def ignored(self, name: str) -> bool:
        """Any part of a path (a folder or a file): the profile's and the watch root's `ignore` globs,
        and acqd's own hidden release names (one regex per set of globs: a reload that changes them
        gets new ones)."""
        profile, watch, pattern = self._ignore
        if profile is not self.profile or watch is not self.watch:  # a reload gave new ones
            pattern = _globs(self.profile.ignore + self.watch.ignore)
            self._ignore = (self.profile, self.watch, pattern)
        return pattern.match(name) is not None or is_release_aside(name)

    def skipped_file(self, name: str) -> bool:
        """A file's own name: ignored, or, with `other_files: ignore`, none of the profile's `files`
        (a rule about files: it never hides the folders they are in)."""
        if self.ignored(name):
            return True
        return self.profile.other_files == "ignore" and _globs(self.profile.files).match(name) is None

    def layout_for(self, rel: str) -> Layout:
        return self.placed(rel).layout

    def releases(self, rel: str) -> bool:
        """Whether the file's placement releases it; False if its placement cannot be built (a policy
        rule's codec its layout cannot store with: said when the file is shipped, which fails)."""
        try:
            return self.placed(rel).release
        except AcqdError:
            return False

    def placed(self, rel: str) -> Placed:
        if self.placer is not None:
            p = self.placer(rel)
        else:
            frames = self.frames is not None and self.profile.is_frames(rel.rpartition("/")[2])
            p = Placed(self.tier, self.frames if frames and self.frames else self.layout, self.release)
        if p.release and self.ignored_path(rel):  # ignored since acqd took it (a reload's rule): its
            return replace(p, release=False)  # shipping goes on (a copy is kept), it is never deleted
        return p

    def ignored_path(self, rel: str, folder: bool = False) -> bool:
        """Is this path (a file, or a folder if `folder`) out of acqd's view?"""
        *dirs, last = rel.split("/")
        return any(self.ignored(d) for d in dirs) or (self.ignored(last) if folder else self.skipped_file(last))


def _verified_copy(
    placed: Placed, copies: list[CopyRow], tiers: dict[str, Tier]
) -> tuple[CopyRow, Layout, Tier] | None:
    """The verified copy a release is checked against, the layout that reads it and its tier: the
    one on the placement's tier (read by the placement's layout, or its byte-exact fallback); else
    one on another configured tier (the placement changed since it was verified, or retention moved
    it: a verified copy elsewhere all the same), read by the layout it was written with. None if
    there is none on a configured tier."""
    verified = [x for x in copies if x.state == "verified"]
    cp = next((x for x in verified if x.tier == placed.tier.name), None)
    if cp is not None:
        return cp, reading_layout(cp.layout, cp.codec, placed.layout), placed.tier
    for cp in verified:
        tier = tiers.get(cp.tier)
        if tier is not None:
            return cp, reading_layout(cp.layout, cp.codec, placed.layout), tier
    return None


def _remember(book: dict[K, V], key: K, value: V) -> bool:
    """Note `value` for `key` in a bounded book of per-file facts (the oldest noted first out, for a
    long-running daemon); whether the book held that very value already (said once per version)."""
    said = book.get(key) == value
    book[key] = value
    while len(book) > UNSTREAMED_MAX:
        book.pop(next(iter(book)))
    return said


def _unfilled_movie(path: str) -> bool:
    """Blocking: is the file at `path` an MRC movie (more than one frame) whose size is its header's and
    whose last bytes are all zero: pre-allocated and not filled yet (a writer that closes it between
    frames and pauses longer than the settle window), or one whose last frame is truly blank? Such a
    file is never released (`Pipeline._release`). False for anything else or anything unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        shape = mrc_shape(os.pread(fd, 1024, 0)) if stat.S_ISREG(st.st_mode) else None
        if shape is None or shape[0] != st.st_size or shape[1] < 2:
            return False
        return tail_unwritten(lambda at, n: os.pread(fd, n, at), st.st_size)
    except OSError:
        return False
    finally:
        os.close(fd)


#: Merlin's acquisition header beside its .mib: the .mib's reader takes the scan's shape and frame
#: count from it, so it stays on the acquisition disk until its .mib is shipped and released
MIB_HDR = ".hdr"
MIB_SUFFIXES = (".mib", ".MIB")


def _no_copy(placed: Placed, copies: list[CopyRow]) -> str:
    """Why a release finds no verified copy to check (`_verified_copy` None)."""
    away = sorted({x.tier for x in copies if x.state == "verified"})
    if away:
        return (
            f"its verified copy is on tier(s) {', '.join(away)}, which the configuration no longer names "
            "(kept; name the tier again to release it)"
        )
    return f"no verified copy on tier {placed.tier.name} (kept)"


@lru_cache(maxsize=64)
def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex matching a name exactly when fnmatch.fnmatchcase matches it with any of `patterns`."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")


@dataclass
class RunStats:
    """Counters of this run (for `--once` summaries and the demo's progress line)."""

    started: float = field(default_factory=time.monotonic)
    verified: int = 0
    quarantined: int = 0
    released: int = 0
    retries: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    internal_errors: int = 0
    release_failed: int = 0  # releases the acquisition disk refused (read-only, permission), each try
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # bounded
    last_error: str = ""
    framed: int = 0  # files stored by a frame layout (Zarr, TIFF)
    # files of a camera's frame formats stored byte-exact, by extension (a wrong --detector?)
    frame_formats_copied: dict[str, int] = field(default_factory=dict)


#: extensions of the frame formats acqd's readers know: such a file the detector profile did not take
#: for a frame file may be one it should have (the quick form's `generic` takes none)
FRAME_EXTENSIONS = (".mrc", ".mrcs", ".tif", ".tiff", ".mib")


def _count_layout(stats: RunStats, ctx: RootCtx, rel: str, layout_name: str) -> str | None:
    """Count a stored file by its layout; the extension of a frame format its profile did not take
    (else None)."""
    if layout_name in ("zarr", "tiff"):
        stats.framed += 1
        return None
    ext = os.path.splitext(rel)[1].lower()
    if ext in FRAME_EXTENSIONS and not ctx.profile.is_frames(rel.rpartition("/")[2]):  # its profile's own
        # frame files stored byte-exact (not frames after all, unfinished at rest) are no hint
        stats.frame_formats_copied[ext] = stats.frame_formats_copied.get(ext, 0) + 1
        return ext
    return None


class ByteBudget:
    """An async semaphore counted in bytes: caps file data in memory across all stages. The flights of
    one tier hold at most `tier_cap` of it (acqd.pace.Lanes: a frozen tier's flights, holding their
    bytes for as long as it does not answer, held all of it, and a healthy tier's files waited)."""

    def __init__(self, limit: int, tier_cap: int | None = None) -> None:
        self.limit = limit
        self.used = 0
        self.tier_cap = max(1, min(limit, tier_cap if tier_cap is not None else limit))
        self.by_tier: dict[str, int] = {}
        self._cond = asyncio.Condition()

    async def acquire(self, n: int, tier: str | None = None) -> int:
        cap = self.limit if tier is None else self.tier_cap
        n = max(1, min(n, cap))
        async with self._cond:
            await self._cond.wait_for(
                lambda: self.used + n <= self.limit and (tier is None or self.by_tier.get(tier, 0) + n <= cap)
            )
            self.used += n
            if tier is not None:
                self.by_tier[tier] = self.by_tier.get(tier, 0) + n
        return n

    async def release(self, n: int, tier: str | None = None) -> None:
        async with self._cond:
            self.used -= n
            if tier is not None:
                self.by_tier[tier] = self.by_tier.get(tier, 0) - n
            self._cond.notify_all()


def frame_ships(limits: Limits) -> int:
    """How many files a frame layout (encode and verify on `frame_threads` threads each) works on at
    once: enough to keep every core busy, and two, so that one file's reads, writes and fsyncs
    overlap another's encoding. More only crowd the cores: on 2 cores, 4 light-sheet stacks at once
    took 4.4-4.8 s and 6.2-6.8 CPU s, 2 at once 3.7 s and 5.1-5.3 CPU s (BENCHMARKS.md)."""
    from acqd.layouts.tiffwrite import cores

    n = cores()
    return max(2, -(-n // (limits.frame_threads or n)))


class Slots:
    """How many files the ship workers may work on at once: all of them, fewer while acqd backs off
    for the camera (acqd.pace; 0 pauses new work). A worker takes a slot before it starts a file and
    gives it back when done, so a lower limit lets files started finish and starts no new ones until
    fewer are at work. The files of a tier that has not answered for `limits.stalled_after` (`stalled`)
    do not count: they read nothing from the acquisition disk, and, holding the slots of a back-off,
    they held up every other tier's files (a review)."""

    def __init__(self, limit: int, stalled: Callable[[], frozenset[str]] = frozenset) -> None:
        self.limit = limit
        self.used = 0
        self.waiting = 0  # workers holding a file and waiting for a slot
        self.by_tier: dict[str, int] = {}
        self.stalled = stalled
        self._cond = asyncio.Condition()

    def _free(self) -> bool:
        held = self.used
        if held >= self.limit and self.by_tier:
            stalled = self.stalled()
            held -= sum(n for t, n in self.by_tier.items() if t in stalled)
        return held < self.limit

    async def acquire(self, stopping: asyncio.Event, tier: str | None = None) -> bool:
        """Wait for a slot: True with one taken, False (none taken) if the daemon stops meanwhile."""
        async with self._cond:
            self.waiting += 1
            try:
                await self._cond.wait_for(lambda: self._free() or stopping.is_set())
            finally:
                self.waiting -= 1
            if stopping.is_set():
                return False
            self.used += 1
            if tier is not None:
                self.by_tier[tier] = self.by_tier.get(tier, 0) + 1
            return True

    async def release(self, tier: str | None = None) -> None:
        async with self._cond:
            self.used -= 1
            if tier is not None:
                self.by_tier[tier] = self.by_tier.get(tier, 0) - 1
            self._cond.notify_all()

    async def nudge(self) -> None:
        """Look again (a tier may have stalled since: its files' slots count no more)."""
        async with self._cond:
            self._cond.notify_all()

    async def set_limit(self, limit: int) -> None:
        async with self._cond:
            self.limit = limit
            self._cond.notify_all()


@dataclass
class Follow:
    """A movie streamed while it grows (acqd.layouts.stream): its task, and once its header and first
    frame are there, its stream (the copy's temporary being written), layout and destination."""

    c: Candidate
    task: asyncio.Task[None] | None = None
    stream: FrameStream | None = None
    layout: Layout | None = None
    dest: str = ""
    taken: bool = False  # the ship took it over (it finishes or drops the stream)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Candidate:
    ctx: RootCtx
    rel: str
    row: FileRow
    stable: Identity
    since: float
    check_at: float
    settled: bool = False  # complete before; waiting for a retry
    reason: str = ""
    release_only: bool = False
    born: float = 0.0  # monotonic time it was first admitted (for the oldest-pending gauge)
    at_rest: bool = False  # its format says more is to come, and no process writes it: stored as it is
    grew: bool = False  # seen growing part by part while it settled (`_settle_one`, `_wait_left`)
    recheck: bool = False  # verified, only its change time moved: its content is compared (`_recheck`)
    journal_wait: bool = False  # waiting for the journal to take writes again (`_retry`)
    writer_open: bool = False  # a process here had it open for writing at its last look (`incomplete_reasons`)
    # the format's proof, and when it is not final alone (`_proof_final`): the size its header announced
    # at the last look (MRC), whether that moved between looks (a writer that rewrites the header's
    # frame count after each frame), whether a look found it short of its proof, and whether it is its
    # previous version with more after it (a writer that closes it between parts)
    announced: int | None = None  # at the last look its header read at
    announced_now: int | None = None  # set by `_look` (its thread), read by `_settle_round` after it
    header_moved: bool = False
    seen_short: bool = False
    seen_open: bool = False  # a look found a process here writing it: its close says when it is done
    continued: bool = False
    proof_grace: bool = False  # proved and closed at its first looks, freshly written: PROOF_GRACE of stillness

    @property
    def key(self) -> tuple[int, str]:
        return (self.ctx.index, self.rel)


class _Source:
    """The source file opened for shipping; checks, at end of file, that it did not change."""

    def __init__(self, path: str, expected: Identity) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SourceChangedError("vanished before it was read") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SourceChangedError("replaced by a symlink") from None
            raise SourceReadError(f"cannot open: {exc.strerror}") from None
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceChangedError("no longer a regular file")
            if not identity_of(st).same_content_as(expected):
                raise SourceChangedError("changed after it settled")
        except BaseException:
            os.close(self.fd)
            raise
        self.expected = expected
        self.at_rest = False  # a format that says more is to come is stored byte-exact (no writer left)
        self._file: io.FileIO | None = None

    @property
    def file(self) -> io.FileIO:
        """A seekable file object on the already opened (and checked) descriptor, for readers."""
        if self._file is None:
            self._file = io.FileIO(self.fd, "rb", closefd=False)
        return self._file

    def check(self) -> None:
        """Raise SourceChangedError if the file changed since it settled (called before a commit)."""
        self.final_check()

    def read(self, n: int = -1) -> bytes:
        try:
            data = os.read(self.fd, n if n > 0 else 1 << 24)
        except OSError as exc:
            raise SourceReadError(f"read error: {exc.strerror}") from None
        if not data:
            self.final_check()
        return data

    def final_check(self) -> None:
        st = os.fstat(self.fd)
        crash_point("after_read")
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            raise SourceChangedError("removed or renamed while being read") from None
        if now.st_ino != st.st_ino:
            raise SourceChangedError("replaced by another file while being read")
        # after the name checks: a rename or an unlink also moves the file's ctime
        if not identity_of(st).same_content_as(self.expected):
            raise SourceChangedError("modified while being read")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        os.close(self.fd)


def out_of_view(root: str) -> str | None:
    """Blocking. Why what the journal knows of a watch root cannot be looked at now (None: it can): the
    root is not a folder, or it is at or below a mount point of fstab with nothing mounted on it (the
    acquisition disk not mounted yet: its empty mount point shows none of the disk's files, which are
    not gone for that)."""
    if not os.path.isdir(root):
        return "is missing (not mounted yet?)"
    point = unmounted_mount_point(root)
    if point is not None:
        return f"is on a disk not mounted ({describe_mount(point)})"
    return None


def _still_there(root: str, rel: str, expected: Identity) -> bool:
    """Blocking. Whether the file a release began on is still under its name."""
    try:
        st = lstat_below(root, rel)
    except NotBelow:
        return True  # not reachable without a symlink: it was not unlinked by acqd
    return st is not None and stat.S_ISREG(st.st_mode) and identity_of(st).same_file_as(expected)


def _folder_gone(root: str, rel: str) -> bool:
    """Blocking. Whether the folder `rel` is in has gone from below `root` (moved or renamed)."""
    folder = rel.rpartition("/")[0]
    if not folder:
        return False
    try:
        st = lstat_below(root, folder)
    except (NotBelow, OSError):
        return False  # not concluded
    return st is None or not stat.S_ISDIR(st.st_mode)


def _same_inode(path: str, expected: Identity) -> bool:
    """Blocking. Whether the file under `path` is the very file (device and inode) a release began on,
    whatever its content, size and times are now."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_ino == expected.inode and expected.device in (0, st.st_dev)


class Pipeline:
    def __init__(
        self,
        *,
        instrument: str,
        roots: list[RootCtx],
        journal: Journal,
        io: ThreadPoolExecutor,
        jexec: Executor,
        limits: Limits,
        reporter: Reporter,
        mono: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        once: bool = False,
        retry_for: float | None = None,
        guard: Callable[..., None] | None = None,  # (tier, fresh=False): acqd.claims.Guard
        repeats: Repeats | None = None,
        on_root: Callable[[RootCtx, bool], Awaitable[None]] | None = None,
        writers: WriterCheck | None = None,
        tiers: dict[str, Tier] | None = None,
        look: ThreadPoolExecutor | None = None,
    ) -> None:
        self.instrument = instrument
        #: every configured tier by name: a release checks a verified copy on any of them
        self.tiers = tiers if tiers is not None else {c.tier.name: c.tier for c in roots}
        #: blocking check before every commit that this daemon still owns the destination and its
        #: journal (acqd.claims); raises ClaimError, which halts shipping
        self.guard = guard
        self.halted: str | None = None
        self.roots = roots
        self.journal = journal
        self.io = io
        #: the threads of scans, stat calls, settle looks and the writers' /proc scan: the acquisition
        #: disk's own, so that a tier that stops answering, holding the I/O threads, never stops acqd
        #: finding files (a review: the healthy tier's files were not even seen)
        self.look = look if look is not None else io
        self.jexec = jexec
        self.limits = limits
        self.reporter = reporter
        self.mono = mono
        self.clock = clock
        self.once = once
        self.retry_for = retry_for
        self.repeats = repeats if repeats is not None else Repeats()
        self.on_root = on_root
        #: the watch roots held against another acqd on this machine (acqd.rootlock; the daemon's)
        self.root_locks: RootLocks | None = None
        #: paths that could not be listed or looked at, recorded once each: (root index, path) -> error class
        self.unreadable: dict[tuple[int, str], str] = {}
        self._aside_told: set[tuple[int, str]] = set()  # files found under a release's hidden name, said once
        self._aside_now: dict[str, list[str]] = {}  # root -> those its last whole scan found (`acqd status`)
        #: root -> the regular files its last whole scan passed over by the ignore globs (`run --once`)
        self.passed_over: dict[str, list[str]] = {}
        self._fenced: dict[int, tuple[float, list[str]]] = {}  # _fences: when looked, what was found
        self._tiers_seen = TiersSeen()  # _fences
        self._root_since: dict[int, float] = {}  # root index -> when it last appeared or went away
        self._strays: dict[int, tuple[int, int]] = {}  # root index -> files, bytes last said in its empty mount point
        #: roots whose journal rows the start did not reconcile (out of view then): done once in view
        self._unreconciled: set[int] = set()
        self._soon: dict[int, float] = {}  # root index -> when to scan it again after a journal failure
        self.stats = RunStats(started=mono())
        workers = limits.concurrent_files
        shared = len(self.tiers) > 1 and workers > 1  # one tier's trouble is its own (acqd.pace.Lanes)
        #: with more than one tier, one tier's flights hold at most the share of the workers it may have
        self.budget = ByteBudget(
            limits.inflight_bytes, limits.inflight_bytes * (workers - 1) // workers if shared else None
        )
        self.slots = Slots(  # lowered by the daemon's pacer while backing off
            limits.concurrent_files, lambda: stalled_tiers(self.limits.stalled_after)
        )
        #: files a frame layout encodes and verifies at once (each on every core): acqd.pipeline.frame_ships
        #: (counted in files; with more than one tier, one more, which one tier's files never all take)
        heavy = frame_ships(limits)
        self.frame_slots = ByteBudget(heavy + 1, heavy) if shared else ByteBudget(heavy)
        self.hints: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=10_000)
        self.ready: asyncio.Queue[Candidate | list[Candidate] | None] = asyncio.Queue(
            maxsize=limits.concurrent_files * 2
        )
        #: files in flight by tier, and those parked until their tier may take more (acqd.pace.Lanes)
        self.lanes: Lanes[Candidate | list[Candidate]] = Lanes(limits.concurrent_files, len(self.tiers))
        #: ids of parked items handed back to `ready` -> the tier they are counted in flight on
        self._admitted: dict[int, str] = {}
        self._relane: deque[Candidate | list[Candidate]] = deque()  # parked before a reload: admitted again
        #: small files settled in this round of the tracker, by (tier, layout), not yet handed to a worker
        self._forming: dict[tuple[int, int], tuple[list[Candidate], int]] = {}
        self._heap: list[tuple[float, int, tuple[int, str]]] = []
        self._seq = itertools.count()
        self.candidates: dict[tuple[int, str], Candidate] = {}
        self.in_flight: dict[tuple[int, str], Candidate] = {}
        self._rehint: set[tuple[int, str]] = set()
        #: one admission at a time: two (the scanner's and the intake's) admitting the same new file at
        #: once each asked the journal, and the later answer, stale by then, made a second candidate
        #: beside one already shipping or shipped (seen in CI as files left `stored`)
        self._admitting = asyncio.Lock()
        self._tracker_wake = asyncio.Event()
        self._rescan: set[int] = set()
        self._rescan_wake = asyncio.Event()
        self._scans_done: set[int] = set()
        self._busy = 0  # intake batches being processed
        self._dirty: set[tuple[int, str]] = set()
        self._unrecorded: set[int] = set()  # roots a journal write failed for since their last scan began
        self._manifest_wake = asyncio.Event()
        #: (root index, session) -> the verified rows its last manifest written this run listed (id ->
        #: the row's `updated`): a file is released only once a manifest lists its row as it is now
        self._listed: dict[tuple[int, str], dict[int, float]] = {}
        self._listed_rows = 0  # sum of the sizes of `_listed`'s dicts
        #: ... and the releases waiting for that (by file), released together once it is written
        self._after_manifest: dict[tuple[int, str], dict[tuple[int, str], tuple[Candidate, FileRow]]] = {}
        #: what kept the last manifest flush from writing every dirty session (None: it wrote them all),
        #: and the same for the flush under way; since when a flush has run over MANIFEST_SLOW (None: not)
        self._manifest_error: dict[str, str] = {}  # by tier
        self._flush_error: dict[str, str] = {}  # by tier, of the flush under way
        self._manifest_slow_since: dict[str, float] = {}  # by tier
        self._flush_locks: dict[str, asyncio.Lock] = {}  # by tier: one flush of a tier's manifests at a time
        self.stopping = asyncio.Event()
        self.outcome_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feeders: list[asyncio.Task[None]] = []
        self.writers = writers or WriterCheck(self._run_io)
        #: the frame layouts' libraries being imported on a thread of their own (acqd.memory.warm_imports):
        #: I/O work other than scans and settle looks waits for it (None: nothing to wait for)
        self.imports: asyncio.Future[None] | None = None
        self._release_later: dict[tuple[int, str], asyncio.TimerHandle] = {}
        self._release_why: dict[tuple[int, str], str] = {}  # why each of `_release_later` waits
        self._journal_down_since: float | None = None  # monotonic: a file's journal write failed, none since worked
        self._journal_later: dict[tuple[int, str], asyncio.TimerHandle] = {}  # flights a journal error ended
        self._untaken_said: set[tuple[int, str]] = set()  # (root, extension) said by `_untaken`
        #: releases held back (`_release_later`, `_after_manifest`) -> [when a snapshot first saw them, last saw them]
        self._release_waiting: dict[tuple[int, str], list[float]] = {}
        self._held: dict[tuple[int, str], int] = {}  # file -> the row last reported as held by a writer
        #: files gone from the acquisition disk whose only copy does not read back as recorded (`--once`: exit 1)
        self.kept_damaged = 0
        self._refused: dict[tuple[int, str], tuple[int, str]] = {}  # file -> (row, why) of a release refused
        self._rechecks: deque[Candidate] = deque()  # verified files whose change time alone moved (`_recheck`)
        self._recheck_task: asyncio.Task[None] | None = None
        self._awaited: dict[tuple[int, str], int] = {}  # file -> the row last said to wait for its writer
        self._conflicts: dict[tuple[int, str], str] = {}  # file -> the conflict last said of it
        self._cut_short_said: dict[tuple[int, str], int] = {}  # file -> the row kept as cut short, said once
        self._unfilled_said: dict[tuple[int, str], int] = {}  # file -> the row kept as not filled, said once
        self._beside_said: dict[tuple[int, str], int] = {}  # file -> the row kept for the file it goes with
        self._came_back_said: dict[tuple[int, str], int] = {}  # file -> its version back after a release, said
        self._blocked_said: dict[tuple[int, str], int] = {}  # file -> its version whose release was blocked, said
        self.follows: dict[tuple[int, str], Follow] = {}  # movies streamed while they grow
        #: dropped streams whose temporary is being removed: a ship of the file waits for it (the
        #: whole-file copy's temporary has the same name; the old removal must not take the new one's)
        self._tearing: dict[tuple[int, str], asyncio.Event] = {}
        #: manifests' entries from other watch roots, kept when they are written again (by tier, path)
        self._other_roots: dict[tuple[str, str], list[dict[str, Any]]] = {}
        #: files completed by their format's proof whose release waits for the settle window: the
        #: row, and when the window since its content was first seen as it is ends (`_wait_left`)
        self._format_proven: dict[tuple[int, str], tuple[int, float]] = {}
        self._unstreamed: dict[tuple[int, str], int] = {}  # file -> row whose stream was dropped (not again)
        self._tg: asyncio.TaskGroup | None = None

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _outcome(kind: str, row: FileRow, **fields: Any) -> Outcome:
        return Outcome(
            kind=kind,
            relpath=row.relpath,
            session=row.session,
            detector=row.detector,
            version=row.version,
            source_bytes=fields.pop("source_bytes", row.identity.size),
            root=row.root,
            **fields,
        )

    def _verified(
        self,
        c: Candidate,
        row: FileRow,
        tier: Tier,
        dest: str,
        res: WriteResult,
        layout: str,
        latency: float,
        stages: tuple[tuple[str, float], ...],
    ) -> Outcome:
        """A file's copy recorded verified: counted in the run's figures; its outcome, to report."""
        self._journal_up()  # its steps were written
        self.stats.verified += 1
        self._untaken(c, _count_layout(self.stats, c.ctx, c.rel, layout))
        self.stats.bytes_in += res.source_bytes
        self.stats.bytes_out += res.stored_bytes
        self.stats.latencies.append(latency)
        return self._outcome(
            "verified",
            row,
            tier=tier.name,
            dest=tier.url(dest),
            stored_bytes=res.stored_bytes,
            checksum=res.source_checksum,
            codec=res.codec,
            layout=layout,
            seconds=latency,
            stages=stages,
        )

    def _emit(self, kind: str, row: FileRow, **fields: Any) -> None:
        self._report(self._outcome(kind, row, **fields))

    def _report(self, o: Outcome) -> None:
        try:
            self.reporter.outcome(o)
        except Exception:  # a reporter must never stop a file
            log.exception("reporter failed on %s %r", o.kind, o.relpath)

    def _emit_all(self, batch: list[Outcome]) -> None:
        """A batch's outcomes, in order: together where the reporter takes them so (a BatchReporter)."""
        if not batch:
            return
        if not isinstance(self.reporter, BatchReporter):
            for o in batch:
                self._report(o)
            return
        try:
            self.reporter.batch_outcomes(batch)
        except Exception:
            log.exception("reporter failed on %d outcomes (%s %r first)", len(batch), batch[0].kind, batch[0].relpath)

    def snapshot(self) -> Snapshot:
        looked = list(self.candidates.values()) + list(self.in_flight.values())
        # a verified file whose release is being looked at again (its copy re-checked, its writers asked)
        # is no backlog: it was counted as a file not yet shipped, and its release's wait as over, each
        # time its re-check ran (a server that did not answer it: a stranger's review)
        pending = [c for c in looked if not c.release_only]
        now = self.mono()
        oldest = max((now - c.born for c in pending), default=0.0)
        since = self._release_waiting
        held = set(self._release_later).union(*self._after_manifest.values())
        held |= {c.key for c in looked if c.release_only and c.key in since}
        for key in held:
            since.setdefault(key, [now, now])[1] = now
        # released, or moved on: forgotten once not held for RELEASE_WAIT_GRACE (a held release's re-look
        # passes through the hint queue, where it is neither held nor a candidate: the age went back to 0
        # at every re-look, and AcqdReleaseWaiting never fired: a review)
        for key in [k for k, (_first, last) in since.items() if k not in held and now - last > RELEASE_WAIT_GRACE]:
            del since[key]
        return Snapshot(
            backlog_files=len(pending),
            backlog_bytes=sum(c.stable.size for c in pending),
            oldest_pending_seconds=oldest,
            inflight_bytes=self.budget.used,
            in_flight=len(self.in_flight),
            release_waiting=len(held),
            release_waiting_seconds=max((now - since[k][0] for k in held), default=0.0),
            ready_files=sum(c.settled or c.key in self.in_flight for c in pending),
        )

    def incomplete_reasons(self) -> dict[str, int]:
        """How many files found and not complete yet wait, by what for (`acqd status`): a file its
        writer holds open showed only as `seen` there, the why in the log alone (a stranger's walk
        through the README)."""
        out: dict[str, int] = {}
        for c in self.candidates.values():
            if c.settled or c.release_only:
                continue
            writer = c.writer_open or self._awaited.get(c.key) == c.row.id
            why = INCOMPLETE_WRITER if writer else INCOMPLETE_SETTLING
            out[why] = out.get(why, 0) + 1
        return out

    def release_reasons(self) -> dict[str, int]:
        """How many verified files' releases wait, by what they wait for (`acqd status`)."""
        out: dict[str, int] = {}
        listed = set().union(*self._after_manifest.values())
        if listed:
            out[WAIT_MANIFEST] = len(listed)
        for key in self._release_later:
            if key not in listed:
                why = self._release_why.get(key, WAIT_AGAIN)
                out[why] = out.get(why, 0) + 1
        return out

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on an I/O thread, once the frame layouts' libraries are imported (`imports`)."""
        if self.imports is not None:
            await asyncio.shield(self.imports)  # done: at once (its error, if the import failed)
        return await asyncio.get_running_loop().run_in_executor(self.io, partial(fn, *args))

    async def _io_early(self, fn: Callable[..., T], *args: Any) -> T:
        """`_io` without waiting for the imports: for scans, stats and settle looks, which use none of
        the libraries the imports bring in (they proceed while the imports run). On the look threads."""
        return await asyncio.get_running_loop().run_in_executor(self.look, partial(fn, *args))

    async def _run_io(self, fn: Callable[[], T]) -> T:
        return await self._io_early(fn)  # the writers' /proc scan

    async def _j(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.jexec, partial(fn, *args, **kw))

    def hint(self, index: int, path: str) -> None:
        """Thread-safe entry for watcher events."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._hint_now, index, path)

    def _hint_now(self, index: int, path: str) -> None:
        try:
            self.hints.put_nowait((index, path))
        except asyncio.QueueFull:
            self.request_rescan(index)

    def request_rescan(self, index: int | None = None) -> None:
        self._rescan.update([index] if index is not None else [c.index for c in self.roots])
        self._rescan_wake.set()

    def request_rescan_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.request_rescan, None)

    def describe(self, limit: int = 20) -> str:
        """What the pipeline holds (for SIGUSR1's state dump): how many files wait, are in flight, wait
        for their session manifest or for a later look, and the first few of each with their state."""
        now = self.mono()

        def first(keys: Iterable[tuple[int, str]]) -> str:
            shown = []
            for key in itertools.islice(keys, limit):
                c = self.candidates.get(key) or self.in_flight.get(key)
                if c is None:
                    shown.append(repr(key[1]))
                    continue
                flags = [n for n in ("settled", "release_only", "recheck") if getattr(c, n)]
                shown.append(
                    f"{c.rel!r} (row {c.row.id} {c.row.state.value}, look in {c.check_at - now:.1f}s"
                    + (f", {' '.join(flags)}" if flags else "")
                    + ")"
                )
            return "; ".join(shown)

        waiting = [k for d in self._after_manifest.values() for k in d]
        parts = [
            f"waiting to settle or retry: {len(self.candidates)} ({len(self._heap)} looks queued)",
            f"in flight: {len(self.in_flight)}",
            f"streaming: {len(self.follows)}",
            f"releases waiting for their session manifest: {len(waiting)}",
            f"releases to look at again later: {len(self._release_later)}",
            f"asked about again when they land: {len(self._rehint)}",
            f"hints queued: {self.hints.qsize()}; ready for the ship workers: {self.ready.qsize()}",
            "parked for their tier: "
            + (", ".join(f"{t} {len(q)}" for t, q in sorted(self.lanes.parked.items())) or "none")
            + f"; in flight by tier: {dict(sorted(self.lanes.flights.items()))}; failing: {sorted(self.lanes.failing)}",
        ]
        for name, keys in (
            ("in flight", self.in_flight),
            ("waiting", self.candidates),
            ("manifest", waiting),
            ("later", self._release_later),
        ):
            if keys:
                parts.append(f"{name}, first {min(limit, len(keys))}: {first(keys)}")
        return "\n".join(parts)

    def _watched_roots(self) -> frozenset[str]:
        """The watch roots configured now (a journal's rows of others never ship again)."""
        return frozenset(c.root for c in self.roots)

    def _land(self, c: Candidate) -> None:
        """`c`'s flight is over: its file is not in flight any more (unless another candidate of the
        same file is, which only that one's flight ends)."""
        if self.in_flight.get(c.key) is c:
            del self.in_flight[c.key]

    def _schedule(self, c: Candidate) -> None:
        self.candidates[c.key] = c
        heapq.heappush(self._heap, (c.check_at, next(self._seq), c.key))
        self._tracker_wake.set()

    # -- run ----------------------------------------------------------------------------------
    async def run(self, stop_after: Awaitable[None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await self._warn_if_writers_unseen()
        try:
            await self._reconcile()
        except Exception:
            if self.halted is not None:  # stopped meanwhile (a broken installation): said by the halt
                return
            raise
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._feeders = [
                tg.create_task(self._supervised("scanner", self._scanner), name="scanner"),
                tg.create_task(self._supervised("intake", self._intake), name="intake"),
                tg.create_task(self._supervised("tracker", self._tracker), name="tracker"),
            ]
            for i in range(self.limits.concurrent_files):
                tg.create_task(self._supervised(f"ship-{i}", self._worker), name=f"ship-{i}")
            tg.create_task(self._supervised("manifests", self._manifests), name="manifests")
            if self.once:
                tg.create_task(self._once_monitor(), name="once-monitor")
            tg.create_task(self._stopper(), name="stopper")

    async def _supervised(self, name: str, stage: Callable[[], Awaitable[None]]) -> None:
        """Run a stage; a bug in it is logged and the stage restarts: one bad moment never kills the daemon."""
        while True:
            try:
                await stage()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.internal_errors += 1
                # one traceback per distinct error; a repeat (the state disk full) is counted, not logged
                why = f"{type(exc).__name__}: {exc}"
                self.repeats.error(
                    f"stage {name.partition('-')[0]}",
                    why,
                    "error in stage %s, restarting it: %s",
                    name,
                    why,
                    level=logging.ERROR,
                    exc_info=not isinstance(exc, AcqdError),  # a bug gets its traceback (once)
                )
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        """Drain: no new work; files in flight finish (the caller bounds that with a deadline)."""
        self.stopping.set()

    async def _stopper(self) -> None:
        await self.stopping.wait()
        for t in self._feeders:
            t.cancel()
        for h in self._release_later.values():
            h.cancel()
        self._release_later.clear()
        self._release_why.clear()
        for h in self._journal_later.values():
            h.cancel()
        self._journal_later.clear()
        dropped = []
        for f in list(self.follows.values()):  # streams not taken over by a ship: their temporaries dropped
            if f.task is not None and not f.taken:
                f.task.cancel()
                dropped.append(f)
        if dropped:  # files still being written: said, not dropped in silence (a review)
            log.info(
                "stopping: %d file(s) still being written and followed (first: %r) are not finished now: shipped "
                "whole at the next start",
                len(dropped),
                dropped[0].c.rel,
            )
        while not self.ready.empty():
            self.ready.get_nowait()
        for parked in [*self.lanes.drop(), *self._relane]:  # waiting for their tier: pending in the journal
            for c in parked if isinstance(parked, list) else [parked]:  # for the next start
                self._land(c)
        self._relane.clear()
        self._admitted.clear()
        for _ in range(self.limits.concurrent_files):
            self.ready.put_nowait(None)
        await self.slots.set_limit(self.slots.limit)  # wake the workers waiting for a slot: they see the stop
        self._manifest_wake.set()

    def idle(self) -> bool:
        return (
            len(self._scans_done) == len(self.roots)
            and not self._rescan
            and self.hints.empty()
            and self._busy == 0
            and not self.candidates
            and self.ready.empty()
            and not self.in_flight
            and not self._after_manifest  # releases waiting for their session manifest's write
            and not self._journal_later  # files whose flight a journal write failed, looked at again soon
            # a release held back for the settle window after a format's proof: `--once` releases it
            and not any(
                k in self._release_later and self.mono() < due + 1.0 for k, (_, due) in self._format_proven.items()
            )
        )

    def only_retries_left(self) -> bool:
        """Whether every file left waits for a retry, for a writer on this host, or has kept changing
        for longer than --retry-for (a writer acqd cannot see: another host's, or one that opens the
        file for each write): `--once` gives up on them then. Changing files kept `run --once` going
        for as long as they changed (an adversarial review)."""
        return (
            len(self._scans_done) == len(self.roots)
            and self.hints.empty()
            and self._busy == 0
            and not self.in_flight
            and self.ready.empty()
            and all(
                (c.settled and (c.row.attempts > 0 or c.journal_wait))
                or self._awaited.get(c.key) == c.row.id
                or self._changing(c)
                for c in self.candidates.values()
            )
        )

    def _changing(self, c: Candidate) -> bool:
        """`c` has not settled and changed more than --retry-for after it was found: still written to.
        (One whose last change came earlier waits out its settle window, even one longer than
        --retry-for: a review saw a file given up on, and called still changing, 6 s after its last
        change, its 8 s window not over.)"""
        if c.settled or self.retry_for is None or c.since <= c.born + self.retry_for:
            return False  # not seen changing after the deadline
        # and the change itself came after it (the file's own clock: a look can come a window late)
        changed = (c.stable.ctime_ns or c.stable.mtime_ns) / 1e9
        return changed > time.time() - (self.mono() - c.born) + self.retry_for

    async def _once_monitor(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(0.05)
            if self.idle():
                break
            late = self.retry_for is not None and self.mono() - self.stats.started > self.retry_for
            unscanned = [c.root for c in self.roots if c.index in self._unrecorded]
            if late and unscanned and not self._busy:
                self.outcome_code = 1
                log.error(
                    "giving up after %.0fs: the scan of %s could not be recorded in the journal (%s); run again",
                    self.retry_for,
                    ", ".join(unscanned),
                    self.stats.last_error or "journal write failed",
                )
                break
            if late and (self.candidates or self._after_manifest or self._journal_later) and self.only_retries_left():
                self.outcome_code = 1
                log.error(
                    "giving up after %.0fs: %s; they stay pending for the next run", self.retry_for, self._pending()
                )
                break
        self.stop()

    def _pending(self) -> str:
        """What `run --once` gives up on, each with its own reason: files not shipped (the last retry's
        error, writers still at work) and verified files whose release waits for their session manifest
        (the manifest's error, or a write of it not returning). A shipped file is not named among the
        files not shipped with an error it has since got over."""
        said: list[str] = []
        if self._journal_later:
            said.append(f"{len(self._journal_later)} file(s) waiting for the journal ({self.stats.last_error})")
        if self.candidates:
            open_now = sorted(c.rel for c in self.candidates.values() if self._awaited.get(c.key) == c.row.id)
            writing = (
                f"; {len(open_now)} still open for writing by a process here ({', '.join(map(repr, open_now[:5]))})"
                if open_now
                else ""
            )
            moving = sorted(
                c.rel for c in self.candidates.values() if self._changing(c) and self._awaited.get(c.key) != c.row.id
            )
            changing = (
                f"; {len(moving)} still changing after {self.retry_for:.0f}s, still being written "
                f"({', '.join(map(repr, moving[:5]))})"
                if moving
                else ""
            )
            said.append(
                f"{len(self.candidates)} file(s) not shipped ({self.stats.last_error or 'no error'}{writing}{changing})"
            )
        unlisted = [row.relpath for waiting in self._after_manifest.values() for _c, row in waiting.values()]
        if unlisted:
            if self._manifest_slow_since:
                why = "; ".join(
                    f"a write of it to tier {name} has not returned for {self.mono() - t0:.0f}s: the destination "
                    "is not answering"
                    for name, t0 in sorted(self._manifest_slow_since.items())
                )
            else:
                why = "; ".join(v for _k, v in sorted(self._manifest_error.items())) or "not written yet"
            said.append(
                f"{len(unlisted)} file(s) shipped and verified but not released, as their session manifest "
                f"is not written ({why}; first: {', '.join(map(repr, sorted(unlisted)[:5]))})"
            )
        return "; ".join(said)

    async def _reconcile(self) -> None:
        """A restart finds what a crash left: temporaries of files that were not verified, pending
        rows whose source is gone, releases half done, manifests not yet rewritten. The rows of a
        watch root out of view (missing, or its disk not mounted) wait until it is in view
        (`_root_present`): an empty mount point does not show that the disk's files are gone."""
        by_path = {c.root: c.index for c in self.roots}
        for root, session in await self._j(self.journal.dirty_manifests):
            if root in by_path:
                self._dirty.add((by_path[root], session))
        now: list[RootCtx] = []
        for c in self.roots:
            if await self._view(c.root) is None:
                now.append(c)
            else:
                self._unreconciled.add(c.index)
        await self._reconcile_rows(now, unconfigured=True)

    async def _release_unknown(self, ctx: RootCtx, row: FileRow) -> None:
        """A release a crash interrupted, whose file's folder has gone since (moved or renamed while
        acqd was stopped): the file is neither under its name nor under its hidden release name there,
        which does not say it was unlinked. Not taken for released: the release ends, the row stays
        verified, and where to look is said (a `left aside` WARNING, audit `release-unknown`, a
        `path.left_aside` event and metric); a scan of the watch root that finds it under its hidden
        name says so too."""
        await self._j(self.journal.end_release, row.id)
        folder = row.relpath.rpartition("/")[0]
        why = (
            f"its release was interrupted, and its folder {folder!r} has gone since (moved or renamed while acqd "
            f"was stopped): not taken for released. Where the folder went, the file is under its name or under "
            f"its release's hidden name {release_aside(row.identity.inode)!r}: rename it back; its copy is "
            "verified (acqd restore gives it back)"
        )
        await self._j(self.journal.audit, row.id, "release-unknown", reason=why)
        o = Outcome(LEFT_ASIDE, row.relpath, session=row.session, detector=ctx.profile.name, reason=why, root=ctx.root)
        try:
            self.reporter.outcome(o)
        except Exception:  # a reporter must never stop the start
            log.exception("reporter failed on %r", row.relpath)

    async def _reconcile_rows(self, ctxs: list[RootCtx], unconfigured: bool) -> None:
        """The journal rows of the roots `ctxs` (in view), and with `unconfigured` those of roots no
        longer configured: releases a crash interrupted, pending files gone, stale temporaries."""
        ctx_of = {c.root: c for c in ctxs}
        configured = {c.root for c in self.roots}

        def tracked(ctx: RootCtx | None, rel: str) -> bool:  # this run's own work (a late root's reconcile)
            return ctx is not None and ((ctx.index, rel) in self.candidates or (ctx.index, rel) in self.in_flight)

        for row, path in await self._j(self.journal.interrupted_releases):
            ctx = ctx_of.get(row.root)
            if ctx is None and (row.root in configured or not unconfigured):
                continue  # another root's (out of view: done when it is in view)
            if tracked(ctx, row.relpath):
                continue  # a release of this run, at work
            if ctx is not None:  # a crash while the file was moved aside: it goes back first
                try:
                    done = await self._io(put_back_aside, row.root, row.relpath, row.identity.inode)
                except OSError as exc:
                    log.error("could not put back %r, moved aside by its release: %s", row.relpath, exc)
                    continue  # the release stays begun: tried again at the next start
                if done is not None:
                    said, back = done
                    log.warning("%r: %s (its release was interrupted)", row.relpath, said)
                    moved = identity_of(back) if back is not None else None
                    if moved is not None and replace(moved, ctime_ns=row.identity.ctime_ns).same_file_as(row.identity):
                        row = await self._j(self.journal.put_back, row.id, moved.ctime_ns, said)
                    else:
                        await self._j(self.journal.audit, row.id, "release-undone", reason=said)
            if ctx is None or await self._io(_still_there, row.root, row.relpath, row.identity):
                # not unlinked. The release starts over from the scan (every check again), but a copy
                # that has gone or changed meanwhile is found now, and the file shipped again
                if ctx is not None and await self._copy_lost_at_start(ctx, row):
                    continue
                await self._j(self.journal.end_release, row.id)
            elif row.state is State.RELEASED:  # recorded released already (a second look began it again)
                await self._j(self.journal.end_release, row.id)
            elif await self._io(_folder_gone, row.root, row.relpath):
                await self._release_unknown(ctx, row)
            elif row.state is not State.VERIFIED:  # unlinked, and its copy found bad meanwhile (a journal of
                # an older acqd, which did not refuse that release): said, never taken for released
                await self._j(self.journal.end_release, row.id)
                log.error("%r was released while its copy was found bad: restore it from another copy", row.relpath)
                await self._quarantine(
                    row, "released while its stored copy was found bad: restore it from another copy or a backup"
                )
            elif await self._io(_same_inode, path, row.identity):  # not unlinked: changed in place meanwhile
                why = "changed while its release was interrupted: not removed (kept; shipped as a new version)"
                await self._j(self.journal.end_release, row.id)
                await self._j(self.journal.audit, row.id, "release-skipped", reason=why)
                log.info("%r %s", row.relpath, why)
            else:  # unlinked (a file now under that name would be a new one, shipped as a new version)
                row = await self._j(
                    self.journal.mark, row.id, State.RELEASED, "release finished after a restart", path=path
                )
                self.stats.released += 1
                self._emit("released", row, path=path, reason=RELEASED_AFTER_RESTART)
        for row in await self._j(self.journal.retry_internal, list(ctx_of), INTERNAL_GAVE_UP):
            log.info("%r: tried again at this start (quarantined by an internal error before)", row.relpath)
        for row in await self._j(self.journal.pending):
            ctx = ctx_of.get(row.root)
            if ctx is None or tracked(ctx, row.relpath):
                continue
            gone = not await self._io(os.path.lexists, os.path.join(ctx.root, row.relpath))
            try:
                if await self._io(ctx.placed(row.relpath).tier.remove_temp, self._dest(ctx, row)):
                    log.info("removed a stale temporary of %r at the destination", row.relpath)
            except AcqdError as exc:
                # a source gone stays pending, so that the next start tries again (marked vanished, its
                # row would never be looked at again, and its temporary never removed)
                log.warning(
                    "could not clean a temporary of %r: %s%s",
                    row.relpath,
                    exc,
                    " (again at the next start)" if gone else "",
                )
                continue
            if gone:
                await self._gone(ctx, row, "gone while acqd was not running")

    # -- intake: scans and hints -> journal -> candidates -----------------------------------
    async def _scanner(self) -> None:
        next_scan = {c.index: 0.0 for c in self.roots}

        def soon() -> None:  # a journal write that failed (state disk full): that root again soon
            for index, when in self._soon.items():
                next_scan[index] = min(next_scan[index], when)
            self._soon.clear()

        while True:
            now = self.mono()
            soon()
            due = [c for c in self.roots if now >= next_scan[c.index] or c.index in self._rescan]
            for ctx in due:
                self._rescan.discard(ctx.index)
                if not await self._root_present(ctx):  # a late or lost mount: looked at again soon
                    next_scan[ctx.index] = self.mono() + ROOT_POLL
                    if self.once:
                        self._scans_done.add(ctx.index)
                    continue
                self._unrecorded.discard(ctx.index)
                await self._scan(ctx, "")
                if ctx.index in self._unrecorded:  # what it found not recorded (journal): not done, again soon
                    self._scans_done.discard(ctx.index)
                else:
                    self._scans_done.add(ctx.index)
                next_scan[ctx.index] = self.mono() + (ctx.scan_interval if not self.once else 1e18)
            self.repeats.ok("stage scanner")
            soon()  # one the scans just made fail: its retry, not the next interval (nor never, with --once)
            wait = min(next_scan.values()) - self.mono()
            self._rescan_wake.clear()
            if self._rescan:
                continue
            await wait_set(self._rescan_wake, max(0.01, min(wait, 3600)))

    async def _view(self, root: str) -> str | None:
        """Why the watch root `root` cannot be looked at now (None: it can): `out_of_view`, or another
        acqd on this machine watches it, or a folder it lies in (`acqd.rootlock`; held from the first
        look that finds it there until the daemon stops)."""
        why = await self._io_early(out_of_view, root)
        if why is None and self.root_locks is not None:
            try:
                why = await self._io_early(self.root_locks.take, root)
            except OSError as exc:  # gone since out_of_view looked
                why = f"cannot be looked at ({exc.strerror})"
        return why

    async def _root_present(self, ctx: RootCtx) -> bool:
        """Whether the watch root is there (a folder); tells `on_root` and the journal when that changes."""
        why = await self._view(ctx.root)
        up = why is None
        ctx.why = why
        if up and ctx.index in self._unreconciled:
            # what the start left for it (out of view then): before its first scan; none of its files is
            # tracked yet (its hints are dropped while it is out of view)
            await self._reconcile_rows([ctx], unconfigured=False)
            self._unreconciled.discard(ctx.index)
        if up != ctx.up:
            ctx.up = up
            self._root_since[ctx.index] = self.clock()
            if up:
                log.info("watch root %s is there: scanning it", ctx.root)
                self._strays.pop(ctx.index, None)
            else:
                log.warning("watch root %s %s: waiting for it", ctx.root, why)
            await self._record_roots()
            if self.on_root is not None:
                await self.on_root(ctx, up)
        if not up:  # at each look while it waits: the camera may go on writing into the empty mount point
            await self._io_early(self._said_if_written_into, ctx)
        return up

    def _said_if_written_into(self, ctx: RootCtx) -> None:
        """Blocking. A watch root whose disk is not mounted, with files in its empty mount point: the
        camera wrote there, onto the local disk. acqd does not ship them (their names are the disk's,
        whose files it knows); once the disk mounts they are hidden under it. Said as an error, and
        said again whenever what is there changes (the camera goes on writing), not at every look."""
        point = unmounted_mount_point(ctx.root)
        if point is None:
            return
        count, size, names = 0, 0, list[str]()
        try:
            for top, dirs, files in os.walk(ctx.root):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(top, name)
                    try:
                        size += os.lstat(path).st_size
                    except OSError:
                        continue
                    count += 1
                    if len(names) < 5:
                        names.append(os.path.relpath(path, ctx.root))
                if count >= STRAY_LOOK_LIMIT:
                    break
        except OSError:
            return
        seen = (count, size)
        if self._strays.get(ctx.index) == seen:
            return
        self._strays[ctx.index] = seen
        if count:
            log.error(
                "watch root %s: its disk is not mounted (%s), and %s%d file(s) of %s are in the empty mount "
                "point (%s%s): they are on the local disk, acqd does not ship them, and the disk hides them "
                "once mounted; move them onto the disk once it is mounted",
                ctx.root,
                describe_mount(point),
                "at least " if count >= STRAY_LOOK_LIMIT else "",
                count,
                human_bytes(size),
                ", ".join(names),
                ", ..." if count > len(names) else "",
            )

    async def _record_roots(self) -> None:
        """The watch roots' state in the journal's meta table, for `acqd status`."""
        doc = json.dumps(
            {
                c.root: {"up": c.up, "since": self._root_since[c.index], "why": c.why}
                for c in self.roots
                if c.up is not None
            }
        )
        try:
            await self._j(self.journal.set_meta, "watch_roots", doc)
        except AcqdError as exc:
            self.repeats.error("journal", str(exc), "could not record the watch roots' state: %s", exc)

    def _journal_down(self, exc: JournalError) -> float:
        """A journal write failed (the state disk full, an I/O error): said once for the run of them (an
        error: nothing ships meanwhile); seconds before what failed is tried again, half as long as the
        journal has failed (5 s, up to a minute): a full state disk had every waiting file tried every
        5 s, thousands of failures a minute (a stranger's run)."""
        now = self.mono()
        if self._journal_down_since is None:
            self._journal_down_since = now
        self.repeats.error(
            "journal",
            str(exc),
            "journal write failed: nothing ships until it takes writes again (the state disk full or failing?);"
            " tried again within %.0fs: %s",
            JOURNAL_RETRY_MAX,
            exc,
            level=logging.ERROR,
        )
        self.stats.last_error = f"the journal cannot be written: {exc}"
        delay = min(JOURNAL_RETRY_MAX, max(JOURNAL_RETRY, (now - self._journal_down_since) / 2))
        return delay * random.uniform(0.8, 1.2)

    @property
    def journal_failing(self) -> bool:
        """A journal write failed and none has worked since."""
        return self._journal_down_since is not None

    def _journal_up(self) -> None:
        """A journal write worked."""
        if self._journal_down_since is not None:
            self._journal_down_since = None
            self.repeats.ok("journal")

    def _journal_failed(self, ctx: RootCtx, exc: JournalError) -> None:
        """A scan's journal write failed: the root is scanned again (`_journal_down`), so nothing found
        meanwhile is forgotten."""
        self._soon[ctx.index] = self.mono() + self._journal_down(exc)
        self._unrecorded.add(ctx.index)
        self._rescan_wake.set()

    async def _scan(self, ctx: RootCtx, rel_dir: str) -> None:
        """List the folder's tree and admit what it holds, SCAN_CHUNK entries at a time as the walk
        finds them: the first files' settle windows run, and their shipping begins, while the rest
        of a large tree is still being listed."""
        start = os.path.join(ctx.root, rel_dir) if rel_dir else ctx.root
        aside: list[tuple[str, os.stat_result]] = []
        passed: list[str] = []
        walk = scan_tree(start, ctx.ignored, ctx.skipped_file, is_release_aside, aside, passed)
        found: set[str] = set()  # the unreadable paths this scan met
        known = set(self.unreadable)  # those said before it began (hints record others meanwhile)
        self._busy += 1  # from the first listing on: a --once run is not idle between two chunks
        try:
            while True:
                # one thread at a time runs the walk (each chunk is awaited before the next)
                entries = await self._io_early(lambda: list(itertools.islice(walk, SCAN_CHUNK)))
                if rel_dir:
                    entries = [replace(e, relpath=f"{rel_dir}/{e.relpath}" if e.relpath else rel_dir) for e in entries]
                found.update(e.relpath for e in entries if e.kind is Kind.UNREADABLE)
                if entries:
                    await self._admit(ctx, entries)
                if len(entries) < SCAN_CHUNK:
                    break
        except JournalError as exc:
            self._journal_failed(ctx, exc)
            return  # scanned again soon (what was not listed yet too)
        finally:  # the walk is not closed here: after a cancellation a thread may still be running it
            self._busy -= 1
        for key in [k for k in self.unreadable if k in known and k[0] == ctx.index and k[1] not in found]:
            if not rel_dir or key[1] == rel_dir or key[1].startswith(rel_dir + "/"):
                self._readable_again(ctx, key[1])
        if aside:  # after the scan's files are admitted: this never holds them up
            try:
                await self._left_aside(ctx, [(f"{rel_dir}/{r}" if rel_dir else r, st) for r, st in aside][:ASIDE_MAX])
            except Exception as exc:  # never stops the scanner
                self.repeats.error("left aside", str(exc), "could not look at files left aside: %s", exc)
        if not rel_dir:  # a whole root's scan: the files its ignore globs pass over (`run --once` says)
            self.passed_over[ctx.root] = passed
        if not rel_dir:  # a whole root's scan: the files left aside in it now, for `acqd status`
            now = sorted(r for r, _st in aside if (ctx.index, r) in self._aside_told)[:ASIDE_MAX]
            if now != self._aside_now.get(ctx.root, []):
                self._aside_now[ctx.root] = now
                doc = json.dumps({root: rels for root, rels in self._aside_now.items() if rels})
                try:
                    await self._j(self.journal.set_meta, LEFT_ASIDE_META, doc)
                except AcqdError as exc:
                    log.debug("files left aside not recorded: %s", exc)

    async def _left_aside(self, ctx: RootCtx, found: list[tuple[str, os.stat_result]]) -> None:
        """Files under a release's hidden name that no release accounts for, in flight or begun in the
        journal (a crash in the instant of a release, then the journal lost, replaced or restored from
        a backup): their copies were verified before they were moved, but nobody would see them
        again. Each is said once per run (a WARNING line, a `path.left_aside` event, a metric, an
        audit entry), with the name the journal last knew its inode by, and left as it is."""
        releasing_now = {
            (c.rel.rpartition("/")[0], c.stable.inode)
            for c in self.in_flight.values()
            if c.release_only and c.ctx is ctx
        }
        for rel, st in found:
            key = (ctx.index, rel)
            if key in self._aside_told or not stat.S_ISREG(st.st_mode):
                continue
            folder, _, hidden = rel.rpartition("/")
            inode = aside_inode(hidden)  # the name's: the file under it may be another program's new one
            if inode is None:
                inode = st.st_ino
            if (folder, inode) in releasing_now:
                continue  # a release at work: it moves the file aside for an instant
            try:
                if await self._j(self.journal.release_begun, ctx.root, folder, inode):
                    continue  # begun in the journal: the next start puts it back
                now = await self._io_early(lstat_below, ctx.root, rel)
                if now is None or now.st_ino != st.st_ino:
                    continue  # gone by now
                name = await self._j(self.journal.name_of_inode, ctx.root, folder, inode)
            except (AcqdError, NotBelow, OSError):
                continue  # looked at again at the next scan
            self._aside_told.add(key)
            known = f"the journal knew it as {name!r}" if name else "its name is not in the journal"
            if name and name.rpartition("/")[0] != folder:
                known += " (its folder was moved or renamed since)"
            if name and inode != st.st_ino:  # not the file the name was made for (a rename keeps the inode): another
                # program's file, never shipped as far as acqd knows (it was said to be a verified file
                # moved aside, whose removal was offered: a stranger's review)
                name = None
                known = f"it is not the file that name was made for (inode {inode}; this one is {st.st_ino})"
            reason = (
                (
                    f"a file moved aside by a release that was never finished nor undone ({known}); its copy was "
                    "verified before the move. Left as it is: rename it to a free name to have it shipped again, "
                    "or remove it"
                )
                if name
                else (
                    f"a file under a release's hidden name that no release accounts for ({known}: whether acqd "
                    "shipped it is not known). Left as it is: rename it to a free name to have it shipped"
                )
            )
            with contextlib.suppress(AcqdError):
                await self._j(self.journal.audit, None, LEFT_ASIDE, root=ctx.root, path=rel, reason=reason)
            o = Outcome(
                LEFT_ASIDE,
                rel,
                session="",
                detector=ctx.profile.name,
                source_bytes=st.st_size,
                reason=reason,
                root=ctx.root,
            )
            try:
                self.reporter.outcome(o)
            except Exception:  # a reporter must never stop the scan
                log.exception("reporter failed on %r left aside", rel)

    def _readable_again(self, ctx: RootCtx, rel: str) -> None:
        error = self.unreadable.pop((ctx.index, rel), None)
        if error is not None:
            log.info("readable again: %r in %s (was: %s)", rel, ctx.root, error)

    async def _unreadable(self, ctx: RootCtx, entries: list[Entry]) -> None:
        """Record each path that cannot be listed or looked at once (journal audit, event, metric,
        log line), however often scans and hints meet it; everything else goes on."""
        for e in entries:
            key = (ctx.index, e.relpath)
            if self.unreadable.get(key) == e.error:  # once per path and kind of error
                continue
            self.unreadable[key] = e.error
            try:
                await self._j(self.journal.audit, None, "unreadable", root=ctx.root, path=e.relpath, reason=e.reason)
            except AcqdError as exc:
                self.repeats.error("journal", str(exc), "could not record an unreadable path: %s", exc)
            o = Outcome(
                kind="unreadable",
                relpath=e.relpath or ".",
                session=e.relpath.partition("/")[0],
                detector=ctx.profile.name,
                reason=e.reason,
                stage=e.error,
                root=ctx.root,
            )
            try:
                self.reporter.outcome(o)
            except Exception:  # a reporter must never stop the scan
                log.exception("reporter failed on unreadable %r", e.relpath)

    async def _intake(self) -> None:
        by_index = {c.index: c for c in self.roots}
        while True:
            first = await self.hints.get()
            batch = [first]
            while len(batch) < 2000 and not self.hints.empty():
                batch.append(self.hints.get_nowait())
            self._busy += 1
            try:
                groups: dict[int, set[str]] = {}
                for index, path in batch:
                    ctx = by_index[index]
                    if ctx.up is False:
                        continue  # out of view (an empty mount point's events): its first scan finds all
                    rel = relative(ctx.root, path.rstrip("/"))
                    if rel is not None and ctx.profile.settle.marker:
                        self._wake_marked(ctx, rel)  # a marker file: the file it marks is looked at now
                    if rel is None or ctx.ignored_path(rel, folder=path.endswith("/")):
                        continue
                    if path.endswith("/"):
                        await self._scan(ctx, rel)
                        continue
                    groups.setdefault(index, set()).add(rel)
                for index, rels in groups.items():
                    ctx = by_index[index]
                    todo = []
                    now = self.mono()
                    for rel in rels:
                        key = (index, rel)
                        if key in self.in_flight:
                            self._rehint.add(key)
                        elif key in self.candidates:
                            c = self.candidates[key]
                            if key in self.follows:
                                self.follows[key].wake.set()
                            if not c.settled and c.check_at > now:  # activity: look again now
                                c.check_at = now
                                self._schedule(c)
                        else:
                            todo.append(rel)
                    if todo:
                        entries = await self._io_early(lambda c=ctx, t=todo: [classify(c.root, r) for r in t])
                        try:
                            await self._admit(ctx, [e for e in entries if e is not None])
                            gone = [r for r, e in zip(todo, entries, strict=True) if e is None]
                            if gone:
                                await self._admit_gone(ctx, gone)
                        except JournalError as exc:
                            self._journal_failed(ctx, exc)
                self.repeats.ok("stage intake")
            finally:
                self._busy -= 1

    def _wake_marked(self, ctx: RootCtx, rel: str) -> None:
        """If `rel` may be the marker file of a file waiting to settle (the profile's `settle.marker`,
        e.g. '{name}.done'), look at that file now rather than when its stillness window ends. A
        '{stem}' template is matched against the files being streamed only (their stems are few)."""
        template = ctx.profile.settle.marker or ""
        field = "{name}" if "{name}" in template else "{stem}" if "{stem}" in template else None
        if field is None:
            return
        prefix, _, suffix = template.partition(field)
        folder, _, base = rel.rpartition("/")
        if len(base) <= len(prefix) + len(suffix) or not (base.startswith(prefix) and base.endswith(suffix)):
            return
        inner = base[len(prefix) : len(base) - len(suffix)]
        at = f"{folder}/" if folder else ""
        keys = [(ctx.index, at + inner)]
        if field == "{stem}":
            keys += [k for k in self.follows if k[0] == ctx.index and k[1].rpartition(".")[0] == at + inner]
        now = self.mono()
        for key in keys:
            c = self.candidates.get(key)
            if c is not None and not c.settled and c.check_at > now and key not in self.in_flight:
                log.debug("marker %r: its file %r is looked at now", rel, key[1])
                c.check_at = now
                self._schedule(c)
            elif log.isEnabledFor(logging.DEBUG):
                where = "not waiting" if c is None else "in flight" if key in self.in_flight else "due already"
                log.debug("marker %r: its file %r %s", rel, key[1], where)

    async def _admit(self, ctx: RootCtx, entries: Iterable[Entry]) -> None:
        """Track the files found that are not tracked yet, as the journal says (new, pending, a new
        version, a release due, or nothing to do). One admission at a time (`_admitting`): a file
        neither waiting nor in flight when its admission starts gets exactly one candidate."""
        with self._busy_while():  # a file landed and being admitted again is neither waiting nor in flight
            async with self._admitting:
                await self._admit_now(ctx, list(entries))

    async def _admit_gone(self, ctx: RootCtx, rels: list[str]) -> None:
        """Files an event named that are not there, neither waiting nor in flight: a row the journal
        keeps pending for one (a new version recorded while the file's earlier one was in flight,
        moved or deleted before it landed) would stay pending for ever, no scan finding its file
        (a stranger's review: `acqd status` and the pending gauge showed files that did not exist).
        It is gone, as a waiting file's look finds it. One admission at a time (`_admitting`)."""
        with self._busy_while():
            async with self._admitting:
                rels = [
                    r for r in rels if (ctx.index, r) not in self.candidates and (ctx.index, r) not in self.in_flight
                ]
                if not rels or await self._view(ctx.root) is not None:
                    return  # its disk unmounted: the files are not gone, found again when it is back
                still = await self._io_early(lambda: [classify(ctx.root, r) is None for r in rels])
                rels = [r for r, none in zip(rels, still, strict=True) if none]
                rows = await self._j(lambda: [self.journal.lookup(SourceRef(ctx.root, r)) for r in rels])
                for row in rows:  # a row with a copy stored and not verified (a crash's) is the start's:
                    # its copy is read back (gigabytes, maybe), which no admission may wait for
                    if row is not None and row.state in (State.SEEN, State.COMPLETE):
                        await self._gone(ctx, row, "vanished before it was shipped")

    @contextlib.contextmanager
    def _busy_while(self) -> Iterator[None]:
        """Busy meanwhile: a `--once` run is not idle while a file is between two of its places."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    async def _fences(self, ctx: RootCtx, rels: list[str] = []) -> list[str]:  # noqa: B006 (never changed)
        """The folders below this watch root that are a local tier's folder (moved or mounted into it
        while acqd runs; `check_apart` refuses it at start): acqd's own copies, never shipped again
        (they were, into themselves, folder in folder, filling the acquisition disk: an adversarial
        run). Looked at at every admission (a cache let its own copies through for a generation or
        three), on the loop's own executor, for at most FENCE_SECONDS (a share that hangs: the last answer
        stands); each said once, as unreadable. `rels`: the files being admitted (`_look_for_tiers`)."""
        now = self.mono()
        cached = self._fenced.get(ctx.index)
        local = [t.root for t in self.tiers.values() if t.local]
        try:
            fences = []
            if local:  # on the loop's own executor, not the I/O threads: an admission never queues behind shipping
                loop = asyncio.get_running_loop()
                look = loop.run_in_executor(None, tiers_below, ctx.root, local, rels, self._tiers_seen)
                fences = await within(look, FENCE_SECONDS)
        except (OSError, TimeoutError):
            fences = cached[1] if cached is not None else []
        self._fenced[ctx.index] = (now, fences)
        said = [
            Entry(
                f,
                Kind.UNREADABLE,
                None,
                "a tier's folder (acqd's own copies) inside the watch root: not shipped again; move it out",
                "tier_inside",
            )
            for f in fences
        ]
        if said:
            await self._unreadable(ctx, said)
        return fences

    async def _admit_now(self, ctx: RootCtx, entries: list[Entry]) -> None:
        fences = await self._fences(ctx, [e.relpath for e in entries])
        if fences:
            entries = [e for e in entries if not any(fenced(e.relpath, f) for f in fences)]
        bad = [e for e in entries if e.kind is Kind.UNREADABLE]
        if bad:
            await self._unreadable(ctx, bad)
        if self.unreadable:
            for e in entries:
                if e.kind is not Kind.UNREADABLE and (ctx.index, e.relpath) in self.unreadable:
                    self._readable_again(ctx, e.relpath)
        fresh = [
            e
            for e in entries
            if e.identity is not None
            and (ctx.index, e.relpath) not in self.candidates
            and (ctx.index, e.relpath) not in self.in_flight
        ]
        if not fresh:
            return
        obs = [
            Observation(SourceRef(ctx.root, e.relpath), e.identity, ctx.profile.name, ctx.releases(e.relpath))
            for e in fresh
            if e.identity is not None
        ]
        results = await self._j(self.journal.observe_many, obs)
        now = self.mono()
        seen: list[Outcome] = []  # reported together, before anything else is said of these files
        try:
            for entry, (action, row) in zip(fresh, results, strict=True):
                assert entry.identity is not None
                if action is Observed.SKIP:
                    continue
                key = (ctx.index, entry.relpath)
                if key in self.candidates or key in self.in_flight:
                    # tracked meanwhile by a flight that ended while the journal was asked (a retry, a
                    # re-plan): that candidate knows more than this answer; the file is asked about again
                    # once it lands, in case the answer mattered
                    self._rehint.add(key)
                    continue
                if action in (Observed.NEW, Observed.NEW_VERSION, Observed.RESET):
                    seen.append(self._outcome("seen", row))
                if action is Observed.NEW_VERSION and entry.kind is Kind.FILE:
                    log.warning(
                        "%r changed after its version %d was stored (written again, or a new file under its name): "
                        "shipped as version %d, beside the stored one (`acqd restore --version N`)",
                        entry.relpath,
                        row.version - 1,
                        row.version,
                    )
                if entry.kind is not Kind.FILE:
                    reason = {
                        Kind.SYMLINK: "symlink: not followed (acqd ships regular files only)",
                        Kind.SPECIAL: "not a regular file (FIFO, socket or device node)",
                        Kind.BADNAME: "file name is not valid UTF-8",
                    }[entry.kind]
                    if action is not Observed.RELEASE:
                        self._emit_all(seen)
                        seen = []
                        await self._quarantine(row, reason)
                    continue
                c = Candidate(ctx, entry.relpath, row, entry.identity, now, now + ctx.window, born=now)
                # its last version with more after it (the same file, larger): a writer adding to it in
                # parts, closing it between them; kept a while after it ships, as a file seen growing (a
                # third part's version was released a second after it verified, and the fourth made a
                # fragment of its own: a stranger's run). Also a version recorded by another path (a release
                # that found its file changed) and admitted as pending (TRACK): a test's run, one in three
                if action is Observed.NEW_VERSION or (action is Observed.TRACK and row.version > 1):
                    appended, gap = await self._came_back(row, entry.identity)
                    c.grew = appended or gap is not None
                    c.continued = appended  # its format's proof is not final alone (`_proof_final`)
                    if gap is not None and not _remember(self._came_back_said, c.key, row.id):
                        # its writer closes it between parts and paused past the window:
                        # each part a version of its own (a time-lapse by `tifffile.imwrite(append=True)`)
                        log.warning(
                            "%r came back %.0fs after its version %d was released (%s): each part becomes a "
                            "version of its own; version %d is kept %gs after it ships. If a writer adds to it in "
                            "parts, set `settle` above the writer's longest pause (the window is %gs)",
                            entry.relpath,
                            gap,
                            row.version - 1,
                            # said as seen: the same file with more after it, or another file under its name
                            # (a writer that started it again, or saved it anew: a rename over it)
                            "the same file with more after it: its writer adds to it in parts and paused "
                            "longer than the settle window"
                            if appended
                            else "another file under its name: written anew",
                            row.version,
                            max(UNFINISHED_HOLD, 3 * ctx.window),
                            ctx.window,
                        )
                # looked at soon: streamed if still being written; an MRC's header read early, so that a count
                # its writer rewrites after each frame is seen moving (`_proof_final`)
                if self._streams_here(ctx, entry.relpath) or ctx.profile.settle.format == "mrc":
                    c.check_at = now + min(ctx.window, STREAM_POLL)
                if action is Observed.RELEASE:
                    c.release_only = True
                    c.check_at = now
                    c.settled = True
                c.recheck = action is Observed.RECHECK
                self._schedule(c)
        finally:  # also when the loop stops half way (an error, a cancellation)
            self._emit_all(seen)

    # -- settle -------------------------------------------------------------------------------
    def _look(self, c: Candidate) -> tuple[Entry | None, bool, bool]:
        """Blocking: stat a candidate and apply its profile's format proof and marker rule."""
        entry = classify(c.ctx.root, c.rel)
        rule = c.ctx.profile.settle
        fmt_ok = marker = False
        if entry is None or entry.kind is not Kind.FILE or entry.identity is None:
            return entry, False, False
        path = os.path.join(c.ctx.root, c.rel)
        if rule.marker:
            marker = os.path.exists(
                os.path.join(os.path.dirname(path), marker_name(rule.marker, os.path.basename(path)))
            )
        if rule.format != "none":
            try:
                with open(path, "rb") as f:

                    def read(off: int, n: int) -> bytes:
                        f.seek(off)
                        return f.read(n)

                    if rule.format == "mrc":
                        size = entry.identity.size
                        # the header's size, and a last frame written (not a pre-allocated file's zeros)
                        c.announced_now = mrc_expected_size(f.read(1024))
                        fmt_ok = c.announced_now == size and not tail_unwritten(read, size)
                    else:
                        fmt_ok = tiff_chain_complete(read, entry.identity.size)
            except OSError:
                fmt_ok = False
        return entry, fmt_ok, marker

    async def _tracker(self) -> None:
        while True:
            self._tracker_wake.clear()
            now = self.mono()
            due: list[Candidate] = []
            keys: set[tuple[int, str]] = set()
            # `--once` past --retry-for: a file that failed is not tried again (it stays pending). Slow
            # attempts out of step (a destination down whose client retries each call for 10 s) always
            # left one in flight, and the run never found the quiet moment to give up in
            spent = self.once and self.retry_for is not None and now - self.stats.started > self.retry_for
            while self._heap and self._heap[0][0] <= now and len(due) < 512:
                check_at, _, key = heapq.heappop(self._heap)
                c = self.candidates.get(key)
                if c is not None and c.check_at == check_at and key not in keys:
                    if spent and c.row.attempts > 0 and c.settled:
                        continue
                    keys.add(key)
                    due.append(c)
            if not due:
                timeout = (self._heap[0][0] - now) if self._heap else 3600.0
                await wait_set(self._tracker_wake, max(0.005, timeout))
                continue
            looks = await self._io_early(lambda d=due: [self._look(c) for c in d])
            writing = await self._written_now(looks, self._paused(due, looks))
            with self._busy_while():  # a file taken off the candidates (gone: its copy read back) is
                # neither waiting nor in flight until its look is done: a `--once` run is not idle
                await self._settle_round(due, looks, writing)

    async def _settle_round(
        self,
        due: list[Candidate],
        looks: list[tuple[Entry | None, bool, bool]],
        writing: Collection[tuple[int, int]],
    ) -> None:
        """One round of the tracker's looks, each file settled (or not) by what was seen of it."""
        now = self.mono()
        for c, (entry, fmt_ok, marker) in zip(due, looks, strict=True):
            if self.candidates.get(c.key) is not c:  # not the same candidate after the await
                continue
            proved = fmt_ok  # every frame its header announces is there: no more to wait for
            if entry is not None and entry.identity is not None:  # `incomplete_reasons` says it
                c.writer_open = (entry.identity.device, entry.identity.inode) in writing
                # called at every look, proved or not: what it follows (the header's count, a look that found
                # the file short) is seen at the looks that do not prove it (short-circuited, a header-first
                # movie was never seen short and waited the grace: a review of the diff)
                final = self._proof_final(c, entry.identity, proved, c.writer_open)
                fmt_ok = fmt_ok and final
            try:
                await self._settle_one(c, entry, fmt_ok, marker, now, proved, writing)
            except Exception as exc:
                # one file's error must not lose the others of this round: they were taken off
                # the heap, and a candidate off the heap is never looked at again (the scans
                # see it tracked). Seen in CI: 28 files of a 100,000-file burst left `seen`.
                self.repeats.error(
                    "tracker",
                    str(exc),
                    "looking at %r failed (again in %gs): %s",
                    c.rel,
                    TRACKER_RETRY,
                    exc,
                    exc_info=not isinstance(exc, (AcqdError, OSError)),  # a bug gets its traceback
                )
                if c.key not in self.in_flight:
                    c.check_at = now + TRACKER_RETRY
                    self._schedule(c)
        await self._flush_batches()

    def _proof_final(self, c: Candidate, current: Identity, proved: bool, open_now: bool) -> bool:
        """Whether the format's proof of this look completes the file at once (no process here writing
        it), or the settle window's stillness must follow: a writer that closes an MRC after each frame
        and rewrites its header's frame count each time keeps the proof true between frames, and each
        close made a version (eleven of a twelve-frame movie, the plain name a one-frame fragment: a
        stranger's review). Not final alone: a header whose announced size moved between two looks (but
        for a writer seen holding the file open: its close says the end); a version that is its previous
        one with more after it (both wait for the window); and, in the daemon, a file complete and closed
        at every look so far, written less than PROOF_GRACE ago, is complete once still for PROOF_GRACE
        (`run --once` takes what it finds). A header-first writer's movie seen short of its announced
        size, or a movie seen open for writing, is complete at once when proved and closed."""
        announced, c.announced_now = c.announced_now, None
        c.seen_open = c.seen_open or open_now
        c.proof_grace = False  # of this look only (a stale one shortened a later window: a review of the diff)
        if announced is not None:  # at any look its header reads at (a header-first writer's stays put)
            if c.announced is not None and announced != c.announced:
                c.header_moved = True
            c.announced = announced
        if not proved:
            # short of the size its header announces (a header-first writer: its proof is the end), or, for
            # a TIFF (no count), a look that found its chain of IFDs not whole; an empty file or an MRC
            # header not written yet says nothing
            if announced is not None:
                c.seen_short = c.seen_short or current.size < announced
            elif current.size > 0 and c.ctx.profile.settle.format == "tiff":
                c.seen_short = True
            return False
        if open_now:  # a process here still writes it (a writer that keeps the header valid after every
            return False  # frame): its close (an event) or the settle window says when, not every frame a version
        # a count that moved is no proof of the end, but for a writer seen holding the file open (its close is)
        if (c.header_moved and not c.seen_open) or c.continued:
            return False
        if self.once or c.seen_short or c.seen_open or self.clock() - current.mtime_ns / 1e9 >= PROOF_GRACE:
            return True
        c.proof_grace = True  # still for PROOF_GRACE (or the window, if shorter): `_settle_one`
        return False

    async def _settle_one(
        self,
        c: Candidate,
        entry: Entry | None,
        fmt_ok: bool,
        marker: bool,
        now: float,
        proved: bool,
        writing: Collection[tuple[int, int]] = (),
    ) -> None:
        """One look at a settling file. `fmt_ok`: its format proves it complete and no process here
        writes it; `proved`: its format proves it complete (a writer or not); `writing`: the files of
        this round a process here has open for writing (of those asked: `_paused`)."""
        fences = self._fenced.get(c.ctx.index)
        if fences is not None and any(fenced(c.rel, f) for f in fences[1]):  # a tier's folder moved in since
            self.candidates.pop(c.key, None)  # it was admitted: acqd's own copy, not shipped again
            self._drop_follow(c.key)
            return
        if entry is not None and entry.kind is not Kind.FILE:
            self.candidates.pop(c.key, None)
            await self._admit(c.ctx, [entry])  # it became a symlink or a FIFO: the journal decides
            return
        current = entry.identity if entry is not None else None
        if c.release_only and entry is not None and current is not None and not current.same_content_as(c.stable):
            # a release was due and the file changed: not this row's business any more; the journal
            # makes it a new version
            self.candidates.pop(c.key, None)
            await self._admit(c.ctx, [entry])
            return
        if c.settled and current is not None and current.same_content_as(c.stable):
            verdict, why = Verdict.COMPLETE, c.reason or "retry"
        else:
            if c.settled:  # changed while waiting for a retry: settle afresh
                c.settled = False
                c.release_only = False
            window = min(c.ctx.window, PROOF_GRACE) if c.proof_grace else c.ctx.window
            d = decide(window, c.stable, c.since, current, now, format_complete=fmt_ok, marker_present=marker)
            verdict, why = d.verdict, d.reason
            if (
                verdict is Verdict.COMPLETE
                and not proved
                and not marker
                and now - c.since < STREAM_WRITER_PATIENCE
                and current is not None
                and (current.device, current.inode) in writing
                and self._written_frame_by_frame(c)
            ):
                # a movie being streamed, or one that would be if a stream slot were free, or one its
                # format says is not complete yet (short of its header's size, or pre-allocated and its
                # last frame not written), whose writer paused longer than the settle window, the file
                # still open for writing here: it waits for more frames (or the close), rather than the
                # part written so far being shipped as a version of its own (and a stream begun again
                # from frame 0); said once per version, and counted as waiting for its writer (`run
                # --once` gives up on it after --retry-for)
                following = "being streamed" if c.key in self.follows else "a movie written frame by frame"
                verdict, why = Verdict.WAIT, f"still open for writing, {following}"
                d = replace(d, verdict=verdict, reason=why, check_at=now + STREAM_WAIT)
                said = _remember(self._awaited, c.key, c.row.id)
                log.log(
                    logging.DEBUG if said else logging.INFO,
                    "%r: still for now; a process has it open for writing: waiting for it",
                    c.rel,
                )
            if verdict in (Verdict.WAIT, Verdict.CHANGED):
                if verdict is Verdict.CHANGED and current is not None:
                    if current.size > c.stable.size and (
                        c.stable.size > 0 or current.mtime_ns - c.stable.mtime_ns > GROWN_SPAN_NS
                    ):  # a writer adding to it: seen between two parts, or writing it for a while since
                        # its creation (looks a busy host made late see the first size and the last)
                        c.grew = True
                    c.stable, c.since = current, now
                c.check_at = d.check_at
                self._maybe_follow(c)
                if (
                    c.key not in self.follows
                    and not c.release_only
                    and self._unstreamed.get(c.key) != c.row.id
                    and self._streams_here(c.ctx, c.rel)
                ):
                    # a movie that could stream and is not (yet: every stream slot taken, or its
                    # header not written at this look) is looked at again soon, not at the end of
                    # its settle window
                    c.check_at = min(c.check_at, now + STREAM_WAIT)
                if log.isEnabledFor(logging.DEBUG):
                    following = " (streaming)" if c.key in self.follows else ""
                    log.debug(
                        "looked at %r: %s, %s; next look in %.2fs%s",
                        c.rel,
                        verdict.value,
                        why,
                        c.check_at - now,
                        following,
                    )
                self._schedule(c)
                return
        self.candidates.pop(c.key, None)
        if verdict is Verdict.GONE:
            self._drop_follow(c.key)
            if c.row.state in (State.SEEN, State.COMPLETE, State.STORED):
                if await self._view(c.ctx.root) is not None:
                    return  # its disk unmounted, not the file gone: found again when it is back
                await self._gone(c.ctx, c.row, "vanished before it was shipped")
            return
        assert current is not None
        if c.recheck:
            c.stable = current
            self.in_flight[c.key] = c
            # one at a time, in the order found, by one task: a `chmod -R` of a kept tree makes
            # thousands, which must neither crowd the event loop nor the ship slots
            self._rechecks.append(c)
            if self._tg is not None and (self._recheck_task is None or self._recheck_task.done()):
                self._recheck_task = self._tg.create_task(self._recheck_all(), name="rechecks")
            elif self._tg is None:
                await self._recheck_all()
            return
        if current.size == 0 and not c.release_only:
            if await self._being_written(c):  # created, not written yet (a writer waiting for its first
                # frame): no damaged file, and quarantining it fed the alert for files written normally
                now = self.mono()
                said = _remember(self._awaited, c.key, c.row.id)
                log.log(
                    logging.DEBUG if said else logging.INFO,
                    "%r is empty and a process has it open for writing: waiting for it",
                    c.rel,
                )
                self._schedule(replace(c, check_at=now + c.ctx.window, since=now, settled=False))
                return
            await self._quarantine(c.row, "zero-byte file (re-examined if it grows)")
            return
        c.stable, c.reason = current, why
        try:
            batch = self._batch_key(c)  # may raise (a placer): before the file is in flight, not after
        except AcqdError as exc:
            # its placement cannot be built (a policy rule's codec its layout cannot store with): the
            # file waits, retried as any failing file (a reload that mends the rule ships it; `run
            # --once` gives up on it after --retry-for), every other file goes on
            await self._retry(c, f"its placement cannot be built: {exc}", "placement")
            return
        self.in_flight[c.key] = c
        await self._dispatch(c, batch)

    @staticmethod
    def _none_foreign(tier: Tier, dest: str) -> None:
        """Blocking: NameTakenError if the Zarr store at `dest`, about to be deleted and written again,
        holds objects acqd did not write (a scientist's `labels/`): never deleted with it."""
        if not tier.exists(dest):
            return
        foreign = [n for n in tier.tree_names(dest) if not zarr_own(n) and not is_temp(n.rpartition("/")[2])]
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise NameTakenError(
                f"{tier.url(dest)} is to be written again (its copy did not verify), and it holds objects acqd did "
                f"not write ({shown}): not deleted with it; move them, or the whole store, elsewhere to ship it"
            )

    def _untaken(self, c: Candidate, ext: str | None) -> None:
        """A camera file format the root's detector profile does not take was stored byte-exact: said
        once per root and extension while the daemon runs (`run --once` says it in its summary), so a
        wrong `detector:` does not copy a camera's movies uncompressed unnoticed."""
        if ext is None or self.once or (c.ctx.index, ext) in self._untaken_said:
            return
        self._untaken_said.add((c.ctx.index, ext))
        log.warning(
            "watch root %s: %r and any other %s file stored byte-exact, not as frames: detector %s does not take "
            "%s files (a camera's profile compresses its movies losslessly; `acqd check --config FILE` lists the "
            "profiles)",
            c.ctx.root,
            c.rel,
            ext,
            c.ctx.profile.name,
            ext,
        )

    async def _recheck_all(self) -> None:
        while self._rechecks:
            await self._recheck(self._rechecks.popleft())

    async def _recheck(self, c: Candidate) -> None:
        """A verified file whose change time alone moved (`Observed.RECHECK`: a chmod, a new hard link,
        or a rewrite that put its size and mtime back): its content is read and hashed as it was
        shipped and compared with the verified copy's checksum. The same: the row takes the file's
        identity as it is now (a release compares it) and nothing is shipped again; else, or where
        that cannot be told, a new version, as any changed file."""
        try:
            row = c.row
            path = os.path.join(c.ctx.root, c.rel)
            placed = c.ctx.placed(c.rel)
            copies = await self._j(self.journal.copies_of, row.id)
            found = _verified_copy(placed, copies, self.tiers)
            if found is None and copies:
                # no verified copy now (retention purged it, or moved it to a tier not configured): the
                # content is compared with the last copy's all the same; a chmod must not undo a purge
                last = copies[-1]
                found = last, reading_layout(last.layout, last.codec, placed.layout), placed.tier
            digest: str | None = None
            if found is not None:
                # a ship slot, as a file shipped: a `chmod -R` of a kept tree reads every file again, and
                # those reads must neither fill the I/O threads ahead of new files nor ignore the backoff
                # for the camera
                if not await self.slots.acquire(self.stopping):
                    return  # stopping: the row keeps its identity, the next start compares again
                try:
                    digest = await self._io(self._source_digest, found[1], path, c.stable)
                except (AcqdError, OSError) as exc:
                    log.debug("%r: its content could not be compared (%s): a new version", c.rel, exc)
                finally:
                    await self.slots.release()
            ref = SourceRef(c.ctx.root, c.rel)
            if found is not None and digest is not None and digest == found[0].checksum:
                try:
                    row = await self._j(self.journal.refresh_identity, row.id, c.stable)
                except IllegalTransition:
                    return  # moved on meanwhile (verify found its copy damaged): the next scan says
                log.info(
                    "%r: only its change time moved (a chmod, a new link): the content of its copy, not shipped",
                    c.rel,
                )
                if placed.release:
                    action = Observed.RELEASE
                else:
                    return
            else:
                obs = Observation(ref, c.stable, c.ctx.profile.name, placed.release, changed=True)
                [(action, row)] = await self._j(self.journal.observe_many, [obs])
                if action is Observed.SKIP:
                    return
                self._emit("seen", row)
                if action is Observed.NEW_VERSION:  # said as for any file changed after it was stored
                    log.warning(
                        "%r changed after its version %d was stored (its content rewritten, its size and "
                        "modification time as they were%s): shipped as version %d, beside the stored one "
                        "(`acqd restore --version N`)",
                        c.rel,
                        row.version - 1,
                        "" if digest is not None else "; its content could not be compared",
                        row.version,
                    )
            now = self.mono()
            nc = Candidate(c.ctx, c.rel, row, c.stable, now, now + c.ctx.window, born=c.born)
            if action is Observed.RELEASE:
                nc.release_only, nc.settled, nc.check_at = True, True, now
            self._land(c)  # before the new candidate is tracked: a key is waiting or in flight, not both
            self._schedule(nc)
        except Exception as exc:  # asked about again once it lands: the journal decides afresh
            self.repeats.error(
                "recheck",
                str(exc),
                "comparing %r with its verified copy failed (asked again): %s",
                c.rel,
                exc,
                exc_info=not isinstance(exc, AcqdError),
            )
            self._rehint.add(c.key)
        finally:
            self._land(c)
            if c.key in self._rehint:
                self._rehint.discard(c.key)
                self._hint_now(c.ctx.index, os.path.join(c.ctx.root, c.rel))

    def _source_digest(self, layout: Layout, path: str, expected: Identity) -> str | None:
        """Blocking: `layout.source_checksum` of the file at `path`, None unless it is `expected`
        before and after the read."""
        try:
            return self._source_digest_or_raise(layout, path, expected)
        except SourceChangedError:
            return None

    @staticmethod
    def _source_digest_or_raise(layout: Layout, path: str, expected: Identity) -> str | None:
        """Blocking: `layout.source_checksum` of the file at `path`; SourceChangedError unless it is
        `expected` before and after the read; None where the layout keeps no checksum of the file's
        bytes (a compressed TIFF, rebuilt from its tags by a restore)."""
        src = _Source(path, expected)
        try:
            digest = layout.source_checksum(src, expected.size)  # type: ignore[arg-type]
            src.final_check()
            return digest
        finally:
            src.close()

    def _batch_key(self, c: Candidate) -> tuple[int, int] | None:
        """Which batch a settled file can join (None: it ships alone): small files copied to a local
        tier, grouped by their tier and layout; and files due for release alone (verified before: a
        scan, a release held back, looked at again), released together (`_release_together`: each
        check once for all of them, not a scan of /proc per file)."""
        if c.release_only:  # by tier: a release checks the copy there (`Lanes`: one tier's trouble is its own)
            try:
                return (RELEASE_BATCH[0], id(c.ctx.placed(c.rel).tier))
            except AcqdError:
                return RELEASE_BATCH
        if c.stable.size > SMALL_FILE:
            return None
        placed = c.ctx.placed(c.rel)
        if not placed.tier.local or not isinstance(placed.layout, CopyLayout):
            return None
        return (id(placed.tier), id(placed.layout))

    async def _dispatch(self, c: Candidate, key: tuple[int, int] | None) -> None:
        if key is None:
            await self.ready.put(c)
            return
        batch, size = self._forming.get(key, ([], 0))
        batch.append(c)
        size += c.stable.size
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            self._forming.pop(key, None)
            await self.ready.put(batch)
        else:
            self._forming[key] = (batch, size)

    async def _flush_batches(self) -> None:
        """Hand the batches this round formed to the workers (a lone file takes the one-file path)."""
        forming, self._forming = self._forming, {}
        for batch, _size in forming.values():
            await self.ready.put(batch if len(batch) > 1 else batch[0])

    # -- tail-follow streaming (acqd.layouts.stream) -----------------------------------------------
    def _maybe_follow(self, c: Candidate) -> None:
        """Start streaming a movie that is still being written, where its profile, layout and tier allow
        (at most `concurrent_files` at once; never again for a version whose stream was dropped)."""
        ctx = c.ctx
        if (
            not self._streams_here(ctx, c.rel)
            or c.release_only
            or c.settled
            or c.key in self.follows
            or self._unstreamed.get(c.key) == c.row.id
            or len(self.follows) >= self.limits.concurrent_files
            or self._tg is None
            or self.stopping.is_set()
            or self.halted is not None
        ):
            return
        f = Follow(c)
        self.follows[c.key] = f
        f.task = self._tg.create_task(self._follow(f), name=f"stream-{ctx.index}-{c.rel}")

    def _nudge(self, key: tuple[int, str]) -> None:
        """A file being streamed that has nothing new to stream is looked at within STREAM_WAIT, not at
        the end of its stillness window: its marker file, or its completion, is then seen even when
        the wake that should have said so was lost (a stall seen in CI: all frames streamed, then the
        file never looked at again)."""
        c = self.candidates.get(key)
        now = self.mono()
        if c is not None and not c.settled and key not in self.in_flight and c.check_at > now + STREAM_WAIT:
            c.check_at = now + STREAM_WAIT
            self._schedule(c)

    def _streams_here(self, ctx: RootCtx, rel: str) -> bool:
        """Whether this file would be streamed while it grows (its profile, layout and tier allow it)."""
        reader = ctx.profile.reader
        if not ctx.stream or reader not in STREAMED_READERS or not ctx.profile.is_frames(rel.rpartition("/")[2]):
            return False  # the cheap questions first: every file admitted is asked
        try:
            placed = ctx.placed(rel)
        except AcqdError:  # its placement cannot be built: said when it is shipped (which fails)
            return False
        return streamable(placed.layout, ctx.profile.reader, placed.tier)

    def _drop_follow(self, key: tuple[int, str]) -> None:
        """The file is gone: its stream stops and its temporary is removed (no fallback to announce)."""
        f = self.follows.get(key)
        if f is not None and f.task is not None and not f.taken:
            self._unstreamed[key] = f.c.row.id
            f.task.cancel()

    async def _unkillable(self, fn: Callable[[], T]) -> T:
        """Run a blocking stream step; a cancel waits for the step to end (a stream is used by one
        thread at a time, and is dropped or finished only between steps)."""
        if self.imports is not None:
            await asyncio.shield(self.imports)
        fut = asyncio.get_running_loop().run_in_executor(self.io, fn)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await fut
            raise

    async def _nap(self, f: Follow, seconds: float) -> None:
        await wait_set(f.wake, seconds)
        f.wake.clear()

    async def _follow(self, f: Follow) -> None:
        """Stream one growing movie until the ship takes it over, the file surprises (the stream is
        dropped: the file ships whole when complete), or the daemon stops."""
        c = f.c
        path = os.path.join(c.ctx.root, c.rel)
        try:
            while f.stream is None:
                try:
                    await self._open_stream(f, path)
                except NotYet:
                    await self._nap(f, STREAM_WAIT)
            stream = f.stream
            while not f.taken:  # taken: the ship cancels this task too; the flag holds should a cancel be lost
                reserved = await self.budget.acquire(stream.block_bytes())
                try:
                    n = await self._unkillable(stream.step)
                finally:
                    await self.budget.release(reserved)
                if n:
                    log.debug("streamed %d frame(s) of %r (%d of %d)", n, c.rel, stream.done, stream.frames)
                else:
                    await self._nap(f, STREAM_POLL)
                    self._nudge(c.key)
        except asyncio.CancelledError:
            if not f.taken:
                self.follows.pop(c.key, None)
                await asyncio.shield(self._abort_stream(f, self._teardown(f)))
            raise
        except NotStreamable as exc:
            log.debug("not streaming %r: %s", c.rel, exc)
            await self._stream_dropped(f, str(exc), announce=False)
        except (Surprise, AcqdError, OSError) as exc:
            await self._stream_dropped(f, str(exc))
        except Exception as exc:  # a bug: the file ships whole all the same
            log.exception("unexpected error streaming %r", c.rel)
            await self._stream_dropped(f, f"internal error: {type(exc).__name__}: {exc}")

    async def _open_stream(self, f: Follow, path: str) -> None:
        """Plan the movie (its codec, from the frames written so far), name its copy, and open the
        stream into the copy's temporary. NotYet until its header and a first frame are there."""
        c = f.c
        ctx = c.ctx
        placed = ctx.placed(c.rel)
        base = placed.layout
        if not isinstance(base, FrameLayout):
            raise NotStreamable("not a frame layout")

        def planned(_c: Candidate, layout: FrameLayout, key: str | None, recorded: str | None) -> FilePlan:
            return plan_growing(layout, path, key, recorded)

        layout = await self._plan(c, c.row, base, planned)
        if not streamable(layout, ctx.profile.reader, placed.tier):
            raise NotStreamable(f"planned as {layout.name}")
        dest = stored_name(self._base(ctx), c.row.relpath, c.row.version, layout.suffix)
        check_name(dest)
        if self.guard is not None:  # looked at now: a stream must not start onto an empty mount point
            await self._io(self.guard, placed.tier, True)
        if await self._j(self.journal.copy_owner, placed.tier.name, dest) is not None:
            raise NotStreamable("a copy is already recorded under its name")
        assert isinstance(layout, FrameLayout)

        def opening() -> None:
            f.stream = open_stream(layout, path, placed.tier, dest)

        f.layout, f.dest = layout, dest
        await self._unkillable(opening)
        announced = f.stream.expected is not None if f.stream else False
        frames = f"{f.stream.frames} frames announced" if f.stream and announced else "frames as they come"
        if self.clock() - c.stable.mtime_ns / 1e9 > c.ctx.window:  # last written before its settle window
            log.info("streaming %r during its settle window (last written before acqd saw it; %s)", c.rel, frames)
        else:  # written a moment ago: whether it grows while followed, the end of the stream says
            ago = max(0.0, self.clock() - c.stable.mtime_ns / 1e9)
            log.info("streaming %r, last written %.1f s ago (%s)", c.rel, ago, frames)

    def _teardown(self, f: Follow) -> asyncio.Event:
        """Say, before the follow is gone from `follows`, that its temporary is being removed: a ship
        of the file that starts meanwhile waits for that (`_take_stream`)."""
        done = asyncio.Event()
        if f.stream is None:
            done.set()
        else:
            self._tearing[f.c.key] = done
        return done

    async def _abort_stream(self, f: Follow, done: asyncio.Event | None = None) -> None:
        stream, f.stream = f.stream, None
        try:
            if stream is not None:
                try:
                    await self._io(stream.abort)
                except Exception as exc:  # e.g. the tier gone read-only: the next start removes the temporary
                    log.warning(
                        "could not drop the stream of %r cleanly (its temporary stays until the next start): %s",
                        f.c.rel,
                        exc,
                    )
        finally:
            if done is not None:
                if self._tearing.get(f.c.key) is done:
                    del self._tearing[f.c.key]
                done.set()

    async def _stream_dropped(self, f: Follow, why: str, announce: bool = True) -> None:
        """The stream is dropped (its temporary removed); the file ships whole once it is complete. Said
        in the log, an event, a metric and the journal's audit, once per file version."""
        c = f.c
        done = self._teardown(f)
        if self.follows.get(c.key) is f and not f.taken:
            self.follows.pop(c.key, None)
        _remember(self._unstreamed, c.key, c.row.id)
        await self._abort_stream(f, done)
        if not announce:
            return
        why = f"streaming stopped, the file ships whole when complete: {why}"
        with contextlib.suppress(AcqdError):
            await self._j(self.journal.audit, c.row.id, STREAM_FALLBACK, reason=why)
        self._emit(STREAM_FALLBACK, c.row, reason=why)

    async def _take_stream(self, c: Candidate) -> Follow | None:
        """The ship of a file being streamed takes its stream over: the follow stops between steps. A
        stream being dropped is waited for: its temporary's removal must be over before the ship
        writes a temporary of the same name."""
        tearing = self._tearing.get(c.key)
        if tearing is not None:
            await tearing.wait()
        f = self.follows.pop(c.key, None)
        if f is None:
            return None
        f.taken = True
        if f.stream is not None:
            f.stream.hurry = True  # its step in progress ends after the block it is encoding
        if f.task is not None:
            f.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await f.task
        if f.stream is None:
            return None
        if f.c.row.id != c.row.id:  # another version by now
            await self._stream_dropped(f, "a new version of the file appeared", announce=False)
            return None
        return f

    async def _finish_stream(self, c: Candidate, f: Follow, layout: Layout, dest: str) -> WriteResult | None:
        """Finish a streamed copy: the rest of the frames, the compare with the complete file, the copy's
        checks, the commit. None if the stream is dropped (the caller ships the file whole)."""
        stream = f.stream
        assert stream is not None
        same = (
            f.dest == dest
            and isinstance(f.layout, FrameLayout)
            and isinstance(layout, FrameLayout)
            and codec_label(f.layout.codec) == codec_label(layout.codec)
        )
        if not same:
            await self._stream_dropped(f, f"the plan at completion differs ({layout.name} {dest})")
            return None
        path = os.path.join(c.ctx.root, c.rel)

        def finishing() -> WriteResult:
            src = _Source(path, c.stable)
            try:
                return stream.finish(src, c.stable.size)
            finally:
                src.close()

        try:
            # a cancel (the drain's deadline) waits for the finish: the stream is not aborted under it
            res = await self._unkillable(finishing)
        except SourceChangedError:
            await self._abort_stream(f)
            raise
        except Unfit as exc:  # not what this stream writes (known at completion): shipped whole, quietly
            log.debug("not streaming %r: %s", c.rel, exc)
            await self._stream_dropped(f, str(exc), announce=False)
            return None
        except (Surprise, AcqdError, OSError) as exc:
            await self._stream_dropped(f, str(exc))
            return None
        except Exception as exc:  # a bug: the file ships whole all the same
            log.exception("unexpected error finishing the stream of %r", c.rel)
            await self._stream_dropped(f, f"internal error: {type(exc).__name__}: {exc}")
            return None
        await self._io(stream.close)
        f.stream = None
        early = stream.while_growing  # frames encoded while the file was still short of its size
        await self._j(self.journal.audit, c.row.id, STREAMED, frames=stream.frames, while_growing=early, dest=dest)
        grew = (
            f"{early} of {stream.frames} frames encoded while the file grew"
            if early
            else f"{stream.frames} frames, none encoded while the file grew (it did not grow while followed)"
        )
        self._emit(STREAMED, c.row, reason=grew)
        return res

    # -- ship ---------------------------------------------------------------------------------
    def _memory_for(self, c: Candidate, layout: Layout, tier: Tier | None = None) -> int:
        """Bytes of file data this ship holds at once: two chunks streaming, or two shard blocks
        (the frames read, and zarr's encoded copy) for a frame layout; never more than the file.
        A TIFF bound for a remote tier is also spooled whole first (TIFF writers seek back; /tmp may
        be memory): that spool counts too (the budget caps it; one such ship then runs at a time)."""
        shard = getattr(layout, "shard_bytes", None)
        per = 2 * (shard if shard else self.limits.chunk_bytes)
        blocks = max(1, min(c.stable.size * 2, per))
        if layout.suffix == ".tif" and tier is not None and not tier.local:
            return blocks + c.stable.size  # the spool: never larger than the source (or it goes byte-exact)
        return blocks

    def _dest(self, ctx: RootCtx, row: FileRow, layout: Layout | None = None) -> str:
        """The stored name: collision-free by construction (acqd.naming); its suffix `layout`'s, the one
        the copy is written with (default: the file's placement now; a reload may change it between)."""
        suffix = (layout if layout is not None else ctx.layout_for(row.relpath)).suffix
        return stored_name(self._base(ctx), row.relpath, row.version, suffix)

    def _base(self, ctx: RootCtx) -> str:
        return f"{self.instrument}/{ctx.watch.prefix}" if ctx.watch.prefix else self.instrument

    async def _plan(
        self,
        c: Candidate,
        row: FileRow,
        layout: Layout,
        planned: Callable[[Candidate, FrameLayout, str | None, str | None], FilePlan] | None = None,
    ) -> Layout:
        """A frame layout decides each file's codec, or a byte-exact copy, before the file's name
        (which depends on it) is chosen; the session's choice is kept in the journal. `planned`: how
        the file is looked at (default: the settled file)."""
        if not isinstance(layout, FrameLayout):
            return layout
        key = layout.choice_key(c.ctx.root, row.session)
        recorded = await self._j(self.journal.get_meta, key) if key is not None else None
        plan = await self._io(planned or self._planned, c, layout, key, recorded)
        d = plan.decision
        if d is not None and d.record is not None and key is not None:
            await self._j(self.journal.set_meta, key, d.record)
        if d is not None and d.measured:
            choice = d.entry.choice
            best = next((t for t in choice.trials if t.label == choice.label), None)
            cause = d.entry.cause.split(" ")[0]
            self._emit(
                CODEC_CHOICE,
                row,
                codec=choice.shown,
                layout=layout.name,
                reason=f"{d.character}, {d.entry.cause}: {choice.why}",
                stage={"session": "start", "new": "character"}.get(cause, "drift"),
                source_bytes=best.source_bytes if best else 1,  # the sample: the gauge shows its ratio
                stored_bytes=best.stored_bytes if best else 1,
            )
        return plan.layout

    def _planned(self, c: Candidate, layout: FrameLayout, key: str | None, recorded: str | None) -> FilePlan:
        src = _Source(os.path.join(c.ctx.root, c.rel), c.stable)
        src.at_rest = c.at_rest
        try:
            return layout.plan(src, c.stable.size, key, recorded)
        finally:
            src.close()

    def _write(self, c: Candidate, layout: Layout, tier: Tier, dest: str) -> WriteResult:
        src = _Source(os.path.join(c.ctx.root, c.rel), c.stable)
        src.at_rest = c.at_rest
        try:
            return layout.write(src, c.stable.size, tier, dest)  # type: ignore[arg-type]
        finally:
            src.close()

    def _lane(self, item: Candidate | list[Candidate]) -> str | None:
        """The tier an item's flight talks to (its files' placement; a batch's files share one)."""
        c = item[0] if isinstance(item, list) else item
        try:
            return c.ctx.placed(c.rel).tier.name
        except AcqdError:  # its placement cannot be built: the flight says so, on no tier's account
            return None

    def _lane_room(self) -> None:
        """Parked files whose tier may take one more now, handed back to the workers (already counted
        in flight: `_admitted`), as many as `ready` has room for; the rest at the next landing."""
        if self.stopping.is_set():
            return
        stalled = stalled_tiers(self.limits.stalled_after)
        while self._relane and not self.ready.full():  # parked before a reload: admitted again, placed anew
            self.ready.put_nowait(self._relane.popleft())
        while not self.ready.full() and (got := self.lanes.unpark(stalled)) is not None:
            tier, item = got
            self._admitted[id(item)] = tier
            self.ready.put_nowait(item)

    def relane(self) -> None:
        """A reload may place parked files on another tier: each is admitted again, by its placement now
        (a review: parked behind the tier they no longer go to, and landed on the new one, they left the
        old one counted full for good)."""
        self._relane.extend(self.lanes.drop())
        self._lane_room()

    async def _worker(self) -> None:
        while True:
            item = await self.ready.get()
            if item is None:
                return
            counted = self._admitted.pop(id(item), None)  # unparked: counted on that tier then, landed there
            lane = counted if counted is not None else self._lane(item)
            if counted is None and not self.lanes.admit(lane, item, lane in stalled_tiers(self.limits.stalled_after)):
                continue  # parked: its tier has as many in flight as it may; no worker held
            try:
                await self._flight(item, lane)
            finally:
                self.lanes.land(lane)
                self._lane_room()

    async def _flight(self, item: Candidate | list[Candidate], lane: str | None = None) -> None:
        started = await self.slots.acquire(self.stopping, lane)  # waits while acqd backs off for the camera
        try:
            if not started:  # stopping: the file stays pending in the journal for the next start
                return
            if isinstance(item, list) and all(c.release_only for c in item):
                await self._release_together([(c, c.row) for c in item])
            elif isinstance(item, list):
                await self._ship_batch(item)
            else:
                await self._ship(item)
        except JournalError as exc:
            # a journal write failing in an error path (the state disk full): looked at again once
            # the journal may take writes (`_journal_down`), not at once by a restarted stage (a
            # review: two restarts a second for as long as the disk was full)
            delay = self._journal_down(exc)
            for c in item if isinstance(item, list) else [item]:
                self._after_journal(c, delay)
        except Exception:
            # a flight that ends in an error (a bug, a journal write failing in an error path)
            # leaves its files to the journal's decision once they land: pending ones are shipped
            # again, a verified one released, a released one left alone; none is dropped
            self._rehint.update(c.key for c in (item if isinstance(item, list) else [item]))
            raise
        finally:
            if started:
                await self.slots.release(lane)
            for c in item if isinstance(item, list) else [item]:
                self._land(c)
                if c.key in self._rehint:
                    self._rehint.discard(c.key)
                    self._hint_now(c.ctx.index, os.path.join(c.ctx.root, c.rel))

    def _after_journal(self, c: Candidate, delay: float) -> None:
        """Look at a file whose flight a journal write failed again in `delay` (`--once` waits for it)."""
        key, path = c.key, os.path.join(c.ctx.root, c.rel)
        if key in self._journal_later or self.stopping.is_set():
            return

        def fire() -> None:
            self._journal_later.pop(key, None)
            self._hint_now(key[0], path)

        self._journal_later[key] = asyncio.get_running_loop().call_later(delay, fire)

    async def _ship(self, c: Candidate) -> None:
        ctx = c.ctx
        if c.release_only:
            await self._release(c, c.row)
            return
        follow = await self._take_stream(c)  # before the budget: its last step may be waiting for some
        placed0 = ctx.placed(c.rel)
        # a frame layout's whole-file work (codec trial, encode, verify) runs on every core: a few
        # such files at once, taken before the budget so that files waiting here hold none of it
        heavy = isinstance(placed0.layout, FrameLayout) and follow is None
        tier0 = placed0.tier.name  # its slot and bytes counted on its tier's share (`ByteBudget`)
        if heavy:
            await self.frame_slots.acquire(1, tier0)
        try:
            reserved = await self.budget.acquire(self._memory_for(c, placed0.layout, placed0.tier), tier0)
        except BaseException:
            if heavy:
                await self.frame_slots.release(1, tier0)
            raise
        t0 = self.mono()
        stage = "write"  # where a storage error is counted: the read-back's are the verify's (a review)
        try:
            row = await self._j(self.journal.mark_complete, c.row.id, c.stable, c.reason)
            if c.row.state is not State.COMPLETE:
                self._emit("complete", row, reason=c.reason)
            if placed0.release:
                await self._note_read_under_writer(c, row)
            placed = ctx.placed(row.relpath)
            layout, tier = await self._plan(c, row, placed.layout), placed.tier
            # named after the plan: a file stored byte-exact (incompressible) has the copy layout's name
            dest = stored_name(self._base(ctx), row.relpath, row.version, layout.suffix)
            check_name(dest)
            if self.guard is not None:  # looked at now, not up to CHECK_EVERY ago: a share unmounted a
                # moment ago would take the copy into its empty mount point, on the local disk
                await self._io(self.guard, tier, True)
            owner = await self._j(self.journal.copy_owner, tier.name, dest)
            if owner is not None and owner != row.id:  # names are per (prefix, path, version): another root's
                other = await self._j(self.journal.get, owner)
                raise NameTakenError(
                    f"{tier.url(dest)} is the copy of {os.path.join(other.root, other.relpath)!r} (version "
                    f"{other.version}), from another watch root of this journal with the same destination "
                    f"prefix: {c.rel!r} is not shipped over it. Give each watch root its own `prefix` (quick "
                    "form: its own --instrument), or restore this root's old path"
                )
            await self._shape_free(c, tier, dest)
            # this file's own copy, recorded stored and never verified (a crash came between): adopted if
            # it is a copy of the file as it is now, else kept and the file ships as its next version
            kept = await self._own_unverified(c, row, layout, tier, dest) if owner == row.id else None
            adopted = kept is not None
            streamed = None
            checked_as_written = False  # a streamed copy whose frames were decoded as they were written
            if kept is not None:
                res = kept  # a stream taken for this file is dropped (`finally`)
            else:
                # noted by an earlier attempt whose end is unknown (a crash): an object under the name may
                # be this file's own copy (`_take_over`); then noted for this one
                noted = await self._j(self.journal.begin_publish, row.id, tier.name, dest, self._watched_roots())
                if follow is not None:
                    checked_as_written = follow.stream is not None and follow.stream.verified_as_written
                    streamed = await self._finish_stream(c, follow, layout, dest)
                    follow = None
                try:
                    res = streamed if streamed is not None else await self._io(self._write, c, layout, tier, dest)
                except NameTakenError as exc:
                    res = await self._take_over(row, layout, tier, dest, exc, noted)
                    adopted = True
            meta_of = getattr(layout, "meta_checksum", None)  # a frame layout's metadata (calibration), as written
            if meta_of is not None and res.meta_checksum is None:
                res = replace(res, meta_checksum=await self._io(meta_of, tier, dest))
            if self.guard is not None:
                await self._io(self.guard, tier)
            crash_point("before_journal_commit")
            await self._j(self.journal.record_stored, row.id, tier.name, dest, layout.name, res)
            if streamed is not None and checked_as_written:  # its pages were decoded as they were written
                await self._io(verify_streamed, tier, dest, res)  # and the renamed object is that temporary
                adopted = True  # verified, as an adopted copy is: not decoded a second time
            t_verify = self.mono()
            stage = "verify"
            # what a later change of the copy would change, taken before it is read back: a copy
            # changed before its source's release, its size kept, is not the one verified (recheck)
            stamp = await self._io(partial(tier.stamp, dest, tree=layout.name in TREE_LAYOUTS))
            if not adopted:  # an adopted copy was verified just now; its metadata checksum was taken from
                # it a moment ago (compared by `acqd verify` from now on, not read a second time here)
                await self._io(layout.verify, tier, dest, replace(res, meta_checksum=None))
            t_verify = self.mono() - t_verify
            stage = "write"
            if self.guard is not None:  # the copy just read back lies on the claimed tier, not in the
                # empty mount point of a share unmounted while it was written
                await self._io(self.guard, tier, True)
            crash_point("after_verify")
            row = await self._j(self.journal.record_verified, row.id, tier.name, dest, stamp)
            self.lanes.worked(tier.name)
            if res.mismatch:  # valid, stored faithfully, and not what the profile says the detector writes
                await self._j(self.journal.audit, row.id, PROFILE_MISMATCH, reason=res.mismatch)
            if res.codec_why:  # why this codec (or byte-exact): the session manifest says it per file
                await self._j(self.journal.audit, row.id, CODEC_CHOICE, reason=res.codec_why)
        except SourceChangedError as exc:
            await self._requeue_changed(c, str(exc))
            return
        except _NextVersion as exc:
            log.warning("%s", exc)
            self._emit("conflict", c.row, reason=str(exc))
            await self._requeue_changed(c, str(exc), exc.row)
            return
        except (StoredLargerError, UnsupportedFormatError) as exc:  # nothing published: planned again, byte-exact
            log.info("%r is stored byte-exact: %s", c.rel, exc)
            fresh = await self._j(self.journal.get, c.row.id)
            self._land(c)
            self._schedule(replace(c, row=fresh, check_at=self.mono(), settled=True, reason="stored byte-exact"))
            return
        except ClaimError as exc:
            self.halt(str(exc), exc.reason)
            self._land(c)
            return
        except NameTakenError as exc:
            await self._conflict(c, str(exc))
            return
        except PathBlockedError as exc:  # a file where a folder of its name is needed: never replaced
            await self._conflict(c, f"{exc}; {c.rel!r} is kept on the acquisition disk and retried")
            return
        except FormatError as exc:
            if await self._being_written(c):  # still written (a pause longer than the window): not broken
                self._land(c)
                now = self.mono()
                said = _remember(self._awaited, c.key, c.row.id)  # once per version, then at every look in DEBUG
                log.log(
                    logging.DEBUG if said else logging.INFO,
                    "%r: %s; a process has it open for writing: waiting for it",
                    c.rel,
                    exc,
                )
                self._schedule(replace(c, check_at=now + c.ctx.window, since=now, settled=False, release_only=False))
                return
            if isinstance(exc, UnfinishedFormatError) and not c.at_rest:  # nobody writes it: kept as it is
                log.info("%r: %s; no process has it open for writing: stored byte-exact", c.rel, exc)
                if isinstance(exc, CutShortError):  # stored, never released (`_release`)
                    await self._j(self.journal.audit, c.row.id, "cut-short", reason=str(exc))
                self._land(c)
                self._schedule(replace(c, check_at=self.mono(), settled=True, reason="stored byte-exact", at_rest=True))
                return
            await self._quarantine(c.row, str(exc))
            return
        except SourceReadError as exc:
            if c.row.attempts + 1 >= SOURCE_READ_ATTEMPTS:
                await self._quarantine(c.row, f"cannot read the source: {exc}")
            else:
                await self._retry(c, str(exc), "read")
            return
        except VerifyError as exc:
            await self._retry(c, str(exc), "verify")
            return
        except IllegalTransition as exc:
            await self._moved_on(c, exc)
            return
        except (TransientError, PermanentError) as exc:
            await self._retry(c, str(exc), stage)
            return
        except AcqdError as exc:
            await self._retry(c, str(exc), "internal")
            return
        except Exception as exc:  # a bug: never let one file kill the daemon, nor loop forever on it
            log.exception("unexpected error shipping %r", c.rel)
            why = f"internal error: {type(exc).__name__}: {exc}"
            if c.row.attempts + 1 >= INTERNAL_ATTEMPTS:
                await self._quarantine(c.row, f"{why} (after {INTERNAL_ATTEMPTS} attempts{INTERNAL_GAVE_UP}")
            else:
                await self._retry(c, why, "internal")
            return
        finally:
            await self.budget.release(reserved, tier0)
            if heavy:
                await self.frame_slots.release(1, tier0)
            if follow is not None:  # taken over, not finished (an error before): its temporary dropped
                await self._abort_stream(follow)
        latency = self.mono() - t0
        self._report(self._verified(c, row, tier, dest, res, layout.name, latency, (*res.stages, ("verify", t_verify))))
        if res.mismatch:
            self._emit(PROFILE_MISMATCH, row, tier=tier.name, dest=tier.url(dest), reason=res.mismatch)
        self._dirty.add((ctx.index, row.session))
        if placed.release:
            await self._release(c, row)

    def _read_small(self, c: Candidate) -> bytes:
        """Blocking: the whole content of a small source, with the checks of a streamed read (the file
        is the one that settled, and did not change, grow or shrink while it was read)."""
        size = c.stable.size
        src = _Source(os.path.join(c.ctx.root, c.rel), c.stable)
        try:
            parts: list[bytes] = []
            n = 0
            while block := src.read(max(1, size + 1 - n)):
                parts.append(block)
                n += len(block)
                if n > size:
                    raise SourceChangedError(f"grew while being read (more than {size} bytes)")
            if n != size:
                raise SourceChangedError(f"shrank while being read ({n} of {size} bytes)")
            return b"".join(parts)
        finally:
            src.close()

    async def _ship_batch(self, cs: list[Candidate]) -> None:
        """Ship small files together (the copy layout to a local tier): one journal transaction per
        step (complete, stored, verified) and one durability barrier for all of them (Tier.write_many);
        the claim guard before the writes and before the commit, as for one file; every copy read
        back and its checksum compared. A file the common path does not fit (changed, unreadable,
        its name taken, a copy already recorded, a journal error) takes the one-file path (_ship),
        which knows every case; a copy that does not verify is retried like one file's."""
        alone: list[Candidate] = []
        done: list[tuple[Candidate, FileRow]] = []
        lane = self._lane(cs)
        reserved = await self.budget.acquire(3 * sum(c.stable.size for c in cs), lane)
        try:
            alone, retry, done = await self._batch_steps(cs)
        except ClaimError as exc:
            self.halt(str(exc), exc.reason)
            return
        except JournalError as exc:  # nothing recorded as verified: each file takes the one-file path
            self.repeats.error("journal", str(exc), "journal write failed in a batch: %s", exc)
            alone, retry = cs, []
        except AcqdError as exc:  # the destination (down, full, its claim gone): each file waits and is retried
            alone, retry = [], [(c, str(exc), "write") for c in cs]
        except Exception:  # a bug: the one-file path has its own guard rails for each file
            log.exception("unexpected error shipping a batch of %d small files", len(cs))
            alone, retry = cs, []
        finally:
            await self.budget.release(reserved, lane)
        for c, why, stage in retry:
            await self._retry(c, why, stage)
        await self._release_together(done)  # an error here leaves `alone` to the journal (`_worker`)
        for c in alone:
            if self.halted is not None:
                return
            await self._ship(c)

    async def _release_together(self, due: list[tuple[Candidate, FileRow]]) -> None:
        """Release a batch's verified files with the checks of `_release`, each step for all of them at
        once: one I/O call looks at every file (below its root, no symlink, the identity shipped), one
        scan of /proc asks for writers, one journal read and one I/O call re-check the stored copies,
        a second scan asks again (a writer that opened a file meanwhile is held until it closes it,
        rather than its file moved aside and put back), one journal transaction records the releases
        as begun, one I/O call moves them aside, scans /proc a third time and unlinks, one transaction
        records them released. A file any step finds anything but the plain case for (gone, changed,
        open for writing, its copy in doubt, an error) takes `_release`, which knows every case and
        asks again from the start. Errors are raised once every file has been dealt with."""
        errors: list[BaseException] = []
        slow: list[tuple[Candidate, FileRow]] = []
        # a reload since may keep them now (releases that waited for their manifest: not again)
        due = [x for x in due if x[0].ctx.releases(x[1].relpath)]
        soon = [self._wait_left(c, row) for c, row in due]
        for (c, _row), left in zip(due, soon, strict=True):
            if left > 0:
                self._release_later_for(c, left, WAIT_HOLD)
        due = [x for x, left in zip(due, soon, strict=True) if left <= 0 and not self._unlisted(*x)]
        if len(due) < 2:
            slow = due
            due = []

        def look() -> list[os.stat_result | BaseException | None]:
            out: list[os.stat_result | BaseException | None] = []
            for c, _row in due:
                try:
                    st = lstat_below(c.ctx.root, c.rel)
                    # a movie not filled yet: `_release` keeps it and says why (a header and more: not
                    # opened for the sidecars of a few hundred bytes that come by the thousand)
                    path = os.path.join(c.ctx.root, c.rel)
                    unfilled = st is not None and st.st_size > 1024 and _unfilled_movie(path)
                    out.append(None if unfilled else st)
                except (NotBelow, OSError) as exc:
                    out.append(exc)
            return out

        looks = await self._io(look) if due else []
        plain: list[tuple[Candidate, FileRow, os.stat_result]] = []
        for (c, row), st in zip(due, looks, strict=True):
            if (
                isinstance(st, os.stat_result)
                and stat.S_ISREG(st.st_mode)
                and identity_of(st).same_file_as(row.identity)
                and not (c.ctx.profile.reader == "mib" and c.rel.endswith(MIB_HDR))  # `_needed_beside`
            ):
                plain.append((c, row, st))
            else:
                slow.append((c, row))
        if plain:  # held for a writer since they were shipped (their content compared first), or cut short
            # (kept): each by the one-file path (`_release`)
            uncompared = await self._j(self.journal.held_uncompared, [row.id for _c, row, _st in plain])
            uncompared |= await self._j(self.journal.cut_short, [row.id for _c, row, _st in plain])
            slow += [(c, row) for c, row, _st in plain if row.id in uncompared]
            plain = [x for x in plain if x[1].id not in uncompared]
        if plain:
            writing = await self.writers.writers([(st.st_dev, st.st_ino) for _c, _r, st in plain])
            slow += [(c, row) for c, row, st in plain if (st.st_dev, st.st_ino) in writing]
            plain = [x for x in plain if (x[2].st_dev, x[2].st_ino) not in writing]
        checked = await self._copies_hold([(c, row) for c, row, _st in plain]) if plain else []
        held = [(c, row, st) for (c, row, st), ok in zip(plain, checked, strict=True) if ok]
        slow += [(c, row) for (c, row, _st), ok in zip(plain, checked, strict=True) if not ok]
        if held:
            # the re-check of the copies can take long (`release_verify: full` reads them all back): a
            # writer that opened a file meanwhile and has not written yet leaves its identity as it
            # was, so ask again right before the unlink (`_release` then holds the file)
            late = await self.writers.writers([(st.st_dev, st.st_ino) for _c, _r, st in held])
            slow += [(c, row) for c, row, st in held if (st.st_dev, st.st_ino) in late]
        ready = [(c, row) for c, row, st in held if (st.st_dev, st.st_ino) not in late] if held else []
        ready = [x for x in ready if x[0].ctx.releases(x[1].relpath)]  # a reload during the checks: kept
        begun: list[tuple[Candidate, FileRow]] = []
        if ready:
            paths = [os.path.join(c.ctx.root, c.rel) for c, _row in ready]
            marks = await self._j(
                self.journal.run_group,
                [partial(self.journal.begin_release, row.id, p) for (_c, row), p in zip(ready, paths, strict=True)],
            )
            for x, (ok, _v) in zip(ready, marks, strict=True):
                (begun if ok else slow).append(x)
            for _x in begun:
                crash_point("before_release")

        def refusal(shipped: Identity) -> Callable[[os.stat_result], str | None]:
            def refuse(st: os.stat_result) -> str | None:
                if not identity_of(st).same_file_as(shipped):
                    return "changed since it was shipped (kept; shipped as a new version)"
                return None

            return refuse

        def unlink_all() -> list[str | OSError | None]:
            items = [(c.ctx.root, c.rel, refusal(row.identity)) for c, row in begun]
            # every file moved aside, then one writers' scan for all of them, then the unlinks
            return unlink_many(items, self.writers.writers_now)

        whys = await self._io(unlink_all) if begun else []
        calls: list[Callable[[], Any]] = []
        released: list[tuple[Candidate, int]] = []  # the file, its call's index
        refused: list[tuple[Candidate, FileRow, str]] = []  # the disk said no (read-only, permission)
        for (c, row), why in zip(begun, whys, strict=True):
            path = os.path.join(c.ctx.root, c.rel)
            self._held.pop(c.key, None)
            if why is None:
                released.append((c, len(calls)))
                calls.append(partial(self.journal.mark, row.id, State.RELEASED, None, path=path))
                continue
            if isinstance(why, LeftAside):  # the release stays begun: the next start puts it back
                log.error("release of %r failed half way: %s (put back at the next start)", c.rel, why.strerror)
                continue
            calls.append(partial(self.journal.end_release, row.id))
            if isinstance(why, OSError):
                refused.append((c, row, why.strerror or str(why)))
                continue
            calls.append(partial(self.journal.audit, row.id, "release-skipped", reason=why))
            self._say_blocked(c, row, why)
            if why not in (GONE, BLOCKED):
                self._hint_now(c.ctx.index, path)
        done = await self._j(self.journal.run_group, calls) if calls else []
        for ok, v in done:
            if not ok and not errors:
                errors.append(v)
        outs: list[Outcome] = []
        for c, i in released:
            ok, row = done[i]
            if not ok:  # unlinked, "released" not written: finished at the next start (begin_release)
                continue
            self._dirty.add((c.ctx.index, row.session))
            self.stats.released += 1
            outs.append(self._outcome("released", row, path=os.path.join(c.ctx.root, c.rel), reason=RELEASED_REASON))
            self._released_beside(c)
        self._emit_all(outs)
        for c, row, strerror in refused:
            await self._release_failed(c, row, strerror)
        results = await asyncio.gather(*(self._release(c, row) for c, row in slow), return_exceptions=True)
        errors += [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _needed_beside(self, c: Candidate) -> str | None:
        """The file that needs `c`'s file beside it on the acquisition disk to be read, while it is there
        or not seen yet: a Merlin acquisition's `.hdr` (the `.mib` reader takes the scan's shape and the
        frame count from it: released first, its .mib was stored as a plain stack, and one cut short was
        not told) waits for its `.mib` to be shipped and released, then goes (`_released_beside`). A
        `.hdr` whose `.mib` never comes stays. None: nothing needs it."""
        if c.ctx.profile.reader != "mib" or not c.rel.endswith(MIB_HDR):
            return None
        stem = c.rel[: -len(MIB_HDR)]
        for suffix in MIB_SUFFIXES:
            if await self._io(os.path.lexists, os.path.join(c.ctx.root, stem + suffix)):
                return stem + suffix
        seen = await self._j(
            lambda: [self.journal.lookup(SourceRef(c.ctx.root, stem + suffix)) for suffix in MIB_SUFFIXES]
        )
        return None if any(r is not None for r in seen) else stem + MIB_SUFFIXES[0]

    def _released_beside(self, c: Candidate) -> None:
        """A `.mib` released: its `.hdr`, kept for it (`_needed_beside`), is looked at again to go too."""
        if c.ctx.profile.reader == "mib" and c.rel.endswith(MIB_SUFFIXES):
            hdr = c.rel[: -len(MIB_SUFFIXES[0])] + MIB_HDR
            self._hint_now(c.ctx.index, os.path.join(c.ctx.root, hdr))

    async def _release_failed(self, c: Candidate, row: FileRow, why: str) -> None:
        """The acquisition disk refused a release (mounted read-only, no permission): the file is kept
        and tried again at the next scan. It was a WARNING at every scan and nothing else: `run --once`
        said 0 released and exited 0, `acqd status` said nothing, while the disk the release was to
        free filled. Now said once per version and reason (WARNING, audit `release-failed`, a
        `file.release_failed` event, `acqd_files_total{outcome="release_failed"}`), counted in the
        run's summary, and `acqd status` lists the files verified whose release failed."""
        self.stats.release_failed += 1
        if _remember(self._refused, c.key, (row.id, why)):
            log.debug("could not release %r: %s (kept; retried at the next scan)", c.rel, why)
            return
        reason = f"could not remove it from the acquisition disk: {why} (kept; retried at the next scan)"
        try:
            await self._j(self.journal.audit, row.id, "release-failed", reason=why)
        except JournalError as exc:
            log.warning("could not record the failed release of %r: %s", c.rel, exc)
        self._emit("release_failed", row, reason=reason)

    async def _copies_hold(self, items: list[tuple[Candidate, FileRow]]) -> list[bool]:
        """`_check_copy` for a batch just verified (one journal read, one I/O call): True where the
        stored copy is there as verified; False where anything is in doubt (`_release` asks again)."""
        copies = await self._j(lambda: [self.journal.copies_of(row.id) for _c, row in items])
        full = self.limits.release_verify == "full"
        jobs: list[tuple[int, Tier, Layout, Any, bool, str]] = []
        for i, ((c, row), cps) in enumerate(zip(items, copies, strict=True)):
            found = _verified_copy(c.ctx.placed(row.relpath), cps, self.tiers)
            if found is not None:  # verified a moment ago by this flight, or (release only) earlier
                jobs.append((i, found[2], found[1], found[0], not c.release_only, os.path.join(c.ctx.root, c.rel)))

        def check_all() -> list[CopyCheck | None]:
            out: list[CopyCheck | None] = []
            for _i, tier, layout, cp, just, source in jobs:
                try:
                    out.append(self._check_apart(tier, layout, cp, full, just, source))
                except AcqdError:
                    out.append(None)
            return out

        results = await self._io(check_all) if jobs else []
        holds = [False] * len(items)
        pins = []
        for (i, _tier, _layout, cp, _just, _source), res in zip(jobs, results, strict=True):
            if res is not None and res.problem is None:
                holds[i] = True
                if res.pin is not None:
                    pins.append(partial(self.journal.pin_stored_checksum, cp.id, res.pin))
                if res.restamp is not None:
                    pins.append(partial(self.journal.pin_stamp, cp.id, res.restamp))
        if pins:
            await self._j(self.journal.run_group, pins)
        return holds

    async def _batch_steps(
        self, cs: list[Candidate]
    ) -> tuple[list[Candidate], list[tuple[Candidate, str, str]], list[tuple[Candidate, FileRow]]]:
        """The steps of `_ship_batch`: (files for the one-file path, files to retry with why and at
        which stage, verified files whose release is due)."""
        placed = cs[0].ctx.placed(cs[0].rel)
        tier, layout = placed.tier, placed.layout
        if not isinstance(layout, CopyLayout):  # a reload placed them otherwise since: each file alone
            return cs, [], []
        t0 = self.mono()
        alone: list[Candidate] = []
        if self.guard is not None:  # looked at now (see _ship)
            await self._io(self.guard, tier, True)
        marked = await self._j(self.journal.mark_complete_many, [(c.row.id, c.stable, c.reason) for c in cs])
        live: list[tuple[Candidate, FileRow, str]] = []
        completed: list[Outcome] = []
        for c, (ok, row) in zip(cs, marked, strict=True):
            if not ok:
                alone.append(c)
                continue
            if c.row.state is not State.COMPLETE:
                completed.append(self._outcome("complete", row, reason=c.reason))
            c.row = row  # the one-file path, if it comes to that, knows it is complete
            dest = self._dest(c.ctx, row, layout)  # the batch's layout: a reload meanwhile changes not its names
            try:
                check_name(dest)
            except AcqdError:
                alone.append(c)
                continue
            live.append((c, row, dest))
        self._emit_all(completed)
        owners = await self._j(self.journal.copy_owners, tier.name, [d for _c, _r, d in live])
        alone += [c for c, _r, d in live if d in owners]  # a copy recorded: the one-file path decides
        live = [x for x in live if x[2] not in owners]
        if live:  # whose objects these are, if a crash comes between their publication and their record
            noted = await self._j(self.journal.publishing_owners, tier.name, [d for _c, _r, d in live])
            alone += [c for c, _r, d in live if d in noted]  # an earlier attempt's end unknown: the one-file path
            live = [x for x in live if x[2] not in noted]
        if live:
            begun = await self._j(
                self.journal.begin_publish_many, tier.name, [(r.id, d) for _c, r, d in live], self._watched_roots()
            )
            alone += [c for (c, _r, _d), ok in zip(live, begun, strict=True) if not ok]
            live = [x for x, ok in zip(live, begun, strict=True) if ok]

        freed = [(c, r) for c, r, _d in live if c.ctx.releases(c.rel)]
        if freed:  # read while a process has them open for writing: compared before any release (one scan)
            writing = await self.writers.writers([(c.stable.device, c.stable.inode) for c, _r in freed])
            under = [r for c, r in freed if (c.stable.device, c.stable.inode) in writing]
            if under:
                why = "open for writing while it was read: compared before release"
                await self._j(
                    self.journal.run_group,
                    [partial(self.journal.audit, r.id, "read-while-written", reason=why) for r in under],
                )

        def write() -> tuple[list[tuple[Candidate, FileRow, str, WriteResult]], list[Candidate], float]:
            """Blocking: read and encode each file, then publish them all behind one barrier."""
            t = time.perf_counter()
            ready: list[tuple[Candidate, FileRow, str, WriteResult, bytes]] = []
            failed: list[Candidate] = []
            for c, row, dest in live:
                try:
                    stored, res = layout.encode_whole(self._read_small(c))
                except Exception:  # changed, unreadable, ...: the one-file path says what and why
                    failed.append(c)
                    continue
                ready.append((c, row, dest, res, stored))
            t_read = time.perf_counter() - t
            written = tier.write_many([(dest, stored) for _c, _r, dest, _res, stored in ready])
            out = []
            for (c, row, dest, res, _stored), n in zip(ready, written, strict=True):
                if isinstance(n, int):
                    out.append((c, row, dest, res))
                else:
                    failed.append(c)
            return out, failed, t_read

        t_write = self.mono()
        wrote, failed, t_read = await self._io(write)
        t_write = self.mono() - t_write
        alone += failed
        if failed:  # not published by this batch (a name taken, a source changed): their notes go
            gone = {c.key for c in failed}
            await self._j(self.journal.end_publish_many, tier.name, [(r.id, d) for c, r, d in live if c.key in gone])
        if not wrote:
            return alone, [], []
        if self.guard is not None:
            await self._io(self.guard, tier)
        crash_point("before_journal_commit")
        stored_ok = await self._j(
            self.journal.record_stored_many,
            tier.name,
            layout.name,
            [(row.id, dest, res) for _c, row, dest, res in wrote],
        )
        recorded = []
        for w, (ok, _v) in zip(wrote, stored_ok, strict=True):
            if ok:
                recorded.append(w)
            else:  # published, not recorded: the one-file path adopts it (it decodes to the content)
                alone.append(w[0])
        t_verify = self.mono()
        dests = [dest for _c, _r, dest, _res in recorded]

        def stamped_then_read() -> tuple[list[str | None], list[bytes | AcqdError]]:
            stamps: list[str | None] = []
            for d in dests:  # before the read-back (see _ship); one that cannot be taken: the size check
                try:
                    stamps.append(tier.stamp(d, tree=False))
                except AcqdError:
                    stamps.append(None)
            return stamps, tier.read_many(dests)

        stamps, back = await self._io(stamped_then_read)
        stamp_of = dict(zip(dests, stamps, strict=True))
        good: list[tuple[Candidate, FileRow, str, WriteResult]] = []
        retry: list[tuple[Candidate, str, str]] = []
        for (c, row, dest, res), data in zip(recorded, back, strict=True):
            try:
                if isinstance(data, AcqdError):
                    raise data
                layout.verify_whole(tier, dest, data, res)
            except VerifyError as exc:
                retry.append((c, str(exc), "verify"))
                continue
            except AcqdError as exc:
                retry.append((c, str(exc), "write"))
                continue
            good.append((c, row, dest, res))
        t_verify = self.mono() - t_verify
        if good and self.guard is not None:  # the copies read back lie on the claimed tier (see _ship)
            await self._io(self.guard, tier, True)
        crash_point("after_verify")
        verified = await self._j(
            self.journal.record_verified_many,
            tier.name,
            [(row.id, dest) for _c, row, dest, _res in good],
            [stamp_of[dest] for _c, _row, dest, _res in good],
        )
        if any(ok for ok, _row in verified):
            self.lanes.worked(tier.name)
        latency = self.mono() - t0
        n = max(1, len(good))
        stages = (("read", t_read / n), ("write", max(0.0, t_write - t_read) / n), ("verify", t_verify / n))
        done: list[tuple[Candidate, FileRow]] = []
        outs: list[Outcome] = []
        for (c, _row, dest, res), (ok, row) in zip(good, verified, strict=True):
            if not ok:
                alone.append(c)
                continue
            outs.append(self._verified(c, row, tier, dest, res, layout.name, latency, stages))
            self._dirty.add((c.ctx.index, row.session))
            if c.ctx.placed(row.relpath).release:
                done.append((c, row))
        self._emit_all(outs)
        return alone, retry, done

    async def _own_unverified(
        self, c: Candidate, row: FileRow, layout: Layout, tier: Tier, dest: str
    ) -> WriteResult | None:
        """This file's own copy under `dest`, recorded stored and never verified: a crash came between
        its record and its verification. Never removed unread: the file may have changed since
        (rewritten, or deleted by its owner and written again under its name), and the copy may then be
        the only one of the earlier content. Read back against what was recorded of it, and the file
        hashed. The file still the content recorded: the copy is adopted if it reads back as recorded
        (returned: recorded verified, nothing written again), else written again (None, as when no
        object is there any more). The file changed: the copy is kept (verified, as the superseded
        version it is, if it read back as recorded) and the file ships as its next version
        (`_NextVersion`)."""
        copy = next(
            (x for x in await self._j(self.journal.copies_of, row.id) if (x.tier, x.dest) == (tier.name, dest)), None
        )
        tree = layout.suffix == ".zarr"
        if copy is None or await self._io(tier.stored_size, dest) is None:  # nothing there: written afresh
            if tree:  # a partial tree of its own, never another file's objects
                await self._io(self._none_foreign, tier, dest)
            await self._io(partial(tier.remove_any_if_there, tree=tree), dest)
            return None
        recorded = copy.as_result()
        reader = reading_layout(copy.layout, copy.codec, layout)
        try:
            await self._io(reader.verify, tier, dest, recorded)  # its data and its metadata as written
            matched, why = True, "the file changed since it was stored"
        except TransientError:
            raise
        except AcqdError as exc:
            matched, why = False, f"it does not read back as recorded ({exc})"
        digest = await self._io(self._source_digest_or_raise, reader, os.path.join(c.ctx.root, c.rel), c.stable)
        if digest is not None:
            same = digest == recorded.source_checksum
        else:  # no checksum of its bytes to compare (a compressed TIFF): the same only if its identity
            # is the one it had when it was stored (no change seen since: the row still `stored`)
            same = c.row.state is State.STORED and c.row.identity.same_content_as(c.stable)
            if matched and not same:
                why = "the file is not as it was when it was stored (its content cannot be compared)"
        if same:  # the file is the content that was stored
            if matched:
                await self._j(self.journal.audit, row.id, "adopted", tier=tier.name, dest=dest)
                log.info(
                    "adopted %s: the copy of %r an attempt cut short (a crash, a stop, an outage) stored reads back as "
                    "the file: verified",
                    dest,
                    c.rel,
                )
                return recorded
            # a damaged copy of what the file still holds: nothing is lost by writing it again
            log.warning("%s: %s; written again from %r", tier.url(dest), why, c.rel)
            await self._j(self.journal.audit, row.id, "damaged-rewritten", tier=tier.name, dest=dest, reason=why)
            if tree:
                await self._io(self._none_foreign, tier, dest)
            await self._io(partial(tier.remove_any_if_there, tree=tree), dest)
            return None
        nxt = await self._j(self.journal.keep_stored, row.id, tier.name, dest, matched, why)
        kept = f"verified, version {row.version}: the earlier content" if matched else "not verified"
        said = (
            f"{tier.url(dest)}, the copy of {row.relpath!r} an attempt cut short stored and never verified, is not a "
            f"copy of the file as it is now: {why}. Kept as it is ({kept}); {row.relpath!r} ships as version "
            f"{nxt.version}"
        )
        raise _NextVersion(said, nxt)

    async def _take_over(
        self, row: FileRow, layout: Layout, tier: Tier, dest: str, exc: NameTakenError, noted: bool
    ) -> WriteResult:
        """An object the journal does not record is under this file's name: a crash came between
        publishing a copy and recording it, or somebody else put it there. It is adopted only if
        it decodes to exactly this file's content; replaced if an earlier attempt of this file, cut
        short by a crash, noted it was publishing it (`noted`: its copy of the file's earlier content);
        otherwise it is left alone (NameTakenError)."""
        expected = exc.result
        if not isinstance(expected, WriteResult):
            raise exc
        try:
            size = await self._io(tier.stored_size, dest)
            if size is None:  # gone again since: write it afresh on the retry
                raise TransientError(f"{tier.url(dest)} vanished while it was looked at")
            expected = dataclasses.replace(expected, stored_bytes=size)
            await self._io(layout.verify, tier, dest, expected)
        except TransientError:
            raise
        except AcqdError as why:
            if (
                not tier.atomic_trees
                and await self._j(self.journal.publishing_owner, tier.name, dest) == row.id
                and await self._io(tier.is_partial_tree, dest)
            ):  # this file's own copy, cut short by a crash
                await self._io(partial(tier.remove_any, tree=True), dest)  # a partial tree, just checked
                await self._j(self.journal.audit, row.id, "partial-removed", tier=tier.name, dest=dest)
                raise TransientError(
                    f"{tier.url(dest)}: removed a partial copy an earlier attempt left (cut short: a crash, or a "
                    "server that failed part way); writing again"
                ) from None
            if noted:
                # an earlier attempt of this file noted publishing it, and did not record it: its copy of
                # the file's earlier content (a crash between publication and record, the file changed
                # since: appended, its header rewritten), whose only copy it may be; or somebody else's
                # object put there after an attempt that failed before its rename; or, on a tier that
                # folds case, another file's copy. Never removed (two adversarial runs: first taken for
                # somebody else's, the file never shipped; then removed, and with it an only copy or a
                # foreign object): kept as it is, and the file ships as its next version
                nxt = await self._j(self.journal.keep_unrecorded, row.id, tier.name, dest, str(why))
                said = (
                    f"{tier.url(dest)} holds an object this journal has no record of, published under this file's "
                    f"name by an attempt that did not finish, or put there since; not this file's content now "
                    f"({why}): kept as it is; {row.relpath!r} ships as version {nxt.version}"
                )
                raise _NextVersion(said, nxt) from None
            await self._j(self.journal.end_publish_many, tier.name, [(row.id, dest)])  # nothing published
            raise NameTakenError(
                f"{tier.url(dest)} is in the way: an object acqd has no record of, and not a copy of "
                f"{row.relpath!r} ({why}); it is not replaced: move it away, the file is kept and retried"
            ) from None
        await self._j(self.journal.audit, row.id, "adopted", tier=tier.name, dest=dest)
        log.info(
            "adopted %s: already a verified copy of %r (written by an earlier attempt whose record was lost: a"
            " crash, or a journal write that failed)",
            dest,
            row.relpath,
        )
        return expected

    async def _shape_free(self, c: Candidate, tier: Tier, dest: str) -> None:
        """NameTakenError if a copy the journal records on `tier` takes the shape `dest` needs: a folder
        of copies where the file's copy would go (the name was a folder, now it is a file), or a copy
        under a folder name of `dest` (the name was a file, now it is a folder). Nothing is written:
        a file and a folder cannot share a name on a filesystem; an S3 bucket keeps keys below an
        object, but a key where a prefix of keys is fails on servers that keep objects in folders
        (SeaweedFS, MinIO: 'object not found', for ever); no copy is moved or replaced."""
        found = await self._j(self.journal.copy_in_the_way, tier.name, dest, tier.folders)
        if found is None:
            return
        other_dest, other_id = found
        other = await self._j(self.journal.get, other_id)
        who = other.relpath if other.root == c.ctx.root else os.path.join(other.root, other.relpath)  # another root
        if other_dest.startswith(dest + "/"):
            head = c.rel
            said = (
                f"{tier.url(dest)} is a folder of stored copies ({who!r} among them): the file {c.rel!r} cannot "
                "be stored under the same name"
            )
        else:
            parts = c.rel.split("/")  # the folder of c.rel whose name is other_dest's (names keep their folders)
            head = "/".join(parts[: len(parts) - (dest.count("/") - other_dest.count("/"))])
            said = (
                f"{tier.url(other_dest)} is the stored copy of the file {who!r}: the folder "
                f"{head!r} cannot be stored under the same name, so {c.rel!r} cannot be stored"
            )
        raise NameTakenError(
            f"{said}. Nothing stored is moved or replaced; {c.rel!r} is kept on the acquisition disk and retried. "
            f"Rename {head!r} on the acquisition disk (for example to {head + '_2'!r}) to have it shipped"
        )

    async def _conflict(self, c: Candidate, why: str) -> None:
        """The file's name is taken by an object that is not its copy: never overwritten; the file
        stays (never released), the operator is told (log, event, metric) and it is retried slowly.
        Said once (an ERROR line, an event) until what is said changes; every retry counts."""
        if _remember(self._conflicts, c.key, why):
            log.debug("%s (again)", why)
        else:
            log.error("%s", why)
            self._emit("conflict", c.row, reason=why)
        await self._retry(c, why, "conflict")

    def halt(self, why: str, what: str) -> None:
        """Stop shipping for good: this daemon no longer owns its destination or its journal."""
        if self.halted is None:
            self.halted = why
            log.error("stopped shipping: %s", why)
            try:
                self.reporter.outcome(
                    Outcome(kind="halted", relpath="", session="", detector="", reason=why, stage=what)
                )
            except Exception:
                log.exception("reporter failed on halted")
            self.outcome_code = 78
        self.stop()

    async def _release(self, c: Candidate, row: FileRow) -> None:
        """Delete the acquisition-disk copy, only when all of these hold (RELIABILITY.md, "Safe release"):
        it is reached below the watch root without a symlink and is still the file that was shipped
        (device, inode, size, mtime, ctime); no process has it open for writing; the stored copy is
        still there as verified. Anything else keeps the file."""
        ctx = c.ctx
        key = c.key
        path = os.path.join(ctx.root, c.rel)
        if not ctx.releases(row.relpath):  # a reload since it was found due: its placement keeps it now
            return
        if row.id in await self._j(self.journal.cut_short, [row.id]):
            if not _remember(self._cut_short_said, c.key, row.id):
                short = (
                    "kept on the acquisition disk: not whole by its own format (cut short, a frame half there, "
                    "or a writer acqd cannot see still adds to it); its copy holds every byte it has. Remove it by "
                    "hand once checked; if it grows, it ships again as a new version"
                )
                log.warning("not releasing %r: %s", c.rel, short)
                await self._j(self.journal.audit, row.id, "release-skipped", reason=short)
            self._held.pop(key, None)
            return
        if await self._io(_unfilled_movie, path):
            if not _remember(self._unfilled_said, key, row.id):
                log.warning("not releasing %r: %s", c.rel, UNFILLED_KEPT)
                await self._j(self.journal.audit, row.id, "release-skipped", reason=UNFILLED_KEPT)
            self._held.pop(key, None)
            return
        mib = await self._needed_beside(c)
        if mib is not None:
            if not _remember(self._beside_said, key, row.id):
                waits = (
                    f"kept on the acquisition disk until {mib!r} is shipped and released: its reader needs it beside it"
                )
                log.info("not releasing %r yet: %s", c.rel, waits)
                await self._j(self.journal.audit, row.id, "release-skipped", reason=waits)
            self._held.pop(key, None)
            return
        left = self._wait_left(c, row)
        if left > 0:
            self._release_later_for(c, left, WAIT_HOLD)
            return

        def refuse(st: os.stat_result) -> str | None:
            if not identity_of(st).same_file_as(row.identity):
                return "changed since it was shipped (kept; shipped as a new version)"
            return None

        try:
            st = await self._io(lstat_below, ctx.root, c.rel)
        except NotBelow as exc:
            await self._j(self.journal.audit, row.id, "release-skipped", reason=f"{exc} (kept)")
            log.warning("not releasing %r: %s (kept)", c.rel, exc)
            return
        except OSError as exc:
            await self._release_failed(c, row, exc.strerror or str(exc))
            return
        if st is None:
            self._held.pop(key, None)
            await self._j(self.journal.audit, row.id, "release-skipped", reason=GONE)
            return
        why = "no longer a regular file (kept)" if not stat.S_ISREG(st.st_mode) else refuse(st)
        if why is not None:
            await self._j(self.journal.audit, row.id, "release-skipped", reason=why)
            self._hint_now(ctx.index, path)  # the journal decides: a new version
            return
        writing = await self.writers.writers([(st.st_dev, st.st_ino)])
        if writing:
            # verified a moment ago: remember the tier's checksum for the later checks, before the hold
            # is reported (the sooner after the verification, the smaller the window for a swap)
            if not c.release_only:
                with contextlib.suppress(AcqdError):
                    await self._check_copy(ctx, row, just_verified=True, full=False)
            pids = sorted(next(iter(writing.values())))
            if self._held.get(key) != row.id:  # once per version, not at every look
                self._held[key] = row.id
                why = f"open for writing by pid {', '.join(map(str, pids[:5]))}: kept until it is closed"
                await self._j(self.journal.audit, row.id, "release-held", reason=why)
                self._emit("held", row, reason=why)
            self._release_later_for(c, why=WAIT_WRITER)
            return
        if self._unlisted(c, row):
            return
        # before the copy's re-check: a change of the file during that re-check is the unlink's to see
        uncompared = await self._j(self.journal.held_uncompared, [row.id])  # held for a writer since shipped
        if row.id in uncompared and not await self._still_shipped(c, row, st):
            return
        if not await self._copy_still_there(c, row):
            return
        # The re-check of the copy can take long (`release_verify: full` reads it all back): a writer
        # that opened the file meanwhile and has not written yet leaves its identity as it was, so
        # ask again right before the unlink.
        late = await self.writers.writers([(st.st_dev, st.st_ino)])
        if late:
            pids = sorted(next(iter(late.values())))
            self._held[key] = row.id
            why = (
                f"opened for writing by pid {', '.join(map(str, pids[:5]))} while its stored copy was "
                "re-checked: kept until it is closed"
            )
            await self._j(self.journal.audit, row.id, "release-held", reason=why)
            self._emit("held", row, reason=why)
            self._release_later_for(c, why=WAIT_WRITER)
            return
        if not ctx.releases(row.relpath):  # a reload during the checks: its placement keeps it now
            return
        try:
            await self._j(self.journal.begin_release, row.id, path)
        except IllegalTransition as exc:  # the row moved on since it was looked at (verify found its copy bad)
            self._held.pop(key, None)
            log.info("not releasing %r: %s (its row changed: looked at again)", c.rel, exc)
            self._rehint.add(c.key)
            return
        crash_point("before_release")
        try:
            why = await self._io(unlink_below, ctx.root, c.rel, refuse, self.writers.writers_now)
        except LeftAside as exc:  # the release stays begun: the next start puts it back
            self._held.pop(key, None)
            log.error("release of %r failed half way: %s (put back at the next start)", c.rel, exc.strerror)
            return
        except OSError as exc:
            await self._j(self.journal.end_release, row.id)
            await self._release_failed(c, row, exc.strerror or str(exc))
            return
        if why is not None:
            await self._j(self.journal.end_release, row.id)
        self._held.pop(key, None)
        if why is None:
            row = await self._j(self.journal.mark, row.id, State.RELEASED, None, path=path)
            self._dirty.add((ctx.index, row.session))
            self.stats.released += 1
            self._emit("released", row, path=path, reason=RELEASED_REASON)
            self._released_beside(c)
        elif why in (GONE, BLOCKED):
            await self._j(self.journal.audit, row.id, "release-skipped", reason=why)
            self._say_blocked(c, row, why)
        else:
            await self._j(self.journal.audit, row.id, "release-skipped", reason=why)
            self._hint_now(ctx.index, path)

    def _say_blocked(self, c: Candidate, row: FileRow, why: str) -> None:
        """A release kept because the hidden name it moves the file to is another file's: said once per
        file version in the log (it was only in the audit: a file verified and never released, nothing
        said, a stranger's review)."""
        if why != BLOCKED or _remember(self._blocked_said, c.key, row.id):
            return
        hidden = release_aside(c.stable.inode)
        log.warning(
            "not releasing %r: the hidden name a release moves it to (%r, beside it) is another file, not "
            "acqd's; the file stays on the acquisition disk, its copy verified. Rename or remove that other "
            "file to let the release go on",
            c.rel,
            hidden,
        )

    async def _note_read_under_writer(self, c: Candidate, row: FileRow) -> None:
        """A file read while a process has it open for writing (completed by its stillness, a stream):
        noted (audit 'read-while-written') before it is read, so that its content is
        compared with its copy before any release (`_still_shipped`), even if the writer is gone by
        the release's own look (a write through a mapping, then the unmap, while the copy is made)."""
        writing = await self.writers.writers([(c.stable.device, c.stable.inode)])
        if writing:
            pids = sorted(next(iter(writing.values())))
            why = f"open for writing by pid {', '.join(map(str, pids[:5]))} while it was read: compared before release"
            await self._j(self.journal.audit, row.id, "read-while-written", reason=why)

    def held_for_writers(self) -> list[tuple[str, int]]:
        """The files (path below their root, journal row) whose release waits for a writer now: kept,
        their copy of what they held when read (a `run --once` names them)."""
        by_index = {c.index: c for c in self.roots}
        return [(os.path.join(by_index[i].root, rel), rid) for (i, rel), rid in self._held.items() if i in by_index]

    async def _still_shipped(self, c: Candidate, row: FileRow, st: os.stat_result) -> bool:
        """A file whose release was held for a writer after it was shipped: the writer gone, is it still
        the content shipped? Its size and times say nothing of a write through a shared mapping into a
        page already dirty (the kernel moves them at the first write to a clean page only: a stranger's
        run lost a camera's final header that way), so it is read and hashed as it was shipped and
        compared with the verified copy's checksum. The same: noted (`content-compared`), released.
        Changed, or not to be told (a compressed TIFF read as frames, whose checksum covers its frames,
        not its bytes; the file changing or gone while read): kept, and shipped as a new version (its
        copy of the file as it is now); never kept for ever, nor read again and again."""
        found = _verified_copy(c.ctx.placed(row.relpath), await self._j(self.journal.copies_of, row.id), self.tiers)
        if found is None:
            return False  # no verified copy to compare with: a release needs one anyway
        copy, reader, _tier = found
        path = os.path.join(c.ctx.root, c.rel)
        try:
            digest = await self._io(self._source_digest_or_raise, reader, path, identity_of(st))
        except (AcqdError, OSError) as exc:
            digest, unread = None, f"could not be read to compare with its copy ({exc})"
        else:
            unread = "cannot be compared with its copy byte for byte (its checksum covers its frames)"
        if digest == copy.checksum:
            await self._j(self.journal.audit, row.id, "content-compared", reason="the content shipped")
            return True
        if digest is None:
            why = f"held for a writer after it was shipped, and {unread}: kept; shipped again as a new version"
        else:
            why = (
                "changed after it was shipped, its size and times as they were (a write through a shared memory "
                "mapping): kept; shipped as a new version"
            )
        log.warning("not releasing %r: %s", c.rel, why)
        await self._j(self.journal.audit, row.id, "release-skipped", reason=why)
        self._held.pop(c.key, None)
        obs = Observation(SourceRef(c.ctx.root, c.rel), identity_of(st), c.ctx.profile.name, True, changed=True)
        [(_action, nrow)] = await self._j(self.journal.observe_many, [obs])
        self._emit("seen", nrow)
        self._rehint.add(c.key)  # admitted again when this flight lands: the new version ships
        return False

    async def _came_back(self, row: FileRow, now: Identity) -> tuple[bool, float | None]:
        """Of the file of `row` (a new version): is it its previous version with more after it (the same
        file, device and inode, larger); and the seconds since its previous version was released, if
        that was less than REAPPEARED_SPAN ago (a writer that closes the file between parts, whose part
        after a pause longer than the window found the file gone and started it again)."""
        versions = await self._j(self.journal.find_versions, row.relpath, row.root)
        prev = next((v for v in versions if v.version == row.version - 1), None)
        if prev is None:
            return False, None
        appended = (
            prev.identity.inode == now.inode and prev.identity.same_device_as(now) and now.size > prev.identity.size
        )
        gap = time.time() - prev.updated
        return appended, gap if prev.state is State.RELEASED and 0 <= gap < REAPPEARED_SPAN else None

    def _wait_left(self, c: Candidate, row: FileRow) -> float:
        """Seconds before the file of `row`, completed by its format's proof, has been still for its
        settle window, or one stored as it is or seen growing part by part, for UNFINISHED_HOLD or
        three windows (0: it may be released). A writer on this PC that closes the file and opens it
        again (to write the header's final values, or to fill a file it pre-allocated) must find it
        there. The moment it was proven is kept per file version (`_format_proven`): the look after
        the wait comes as a new candidate, which does not say how the file was completed."""
        key = c.key
        proved = c.reason == FORMAT_PROOF or c.proof_grace  # proved, and still for PROOF_GRACE: the same wait
        if proved or c.at_rest or c.grew:
            # a file whose format said more was to come, stored as it is (no writer left), or one seen
            # growing part by part and completed by its stillness alone (a TIFF stack a writer appends
            # a plane to, closing it between planes): a writer that pauses longer than the window would
            # append to a file gone, making a fragment of its own (strangers' runs); it is kept a while
            # longer
            hold = max(UNFINISHED_HOLD, 3 * c.ctx.window) if c.at_rest or not proved else c.ctx.window
            prev = self._format_proven.get(key)
            if prev is None or prev[0] != row.id:
                _remember(self._format_proven, key, (row.id, c.since + hold))
        prev = self._format_proven.get(key)
        if prev is None or prev[0] != row.id:
            return 0.0
        left = prev[1] - self.mono()
        if left <= 0:
            self._format_proven.pop(key, None)
            return 0.0
        return left

    async def _release_listed(self, due: list[tuple[Candidate, FileRow]]) -> None:
        """The releases that waited for their session manifest, handed to the ship workers as one
        batch of release-only files (in flight like any, every check again from a fresh row). A file
        in another flight is left to it; one waiting in the tracker (a scan found it) joins the batch."""
        rows = await self._j(lambda: [self.journal.get(row.id) for _c, row in due])
        batch = []
        for (c, _old), row in zip(due, rows, strict=True):
            if c.key in self.in_flight:  # in another flight's hands: asked about again when it lands
                self._rehint.add(c.key)
                continue
            if row is None or row.state is not State.VERIFIED:
                continue  # moved on
            self.candidates.pop(c.key, None)  # a look of its own waiting in the tracker (a scan): this batch's
            timer = self._release_later.pop(c.key, None)
            self._release_why.pop(c.key, None)  # with its timer (else kept for good in a long run)
            if timer is not None:
                timer.cancel()
            mine = replace(c, row=row, release_only=True, settled=True)
            self.in_flight[c.key] = mine
            batch.append(mine)
        by_lane: dict[str | None, list[Candidate]] = {}  # one batch per tier: one tier's trouble is its own
        for c in batch:
            by_lane.setdefault(self._lane(c), []).append(c)
        for part in by_lane.values():
            item: Candidate | list[Candidate] = part if len(part) > 1 else part[0]
            try:
                self.ready.put_nowait(item)
            except asyncio.QueueFull:  # the workers are busy: queued as soon as there is room, still together
                if self._tg is None:
                    for c in part:
                        self._land(c)
                        self._release_later_for(c, 0.5)
                else:
                    self._tg.create_task(self._queue_when_room(item, part), name="releases-listed")

    async def _queue_when_room(self, item: Candidate | list[Candidate], batch: list[Candidate]) -> None:
        await self.ready.put(item)
        if self.stopping.is_set():  # put after the workers' stop marks maybe: not theirs any more
            for c in batch:
                self._land(c)

    def _unlisted(self, c: Candidate, row: FileRow) -> bool:
        """Whether the session manifest at the destination does not list the verified copy of `row` yet
        (then its release waits for the manifest's next write, which looks at it again). A journal
        lost, or a takeover (`acqd adopt`), knows a copy from the manifest alone: the source must not
        be deleted before the manifest records its copy."""
        listed = self._listed.get((c.ctx.index, row.session))
        if listed is not None and listed.get(row.id) == row.updated:
            return False
        self._dirty.add((c.ctx.index, row.session))
        self._after_manifest.setdefault((c.ctx.index, row.session), {})[c.key] = (c, row)
        self._release_later_for(c, RELEASE_RECHECK_MAX, WAIT_MANIFEST)  # should the manifest's write fail meanwhile
        return True

    def _release_later_for(self, c: Candidate, delay: float | None = None, why: str = WAIT_AGAIN) -> None:
        """Look at a held-back release again soon (a writer closing without writing, or a tier that did
        not answer, sends no event); each look goes through the journal from the start. `why`: what
        `acqd status` says it waits for."""
        key = c.key
        loop = self._loop
        if key in self._release_later or loop is None or self.stopping.is_set():
            return
        path = os.path.join(c.ctx.root, c.rel)

        def fire() -> None:
            self._release_later.pop(key, None)
            self._release_why.pop(key, None)
            self._hint_now(c.ctx.index, path)

        self._release_why[key] = why

        if delay is None:
            delay = min(RELEASE_RECHECK_MAX, max(1.0, c.ctx.window))
        self._release_later[key] = loop.call_later(max(0.05, delay), fire)

    async def _check_copy(
        self, ctx: RootCtx, row: FileRow, just_verified: bool, full: bool | None = None
    ) -> tuple[CopyCheck, int | None]:
        """Re-check the verified copy of `row` on its placement's tier (limits.release_verify: quick or
        full, unless `full` says)."""
        placed = ctx.placed(row.relpath)
        copies = await self._j(self.journal.copies_of, row.id)
        found = _verified_copy(placed, copies, self.tiers)
        if found is None:
            return CopyCheck(_no_copy(placed, copies)), None
        cp, layout, tier = found
        if full is None:
            full = self.limits.release_verify == "full"
        source = os.path.join(ctx.root, row.relpath)
        res = await self._io(self._check_apart, tier, layout, cp, full, just_verified, source)
        if res.pin is not None:
            await self._j(self.journal.pin_stored_checksum, cp.id, res.pin)
        if res.restamp is not None:
            await self._j(self.journal.pin_stamp, cp.id, res.restamp)
        return res, cp.id

    def _check_apart(
        self, tier: Tier, layout: Layout, cp: CopyRow, full: bool, just_verified: bool, source: str
    ) -> CopyCheck:
        """`check_copy`, after making sure the copy is elsewhere: a copy on a local tier that lies in a
        watch root (a destination inside the watch folder, or the other way round, by a mount made
        after the start) is not one, and the source is never released for it; nor is a source that
        lies on a local tier (a tier's folder mounted into the watch root: the "source" is a stored
        copy, its unlink would delete it) (I/O thread)."""
        on = next((t for t in self.tiers.values() if t.local and lies_within(source, t.root)), None)
        if on is not None:
            return CopyCheck(
                f"{source} lies on the tier {on.name} ({on.root}, mounted or linked into the watch root): a "
                "stored copy, not an acquisition file; never released (kept; take that mount out of the watch root)"
            )
        if tier.local:
            inside = self._copy_in_a_root(tier, tier.path(cp.dest))
            if inside is not None:
                return CopyCheck(
                    f"its copy {tier.path(cp.dest)} lies in the watch root {inside}: not a copy elsewhere (kept; "
                    "put central storage outside every watch root)"
                )
        # the tier is still the one claimed, before and after the copy is looked at: a share unmounted
        # meanwhile shows its empty mount point, where a copy written in the moment before the unmount
        # was noticed looks present and whole (raises: kept, asked again)
        if self.guard is not None:
            self.guard(tier, True)
        res = check_copy(tier, layout, cp, full, just_verified)
        if self.guard is not None:  # also when the copy looked gone: not taken for lost on a mount point
            self.guard(tier, True)
        return res

    def _copy_in_a_root(self, tier: Tier, path: str) -> str | None:
        """The watch root `path` lies in, if any, by the filesystem's identities (a symlink anywhere on
        the way, in the tier's tree too, does not hide it) and by where each lies on its filesystem
        (a bind mount, or a second mount, of a folder inside the watch root). A few stats per copy."""
        return next((c.root for c in self.roots if lies_within(path, c.root)), None)

    async def _lose_copy(self, ctx: RootCtx, row: FileRow, copy_id: int, why: str) -> None:
        """The stored copy is gone or changed: never trusted; the row goes back to seen and ships again."""
        row = await self._j(self.journal.copy_lost, row.id, copy_id, why)
        self._dirty.add((ctx.index, row.session))
        self._emit("copy_lost", row, reason=why, tier=ctx.placed(row.relpath).tier.name)

    async def _copy_still_there(self, c: Candidate, row: FileRow) -> bool:
        # per tier: a copy re-checked on one tier is no sign that another tier's trouble is over (a
        # `recovered` line while files on the other still could not be re-checked: a stranger's run)
        try:
            site = f"release-check {c.ctx.placed(row.relpath).tier.name}"
        except AcqdError:  # a placement that cannot be built: the check below says so
            site = "release-check"
        try:
            res, copy_id = await self._check_copy(c.ctx, row, just_verified=not c.release_only)
        except AcqdError as exc:  # one line for all the files it holds back (a tier whose claim is gone)
            if isinstance(exc, JournalError):  # the journal's trouble, not the tier's: a copy re-checked on
                # the tier must not say the journal recovered (a review: "recovered" while it still failed)
                site = "journal"
            self.repeats.error(
                site,
                str(exc),
                "cannot re-check stored copies before their release (first: %r): %s (kept; asked again)",
                c.rel,
                exc,
            )
            self._release_later_for(c, why=WAIT_CHECK)
            return False
        self.repeats.ok(site)
        if res.problem is None:
            return True
        if res.lost and copy_id is not None:
            await self._lose_copy(c.ctx, row, copy_id, res.problem)
            self._hint_now(c.ctx.index, os.path.join(c.ctx.root, c.rel))  # shipped again
        else:
            await self._j(self.journal.audit, row.id, "release-skipped", reason=res.problem)
            log.warning("not releasing %r: %s", c.rel, res.problem)
        return False

    async def _copy_lost_at_start(self, ctx: RootCtx, row: FileRow) -> bool:
        """An interrupted release at start: True if its stored copy has gone or changed (then shipped
        again by the start scan). A tier that does not answer now leaves it to the scan's release."""
        try:
            res, copy_id = await self._check_copy(ctx, row, just_verified=False)
        except AcqdError as exc:
            log.warning("cannot re-check the stored copy of %r at start: %s", row.relpath, exc)
            return False
        if res.lost and copy_id is not None and res.problem is not None:
            await self._lose_copy(ctx, row, copy_id, res.problem)
            return True
        return False

    async def _warn_if_writers_unseen(self) -> None:
        """Say once at start if releases are on and some processes' open files cannot be seen."""
        if not any(c.release or c.placer is not None for c in self.roots):
            return
        problem = await self._io(visibility)
        if problem is not None:
            log.warning("open-writer check limited: %s; such a writer's file could be released under it", problem)

    async def _quarantine(self, row: FileRow, reason: str) -> None:
        if row.state is State.QUARANTINED:
            return
        row = await self._j(self.journal.mark, row.id, State.QUARANTINED, reason)
        self.stats.quarantined += 1
        self._emit("quarantined", row, reason=reason)

    def _written_frame_by_frame(self, c: Candidate) -> bool:
        """A movie whose writer's pause must not complete it while the writer holds it open: one that
        is or would be streamed, or a frame file of a profile whose format proves completion (a movie
        short of its header's size, or pre-allocated and not filled yet, is not complete)."""
        profile = c.ctx.profile
        if profile.settle.format != "none" and profile.is_frames(c.rel.rpartition("/")[2]):
            return True
        return c.key in self.follows or self._streams_here(c.ctx, c.rel)

    def _paused(self, due: list[Candidate], looks: list[tuple[Entry | None, bool, bool]]) -> list[tuple[int, int]]:
        """The files of a round that a writer's pause could complete by stillness, which `_settle_one`
        waits for while a process here holds them open: movies written frame by frame
        (`_written_frame_by_frame`), not proved complete by their format nor by a marker, unchanged
        since the last look."""
        out = []
        for c, (e, fmt_ok, marker) in zip(due, looks, strict=True):
            if fmt_ok or marker or e is None or e.identity is None or not e.identity.device:
                continue
            if c.settled or c.release_only or not e.identity.same_content_as(c.stable):
                continue
            try:
                awaited = self._written_frame_by_frame(c)
            except Exception:  # outside the round's per-file guard: a bug here must not end the round
                log.exception("looking at %r: cannot tell whether it streams", c.rel)
                continue
            if awaited:
                out.append((e.identity.device, e.identity.inode))
        return out

    async def _written_now(
        self, looks: list[tuple[Entry | None, bool, bool]], paused: Collection[tuple[int, int]] = ()
    ) -> Collection[tuple[int, int]]:
        """Of the files whose format proves them complete at this look, and of the `paused` ones, those a
        process on this host has open for writing: one scan of /proc for the whole round."""
        keys = [
            (e.identity.device, e.identity.inode)
            for e, fmt_ok, _ in looks
            if fmt_ok and e is not None and e.identity is not None and e.identity.device
        ] + list(paused)
        if not keys:
            return ()
        try:
            return set(await self.writers.writers(keys))
        except Exception as exc:  # no /proc to look in: the format has the last word, as before
            log.debug("writers not looked for: %s", exc)
            return ()

    async def _being_written(self, c: Candidate) -> bool:
        """Does a process on this host have the file open for writing? (A writer on another host, or
        a /proc acqd cannot see into, is not seen: then the file's format has the last word.)"""
        try:
            st = await self._io(os.stat, os.path.join(c.ctx.root, c.rel))
            return bool(await self.writers.writers([(st.st_dev, st.st_ino)]))
        except OSError:
            return False

    async def _requeue_changed(self, c: Candidate, why: str, now_row: FileRow | None = None) -> None:
        """`c`'s file is looked at afresh (its row is `now_row` if the flight moved it on). Busy from
        the first await to its admission: a file landed is neither waiting nor in flight, and a `--once`
        run that found itself idle in between ended with the file pending (exit 1: seen in CI)."""
        row = c.row if now_row is None else now_row
        with self._busy_while():
            log.info("re-examining %r: %s", c.rel, why)
            await self._j(self.journal.audit, row.id, "re-examine", reason=why)
            entry = await self._io(classify, c.ctx.root, c.rel)
            self._land(c)
            if entry is None:
                if row.state in (State.SEEN, State.COMPLETE, State.STORED):
                    if await self._view(c.ctx.root) is not None:
                        return  # its disk unmounted, not the file gone: found again when it is back
                    await self._gone(c.ctx, row, why)
                return
            await self._admit(c.ctx, [entry])

    async def _gone(self, ctx: RootCtx, row: FileRow, why: str) -> None:
        """`row`'s file is gone from the acquisition disk before it was shipped (deleted by its owner).
        Its copy recorded stored and never verified (a crash came between) may be the only one of its
        content now: read back against its record (its data and its metadata), the row is verified
        (`acqd restore` gives it back, its session manifest lists it); not as recorded, the row is
        vanished and the copy kept as it is (`acqd status` lists it); nothing there any more, the row is
        vanished and the copy recorded lost. It was marked vanished unread, the copy out of sight of
        restore and verify. No copy recorded: the row is vanished. The copy's tier not answering, or not
        the claimed one (a share not mounted: its empty mount point holds nothing), the row is left as
        it is, looked at again at the next start: nothing is concluded from a tier that is not there."""
        try:
            stored = [x for x in await self._j(self.journal.copies_of, row.id) if x.state == "stored"]
            copy = next((x for x in stored if x.tier in self.tiers), None)
            if row.state is not State.STORED or copy is None:
                row = await self._j(self.journal.mark, row.id, State.VANISHED, why)
                self._emit("vanished", row, reason=why)
                return
            tier = self.tiers[copy.tier]
            where = tier.url(copy.dest)
            try:
                if self.guard is not None:  # on the claimed tier, not an empty mount point
                    await self._io(self.guard, tier, True)
                there = await self._io(tier.stored_size, copy.dest) is not None
            except AcqdError as exc:  # not mounted, its claim gone, not answering: nothing concluded
                log.warning(
                    "%r is gone (%s); its copy %s, stored by an attempt cut short and never verified, cannot be looked "
                    "at now (%s): looked at again at the next start",
                    row.relpath,
                    why,
                    where,
                    exc,
                )
                return
            lost = not there
            if lost:
                matched, said = False, why
            else:
                try:
                    reader = reading_layout(copy.layout, copy.codec, ctx.placed(row.relpath).layout)
                    await self._io(reader.verify, tier, copy.dest, copy.as_result())  # data and metadata
                    matched, said = (
                        True,
                        f"{why}; its copy {where}, stored by an attempt cut short, reads back as recorded",
                    )
                except TransientError as exc:
                    log.warning(
                        "%r is gone (%s); its copy %s could not be read now (%s): looked at again at the next start",
                        row.relpath,
                        why,
                        where,
                        exc,
                    )
                    return
                except AcqdError as exc:
                    matched, said = False, f"{why}; it does not read back as recorded ({exc})"
            row = await self._j(
                self.journal.keep_stored, row.id, copy.tier, copy.dest, matched, said, gone=True, lost=lost
            )
        except IllegalTransition:  # the row moved on meanwhile (shipped and released): nothing vanished
            return
        if matched:
            log.warning("%r: %s: recorded verified, its only copy", row.relpath, said)
            self.stats.verified += 1
            self._emit(
                "verified",
                row,
                tier=copy.tier,
                dest=where,
                stored_bytes=copy.stored_bytes,
                checksum=copy.checksum,
                codec=copy.codec,
                layout=copy.layout,
                reason=said,
            )
            self._dirty.add((ctx.index, row.session))  # its session manifest lists it
        elif lost:
            log.warning(
                "%r: %s; its copy %s, stored by an attempt cut short, is not there either", row.relpath, why, where
            )
            self._emit("vanished", row, reason=row.reason or why)
        else:
            self.kept_damaged += 1
            log.error(
                "%r: %s; its copy %s, stored by an attempt cut short: kept as it is, not verified",
                row.relpath,
                said,
                where,
            )
            self._emit("vanished", row, reason=row.reason or said)

    async def _moved_on(self, c: Candidate, exc: IllegalTransition) -> None:
        """The journal refused a step of this file's ship: its row is not where this candidate saw it.
        A row shipped already (verified or released: another flight did it) is not shipped again,
        nor retried for ever; the file is asked about afresh (a release may be due). Any other row
        is retried like any error."""
        try:
            row = await self._j(self.journal.get, c.row.id)
        except JournalError:
            row = None
        if row is None or row.state not in DONE:
            await self._retry(c, str(exc), "internal")
            return
        log.info("%r: %s; its row is %s already: not shipped again", c.rel, exc, row.state.value)
        self._land(c)
        self._hint_now(c.ctx.index, os.path.join(c.ctx.root, c.rel))

    async def _retry(self, c: Candidate, why: str, stage: str) -> None:
        if stage in ("write", "verify") and (lane := self._lane(c)) is not None:
            self.lanes.failed(lane)  # its files one at a time until one ships (`Lanes`)
        try:
            attempts = await self._j(self.journal.bump_attempts, c.row.id, why)
            row = await self._j(self.journal.get, c.row.id)
        except JournalError as exc:  # the state disk is full: the file waits, counted in one log line
            delay = self._journal_down(exc)
            self._land(c)
            self._schedule(
                Candidate(
                    c.ctx,
                    c.rel,
                    c.row,
                    c.stable,
                    c.since,
                    self.mono() + delay,
                    settled=True,
                    born=c.born,
                    reason=c.reason,
                    journal_wait=True,
                )
            )
            return
        self._journal_up()
        self.stats.retries += 1
        self.stats.last_error = why
        self._emit("retry", row, reason=why, stage=stage)
        delay = min(self.limits.retry_max, self.limits.retry_initial * 2 ** min(attempts - 1, 30))
        delay *= random.uniform(0.8, 1.2)
        log.debug("retrying %r in %.1fs (attempt %d)", c.rel, delay, attempts)
        self._land(c)
        now = self.mono()
        nc = Candidate(c.ctx, c.rel, row, c.stable, c.since, now + delay, settled=True, reason="retry", born=c.born)
        self._schedule(nc)

    # -- manifests ----------------------------------------------------------------------------
    async def _manifests(self) -> None:
        """Rewrite dirty session manifests every 2 s, or less often when they are big: a session of
        100,000 files makes a manifest that takes a while to build, and rewriting it after every few
        files would spend the daemon's time there. The pause is nine times a usual flush (the median
        of the last ones that wrote what they had), at most 30 s (acqd.pace.manifest_pause): a flush
        that hung on a destination not answering, or failed, does not stretch the next pauses, and
        releases (which wait for their manifest) go on within seconds once it answers again. Each tier's
        manifests are flushed on their own: a flush still running after 15 s is said once, and so is its
        end; meanwhile the other tiers' manifests go on (before, one tier that stopped answering held up
        the releases of every other); a stop flushes at once."""
        pause = MANIFEST_PAUSE_MIN
        usual: dict[str, deque[float]] = {}  # by tier: a local folder's flushes say nothing of S3's
        running: dict[str, tuple[asyncio.Task[float], float]] = {}  # tier -> its flush, since when
        next_at = self.mono() + pause
        again: set[str] = set()  # tiers a flush was asked of while theirs ran: flushed again as soon as it ends

        async def timed(name: str) -> float:
            t0 = self.mono()
            await self.flush_manifests(frozenset({name}))
            return self.mono() - t0

        try:
            while True:
                now = self.mono()
                for name, (task, t0) in sorted(running.items()):
                    if not task.done():
                        if now - t0 >= MANIFEST_SLOW and name not in self._manifest_slow_since:
                            self._manifest_slow_since[name] = t0
                            log.warning(
                                "writing session manifests to tier %s has taken over %.0fs, not done yet (%d "
                                "verified file(s) wait for it to be released): the destination is slow or not "
                                "answering",
                                name,
                                MANIFEST_SLOW,
                                self._waiting_for_manifests(name),
                            )
                        continue
                    del running[name]
                    self._manifest_slow_since.pop(name, None)
                    took = task.result()  # a bug in it: raised here, the stage restarts (`_supervised`)
                    error = self._manifest_error.get(name)
                    own = usual.setdefault(name, deque(maxlen=MANIFEST_USUAL))
                    if took >= MANIFEST_SLOW:
                        log.warning(
                            "session manifests written to tier %s after %.0fs (usually %.1fs)%s",
                            name,
                            took,
                            sorted(own)[len(own) // 2] if own else 0.0,
                            f"; not all: {error}" if error else "",
                        )
                    if error is None:  # wrote what it had: a measure of a usual flush of this tier
                        own.append(took)
                    pause = max(manifest_pause(list(u)) for u in usual.values())
                due = self._manifest_wake.is_set() or now >= next_at
                names = {c.tier.name for c in self.roots}
                if due or again - running.keys():
                    stopping = self.stopping.is_set()
                    if due:
                        self._manifest_wake.clear()
                        again |= names & running.keys()
                    started = []
                    for name in sorted((names if due else again) - running.keys()):
                        again.discard(name)
                        started.append(asyncio.create_task(timed(name), name=f"manifest-flush {name}"))
                        running[name] = (started[-1], now)
                    if stopping:  # the last flush: waited for (the daemon bounds the drain), but for a
                        # tier's already under way (not answering: the daemon's stop tries it once more)
                        if started:
                            await asyncio.wait(started)
                        for task in started:
                            task.result()
                        return
                    if due:
                        next_at = now + pause
                # until the next flush is due, one is asked, a flush ends, or one turns slow
                until = next_at - now
                for _task, t0 in running.values():
                    if t0 + MANIFEST_SLOW > now:
                        until = min(until, t0 + MANIFEST_SLOW - now)
                asked = asyncio.ensure_future(self._manifest_wake.wait())
                try:
                    await asyncio.wait(
                        {asked, *(task for task, _t0 in running.values())},
                        timeout=max(0.0, until),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    asked.cancel()
        finally:
            for task, _t0 in running.values():
                task.cancel()  # ours: cancelled with this stage
            self._manifest_slow_since.clear()

    def _waiting_for_manifests(self, tier: str) -> int:
        """How many verified files wait for a session manifest on `tier` to be released."""
        on = {c.index for c in self.roots if c.tier.name == tier}
        return sum(len(w) for (index, _session), w in self._after_manifest.items() if index in on)

    def _manifest_later(self, index: int, session: str, exc: AcqdError) -> None:
        """A session manifest that could not be read or written now: said once, written at the next flush."""
        self._flush_error[self._tier_of(index)] = f"manifest of session {session!r}: {exc}"
        self.repeats.error(
            "manifest", _PATHLIKE.sub("…", str(exc)), "manifest of session %r not written (retried): %s", session, exc
        )
        self._dirty.add((index, session))

    def _read_manifest(self, tier: Tier, rel: str, root: str) -> tuple[list[dict[str, Any]], set[tuple[str, int, str]]]:
        """The entries another watch root put in the manifest at `rel` (acqd.manifest.other_roots), and
        those of `root` (`own_entries`); raises a storage error when it is there and cannot be read
        (not written over, retried)."""
        if tier.size(rel) is None:
            return [], set()
        with tier.open_read(rel) as f:
            data = f.read()
        try:
            doc = json.loads(data)
        except ValueError:
            log.warning("%s is not a readable manifest: written again from the journal", tier.url(rel))
            return [], set()
        return other_roots(doc, root), own_entries(doc, root)

    async def _stale_journal(
        self, ctx: RootCtx, session: str, url: str, listed: set[tuple[str, int, str]]
    ) -> str | None:
        """Why the journal must not write the manifest at `url` again, or None: it lists copies of this
        watch root that the journal has no record of (no such file version with such a copy, in any
        state). The journal is older than the destination: restored from a backup, or a copy whose
        original ran on (its claim deleted, or from before claims); its manifests would drop them."""
        if not listed:
            return None
        known = await self._j(self.journal.session_copy_names, ctx.root, session)
        unknown = sorted(listed - known)
        if not unknown:
            return None
        source, version, dest = unknown[0]
        return (
            f"the session manifest {url} lists {len(unknown)} stored file(s) of watch root {ctx.root} that this "
            f"journal ({self.journal.path}) has no record of (first: {source!r} version {version} at {dest!r}): "
            "the journal is older than the destination (restored from a backup, or a copy of one that ran "
            "on). Writing the manifest again would drop them; nothing is shipped. Put back the journal that "
            "wrote them, or run `acqd adopt` to import the manifests"
        )

    def _tier_of(self, index: int) -> str:
        """The name of the tier watch root `index` keeps its session manifests on."""
        return next((c.tier.name for c in self.roots if c.index == index), "")

    async def flush_manifests(self, tiers: frozenset[str] | None = None) -> None:
        """Write the dirty session manifests (those on `tiers`; None: all), each tier's on its own,
        the tiers at once: one that does not answer holds up only its own."""
        if self.halted is not None:  # the destination is not this daemon's any more
            return
        names = {c.tier.name for c in self.roots} if tiers is None else tiers
        await asyncio.gather(*(self._flush_tier(name) for name in sorted(names)))

    async def _flush_tier(self, tier: str) -> None:
        async with self._flush_locks.setdefault(tier, asyncio.Lock()):  # one flush of a tier at a time
            if self.halted is not None:
                return
            await self._flush_tier_now(tier)

    async def _flush_tier_now(self, tier: str) -> None:
        by_index = {c.index: c for c in self.roots}
        try:  # sessions the journal marks, not this run: `acqd verify` found a manifest missing or
            # out of date, a retention sweep moved or purged a copy
            marked = await self._j(self.journal.dirty_manifests)
        except JournalError:
            marked = []
        by_path = {c.root: c.index for c in self.roots}
        self._dirty.update((by_path[root], session) for root, session in marked if root in by_path)
        dirty = {k for k in self._dirty if k[0] in by_index and by_index[k[0]].tier.name == tier}
        self._dirty -= dirty
        listed_now: list[tuple[Candidate, FileRow]] = []  # releases whose manifests this flush writes
        self._flush_error.pop(tier, None)
        try:
            await self._flush_sessions(sorted(dirty), by_index, listed_now)
        finally:
            error = self._flush_error.pop(tier, None)
            if error is None:
                self._manifest_error.pop(tier, None)
            else:
                self._manifest_error[tier] = error
            if listed_now and not self.stopping.is_set():  # their releases go on now, together
                await self._release_listed(listed_now)
            for c, row in listed_now:  # in flight now (or in another flight's hands): no longer waiting
                waiting = self._after_manifest.get((c.ctx.index, row.session))
                if waiting is not None and waiting.get(c.key, (None,))[0] is c:
                    del waiting[c.key]
                    if not waiting:
                        del self._after_manifest[(c.ctx.index, row.session)]

    async def _flush_sessions(
        self,
        dirty: list[tuple[int, str]],
        by_index: dict[int, RootCtx],
        listed_now: list[tuple[Candidate, FileRow]],
    ) -> None:
        for index, session in dirty:
            ctx = by_index[index]
            as_of = self.clock()
            try:
                pairs = await self._j(self.journal.session_files, ctx.root, session)
                notes = await self._j(self.journal.mismatch_notes, ctx.root, session)
                whys = await self._j(self.journal.codec_notes, ctx.root, session)
            except JournalError as exc:
                self.repeats.error(
                    "journal", str(exc), "manifest of session %r not written (retried): %s", session, exc
                )
                self._flush_error[ctx.tier.name] = f"manifest of session {session!r}: {exc}"
                self._dirty.add((index, session))
                continue

            mpath = manifest_path(self._base(ctx), session)
            others = self._other_roots.get((ctx.tier.name, mpath))
            if others is None:  # read once per run: only this daemon writes under its prefix
                try:
                    read, listed = await self._io(self._read_manifest, ctx.tier, mpath, ctx.root)
                    stale = await self._stale_journal(ctx, session, ctx.tier.url(mpath), listed)
                except AcqdError as exc:
                    self._manifest_later(index, session, exc)
                    continue
                if stale is not None:
                    self.halt(stale, "journal")
                    return
                self._other_roots[(ctx.tier.name, mpath)] = others = read

            def render(
                pairs: list[tuple[FileRow, Any]] = pairs,
                session: str = session,
                root: str = ctx.root,
                notes: dict[int, str] = notes,
                whys: dict[int, str] = whys,
                others: list[dict[str, Any]] = others,
            ) -> bytes:
                entries = [
                    ManifestEntry(
                        source=f.relpath,
                        version=f.version,
                        dest=cp.dest,
                        tier=cp.tier,
                        layout=cp.layout,
                        codec=cp.codec,
                        source_bytes=cp.source_bytes,
                        stored_bytes=cp.stored_bytes,
                        checksum=cp.checksum,
                        source_mtime_ns=f.identity.mtime_ns,
                        verified_at=cp.verified_at,
                        state=f.state.value,
                        detector=f.detector,
                        profile_mismatch=notes.get(f.id),
                        codec_why=whys.get(f.id),
                    )
                    for f, cp in pairs
                ]
                return build(self.instrument, session, root, entries, self.clock(), others)

            doc = await self._io(render)  # a big session's manifest is built off the event loop
            try:
                if self.guard is not None:  # the tier is still this daemon's, and still there
                    await self._io(self.guard, ctx.tier, True)
                await self._io(
                    partial(ctx.tier.write_atomic, replace=True), manifest_path(self._base(ctx), session), [doc]
                )
            except ClaimError as exc:
                self.halt(str(exc), exc.reason)
                return
            except AcqdError as exc:
                self._manifest_later(index, session, exc)
                continue
            self.repeats.ok("manifest")
            if ctx.release or ctx.placer is not None:  # what a release may ask: the rows listed verified
                self._listed_rows -= len(self._listed.pop((index, session), {}))
                rows = {f.id: f.updated for f, _cp in pairs if f.state is State.VERIFIED}
                if rows:
                    self._listed[(index, session)] = rows
                    self._listed_rows += len(rows)
                while self._listed_rows > LISTED_ROWS and len(self._listed) > 1:  # the oldest written first out
                    self._listed_rows -= len(self._listed.pop(next(iter(self._listed))))
            # handed to the workers after this flush; they stay in _after_manifest until they are in
            # flight (`run --once` must not take the moment between for idle)
            listed_now.extend(self._after_manifest.get((index, session), {}).values())
            try:
                await self._j(self.journal.manifest_written, ctx.root, session, as_of)
            except JournalError as exc:  # rewritten again later; nothing is lost
                self.repeats.error("journal", str(exc), "journal write failed: %s", exc)
