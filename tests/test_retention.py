"""Retention end to end: shipped data, a real SMTP server (aiosmtpd), an injected clock over 75 days."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from acqd import journal as jr
from acqd.config import Config
from acqd.daemon import Daemon, build_mailer, build_tiers, journal_path, load_retention
from acqd.journal import Journal
from acqd.notify import Digests
from acqd.policy.model import DAY
from acqd.retention import RetentionRunner
from acqd.values import Outcome

POLICY = """\
apiVersion: acqd/v1
kind: RetentionPolicy
metadata: {name: facility}
spec:
  tiers: [central, capacity]
  dataClasses:
    movie: {globs: ["*_fractions.mrc"]}
    sum: {globs: ["*_DW.mrc"]}
  owners:
    pattern: "^(?P<owner>[a-z]+)_"
    emails: {alice: alice@lab.example, bob: bob@lab.example}
    fallback: facility@lab.example
  rules:
    - name: movies
      match: {dataClass: movie}
      transitions: [{after: 14d, tier: capacity}]
      expiration: {after: 60d}
      warn: 14d
    - name: sums
      match: {dataClass: sum}
  default: {name: keep}
"""

FILES = [
    "alice_apoferritin_0101/FoilHole_1_fractions.mrc",
    "alice_apoferritin_0101/FoilHole_2_fractions.mrc",
    "alice_apoferritin_0101/FoilHole_1_DW.mrc",
    "bob_ribosome_0102/FoilHole_3_fractions.mrc",  # held
    "carol_test_0103/FoilHole_4_fractions.mrc",  # no address: the fallback is warned
]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Setup:
    cfg: Config
    box: Mailbox
    smtp: Controller
    events: list[Outcome]
    t0: float
    central: Path
    capacity: Path


class Recorder:
    def __init__(self, events: list[Outcome]) -> None:
        self.events = events

    def outcome(self, o: Outcome) -> None:
        self.events.append(o)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    box = Mailbox()
    port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    watch, central, capacity = tmp_path / "acq", tmp_path / "central", tmp_path / "capacity"
    for d in (central, capacity):
        d.mkdir()
    for i, rel in enumerate(FILES):
        (watch / rel).parent.mkdir(parents=True, exist_ok=True)
        (watch / rel).write_bytes(bytes([i]) * (10_000 + i))
    (tmp_path / "policy.yaml").write_text(POLICY)
    cfg = Config.model_validate(
        {
            "instrument": "krios",
            "state_dir": str(tmp_path / "state"),
            "policy": str(tmp_path / "policy.yaml"),
            "watch": [{"path": str(watch), "settle": "0.2s"}],
            "tiers": {"central": {"url": f"file://{central}"}, "capacity": {"url": f"file://{capacity}"}},
            "smtp": {"host": "127.0.0.1", "port": port, "sender": "acqd@krios.example", "contact": "em-staff"},
        }
    )
    result = await Daemon(cfg, once=True, retry_for=20).run(install_signals=False)
    assert result.stats.verified == len(FILES)
    j = Journal(journal_path(cfg.state_dir), readonly=True)
    t0 = max(r.copy.verified_at or 0 for r in jr.retention_items(j))
    j.close()
    st = Setup(cfg, box, smtp, [], t0, central / "krios", capacity / "krios")
    yield st
    st.smtp.stop()


async def sweep_days(s: Setup, days: range, runner: RetentionRunner) -> dict[int, Any]:
    out = {}
    for d in days:
        out[d] = await runner.sweep(s.t0 + d * DAY + 60)
    return out


def make_runner(s: Setup, j: Journal, jexec: ThreadPoolExecutor, io: ThreadPoolExecutor) -> RetentionRunner:
    policy = load_retention(s.cfg)
    assert policy is not None and s.cfg.smtp is not None
    return RetentionRunner(
        policy=policy,
        journal=j,
        jexec=jexec,
        io=io,
        tiers=build_tiers(s.cfg),
        mailer=build_mailer(s.cfg),
        digests=Digests(),
        reporter=Recorder(s.events),
        instrument="krios",
        sender=s.cfg.smtp.sender,
        contact=s.cfg.smtp.contact,
    )


async def test_seventy_five_days_of_a_facility(setup: Setup) -> None:
    s = setup
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        await asyncio.get_running_loop().run_in_executor(
            jexec, jr.add_hold, j, "bob_ribosome_0102", s.t0 + 120 * DAY, "paper revision", s.t0
        )
        runner = make_runner(s, j, jexec, io)
        res = await sweep_days(s, range(0, 14), runner)
        assert all(r.transitioned == 0 and r.digests == 0 for r in res.values())
        res = await sweep_days(s, range(14, 15), runner)
        assert res[14].transitioned == 3  # alice's two movies and carol's; bob's is held
        for rel in ("alice_apoferritin_0101/FoilHole_1_fractions.mrc", "carol_test_0103/FoilHole_4_fractions.mrc"):
            assert (s.capacity / rel).exists() and not (s.central / rel).exists()
        assert (s.central / "bob_ribosome_0102/FoilHole_3_fractions.mrc").exists()
        res = await sweep_days(s, range(15, 46), runner)
        assert s.box.messages == []  # nobody warned before day 46
        res = await sweep_days(s, range(46, 47), runner)
        assert res[46].digests == 2  # one digest per recipient, not one mail per file
        by_rcpt = {tuple(r): m for r, m in s.box.messages}
        alice = by_rcpt[("alice@lab.example",)]
        assert "2 file(s)" in alice["Subject"]
        body = alice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "alice_apoferritin_0101" in body and "em-staff" in body and "acqd hold" in body
        assert ("facility@lab.example",) in by_rcpt  # carol has no address: the fallback
        assert alice.get_body(("html",)) is not None
        res = await sweep_days(s, range(47, 60), runner)
        assert len(s.box.messages) == 2  # not sent again for the same items
        assert all(r.purged == 0 for r in res.values())  # nothing purged before day 60
        res = await sweep_days(s, range(60, 76), runner)
        assert res[60].purged == 3 and sum(r.purged for r in res.values()) == 3
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    assert not (s.capacity / "alice_apoferritin_0101/FoilHole_1_fractions.mrc").exists()
    assert (s.central / "alice_apoferritin_0101/FoilHole_1_DW.mrc").exists()  # sums kept
    assert (s.central / "bob_ribosome_0102/FoilHole_3_fractions.mrc").exists()  # held session kept
    kinds = [e.kind for e in s.events]
    assert kinds.count("retention.transitioned") == 3 and kinds.count("retention.warned") == 3
    assert kinds.count("retention.purged") == 3
    j = Journal(journal_path(s.cfg.state_dir), readonly=True)
    try:
        actions = [a for _, _, a, _ in j.audit_log()]
    finally:
        j.close()
    for a in ("hold", "retention.copied", "retention.transitioned", "retention.warned", "retention.purged"):
        assert a in actions, a


async def test_undelivered_warning_is_retried_and_delays_the_purge(setup: Setup) -> None:
    s = setup
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = make_runner(s, j, jexec, io)
        await sweep_days(s, range(0, 46), runner)
        s.smtp.stop()  # the mail server is down on day 46 ...
        res = await sweep_days(s, range(46, 50), runner)
        assert all(r.digests == 0 and r.failed > 0 for r in res.values())
        assert s.cfg.smtp is not None
        s.smtp = Controller(s.box, hostname="127.0.0.1", port=s.cfg.smtp.port)  # ... and back on day 50
        s.smtp.start()
        res = await sweep_days(s, range(50, 51), runner)
        assert res[50].digests == 3
        res = await sweep_days(s, range(51, 64), runner)
        assert all(r.purged == 0 for r in res.values())  # not on day 60: 14 days after the late warning
        res = await sweep_days(s, range(64, 65), runner)
        assert res[64].purged == 4
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_transition_never_deletes_an_unverified_copy(setup: Setup) -> None:
    s = setup
    victim = s.central / "alice_apoferritin_0101/FoilHole_2_fractions.mrc"
    victim.write_bytes(b"bit rot" + victim.read_bytes()[7:])  # the central copy no longer matches its checksum
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        res = await sweep_days(s, range(14, 15), make_runner(s, j, jexec, io))
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    assert res[14].transitioned == 3 and res[14].failed == 1
    assert victim.exists()  # the old copy stays: its new copy did not verify


def test_plan_and_hold_commands(setup: Setup, tmp_path: Path) -> None:
    import json
    from datetime import UTC, datetime

    from tests.conftest import run_acqd

    s = setup
    cfg = tmp_path / "acqd.yaml"
    cfg.write_text(s.cfg.model_dump_json())  # JSON is YAML
    iso = datetime.fromtimestamp(s.t0 + 47 * DAY, UTC).isoformat()
    r = run_acqd(
        "hold", "bob_ribosome_0102", "--until", "2999-01-01", "--reason", "paper revision", "--config", str(cfg)
    )
    assert r.returncode == 0 and "held bob_ribosome_0102" in r.stdout, r.stderr
    r = run_acqd("hold", "--list", "--config", str(cfg))
    assert "bob_ribosome_0102" in r.stdout and "paper revision" in r.stdout
    r = run_acqd("hold", "bob_ribosome_0102", "--until", "2000-01-01", "--reason", "x", "--config", str(cfg))
    assert r.returncode == 78 and "in the past" in r.stderr
    r = run_acqd("plan", "--config", str(cfg), "--now", iso, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    acts = {(a["action"], a["path"]) for a in doc["actions"]}
    assert ("warn", "alice_apoferritin_0101/FoilHole_1_fractions.mrc") in acts
    assert ("transition", "alice_apoferritin_0101/FoilHole_1_fractions.mrc") in acts  # nothing ran yet
    assert ("blocked", "bob_ribosome_0102/FoilHole_3_fractions.mrc") in acts
    assert not any(a["action"] == "purge" for a in doc["actions"])  # a plan never purges unwarned data
    warn = next(a for a in doc["actions"] if a["action"] == "warn" and a["owner"] == "alice")
    assert warn["recipients"] == ["alice@lab.example"] and warn["owner"] == "alice"
    assert doc["totals"]["by_owner"]["alice"]["warn_files"] == 2
    r = run_acqd("hold", "bob_ribosome_0102", "--release", "--config", str(cfg))
    assert "released 1 hold" in r.stdout
    r = run_acqd("plan", "--config", str(cfg), "--now", iso)
    assert r.returncode == 0 and "alice" in r.stdout


def test_check_warns_when_a_policy_would_purge_most_data_at_once(setup: Setup, tmp_path: Path) -> None:
    from acqd.daemon import check

    s = setup
    assert not any("purge" in n for n in check(s.cfg, probe=False).warnings)
    eager = tmp_path / "eager.yaml"
    eager.write_text(
        POLICY.replace("expiration: {after: 60d}", "expiration: {after: 10d}")
        .replace("warn: 14d", "warn: 10d")
        .replace("transitions: [{after: 14d, tier: capacity}]", "transitions: []")
    )
    [warning] = check(s.cfg.model_copy(update={"policy": eager}), probe=False).warnings
    assert "would purge 80% of the stored data" in warning and "maxShareOfData (50%)" in warning


async def test_policy_rules_place_files(tmp_path: Path) -> None:
    """Placement per rule: movies to the capacity tier as .zst and released locally; sums stay central."""
    policy = POLICY.replace(
        "    - name: movies\n      match: {dataClass: movie}\n",
        "    - name: movies\n      match: {dataClass: movie}\n"
        "      placement: {tier: capacity, compress: zstd, release_local: after_verify}\n",
    )
    (tmp_path / "policy.yaml").write_text(policy)
    watch, central, capacity = tmp_path / "acq", tmp_path / "central", tmp_path / "capacity"
    for rel in FILES[:3]:
        (watch / rel).parent.mkdir(parents=True, exist_ok=True)
        (watch / rel).write_bytes(b"x" * 5000)
    cfg = Config.model_validate(
        {
            "instrument": "krios",
            "state_dir": str(tmp_path / "state"),
            "policy": str(tmp_path / "policy.yaml"),
            "watch": [{"path": str(watch), "settle": "0.2s"}],
            "tiers": {"central": {"url": f"file://{central}"}, "capacity": {"url": f"file://{capacity}"}},
        }
    )
    result = await Daemon(cfg, once=True, retry_for=20).run(install_signals=False)
    assert result.stats.verified == 3 and result.pending == 0
    s = "alice_apoferritin_0101"
    assert (capacity / "krios" / s / "FoilHole_1_fractions.mrc.zst").exists()
    assert not (watch / s / "FoilHole_1_fractions.mrc").exists()  # released: the rule says so
    assert (central / "krios" / s / "FoilHole_1_DW.mrc").exists()  # the sum: the watch root's placement
    assert (watch / s / "FoilHole_1_DW.mrc").exists()  # ... which does not release


def test_policy_placement_on_an_unknown_tier_is_rejected(tmp_path: Path) -> None:
    from acqd.errors import ConfigError
    from acqd.policy.model import load_policy

    p = tmp_path / "p.yaml"
    p.write_text(
        POLICY.replace(
            "      match: {dataClass: sum}\n", "      match: {dataClass: sum}\n      placement: {tier: tape}\n"
        )
    )
    with pytest.raises(ConfigError, match="placement on unknown tier 'tape'"):
        load_policy(p)
