"""The retention runner: executes the planner's actions with guards, on a timer.

Guards, besides the planner's: the live object and the holds are re-checked just before a delete;
a transition copies, verifies the new copy, and only then deletes the old one; a sweep stops when
too many of its actions fail; a warning that cannot be delivered is retried at the next sweep and
blocks the purge it announces (nothing is recorded until the mail server took it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from acqd import journal as jr
from acqd.errors import AcqdError, NameTakenError
from acqd.journal import Journal
from acqd.layouts import build_layout
from acqd.notify import Digests, Mailer
from acqd.policy.model import Policy
from acqd.policy.planner import Action, Hold, Item, Warning_, plan
from acqd.ports import Reporter
from acqd.storage import Tier
from acqd.values import Outcome

log = logging.getLogger("acqd.retention")
T = TypeVar("T")


@dataclass
class SweepResult:
    now: float
    warned: int = 0
    digests: int = 0
    transitioned: int = 0
    purged: int = 0
    purged_bytes: int = 0
    blocked: int = 0
    failed: int = 0
    suspended: str = ""
    actions: list[Action] = field(default_factory=list)


def plan_from_journal(j: Journal, policy: Policy, now: float) -> tuple[list[Action], dict[int, jr.RetentionRow]]:
    """Blocking: the planner's view of the journal (copies, holds, delivered warnings, last sweep), planned."""
    rows = jr.retention_items(j)
    items = [
        Item(
            id=r.copy.id,
            relpath=r.file.relpath,
            session=r.file.session,
            detector=r.file.detector,
            tier=r.copy.tier,
            size=r.copy.stored_bytes,
            verified_at=r.copy.verified_at or r.copy.stored_at,
        )
        for r in rows
    ]
    holds = [Hold(t, u, why) for t, u, why in jr.active_holds(j, now)]
    warnings = [Warning_(c, p, s) for c, p, s in jr.delivered_warnings(j)]
    return plan(now, items, policy, holds, warnings, jr.last_sweep(j)), {r.copy.id: r for r in rows}


class RetentionRunner:
    def __init__(
        self,
        *,
        policy: Policy,
        journal: Journal,
        jexec: Executor,
        io: ThreadPoolExecutor,
        tiers: dict[str, Tier],
        mailer: Mailer,
        digests: Digests,
        reporter: Reporter,
        instrument: str,
        sender: str,
        contact: str,
    ) -> None:
        self.policy = policy
        self.journal = journal
        self.jexec = jexec
        self.io = io
        self.tiers = tiers
        self.mailer = mailer
        self.digests = digests
        self.reporter = reporter
        self.instrument = instrument
        self.sender = sender
        self.contact = contact

    async def _j(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.jexec, partial(fn, *args, **kw))

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io, partial(fn, *args))

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
                **kw,
            )
        )

    async def plan(self, now: float) -> tuple[list[Action], dict[int, jr.RetentionRow]]:
        return await self._j(plan_from_journal, self.journal, self.policy, now)

    async def sweep(self, now: float) -> SweepResult:
        actions, by_copy = await self.plan(now)
        res = SweepResult(now=now, actions=actions)
        res.blocked = sum(a.kind == "blocked" for a in actions)
        await self._warn(now, [a for a in actions if a.kind == "warn"], by_copy, res)
        limit = self.policy.spec.guards.suspendErrorRatio
        done = 0
        for a in actions:
            if a.kind not in ("transition", "purge"):
                continue
            if done >= 5 and res.failed / done > limit:
                res.suspended = f"{res.failed} of {done} actions failed: sweep suspended"
                log.error("retention: %s", res.suspended)
                break
            done += 1
            row = by_copy[a.item.id]
            try:
                if a.kind == "transition":
                    await self._transition(a, row, now)
                    res.transitioned += 1
                else:
                    if await self._purge(a, row, now):
                        res.purged += 1
                        res.purged_bytes += a.item.size
            except AcqdError as exc:
                res.failed += 1
                log.warning("retention %s of %r failed: %s", a.kind, row.file.relpath, exc)
                await self._j(self.journal.audit, row.file.id, f"retention.{a.kind}.failed", reason=str(exc))
        if not res.suspended:
            await self._j(jr.set_last_sweep, self.journal, now)
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
        return res

    async def _warn(
        self, now: float, warns: list[Action], by_copy: dict[int, jr.RetentionRow], res: SweepResult
    ) -> None:
        """One digest per recipient, listing sessions; recorded only once the server accepted it."""
        per: dict[str, list[Action]] = defaultdict(list)
        for a in warns:
            for r in a.recipients:
                per[r].append(a)
            if not a.recipients:
                log.error(
                    "retention: no recipient for %r (set owners.fallback); its purge stays blocked", a.item.relpath
                )
        for recipient, acts in sorted(per.items()):
            sessions: dict[tuple[str, float], dict[str, Any]] = {}
            for a in acts:
                key = (a.item.session, a.at)
                s = sessions.setdefault(
                    key,
                    {"session": a.item.session, "files": 0, "bytes": 0, "purge_at": a.at, "rule": a.rule, "where": ""},
                )
                s["files"] += 1
                s["bytes"] += a.item.size
                row = by_copy[a.item.id]
                s["where"] = (
                    s["where"] or self.tiers[row.copy.tier].url(row.copy.dest.rpartition("/")[0])
                    if row.copy.tier in self.tiers
                    else row.copy.dest
                )
            msg = self.digests.render(
                instrument=self.instrument,
                recipient=recipient,
                sender=self.sender,
                sessions=sorted(sessions.values(), key=lambda s: (s["purge_at"], s["session"])),
                now=now,
                contact=self.contact,
            )
            try:
                await self.mailer.send(msg)
            except AcqdError as exc:
                res.failed += 1
                log.warning(
                    "retention warning to %s not delivered (retried next sweep; its purges wait): %s", recipient, exc
                )
                continue
            ids = [a.item.id for a in acts]
            await self._j(jr.record_warnings, self.journal, ids, recipient, {a.item.id: a.at for a in acts}, now)
            res.digests += 1
            res.warned += len(ids)
            for a in acts:
                self._emit("retention.warned", by_copy[a.item.id], reason=f"{recipient}: {a.reason}")

    def _layout(self, row: jr.RetentionRow) -> Any:
        return build_layout(row.copy.layout, "zstd" if row.copy.codec.startswith("zstd") else "none")

    async def _transition(self, a: Action, row: jr.RetentionRow, now: float) -> None:
        """Copy to the new tier, verify the new copy, record it, and only then delete the old one."""
        src, dst = self.tiers[row.copy.tier], self.tiers[a.tier]
        rel = row.copy.dest
        try:
            await self._io(copy_between, src, dst, rel)
        except NameTakenError:
            # an object is already under this name on the new tier: a transition that crashed
            # before it was recorded, or somebody else's. Never replaced: it is taken as the new
            # copy only if it verifies below; otherwise the transition fails (and is retried).
            log.warning("retention: %s already on tier %s; checking whether it is this copy", rel, dst.name)
        await self._io(self._layout(row).verify, dst, rel, row.copy.as_result())
        await self._j(
            jr.add_copy,
            self.journal,
            row.file.id,
            dst.name,
            rel,
            row.copy.layout,
            row.copy.as_result(),
            now,
            row.copy.verified_at or now,
        )
        await self._io(src.remove_any, rel)
        await self._j(jr.mark_copy, self.journal, row.copy.id, "moved", "retention.transitioned", to=dst.name)
        self._emit("retention.transitioned", row, reason=f"{src.name} -> {dst.name}")

    async def _purge(self, a: Action, row: jr.RetentionRow, now: float) -> bool:
        """Delete a copy whose time has come: re-check the holds and the live object first."""
        holds = [Hold(t, u, why) for t, u, why in await self._j(jr.active_holds, self.journal, now)]
        if any(h.covers(a.item, now) for h in holds):
            log.info("retention: %r was put on hold since the plan; kept", row.file.relpath)
            return False
        tier = self.tiers[row.copy.tier]
        if not await self._io(tier.exists, row.copy.dest):
            await self._j(jr.mark_copy, self.journal, row.copy.id, "missing", "retention.missing")
            log.warning("retention: %s is already gone from tier %s", row.copy.dest, tier.name)
            return False
        await self._io(tier.remove_any, row.copy.dest)
        await self._j(
            jr.mark_copy, self.journal, row.copy.id, "purged", "retention.purged", rule=a.rule, bytes=a.item.size
        )
        self._emit("retention.purged", row, reason=a.reason)
        return True


def copy_between(src: Tier, dst: Tier, rel: str) -> None:
    """Copy one stored object (a file, or a folder such as a Zarr store) to another tier, atomically."""
    if src.fs.isdir(src.path(rel)):
        dst.remove_temp(rel)
        tmp = dst.temp_tree(rel)
        for sub in src.find(rel):
            part = sub[len(rel) + 1 :]
            dst.fs.makedirs(f"{tmp}/{part}".rpartition("/")[0], exist_ok=True)
            with src.open_read(sub) as fin, dst.fs.open(f"{tmp}/{part}", "wb") as fout:
                while block := fin.read(8 << 20):
                    fout.write(block)
        try:
            dst.commit_tree(rel)
        except NameTakenError:
            dst.remove_temp(rel)
            raise
        return

    def chunks() -> Iterator[bytes]:
        with src.open_read(rel) as f:
            while block := f.read(8 << 20):
                yield block

    dst.write_atomic(rel, chunks())
