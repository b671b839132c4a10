"""Shared set-up of the owner page tests: a journal built by the real daemon on generated files, an
aiosmtpd server, the warning digest with its signed link, the page's configuration and credentials."""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from acqd.config import Config, OwnerPageConfig
from acqd.journal import Journal, journal_path
from acqd.owners import serve
from acqd.policy.model import DAY
from tests.test_retention import Setup, make_runner, make_setup

FILES = [
    "alice_apoferritin_0101/FoilHole_1_fractions.mrc",
    "alice_apoferritin_0101/FoilHole_2_fractions.mrc",
    "alice_apoferritin_0101/FoilHole_1_DW.mrc",  # a sum: the rule keeps it
    "alice_spliceosome_0104/FoilHole_8_fractions.mrc",
    "bob_ribosome_0102/FoilHole_3_fractions.mrc",
]
LINK = re.compile(r"https?://[^\s\"'<>]+/o/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass
class Owners:
    s: Setup
    cfg: Config
    cfg_path: Path
    secret: bytes
    token: bytes
    port: int


def write_secret(path: Path) -> bytes:
    path.write_bytes(base64.b64encode(os.urandom(48)) + b"\n")
    path.chmod(0o600)
    return path.read_bytes().strip()


async def owners_setup(tmp_path: Path, port: int, files: list[str] = FILES) -> AsyncIterator[Owners]:
    async for s in make_setup(tmp_path, files):
        secret = write_secret(tmp_path / "owner-secret")
        token = write_secret(tmp_path / "facility-token")
        op = OwnerPageConfig(
            enabled=True,
            bind=f"127.0.0.1:{port}",
            secret_file=tmp_path / "owner-secret",
            facility_token_file=tmp_path / "facility-token",
        )
        cfg = s.cfg.model_copy(update={"owner_page": op})
        cfg_path = tmp_path / "acqd-owner.yaml"
        cfg_path.write_text(cfg.model_dump_json())  # JSON is YAML
        yield Owners(s, cfg, cfg_path, secret, token, port)


async def sweep(o: Owners, days: list[int]) -> None:
    """Retention sweeps at these days after the files were stored (a test clock), with the signed
    links in the digests, as `acqd run` sends them."""
    op = o.cfg.owner_page
    assert op is not None
    loop = asyncio.get_running_loop()
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await loop.run_in_executor(jexec, Journal, journal_path(o.cfg.state_dir))
    try:
        runner = make_runner(o.s, j, jexec, io)
        runner.links = serve.link_maker(op, serve.secrets_of(op)[0])
        for d in days:
            await runner.sweep(o.s.t0 + d * DAY + 60)
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


def digest_links(o: Owners, rcpt: str) -> tuple[str, str]:
    """The owner page's link in the text and in the HTML part of the digest sent to `rcpt`."""
    [msg] = [m for r, m in o.s.box.messages if r == [rcpt]]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    [t] = LINK.findall(text)
    [h] = LINK.findall(html)
    return t, h
