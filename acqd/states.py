"""The journal's state machine for one version of one source file. Pure.

    seen → complete → stored → verified → released
      ↘ quarantined (with a reason)   ↘ vanished (gone before it was shipped)

A quarantined or vanished file that changes or reappears is seen again. A stored copy that fails
verification, or a ship interrupted by a crash, goes back to complete and is redone idempotently.
A released row is final, and so is a verified one with one exception: a verified copy found gone or
changed at the destination before the local file is released sends the row back to seen (shipped
again, never trusted). A changed file with the same name becomes a new version row.
"""

from __future__ import annotations

import enum

from acqd.errors import AcqdError
from acqd.values import Identity, State

S = State

TRANSITIONS: dict[State, frozenset[State]] = {
    S.SEEN: frozenset({S.SEEN, S.COMPLETE, S.QUARANTINED, S.VANISHED}),
    S.COMPLETE: frozenset({S.SEEN, S.COMPLETE, S.STORED, S.QUARANTINED, S.VANISHED}),
    S.STORED: frozenset({S.SEEN, S.COMPLETE, S.VERIFIED, S.QUARANTINED, S.VANISHED}),
    # seen: the stored copy was lost before the release (shipped again); quarantined: lost, and the
    # source is no longer on the acquisition disk as shipped (nothing can ship it again: a person acts)
    S.VERIFIED: frozenset({S.RELEASED, S.SEEN, S.QUARANTINED}),
    # quarantined: `acqd verify` found its copy bad after the release (a person restores it)
    S.RELEASED: frozenset({S.QUARANTINED}),
    S.QUARANTINED: frozenset({S.SEEN}),
    S.VANISHED: frozenset({S.SEEN}),
}

#: States in which the file still needs work (what `--once` waits for).
PENDING: frozenset[State] = frozenset({S.SEEN, S.COMPLETE, S.STORED})
#: States after which the source row is never shipped again.
DONE: frozenset[State] = frozenset({S.VERIFIED, S.RELEASED})


class IllegalTransition(AcqdError):
    def __init__(self, old: State, new: State) -> None:
        super().__init__(f"illegal journal transition {old.value} -> {new.value}")
        self.old = old
        self.new = new


def transition(old: State, new: State) -> State:
    """Return `new` if the journal may move from `old` to it; raise IllegalTransition otherwise."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(old, new)
    return new


class Observed(enum.Enum):
    """What to do with a file the scan or the watcher found, given its journal row."""

    NEW = "new"  # no row: insert as seen, track it
    TRACK = "track"  # row pending with the same content: settle and (re)ship it
    RESET = "reset"  # row pending/quarantined/vanished but the file changed: back to seen, track it
    NEW_VERSION = "new_version"  # shipped before, and the file changed: a new version row
    #: verified, kept, and only its change time moved (a chmod, a new hard link; or a rewrite that put
    #: size and mtime back): its content is hashed and compared with the copy's before anything else
    RECHECK = "recheck"
    RELEASE = "release"  # verified, unchanged, release pending (a crash came between)
    SKIP = "skip"  # shipped (or quarantined) and unchanged: nothing to do


def on_observed(
    state: State | None, known: Identity | None, now: Identity, release: bool, lost_for_good: bool = False
) -> Observed:
    """Pure reconciliation of one observation with the journal (restart safety lives here).
    `lost_for_good`: a quarantined row whose verified copy `acqd verify` found bad while its source
    looked gone or changed (`Journal.copy_lost_for_good`)."""
    if state is None or known is None:
        return Observed.NEW
    same = now.same_content_as(known)
    if state in DONE:
        if not same:
            if (
                state is S.VERIFIED
                and (now.size, now.mtime_ns, now.inode) == (known.size, known.mtime_ns, known.inode)
                and now.same_device_as(known)
            ):
                return Observed.RECHECK
            return Observed.NEW_VERSION
        if state is S.VERIFIED and release and not now.same_device_as(known):
            # not the file that was shipped as far as a release can tell: never released on the old
            # copy's strength, shipped again (only where a release is due: a renumbered device must
            # not re-ship a whole disk that is kept)
            return Observed.NEW_VERSION
        return Observed.RELEASE if state is S.VERIFIED and release else Observed.SKIP
    if state is S.QUARANTINED and lost_for_good:
        # the source is there as it was shipped after all (a disk mounted again): shipped again, the
        # same version; another file under its name is a new version (the lost one stays said)
        return Observed.RESET if same else Observed.NEW_VERSION
    if state is S.QUARANTINED:
        # ctime also counts: a chmod that makes an unreadable file readable re-examines it
        return Observed.SKIP if same and now.ctime_ns == known.ctime_ns else Observed.RESET
    if state is S.VANISHED:
        return Observed.RESET
    return Observed.TRACK if same else Observed.RESET
