"""The owner page and the facility view: a Starlette app rendering Jinja2 templates on the server.

No JavaScript, no cookies, no accounts: the signed link in the warning digest is the credential;
every form carries a CSRF token signed for that link; link checks are rate-limited per client;
every action and every refusal is audited through the data-access interface (`acqd.owners.access`).
"""

from __future__ import annotations

import base64
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from acqd.owners import links, view
from acqd.owners.access import OwnerData, Refused, SessionRow
from acqd.units import day_end

log = logging.getLogger("acqd.owners")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
MAX_REASON = 500
MAX_FORM = 16 * 1024
FRESH_LINK_EVERY = 900.0  # at most one fresh link per owner in this many seconds (no mail bombing)


class SecurityHeaders:
    """Adds the security headers to every response, the framework's own 404s and 405s too."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class RateLimit:
    """Link checks per client: at most `checks` in `window` seconds, and `failures` refused ones."""

    checks: int = 120
    failures: int = 10
    window: float = 600.0

    def __post_init__(self) -> None:
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._bad: dict[str, deque[float]] = defaultdict(deque)

    def _trim(self, q: deque[float], now: float) -> int:
        while q and q[0] <= now - self.window:
            q.popleft()
        return len(q)

    def allow(self, client: str, now: float) -> bool:
        if len(self._seen) > 10_000:  # forget quiet clients: the table stays bounded
            for c in [c for c, q in self._seen.items() if not self._trim(q, now) and not self._trim(self._bad[c], now)]:
                del self._seen[c], self._bad[c]
        q = self._seen[client]
        if self._trim(q, now) >= self.checks or self._trim(self._bad[client], now) >= self.failures:
            return False
        q.append(now)
        return True

    def failed(self, client: str, now: float) -> None:
        self._bad[client].append(now)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _size(n: int) -> str:
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{n} B"


def end_of_day(text: str) -> tuple[float, str]:
    """'YYYY-MM-DD' as (the end of that day in every time zone, the day): an owner who keeps a
    session until a date finds it there all that day wherever they are (acqd.units.day_end)."""
    try:
        ts = day_end(text)
        return ts, datetime.fromtimestamp(ts - 36 * 3600, UTC).strftime("%Y-%m-%d")
    except ValueError:  # not a day, or one the calendar does not have (9999-12-31 has no next day)
        raise Refused(f"not a date to keep data until: {text[:40]!r} (use the form YYYY-MM-DD)", 400) from None


async def read_form(request: Request) -> dict[str, str] | None:
    """The form's fields, or None if its body is over MAX_FORM (counted as it arrives: a chunked body
    without a Content-Length is capped too)."""
    if int(request.headers.get("content-length") or 0) > MAX_FORM:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    request._body = bytes(body)  # the form parser reads the capped body, not the socket
    form = await request.form(max_files=0, max_fields=10)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def build_app(
    data: OwnerData,
    *,
    secret: bytes,
    templates: list[Path],
    facility_token: bytes | None = None,
    clock: Callable[[], float] = time.time,
    limit: RateLimit | None = None,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in templates]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["day"] = _day
    env.filters["moment"] = view.moment
    env.filters["size"] = _size
    limiter = limit or RateLimit()

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        # links relative to the request's path: the app works below a reverse proxy's prefix too
        ctx.setdefault("root", "../" * (request.url.path.count("/") - 1))
        ctx.setdefault("instrument", data.instrument)
        ctx.setdefault("contact", data.contact)
        return HTMLResponse(env.get_template(name).render(ctx), status_code=status)

    def client(request: Request) -> str:
        return request.client.host if request.client else "?"

    async def refused(request: Request, exc: links.LinkError, token: str) -> Response:
        who = client(request)
        limiter.failed(who, clock())
        ln = exc.link
        await data.audit(
            "owner-page.refused",
            reason=str(exc),
            status=exc.status,
            owner=ln.owner if ln else "",
            link=ln.link_id if ln else "",
            client=who,
            path=request.url.path[:200],
        )
        log.warning("owner page: refused a link from %s: %s", who, exc)
        renew = {"fresh_csrf": links.csrf_token(secret, ln), "token": token} if exc.status == 410 and ln else {}
        return page(request, "owner-refused.html.j2", exc.status, message=str(exc), expired=exc.status == 410, **renew)

    async def check(request: Request) -> links.Link | Response:
        token = str(request.path_params["token"])
        now = clock()
        if not limiter.allow(client(request), now):
            return page(
                request,
                "owner-refused.html.j2",
                429,
                message="too many link checks from your address; try again later",
                expired=False,
            )
        try:
            return links.read_token(secret, token, now)
        except links.LinkError as exc:
            return await refused(request, exc, token)

    async def show(
        request: Request,
        link: links.Link,
        status: int = 200,
        error: str = "",
        done: str = "",
        sid: str = "",
        pid: str = "",
    ) -> Response:
        now = clock()
        sessions = await data.sessions(link.owner, now)
        latest = now + data.max_hold
        focus: SessionRow | None = next((s for s in sessions if s.sid == sid), None)
        projects: dict[str, list[SessionRow]] = {}
        for s in sorted(sessions, key=lambda s: s.session):
            if s.project:
                projects.setdefault(s.project, []).append(s)
        project = next((p for p, ss in projects.items() if ss[0].pid == pid), "") if pid else ""
        return page(
            request,
            "owner-page.html.j2",
            status,
            owner=link.owner,
            link=link,
            sessions=sessions,
            csrf=links.csrf_token(secret, link),
            token=request.path_params["token"],
            today=_day(now),
            tomorrow=_day(now + 86400),
            max_day=_day(latest),
            beyond_day=_day(latest + 86400),
            max_days=f"{data.max_hold / 86400:g}",
            error=error,
            done=done,
            focus=focus,
            projects=sorted(projects.items()),
            project=project,
        )

    async def owner_page(request: Request) -> Response:
        link = await check(request)
        if isinstance(link, Response):
            return link
        done = request.query_params.get("done", "")
        return await show(
            request,
            link,
            done=done if done in ("held", "held-project", "released", "asked", "asked-unmailed") else "",
            sid=request.query_params.get("sid", "")[:40],
            pid=request.query_params.get("pid", "")[:40],
        )

    async def act(request: Request) -> Response:
        link = await check(request)
        if isinstance(link, Response):
            return link
        field = await read_form(request)
        if field is None:
            return PlainTextResponse("the form is too large", 413)
        action = str(request.path_params["action"])
        who = client(request)
        if not links.csrf_ok(secret, link, field.get("csrf")):
            await data.audit(
                "owner-page.refused",
                reason="form without a valid CSRF token",
                status=403,
                owner=link.owner,
                link=link.link_id,
                client=who,
                form=action,
            )
            return page(
                request,
                "owner-refused.html.j2",
                403,
                message="this form's security token is missing or belongs to another link: open the page again "
                "from the link in your e-mail and repeat what you did",
                expired=False,
            )
        now = clock()
        token = request.path_params["token"]
        try:
            if action == "release":
                try:
                    hold_id = int(field.get("hold", ""))
                except ValueError:
                    raise Refused("no hold was chosen", 400) from None
                await data.release(link.owner, hold_id, now, link.link_id)
                return RedirectResponse(f"../{token}?done=released", status_code=303)
            sid = field.get("project" if action == "hold-project" else "session", "")[:100]
            reason = field.get("reason", "").strip()
            if not sid:
                raise Refused("choose a project" if action == "hold-project" else "choose a session", 400)
            if not reason:
                raise Refused("give a reason (the facility reads it)", 400)
            if len(reason) > MAX_REASON:
                raise Refused(f"the reason is longer than {MAX_REASON} characters", 400)
            until, chosen = end_of_day(field.get("until", ""))
            latest = now + data.max_hold
            if until <= now:
                raise Refused("the date is in the past: choose a later one", 400)
            if action in ("hold", "hold-project"):
                if chosen > _day(latest):
                    raise Refused(
                        f"you can keep data until {_day(latest)} at most (the policy's maximum hold); "
                        "for longer, ask for an extension with the last form",
                        400,
                    )
                if action == "hold-project":
                    await data.hold_project(link.owner, sid, until, reason, now, link.link_id)
                    return RedirectResponse(f"../{token}?done=held-project&pid={sid}", status_code=303)
                await data.hold(link.owner, sid, until, reason, now, link.link_id)
                return RedirectResponse(f"../{token}?done=held&sid={sid}", status_code=303)
            if action == "extend":
                if chosen <= _day(latest):
                    raise Refused(f"until {_day(latest)} you can keep the session yourself with the first form", 400)
                _, mailed = await data.request_extension(link.owner, sid, until, reason, now, link.link_id)
                return RedirectResponse(
                    f"../{token}?done={'asked' if mailed else 'asked-unmailed'}&sid={sid}", status_code=303
                )
            raise Refused("no such action", 404)
        except Refused as exc:
            if exc.status in (403, 404):
                await data.audit(
                    "owner-page.refused",
                    reason=str(exc),
                    status=exc.status,
                    owner=link.owner,
                    link=link.link_id,
                    client=who,
                    form=action,
                )
            return await show(request, link, status=exc.status, error=str(exc))

    fresh_sent: dict[str, float] = {}  # owner -> when a fresh link was last mailed

    async def fresh_link(request: Request) -> Response:
        """'Send me a fresh link', from the expired-link page: the expired link (its signature still
        holds) names the owner; the fresh one goes to the address the owner's warnings go to. The
        answer is the same whether a mail went out, the owner has no address, or the owner asked
        within the last FRESH_LINK_EVERY seconds."""
        token, now, who = str(request.path_params["token"]), clock(), client(request)
        if not limiter.allow(who, now):
            return page(
                request,
                "owner-refused.html.j2",
                429,
                message="too many link checks from your address; try again later",
                expired=False,
            )
        try:
            link = links.read_token(secret, token, now)
        except links.LinkError as exc:
            if exc.status != 410 or exc.link is None:
                return await refused(request, exc, token)
            link = exc.link
        form = await read_form(request)
        if form is None:
            return PlainTextResponse("the form is too large", 413)
        if not links.csrf_ok(secret, link, form.get("csrf")):
            limiter.failed(who, now)
            await data.audit(
                "owner-page.refused",
                reason="form without a valid CSRF token",
                status=403,
                owner=link.owner,
                link=link.link_id,
                client=who,
                form="fresh-link",
            )
            return page(
                request,
                "owner-refused.html.j2",
                403,
                message="this form's security token is missing or belongs to another link: open the link from "
                "your e-mail again and use its button",
                expired=False,
            )
        if len(fresh_sent) > 10_000:  # the table stays bounded
            for o in [o for o, t in fresh_sent.items() if t <= now - FRESH_LINK_EVERY]:
                del fresh_sent[o]
        if now - fresh_sent.get(link.owner, float("-inf")) < FRESH_LINK_EVERY:
            await data.audit("owner-page.fresh-link.limited", owner=link.owner, link=link.link_id, client=who)
        else:
            fresh_sent[link.owner] = now
            await data.fresh_link(link.owner, now, link.link_id)
        return page(request, "owner-fresh-link.html.j2", minutes=f"{FRESH_LINK_EVERY / 60:g}")

    async def facility(request: Request) -> Response:
        who, now = client(request), clock()
        if facility_token is None:
            return PlainTextResponse("the facility view is not configured (owner_page.facility_token_file)", 404)
        if not limiter.allow(who, now):
            return PlainTextResponse("too many attempts from your address; try again later", 429)
        given = _credential(request.headers.get("authorization", ""))
        if not links.facility_ok(facility_token, given):
            limiter.failed(who, now)
            if given is not None:
                await data.audit("owner-page.refused", reason="facility view: wrong credential", status=401, client=who)
            return PlainTextResponse(
                "the facility view needs its credential (user: facility, password: the token)",
                401,
                headers={"WWW-Authenticate": 'Basic realm="acqd facility", charset="UTF-8"'},
            )
        f = await data.facility(now)
        return page(request, "facility.html.j2", facility=f, today=_day(now))

    def style(request: Request) -> Response:
        css = env.get_template("owner-page.css.j2").render()
        return Response(css, media_type="text/css")

    def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/o/{token}", owner_page, methods=["GET"]),
            Route("/o/{token}/fresh-link", fresh_link, methods=["POST"]),
            Route("/o/{token}/{action}", act, methods=["POST"]),
            Route("/facility", facility, methods=["GET"]),
            Route("/style.css", style, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )
    return SecurityHeaders(app)


def _credential(header: str) -> str | None:
    """The token of `Authorization: Bearer T` or the password of `Basic base64(user:T)`."""
    kind, _, value = header.partition(" ")
    if kind.lower() == "bearer" and value:
        return value.strip()
    if kind.lower() == "basic" and value:
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return ""
    return None
