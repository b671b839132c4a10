"""The facility catalog as a retention store (acqd.retention.RetentionStore) for `acqd hub`, and
holds placed in the catalog. Orchestration: the hub's PostgreSQL access is acqd.hubdb; this turns
its rows into the planner's items and the runner's rows. Blocking (one thread: the hub's store
executor)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from acqd.errors import AcqdError
from acqd.hubdb import HubDb
from acqd.journal import CopyRow, FileRow, RetentionRow
from acqd.policy.planner import Hold, Item, Warning_
from acqd.values import Identity, State

CLOCK_KEY = "retention_clock"


class CatalogStore:
    """Every instrument's verified copies on the hub's tiers, the hub's warnings, the catalog's
    holds and the clock guard's state; each write fenced by the hub's lease."""

    def __init__(self, db: HubDb, tiers: dict[str, str], *, preview: bool = False) -> None:
        self.db = db
        self.preview = preview  # read only (`acqd hub plan`): nothing taken in, no lease needed
        self.tiers = tiers  # tier name -> URL, as the hub reaches it
        self.adopted = 0  # daemons' copies taken in by the last `items`
        self.foreign = 0  # verified copies the hub leaves alone (another tier, or another URL)
        self.count = 0  # copies managed at the last `items`

    def warned_since(self) -> float | None:
        return self.db.earliest_warned()

    def known_on(self, tier: str) -> bool:
        return self.db.has_copies_on(tier)

    def batches(self, size: int) -> Iterator[tuple[list[Item], Mapping[int, RetentionRow], list[Warning_]]]:
        """The copies the hub manages, oldest first, `size` at a time from a server-side cursor (the
        catalog is never held in memory); first the daemons' new verified copies on the hub's tiers
        are taken in (none in a preview). A copy's runner row is built only if it is asked for (the
        planner acts on few of them)."""
        if not self.preview:
            self.adopted, self.foreign = self.db.adopt(self.tiers, time.time())
        self.count = 0
        for rows, ws in self.db.item_batches(size, self.tiers if self.preview else None):
            items = [
                Item(
                    id=int(r[0]),
                    relpath=str(r[14]),
                    session=str(r[21]),
                    detector=str(r[20]),
                    tier=str(r[4]),
                    size=int(r[9]),
                    verified_at=float(r[11]),
                    root=str(r[13]),
                    instrument=str(r[1]),
                )
                for r in rows
            ]
            self.count += len(items)
            yield items, _Rows(rows), [Warning_(c, p, t, who) for c, p, t, who in ws]

    def holds_ended_after(self, since: float) -> list[Hold]:
        return [Hold(t, u, why, root, inst) for t, u, why, root, inst in self.db.holds_ended_after(since)]

    def active_holds(self, now: float) -> list[Hold]:
        return [Hold(t, u, why, root, inst) for _, t, u, why, root, inst, _, _ in self.db.active_holds(now)]

    def clock_state(self) -> dict[str, Any] | None:
        return self.db.state(CLOCK_KEY)

    def last_sweep(self) -> float | None:
        return None

    def note_sweep(self, summary: dict[str, Any]) -> None:
        """The hub's sweeps are told by its metrics and log (acqd_hub_failed_actions_total)."""

    def set_clock_state(self, doc: dict[str, Any], audit: str | None = None, **detail: Any) -> None:
        self.db.set_state(CLOCK_KEY, doc, audit, detail)

    def pending_clock_acks(self) -> list[tuple[int, float, str, float, str, str]]:
        return self.db.pending_clock_acks()

    def clock_ack_applied(self, ack_id: int, now: float, **detail: Any) -> None:
        self.db.clock_ack_applied(ack_id, now, detail)

    def void_warnings(self, copy_id: int, now: float, reason: str) -> int:
        return self.db.void_warnings(copy_id, now, reason)

    def record_warnings(self, copy_ids: list[int], recipient: str, purge_at: dict[int, float], now: float) -> None:
        self.db.record_warnings(copy_ids, recipient, purge_at, now)

    def audit(self, file_id: int | None, action: str, **detail: Any) -> None:
        self.db.audit(file_id, action, detail)  # a hub row's file id is its copy's id

    def add_copy(self, row: RetentionRow, tier: str, now: float) -> int:
        return self.db.add_copy(row.copy.id, tier, now)

    def mark_copy(self, copy_id: int, state: str, action: str, **detail: Any) -> None:
        self.db.mark_copy(copy_id, state, action, detail)

    def fence(self, kind: str, copy_id: int | None) -> bool:
        return self.db.begin(kind, copy_id)


class _Rows(Mapping[int, RetentionRow]):
    """A batch's catalog rows (HubDb ITEM_COLS) by copy id, each made a runner row when asked for."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._raw = {int(r[0]): r for r in rows}

    def __getitem__(self, copy_id: int) -> RetentionRow:
        return _row(self._raw[copy_id])

    def __iter__(self) -> Iterator[int]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _row(r: tuple[Any, ...]) -> RetentionRow:
    hid, _inst, _jid, _fid, tier, dest, layout, codec, sbytes, stored, checksum, verified_at, added = r[:13]
    root, relpath, version, state, size, mtime_ns, fchecksum, detector, session, first, upd = r[13:]
    copy = CopyRow(
        int(hid), int(hid), str(tier), str(dest), str(layout), str(codec), int(sbytes), int(stored),
        str(checksum), "verified", float(added), float(verified_at),
    )  # fmt: skip
    try:
        fstate = State(state)
    except ValueError:
        fstate = State.VERIFIED
    frow = FileRow(
        int(hid), str(root), str(relpath), int(version), fstate, None, Identity(int(size), int(mtime_ns), 0),
        fchecksum, str(detector), str(session), 0, float(first), float(upd),
    )  # fmt: skip
    return RetentionRow(copy, frow)


class HoldTargetError(AcqdError):
    """A hold target that matches nothing the catalog knows."""


@dataclass
class CatalogHold:
    asked: str
    instrument: str | None
    files: int = 0
    bytes: int = 0
    sessions: set[tuple[str, str, str]] = field(default_factory=set)

    def describe(self) -> str:
        where = f" of {self.instrument}" if self.instrument else " (any instrument)"
        return (
            f"{self.asked}{where}: {self.files} stored file(s) in {len(self.sessions)} session(s), {self.bytes} bytes"
        )


def hold_in_catalog(
    db: HubDb, target: str, until: float, reason: str, now: float, instrument: str | None, by: str
) -> CatalogHold:
    """Place a hold in the catalog on a session, or a folder or file relative to a watch root (of
    one instrument, or any); HoldTargetError if no catalogued copy matches it."""
    t = target.strip().strip("/")
    if not t or t == "." or t == ".." or t.startswith("../"):
        raise HoldTargetError(f"hold target {target!r}: give a session, or a folder or file below a watch root")
    res = CatalogHold(t, instrument)
    for inst, root, session, size in db.files_matching(t, instrument):
        res.files += 1
        res.bytes += size
        res.sessions.add((inst, root, session))
    if not res.files:
        where = f" of instrument {instrument}" if instrument else ""
        raise HoldTargetError(
            f"nothing catalogued{where} matches hold target {target!r} (a session, or a path below a watch root)"
        )
    db.add_hold(t, until, reason, now, "", instrument or "", by)
    return res
