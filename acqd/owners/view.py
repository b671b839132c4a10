"""What the owner page shows: each session's purge or move date and why, from the policy's rules,
the delivered warnings and the holds, by the planner's own formulas. Pure.

`purge_date` mirrors `acqd.policy.planner.plan` (tests hold the two together): a warned file is
purged on the date in its standing warning (`acqd.policy.planner.standing_warning`); an unwarned one
no sooner than a full lead time after its warning goes out; a hold keeps it, and a hold that
outlives the warned date voids the warning: the file is warned again once the hold ends, and goes a
full lead time later.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from acqd.owners.access import Facility, HoldRow, SessionRow, session_id
from acqd.policy.model import DAY, Policy, Rule
from acqd.policy.planner import Hold, Item, Warning_, standing_warning


def day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def moment(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def week(ts: float) -> str:
    y, w, _ = datetime.fromtimestamp(ts, UTC).isocalendar()
    return f"{y}-W{w:02d}"


def owner_of(policy: Policy, item: Item) -> str:
    return item.owner if item.owner is not None else (policy.spec.owners.owner_of(item.relpath) or "")


def project_of(policy: Policy, item: Item) -> str:
    return policy.spec.owners.project_of(item.relpath) or ""


def covers(h: HoldRow, item: Item, now: float) -> bool:
    if now >= h.until or (h.root and item.root and h.root.rstrip("/") != item.root.rstrip("/")):
        return False
    t = h.target.strip("/")
    return t in ("", ".") or item.session == t or item.relpath == t or item.relpath.startswith(t + "/")


def purge_date(
    item: Item, rule: Rule, warnings: Iterable[Warning_], now: float, holds: Iterable[Hold] = ()
) -> tuple[float | None, bool]:
    """(when the planner purges `item` if nothing holds it from now on, whether a warning for that
    date was delivered). `holds`: as the planner's (ended ones too)."""
    if rule.expiration is None:
        return None, False
    expiry = item.verified_at + rule.expiration.after
    w = standing_warning(item, warnings, expiry, rule.warn, holds)
    if w is not None:
        return max(expiry, w.sent_at + rule.warn, w.purge_at), True
    return (max(expiry, now + rule.warn) if now >= expiry - rule.warn else expiry), False


def planner_holds(holds: Iterable[HoldRow], ended: Iterable[Hold] = ()) -> list[Hold]:
    """The page's holds (in force) and the ended ones, as the planner sees them."""
    return [*(Hold(h.target, h.until, h.reason, h.root) for h in holds), *ended]


def next_transition(item: Item, rule: Rule) -> tuple[float | None, str]:
    """(when `item` moves next, to which tier), by the rule's transitions after its current tier."""
    steps = rule.transitions
    at = max((i for i, t in enumerate(steps) if t.tier == item.tier), default=-1)
    for t in steps[at + 1 :]:
        if t.tier != item.tier:
            return item.verified_at + t.after, t.tier
    return None, ""


def sessions(
    instrument: str,
    policy: Policy,
    items: Iterable[Item],
    holds: list[HoldRow],
    warnings: Iterable[Warning_],
    now: float,
    ended: Iterable[Hold] = (),
) -> list[SessionRow]:
    """One row per (watch root, session) of the given items, earliest purge first. `holds`: those
    in force at `now`; `ended`: those that ended since the earliest warned date."""
    every = planner_holds(holds, ended)
    by_item: dict[int, list[Warning_]] = defaultdict(list)
    for w in warnings:
        by_item[w.item_id].append(w)
    groups: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in items:
        groups[(it.root, it.session)].append(it)
    rows: list[SessionRow] = []
    for (root, session), its in groups.items():
        purge: float | None = None
        move: tuple[float, str] | None = None
        why: dict[str, list[float | None]] = {}
        texts: dict[str, str] = {}
        classes: set[str] = set()
        again: set[str] = set()
        mine = tuple(h for h in holds if h.until > now and any(covers(h, it, now) for it in its))
        for it in its:
            rule = policy.rule_for(it.relpath, it.detector, owner_of(policy, it))
            dc = policy.data_class(it.relpath, it.detector)
            if dc:
                classes.add(dc)
            ws = by_item.get(it.id, [])
            at, warned = purge_date(it, rule, ws, now, every)
            held = max((h.until for h in mine if covers(h, it, now)), default=None)
            if at is not None and held is not None and not warned:
                at = max(at, held + rule.warn)  # warned (again) once the hold ends, a full lead time ahead
            if at is not None and ws and not warned:
                again.add(rule.name)
            if at is not None:
                purge = at if purge is None else min(purge, at)
            t_at, t_to = next_transition(it, rule)
            if t_at is not None and (move is None or t_at < move[0]):
                move = (t_at, t_to)
            why.setdefault(rule.name, []).append(at)
            texts[rule.name] = _rule_text(rule, warned, rule.name in again)
        lines = []
        for name, dates in why.items():
            n = len(dates)
            first = min((d for d in dates if d is not None), default=None)
            when = f"; first deletion {day(first)}" if first is not None else ""
            lines.append(f"rule {name} ({n} file{'s' if n != 1 else ''}): {texts[name]}{when}")
        for h in mine:
            lines.append(f"on hold until {moment(h.until)}: {h.reason}")
        rows.append(
            SessionRow(
                sid=session_id(root, session),
                root=root,
                session=session,
                instrument=instrument,
                files=len(its),
                bytes=sum(i.size for i in its),
                tiers=tuple(sorted({i.tier for i in its})),
                data_classes=tuple(sorted(classes)),
                purge_at=purge,
                transition_at=move[0] if move else None,
                transition_to=move[1] if move else "",
                why=tuple(lines),
                holds=mine,
                project=min((p for p in (project_of(policy, it) for it in its) if p), default=""),
            )
        )
    return sorted(rows, key=lambda r: (r.purge_at if r.purge_at is not None else float("inf"), r.session))


def _rule_text(rule: Rule, warned: bool, again: bool = False) -> str:
    if rule.expiration is None:
        parts = ["kept (this rule deletes nothing)"]
    else:
        after, warn = rule.expiration.after / DAY, rule.warn / DAY
        parts = [f"deleted {after:g} days after it was stored, after a {warn:g}-day warning"]
        if again:
            parts.append("warned again before deletion (the date in the earlier warning no longer applies)")
        elif warned:
            parts.append("the warning was sent")
    for t in rule.transitions:
        parts.append(f"moves to {t.tier} after {t.after / DAY:g} days")
    return "; ".join(parts)


def facility(
    instrument: str,
    policy: Policy,
    items: list[Item],
    holds: list[HoldRow],
    warnings: list[Warning_],
    now: float,
    horizon: float = 12 * 7 * DAY,
    ended: Iterable[Hold] = (),
) -> Facility:
    """Upcoming purges by week and owner (within `horizon`), holds, usage per owner and tier."""
    every = planner_holds(holds, ended)
    by_item: dict[int, list[Warning_]] = defaultdict(list)
    for w in warnings:
        by_item[w.item_id].append(w)
    purges: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    usage: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for it in items:
        owner = owner_of(policy, it) or "(unknown)"
        u = usage[(owner, it.tier)]
        u[0] += 1
        u[1] += it.size
        if any(covers(h, it, now) for h in holds):
            continue
        rule = policy.rule_for(it.relpath, it.detector, owner_of(policy, it))
        at, _ = purge_date(it, rule, by_item.get(it.id, []), now, every)
        if at is not None and at <= now + horizon:
            p = purges[(week(max(at, now)), owner)]
            p[0] += 1
            p[1] += it.size
    owners = {(h.root, h.target): owner_of(policy, it) for h in holds for it in items if covers(h, it, now)}
    return Facility(
        instrument=instrument,
        purges=[(w, o, n, b) for (w, o), (n, b) in sorted(purges.items())],
        holds=[replace(h, owner=owners.get((h.root, h.target), "")) for h in sorted(holds, key=lambda h: h.until)],
        usage=[(o, t, n, b) for (o, t), (n, b) in sorted(usage.items())],
    )
