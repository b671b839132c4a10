"""What the owner page and the facility view read and do: a small data-access interface. Pure.

A single daemon implements it over its own journal (`acqd.owners.local`); a facility service can
implement it over its catalog. The web app imports only this module and `links`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol


class Refused(Exception):
    """An action the page refuses, with the HTTP status and a message for the owner."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def session_id(root: str, session: str) -> str:
    """The id forms carry for a session: opaque, stable, and the same whoever asks (the server
    checks it against the link's owner, so knowing another's id gives nothing)."""
    return hashlib.sha256(f"{root.rstrip('/')}\n{session}".encode()).hexdigest()[:20]


def project_id(project: str) -> str:
    """The id the project form carries: opaque and stable like a session's (checked against the link's owner)."""
    return hashlib.sha256(f"project\n{project}".encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class HoldRow:
    id: int
    root: str
    target: str
    until: float
    reason: str
    placed_by: str  # "owner:<name>" from the owner page, else "" (the facility: `acqd hold`)
    created: float
    owner: str = ""


@dataclass(frozen=True, slots=True)
class SessionRow:
    sid: str
    root: str
    session: str
    instrument: str
    files: int
    bytes: int
    tiers: tuple[str, ...]
    data_classes: tuple[str, ...]
    purge_at: float | None  # the first purge of a file of this session, holds taken into account
    transition_at: float | None
    transition_to: str
    why: tuple[str, ...]  # one line per rule that applies, from the planner's rules
    holds: tuple[HoldRow, ...] = ()
    project: str = ""  # the project its folder name carries (the policy's owners.project), "" if none

    @property
    def pid(self) -> str:
        return project_id(self.project) if self.project else ""

    @property
    def hold(self) -> HoldRow | None:
        return max(self.holds, key=lambda h: h.until) if self.holds else None


@dataclass(frozen=True, slots=True)
class Request:
    ts: float
    owner: str
    session: str
    until: float
    reason: str
    link: str
    mailed: bool


@dataclass
class Facility:
    instrument: str
    purges: list[tuple[str, str, int, int]] = field(default_factory=list)  # (week, owner, files, bytes)
    holds: list[HoldRow] = field(default_factory=list)
    usage: list[tuple[str, str, int, int]] = field(default_factory=list)  # (owner, tier, files, bytes)
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)  # (instrument, path, reason)
    requests: list[Request] = field(default_factory=list)


class OwnerData(Protocol):
    """Blocking or not, the app awaits every call."""

    instrument: str
    contact: str

    @property
    def max_hold(self) -> float:
        """Seconds from now an owner may hold data without asking."""
        ...

    async def sessions(self, owner: str, now: float) -> list[SessionRow]: ...

    async def hold(self, owner: str, sid: str, until: float, reason: str, now: float, link: str) -> SessionRow: ...

    async def hold_project(
        self, owner: str, pid: str, until: float, reason: str, now: float, link: str
    ) -> list[SessionRow]:
        """Hold every session of the owner's project; refused if the project holds anyone else's data."""
        ...

    async def release(self, owner: str, hold_id: int, now: float, link: str) -> HoldRow: ...

    async def request_extension(
        self, owner: str, sid: str, until: float, reason: str, now: float, link: str
    ) -> tuple[SessionRow, bool]: ...

    async def fresh_link(self, owner: str, now: float, link: str) -> None:
        """Mail `owner` a fresh link to the page, to the address their warnings go to (nothing if
        there is none: the caller answers the same either way)."""
        ...

    async def audit(self, event: str, /, **detail: object) -> None: ...

    async def facility(self, now: float) -> Facility: ...
