"""The retention clock guard: a calendar acqd can trust when the wall clock jumps. Pure.

Purges are judged by `effective = min(wall clock, trusted calendar)`. The trusted calendar is the
wall-clock reading at an anchor (the first sweep, or an operator's acknowledgement) plus the trusted
time elapsed since then. Trusted time is accumulated sweep to sweep:

- within one boot: the kernel's CLOCK_BOOTTIME (it counts suspend and is never stepped);
- across a reboot (CLOCK_BOOTTIME restarts): the wall-clock interval if it is between 0 and
  `maxClockJumpForward`, else nothing (a power-off cannot be told from a clock jump).

So whatever the wall clock does, `effective` never runs ahead of real time by more than the
forward jumps across reboots that stayed within the guard; every purge date is compared with it.
When the wall clock and the trusted calendar disagree by more than the guards, purges are
*suspended*: each file waits until its announced date has passed by the trusted calendar, or until an
operator acknowledges the wall clock (`acqd retention ack-clock`), which re-anchors the calendar.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _span(seconds: float) -> str:
    s = abs(seconds)
    if s >= 86400:
        return f"{s / 86400:.1f} days"
    if s >= 3600:
        return f"{s / 3600:.1f} hours"
    return f"{s:.0f}s"


@dataclass(frozen=True, slots=True)
class Reading:
    """One look at the clocks: wall time, the kernel's boot id, seconds since boot (CLOCK_BOOTTIME)."""

    wall: float
    boot_id: str
    boottime: float


@dataclass(frozen=True, slots=True)
class Suspension:
    since: float  # the wall clock when the disagreement was first seen
    skew: float  # wall clock minus trusted calendar, seconds (positive: the wall clock is ahead)

    @property
    def reason(self) -> str:
        where = "forward" if self.skew > 0 else "backwards"
        return f"the wall clock jumped {where} by {_span(self.skew)} (seen {_day(self.since)})"


@dataclass(frozen=True, slots=True)
class ClockState:
    last: Reading  # the latest reading taken into account
    trusted: float  # trusted seconds accumulated up to `last`
    anchor_wall: float  # a wall-clock reading vouched for (first sweep, or an acknowledgement) ...
    anchor_trusted: float  # ... and the trusted seconds at that moment
    suspension: Suspension | None = None

    @property
    def calendar(self) -> float:
        """The trusted calendar at `last`."""
        return self.anchor_wall + (self.trusted - self.anchor_trusted)

    @property
    def skew(self) -> float:
        return self.last.wall - self.calendar

    @property
    def effective(self) -> float:
        """The time retention judges by: never later than either clock."""
        return min(self.last.wall, self.calendar)

    @property
    def stamp(self) -> float:
        """The time a warning sent now is dated from: never earlier than either clock. Whichever of
        the two lags real time (the wall clock set back, or the trusted calendar after a power-off it
        could not count), the later one does not, so a warning never looks older than it is and its
        lead time never runs out early once the clocks are put right; a clock that runs ahead only
        makes the warning look younger (the purge waits longer)."""
        return max(self.last.wall, self.calendar)

    def to_json(self) -> dict[str, Any]:
        s = self.suspension
        return {
            "last": [self.last.wall, self.last.boot_id, self.last.boottime],
            "trusted": self.trusted,
            "anchor": [self.anchor_wall, self.anchor_trusted],
            "suspension": None if s is None else [s.since, s.skew],
        }

    @staticmethod
    def from_json(doc: dict[str, Any]) -> ClockState:
        w, b, bt = doc["last"]
        s = doc.get("suspension")
        return ClockState(
            Reading(float(w), str(b), float(bt)),
            float(doc["trusted"]),
            float(doc["anchor"][0]),
            float(doc["anchor"][1]),
            None if s is None else Suspension(float(s[0]), float(s[1])),
        )


def elapsed(last: Reading, now: Reading, max_forward: float) -> float:
    """Trusted seconds between two readings (0 when there is no trusted measure of the interval)."""
    if last.boot_id and now.boot_id == last.boot_id and now.boottime >= last.boottime:
        return now.boottime - last.boottime
    gap = now.wall - last.wall
    return gap if 0 <= gap <= max_forward else 0.0


def _judge(state: ClockState, max_forward: float, max_backward: float) -> ClockState:
    skew = state.skew
    if -max_backward <= skew <= max_forward:
        return replace(state, suspension=None)
    since = state.suspension.since if state.suspension is not None else state.last.wall
    return replace(state, suspension=Suspension(since, skew))


def advance(state: ClockState | None, now: Reading, max_forward: float, max_backward: float) -> ClockState:
    """The clock state after a new reading (the first reading anchors the calendar)."""
    if state is None:
        return ClockState(now, 0.0, now.wall, 0.0)
    trusted = state.trusted + elapsed(state.last, now, max_forward)
    return _judge(replace(state, last=now, trusted=trusted), max_forward, max_backward)


def acknowledge(state: ClockState, ack: Reading, max_forward: float, max_backward: float) -> ClockState:
    """An operator vouched for the wall clock at `ack` (taken at or before `state.last`): the
    calendar is re-anchored there. If `ack` cannot be placed on the trusted time line (another
    boot), the calendar is anchored at `state.last` instead."""
    last = state.last
    if ack.boot_id and ack.boot_id == last.boot_id and ack.boottime <= last.boottime:
        at_trusted = state.trusted - (last.boottime - ack.boottime)
        anchored = replace(state, anchor_wall=ack.wall, anchor_trusted=at_trusted)
    else:
        anchored = replace(state, anchor_wall=last.wall, anchor_trusted=state.trusted)
    return _judge(anchored, max_forward, max_backward)


def lift_hint(state: ClockState) -> str:
    """How a suspension ends, for `acqd plan` and `acqd status`."""
    s = state.suspension
    if s is None:
        return ""
    return (
        f"purges and transitions are judged by the trusted clock ({_day(state.calendar)}) instead of the wall "
        f"clock ({_day(state.last.wall)}): each file waits until the date in its warning has passed by the trusted "
        "clock; if the wall clock is right, run `acqd retention ack-clock --config FILE --reason TEXT`"
    )
