"""Owner warnings: one digest per recipient per sweep, rendered from Jinja2 templates (text and
HTML) and sent over SMTP (aiosmtplib); with no SMTP configured they go to a local mbox and the log."""

from __future__ import annotations

import asyncio
import logging
import mailbox
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Protocol

from acqd.errors import TransientError
from acqd.shipped import ETC, shipped

log = logging.getLogger("acqd.notify")


def templates_dirs() -> list[Path]:
    """Mail templates: /etc/acqd/templates first (a facility's own wording), then the shipped ones."""
    return [ETC / "templates", shipped("policies/templates")]


class Mailer(Protocol):
    async def send(self, msg: EmailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpMailer:
    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    async def send(self, msg: EmailMessage) -> None:
        import aiosmtplib  # at the first mail: a daemon that sends none does not load it

        try:
            refused, _ = await aiosmtplib.send(
                msg,
                hostname=self.host,
                port=self.port,
                start_tls=self.starttls,
                username=self.username,
                password=self.password,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"SMTP {self.host}:{self.port}: {exc}") from None
        if refused:  # some recipients taken, others not: not delivered to all it is for (it passed as delivered)
            said = "; ".join(f"{to}: {r.code} {r.message}" for to, r in sorted(refused.items()))
            raise TransientError(f"SMTP {self.host}:{self.port} refused recipient(s): {said}")


MAILBOX_MODE = 0o600


@dataclass(frozen=True)
class MailboxMailer:
    """The embedded default: an mbox file in the state directory, and a log line. It reaches nobody:
    a warning written here is not a delivered one, and the purge it announces waits (`delivers`)."""

    path: Path
    delivers = False  # retention records a warning only where a mail server took it

    async def send(self, msg: EmailMessage) -> None:
        def append() -> None:
            # the warnings name users and their data: only acqd's user reads the mailbox
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, MAILBOX_MODE))
            if self.path.stat().st_mode & 0o777 & ~MAILBOX_MODE:
                self.path.chmod(MAILBOX_MODE)
            box = mailbox.mbox(str(self.path))
            try:
                box.lock()
                box.add(msg)
                box.flush()
            finally:
                box.unlock()
                box.close()

        await asyncio.to_thread(append)
        log.warning(
            "warning for %s written to %s only (no smtp: configured, so nobody receives it): %s",
            msg["To"],
            self.path,
            msg["Subject"],
        )


def day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def moment(ts: float) -> str:
    """A purge's earliest time as a warning says it: the day alone could be read as the end of that
    day in the reader's own zone, hours after the purge may come (a stranger's review)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def size_text(n: float) -> str:
    """A size as a person reads it: 12.3 KiB, 4.56 GiB (a small session is not '0.00 GiB')."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def template_error(exc: BaseException) -> str:
    """A mail template's failure in words that name the template and line where Jinja knows them."""
    where = getattr(exc, "filename", None) or getattr(exc, "name", None)
    line = getattr(exc, "lineno", None)
    if where is None:  # an error while rendering (an undefined name): the template's frame in the traceback
        import traceback

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        if frames:
            where, line = frames[-1].filename, frames[-1].lineno
    at = f" ({where}{f', line {line}' if line else ''})" if where else ""
    return f"a warning mail template cannot be rendered{at}: {type(exc).__name__}: {exc}"


class Digests:
    def __init__(self, directory: Path | None = None) -> None:
        import jinja2  # only where digests are made (retention on): `run --once` does not load it

        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(directory)] if directory else [str(d) for d in templates_dirs()]),
            autoescape=jinja2.select_autoescape(["html", "html.j2"]),  # session names are folder names: escaped
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["day"] = day
        self.env.filters["moment"] = moment
        self.env.filters["gib"] = size_text

    def problem(self, now: float) -> str | None:
        """Why no warning mail can be made from the templates (a customised one broken, or using a
        name a digest does not give), or None: a sample digest rendered."""
        sample = {
            "session": "scope/sample_session",
            "files": 2,
            "bytes": 3 << 30,
            "purge_at": now + 14 * 86400,
            "rule": "movies",
            "where": "file:///mnt/central/scope/sample_session",
            "hold_command": "acqd hold scope/sample_session --until 2099-01-01 --reason '...'",
            "owner": "owner",
            "link": "",
        }
        link = [("owner", "https://acqd.example.org/o/sample", now + 7 * 86400)]
        # each way a digest is made: with and without the owner page's links, to an owner and to the
        # fallback (sessions of owners with no address, or warned at their own address too)
        for links, others, copied in (
            ([], [], []),
            (link, [], []),
            ([], ["carol"], ["bob"]),
            (link, ["carol"], ["bob"]),
        ):
            try:
                self.render(
                    instrument="scope",
                    recipient="owner@example.org",
                    sender="acqd@example.org",
                    sessions=[sample],
                    now=now,
                    contact="the facility staff",
                    links=links,
                    others=others,
                    copied=copied,
                )
            except Exception as exc:
                return template_error(exc)
        return None

    def render(
        self,
        *,
        instrument: str,
        recipient: str,
        sender: str,
        sessions: list[dict[str, Any]],
        now: float,
        contact: str,
        links: list[tuple[str, str, float]] | None = None,
        others: list[str] | None = None,
        copied: list[str] | None = None,
        files: int | None = None,
    ) -> EmailMessage:
        """`links`: (owner, signed URL of the owner page, its expiry) for the owners in `sessions`;
        `others`: the owners of sessions listed that have no address of their own (the fallback's);
        `copied`: those that have one, warned there too (a rule that also notifies the fallback);
        `files`: how many files the sessions' lines hold (a file with copies on two tiers is on two
        lines), by default the lines' sum."""
        ctx = {
            "links": links or [],
            "others": others or [],
            "copied": copied or [],
            "instrument": instrument,
            "recipient": recipient,
            "sessions": sessions,
            "now": now,
            "contact": contact,
            "first_purge": min(s["purge_at"] for s in sessions),
            "total_files": files if files is not None else sum(s["files"] for s in sessions),
            "total_bytes": sum(s["bytes"] for s in sessions),
        }
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = recipient
        msg["Subject"] = self.env.get_template("warning.subject.j2").render(ctx).strip()
        msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
        msg["Message-ID"] = make_msgid(domain="acqd")
        msg.set_content(self.env.get_template("warning.txt.j2").render(ctx))
        msg.add_alternative(self.env.get_template("warning.html.j2").render(ctx), subtype="html")
        return msg
