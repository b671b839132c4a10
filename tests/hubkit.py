"""Shared parts of the facility hub's tests (tests/test_hub.py, tests/test_fleet.py): an SMTP inbox
(aiosmtpd), the daemons' and the hub's configuration, and a hub sweep run as a child process on a
controllable clock (`acqd hub --once --now`)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from acqd.policy.model import DAY
from tests.conftest import run_acqd, write_config
from tests.servers import Postgres, free_port


class Mailbox:
    """An SMTP server's inbox; `delay` makes each message take that long (a slow mail server)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, rcpt: str) -> list[email.message.EmailMessage]:
        return [m for r, m in self.messages if rcpt in r]


@contextmanager
def smtp_server(box: Mailbox) -> Iterator[int]:
    """aiosmtpd on a loopback port delivering into `box`; yields the port."""
    port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield port
    finally:
        smtp.stop()


def ok(r: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def file_tiers(central: Path, capacity: Path) -> str:
    """The `tiers:` body of two local-folder tiers."""
    return f'  central: {{url: "file://{central}"}}\n  capacity: {{url: "file://{capacity}"}}\n'


def daemon_config(
    root: Path, inst: str, url: str, pg: Postgres, tiers: str, owner: str = "hub", catalog: str = ""
) -> Path:
    """acqd.yaml of instrument `inst` below `root` (watch root/inst/acq, state root/inst/state),
    publishing to the catalog at `url` (`catalog`: more of its keys, e.g. ", readback: 1s"),
    retention owned by `owner`; `tiers`: the `tiers:` body."""
    return write_config(
        root / f"{inst}.yaml",
        f"""
instrument: {inst}
state_dir: {root / inst / "state"}
policy: {root / "policy.yaml"}
watch:
  - path: {root / inst / "acq"}
    settle: 0.2s
tiers:
{tiers}limits: {{retry_initial: 50ms, retry_max: 200ms}}
catalog: {{url: "{url}", password_file: "{pg.password_file}", retry_max: 0.5s, connect_timeout: 3s{catalog}}}
retention: {{owner: {owner}}}
""",
    )


def hub_config(root: Path, url: str, pg: Postgres, tiers: str, smtp: int, extra: str = "") -> Path:
    """root/hub.yaml: the hub over the catalog at `url`, policy root/policy.yaml, digests to `smtp`."""
    return write_config(
        root / "hub.yaml",
        f"""
facility: EM facility
state_dir: {root / "hub"}
catalog: {{url: "{url}", password_file: "{pg.password_file}", connect_timeout: 3s}}
tiers:
{tiers}policy: {root / "policy.yaml"}
smtp: {{host: 127.0.0.1, port: {smtp}, sender: hub@facility.example, contact: em-staff}}
metrics: {{enabled: false}}
{extra}""",
    )


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def hub_sweep(
    hub_yaml: Path, t0: float, days: float, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """One hub sweep as a child process, judging by the clock `days` after `t0` (`--once --now`)."""
    now = iso(t0 + days * DAY)
    return run_acqd("hub", "--config", str(hub_yaml), "--once", "--now", now, *args, env=env, timeout=timeout)


def pg_rows(pg: Postgres, url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with pg.connect(url.rpartition("/")[2]) as c:
        return list(c.execute(sql, args or None).fetchall())


#: (hub audit id, instrument, relpath) of each purge the hub recorded, in order, duplicates kept
PURGES_SQL = (
    "SELECT a.id, f.instrument, f.relpath FROM acqd.hub_audit a JOIN acqd.hub_copies h ON h.id = a.copy"
    " JOIN acqd.files f ON (f.instrument, f.journal_id, f.file_id) = (h.instrument, h.journal_id, h.file_id)"
    " WHERE a.action = 'retention.purged' ORDER BY a.id"
)

#: the lease of a killed hub has run out (another process may act)
LEASE_EXPIRED_SQL = "SELECT expires < now() FROM acqd.hub_lease"
