"""Runs the owner page: built from acqd.yaml's `owner_page:` over this daemon's journal, served by
uvicorn on a socket acqd binds itself (a bind error is a clear ConfigError, not an exit), as a task
of `acqd run` or alone (`acqd owner-page`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import uvicorn

from acqd.aio import within
from acqd.config import Config, OwnerPageConfig
from acqd.errors import ConfigError
from acqd.journal import Journal
from acqd.notify import Mailer, templates_dirs
from acqd.owners import links
from acqd.owners.app import build_app
from acqd.owners.local import JournalData
from acqd.policy.model import DAY, Policy

log = logging.getLogger("acqd.owners")

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def read_credential(path: Path, field: str) -> bytes:
    """A secret file; a relative path resolves in $CREDENTIALS_DIRECTORY (systemd's LoadCredential=)."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute() and creds:
        path = Path(creds) / path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"owner_page.{field}: cannot read {path}: {exc.strerror}") from None
    try:
        return links.check_secret(raw, f"owner_page.{field} ({path})")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def secrets_of(cfg: OwnerPageConfig) -> tuple[bytes, bytes | None]:
    secret = read_credential(cfg.secret_file, "secret_file")
    token = read_credential(cfg.facility_token_file, "facility_token_file") if cfg.facility_token_file else None
    if token is not None and token == secret:
        raise ConfigError("owner_page: the facility token must differ from the links' secret")
    return secret, token


LinkMaker = Callable[[str, float], tuple[str, str, float]]


def link_maker(cfg: OwnerPageConfig, secret: bytes) -> LinkMaker:
    """owner, now -> (the page's URL for that owner, the link id, its expiry)."""

    def make(owner: str, now: float) -> tuple[str, str, float]:
        token, link = links.make_token(secret, owner, now + cfg.link_days * DAY)
        return f"{cfg.url()}/o/{token}", link.link_id, link.expires

    return make


def facility_email(config: Config, policy: Policy) -> str | None:
    op = config.owner_page
    return (op.facility_email if op else None) or policy.spec.owners.fallback


def build(
    config: Config,
    *,
    journal: Journal,
    jexec: Executor,
    policy: Callable[[], Policy],
    mailer: Mailer,
    clock: Callable[[], float] = time.time,
    on_holds_changed: Callable[[], Awaitable[None]] | None = None,
) -> ASGIApp:
    op = config.owner_page
    assert op is not None
    secret, token = secrets_of(op)
    data = JournalData(
        journal=journal,
        jexec=jexec,
        policy=policy,
        instrument=config.instrument,
        contact=config.smtp.contact if config.smtp else "the facility staff",
        mailer=mailer,
        sender=config.smtp.sender if config.smtp else f"acqd@{config.instrument}",
        facility_email=facility_email(config, policy()),
        links=link_maker(op, secret),
        on_holds_changed=on_holds_changed,
    )
    return build_app(data, secret=secret, templates=templates_dirs(), facility_token=token, clock=clock)


def bind(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    try:
        return socket.create_server((host.strip("[]"), int(port)), reuse_port=False)
    except OSError as exc:
        raise ConfigError(f"owner_page.bind {address}: {exc.strerror or exc}") from None


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon owns the signals (SIGTERM drains, SIGHUP reloads)


async def serve(app: ASGIApp, sock: socket.socket) -> None:
    """Serve until cancelled; then stop accepting, finish what is in flight (a few seconds at most)."""
    server = _Server(
        uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=True,  # X-Forwarded-For from a reverse proxy on this host names the client
            forwarded_allow_ips="127.0.0.1,::1",
            server_header=False,
        )
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await within(task, 5)
        raise
    finally:
        sock.close()
