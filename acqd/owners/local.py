"""The owner page's data on a single daemon: its own journal, retention policy and holds.

Every call runs on the journal's executor (the daemon's writer thread, or a private one for
`acqd owner-page`). Holds go into the same table `acqd hold` writes, so the next sweep, `acqd hold
--list` and `acqd plan` see them; every action is audited with the link's owner and id.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import partial
from typing import Any, TypeVar

from acqd import journal as jr
from acqd.errors import AcqdError
from acqd.journal import Journal
from acqd.notify import Mailer
from acqd.owners import view
from acqd.owners.access import Facility, HoldRow, Refused, Request, SessionRow
from acqd.policy.model import Policy
from acqd.policy.planner import Hold, Item, Warning_
from acqd.retention import items_of

log = logging.getLogger("acqd.owners")
T = TypeVar("T")


def _items(j: Journal) -> list[Item]:
    return items_of(jr.retention_items(j))


def _holds(j: Journal, now: float) -> list[HoldRow]:
    return [HoldRow(i, w, t, u, r, b, c) for i, t, u, r, w, c, b in jr.hold_records(j, now)]


def _warnings(j: Journal) -> list[Warning_]:
    return [Warning_(c, p, s, r) for c, p, s, r in jr.delivered_warnings(j)]


def _ended(j: Journal, warnings: list[Warning_], now: float) -> list[Hold]:
    """Holds that ended since the earliest warned date (they may have voided a warning)."""
    since = min((w.purge_at for w in warnings), default=now)
    return [Hold(t, u, r, w) for t, u, r, w in jr.holds_ended_after(j, since) if u <= now]


class JournalData:
    """`acqd.owners.access.OwnerData` over one daemon's journal."""

    def __init__(
        self,
        *,
        journal: Journal,
        jexec: Executor,
        policy: Callable[[], Policy],
        instrument: str,
        contact: str,
        mailer: Mailer,
        sender: str,
        facility_email: str | None,
        links: Callable[[str, float], tuple[str, str, float]] | None = None,
        on_holds_changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.journal = journal
        # after a hold is placed or released: its record written on the tiers (acqd.holdledger)
        self.on_holds_changed = on_holds_changed
        self._recording: set[asyncio.Task[None]] = set()  # records being written (a reference kept)
        self.jexec = jexec
        self._policy = policy
        self.instrument = instrument
        self.contact = contact
        self.mailer = mailer
        self.sender = sender
        self.facility_email = facility_email
        self.links = links  # owner, now -> (a signed link to the page, its id, its expiry), as the digests'

    @property
    def max_hold(self) -> float:
        return self._policy().spec.owners.maxHold

    async def _j(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.jexec, partial(fn, *args, **kw))

    def _sessions(self, owner: str, now: float) -> list[SessionRow]:
        policy = self._policy()
        items = [it for it in _items(self.journal) if view.owner_of(policy, it) == owner]
        ws = _warnings(self.journal)
        holds, ended = _holds(self.journal, now), _ended(self.journal, ws, now)
        return view.sessions(self.instrument, policy, items, holds, ws, now, ended)

    async def sessions(self, owner: str, now: float) -> list[SessionRow]:
        return await self._j(self._sessions, owner, now)

    def _mine(self, owner: str, sid: str, now: float) -> SessionRow:
        for s in self._sessions(owner, now):
            if s.sid == sid:
                return s
        raise Refused("no session of yours has this id (the page lists every session of yours)", 404)

    def _only_mine(self, owner: str, sessions: list[SessionRow], project: str = "") -> None:
        """Refuse (without naming anyone) if a hold on these session folders would also keep data of
        another owner (or of none known), or if the project has sessions of others."""
        policy = self._policy()
        folders = {(s.root.rstrip("/"), s.session) for s in sessions}
        for it in _items(self.journal):
            inside = (it.root.rstrip("/"), it.session) in folders
            if (inside or (project and view.project_of(policy, it) == project)) and view.owner_of(policy, it) != owner:
                what = f"project {project}" if project else f"session {sessions[0].session}"
                raise Refused(
                    f"{what} also holds data that is not yours, so it cannot be kept from this page: "
                    + ("keep your sessions one by one, or " if project else "")
                    + f"ask {self.contact}",
                    403,
                )

    def _hold(self, owner: str, sid: str, until: float, reason: str, now: float, link: str) -> SessionRow:
        s = self._mine(owner, sid, now)
        if s.session in ("", "."):
            raise Refused(f"files outside a session folder cannot be held here; ask {self.contact}", 400)
        self._only_mine(owner, [s])
        jr.add_hold(
            self.journal,
            s.session,
            until,
            reason,
            now,
            root=s.root,
            placed_by=f"owner:{owner}",
            owner=owner,
            link=link,
            via="owner-page",
        )
        return self._mine(owner, sid, now)

    async def _recorded(self) -> None:
        """The hold is in the journal (the page's answer stands); its records on the tiers follow in
        the background: the answer does not wait for the tiers (a server that accepts and never
        answers held the owner's browser for minutes), and if a tier cannot take them now, the next
        retention sweep writes them."""
        if self.on_holds_changed is None:
            return
        task = asyncio.ensure_future(self._record(self.on_holds_changed))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, write: Callable[[], Awaitable[None]]) -> None:
        try:
            await write()
        except Exception as exc:
            log.warning("owner page: hold records not written to the tiers yet (the next sweep does): %s", exc)

    async def hold(self, owner: str, sid: str, until: float, reason: str, now: float, link: str) -> SessionRow:
        row = await self._j(self._hold, owner, sid, until, reason, now, link)
        await self._recorded()
        return row

    def _hold_project(self, owner: str, pid: str, until: float, reason: str, now: float, link: str) -> list[SessionRow]:
        mine = [s for s in self._sessions(owner, now) if s.pid == pid]
        if not mine:
            raise Refused("no project of yours has this id (the page lists every project of yours)", 404)
        project = mine[0].project
        if any(s.session in ("", ".") for s in mine):
            raise Refused(f"project {project} has files outside a session folder; ask {self.contact}", 400)
        self._only_mine(owner, mine, project)
        # one hold per session folder, in one commit; the project is named in each reason, so `acqd hold
        # --list`, `acqd plan`, the digest and the facility view say why
        done = self.journal.run_group(
            [
                partial(
                    jr.add_hold,
                    self.journal,
                    s.session,
                    until,
                    f"project {project}: {reason}",
                    now,
                    root=s.root,
                    placed_by=f"owner:{owner}",
                    owner=owner,
                    link=link,
                    via="owner-page",
                    project=project,
                )
                for s in mine
            ]
        )
        for ok, err in done:
            if not ok:
                raise err
        return [s for s in self._sessions(owner, now) if s.pid == pid]

    async def hold_project(
        self, owner: str, pid: str, until: float, reason: str, now: float, link: str
    ) -> list[SessionRow]:
        rows = await self._j(self._hold_project, owner, pid, until, reason, now, link)
        await self._recorded()
        return rows

    def _release(self, owner: str, hold_id: int, now: float, link: str) -> HoldRow:
        for s in self._sessions(owner, now):
            for h in s.holds:
                if h.id == hold_id:
                    if h.placed_by != f"owner:{owner}":
                        raise Refused(f"this hold was placed by the facility; ask {self.contact} to release it", 403)
                    jr.release_hold_id(self.journal, hold_id, now, owner=owner, link=link, via="owner-page")
                    return h
        raise Refused("no hold of yours has this id", 404)

    async def release(self, owner: str, hold_id: int, now: float, link: str) -> HoldRow:
        row = await self._j(self._release, owner, hold_id, now, link)
        await self._recorded()
        return row

    async def request_extension(
        self, owner: str, sid: str, until: float, reason: str, now: float, link: str
    ) -> tuple[SessionRow, bool]:
        s = await self._j(self._mine, owner, sid, now)
        mailed = False
        if self.facility_email:
            msg = EmailMessage()
            msg["From"] = self.sender
            msg["To"] = self.facility_email
            at = datetime.fromtimestamp(until, UTC).isoformat()
            grant = shlex.join(["acqd", "hold", s.session, "--until", at, "--reason", f"extension asked by {owner}"])
            name = "".join(c if c.isprintable() else "?" for c in s.session)  # a folder name may hold a line break
            msg["Subject"] = f"[acqd {self.instrument}] {owner} asks to keep {name} until {view.moment(until)}"
            msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
            msg["Message-ID"] = make_msgid(domain="acqd")
            msg.set_content(
                f"{owner} asks to keep session {s.session} ({s.files} file(s), {s.bytes / 2**30:.2f} GiB, "
                f"on {', '.join(s.tiers)}) of {self.instrument} until {view.moment(until)}, beyond the policy's "
                f"maximum hold of {self.max_hold / 86400:g} days.\n\nReason: {reason}\n\n"
                f"To grant it (the session's name quoted for the shell): {grant}\n"
                f"(request from the owner page, link {link})\n"
            )
            try:
                await self.mailer.send(msg)
                mailed = True
            except AcqdError as exc:
                log.warning("extension request of %s for %s not mailed: %s", owner, s.session, exc)
        await self._j(
            self.journal.audit,
            None,
            "owner-page.extension-request",
            owner=owner,
            link=link,
            session=s.session,
            root=s.root,
            until=until,
            reason=reason,
            mailed=mailed,
            to=self.facility_email or "",
        )
        return s, mailed

    async def fresh_link(self, owner: str, now: float, link: str) -> None:
        owners = self._policy().spec.owners
        to = owners.emails.get(owner) or owners.fallback  # where this owner's warnings go
        fresh, mailed = ("", "", 0.0), False
        if to and self.links is not None:
            fresh = self.links(owner, now)
            msg = EmailMessage()
            msg["From"] = self.sender
            msg["To"] = to
            msg["Subject"] = f"[acqd {self.instrument}] a fresh link to your data"
            msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
            msg["Message-ID"] = make_msgid(domain="acqd")
            msg.set_content(
                f"You (or someone with an expired link of yours) asked for a fresh link to the page of your data "
                f"on {self.instrument}, where you can keep a session, release a hold or ask for longer:\n\n"
                f"  {fresh[0]}\n\nIt is valid until {view.day(fresh[2])}. If you did not ask for it, ignore "
                f"this e-mail; questions: {self.contact}.\n"
            )
            try:
                await self.mailer.send(msg)
                mailed = True
            except AcqdError as exc:
                log.warning("fresh link for %s not mailed: %s", owner, exc)
        await self._j(
            self.journal.audit,
            None,
            "owner-page.fresh-link",
            owner=owner,
            link=link,
            fresh=fresh[1],
            expires=fresh[2],
            recipient=to or "",
            mailed=mailed,
        )

    async def audit(self, event: str, /, **detail: object) -> None:
        await self._j(self.journal.audit, None, event, **detail)

    def _facility(self, now: float) -> Facility:
        policy = self._policy()
        ws = _warnings(self.journal)
        holds, ended = _holds(self.journal, now), _ended(self.journal, ws, now)
        f = view.facility(self.instrument, policy, _items(self.journal), holds, ws, now, ended=ended)
        f.quarantined = [(self.instrument, r.relpath, r.reason or "") for r, _current in self.journal.quarantined()]
        f.requests = [
            Request(
                ts,
                str(d.get("owner", "")),
                str(d.get("session", "")),
                float(d.get("until", 0)),
                str(d.get("reason", "")),
                str(d.get("link", "")),
                bool(d.get("mailed")),
            )
            for ts, _, d in jr.audit_actions(self.journal, "owner-page.extension-request")
        ]
        return f

    async def facility(self, now: float) -> Facility:
        return await self._j(self._facility, now)
