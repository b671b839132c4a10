"""The retention planner: `plan(now, items, policy, holds, warnings, clock) -> actions`. Pure.

Guarantees (tested by properties):
- a purge needs a *delivered* warning for the same purge date whose lead time has fully passed,
  and nothing becomes purgeable sooner than that warning plus its lead time, whatever the policy
  says after a change;
- a warning stands only while the date in it is the purge's date: the latest delivered warning
  counts, and it no longer does once the policy puts the purge later (a longer expiry or lead
  time) or a hold kept the file past that date (`holds` includes the ended ones: a released
  hold's `until` is its release). The file is then warned again, for a date a full lead time
  ahead, before it can be purged. A warned file that the policy no longer deletes gets a `void`
  action: the runner calls its warnings off for good (a later policy that deletes it warns anew);
- every recipient of a rule (the owner, the facility...) needs such a warning of their own: one
  whose digest could not be delivered is warned again at the next sweep (the others are not), and
  the purge waits a full lead time after that delivery;
- nothing under a hold (a session, a folder or one file) is purged or moved;
- with a clock state, every decision is taken at its `effective` time (never later than the wall
  clock or the trusted calendar, see `acqd.policy.clock`): a wall clock that jumps never makes a
  purge or a transition sooner; what only the wall clock would allow is reported as blocked;
- at most the caps (items, bytes) are purged in one sweep; the rest waits for the next.

`plan_stream` gives the same actions over items streamed in chunks in (verified_at, id) order (the
facility catalog's server-side cursor), holding one chunk: the caps are carried from chunk to chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from acqd.policy.clock import ClockState
from acqd.policy.model import Policy
from acqd.units import human_age

#: the reason of a purge held back by the caps
OVER_CAPS = "over this sweep's purge caps: next sweep"


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _moment(ts: float) -> str:
    """A hold's end to the minute (a hold until a day ends at 12:00 UTC the next day)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class Item:
    """One stored copy, as the planner sees it."""

    id: int  # the copy's id
    relpath: str
    session: str
    detector: str
    tier: str
    size: int
    verified_at: float
    owner: str | None = None
    root: str = ""  # the watch root the file is under
    instrument: str = ""  # whose file (the facility hub plans over every instrument at once); "" = this one


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold on a path relative to a watch root: a session, a folder, or one file ("" and "." =
    the whole root). `root` "" means the path under any watch root; `instrument` "" under any
    instrument's (a hold in the facility catalog may name one)."""

    target: str
    until: float
    reason: str = ""
    root: str = ""
    instrument: str = ""

    def covers(self, item: Item, now: float) -> bool:
        if now >= self.until:
            return False
        if self.instrument and item.instrument and self.instrument != item.instrument:
            return False
        if self.root and item.root and self.root.rstrip("/") != item.root.rstrip("/"):
            return False
        t = self.target.strip("/")
        if t in ("", "."):
            return True
        return item.session == t or item.relpath == t or item.relpath.startswith(t + "/")


@dataclass(frozen=True, slots=True)
class Warning_:
    """A warning about one item's purge on `purge_at`, delivered at `sent_at` to `recipient`
    ("": to every recipient, as warnings recorded before recipients were tracked)."""

    item_id: int
    purge_at: float
    sent_at: float
    recipient: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # warn, transition, purge, blocked, void (the file's delivered warnings are called off)
    item: Item
    rule: str
    reason: str
    at: float  # when it is due (purge: the purge date)
    tier: str = ""  # transition: its target; warn: the tier a move in the same sweep takes the copy to
    recipients: tuple[str, ...] = ()


def standing_warning(
    item: Item, warnings: Iterable[Warning_], expiry: float, lead: float, holds: Iterable[Hold]
) -> Warning_ | None:
    """The delivered warning that announces `item`'s purge, if one still does: the latest one, if
    the policy does not put the purge later than the date in it (expiry, or a full lead time after
    delivery) and no hold was in force on or after that date."""
    w = max(warnings, key=lambda w: (w.sent_at, w.purge_at), default=None)
    if w is None or max(expiry, w.sent_at + lead) > w.purge_at + 1:
        return None
    if any(h.covers(item, w.purge_at) for h in holds):  # a hold outlived the date: the owner expects a new warning
        return None
    return w


#: the reason of a purge blocked because no address is known for anybody its rule notifies
NOBODY_TO_WARN = (
    "purge held back: nobody to warn (no owners.emails entry for its owner, no owners.fallback); set one, "
    "and it is warned, then purged a full warning period later"
)


def _recipients(policy: Policy, rule_notify: Iterable[str], owner: str | None) -> tuple[str, ...]:
    out: list[str] = []
    owners = policy.spec.owners
    for n in rule_notify:
        if n == "owner":
            addr = owners.emails.get(owner or "") or owners.fallback
        elif n == "fallback":
            addr = owners.fallback
        else:
            addr = n
        if addr and addr not in out:
            out.append(addr)
    return tuple(out)


def plan(
    now: float,
    items: Iterable[Item],
    policy: Policy,
    holds: Iterable[Hold] = (),
    warnings: Iterable[Warning_] = (),
    clock: ClockState | None = None,
) -> list[Action]:
    """Actions as of `now`; with a `clock`, as of its effective time (`now` is then ignored).
    `holds`: those in force and those that ended after the earliest date in a warning (a hold that
    ended, `until` <= now, holds nothing but may have outlived a warned date)."""
    holds = list(holds)
    delivered: dict[int, list[Warning_]] = {}
    for w in warnings:
        delivered.setdefault(w.item_id, []).append(w)
    wall = sent = now
    if clock is not None:
        # judged by `effective` (never ahead of real time), but a warning sent now counts from the
        # later of the two clocks (`stamp`): stamped with a lagging one (the wall clock set back, or
        # the calendar after an uncounted power-off), a warning would look older than it is once the
        # clocks agree again, and its lead time would run out early
        now, wall, sent = clock.effective, clock.last.wall, clock.stamp
    clock_problem = None
    if clock is not None and clock.suspension is not None:
        clock_problem = f"clock guard: {clock.suspension.reason}; waits for the trusted clock or an ack-clock"
    caps = policy.spec.caps
    actions: list[Action] = []
    purges: list[Action] = []
    managed = set(policy.spec.tiers)
    for it in sorted(items, key=lambda i: (i.verified_at, i.id)):
        if it.tier not in managed:  # a tier the policy does not manage (an archive, a curated copy): kept as it
            continue  # is, never warned about, moved or purged (its only copy was purged: a stranger's review)
        owner = it.owner if it.owner is not None else policy.spec.owners.owner_of(it.relpath)
        rule = policy.rule_for(it.relpath, it.detector, owner)
        held = next((h for h in holds if h.covers(it, now)), None)
        age = now - it.verified_at
        # transitions: the latest one that is due and not yet done
        due = [t for t in rule.transitions if age >= t.after]
        move: Action | None = None
        if due and due[-1].tier != it.tier:
            if held is not None:
                what = f"hold until {_moment(held.until)}: {held.reason or 'no reason given'}"
                why = f"move to {due[-1].tier} held back: {what}"
                actions.append(Action("blocked", it, rule.name, why, held.until))  # due once the hold ends
            else:
                move = Action(
                    "transition",
                    it,
                    rule.name,
                    f"older than {human_age(due[-1].after)}",
                    it.verified_at + due[-1].after,
                    tier=due[-1].tier,
                )
                actions.append(move)
        if rule.expiration is None:
            if it.id in delivered:  # the purge a warning announced is called off: the warning with it
                last = max(w.purge_at for w in delivered[it.id])
                why = f"rule {rule.name} deletes nothing: the warning for {_day(last)} is called off"
                actions.append(Action("void", it, rule.name, why, last))
            continue
        expiry = it.verified_at + rule.expiration.after
        warn_at = expiry - rule.warn
        if now < warn_at:
            continue
        if held is not None:
            why = f"purge held back: hold until {_moment(held.until)}: {held.reason or 'no reason given'}"
            # the soonest it could be purged: expired, and the hold over (and warned, if not yet)
            actions.append(Action("blocked", it, rule.name, why, max(expiry, held.until)))
            continue
        recipients = _recipients(policy, rule.notify, owner)
        if not recipients:  # nobody to warn: its purge waits (`acqd plan` said a warning and a date: a review)
            actions.append(Action("blocked", it, rule.name, NOBODY_TO_WARN, expiry))
            continue
        mine = delivered.get(it.id, [])
        told: list[Warning_] = []  # each recipient's standing warning
        missing: list[str] = []
        for r in recipients:
            sw = standing_warning(it, [w for w in mine if w.recipient in (r, "")], expiry, rule.warn, holds)
            if sw is None:
                missing.append(r)
            else:
                told.append(sw)
        if missing or not recipients:
            # a recipient not (or no longer) warned: warned now, and the purge waits a full lead time
            # after this delivery; the others keep their date (a later purge than announced is safe)
            purge_at = max([expiry, sent + rule.warn, *(w.purge_at for w in told)])
            again = " (warned again)" if mine and not told else ""
            actions.append(
                Action(
                    "warn",
                    it,
                    rule.name,
                    f"purge on {_day(purge_at)}{again}",
                    purge_at,
                    tier=move.tier if move is not None else "",  # where it is by then: moved in this sweep
                    recipients=tuple(missing),
                )
            )
            continue
        purge_at = max(expiry, *(max(w.sent_at + rule.warn, w.purge_at) for w in told))
        if now < purge_at:
            if clock_problem is not None and wall >= purge_at:  # only the (suspect) wall clock says it is due
                actions.append(Action("blocked", it, rule.name, clock_problem, purge_at))
            continue  # warned; waiting for the date
        if move is not None:  # its purge is due: not moved first (then recorded missing by the purge: a review)
            actions.remove(move)
        purges.append(Action("purge", it, rule.name, f"expired ({human_age(rule.expiration.after)}), warned", purge_at))
    n = total = 0
    for p in purges:
        if n + 1 > caps.maxItemsPerSweep or total + p.item.size > caps.maxBytesPerSweep:
            actions.append(Action("blocked", p.item, p.rule, OVER_CAPS, p.at))
            continue
        n += 1
        total += p.item.size
        actions.append(p)
    return actions


#: a chunk of items with the delivered warnings of those items
Chunk = tuple[Sequence[Item], Sequence[Warning_]]


def _with_caps(policy: Policy, items: int, size: int) -> Policy:
    caps = policy.spec.caps.model_copy(update={"maxItemsPerSweep": items, "maxBytesPerSweep": size})
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"caps": caps})})


def plan_stream(
    now: float,
    chunks: Iterable[Sequence[Item] | Chunk],
    policy: Policy,
    holds: Iterable[Hold] = (),
    warnings: Mapping[int, Sequence[Warning_]] | None = None,
    clock: ClockState | None = None,
) -> Iterator[Action]:
    """The planner's actions over `chunks` of items, each chunk and the chunks together in
    (verified_at, id) order: the same actions as `plan(now, all items, ..., clock)`, holding one
    chunk. A chunk is a list of items, whose delivered warnings `warnings` gives per item id, or
    (items, their delivered warnings). Per chunk, non-purge actions first, then its purges and the
    purges held back by the caps (as `plan` lists them)."""
    holds = list(holds)
    items_left = policy.spec.caps.maxItemsPerSweep
    bytes_left = policy.spec.caps.maxBytesPerSweep
    for chunk in chunks:
        if isinstance(chunk, tuple):
            items, ws = chunk
        else:
            items, ws = chunk, [w for it in chunk for w in (warnings or {}).get(it.id, ())]
        for a in plan(now, items, _with_caps(policy, items_left, bytes_left), holds, ws, clock):
            if a.kind == "purge":
                items_left -= 1
                bytes_left -= a.item.size
            yield a
