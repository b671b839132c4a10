"""An instrument claims its destination prefix on every tier, so two daemons never write one name.

The claim is a small JSON object, ``<tier>/<instrument>/~acqd-claim.json`` (a reserved name, see
acqd.naming), naming the machine (``/etc/machine-id``), the host, the journal's id and its state
folder. A daemon checks it at start and again before each commit (at most a couple of seconds
old), together with its own journal file:

* no claim and nothing stored under the prefix: this daemon claims it (create-only);
* a claim naming this machine and this journal: carry on;
* anything else (another PC with the same instrument name, a cloned image, a lost or replaced
  journal, another user's state folder): refuse, with one line saying whose it is and what to do.
  ``acqd adopt`` takes the prefix over on purpose: it imports what the session manifests there
  record into this journal, so nothing stored is shipped over, then rewrites the claim.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from acqd.checksum import Hasher
from acqd.errors import AcqdError, ClaimError, NameTakenError
from acqd.journal import Journal
from acqd.naming import MANIFEST, claim_name
from acqd.storage import Tier

log = logging.getLogger("acqd")

SCHEMA = "acqd-claim/1"
CHECK_EVERY = 2.0  # seconds: a commit trusts a claim read at most this long ago


def machine_id() -> str:
    """The host's machine id (systemd's /etc/machine-id); a stable fallback where there is none."""
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            v = Path(p).read_text().strip()
        except OSError:
            continue
        if v:
            return v
    return "host-" + uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname()).hex


@dataclass(frozen=True)
class Claim:
    instrument: str
    machine_id: str
    host: str
    journal_id: str
    state_dir: str
    since: str

    def encode(self) -> bytes:
        return json.dumps({"schema": SCHEMA, **asdict(self)}, indent=1).encode()

    @staticmethod
    def decode(data: bytes) -> Claim:
        try:
            doc: dict[str, Any] = json.loads(data)
            if doc.get("schema") != SCHEMA:
                raise ValueError(f"schema {doc.get('schema')!r}")
            return Claim(
                *(str(doc[k]) for k in ("instrument", "machine_id", "host", "journal_id", "state_dir", "since"))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ClaimError(f"unreadable claim: {exc}") from None

    def same_owner(self, other: Claim) -> bool:
        return (self.machine_id, self.journal_id) == (other.machine_id, other.journal_id)

    def describe(self) -> str:
        return f"host {self.host} (machine {self.machine_id[:12]}), journal {self.journal_id[:12]} in {self.state_dir}"


def ours(instrument: str, journal: Journal, state_dir: Path) -> Claim:
    return Claim(
        instrument=instrument,
        machine_id=machine_id(),
        host=socket.gethostname(),
        journal_id=journal.journal_id,
        state_dir=str(state_dir),
        since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def read_claim(tier: Tier, instrument: str) -> Claim | None:
    rel = claim_name(instrument)
    if tier.size(rel) is None:
        return None
    with tier.open_read(rel) as f:
        return Claim.decode(f.read())


def write_claim(tier: Tier, claim: Claim, *, replace: bool) -> None:
    tier.write_atomic(claim_name(claim.instrument), [claim.encode()], replace=replace)


class Guard:
    """Checks, before each commit, that this daemon still owns its destination and its journal.

    A tier that could not be claimed at start (down, full, refusing writes) is claimed here, before
    its first commit; until then its files wait and are retried like any failed write."""

    def __init__(
        self,
        claim: Claim,
        journal: Journal,
        unclaimed: dict[str, bool] | None = None,
        mono: Callable[[], float] = time.monotonic,
        every: float = CHECK_EVERY,
    ) -> None:
        self.claim = claim
        self.journal = journal
        self.unclaimed = dict(unclaimed or {})  # tier name -> whether the journal has copies there
        self.mono = mono
        self.every = every
        self._checked: dict[str, float] = {}
        # ship workers call the guard at once: one looks (and claims) at a time, so that one
        # worker's claim being written is never another's "data this journal does not know"
        self._lock = threading.Lock()

    def __call__(self, tier: Tier) -> None:
        """Blocking (the I/O executor). Raises ClaimError when this daemon must stop writing; a
        storage error when the claim cannot be looked at now (the file is retried)."""
        with self._lock:
            self._check(tier)

    def _check(self, tier: Tier) -> None:
        why = self.journal.still_mine()
        if why is not None:
            raise ClaimError(f"{why}; restart acqd (it will refuse the destination until `acqd adopt`)")
        if tier.name in self.unclaimed:
            note = claim_tier(tier, self.claim, self.unclaimed[tier.name])
            del self.unclaimed[tier.name]
            log.info("%s", note)
            self._checked[tier.name] = self.mono()
            return
        now = self.mono()
        if now - self._checked.get(tier.name, -1e18) < self.every:
            return
        try:
            there = read_claim(tier, self.claim.instrument)
        except ClaimError as exc:
            raise ClaimError(f"{tier.url(claim_name(self.claim.instrument))}: {exc}") from None
        if there is None:  # somebody removed it: claim it again (create-only), then look once more
            log.warning("tier %s: the claim of %s had gone; claimed again", tier.name, self.claim.instrument)
            with contextlib.suppress(NameTakenError):
                write_claim(tier, self.claim, replace=False)
            there = read_claim(tier, self.claim.instrument)
        if there is None or not there.same_owner(self.claim):
            who = there.describe() if there else "nobody"
            raise ClaimError(
                f"tier {tier.name}: {tier.url(self.claim.instrument)} is now claimed by {who}, not by this "
                "daemon; it stopped writing there"
            )
        self._checked[tier.name] = now


def claim_tier(tier: Tier, claim: Claim, known: bool) -> str:
    """Claim the instrument's prefix on one tier, or refuse (ClaimError, one line). `known`: the
    journal already records copies on this tier (a destination acqd used before claims existed)."""
    there = read_claim(tier, claim.instrument)
    if there is None:
        if not known and tier.has_objects(claim.instrument):
            raise ClaimError(
                f"tier {tier.name}: {tier.url(claim.instrument)} already holds data of instrument "
                f"{claim.instrument!r} that this journal does not know; if this PC took over from another one "
                "or lost its journal, run `acqd adopt` (it imports the manifests there); otherwise give this PC "
                "its own `instrument` name"
            )
        try:
            write_claim(tier, claim, replace=False)
        except NameTakenError:  # another daemon claimed it a moment ago
            there = read_claim(tier, claim.instrument)
            if there is None or not there.same_owner(claim):
                raise refused(tier, claim, there) from None
        return f"tier {tier.name}: claimed {tier.url(claim.instrument)}"
    if not there.same_owner(claim):
        raise refused(tier, claim, there)
    return f"tier {tier.name}: {tier.url(claim.instrument)} is this daemon's"


def establish(tiers: dict[str, Tier], claim: Claim, known: dict[str, bool]) -> tuple[list[str], dict[str, bool]]:
    """At start: claim the instrument's prefix on every tier, or refuse (ClaimError). A tier that
    cannot be looked at now is left for the guard to claim before its first commit. Returns notes
    and the tiers left unclaimed."""
    notes, later = [], {}
    for name, tier in tiers.items():
        try:
            notes.append(claim_tier(tier, claim, known.get(name, False)))
        except ClaimError:
            raise
        except AcqdError as exc:
            notes.append(f"tier {name}: claim not checked yet ({exc}); checked before its first write")
            later[name] = known.get(name, False)
    return notes, later


def refused(tier: Tier, claim: Claim, there: Claim | None) -> ClaimError:
    who = there.describe() if there is not None else "another daemon"
    if there is not None and there.machine_id == claim.machine_id:
        hint = (
            f"use that state folder (--state-dir {there.state_dir}) or, if that journal is lost, run `acqd adopt`"
            " (or, on a cloned PC, give this one its own `instrument` name)"
        )
    else:
        hint = "another PC uses this instrument name: give each PC its own `instrument` (or `acqd adopt` to take over)"
    return ClaimError(f"tier {tier.name}: {tier.url(claim.instrument)} is claimed by {who}; {hint}")


# -- adoption ---------------------------------------------------------------------------------
def manifests_below(tier: Tier, instrument: str) -> list[str]:
    return [p for p in tier.find(instrument) if p.rpartition("/")[2] == MANIFEST]


def _clean(path: object) -> bool:
    """A relative path of plain names: no empty part, no `.` or `..`, not absolute."""
    return isinstance(path, str) and bool(path) and all(p not in ("", ".", "..") for p in path.split("/"))


def _adoptable(entry: dict[str, Any], instrument: str) -> bool:
    """A manifest entry `acqd adopt` may import: its copy below the instrument's prefix, and its
    source a path inside the watch root."""
    dest = entry.get("dest")
    return _clean(dest) and str(dest).startswith(f"{instrument}/") and _clean(entry.get("source"))


def _proven(
    root: str, entries: list[dict[str, Any]], stat: Callable[[str], os.stat_result | None]
) -> Callable[[str], os.stat_result | None]:
    """`stat` for the sources that are provably the content their manifest entry records, None for
    the others. A manifest records a source's size and mtime, not its ctime or inode: a file
    rewritten in place with its size and mtime kept (`cp --preserve=timestamps`, `touch -r`) looks
    the same by them, and an adopted row with the file's live identity is released as shipped. So
    the bytes are read and their checksum compared, where the copy's checksum is of the bytes (the
    copy layout); a source of a frame layout (its checksum is of the decoded pixels) is not taken
    for its copy: it is shipped again as a new version, a duplicate rather than a loss."""
    by_path = {f"{root}/{e.get('source')}": e for e in entries}

    def proven(path: str) -> os.stat_result | None:
        st = stat(path)
        e = by_path.get(path)
        if st is None or e is None or e.get("layout") != "copy":
            return None
        if st.st_size != e.get("source_bytes") or st.st_mtime_ns != e.get("source_mtime_ns"):
            return None
        h = Hasher()
        try:
            with open(path, "rb") as f:
                while block := f.read(8 << 20):
                    h.update(block)
        except OSError:
            return None
        return st if h.hexdigest() == e.get("checksum") else None

    return proven


def adopt(
    tiers: dict[str, Tier],
    claim: Claim,
    journal: Journal,
    roots: dict[str, str],
    stat: Callable[[str], os.stat_result | None],
) -> dict[str, int]:
    """Take the instrument's prefix over on purpose: import every file its session manifests record
    (as verified copies) into `journal`, then write this daemon's claim. `roots` maps a manifest's
    watch root to the configured one (same path). Returns counts."""
    counts = {"manifests": 0, "files": 0, "skipped": 0}
    for name, tier in tiers.items():
        for rel in manifests_below(tier, claim.instrument):
            try:
                with tier.open_read(rel) as f:
                    doc = json.loads(f.read())
            except (AcqdError, ValueError) as exc:
                log.warning("adopt: %s unreadable (%s); skipped", tier.url(rel), exc)
                counts["skipped"] += 1
                continue
            if doc.get("instrument") != claim.instrument or doc.get("watch_root") not in roots:
                log.warning("adopt: %s belongs to another instrument or watch root; skipped", tier.url(rel))
                counts["skipped"] += 1
                continue
            counts["manifests"] += 1
            root = roots[doc["watch_root"]]
            entries = [e for e in doc.get("files", []) if isinstance(e, dict)]
            fits = [e for e in entries if _adoptable(e, claim.instrument)]
            if len(fits) < len(entries):
                # a manifest is a file at the destination that anyone who can write there can edit: an
                # entry naming another instrument's object, or a path out of the tier, would become a
                # copy that retention later moves or purges
                log.warning(
                    "adopt: %s: %d entr%s outside %s/ (or with '..', or not named) skipped",
                    tier.url(rel),
                    len(entries) - len(fits),
                    "y" if len(entries) - len(fits) == 1 else "ies",
                    claim.instrument,
                )
                counts["skipped"] += len(entries) - len(fits)
            counts["files"] += journal.adopt_manifest(root, name, fits, _proven(root, fits, stat))
        write_claim(tier, claim, replace=True)
    return counts
