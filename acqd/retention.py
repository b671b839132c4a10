"""The retention runner: executes the planner's actions with guards, on a timer.

Guards, besides the planner's: the clock guard (`acqd.policy.clock`: every sweep reads the wall
clock and CLOCK_BOOTTIME, keeps the trusted calendar in the journal, applies operators'
acknowledgements, and plans at the effective time); the live object and the holds are re-checked
just before a delete and before a transition starts; a transition copies, verifies the new copy,
and only then deletes the old one; a sweep stops when too many of its actions fail; a warning that
cannot be delivered is retried at the next sweep and blocks the purge it announces (nothing is
recorded until the mail server took it).

What the runner reads and records goes through a `RetentionStore`: the daemon's journal
(`JournalStore`), or the facility catalog for `acqd hub` (acqd.facility.CatalogStore), whose
`fence` also refuses every destructive step once another hub replica holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from acqd import holdledger
from acqd import journal as jr
from acqd.crash import crash_point
from acqd.errors import AcqdError, FenceError, NameTakenError, PermanentError
from acqd.journal import Journal
from acqd.layouts import reading_layout
from acqd.mounts import describe_tier as describe_unmounted
from acqd.mounts import unmounted_mount_point
from acqd.notify import Digests, Mailer, template_error
from acqd.policy.clock import ClockState, Reading, acknowledge, advance
from acqd.policy.model import DAY, Policy
from acqd.policy.planner import NOBODY_TO_WARN, OVER_CAPS, Action, Hold, Item, Warning_, plan_stream
from acqd.ports import Reporter
from acqd.recheck import check_copy
from acqd.storage import Tier
from acqd.storage.errors import DestinationError
from acqd.values import Outcome

log = logging.getLogger("acqd.retention")
T = TypeVar("T")


#: a local tier's folder, or the nearest folder above it while it does not exist yet: (path, device, inode)
Folders = dict[str, tuple[str, int, int]]


NO_SMTP = "no smtp: configured (written to the local mailbox only)"


@dataclass
class SweepResult:
    now: float
    warned: int = 0
    digests: int = 0
    transitioned: int = 0
    purged: int = 0
    purged_bytes: int = 0
    blocked: int = 0
    blocked_why: dict[str, int] = field(default_factory=dict)  # `blocked_reason` -> how many
    failed: int = 0
    tried: int = 0  # moves and purges tried (of which `failed` failed: the sweep's error ratio)
    suspended: str = ""
    clock: ClockState | None = None
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first few failures, as the log says them

    def failure(self, text: str) -> None:
        self.failed += 1
        if len(self.errors) < 3:
            self.errors.append(text)

    def summary(self) -> dict[str, Any]:
        """What `acqd status` shows of the last sweep."""
        keys = ("now", "warned", "digests", "transitioned", "purged", "blocked", "blocked_why", "failed")
        return {k: getattr(self, k) for k in (*keys, "suspended", "errors")}

    def block(self, reason: str, n: int = 1) -> None:
        self.blocked += n
        why = blocked_reason(reason)
        self.blocked_why[why] = self.blocked_why.get(why, 0) + n


def blocked_reason(reason: str) -> str:
    """A blocked action's reason as `acqd status` and the sweep's line count it: a few kinds, not
    one line per file (a "0 failed, 2 blocked" sweep said nothing of warnings that reached nobody: a
    stranger's walk through the README)."""
    if reason == NOBODY_TO_WARN:
        return "nobody to warn (set owners.fallback, or owners.emails for their owners)"
    if reason == NO_SMTP:
        return "their warnings went to the local mailbox only (no smtp: configured): purges wait"
    if reason == OVER_CAPS:
        return OVER_CAPS
    if "held back: hold until" in reason or " held back: " in reason:
        return "held (acqd hold)"
    return "clock guard: " + reason if "clock" in reason else reason


def read_clock() -> Reading:
    """The wall clock, the kernel's boot id and CLOCK_BOOTTIME (never stepped; counts suspend)."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = ""  # no boot id: every interval is judged as if across a reboot
    return Reading(time.time(), boot_id, time.clock_gettime(time.CLOCK_BOOTTIME))


def simulated(now: float) -> Reading:
    """A reading of a clock that is right at `now` (tests, `acqd plan --now`): its boot time follows the wall."""
    return Reading(now, "simulated", now)


@dataclass(frozen=True)
class ClockView:
    before: ClockState | None
    after: ClockState
    acks: list[tuple[int, float, str, float, str, str]]


#: a store's batch of copies: the planner's items, their rows by copy id, their delivered warnings
Batch = tuple[list[Item], Mapping[int, jr.RetentionRow], list[Warning_]]


class RetentionStore(Protocol):
    """Where retention reads its items, warnings, holds and clock, and records what it did.
    Blocking: the runner calls every method on its store executor (`jexec`)."""

    def warned_since(self) -> float | None:
        """The earliest purge date a delivered warning (not called off) announces for a copy
        retention manages (or for any of a superset of them), None if there is none."""
        ...

    def batches(self, size: int) -> Iterator[Batch]:
        """The verified copies retention manages, in the planner's order ((verified_at, id)), about
        `size` at a time: (the planner's items, their rows by copy id, their delivered warnings).
        Generated lazily: a store over a large catalog holds one batch."""
        ...

    def known_on(self, tier: str) -> bool:
        """Whether copies were ever recorded on `tier` (it is in use, not new)."""
        ...

    def holds_ended_after(self, since: float) -> list[Hold]: ...

    def active_holds(self, now: float) -> list[Hold]: ...

    def clock_state(self) -> dict[str, Any] | None: ...

    def last_sweep(self) -> float | None: ...

    def note_sweep(self, summary: dict[str, Any]) -> None:
        """Keep what the last sweep did and what failed (`acqd status` shows it)."""
        ...

    def set_clock_state(self, doc: dict[str, Any], audit: str | None = None, **detail: Any) -> None: ...

    def pending_clock_acks(self) -> list[tuple[int, float, str, float, str, str]]: ...

    def clock_ack_applied(self, ack_id: int, now: float, **detail: Any) -> None: ...

    def void_warnings(self, copy_id: int, now: float, reason: str) -> int: ...

    def record_warnings(self, copy_ids: list[int], recipient: str, purge_at: dict[int, float], now: float) -> None: ...

    def audit(self, file_id: int | None, action: str, **detail: Any) -> None: ...

    def add_copy(self, row: jr.RetentionRow, tier: str, now: float) -> int: ...

    def mark_copy(self, copy_id: int, state: str, action: str, **detail: Any) -> None: ...

    def fence(self, kind: str, copy_id: int | None) -> bool:
        """Just before a step that changes storage or sends mail: raise FenceError if this process
        may no longer act (another hub took the lease). With a copy: the step is recorded as begun;
        True if it had been begun before and never finished (a sweep killed in the middle)."""
        ...


class JournalStore:
    """The daemon's journal as a RetentionStore."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def warned_since(self) -> float | None:
        return jr.earliest_warned(self.journal)

    def known_on(self, tier: str) -> bool:
        return self.journal.has_copies(tier)

    def batches(self, size: int) -> Iterator[Batch]:
        """The journal's copies in one batch (a daemon's journal is its own, and local)."""
        rows = jr.retention_items(self.journal)
        items = sorted(items_of(rows), key=lambda i: (i.verified_at, i.id))
        ws = [Warning_(c, p, t, r) for c, p, t, r in jr.delivered_warnings(self.journal)]
        yield items, {r.copy.id: r for r in rows}, ws

    def holds_ended_after(self, since: float) -> list[Hold]:
        return [Hold(t, u, why, root) for t, u, why, root in jr.holds_ended_after(self.journal, since)]

    def active_holds(self, now: float) -> list[Hold]:
        return [Hold(t, u, why, root) for t, u, why, root in jr.active_holds(self.journal, now)]

    def clock_state(self) -> dict[str, Any] | None:
        return jr.clock_state(self.journal)

    def last_sweep(self) -> float | None:
        return jr.last_sweep(self.journal)

    def note_sweep(self, summary: dict[str, Any]) -> None:
        self.journal.set_meta(jr.LAST_SWEEP_RESULT, json.dumps(summary))

    def set_clock_state(self, doc: dict[str, Any], audit: str | None = None, **detail: Any) -> None:
        jr.set_clock_state(self.journal, doc, audit, **detail)

    def pending_clock_acks(self) -> list[tuple[int, float, str, float, str, str]]:
        return jr.pending_clock_acks(self.journal)

    def clock_ack_applied(self, ack_id: int, now: float, **detail: Any) -> None:
        jr.clock_ack_applied(self.journal, ack_id, now, **detail)

    def void_warnings(self, copy_id: int, now: float, reason: str) -> int:
        return jr.void_warnings(self.journal, copy_id, now, reason)

    def record_warnings(self, copy_ids: list[int], recipient: str, purge_at: dict[int, float], now: float) -> None:
        jr.record_warnings(self.journal, copy_ids, recipient, purge_at, now)

    def audit(self, file_id: int | None, action: str, **detail: Any) -> None:
        self.journal.audit(file_id, action, **detail)

    def add_copy(self, row: jr.RetentionRow, tier: str, now: float) -> int:
        c = row.copy
        new = jr.add_copy(self.journal, row.file.id, tier, c.dest, c.layout, c.as_result(), now, c.verified_at or now)
        jr.carry_warnings(self.journal, c.id, new)  # the announced purge goes with the file
        return new

    def mark_copy(self, copy_id: int, state: str, action: str, **detail: Any) -> None:
        jr.mark_copy(self.journal, copy_id, state, action, **detail)

    def fence(self, kind: str, copy_id: int | None) -> bool:
        # one daemon, one journal: nobody else acts on its copies; the step is recorded as begun so
        # that a sweep killed between a delete and its record is known for what it was at the next
        # (a purge was recorded `missing`, the file counted verified with no copy: a stranger's review)
        return jr.begin_step(self.journal, kind, copy_id)


def _store(j: Journal | RetentionStore) -> RetentionStore:
    return JournalStore(j) if isinstance(j, Journal) else j


def project_clock(j: Journal | RetentionStore, policy: Policy, reading: Reading) -> ClockView:
    """Blocking: the clock guard's state once `reading` and the pending acknowledgements are taken in."""
    store = _store(j)
    g = policy.spec.guards
    doc = store.clock_state()
    before: ClockState | None
    if doc is not None:
        before = ClockState.from_json(doc)
    else:
        ls = store.last_sweep()  # a journal from before the clock guard: its last sweep, from another boot
        before = ClockState(Reading(ls, "", 0.0), 0.0, ls, 0.0) if ls is not None else None
    after = advance(before, reading, g.maxClockJumpForward, g.maxClockJumpBackward)
    acks = store.pending_clock_acks()
    for _, wall, boot, boottime, _, _ in acks:
        after = acknowledge(after, Reading(wall, boot, boottime), g.maxClockJumpForward, g.maxClockJumpBackward)
    return ClockView(before, after, acks)


def items_of(rows: list[jr.RetentionRow]) -> list[Item]:
    """The planner's items for the journal's stored copies (also what the owner page shows)."""
    return [
        Item(
            id=r.copy.id,
            relpath=r.file.relpath,
            session=r.file.session,
            detector=r.file.detector,
            tier=r.copy.tier,
            size=r.copy.stored_bytes,
            verified_at=r.copy.verified_at or r.copy.stored_at,
            root=r.file.root,
        )
        for r in rows
    ]


#: copies planned at a time from a store (rows of a server-side cursor over the facility catalog)
BATCH = 10_000
#: what the runner needs of a copy it acts on (a `void` needs only the copy's id)
_ACTS = ("warn", "transition", "purge")


def plan_from_journal(
    j: Journal | RetentionStore,
    policy: Policy,
    now: float,
    clock: ClockState | None = None,
    batch: int = BATCH,
) -> tuple[list[Action], dict[int, jr.RetentionRow]]:
    """Blocking: the planner's view of the journal (or another store: copies, holds, delivered
    warnings), planned at `now`, or at the clock state's effective time. The copies are streamed
    from the store in batches, oldest first, through `plan_stream`: the same actions as one `plan`
    over all of them, and in its order (its purges, and those the caps hold back, last). Returns
    the actions and the rows of the copies they warn about, move or purge: memory follows one
    batch and the sweep's actions, never the size of the catalog."""
    store = _store(j)
    t = clock.effective if clock is not None else now
    since = store.warned_since()
    holds = store.holds_ended_after(min(since, t) if since is not None else t)
    current: list[Mapping[int, jr.RetentionRow]] = [{}]

    def chunks() -> Generator[tuple[list[Item], list[Warning_]]]:
        for items, rows, warnings in store.batches(batch):
            current[0] = rows  # plan_stream plans a chunk whole before it asks for the next one
            yield items, warnings

    first: list[Action] = []
    last: list[Action] = []  # as `plan` lists them: purges and the purges over the caps after the rest
    rows: dict[int, jr.RetentionRow] = {}
    gen = chunks()
    try:
        for a in plan_stream(now, gen, policy, holds, clock=clock):
            if a.kind in _ACTS:
                rows[a.item.id] = current[0][a.item.id]
            (last if a.kind == "purge" or a.reason == OVER_CAPS else first).append(a)
    finally:
        gen.close()  # a store's cursor and its transaction end here, even if planning failed
    return first + last, rows


def holds_since(j: Journal | RetentionStore, warnings: list[Warning_], now: float) -> list[Hold]:
    """The holds in force at `now` and those that ended after the earliest date a warning announced
    (a released hold ends at its release): what the planner needs to tell whether a hold outlived a
    warned date."""
    since = min((w.purge_at for w in warnings), default=now)
    return _store(j).holds_ended_after(min(since, now))


def holds_at(j: Journal | RetentionStore, now: float) -> list[Hold]:
    return _store(j).active_holds(now)


class RetentionRunner:
    def __init__(
        self,
        *,
        policy: Policy,
        journal: Journal | None = None,
        jexec: Executor,
        io: ThreadPoolExecutor,
        tiers: dict[str, Tier],
        mailer: Mailer,
        digests: Digests,
        reporter: Reporter,
        instrument: str,
        sender: str,
        contact: str,
        hold_args: tuple[str, ...] = (),
        clock: Callable[[], Reading] = read_clock,
        links: Callable[[str, float], tuple[str, str, float]] | None = None,
        store: RetentionStore | None = None,
        guard: Callable[[Tier, bool], None] | None = None,
        markers: bool = False,
    ) -> None:
        if store is None:
            assert journal is not None, "a journal or a store"
            store = JournalStore(journal)
        self.policy = policy
        self.store = store
        self.jexec = jexec
        self.io = io
        self.tiers = tiers
        self.mailer = mailer
        self.digests = digests
        self.reporter = reporter
        self.instrument = instrument
        self.sender = sender
        self.contact = contact
        self.hold_args = hold_args  # how this daemon's journal is named on a command line (--config FILE)
        self.clock = clock
        self.links = links  # owner, now -> (a signed link to the owner page, its id, its expiry)
        self.last_clock: ClockState | None = None  # the clock guard's state at the last plan
        self._reported = False  # a suspension was reported (event, metric) by this process
        #: the daemon's claim guard (acqd.claims.Guard): before a transition or a purge touches a tier,
        #: its claim is looked at afresh. A network share unmounted under the daemon is an empty folder
        #: on the local disk: a transition would fill it (the copy hidden once the share mounts again,
        #: the old copy deleted) and a purge would find nothing and forget the copy. The action fails
        #: and is retried at the next sweep instead.
        self.guard = guard
        #: without claims (the facility hub): each local tier must hold its marker (TIER_MARKER), put
        #: there once by the operator with the share mounted (`acqd hub mark-tier`): a positive sign
        #: that the folder is the share, where "not empty" is not one (a mount point with a stray file
        #: in it, a tier's first use with its share not mounted)
        self.markers = markers
        self._in_use: set[str] = set()  # local tiers with copies recorded on them (acqd.retention._mounted)
        self._folders: Folders = {}  # each local tier's folder at this sweep's first look (`_still_ours`)

    async def _j(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.jexec, partial(fn, *args, **kw))

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io, partial(fn, *args))

    async def _still_ours(self, *tiers: Tier, sweep: bool = True) -> None:
        """Raises (a storage or claim error: the action fails) unless every tier is still the one
        this daemon claimed. The facility hub keeps no claims: a local tier (a share mounted on the
        hub's host) whose folder is missing or empty while copies were recorded there is a share
        not mounted, never written to nor its copies taken for gone; and a local tier whose folder
        is not the one it was at the sweep's first look (a share unmounted or mounted during the
        sweep: the mount point is another folder) fails the action (FolderChanged). The hub needs
        the second look: a copy made into an unmounted share's empty mount point fills it, and a
        folder that is not empty passes the first. `sweep=False` (hold records synced before or
        between sweeps): the first look only."""
        for tier in tiers:
            if tier.local and sweep:  # first: the most telling (a move takes back what it made then)
                before = self._folders.get(tier.name)
                now = await self._io(_folder, tier, before[0] if before else None)
                if before is None:
                    self._folders[tier.name] = now
                elif now != before:
                    raise FolderChanged(
                        tier.name,
                        f"tier {tier.name}: {before[0]} is not the folder it was when this sweep began (a network "
                        "share unmounted or mounted meanwhile?): nothing is recorded or deleted there until the "
                        "next sweep",
                    )
            if self.guard is not None:
                await self._io(self.guard, tier, True)
            elif tier.local and (tier.name in self._in_use or await self._j(self.store.known_on, tier.name)):
                self._in_use.add(tier.name)  # copies recorded there stay recorded: asked once per runner
                await self._io(_mounted, tier)
            if self.guard is None and self.markers and tier.local:
                await self._io(check_marker, tier)

    def _emit(self, kind: str, row: jr.RetentionRow, **kw: Any) -> None:
        f = row.file
        self.reporter.outcome(
            Outcome(
                kind=kind,
                relpath=f.relpath,
                session=f.session,
                detector=f.detector,
                version=f.version,
                source_bytes=row.copy.source_bytes,
                tier=row.copy.tier,
                dest=self.tiers[row.copy.tier].url(row.copy.dest) if row.copy.tier in self.tiers else row.copy.dest,
                root=f.root,
                **kw,
            )
        )

    async def plan(self, now: float | Reading | None = None) -> tuple[list[Action], dict[int, jr.RetentionRow], float]:
        """Take a clock reading into the guard's state (kept in the journal), then plan at its
        effective time. `now` as a number: a clock that is right at that time (tests)."""
        reading = self.clock() if now is None else simulated(now) if isinstance(now, int | float) else now
        await self.sync_holds()
        view = await self._j(project_clock, self.store, self.policy, reading)
        await self._note_clock(view)
        actions, by_copy = await self._j(plan_from_journal, self.store, self.policy, 0.0, view.after)
        self.last_clock = view.after
        return self._on_named_tiers(actions, by_copy), by_copy, view.after.effective

    def _on_named_tiers(self, actions: list[Action], by_copy: dict[int, jr.RetentionRow]) -> list[Action]:
        """The actions on copies whose tier the configuration names. A copy on a tier taken out of
        acqd.yaml can be neither looked at nor deleted: no warning announces a purge that cannot come
        (nor with a place no owner can find), and nothing is moved or purged; said once per sweep."""
        away: dict[str, int] = {}
        kept = []
        for a in actions:
            row = by_copy.get(a.item.id)
            if row is not None and row.copy.tier not in self.tiers and a.kind in ("warn", "transition", "purge"):
                away[row.copy.tier] = away.get(row.copy.tier, 0) + 1
                continue
            kept.append(a)
        for tier, n in sorted(away.items()):
            log.warning(
                "retention: %d action(s) on copies on tier %s, which acqd.yaml no longer names: left as they are "
                "(no warning, move or purge) until the tier is named again",
                n,
                tier,
            )
        return kept

    async def sync_holds(self) -> None:
        """The journal's holds and the hold records on the tiers, made whole both ways
        (acqd.holdledger): a journal restored from a backup gets back the holds placed since, and a
        tier that missed a record gets it. A daemon's journal only (the hub keeps holds in the catalog)."""
        if not isinstance(self.store, JournalStore):
            return
        j, tiers = self.store.journal, list(self.tiers.values())
        seen, problems = await self._io(holdledger.read_tiers, tiers, self.instrument)
        for t in tiers:  # a tier that is not the one claimed (an empty mount point): as if unread,
            if t.name in seen:  # so that nothing is written there and its silence means nothing
                try:
                    await self._still_ours(t, sweep=False)
                except AcqdError as exc:
                    del seen[t.name]
                    problems.append(f"tier {t.name}: hold records not read: {exc}")
        got = await self._j(holdledger.to_journal, j, seen, len(tiers))
        mine = await self._j(holdledger.journal_holds, j)
        _written, more = await self._io(holdledger.to_tiers, mine, tiers, self.instrument, seen)
        for h in got.restored:
            where = f"{h.root.rstrip('/')}/{h.target}" if h.root else h.target
            log.warning(
                "retention: the hold on %s (until %s: %s) was missing from the journal; put back from the hold "
                "records at the destination",
                where,
                _day(h.until),
                h.reason,
            )
            self.reporter.outcome(
                Outcome(
                    kind="retention.hold_restored",
                    relpath=h.target,
                    session="",
                    detector="",
                    reason=h.reason,
                    dest=h.root,
                )
            )
        for h in got.released:
            log.warning("retention: the hold on %s was released elsewhere since the journal's backup", h.target)
        for h in got.ignored_releases:
            log.warning(
                "retention: the hold on %s stays in force: a record at the destination says it was released, but "
                "not on every tier (a journal restored from before a release, or a record written by someone "
                "else); release it again with `acqd hold --release` if that is meant",
                h.target,
            )
        for p in problems + more:
            log.warning("retention: %s (the journal keeps the holds; tried again at the next sweep)", p)

    async def report_standing_suspension(self) -> None:
        """At start: a suspension the journal keeps from an earlier run is reported now (the gauge,
        an event, the log), not only at the first sweep an interval later."""
        doc = await self._j(self.store.clock_state)
        if doc is None:
            return
        st = ClockState.from_json(doc)
        if st.suspension is not None and not self._reported:
            log.error("retention: purges and transitions are suspended (the clock guard, since an earlier run)")
            self._emit_clock("retention.clock_suspended", "suspended since an earlier run")
            self._reported = True

    async def _note_clock(self, view: ClockView) -> None:
        """Keep the clock state; log, audit, report what changed (a suspension, its end, an ack)."""
        st, was = view.after, view.before.suspension if view.before is not None else None
        audit: str | None = None
        detail: dict[str, Any] = {"wall": st.last.wall, "trusted": st.calendar, "skew": round(st.skew, 3)}
        if st.suspension is not None and (was is None or not self._reported):
            if was is None:
                audit = "retention.clock.suspended"
            log.error("retention: %s; purges and transitions now wait for the trusted clock", st.suspension.reason)
            self._emit_clock("retention.clock_suspended", st.suspension.reason)
        elif st.suspension is None and was is not None:
            audit = "retention.clock.lifted"
            how = "acknowledged" if view.acks else "the wall clock agrees with the trusted clock again"
            log.warning("retention: clock suspension lifted (%s)", how)
            self._emit_clock("retention.clock_lifted", how)
        self._reported = st.suspension is not None
        await self._j(self.store.set_clock_state, st.to_json(), audit, **detail)
        for ack_id, wall, _, _, reason, who in view.acks:
            await self._j(self.store.clock_ack_applied, ack_id, st.last.wall, who=who, reason=reason, wall=wall)
            log.warning("retention: the wall clock was acknowledged by %s (%s); purges follow it again", who, reason)
            self._emit_clock("retention.clock_acknowledged", f"{who}: {reason}")

    def _emit_clock(self, kind: str, reason: str) -> None:
        self.reporter.outcome(Outcome(kind=kind, relpath="", session="", detector="", reason=reason))

    async def sweep(self, now: float | Reading | None = None) -> SweepResult:
        actions, by_copy, t = await self.plan(now)
        res = await self.execute(actions, by_copy, t)
        try:
            await self._j(self.store.note_sweep, res.summary())
        except Exception as exc:  # a record for `acqd status` only (the state disk full): never the sweep's failure
            log.warning("retention: the last sweep's outcome not kept for `acqd status`: %s", exc)
        return res

    async def execute(self, actions: list[Action], by_copy: dict[int, jr.RetentionRow], now: float) -> SweepResult:
        """Carry out a plan made at `now` (the effective time); holds and live objects are re-checked."""
        res = SweepResult(now=now, actions=actions, clock=self.last_clock)
        self._folders = {}  # looked at afresh: a share mounted again since the last sweep is its folder now
        for a in actions:
            if a.kind == "blocked":
                res.block(a.reason)
        nobody = [a for a in actions if a.kind == "blocked" and a.reason == NOBODY_TO_WARN]
        if nobody:  # one line a sweep (the plan says it per file)
            log.error(
                "retention: %d file(s) have nobody to warn (first: %r): set owners.fallback, or owners.emails for "
                "their owners; their purges stay blocked",
                len(nobody),
                nobody[0].item.relpath,
            )
        for a in actions:
            if a.kind == "void":
                await self._j(self.store.void_warnings, a.item.id, now, a.reason)
                log.info("retention: %s: %s", a.item.relpath, a.reason)
        # the moves first, then the warnings, then the purges: a warning names where the data is once this
        # sweep's moves are done (it named a move's tier before the move, which then failed: the folder it
        # sent the owner to held other bytes, a stranger's review)
        moved: dict[int, int] = {}  # the copies this sweep moved: their new copies' ids
        stopped = await self._carry_out([a for a in actions if a.kind == "transition"], by_copy, now, res, moved)
        if stopped:
            return res
        # a warning is stamped with the trusted calendar (see acqd.policy.planner: never behind real time)
        sent = max(now, self.last_clock.stamp) if self.last_clock is not None else now
        try:
            await self._warn(sent, [a for a in actions if a.kind == "warn"], by_copy, res, moved)
        except FenceError as exc:
            res.suspended = str(exc)
            log.error("retention: %s; sweep stopped", exc)
            return res
        if not res.suspended:
            await self._carry_out([a for a in actions if a.kind == "purge"], by_copy, now, res, moved)
        log.info(
            "retention sweep: %d warned in %d digest(s), %d moved, %d purged (%d bytes), %d blocked, %d failed",
            res.warned,
            res.digests,
            res.transitioned,
            res.purged,
            res.purged_bytes,
            res.blocked,
            res.failed,
        )
        for why, n in sorted(res.blocked_why.items()):
            log.info("retention sweep: %d blocked: %s", n, why)
        return res

    async def _carry_out(
        self,
        acts: list[Action],
        by_copy: dict[int, jr.RetentionRow],
        now: float,
        res: SweepResult,
        moved: dict[int, int],
    ) -> bool:
        """The sweep's moves or purges, one at a time, until `suspendErrorRatio` of the sweep's moves and
        purges failed (`res.suspended`); each item moved goes into `moved` (its new copy's id). True when the sweep
        must stop at once (another journal took the instrument: `FenceError`)."""
        limit = self.policy.spec.guards.suspendErrorRatio
        for a in acts:
            if res.tried >= 5 and res.failed / res.tried > limit:
                res.suspended = f"{res.failed} of {res.tried} actions failed: sweep suspended"
                log.error("retention: %s", res.suspended)
                return False
            res.tried += 1
            row = by_copy[a.item.id]
            try:
                if await self._held(a, row, now):  # a hold placed since the plan: blocked, as if planned so
                    res.block("held back: hold until")
                    continue
                if a.kind == "transition":
                    new = await self._transition(a, row, now)
                    if new is not None:
                        res.transitioned += 1
                        moved[a.item.id] = new
                else:
                    if await self._purge(a, row, now):
                        res.purged += 1
                        res.purged_bytes += a.item.size
            except FenceError as exc:
                res.suspended = str(exc)
                log.error("retention: %s; sweep stopped", exc)
                return True
            except AcqdError as exc:
                res.failure(f"{a.kind} of {row.file.relpath}: {exc}")
                log.warning("retention %s of %r failed: %s", a.kind, row.file.relpath, exc)
                await self._j(self.store.audit, row.file.id, f"retention.{a.kind}.failed", reason=str(exc))
                self._emit("retention.failed", row, stage=a.kind, reason=str(exc))
        return False

    def hold_command(self, session: str, until: float, recipient: str, instrument: str = "") -> str:
        """The `acqd hold` command line that keeps `session`, ready to paste."""
        args = ["acqd", "hold", session, "--until", _day(until), "--reason", f"asked by {recipient}", *self.hold_args]
        if instrument:  # the facility hub's digest: sessions of several instruments
            args += ["--instrument", instrument]
        if session.startswith("-"):  # a name that would be read as an option: after `--`
            args = [*args[:2], *args[3:], "--", session]
        return shlex.join(args)

    async def _warn(
        self,
        now: float,
        warns: list[Action],
        by_copy: dict[int, jr.RetentionRow],
        res: SweepResult,
        moved: dict[int, int] | None = None,
    ) -> None:
        """One digest per recipient, listing sessions; recorded only once the server accepted it."""
        per: dict[str, list[Action]] = defaultdict(list)
        for a in warns:  # each has somebody to warn (the planner blocks the purges of nobody's files)
            for r in a.recipients:
                per[r].append(a)
        for recipient, acts in sorted(per.items()):
            sessions: dict[tuple[str, float, str], dict[str, Any]] = {}
            # the files, not their copies: a file on two tiers (a move whose delete of the old copy failed)
            # is listed at both places, and counted once in the total (it was counted twice: a review)
            files: set[tuple[str, int]] = set()
            owner_links: dict[str, tuple[str, str, float]] = {}
            for a in acts:
                owner = self.policy.spec.owners.owner_of(a.item.relpath)
                if self.links is not None and owner and owner not in owner_links:
                    owner_links[owner] = self.links(owner, now)
                row = by_copy[a.item.id]
                # a file at the top of its watch root is a session of its own: its line names the file,
                # and its command keeps that file (`acqd hold .` is refused: the whole watch root)
                top = "/" not in row.file.relpath
                what = row.file.relpath if top else a.item.session
                label = f"{a.item.instrument}/{what}" if a.item.instrument else what
                # where the data is: on `a.tier` if this sweep moved it there (the mail named the tier it had
                # just left: a review), else where it was (a move that failed: the mail named the folder of
                # the move's tier, which held other bytes: a review)
                on = a.tier if a.tier and a.item.id in (moved or ()) else row.copy.tier
                tier = self.tiers.get(on)
                where = self._session_folder(row, on) if not top else tier.url(row.copy.dest) if tier else row.copy.dest
                key = (label, a.at, where)  # one line per session folder: two roots' sessions of one name apart
                s = sessions.setdefault(
                    key,
                    {
                        "session": label,
                        "files": 0,
                        "bytes": 0,
                        "purge_at": a.at,
                        "rule": a.rule,
                        "where": where,
                        "hold_command": self.hold_command(what, a.at + 90 * DAY, recipient, a.item.instrument),
                        "owner": owner or "",
                        "link": owner_links[owner][0] if owner in owner_links else "",
                    },
                )
                files.add((a.item.instrument, row.file.id))
                s["files"] += 1
                s["bytes"] += a.item.size
            emails = self.policy.spec.owners.emails
            # the fallback (or an address a rule names) gets other people's data: it is told whose
            not_own = [s["owner"] for s in sessions.values() if emails.get(s["owner"]) != recipient]
            others = sorted({o or "owner unknown" for o in not_own if not emails.get(o)})
            copied = sorted({o for o in not_own if emails.get(o)})  # warned at their own address too
            problem: AcqdError | None = None
            try:
                msg = self.digests.render(
                    instrument=self.instrument,
                    recipient=recipient,
                    others=others,
                    copied=copied,
                    sender=self.sender,
                    sessions=sorted(sessions.values(), key=lambda s: (s["purge_at"], s["session"])),
                    now=now,
                    contact=self.contact,
                    links=[(o, url, exp) for o, (url, _, exp) in sorted(owner_links.items())],
                    files=len(files),
                )
            except Exception as exc:  # a customised template broken: not sent, as with an SMTP server down
                problem = AcqdError(template_error(exc))
            if problem is None:
                await self._j(self.store.fence, "warn", None)
                try:
                    await self.mailer.send(msg)
                except AcqdError as exc:
                    problem = exc
                except OSError as exc:  # a mailbox file that cannot be written (its disk full)
                    problem = AcqdError(f"{type(exc).__name__}: {exc}")
            if problem is not None:
                res.failure(f"warning to {recipient} not delivered: {problem}")
                log.warning(
                    "retention warning to %s not delivered (retried next sweep; its purges wait): %s",
                    recipient,
                    problem,
                )
                for a in acts:  # an event and a metric per file warned about: its purge waits
                    self._emit(
                        "retention.failed", by_copy[a.item.id], stage="warn", reason=f"to {recipient}: {problem}"
                    )
                continue
            ids = [a.item.id for a in acts]
            if not getattr(self.mailer, "delivers", True):  # the local mailbox: nobody was told, nothing purged
                res.block(NO_SMTP, len(ids))
                log.error(
                    "retention: the warning to %s about %d file(s) went to the local mailbox only (no smtp: "
                    "configured): not delivered, so their purges wait; configure smtp: to warn owners",
                    recipient,
                    len(ids),
                )
                for a in acts:
                    self._emit(
                        "retention.failed", by_copy[a.item.id], stage="warn", reason=f"to {recipient}: {NO_SMTP}"
                    )
                continue
            for o, (_, link_id, exp) in sorted(owner_links.items()):
                await self._j(
                    self.store.audit, None, "owner-page.link", owner=o, link=link_id, expires=exp, recipient=recipient
                )
            # recorded for the copy the file has now: one this sweep moved has a new id (filed under the old,
            # the moved copy's, the file was warned again the next day for a later date: a review of the diff)
            ids = [(moved or {}).get(i, i) for i in ids]
            at = {(moved or {}).get(a.item.id, a.item.id): a.at for a in acts}
            await self._j(self.store.record_warnings, ids, recipient, at, now)
            res.digests += 1
            res.warned += len(ids)
            for a in acts:
                self._emit("retention.warned", by_copy[a.item.id], reason=f"{recipient}: {a.reason}")

    def _session_folder(self, row: jr.RetentionRow, on: str | None = None) -> str:
        """Where a copy's session lies on its tier (a URL): the folder of the session's files, not of
        this one file (a warning names the place an owner copies from: a subfolder would be part of
        it), under the copy's own root's prefix; on tier `on` (default: the copy's)."""
        dest_dir = row.copy.dest.rpartition("/")[0]
        rel_dir = row.file.relpath.rpartition("/")[0]
        session = row.file.relpath.partition("/")[0] if rel_dir else ""
        folder = dest_dir
        if rel_dir and dest_dir.endswith("/" + rel_dir):
            folder = dest_dir[: len(dest_dir) - len(rel_dir)] + session
        tier = self.tiers.get(on or row.copy.tier)
        return tier.url(folder) if tier is not None else folder

    def _layout(self, row: jr.RetentionRow) -> Any:
        return reading_layout(row.copy.layout, row.copy.codec)

    def _tree(self, row: jr.RetentionRow) -> bool:
        """Whether the copy is a folder of objects (a Zarr store) rather than one object: from its
        layout, as recorded, never from what the backend says is under its name."""
        return bool(self._layout(row).suffix == ".zarr")

    def _still_the_copy(self, tier: Tier, row: jr.RetentionRow) -> str | None:
        """Blocking: None if the object under the copy's name is still the one verified, as far as
        the quick re-check before a release tells (acqd.recheck: its size, or a tree's total size
        and its root metadata, and the checksum the tier keeps with the object where it keeps
        one, as on S3); otherwise why not. Checked just before a delete: an object put there since
        (a re-export, a restore from elsewhere, another file) is not the copy retention was told to
        delete. No read-back: a purge does not read what it deletes."""
        rel = row.copy.dest
        if self._tree(row):
            if tier.is_partial_tree(rel):
                return "not the Zarr store that was verified (no root zarr.json)"
            size = tier.stored_size(rel)
            if size is None:
                return "not the Zarr store that was verified (no root zarr.json)"
            # fewer bytes: a delete of it cut short (its root goes last) or shards lost: still this
            # copy, and deleted; more: objects put in it since, not only what was verified
            if size > row.copy.stored_bytes:
                return f"{GROWN_STORE}: {size} bytes, the verified store had {row.copy.stored_bytes}"
            return None
        if tier.size(rel) is None:
            return None  # gone meanwhile: nothing to delete
        return check_copy(tier, self._layout(row), row.copy, full=False, just_verified=True).problem

    async def _held(self, a: Action, row: jr.RetentionRow, now: float) -> bool:
        """Re-read the holds: one placed since the plan (by `acqd hold` in another process) wins."""
        holds = await self._j(holds_at, self.store, now)
        if any(h.covers(a.item, now) for h in holds):
            what = "purged" if a.kind == "purge" else "moved"
            log.info("retention: %r was put on hold since the plan; not %s", row.file.relpath, what)
            await self._j(self.store.audit, row.file.id, f"retention.{a.kind}.held", copy=row.copy.id)
            return True
        return False

    async def _transition(self, a: Action, row: jr.RetentionRow, now: float) -> int | None:
        """Copy to the new tier, verify the new copy, record it, and only then delete the old one (the
        caller has re-read the holds: `_held`). The new copy's id, or None if nothing was moved."""
        src, dst = self.tiers[row.copy.tier], self.tiers[a.tier]
        await self._still_ours(src, dst)
        rel = row.copy.dest
        resumed = await self._j(self.store.fence, "transition", row.copy.id)
        if not await self._io(src.exists, rel) and (resumed or await self._io(dst.exists, rel)):
            # a sweep killed after deleting the old copy (the hub's fence says so; a daemon's journal
            # has no fence, the new copy being there does): the new one verified before that; checked
            # again, then recorded (never recorded as moved without a new copy that verifies)
            try:
                await self._io(self._layout(row).verify, dst, rel, row.copy.as_result())
            except AcqdError as exc:  # said as the copy on the old tier gone (only the new tier was named: a review)
                raise PermanentError(
                    f"the copy on tier {src.name} is not there ({src.url(rel)}), and none on tier {dst.name} "
                    f"verifies ({exc}): nothing moved or recorded; `acqd verify` checks every copy and says "
                    "what is lost"
                ) from None
            new = await self._j(self.store.add_copy, row, dst.name, now)
            await self._j(
                self.store.mark_copy, row.copy.id, "moved", "retention.transitioned", to=dst.name, resumed=True
            )
            self._emit("retention.transitioned", row, reason=f"{src.name} -> {dst.name}")
            return new
        if await self._io(dst.shares_storage_with, src, rel):
            # the "new copy" would be the old one itself: verifying it passes, deleting the old one
            # deletes the only copy (the sweep logs, audits and counts the failure)
            raise PermanentError(
                f"tiers {src.name} and {dst.name} are the same storage ({dst.url(rel)} is {src.url(rel)}): "
                f"not moved, the copy stays on {src.name}; give tier {dst.name} a location of its own"
            )
        made: tuple[int, int] | None = None  # the object this move made (device, inode), if it made one
        wrote = False
        try:
            await self._io(copy_between, src, dst, rel, self._tree(row))
            wrote = True
            made = await self._io(_identity, dst, rel)
        except NameTakenError:
            # an object is already under this name on the new tier: a transition that crashed
            # before it was recorded, or somebody else's. Never replaced: it is taken as the new
            # copy only if it verifies below; otherwise the transition fails (and is retried).
            log.warning("retention: %s already on tier %s; checking whether it is this copy", rel, dst.name)
        seen = made if made is not None else await self._io(_identity, dst, rel)  # what is verified next
        try:
            await self._io(self._layout(row).verify, dst, rel, row.copy.as_result())
        except Exception:
            if wrote:  # the copy this move made does not verify (the old one damaged, a write gone wrong):
                # taken back, or it stood in the name's way and failed every later move for ever, untracked
                # (a stranger's review); the old copy stays, and the next sweep tries again
                await self._io(_drop_made, dst, rel, made, self._tree(row))
            raise
        # both tiers looked at again now: a share unmounted while the copy was made takes it into its
        # empty mount point, where it verifies; recorded there, the old copy deleted, the only copy
        # would be hidden once the share is back (found by a review, twelfth session); the hub keeps
        # no claims: each tier must still be the folder it was when the sweep began
        try:
            await self._still_ours(dst, src)  # the new tier first: a copy made into its mount point is taken back
        except FolderChanged as exc:
            if made is not None and exc.tier == dst.name:  # the copy just made is in a mount point: taken
                # back, with the folders it made, so that the tier's folder is empty again at the next
                # sweep's look; only the object this move made (a share mounted meanwhile shows another
                # object under the name: never touched); the old copy stays where it is
                await self._io(_take_back, dst, rel, made, self._tree(row))
            raise
        if seen is not None and await self._io(_identity, dst, rel) != seen:
            # the share went away and came back during the copy: the copy verified in the mount point
            # now hidden under it, and the name shows something else (or nothing)
            raise FolderChanged(
                dst.name,
                f"tier {dst.name}: {dst.url(rel)} is not the copy this move verified (a network share "
                "unmounted and mounted again meanwhile?): nothing is recorded or deleted; retried at the next sweep",
            )
        new = await self._j(self.store.add_copy, row, dst.name, now)
        await self._j(self.store.fence, "transition", row.copy.id)
        changed = await self._io(self._still_the_copy, src, row)
        if changed is not None:  # the new copy verified against the journal: the move stands, the
            # object now under the old name is somebody else's and stays
            log.warning(
                "retention: %s on tier %s is %s: moved, the object there is not deleted", rel, src.name, changed
            )
            await self._j(self.store.audit, row.file.id, "retention.delete-refused", copy=row.copy.id, reason=changed)
        else:
            await self._io(partial(src.remove_any, tree=self._tree(row)), rel)
        crash_point("retention_after_delete")
        await self._j(self.store.mark_copy, row.copy.id, "moved", "retention.transitioned", to=dst.name)
        self._emit("retention.transitioned", row, reason=f"{src.name} -> {dst.name}")
        return new

    async def _purge(self, a: Action, row: jr.RetentionRow, now: float) -> bool:
        """Delete a copy whose time has come (the caller has re-read the holds: `_held`); the live
        object is checked first."""
        tier = self.tiers[row.copy.tier]
        await self._still_ours(tier)
        resumed = await self._j(self.store.fence, "purge", row.copy.id)
        if not await self._io(tier.exists, row.copy.dest):
            await self._still_ours(tier)  # not gone: its share unmounted meanwhile
            if resumed:  # deleted by a sweep that was killed before it could record it: recorded now
                log.info("retention: %s was purged by an interrupted sweep; recorded now", row.copy.dest)
                await self._j(
                    self.store.mark_copy,
                    row.copy.id,
                    "purged",
                    "retention.purged",
                    rule=a.rule,
                    bytes=a.item.size,
                    resumed=True,
                )
                self._emit("retention.purged", row, reason=a.reason)
                return True
            await self._j(self.store.mark_copy, row.copy.id, "missing", "retention.missing")
            log.warning("retention: %s is already gone from tier %s", row.copy.dest, tier.name)
            return False
        changed = await self._io(self._still_the_copy, tier, row)
        if changed is not None and changed.startswith(GROWN_STORE):
            # objects put into the store since (napari's `labels/`, an analysis): what acqd wrote may
            # well be there still, and the additions are not retention's to delete; nor is the copy
            # lost: it stays tracked (restore, verify, status), the purge fails and is tried again
            raise AcqdError(
                f"{tier.url(row.copy.dest)} {changed}: objects were added to it since (labels, an analysis); not "
                "purged, the copy kept and still tracked: move the additions elsewhere (or delete the store by hand) "
                "and the next sweep purges it"
            )
        if changed is not None:
            # the verified copy is not there any more; what is there now is not retention's to delete
            log.warning(
                "retention: %s on tier %s is %s: not the copy verified, not deleted", row.copy.dest, tier.name, changed
            )
            await self._j(
                self.store.mark_copy, row.copy.id, "missing", "retention.missing", reason=f"replaced: {changed}"
            )
            return False
        await self._io(partial(tier.remove_any, tree=self._tree(row)), row.copy.dest)
        crash_point("retention_after_delete")
        await self._j(self.store.mark_copy, row.copy.id, "purged", "retention.purged", rule=a.rule, bytes=a.item.size)
        self._emit("retention.purged", row, reason=a.reason)
        return True


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class FolderChanged(DestinationError):
    """A local tier's folder is not the one it was at the sweep's first look."""

    def __init__(self, tier: str, message: str) -> None:
        super().__init__(message)
        self.tier = tier


#: why a copy's Zarr store is not what was verified: it holds more than acqd wrote (`_still_the_copy`)
GROWN_STORE = "holds more than the store verified"

#: the file that says a local tier's folder is the tier (the facility hub: `_still_ours`)
TIER_MARKER = "~acqd-tier.json"


def marker_path(tier: Tier) -> str:
    return os.path.join(tier.root, TIER_MARKER)


def mark_tier(tier: Tier, facility: str) -> str:
    """Blocking. Put the marker into a local tier's folder (which must exist: a share mounted); return
    its path. Done once per tier by the operator, with the share mounted."""
    if not tier.local:
        raise PermanentError(f"tier {tier.name} is not a local folder: it needs no marker")
    if not os.path.isdir(tier.root):
        raise DestinationError(f"tier {tier.name}: {tier.root} is not there: mount the share, then mark it")
    if (point := unmounted_mount_point(tier.root)) is not None:
        raise DestinationError(f"tier {tier.name}: {describe_unmounted(point)}; mount the share, then mark it")
    doc = {"tier": tier.name, "facility": facility, "marked": datetime.now(UTC).isoformat(timespec="seconds")}
    tier.write_atomic(TIER_MARKER, [json.dumps(doc, indent=1).encode() + b"\n"], replace=True, paced=False)
    return marker_path(tier)


def check_marker(tier: Tier) -> None:
    """Blocking. DestinationError unless a local tier's folder holds its marker, naming this tier (and
    is not below a mount point of fstab with nothing mounted: a marker put into the empty mount point
    by mistake does not make it the tier)."""
    if (point := unmounted_mount_point(tier.root)) is not None:
        raise DestinationError(f"tier {tier.name}: {describe_unmounted(point)}")
    path = marker_path(tier)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(65536))
    except FileNotFoundError:
        raise DestinationError(
            f"tier {tier.name}: no {TIER_MARKER} in {tier.root}: a network share not mounted? nothing is moved "
            f"there or purged from it until it is back (a new tier: mark it once, with its share mounted: "
            f"acqd hub mark-tier {tier.name})"
        ) from None
    except (OSError, ValueError) as exc:
        raise DestinationError(f"tier {tier.name}: {path} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or doc.get("tier") != tier.name:
        raise DestinationError(
            f"tier {tier.name}: {path} marks another tier ({doc.get('tier') if isinstance(doc, dict) else doc!r}): "
            "two tiers on one folder, or a share mounted in the wrong place? nothing is moved there or purged"
        )


def _identity(tier: Tier, rel: str) -> tuple[int, int] | None:
    """Blocking. (device, inode) of a local tier's object `rel` (a tree: its folder), None if none."""
    try:
        st = os.stat(tier.path(rel))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _drop_made(tier: Tier, rel: str, made: tuple[int, int] | None, tree: bool) -> None:
    """Blocking. Remove the copy a move made that did not verify: on a local tier only if `rel` is
    still that object (`_take_back`); on a remote one (no identity to compare: the name is in this
    instrument's claimed namespace, and the move has just written it). Errors are logged: the move
    has failed anyway, its old copy kept."""
    if tier.local:
        if made is not None:
            _take_back(tier, rel, made, tree)
        return
    try:
        tier.remove_any(rel, tree=tree)
    except Exception as exc:
        log.warning("retention: the copy made on tier %s that did not verify could not be removed: %s", tier.name, exc)


def _take_back(tier: Tier, rel: str, made: tuple[int, int], tree: bool) -> None:
    """Blocking. Remove the object a failed move made on a local tier, if `rel` is still that object,
    then the folders above it that are left empty, up to the tier's folder (not included: it may be
    the mount point itself). The folders from the tier's down to the object's are held open first, and
    the look and every removal go through them: a share mounted over any of them after they were
    opened is never what is removed (a path would lead into it). Errors are logged: the move has
    failed anyway, its old copy kept."""
    root = os.path.normpath(tier.root)
    parts = os.path.relpath(os.path.normpath(tier.path(rel)), root).split(os.sep)
    if parts[0] in (os.pardir, os.curdir):
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        try:
            fds.append(os.open(root, flags & ~os.O_NOFOLLOW))  # the tier's folder may be a symlink (to a share)
            for part in parts[:-1]:
                fds.append(os.open(part, flags, dir_fd=fds[-1]))
            st = os.stat(parts[-1], dir_fd=fds[-1], follow_symlinks=False)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != made:
            log.warning("retention: %s on tier %s is not the copy this move made: left as it is", rel, tier.name)
            return
        try:
            if tree and stat.S_ISDIR(st.st_mode):
                shutil.rmtree(parts[-1], dir_fd=fds[-1])
            else:
                os.unlink(parts[-1], dir_fd=fds[-1])
        except OSError as exc:
            log.warning("retention: the copy made into tier %s's folder could not be taken back: %s", tier.name, exc)
            return
        for i in range(len(parts) - 1, 0, -1):  # the folders it made, deepest first, while empty
            try:
                os.rmdir(parts[i - 1], dir_fd=fds[i - 1])
            except OSError:
                return
    finally:
        for fd in fds:
            os.close(fd)


def _folder(tier: Tier, path: str | None = None) -> tuple[str, int, int]:
    """Blocking. The folder `path` (default: the tier's, or the nearest one above it that exists) as
    (path, device, inode): a share's folder and its mount point, once it is unmounted, differ."""
    path = path or tier.root
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            up = os.path.dirname(path)
            if up == path:
                raise
            path = up
            continue
        except OSError as exc:
            raise DestinationError(f"tier {tier.name}: {path} cannot be looked at: {exc.strerror}") from None
        return path, st.st_dev, st.st_ino


def _mounted(tier: Tier) -> None:
    """Blocking. DestinationError if a local tier's folder is missing or empty (its copies recorded)."""
    try:
        with os.scandir(tier.root) as it:
            empty = next(it, None) is None
    except FileNotFoundError:
        empty = True
    except OSError as exc:
        raise DestinationError(f"tier {tier.name}: {tier.root} cannot be read: {exc.strerror}") from None
    if empty:
        raise DestinationError(
            f"tier {tier.name}: copies are recorded on it, but {tier.root} is missing or empty: a network share not "
            "mounted? nothing is moved there or purged from it until it is back"
        )


def copy_between(src: Tier, dst: Tier, rel: str, tree: bool) -> None:
    """Copy one stored object (one object, or a folder such as a Zarr store: `tree`, from the copy's
    layout) to another tier, atomically."""
    if tree:
        dst.remove_temp(rel)
        for sub in src.find(rel):

            def blocks(sub: str = sub) -> Iterator[bytes]:
                with src.open_read(sub) as fin:
                    while block := fin.read(8 << 20):
                        yield block

            dst.stream_into_temp_tree(rel, sub[len(rel) + 1 :], blocks())
        try:
            dst.commit_tree(rel)
        except NameTakenError:
            with contextlib.suppress(AcqdError):
                dst.remove_temp(rel)
            raise
        return

    def chunks() -> Iterator[bytes]:
        with src.open_read(rel) as f:
            while block := f.read(8 << 20):
                yield block

    dst.write_atomic(rel, chunks())
