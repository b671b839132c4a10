"""Usage of the facility's storage and what retention will do to it, from catalogued copies. Pure.

`Tally` classifies each live stored copy (owner and data class as the retention policy says, group
from the owner) and adds it to per-dimension totals; it also counts, per week ahead, the purges and
transitions the policy puts on each copy. Memory is bounded by the number of distinct owners,
instruments, tiers and classes, never by the number of copies: the caller streams rows through it.

`plan_stream` (from `acqd.policy.planner`, where the hub's sweep uses it too) runs the retention
planner over copies streamed in chunks ordered by (verified_at, id), carrying the purge caps from
chunk to chunk, so that its actions are exactly those of one `plan` over all the copies, without
holding them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from acqd.policy.model import Policy, Rule
from acqd.policy.planner import plan_stream

__all__ = ["Copy", "Figures", "Tally", "due_dates", "groups_of", "plan_stream"]

WEEK = 7 * 86400.0
#: labels for what has no owner, no group or no data class
NO_OWNER, NO_GROUP, NO_CLASS = "(unknown)", "(none)", "(none)"


@dataclass(frozen=True, slots=True)
class Copy:
    """One live (verified) stored copy in the catalog."""

    instrument: str
    root: str
    relpath: str
    session: str
    detector: str
    tier: str
    stored_bytes: int
    verified_at: float


@dataclass
class Figures:
    files: int = 0
    bytes: int = 0

    def add(self, n: int, size: int) -> None:
        self.files += n
        self.bytes += size


def due_dates(rule: Rule, tier: str, verified_at: float, now: float) -> tuple[tuple[float, str] | None, float | None]:
    """(when and to which tier the copy's next transition is due, or None; when its purge is due,
    or None) under `rule`, as of `now`. As the planner does: a copy belongs on the tier of the
    latest transition its age has reached; if that is not its tier it is due (since that
    transition's age), else its next move is the first later transition to another tier. The purge
    date is the policy's expiry: a later warning or a hold can only put it later, never sooner."""
    age = now - verified_at
    reached = [i for i, t in enumerate(rule.transitions) if age >= t.after]
    m = reached[-1] if reached else -1
    move: tuple[float, str] | None = None
    if m >= 0 and rule.transitions[m].tier != tier:
        move = (verified_at + rule.transitions[m].after, rule.transitions[m].tier)
    else:
        nxt = next((t for t in rule.transitions[m + 1 :] if t.tier != tier), None)
        if nxt is not None:
            move = (verified_at + nxt.after, nxt.tier)
    purge = verified_at + rule.expiration.after if rule.expiration is not None else None
    return move, purge


@dataclass
class Tally:
    """Totals per owner, group, instrument, tier and data class; due purges and transitions per
    week ahead of `now` (week 0: due within 7 days, including overdue); quarantines per instrument.
    Each copy is added to one cell (owner, group, instrument, tier, class); the per-dimension
    tables are sums of the cells."""

    policy: Policy | None
    now: float
    groups: Mapping[str, str] = field(default_factory=dict)  # owner -> group
    weeks: int = 8
    cells: dict[tuple[str, str, str, str, str], list[int]] = field(default_factory=dict)
    purges: dict[int, Figures] = field(default_factory=dict)  # weeks ahead -> purges due then
    transitions: dict[tuple[int, str], Figures] = field(default_factory=dict)  # (weeks ahead, to tier)
    quarantined: dict[str, Figures] = field(default_factory=dict)  # instrument -> quarantined files

    def _week(self, at: float) -> int | None:
        k = int(max(0.0, at - self.now) // WEEK)
        return k if k < self.weeks else None

    def add(self, c: Copy) -> None:
        owner: str | None = None
        cls = NO_CLASS
        rule: Rule | None = None
        if self.policy is not None:
            owner = self.policy.spec.owners.owner_of(c.relpath)
            cls = self.policy.data_class(c.relpath, c.detector) or NO_CLASS
            rule = self.policy.rule_for(c.relpath, c.detector, owner)
        who = owner or NO_OWNER
        key = (who, self.groups.get(who, NO_GROUP), c.instrument, c.tier, cls)
        size = c.stored_bytes
        cell = self.cells.get(key)
        if cell is None:
            self.cells[key] = [1, size]
        else:
            cell[0] += 1
            cell[1] += size
        if rule is None:
            return
        move, purge = due_dates(rule, c.tier, c.verified_at, self.now)
        if move is not None and (k := self._week(move[0])) is not None:
            self.transitions.setdefault((k, move[1]), Figures()).add(1, size)
        if purge is not None and (k := self._week(purge)) is not None:
            self.purges.setdefault(k, Figures()).add(1, size)

    def add_quarantined(self, instrument: str, files: int, size: int) -> None:
        self.quarantined.setdefault(instrument, Figures()).add(files, size)

    def _by(self, *idx: int) -> dict[Any, Figures]:
        out: dict[Any, Figures] = {}
        for key, (n, size) in self.cells.items():
            k = tuple(key[i] for i in idx)
            out.setdefault(k if len(k) > 1 else k[0], Figures()).add(n, size)
        return out

    @property
    def by_owner(self) -> dict[tuple[str, str], Figures]:  # (owner, group)
        return self._by(0, 1)

    @property
    def by_group(self) -> dict[str, Figures]:
        return self._by(1)

    @property
    def by_instrument(self) -> dict[str, Figures]:
        return self._by(2)

    @property
    def by_tier(self) -> dict[str, Figures]:
        return self._by(3)

    @property
    def by_class(self) -> dict[str, Figures]:
        return self._by(4)

    @property
    def by_place(self) -> dict[tuple[str, str, str], Figures]:  # (instrument, tier, class)
        return self._by(2, 3, 4)

    @property
    def total(self) -> Figures:
        f = Figures()
        for n, size in self.cells.values():
            f.add(n, size)
        return f

    def as_dict(self) -> dict[str, Any]:
        """The report as plain values (the `--json` document)."""

        def rows(table: Mapping[Any, Figures], *names: str) -> list[dict[str, Any]]:
            out = []
            for key, f in sorted(table.items(), key=lambda kv: (-kv[1].bytes, str(kv[0]))):
                keys = key if isinstance(key, tuple) else (key,)
                out.append({**dict(zip(names, keys, strict=True)), "files": f.files, "bytes": f.bytes})
            return out

        return {
            "now": self.now,
            "policy": self.policy.metadata.name if self.policy is not None else None,
            "total": {"files": self.total.files, "bytes": self.total.bytes},
            "owners": rows(self.by_owner, "owner", "group"),
            "groups": rows(self.by_group, "group"),
            "instruments": rows(self.by_instrument, "instrument"),
            "tiers": rows(self.by_tier, "tier"),
            "data_classes": rows(self.by_class, "data_class"),
            "placement": rows(self.by_place, "instrument", "tier", "data_class"),
            "due": {
                "purges": [{"week": k, "files": f.files, "bytes": f.bytes} for k, f in sorted(self.purges.items())],
                "transitions": [
                    {"week": k, "tier": t, "files": f.files, "bytes": f.bytes}
                    for (k, t), f in sorted(self.transitions.items())
                ],
            },
            "quarantined": rows(self.quarantined, "instrument"),
        }


def groups_of(groups: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """{group: [owners]} (the configuration) as owner -> group; an owner in two groups: the first."""
    out: dict[str, str] = {}
    for g, owners in groups.items():
        for o in owners:
            out.setdefault(o, g)
    return out
