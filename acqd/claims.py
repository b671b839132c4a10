"""An instrument claims its destination prefix on every tier, so two daemons never write one name.

The claim is a small JSON object, ``<tier>/<instrument>/~acqd-claim.json`` (a reserved name, see
acqd.naming), naming the machine (``/etc/machine-id``), the host, the journal's id and its state
folder, and the run: an epoch the journal counts up at each start and a token new at each start.
A daemon checks it at start and again before each commit (at most a couple of seconds old),
together with its own journal file:

* no claim and nothing stored under the prefix: this daemon claims it (create-only);
* a claim naming this machine, this journal and one of its own runs (the journal keeps the token
  of every run it made, recorded before the run writes a claim): this run takes it;
* a claim naming this machine and this journal but a run it never made: the journal is a copy (a
  state folder copied to a second PC with the same machine id, a cloned image) or was restored
  from a backup, and the other copy has run since. Refused, however often it is started: such a
  journal does not know the files shipped since, and would rewrite their sessions' manifests
  without them;
* anything else (another PC with the same instrument name, a lost or replaced journal, another
  user's state folder): refuse, with one line saying whose it is and what to do.

While running, a claim that names another run of this journal (a copy started elsewhere) stops
this daemon's writes there.
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
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from acqd.checksum import Hasher
from acqd.errors import AcqdError, ClaimError, ConfigError, NameTakenError
from acqd.journal import Journal
from acqd.mounts import describe_tier as describe_unmounted
from acqd.mounts import unmounted_mount_point
from acqd.naming import MANIFEST, claim_name
from acqd.storage import Tier
from acqd.storage.errors import DestinationError

log = logging.getLogger("acqd")

SCHEMA = "acqd-claim/1"
CHECK_EVERY = 2.0  # seconds: a commit trusts a claim read at most this long ago
#: what a claim gone while acqd ran suggests, by the tier's URL scheme
GONE_HINT = {
    "s3": "its bucket deleted or emptied? another endpoint or credentials?",
    "sftp": "the server's folder removed or moved? another server?",
    "": "a network share unmounted? its folder removed?",
}
#: after `acqd adopt` claims the prefix: a daemon still running there sees the claim within CHECK_EVERY,
#: and a release or a manifest write it began before is done, before the manifests are read
ADOPT_GRACE = CHECK_EVERY + 1.0
#: journal meta key: an `acqd adopt` wrote its claim and has not finished its import (a crash, a stop,
#: a tier error): `run` refuses that journal until an adopt finishes, or it would write the session
#: manifests again without the copies not imported yet (those of released files: then in no record)
ADOPT_UNFINISHED = "adopt_unfinished"


def unfinished_adopt(journal: Journal) -> ClaimError | None:
    """The refusal of a journal whose last `acqd adopt` did not finish; None if none is pending."""
    since = journal.get_meta(ADOPT_UNFINISHED)
    if not since:
        return None
    return ClaimError(
        f"an `acqd adopt` into this journal ({journal.path}) began at {since} and did not finish: the prefix "
        "is claimed, its session manifests not all imported. Run `acqd adopt` again (or `acqd run --adopt`); "
        "nothing is shipped until one has finished (a run now would write the manifests again without "
        "the copies not imported)",
        "claim",
    )


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
    epoch: int = 0  # the journal's count of runs when this run claimed (0: a claim from before epochs)
    run: str = ""  # new at every start: two runs of one journal (a copy) never share it

    def encode(self) -> bytes:
        return json.dumps({"schema": SCHEMA, **asdict(self)}, indent=1).encode()

    @staticmethod
    def decode(data: bytes) -> Claim:
        try:
            doc: dict[str, Any] = json.loads(data)
            if doc.get("schema") != SCHEMA:
                raise ValueError(f"schema {doc.get('schema')!r}")
            return Claim(
                instrument=str(doc["instrument"]),
                machine_id=str(doc["machine_id"]),
                host=str(doc["host"]),
                journal_id=str(doc["journal_id"]),
                state_dir=str(doc["state_dir"]),
                since=str(doc["since"]),
                epoch=int(doc.get("epoch", 0)),
                run=str(doc.get("run", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ClaimError(f"unreadable claim: {exc}") from None

    def same_owner(self, other: Claim) -> bool:
        return (self.machine_id, self.journal_id) == (other.machine_id, other.journal_id)

    def same_run(self, other: Claim) -> bool:
        return self.same_owner(other) and self.run == other.run

    def foreign_run(self, other: Claim, runs: Collection[str]) -> bool:
        """This claim names `other`'s journal and a run that journal never made (`runs`: the tokens
        it recorded): a copy of the journal ran, or the journal a backup was restored over. A claim
        from before run tokens names none and is the journal's own."""
        return self.same_owner(other) and bool(self.run) and self.run != other.run and self.run not in runs

    def describe(self) -> str:
        return f"host {self.host} (machine {self.machine_id[:12]}), journal {self.journal_id[:12]} in {self.state_dir}"


def ours(instrument: str, journal: Journal, state_dir: Path) -> Claim:
    """This run's claim: the journal's epoch plus one (the journal counts it before the claim is
    written, see `take`) and a new run token."""
    return Claim(
        instrument=instrument,
        machine_id=machine_id(),
        host=socket.gethostname(),
        journal_id=journal.journal_id,
        state_dir=str(state_dir),
        since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        epoch=journal.epoch() + 1,
        run=uuid.uuid4().hex,
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
        runs: Collection[str] = (),
        on_claimed: Callable[[Tier], None] | None = None,
    ) -> None:
        self.claim = claim
        self.on_claimed = on_claimed  # a tier claimed here, after the start: recorded as where it is
        self.journal = journal
        self.runs = frozenset(runs) | {claim.run}  # the journal's runs, read at the start
        self.unclaimed = dict(unclaimed or {})  # tier name -> whether the journal has copies there
        self.mono = mono
        self.every = every
        self._checked: dict[str, float] = {}
        # ship workers (and retention) call the guard at once: on one tier, one looks (and claims)
        # at a time, so that one worker's claim being written is never another's "data this journal
        # does not know"; a lock per tier, so that a tier that hangs (a hard NFS mount whose server
        # is down, retention's cold tier) never holds up the checks of the others
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock_of(self, tier: Tier) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(tier.name, threading.Lock())

    def __call__(self, tier: Tier, fresh: bool = False) -> None:
        """Blocking (the I/O executor). Raises ClaimError when this daemon must stop writing; a
        storage error when the claim cannot be looked at now (the file is retried). `fresh`: look
        now, whatever the last look (a session manifest, which a stale look would write onto an
        empty mount point)."""
        with self._lock_of(tier):
            if fresh:
                self._checked.pop(tier.name, None)
            self._check(tier)

    def _check(self, tier: Tier) -> None:
        why = self.journal.still_mine()
        if why is not None:
            raise ClaimError(f"{why}; restart acqd (it will refuse the destination until `acqd adopt`)", "journal")
        if tier.name in self.unclaimed:
            note = claim_tier(tier, self.claim, self.unclaimed[tier.name], self.runs)
            del self.unclaimed[tier.name]
            log.info("%s", note)
            if self.on_claimed is not None:  # `verify` and `restore` find its copies there now (a review:
                # a tier claimed after the start kept its old recorded place until the next restart)
                self.on_claimed(tier)
            self._checked[tier.name] = self.mono()
            return
        now = self.mono()
        if now - self._checked.get(tier.name, -1e18) < self.every:
            return
        require_mounted(tier)  # a claim of this run in the empty mount point (`adopt` with the share down)
        try:
            there = read_claim(tier, self.claim.instrument)
        except ClaimError as exc:
            raise ClaimError(f"{tier.url(claim_name(self.claim.instrument))}: {exc}") from None
        if there is None:
            # claimed at the start of this run, gone now: the tier is not what it was (a network share
            # unmounted, whose empty mount point would take the copies on the local disk; a folder
            # removed or replaced). Nothing is written there until the claim is back: the file waits
            raise DestinationError(
                f"tier {tier.name}: the claim {tier.url(claim_name(self.claim.instrument))} has gone while acqd "
                f"ran: the tier is not what it was ({GONE_HINT.get(tier.url('').partition('://')[0], GONE_HINT[''])}); "
                "nothing is "
                "written there until it is back (if it was emptied on purpose: `acqd adopt`, then start acqd)"
            )
        if there is not None and there.same_owner(self.claim) and not there.same_run(self.claim):
            raise ClaimError(
                f"tier {tier.name}: {tier.url(self.claim.instrument)} is now claimed by another run of this "
                f"journal (run {there.epoch}, started {there.since} on {there.describe()}): a copy of this state "
                "folder runs elsewhere; this daemon stopped writing there"
            )
        if there is None or not there.same_owner(self.claim):
            who = there.describe() if there else "nobody"
            raise ClaimError(
                f"tier {tier.name}: {tier.url(self.claim.instrument)} is now claimed by {who}, not by this "
                "daemon; it stopped writing there"
            )
        self._checked[tier.name] = now


def require_mounted(tier: Tier) -> None:
    """DestinationError if a local tier's folder is at or below a mount point of fstab (or a .mount
    unit) with nothing mounted on it: its empty mount point is the local disk, whatever it holds (a
    claim or copies put there before, an admin's note); nothing is claimed, written or adopted there."""
    if tier.local and (point := unmounted_mount_point(tier.root)) is not None:
        raise DestinationError(f"tier {tier.name}: {describe_unmounted(point)}")


def not_ours(tier: Tier, journal_id: str, instrument: str, known: bool) -> str | None:
    """Why a command beside the daemon (`acqd hold` writing its records) must not write to `tier` for
    this journal, or None: the tier must be mounted, and hold this journal's claim, or no claim and
    nothing of the instrument while the journal records no copy there (`known`: it does; a tier not
    used yet). A folder swapped for an empty one (a share not mounted) or claimed by another journal is
    left alone, as the daemon leaves it. Blocking; asks the tier only (any thread)."""
    try:
        require_mounted(tier)
        there = read_claim(tier, instrument)
    except AcqdError as exc:
        return str(exc)
    if there is None:
        if known and not tier.has_objects(instrument):
            return (
                f"this journal has copies on it, but {tier.url(instrument)} holds nothing of instrument "
                f"{instrument!r}, not even its claim (a network share not mounted?)"
            )
        return None
    if there.journal_id != journal_id:
        return f"{tier.url(instrument)} is claimed by another journal ({there.describe()})"
    return None


def unmade_parent(tier: Tier) -> str | None:
    """Why a local tier's folder must not be made: neither it nor the folder it would be made in
    exists (a mistyped path, or a share not mounted: `makedirs` would build the whole path on the
    local disk, and files released against copies there). None if it exists or can be made."""
    if not tier.local or os.path.lexists(tier.root):
        return None
    parent = os.path.dirname(tier.root.rstrip("/")) or "/"
    if os.path.isdir(parent):
        return None
    return (
        f"tier {tier.name}: neither {tier.root} nor the folder it would be made in ({parent}) exists: a mistyped "
        f"path, or a share not mounted? acqd makes only the tier's own folder, inside one that exists; if this is "
        f"the place, make it first (mkdir -p {tier.root})"
    )


def _renamed_from(tier: Tier, claim: Claim) -> str | None:
    """The instrument prefix on `tier` (a top-level folder) whose claim this claim's journal wrote,
    other than its own: the instrument was renamed in the configuration. None if none (or the tier
    cannot be listed)."""
    try:
        names: list[str] = [str(p).rstrip("/").rpartition("/")[2] for p in tier.fs.ls(tier.path(""), detail=False)]
    except Exception:  # a look for a better message only
        return None
    for name in sorted(names):
        if name == claim.instrument or name.startswith((".", "~")):
            continue
        try:
            there = read_claim(tier, name)
        except Exception:
            continue
        if there is not None and there.same_owner(claim):
            return name
    return None


def look(tier: Tier, claim: Claim, known: bool, runs: Collection[str] = ()) -> Claim | None:
    """May this run claim the instrument's prefix on `tier`? Returns the claim there (None: none),
    or refuses (ClaimError, one line). Writes nothing. `known`: the journal already records copies
    on this tier (a destination acqd used before claims existed)."""
    require_mounted(tier)
    there = read_claim(tier, claim.instrument)
    if there is None:
        if known and not tier.has_objects(claim.instrument):
            # copies recorded there, and nothing at all under the prefix (not even a claim): an empty
            # mount point, not the tier; writing would put the copies on the local disk
            old = _renamed_from(tier, claim)
            if old is not None:  # this journal's claim under another prefix: `instrument:` was changed
                raise ClaimError(
                    f"tier {tier.name}: this journal's copies are under {tier.url(old)}, claimed by this very "
                    f"journal, and nothing is under {tier.url(claim.instrument)}: was `instrument:` renamed from "
                    f"{old!r}? Put `instrument: {old}` back (a new name does not move the copies, and `acqd adopt` "
                    "under the new name would leave them known to no manifest of it)"
                )
            raise DestinationError(
                f"tier {tier.name}: this journal has copies on it, but {tier.url(claim.instrument)} holds nothing "
                f"of instrument {claim.instrument!r}, not even its claim: a network share not mounted? acqd waits "
                "for it; if the tier was emptied on purpose, run `acqd adopt`"
            )
        if not known and (why := unmade_parent(tier)) is not None:
            raise ClaimError(why)
        if not known and tier.has_objects(claim.instrument):
            raise ClaimError(
                f"tier {tier.name}: {tier.url(claim.instrument)} already holds data of instrument "
                f"{claim.instrument!r} that this journal does not know; if this PC took over from another one "
                "or lost its journal, run `acqd adopt` (it imports the manifests there); otherwise give this PC "
                "its own `instrument` name"
            )
        return None
    if not there.same_owner(claim) or there.foreign_run(claim, runs):
        raise refused(tier, claim, there)
    return there


def take(tier: Tier, claim: Claim, there: Claim | None, runs: Collection[str] = ()) -> str:
    """Write this run's claim on `tier` after `look` allowed it (and after the journal counted
    this run's epoch). Raises ClaimError if another daemon or run claimed it in between."""
    if there is not None and there.same_run(claim):
        return f"tier {tier.name}: {tier.url(claim.instrument)} is this daemon's"
    try:
        write_claim(tier, claim, replace=there is not None)
    except NameTakenError:  # another daemon claimed it a moment ago
        now = read_claim(tier, claim.instrument)
        if now is None or not now.same_owner(claim) or now.foreign_run(claim, runs):
            raise refused(tier, claim, now) from None
        if not now.same_run(claim):
            write_claim(tier, claim, replace=True)
    return f"tier {tier.name}: claimed {tier.url(claim.instrument)} (run {claim.epoch})"


def claim_tier(tier: Tier, claim: Claim, known: bool, runs: Collection[str] = ()) -> str:
    """`look`, then `take` (the guard, for a tier that could not be looked at when the run began:
    the journal recorded the run then)."""
    return take(tier, claim, look(tier, claim, known, runs), runs)


def establish(
    tiers: dict[str, Tier],
    claim: Claim,
    known: dict[str, bool],
    count_run: Callable[[], None],
    runs: Collection[str] = (),
) -> tuple[list[str], dict[str, bool]]:
    """At start: claim the instrument's prefix on every tier, or refuse (ClaimError). Every tier is
    looked at first (`runs`: the journal's own runs); only when none refuses does `count_run()`
    record this run in the journal (durably), and then the claims are written. A tier that cannot
    be looked at now is left for the guard to look at and claim before its first commit (a claim of
    a run the journal never made is refused there too: a stale journal started while a tier is
    down never gets past it). Returns notes and the tiers left unclaimed."""
    notes: list[str] = []
    later: dict[str, bool] = {}
    looked: dict[str, Claim | None] = {}
    for name, tier in tiers.items():
        try:
            looked[name] = look(tier, claim, known.get(name, False), runs)
        except ClaimError:
            raise
        except AcqdError as exc:
            notes.append(f"tier {name}: claim not checked yet ({exc}); checked before its first write")
            later[name] = known.get(name, False)
    count_run()
    for name, there in looked.items():
        try:
            notes.append(take(tiers[name], claim, there, runs))
        except ClaimError:
            raise
        except AcqdError as exc:
            notes.append(f"tier {name}: claim not written yet ({exc}); claimed before its first write")
            later[name] = known.get(name, False)
    return notes, later


def refused(tier: Tier, claim: Claim, there: Claim | None) -> ClaimError:
    who = there.describe() if there is not None else "another daemon"
    if there is not None and there.same_owner(claim) and there.run and there.run != claim.run:
        return ClaimError(
            f"tier {tier.name}: {tier.url(claim.instrument)} was claimed by a run of this journal that this "
            f"journal never made (run {there.epoch}, started {there.since} on {there.describe()}): this journal "
            "was restored from a backup or is a copy of a state folder in use elsewhere, and does not know the "
            "files shipped since. Start acqd with the newest journal; if it is lost, run `acqd adopt` (it "
            "imports what the manifests there record, then claims the prefix)"
        )
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


def _read_manifests(
    tiers: dict[str, Tier], claim: Claim, roots: dict[str, str], counts: dict[str, int], say: bool = True
) -> tuple[dict[str, list[tuple[str, dict[str, Any]]]], set[str]]:
    """Every session manifest of this instrument on each tier that names a configured watch root (tier
    -> [(name, document)]), and the unconfigured watch roots the others name; what is skipped is
    counted, and logged if `say`."""
    warn = log.warning if say else log.debug
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # tier -> its manifests (name, document)
    elsewhere: set[str] = set()  # watch roots this instrument's manifests name that are not configured
    for name, tier in tiers.items():
        found[name] = []
        for rel in manifests_below(tier, claim.instrument):
            try:
                with tier.open_read(rel) as f:
                    doc = json.loads(f.read())
            except (AcqdError, ValueError) as exc:
                warn("adopt: %s unreadable (%s); skipped", tier.url(rel), exc)
                counts["skipped"] += 1
                continue
            mine = doc.get("instrument") == claim.instrument
            named = _entry_roots(doc)  # each entry's watch root (a manifest may hold several roots' files)
            if not mine or not set(named) & set(roots):
                warn("adopt: %s belongs to another instrument or watch root; skipped", tier.url(rel))
                counts["skipped"] += 1
                if mine:
                    elsewhere.update(named)
                continue
            if set(named) - set(roots):
                warn(
                    "adopt: %s: the files of watch root(s) %s skipped (not configured here)",
                    tier.url(rel),
                    ", ".join(sorted(set(named) - set(roots))),
                )
                counts["skipped"] += sum(n for r, n in named.items() if r not in roots)
            found[name].append((rel, doc))
    return found, elsewhere


def adopt(
    tiers: dict[str, Tier],
    claim: Claim,
    journal: Journal,
    roots: dict[str, str],
    stat: Callable[[str], os.stat_result | None],
    moved: dict[str, str] | None = None,
) -> dict[str, int]:
    """Take the instrument's prefix over on purpose: write this daemon's claim (a daemon still running
    there stops), then import every file its session manifests record (as verified copies) into
    `journal`. `roots` maps a manifest's watch root to the configured one (same path). Returns counts.
    Adopt again after a failure part way: the claim is this journal's, and the import repeats."""
    counts = {"manifests": 0, "files": 0, "skipped": 0}
    for tier in tiers.values():  # a share not mounted: nothing to adopt there, and no claim onto the local disk
        require_mounted(tier)
    # the adopted claim outcounts every run that claimed there before (a newer copy of this journal
    # included), so that copy is refused from now on; the journal counts it before it is written
    top = claim.epoch
    for tier in tiers.values():
        with contextlib.suppress(ClaimError):
            there = read_claim(tier, claim.instrument)
            if there is not None and not there.same_run(claim):
                top = max(top, there.epoch + 1)
    claim = replace(claim, epoch=top)
    found, elsewhere = _read_manifests(tiers, claim, roots, dict(counts), say=False)
    if elsewhere and not any(found.values()):
        # taking the prefix over while importing nothing would lock the daemon that shipped it out
        # and ship every file again under new versions: the watch root is named differently here
        raise ConfigError(
            f"adopt: the manifests under {claim.instrument}/ were shipped from watch root(s) "
            f"{', '.join(sorted(elsewhere))}, not {', '.join(sorted(roots))}: nothing adopted, nothing "
            "claimed. Give the watch root the path they were shipped from (mount the disk there), then adopt"
        )
    for name, was in sorted((moved or {}).items()):
        if not found.get(name):
            # the journal's copies are recorded at `was`; a place that holds none of the instrument's
            # manifests is not where they went (a mistyped --dest): claiming it and recording the tier
            # there would have `verify` take every copy for missing and `restore` find none
            raise ConfigError(
                f"adopt: this journal's copies on tier {name} are at {was}; {tiers[name].url('')} holds no "
                f"manifest of {claim.instrument}/ (a mistyped --dest?): nothing adopted, nothing claimed. Give "
                "the place the journal records; if the copies were moved, move their manifests with them"
            )
    journal.set_meta(ADOPT_UNFINISHED, time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()))  # until imported
    journal.count_run(claim.run, top)  # before any claim names this run
    # claimed before the manifests are read for good: a daemon still running there (a takeover under
    # it) halts at its next look at the claim, before its next release or manifest write; read while
    # it ran, the manifests missed the files it released meanwhile, known then to no journal (review)
    for tier in tiers.values():
        write_claim(tier, claim, replace=True)
    time.sleep(ADOPT_GRACE)  # a release or a manifest write it began under the old claim is done
    found, _ = _read_manifests(tiers, claim, roots, counts)
    for name, tier in tiers.items():
        for rel, doc in found[name]:
            counts["manifests"] += 1
            shipped_from = doc.get("watch_root")
            by_root: dict[str, list[dict[str, Any]]] = {}
            for e in doc.get("files", []):
                where = e.get("watch_root", shipped_from) if isinstance(e, dict) else None
                if isinstance(where, str) and where in roots:
                    by_root.setdefault(where, []).append(e)
            for where, entries in sorted(by_root.items()):
                counts["files"] += _adopt_entries(
                    journal, roots[where], name, tier, rel, entries, claim, counts, stat, tiers.keys()
                )
    journal.set_meta(ADOPT_UNFINISHED, "")  # every manifest imported: the journal may ship
    return counts


def _entry_roots(doc: dict[str, Any]) -> dict[str, int]:
    """How many entries of a manifest each watch root shipped (an entry's own `watch_root`, else the
    manifest's)."""
    top = doc.get("watch_root")
    out: dict[str, int] = {}
    for e in doc.get("files", []) if isinstance(doc.get("files"), list) else []:
        if isinstance(e, dict):
            r = e.get("watch_root", top)
            if isinstance(r, str):
                out[r] = out.get(r, 0) + 1
    if not out and isinstance(top, str):
        out[top] = 0
    return out


def _adopt_entries(
    journal: Journal,
    root: str,
    name: str,
    tier: Tier,
    rel: str,
    entries: list[dict[str, Any]],
    claim: Claim,
    counts: dict[str, int],
    stat: Callable[[str], Any],
    known: Collection[str],
) -> int:
    """Import one watch root's entries of a manifest; how many copies were imported. `known`: the
    configured tiers (an entry's copy is on the tier it names)."""
    fits = [e for e in entries if _adoptable(e, claim.instrument)]
    # each copy on the tier its entry names where this configuration has that tier (a policy rule placed
    # it there); else on the tier the manifest is on (a tier renamed since: the same storage, most likely)
    fits = [e if e.get("tier") in known else {**e, "tier": name} for e in fits]
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
    return journal.adopt_manifest(root, name, fits, _proven(root, fits, stat))
