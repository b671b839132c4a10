"""Pacing, pure: how hard acqd may read the acquisition disk, and how fast it may write to a tier.

Acquisition comes first. acqd backs off (fewer files shipped at once) while the acquisition disk's
write latency is high, and ships at full speed again once it is low; a disk running out of space
overrides the back-off, because a full disk stalls the camera worse than a busy one. Each tier may
have a bandwidth schedule by time of day, enforced as a token bucket around its writes.

Everything here is a function of plain values (kernel counters, the local time, `now`): the
adapter that samples the kernel and sleeps is `acqd.pacing`.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from acqd.units import parse_size

# -- the acquisition disk -----------------------------------------------------------------------


@dataclass(frozen=True)
class DiskStat:
    """One reading of a block device's counters (/sys/dev/block/M:m/stat, Documentation/block/stat)."""

    at: float  # monotonic seconds of the reading
    writes: int  # write requests completed
    write_ms: int  # milliseconds those requests spent (queued and served), summed over requests
    io_ms: int  # milliseconds the device had at least one request in flight

    @classmethod
    def parse(cls, text: str, at: float) -> DiskStat:
        """From the stat file's text; ValueError if it is not one."""
        f = text.split()
        if len(f) < 11:
            raise ValueError(f"a block stat line has at least 11 fields, not {len(f)}")
        return cls(at=at, writes=int(f[4]), write_ms=int(f[7]), io_ms=int(f[9]))


@dataclass(frozen=True)
class DiskLoad:
    """How the acquisition disk fared between two readings."""

    write_latency: float | None  # mean seconds per write completed (None: no write completed)
    busy: float  # fraction of the time with a request in flight, 0..1


def load_between(a: DiskStat, b: DiskStat) -> DiskLoad | None:
    """The load from reading `a` to the later reading `b`; None if the counters do not allow one
    (no time passed, or they went backwards: a device replaced or its counters reset)."""
    dt_ms = (b.at - a.at) * 1000.0
    dw, dwms, dio = b.writes - a.writes, b.write_ms - a.write_ms, b.io_ms - a.io_ms
    if dt_ms <= 0 or dw < 0 or dwms < 0 or dio < 0:
        return None
    return DiskLoad(write_latency=dwms / dw / 1000.0 if dw else None, busy=min(1.0, dio / dt_ms))


Mode = Literal["normal", "backoff", "filling"]
#: how strongly each mode claims the disk: several disks (watch roots) combine to the strongest
_RANK: dict[str, int] = {"normal": 0, "backoff": 1, "filling": 2}


@dataclass(frozen=True)
class BackoffRule:
    """When to back off (limits.backoff in acqd.yaml, validated there)."""

    latency_above: float  # seconds: back off when the mean write latency exceeds this
    latency_below: float  # seconds: ... and leave the back-off when it is at or below this
    busy_above: float | None = None  # also back off when the disk is busier than this (0..1); None: ignored
    busy_below: float | None = None  # ... and leave only at or below this
    free_below: float = 0.15  # fraction of the disk: below it, ship at full speed whatever the latency
    slots: int = 1  # files shipped at once while backing off (0: start no new file)


@dataclass(frozen=True)
class Pace:
    mode: Mode
    why: str


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def next_pace(prev: Mode, load: DiskLoad | None, free: float | None, rule: BackoffRule) -> Pace:
    """The pace for one acquisition disk, from the previous mode, the disk's load since the last
    reading (None: unknown) and its free fraction (None: unknown).

    1. Free space first: below `free_below`, full speed (mode `filling`), whatever the latency.
    2. Back off when the write latency exceeds `latency_above` (or the disk is busier than
       `busy_above`); leave only when it is back at or below `latency_below` (and `busy_below`):
       the gap keeps acqd from flapping at the threshold.
    3. An unknown load keeps a back-off (a missed reading proves nothing) and is normal otherwise.
    """
    if free is not None and free < rule.free_below:
        # the share rounded down and the threshold as configured: never "15.0% < 15%"
        pct = math.floor(free * 1000) / 10
        return Pace("filling", f"free space {pct:.1f}% < {rule.free_below * 100:g}%: shipping at full speed")
    if load is None:
        return Pace("backoff", "no new disk reading; still backing off") if prev == "backoff" else Pace("normal", "")
    lat = load.write_latency
    high_lat = lat is not None and lat > rule.latency_above
    high_busy = rule.busy_above is not None and load.busy > rule.busy_above
    if high_lat or high_busy:
        if high_lat and lat is not None:
            why = f"write latency {_ms(lat)} > {_ms(rule.latency_above)}"
        else:
            why = f"disk busy {load.busy:.0%} > {rule.busy_above:.0%}"
        return Pace("backoff", why)
    if prev == "backoff":
        calm_lat = lat is None or lat <= rule.latency_below
        below = rule.busy_below if rule.busy_below is not None else rule.busy_above
        calm_busy = below is None or load.busy <= below
        if not (calm_lat and calm_busy):
            shown = f"write latency {_ms(lat)}" if lat is not None else f"disk busy {load.busy:.0%}"
            return Pace("backoff", f"{shown}, not yet back at or below the leave threshold")
    return Pace("normal", "")


def combine(paces: list[Pace]) -> Pace:
    """Several acquisition disks: the strongest claim wins (a filling disk, then a busy one)."""
    return max(paces, key=lambda p: _RANK[p.mode], default=Pace("normal", ""))


def ship_slots(mode: Mode, concurrent_files: int, rule: BackoffRule) -> int:
    """How many files may be shipped at once in this mode."""
    return min(rule.slots, concurrent_files) if mode == "backoff" else concurrent_files


# -- bandwidth schedules per tier ---------------------------------------------------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*-\s*(\d{1,2})(?::(\d{2}))?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGT]?)(bit|Bit|B|iB)/s\s*$")
_BIT_FACTOR = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_hours(text: str) -> tuple[int, int]:
    """'08-18', '08:30-17:45', '22-06' (past midnight): (start, end) in minutes of the day."""
    m = _HOURS.match(text)
    if not m:
        raise ValueError(f"hours {text!r}: use 'HH-HH' or 'HH:MM-HH:MM', e.g. '08-18' or '22:00-06:30'")
    h1, m1, h2, m2 = int(m.group(1)), int(m.group(2) or 0), int(m.group(3)), int(m.group(4) or 0)
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"hours {text!r}: not a time of day (00:00 to 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"hours {text!r}: empty (start equals end); leave `hours` out for the whole day")
    return start, end


def parse_days(text: str) -> frozenset[int]:
    """'mon-fri', 'sat,sun', 'fri-mon' (across the weekend): weekdays, Monday = 0."""
    out: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        a, dash, b = part.partition("-")
        if a not in DAYS or (dash and b not in DAYS):
            raise ValueError(f"days {text!r}: use day names {', '.join(DAYS)}, as 'mon-fri' or 'sat,sun'")
        i, j = DAYS.index(a), DAYS.index(b) if dash else DAYS.index(a)
        out.update((i + k) % 7 for k in range((j - i) % 7 + 1))
    return frozenset(out)


def parse_rate(value: str | int | float) -> int | None:
    """Bytes per second from '200MB/s', '1.5GiB/s', '800Mbit/s', a number of bytes per second, or
    'unlimited' (None)."""
    if isinstance(value, bool):
        raise ValueError("a rate is like '200MB/s', '1Gbit/s' or 'unlimited'")
    if isinstance(value, int | float):
        n = int(value)
    elif value.strip().lower() == "unlimited":
        return None
    else:
        m = _RATE.match(value)
        if a := re.fullmatch(r"\s*([\d.]+)\s*([kKMGT]?)b/s\s*", value):
            num, p = a.group(1), a.group(2)
            raise ValueError(f"rate {value!r} is ambiguous: write bits as '{num}{p}bit/s' or bytes as '{num}{p}B/s'")
        if not m:
            raise ValueError(f"not a rate: {value!r} (use e.g. '200MB/s', '1GiB/s', '800Mbit/s' or 'unlimited')")
        num, prefix, unit = m.group(1), m.group(2), m.group(3)
        if unit.lower() == "bit":
            n = int(float(num) * _BIT_FACTOR[prefix.lower()] / 8)
        elif unit.lower() == "ib" and not prefix:
            raise ValueError(f"not a rate: {value!r} (use e.g. '200MB/s', '1GiB/s', '800Mbit/s' or 'unlimited')")
        else:
            n = parse_size(f"{num}{prefix}{unit}")
    if n <= 0:
        raise ValueError(f"a rate must be positive (or 'unlimited'): {value!r}")
    return n


@dataclass(frozen=True)
class Window:
    """One entry of a bandwidth schedule: during these hours on these days, at most `limit` bytes/s."""

    limit: int | None  # None: unlimited
    hours: tuple[int, int] | None = None  # minutes of the day [start, end), end may wrap past midnight
    days: frozenset[int] | None = None  # weekdays (Monday = 0); None: every day

    def covers(self, weekday: int, minute: int) -> bool:
        if self.hours is None:
            return self.days is None or weekday in self.days
        start, end = self.hours
        if start < end:
            return (start <= minute < end) and (self.days is None or weekday in self.days)
        # past midnight: the part after midnight belongs to the day the window started on
        if minute >= start:
            return self.days is None or weekday in self.days
        if minute < end:
            return self.days is None or (weekday - 1) % 7 in self.days
        return False


def limit_at(schedule: tuple[Window, ...], weekday: int, minute: int) -> int | None:
    """The first window covering this local time decides; no window: unlimited (None)."""
    for w in schedule:
        if w.covers(weekday, minute):
            return w.limit
    return None


def unreachable(schedule: tuple[Window, ...]) -> int | None:
    """The index of a window that can never apply because an earlier one covers all the time, or None."""
    for i, w in enumerate(schedule):
        if w.hours is None and w.days is None and i + 1 < len(schedule):
            return i + 1
    return None


@dataclass(frozen=True)
class Bucket:
    """A token bucket's state: `tokens` bytes of credit (negative: debt being waited off) at time `at`."""

    tokens: float = 0.0
    at: float | None = None


def take(bucket: Bucket, now: float, rate: int, n: int, burst: float | None = None) -> tuple[Bucket, float]:
    """Reserve `n` bytes at `rate` bytes/s: the new bucket and the seconds the writer must wait
    before sending them. Credit refills at `rate` up to `burst` (default: one second's worth); a
    reservation may go into debt, which later writers wait off first (so concurrent writers share
    the rate, and a block larger than the burst is still sent, just later)."""
    cap = float(rate) if burst is None else burst
    tokens = 0.0 if bucket.at is None else min(cap, bucket.tokens + max(0.0, now - bucket.at) * rate)
    tokens -= n
    return Bucket(tokens, now), max(0.0, -tokens / rate)


#: seconds between session-manifest flushes: at least this, and at most the cap (releases wait for them)
MANIFEST_PAUSE_MIN = 2.0
MANIFEST_PAUSE_MAX = 30.0
MANIFEST_SHARE = 9  # a flush may take a tenth of the time: the pause is this many times a usual flush
MANIFEST_SLOW = 15.0  # seconds: a flush running longer is said (releases wait for it), and not a usual one


def manifest_pause(usual: list[float]) -> float:
    """The pause before the next session-manifest flush, from the durations of recent flushes that
    wrote what they had (`usual`, oldest first). Nine times their median, so that a big session's
    manifest takes at most about a tenth of the time, between 2 s and 30 s: the median is not moved by
    one slow or hung flush (a destination that stopped answering for minutes), and the cap bounds
    how long a release waits after one however slow they have become."""
    if not usual:
        return MANIFEST_PAUSE_MIN
    ordered = sorted(usual)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return min(MANIFEST_PAUSE_MAX, max(MANIFEST_PAUSE_MIN, MANIFEST_SHARE * median))


# -- one tier's trouble is its own: files in flight by tier -----------------------------------------

T = TypeVar("T")


class Lanes(Generic[T]):
    """How many files each tier may have in flight, and the files parked until it may take more.

    A tier that stops answering keeps the calls under way on it for minutes (an S3 server frozen: its
    client retries on its own) or fails each after a connect timeout (an SFTP server). Before, every
    ship worker ended up on that tier's files, and a healthy tier beside it got nothing: its files were
    not even found, the I/O threads all waiting too (a review, thirty-third session). So, with more than
    one tier, one tier has at most `workers - 1` files in flight: a worker is always left for the
    others. A tier in trouble (its last flight failed at the tier, or a call on it has been under way
    for `limits.stalled_after`) has one at a time, which tells when it is back. A file its tier cannot
    take now is parked here, holding no worker, and handed back (`unpark`) when a flight on that tier
    ends."""

    def __init__(self, workers: int, tiers: int) -> None:
        self.workers = workers
        self.shared = tiers > 1  # one tier alone takes every worker
        self.flights: dict[str, int] = {}
        self.parked: dict[str, deque[T]] = {}
        self.failing: set[str] = set()

    def cap(self, tier: str, stalled: bool) -> int:
        if stalled or tier in self.failing:
            return 1
        return max(1, self.workers - 1) if self.shared else self.workers

    def admit(self, tier: str | None, item: T, stalled: bool) -> bool:
        """Take `item` into flight on `tier` (True), or park it (False). None: no tier (always taken)."""
        if tier is None:
            return True
        if self.flights.get(tier, 0) >= self.cap(tier, stalled):
            self.parked.setdefault(tier, deque()).append(item)
            return False
        self.flights[tier] = self.flights.get(tier, 0) + 1
        return True

    def land(self, tier: str | None) -> None:
        if tier is not None and self.flights.get(tier, 0) > 0:
            self.flights[tier] -= 1

    def unpark(self, stalled: frozenset[str]) -> tuple[str, T] | None:
        """A parked file whose tier may take one more now (in the order parked), taken into flight
        on that tier (which its flight must land: a reload may place it elsewhere meanwhile)."""
        for tier, items in self.parked.items():
            if items and self.flights.get(tier, 0) < self.cap(tier, tier in stalled):
                self.flights[tier] = self.flights.get(tier, 0) + 1
                item = items.popleft()
                if not items:
                    del self.parked[tier]
                return tier, item
        return None

    def failed(self, tier: str) -> None:
        self.failing.add(tier)

    def worked(self, tier: str) -> None:
        self.failing.discard(tier)

    def drop(self) -> list[T]:
        """Every parked file (a stop: they stay pending in the journal for the next start)."""
        out = [item for items in self.parked.values() for item in items]
        self.parked.clear()
        return out
