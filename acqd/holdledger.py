"""Holds kept where a restored journal cannot forget them: beside the data, on every tier.

A hold lives in the journal (what the planner, the owner page and `acqd hold --list` read), and, as a
small record, on each tier of the daemon, under ``INSTRUMENT/~acqd-holds/`` (a name acqd reserves:
stored names never begin with ``~acqd-``): ``KEY.json`` when it is placed and ``KEY.released.json``
when it is released. Records are only ever added, never rewritten, so two processes writing at once
cannot lose one.

A journal restored from a backup, or rebuilt, has not seen the holds placed since: before every
retention sweep `sync` reads the records of every tier it can reach, puts back into the journal each
hold (and each release) it lacks, and writes to each tier the records it lacks (a tier that was
down when a hold was placed gets it then). A hold is never forgotten while one copy of its record
survives. Blocking: the journal calls run on the journal's executor, the tier calls on I/O threads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import xxhash

from acqd import journal as jr
from acqd.errors import AcqdError, NameTakenError
from acqd.journal import Journal
from acqd.naming import is_temp
from acqd.storage.base import Tier

log = logging.getLogger(__name__)

LEDGER = "~acqd-holds"


@dataclass(frozen=True, slots=True)
class LedgerHold:
    root: str
    target: str
    until: float
    reason: str
    created: float
    placed_by: str = ""

    @property
    def key(self) -> str:
        """The same hold gets the same key in every journal and on every tier."""
        doc = json.dumps([self.root, self.target, repr(self.until), repr(self.created)])
        return xxhash.xxh3_128_hexdigest(doc.encode())

    def encode(self) -> bytes:
        return json.dumps(
            {
                "root": self.root,
                "target": self.target,
                "until": self.until,
                "reason": self.reason,
                "created": self.created,
                "placed_by": self.placed_by,
            },
            indent=1,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> LedgerHold:
        d = json.loads(data)
        until, created = float(d["until"]), float(d["created"])
        return cls(str(d["root"]), str(d["target"]), until, str(d["reason"]), created, str(d["placed_by"]))


@dataclass
class TierRecords:
    """What one tier's records say: the holds and the releases (by key)."""

    holds: dict[str, LedgerHold] = field(default_factory=dict)
    released: dict[str, float] = field(default_factory=dict)


@dataclass
class Synced:
    restored: list[LedgerHold] = field(default_factory=list)  # put back into the journal
    released: list[LedgerHold] = field(default_factory=list)  # releases put back into the journal
    written: int = 0  # records written to tiers
    problems: list[str] = field(default_factory=list)  # tiers not reached (retried at the next sync)


def _rel(instrument: str, key: str, released: bool = False) -> str:
    return f"{instrument}/{LEDGER}/{key}{'.released' if released else ''}.json"


def read_tier(tier: Tier, instrument: str) -> TierRecords:
    """The records on one tier. AcqdError if it cannot be listed or read; a record that does not
    parse is logged and skipped (the journal and the other tiers still have it)."""
    out = TierRecords()
    names = [n for n in tier.find(f"{instrument}/{LEDGER}") if n.endswith(".json")]
    for name in names:
        base = name.rpartition("/")[2]
        if is_temp(base):
            continue  # a record being written (or left by a crash): not one yet
        with tier.open_read(name) as f:
            data = f.read()
        try:
            if base.endswith(".released.json"):
                out.released[base.removesuffix(".released.json")] = float(json.loads(data)["released"])
            else:
                h = LedgerHold.decode(data)
                if h.key == base.removesuffix(".json"):
                    out.holds[h.key] = h
                else:
                    log.warning("tier %s: hold record %s does not match its name (ignored)", tier.name, name)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("tier %s: hold record %s cannot be read (ignored): %s", tier.name, name, exc)
    return out


def read_tiers(tiers: Iterable[Tier], instrument: str) -> tuple[dict[str, TierRecords], list[str]]:
    """Each reachable tier's records (by tier name), and a line per tier that could not be read."""
    got: dict[str, TierRecords] = {}
    problems: list[str] = []
    for t in tiers:
        try:
            got[t.name] = read_tier(t, instrument)
        except AcqdError as exc:
            problems.append(f"tier {t.name}: hold records not read: {exc}")
    return got, problems


def _put(tier: Tier, rel: str, data: bytes) -> bool:
    """Write one record unless it is there; True if written."""
    try:
        tier.write_atomic(rel, [data])
    except NameTakenError:
        return False
    return True


def journal_holds(j: Journal) -> dict[str, tuple[int, LedgerHold, float | None]]:
    """Every hold the journal has, in force or not: key -> (id, hold, released)."""
    return {h.key: (i, h, rel) for i, h, rel in _rows(j)}


def _rows(j: Journal) -> list[tuple[int, LedgerHold, float | None]]:
    return [
        (i, LedgerHold(root, target, until, reason, created, by), released)
        for i, target, until, reason, root, created, by, released in jr.all_holds(j)
    ]


def to_journal(j: Journal, seen: dict[str, TierRecords]) -> Synced:
    """Put into the journal the holds and releases the tiers' records have and it lacks."""
    out = Synced()
    mine = journal_holds(j)
    holds: dict[str, LedgerHold] = {}
    released: dict[str, float] = {}
    for recs in seen.values():
        holds.update(recs.holds)
        for k, when in recs.released.items():
            released[k] = min(when, released.get(k, when))
    for key, h in sorted(holds.items(), key=lambda kv: kv[1].created):
        if key not in mine:
            jr.restore_hold(j, h.target, h.until, h.reason, h.created, h.root, h.placed_by, released.get(key))
            out.restored.append(h)
        elif key in released and mine[key][2] is None:
            jr.release_hold_id(j, mine[key][0], released[key], via="hold records at the destination")
            out.released.append(h)
    return out


def to_tiers(
    j_holds: dict[str, tuple[int, LedgerHold, float | None]],
    tiers: Iterable[Tier],
    instrument: str,
    seen: dict[str, TierRecords],
) -> tuple[int, list[str]]:
    """Write to each reachable tier the records of the journal's holds (and releases) it lacks."""
    written, problems = 0, []
    for t in tiers:
        recs = seen.get(t.name)
        if recs is None:
            continue  # not read: not written either (retried at the next sync)
        try:
            for key, (_i, h, released) in j_holds.items():
                if key not in recs.holds and _put(t, _rel(instrument, key), h.encode()):
                    written += 1
                if released is not None and key not in recs.released:
                    doc = json.dumps({"released": released}).encode()
                    written += _put(t, _rel(instrument, key, released=True), doc)
        except AcqdError as exc:
            problems.append(f"tier {t.name}: hold records not written: {exc}")
    return written, problems


def sync(j: Journal, tiers: Iterable[Tier], instrument: str) -> Synced:
    """Both ways, in one blocking call (for a command; the daemon splits it over its executors):
    the tiers' records into the journal, then the journal's holds onto the tiers."""
    tiers = list(tiers)
    seen, problems = read_tiers(tiers, instrument)
    out = to_journal(j, seen)
    out.written, more = to_tiers(journal_holds(j), tiers, instrument, seen)
    out.problems = problems + more
    return out
