"""Retention end to end: shipped data, a real SMTP server (aiosmtpd), an injected clock over 75 days."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import os
import re
import shlex
import socket
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from acqd import journal as jr
from acqd.config import Config
from acqd.daemon import Daemon, build_mailer, build_tiers, journal_path, load_retention
from acqd.journal import Journal
from acqd.notify import Digests
from acqd.policy.clock import Reading
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
    watch: Path
    cfg_path: Path


class Recorder:
    def __init__(self, events: list[Outcome]) -> None:
        self.events = events

    def outcome(self, o: Outcome) -> None:
        self.events.append(o)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async for st in make_setup(tmp_path, FILES):
        yield st


NESTED = [
    *FILES,
    "alice_apoferritin_0101/grid2/FoilHole_5_fractions.mrc",
    "alice_apoferritin_0101/grid2/FoilHole_6_fractions.mrc",
    "alice_apoferritin_0101/grid20/FoilHole_7_fractions.mrc",
]


@pytest.fixture
async def nested(tmp_path: Path) -> AsyncIterator[Setup]:
    async for st in make_setup(tmp_path, NESTED):
        yield st


async def make_setup(tmp_path: Path, files: list[str]) -> AsyncIterator[Setup]:
    box = Mailbox()
    port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    watch, central, capacity = tmp_path / "acq", tmp_path / "central", tmp_path / "capacity"
    for d in (central, capacity):
        d.mkdir()
    for i, rel in enumerate(files):
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
    result = await Daemon(cfg, once=True, retry_for=120).run(install_signals=False)
    assert result.stats.verified == len(files)
    j = Journal(journal_path(cfg.state_dir), readonly=True)
    t0 = max(r.copy.verified_at or 0 for r in jr.retention_items(j))
    j.close()
    cfg_path = tmp_path / "acqd.yaml"
    cfg_path.write_text(cfg.model_dump_json())  # JSON is YAML
    st = Setup(cfg, box, smtp, [], t0, central / "krios", capacity / "krios", watch, cfg_path)
    yield st
    st.smtp.stop()


async def sweep_days(s: Setup, days: range, runner: RetentionRunner) -> dict[int, Any]:
    out = {}
    for d in days:
        out[d] = await runner.sweep(s.t0 + d * DAY + 60)
    return out


async def sweep_with_a_runner(s: Setup, days: range) -> dict[int, Any]:
    """`sweep_days` with a runner of its own on the setup's journal (opened and closed here)."""
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        return await sweep_days(s, days, make_runner(s, j, jexec, io))
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


def make_runner(
    s: Setup,
    j: Journal,
    jexec: ThreadPoolExecutor,
    io: ThreadPoolExecutor,
    reporter: Any = None,
    guard: Any = None,
) -> RetentionRunner:
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
        reporter=reporter or Recorder(s.events),
        instrument="krios",
        sender=s.cfg.smtp.sender,
        contact=s.cfg.smtp.contact,
        hold_args=("--config", str(s.cfg_path)),
        guard=guard,
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

        def written() -> list[tuple[str, str]]:  # every session manifest written (as a daemon would)
            for root, session in j.dirty_manifests():
                j.manifest_written(root, session, s.t0 + 1000 * DAY)
            return j.dirty_manifests()

        assert await asyncio.get_running_loop().run_in_executor(jexec, written) == []
        res = await sweep_days(s, range(14, 15), runner)
        assert res[14].transitioned == 3  # alice's two movies and carol's; bob's is held
        marked = await asyncio.get_running_loop().run_in_executor(jexec, j.dirty_manifests)
        # the manifests name the copies' tier: those of the moved files are written again
        assert sorted(sess for _root, sess in marked) == ["alice_apoferritin_0101", "carol_test_0103"], marked
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
        # the earliest moment of the purge, with its time and zone (a bare day was read as the end of
        # that day in the reader's own zone: a stranger's review)
        when = re.search(r"will be deleted from (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC", str(alice["Subject"]))
        assert when is not None, alice["Subject"]
        at = datetime.strptime(when.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()
        assert s.t0 + 60 * DAY - 120 <= at <= s.t0 + 60 * DAY + 180, (at, s.t0)
        assert f"deleted from {when.group(1)} UTC" in body, body
        assert "alice_apoferritin_0101" in body and "em-staff" in body and "acqd hold" in body
        assert ("facility@lab.example",) in by_rcpt  # carol has no address: the fallback
        assert "of yours" in alice["Subject"] and "no address of their own" not in body
        fallback = by_rcpt[("facility@lab.example",)]  # told whose data it is, not that it is theirs
        fb_body = fallback.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "of yours" not in fallback["Subject"] and "1 file(s) will be deleted" in fallback["Subject"]
        assert "no address of their own" in fb_body and "(carol)" in fb_body, fb_body
        assert alice.get_body(("html",)) is not None
        res = await sweep_days(s, range(47, 60), runner)
        assert len(s.box.messages) == 2  # not sent again for the same items
        assert all(r.purged == 0 for r in res.values())  # nothing purged before day 60
        assert await asyncio.get_running_loop().run_in_executor(jexec, written) == []
        res = await sweep_days(s, range(60, 76), runner)
        assert res[60].purged == 3 and sum(r.purged for r in res.values()) == 3
        marked = await asyncio.get_running_loop().run_in_executor(jexec, j.dirty_manifests)
        # a purged copy leaves its session's manifest, written again
        assert sorted(sess for _root, sess in marked) == ["alice_apoferritin_0101", "carol_test_0103"], marked
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
    from tests.conftest import run_acqd

    r = run_acqd("status", "--json", "--state-dir", str(s.cfg.state_dir))
    states = json.loads(r.stdout)["states"]
    assert states["purged"]["files"] == 3, states  # purged movies are not counted as still verified


async def test_undelivered_warning_is_retried_and_delays_the_purge(setup: Setup) -> None:
    """A warning the mail server does not take is retried at each sweep, and its purges wait; the
    operator sees it as it happens: a retention.failed event and acqd_retention_failures_total per file."""
    from prometheus_client import CollectorRegistry

    from acqd.daemon import Fanout
    from acqd.events import event_payload
    from acqd.metrics import Metrics
    from tests.conftest import run_acqd

    s = setup
    metrics = Metrics(CollectorRegistry(), "krios")
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = make_runner(s, j, jexec, io, reporter=Fanout([Recorder(s.events), metrics]))
        await sweep_days(s, range(0, 46), runner)
        assert metrics.value("acqd_retention_failures_total", action="warn") == 0
        s.smtp.stop()  # the mail server is down on day 46 ...
        res = await sweep_days(s, range(46, 50), runner)
        assert all(r.digests == 0 and r.failed > 0 for r in res.values())
        failed = [e for e in s.events if e.kind == "retention.failed"]
        assert failed and {e.stage for e in failed} == {"warn"}, failed
        assert all("@" in e.reason and e.relpath.endswith("_fractions.mrc") for e in failed), failed
        assert metrics.value("acqd_retention_failures_total", action="warn") == len(failed)
        body = event_payload("krios", failed[0])
        assert body["type"] == "retention.failed" and body["action"] == "warn" and body["file"]["source"]
        st = run_acqd("status", "--config", str(s.cfg_path))  # the operator's view of it
        assert st.returncode == 0 and "FAILED (retried at the next sweep)" in st.stdout, st.stdout
        assert "not delivered" in st.stdout and "@lab.example" in st.stdout, st.stdout
        assert s.cfg.smtp is not None
        s.smtp = Controller(s.box, hostname="127.0.0.1", port=s.cfg.smtp.port)  # ... and back on day 50
        s.smtp.start()
        res = await sweep_days(s, range(50, 51), runner)
        assert res[50].digests == 3
        st = run_acqd("status", "--config", str(s.cfg_path))
        assert "retention: last sweep" in st.stdout and "FAILED" not in st.stdout, st.stdout
        res = await sweep_days(s, range(51, 64), runner)
        assert all(r.purged == 0 for r in res.values())  # not on day 60: 14 days after the late warning
        res = await sweep_days(s, range(64, 65), runner)
        assert res[64].purged == 4
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_transition_never_deletes_an_unverified_copy(setup: Setup) -> None:
    """The old copy damaged: its new copy does not verify, the old one stays. The new one made on the
    other tier was left there, untracked, in the name's way: every later move of the file failed on
    it, even once the old copy was repaired (a stranger's review). It is taken back; the next sweep
    after the repair moves the file."""
    s = setup
    rel = "alice_apoferritin_0101/FoilHole_2_fractions.mrc"
    victim = s.central / rel
    good = victim.read_bytes()
    victim.write_bytes(b"bit rot" + good[7:])  # the central copy no longer matches its checksum
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        res = await sweep_days(s, range(14, 15), make_runner(s, j, jexec, io))
        assert res[14].transitioned == 3 and res[14].failed == 1
        assert victim.exists()  # the old copy stays: its new copy did not verify
        assert not (s.capacity / rel).exists(), "the new copy that did not verify was left on the tier"
        victim.write_bytes(good)  # repaired (from a backup)
        res = await sweep_days(s, range(15, 16), make_runner(s, j, jexec, io))
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    failed = [e for e in s.events if e.kind == "retention.failed"]
    assert [(e.stage, e.relpath) for e in failed] == [("transition", rel)]
    assert res[15].transitioned == 1 and res[15].failed == 0, res[15]
    assert (s.capacity / rel).read_bytes() == good and not victim.exists()


async def test_a_move_after_the_warning_keeps_the_announced_purge_and_warns_once(setup: Setup) -> None:
    """Warned 14 days ahead, then moved to capacity before the purge: the new copy had no warning of
    its own, so the owners got a second mail with a later date and the other place, and the purge came
    four days after the date announced (a stranger's review). The warnings go with the file: one mail,
    the purge on the announced day, from the tier the copy is on then."""
    s = setup
    s.cfg.policy.write_text(  # type: ignore[union-attr]
        POLICY.replace(
            "transitions: [{after: 14d, tier: capacity}]", "transitions: [{after: 20d, tier: capacity}]"
        ).replace("expiration: {after: 60d}", "expiration: {after: 30d}")
    )
    res = await sweep_with_a_runner(s, range(15, 35))
    warned_on = [d for d, r in res.items() if r.warned]
    assert warned_on == [16], {d: r.warned for d, r in res.items()}  # once, before the move
    assert res[20].transitioned == 4, res[20]
    mails = len(s.box.messages)
    assert sum(r.purged for d, r in res.items() if d < 30) == 0
    assert res[30].purged == 4, res[30]  # on the day announced
    assert sum(r.purged for r in res.values()) == 4 and mails == len(s.box.messages)
    assert list(s.capacity.rglob("*_fractions.mrc")) == [] and list(s.central.rglob("*_fractions.mrc")) == []


async def test_copies_on_a_tier_taken_out_of_the_configuration_are_left_alone_and_said(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """Copies retention moved to `capacity`; then `capacity` is taken out of acqd.yaml. The sweep
    that came to purge them died on the unknown tier (KeyError; no more sweeps, nothing said until the
    daemon stopped) and owners were warned of a purge that could not come, with a place nobody could
    find (a review). They are left alone now, no warning, move or purge, and the log says so."""
    s = setup
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        res = await sweep_days(s, range(14, 15), make_runner(s, j, jexec, io))
        assert res[14].transitioned == 4
        moved = sorted(s.capacity.rglob("*_fractions.mrc"))
        runner = make_runner(s, j, jexec, io)
        runner.tiers = {k: v for k, v in runner.tiers.items() if k != "capacity"}
        with caplog.at_level(logging.WARNING, logger="acqd"):
            res = await sweep_days(s, range(40, 70, 5), runner)
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    assert all(r.purged == 0 and r.warned == 0 and r.failed == 0 for r in res.values()), res
    assert sorted(s.capacity.rglob("*_fractions.mrc")) == moved
    assert "on tier capacity, which acqd.yaml no longer names: left as they are" in caplog.text


async def test_a_chmod_of_a_source_whose_copy_was_purged_ships_nothing_again(setup: Setup) -> None:
    """The sources stayed on the acquisition disk (no release) and retention purged the copies of the
    movies. A `chmod` of the sources (a permission fix) made each a new version, shipped again: the
    purge undone, its warning cycle begun anew (a review). Its content is compared with the purged
    copy's checksum, as with a verified copy: the same, nothing is shipped."""
    s = setup
    res = await sweep_with_a_runner(s, range(0, 80, 2))
    assert sum(r.purged for r in res.values()) == 4, res  # every movie's copy
    stored = sorted(p for p in (s.central.parent, s.capacity.parent) for p in p.rglob("*.mrc"))
    for p in s.watch.rglob("*.mrc"):
        os.chmod(p, 0o600)
    result = await Daemon(s.cfg, once=True, retry_for=30).run(install_signals=False)
    assert result.stats.verified == 0, "shipped again"
    assert sorted(p for p in (s.central.parent, s.capacity.parent) for p in p.rglob("*.mrc")) == stored
    db = sqlite3.connect(f"file:{journal_path(s.cfg.state_dir)}?mode=ro", uri=True)
    try:
        assert {v for (v,) in db.execute("SELECT version FROM files")} == {1}
    finally:
        db.close()


async def test_a_transition_to_a_tier_over_the_same_storage_never_deletes_the_only_copy(
    setup: Setup, tmp_path: Path
) -> None:
    """The capacity tier reaches the very folder the central tier is (the NAS exported twice, a bind
    mount, a URL changed to the other's in the config: here a symlink made after the configuration
    was checked). The transition's "new copy" is then the old copy itself; it verifies, and deleting
    "the old one" deleted the only copy of every movie (the local files were long released). A
    transition now first makes sure the two tiers are not one storage: it fails, and nothing moves."""
    from acqd.storage import Tier

    s = setup
    alias = tmp_path / "capacity-alias"
    alias.symlink_to(s.central.parent, target_is_directory=True)
    policy = load_retention(s.cfg)
    assert policy is not None and s.cfg.smtp is not None
    tiers = build_tiers(s.cfg)
    tiers["capacity"] = Tier("capacity", f"file://{alias}")
    before = {p: p.read_bytes() for p in s.central.rglob("*_fractions.mrc")}
    assert len(before) == 4
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = RetentionRunner(
            policy=policy,
            journal=j,
            jexec=jexec,
            io=io,
            tiers=tiers,
            mailer=build_mailer(s.cfg),
            digests=Digests(),
            reporter=Recorder(s.events),
            instrument="krios",
            sender=s.cfg.smtp.sender,
            contact=s.cfg.smtp.contact,
        )
        res = await sweep_days(s, range(14, 15), runner)
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    assert {p: p.read_bytes() for p in before if p.exists()} == before  # every movie still stored, unchanged
    assert res[14].transitioned == 0 and res[14].failed == 4
    j = Journal(journal_path(s.cfg.state_dir), readonly=True)
    try:
        failures = [d for _, _, a, d in j.audit_log() if a == "retention.transition.failed"]
        tiers_of = {r.copy.tier for r in jr.retention_items(j) if r.file.relpath.endswith("_fractions.mrc")}
    finally:
        j.close()
    assert len(failures) == 4 and all("same storage" in str(d) for d in failures), failures
    assert tiers_of == {"central"}  # the journal still says where the copies are
    assert not any(p.name.startswith(".~acqd-tmp") for p in s.central.rglob("*"))  # the probe left nothing


def test_check_names_two_tiers_that_are_one_storage(tmp_path: Path) -> None:
    """`acqd check` (with its write probes) says so when two tiers are one storage, before a
    transition between them fails; two distinct folders are not reported."""
    from tests.conftest import run_acqd, write_config

    acq, central, capacity = tmp_path / "acq", tmp_path / "central", tmp_path / "capacity"
    for d in (acq, central, capacity):
        d.mkdir()
    (tmp_path / "alias").symlink_to(central, target_is_directory=True)
    for other, one in ((tmp_path / "alias", True), (capacity, False)):
        cfg = write_config(
            tmp_path / "acqd.yaml",
            f"instrument: krios\nstate_dir: {tmp_path}/state\nwatch:\n  - {{path: {acq}}}\n"
            f"tiers:\n  central: {{url: 'file://{central}'}}\n  capacity: {{url: 'file://{other}'}}\n",
        )
        r = run_acqd("check", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        said = "tiers capacity" in r.stdout + r.stderr and "are one storage" in r.stdout + r.stderr
        assert said == one, r.stdout + r.stderr
    assert [p.name for p in central.rglob("*") if p.is_file()] == []  # the markers are gone


async def test_a_hold_placed_after_the_journal_backup_survives_its_restore(setup: Setup, tmp_path: Path) -> None:
    """Warned on day 46 for day 60; the state disk is backed up on day 47; alice holds her session
    (`acqd hold`); the state disk dies and the day-47 backup is restored. Her session must not be
    purged on day 60: the hold's record on the tiers puts it back into the journal."""
    import sqlite3

    from tests.conftest import run_acqd

    s = setup
    path = journal_path(s.cfg.state_dir)
    loop = asyncio.get_running_loop()
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await loop.run_in_executor(jexec, Journal, path)
    try:
        runner = make_runner(s, j, jexec, io)
        await sweep_days(s, range(14, 15), runner)
        await sweep_days(s, range(46, 48), runner)
        assert len(s.box.messages) == 3  # alice, bob, the facility (for carol)
        backup = tmp_path / "journal-day47.sqlite"

        def take_backup() -> None:
            src, dst = sqlite3.connect(path), sqlite3.connect(backup)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()

        await loop.run_in_executor(jexec, take_backup)
    finally:
        await loop.run_in_executor(jexec, j.close)
    until = datetime.fromtimestamp(s.t0 + 200 * DAY, UTC).date().isoformat()
    r = run_acqd(
        "hold", "alice_apoferritin_0101", "--until", until, "--reason", "paper revision", "--config", str(s.cfg_path)
    )
    assert r.returncode == 0, r.stderr
    for p in path.parent.glob(path.name + "*"):  # the state disk dies ...
        p.unlink()
    backup.replace(path)  # ... and the backup is restored
    j = await loop.run_in_executor(jexec, Journal, path)
    try:
        res = await sweep_days(s, range(55, 62), make_runner(s, j, jexec, io))
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    assert sum(r.purged for r in res.values()) >= 1  # carol's movie goes as announced
    held = [s.capacity / f"alice_apoferritin_0101/FoilHole_{i}_fractions.mrc" for i in (1, 2)]
    assert all(p.exists() for p in held), "purged under a hold the restored journal forgot"
    assert [e.reason for e in s.events if e.kind == "retention.hold_restored"] == ["paper revision"]
    r = run_acqd("hold", "--list", "--config", str(s.cfg_path))  # the journal has it again
    assert "alice_apoferritin_0101" in r.stdout and "paper revision" in r.stdout, r.stdout


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
    again = run_acqd(
        "hold", "bob_ribosome_0102", "--until", "2999-01-01", "--reason", "paper revision", "--config", str(cfg)
    )  # the same hold asked twice (a pasted command run again) is one hold
    assert again.returncode == 0, again.stderr
    r = run_acqd("hold", "--list", "--config", str(cfg))
    assert "bob_ribosome_0102" in r.stdout and "paper revision" in r.stdout
    assert r.stdout.count("bob_ribosome_0102") == 1, r.stdout
    r = run_acqd("hold", "bob_ribosome_0102", "--until", "2000-01-01", "--reason", "x", "--config", str(cfg))
    assert r.returncode == 2 and "in the past" in r.stderr  # a bad argument: a usage error
    r = run_acqd("plan", "--config", str(cfg), "--now", iso, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    acts = {(a["action"], a["path"]) for a in doc["actions"]}
    assert ("warn", "alice_apoferritin_0101/FoilHole_1_fractions.mrc") in acts
    assert ("transition", "alice_apoferritin_0101/FoilHole_1_fractions.mrc") in acts  # nothing ran yet
    assert ("blocked", "bob_ribosome_0102/FoilHole_3_fractions.mrc") in acts
    bobs = [a["reason"] for a in doc["actions"] if a["path"] == "bob_ribosome_0102/FoilHole_3_fractions.mrc"]
    assert sorted(bobs) == [  # one line per action a hold keeps back, each saying which
        "move to capacity held back: hold until 2999-01-02 12:00 UTC: paper revision",
        "purge held back: hold until 2999-01-02 12:00 UTC: paper revision",
    ], bobs
    assert doc["totals"]["by_owner"]["bob"]["blocked_files"] == 1  # one file, held from both
    assert not any(a["action"] == "purge" for a in doc["actions"])  # a plan never purges unwarned data
    warn = next(a for a in doc["actions"] if a["action"] == "warn" and a["owner"] == "alice")
    assert warn["recipients"] == ["alice@lab.example"] and warn["owner"] == "alice"
    assert doc["totals"]["by_owner"]["alice"]["warn_files"] == 2
    # a file under the held session: no hold of its own; what keeps it is said (a review: "released
    # 0 hold(s)", exit 0, and the file still held by nothing said)
    r = run_acqd("hold", "bob_ribosome_0102/FoilHole_3_fractions.mrc", "--release", "--config", str(cfg))
    assert r.returncode == 0 and "released 0 hold(s)" in r.stdout, r.stdout + r.stderr
    assert "is kept by the hold on " in r.stdout and "bob_ribosome_0102 (until 2999-01-02" in r.stdout, r.stdout
    r = run_acqd("hold", "bob_ribosome_0102", "--release", "--config", str(cfg))
    assert "released 1 hold" in r.stdout  # the hold asked twice was placed once
    assert re.search(r"acq/bob_ribosome_0102\s+until 2999-01-02T12:00:00Z\s+paper revision", r.stdout), r.stdout
    import sqlite3  # a journal where an older acqd placed one hold twice: listed once

    db = sqlite3.connect(journal_path(s.cfg.state_dir))
    with db:
        for _ in range(2):
            db.execute(
                "INSERT INTO holds(target, until, reason, created, root, placed_by) VALUES(?, ?, ?, ?, '', '')",
                ("carol_0103", 32503680000.0, "old", 0.0),
            )
    db.close()
    assert run_acqd("hold", "--list", "--config", str(cfg)).stdout.count("carol_0103") == 1
    r = run_acqd("plan", "--config", str(cfg), "--now", iso)
    assert r.returncode == 0 and "alice" in r.stdout


def test_check_warns_when_a_policy_would_purge_most_data_at_once(setup: Setup, tmp_path: Path) -> None:
    from acqd.daemon import check

    s = setup
    report = check(s.cfg, probe=False)
    assert not any("would purge" in n for n in report.warnings)
    [policy] = [n for n in report.notes if n.startswith("policy ")]  # what it does, transitions too
    assert "move to capacity after 14d, purge after 60d, warn 14d before" in policy, policy
    assert "on tier(s) central, capacity: " in policy, policy  # the tiers it manages, said
    eager = tmp_path / "eager.yaml"
    eager.write_text(
        POLICY.replace("expiration: {after: 60d}", "expiration: {after: 10d}")
        .replace("warn: 14d", "warn: 10d")
        .replace("transitions: [{after: 14d, tier: capacity}]", "transitions: []")
    )
    [warning] = [w for w in check(s.cfg.model_copy(update={"policy": eager}), probe=False).warnings if "would" in w]
    assert "would purge 80% of the stored data" in warning and "maxShareOfData (50%)" in warning
    # warnings that reach nobody, and the purges follow: said (a review: no smtp, placeholder addresses)
    warnings = check(s.cfg.model_copy(update={"smtp": None}), probe=False).warnings
    assert any("no `smtp:` is configured: warnings go to" in w and "mailbox" in w for w in warnings), warnings
    assert not any("no `smtp:`" in w for w in report.warnings)
    assert sum("reserved for examples" in w for w in report.warnings) == 3  # alice, bob, the fallback @lab.example
    assert not any("no detector profile" in w for w in report.warnings)
    typo = tmp_path / "typo.yaml"  # a detector name misspelt: its rule matches nothing
    typo.write_text(
        POLICY.replace('movie: {globs: ["*_fractions.mrc"]}', 'movie: {globs: ["*.mrc"], detectors: [genric]}')
    )
    warnings = check(s.cfg.model_copy(update={"policy": typo}), probe=False).warnings
    assert any("dataClass movie: detector 'genric' is no detector profile" in w and "generic" in w for w in warnings)


async def test_files_nobody_can_be_warned_about_are_counted_blocked_and_check_says_so(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A policy that purges with no owners.fallback: carol's movie (no address) can never be warned,
    so its purge stays blocked. `acqd check` said nothing, each sweep logged an error per such file
    and summed them as "0 blocked" (an adversarial review)."""
    import logging

    from acqd.daemon import check

    s = setup
    alone = tmp_path / "alone.yaml"
    alone.write_text(POLICY.replace("    fallback: facility@lab.example\n", ""))
    cfg = s.cfg.model_copy(update={"policy": alone})
    said = [w for w in check(cfg, probe=False).warnings if "nobody to be warned" in w]
    assert len(said) == 1 and "policy rule movies purges after 60d" in said[0], said
    assert not [w for w in check(s.cfg, probe=False).warnings if "nobody to be warned" in w]  # with a fallback
    s.cfg = cfg
    caplog.set_level(logging.ERROR, logger="acqd")
    with ThreadPoolExecutor(1) as jexec, ThreadPoolExecutor(2) as io:
        j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(cfg.state_dir))
        try:
            res = await make_runner(s, j, jexec, io).sweep(s.t0 + 50 * DAY)
        finally:
            await asyncio.get_running_loop().run_in_executor(jexec, j.close)
    assert res.blocked >= 1, res
    lines = [r.getMessage() for r in caplog.records if "nobody to warn" in r.getMessage()]
    assert len(lines) == 1 and "carol_test_0103" in lines[0], lines


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
    result = await Daemon(cfg, once=True, retry_for=120).run(install_signals=False)
    assert result.stats.verified == 3 and result.pending == 0
    s = "alice_apoferritin_0101"
    assert (capacity / "krios" / s / "FoilHole_1_fractions.mrc~.zst").exists()
    assert not (watch / s / "FoilHole_1_fractions.mrc").exists()  # released: the rule says so
    assert (central / "krios" / s / "FoilHole_1_DW.mrc").exists()  # the sum: the watch root's placement
    assert (watch / s / "FoilHole_1_DW.mrc").exists()  # ... which does not release
    # the journal lost, `acqd adopt` finds each copy on the tier its manifest entry names (the
    # manifest is on the root's tier): it recorded them all on central, and restore said "not found"
    from tests.conftest import run_acqd

    for p in (tmp_path / "state").glob("journal.sqlite*"):
        p.unlink()
    (tmp_path / "acqd.yaml").write_text(cfg.model_dump_json())  # JSON is YAML
    r = run_acqd("adopt", "--config", str(tmp_path / "acqd.yaml"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "back.mrc"
    r = run_acqd("restore", f"{s}/FoilHole_1_fractions.mrc", str(out), "--config", str(tmp_path / "acqd.yaml"))
    assert r.returncode == 0 and out.read_bytes() == b"x" * 5000, r.stderr
    r = run_acqd("verify", "--config", str(tmp_path / "acqd.yaml"))
    assert r.returncode == 0 and "3 copies OK, 0 failed" in r.stdout, (r.stdout, r.stderr)


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


# --- the clock guard --------------------------------------------------------------------------


class Journaled:
    """A journal on its own thread, as the daemon has it (closed and reopened: a restart)."""

    def __init__(self, s: Setup) -> None:
        self.s = s
        self.jexec, self.io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
        self.j: Journal | None = None

    async def open(self, reporter: Any = None) -> RetentionRunner:
        loop = asyncio.get_running_loop()
        self.j = await loop.run_in_executor(self.jexec, Journal, journal_path(self.s.cfg.state_dir))
        return make_runner(self.s, self.j, self.jexec, self.io, reporter)

    async def close(self) -> None:
        if self.j is not None:
            await asyncio.get_running_loop().run_in_executor(self.jexec, self.j.close)
            self.j = None

    async def shutdown(self) -> None:
        await self.close()
        self.jexec.shutdown()
        self.io.shutdown()


def audit_actions(s: Setup) -> list[str]:
    j = Journal(journal_path(s.cfg.state_dir), readonly=True)
    try:
        return [a for _, _, a, _ in j.audit_log()]
    finally:
        j.close()


def day_reading(s: Setup, real_day: float, jump_days: float = 0.0) -> Reading:
    """The clocks on `real_day` of the run: CLOCK_BOOTTIME follows real time; the wall clock is off by `jump_days`."""
    real = s.t0 + real_day * DAY + 60
    return Reading(real + jump_days * DAY, "boot-1", real)


WARNED = [  # warned on day 46 for day 60
    "alice_apoferritin_0101/FoilHole_1_fractions.mrc",
    "alice_apoferritin_0101/FoilHole_2_fractions.mrc",
    "carol_test_0103/FoilHole_4_fractions.mrc",
]


@pytest.mark.parametrize("lift", ["time", "ack"])
async def test_a_clock_jump_of_13_days_never_purges_early(setup: Setup, lift: str) -> None:
    """Warned on day 46 for day 60; on day 50 the wall clock jumps 13 days ahead (it says day 63).
    Nothing is purged on the following sweeps, across a restart, until an operator acknowledges the
    wall clock (then what is due by it goes) or until day 60 has come by the trusted clock."""
    from prometheus_client import CollectorRegistry

    from acqd.daemon import Fanout
    from acqd.metrics import Metrics
    from tests.conftest import run_acqd

    s = setup
    metrics = Metrics(CollectorRegistry(), "krios")
    reporter = Fanout([Recorder(s.events), metrics])
    r = run_acqd("hold", "bob_ribosome_0102", "--until", "2999-01-01", "--reason", "paper", "--config", str(s.cfg_path))
    assert r.returncode == 0, r.stderr
    jd = Journaled(s)
    try:
        runner = await jd.open(reporter)
        for d in range(0, 50):
            res = await runner.sweep(day_reading(s, d))
            assert res.purged == 0 and (res.clock is not None and res.clock.suspension is None)
        assert len(s.box.messages) == 2
        for d in range(50, 53):  # without the guard, day 50 (the wall clock's day 63) would purge all three
            res = await runner.sweep(day_reading(s, d, 13))
            assert res.purged == 0, d
            assert any(a.kind == "blocked" and "clock guard" in a.reason for a in res.actions)
        assert metrics.value("acqd_retention_clock_suspended") == 1
        assert [e.kind for e in s.events].count("retention.clock_suspended") == 1
        await jd.close()  # a restart: the suspension is in the journal

        iso = datetime.fromtimestamp(s.t0 + 66 * DAY, UTC).isoformat()
        r = run_acqd("plan", "--config", str(s.cfg_path), "--now", iso, "--json")
        assert r.returncode == 0, r.stderr
        clock = json.loads(r.stdout)["clock"]
        assert clock["suspended"] and "forward by 13.0 days" in clock["reason"] and "ack-clock" in clock["lift"]
        r = run_acqd("status", "--config", str(s.cfg_path))
        assert "PURGES SUSPENDED" in r.stdout and "acqd retention ack-clock" in r.stdout, r.stdout

        # what a daemon does at its start: the standing suspension is on the gauge at once, not an
        # interval later at the first sweep (found by the observability review)
        fresh = Metrics(CollectorRegistry(), "krios")
        await (await jd.open(Fanout([Recorder([]), fresh]))).report_standing_suspension()
        assert fresh.value("acqd_retention_clock_suspended") == 1
        await jd.close()

        runner = await jd.open(reporter)
        if lift == "time":
            for d in range(53, 60):
                res = await runner.sweep(day_reading(s, d, 13))
                assert res.purged == 0, d
            res = await runner.sweep(day_reading(s, 60, 13))  # day 60 by the trusted clock
            assert res.purged == 3
        else:
            await jd.close()
            r = run_acqd("retention", "ack-clock", "--config", str(s.cfg_path), "--reason", "checked against NTP")
            assert r.returncode == 0 and "acknowledged the wall clock" in r.stdout, r.stderr
            runner = await jd.open(reporter)
            res = await runner.sweep(day_reading(s, 53, 13))  # the wall clock (day 66) is right, says the operator
            assert res.purged == 3 and res.clock is not None and res.clock.suspension is None
            assert metrics.value("acqd_retention_clock_suspended") == 0
            assert metrics.value("acqd_retention_actions_total", action="clock_acknowledged") == 1
            assert "retention.clock.ack" in audit_actions(s) and "retention.clock.acknowledged" in audit_actions(s)
        purged = {e.relpath for e in s.events if e.kind == "retention.purged"}
        assert purged == set(WARNED)
        for d in range(61, 64):
            assert (await runner.sweep(day_reading(s, d + (13 if lift == "time" else 0), 0))).purged == 0
    finally:
        await jd.shutdown()
    assert (s.central / "bob_ribosome_0102/FoilHole_3_fractions.mrc").exists() or (
        s.capacity / "bob_ribosome_0102/FoilHole_3_fractions.mrc"
    ).exists()
    assert "retention.clock.suspended" in audit_actions(s)


# --- holds --------------------------------------------------------------------------------------


def hold(s: Setup, target: str, until: str = "2999-01-01") -> Any:
    from tests.conftest import run_acqd

    return run_acqd("hold", target, "--until", until, "--reason", "figure 3", "--config", str(s.cfg_path))


def test_a_hold_until_a_day_keeps_the_data_all_that_day_anywhere(setup: Setup) -> None:
    """`acqd hold X --until D` ended at 00:00 UTC on D, so a purge due on D went ahead on D, a day
    before its owner expected (and in UTC-10 the evening before); the owner page and the warning's
    pasted command meant all of D. A bare day now keeps the data until D has ended everywhere
    (12:00 UTC the next day); a date and time is that moment."""
    from datetime import date, timedelta

    s = setup
    day = (date.today() + timedelta(days=30)).isoformat()
    r = hold(s, "alice_apoferritin_0101", until=day)
    assert r.returncode == 0, r.stderr
    end = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() + 36 * 3600
    j = Journal(journal_path(s.cfg.state_dir), readonly=True)
    try:
        (until,) = {u for t, u, _, _ in jr.active_holds(j, s.t0) if t == "alice_apoferritin_0101"}
        assert until == end, (until, end)
        last = jr.active_holds(j, end - 60)  # the last minute of D in UTC-12
        assert any(t == "alice_apoferritin_0101" for t, _, _, _ in last)
    finally:
        j.close()
    stamp = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT12:00:00Z")
    assert f"until the end of {day} everywhere on Earth ({stamp})" in r.stdout, r.stdout
    r = hold(s, "bob_ribosome_0102", until=f"{day}T08:00")
    assert r.returncode == 0 and f"until {day}T08:00:00Z" in r.stdout, r.stdout


async def test_the_fallback_told_of_owners_with_an_address_is_not_told_they_have_none(setup: Setup) -> None:
    """`notify: [owner, fallback]`: the fallback's digest said alice's and bob's data was of owners who
    "have no address of their own here", while they were warned at theirs (a review): it says it is a
    copy of what they are told, and names only carol as without an address."""
    s = setup
    both = s.cfg.policy.parent / "both.yaml"  # type: ignore[union-attr]
    both.write_text(POLICY.replace("      warn: 14d\n", "      warn: 14d\n      notify: [owner, fallback]\n", 1))
    s.cfg = s.cfg.model_copy(update={"policy": both})
    await sweep_with_a_runner(s, range(46, 47))
    fallback = {tuple(r): m for r, m in s.box.messages}[("facility@lab.example",)]
    body = fallback.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "have no address of their own here\n(carol)" in body, body
    assert "a copy of what these owners are told at their own address:\nalice, bob." in body, body
    assert "of yours" not in fallback["Subject"]


async def test_a_warning_names_the_session_folder_not_one_subfolder(tmp_path: Path) -> None:
    """alice's session has its movies in grid1/ and grid2/: the digest's one line for it said "where:"
    the folder of one file (grid1), and an owner copying that lost the rest (a review). It names the
    session's folder."""
    files = [f"alice_apoferritin_0101/grid{g}/FoilHole_{g}{i}_fractions.mrc" for g in (1, 2) for i in range(3)]
    async for s in make_setup(tmp_path, files):
        await _warn_day_46_where(s)


async def _warn_day_46_where(s: Setup) -> None:
    await sweep_with_a_runner(s, range(46, 47))
    alice = {tuple(r): m for r, m in s.box.messages}[("alice@lab.example",)]
    body = alice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "6 file(s)" in alice["Subject"], alice["Subject"]
    assert "6 file(s), 58.61 KiB" in alice.get_body(("plain",)).get_content(), "a small session said in its unit"  # type: ignore[union-attr]
    wheres = [line.split("where:", 1)[1].strip() for line in body.splitlines() if "where:" in line]
    assert wheres and all(w.endswith("/krios/alice_apoferritin_0101") for w in wheres), body
    assert len(set(wheres)) == 1, body  # one line for the session, all its subfolders in it


def test_hold_accepts_what_people_paste(nested: Setup) -> None:
    s = nested
    cases = [  # (target, files covered, the source path held)
        ("alice_apoferritin_0101", 6, "alice_apoferritin_0101"),
        (f"{s.watch}/alice_apoferritin_0101/grid2/FoilHole_5_fractions.mrc", 1, "grid2/FoilHole_5_fractions.mrc"),
        ("alice_apoferritin_0101/grid2", 2, "alice_apoferritin_0101/grid2"),  # not grid20
        (f"file://{s.central}/alice_apoferritin_0101/grid2", 2, "alice_apoferritin_0101/grid2"),
        (f"{s.central}/carol_test_0103/FoilHole_4_fractions.mrc", 1, "carol_test_0103/FoilHole_4_fractions.mrc"),
        ("krios/bob_ribosome_0102", 1, "bob_ribosome_0102"),  # instrument/session as stored
        (f"file://{s.central}/alice_apoferritin_0101/FoilHole_1_fractions.mrc", 1, "FoilHole_1_fractions.mrc"),
    ]
    for target, n, held in cases:
        r = hold(s, target)
        assert r.returncode == 0, (target, r.stderr)
        assert f"{n} stored file(s)" in r.stdout and held in r.stdout, (target, r.stdout)
    j = Journal(journal_path(s.cfg.state_dir), readonly=True)
    try:
        holds = {(root, t) for t, _, _, root in jr.active_holds(j, s.t0)}
    finally:
        j.close()
    assert (str(s.watch), "alice_apoferritin_0101/grid2") in holds
    assert (str(s.watch), "bob_ribosome_0102") in holds
    for typo, close in [
        ("alice_apoferitin_0101", "alice_apoferritin_0101"),
        ("krios/alice_apoferritin_0101/grid3", "krios/alice_apoferritin_0101"),
        (f"{s.watch}/carol_test_0103/FoilHole_4_fraction.mrc", "carol_test_0103/FoilHole_4_fractions.mrc"),
    ]:
        r = hold(s, typo)
        assert r.returncode == 1 and "nothing stored matches" in r.stderr and close in r.stderr, (typo, r.stderr)
        assert r.stderr.count("\n") == 1  # one line
    r = hold(s, "s3://elsewhere/krios/alice_apoferritin_0101")
    assert r.returncode == 1 and "nothing stored matches" in r.stderr


async def test_a_hold_on_one_file_or_folder_keeps_exactly_that(nested: Setup) -> None:
    """A session that is otherwise purged: the held file and the held sub-folder survive (neither
    moved nor purged); the folder whose name only starts the same (grid20) does not."""
    s = nested
    assert hold(s, f"{s.watch}/alice_apoferritin_0101/FoilHole_1_fractions.mrc").returncode == 0
    assert hold(s, f"file://{s.central}/alice_apoferritin_0101/grid2").returncode == 0
    jd = Journaled(s)
    try:
        runner = await jd.open()
        res = await sweep_days(s, range(0, 76), runner)
    finally:
        await jd.shutdown()
    purged = {e.relpath for e in s.events if e.kind == "retention.purged"}
    assert purged == {
        "alice_apoferritin_0101/FoilHole_2_fractions.mrc",
        "alice_apoferritin_0101/grid20/FoilHole_7_fractions.mrc",
        "bob_ribosome_0102/FoilHole_3_fractions.mrc",
        "carol_test_0103/FoilHole_4_fractions.mrc",
    }
    assert sum(r.purged for r in res.values()) == 4
    for rel in (
        "alice_apoferritin_0101/FoilHole_1_fractions.mrc",
        "alice_apoferritin_0101/grid2/FoilHole_5_fractions.mrc",
        "alice_apoferritin_0101/grid2/FoilHole_6_fractions.mrc",
    ):
        assert (s.central / rel).exists() and not (s.capacity / rel).exists(), rel  # not moved either
    assert not (s.capacity / "alice_apoferritin_0101/grid20/FoilHole_7_fractions.mrc").exists()


async def test_a_hold_placed_after_the_plan_is_honoured(setup: Setup) -> None:
    """The holds are re-read just before each delete: a hold placed (by another process) between
    the plan and its execution keeps a transition and a purge from happening."""
    s = setup
    jd = Journaled(s)
    try:
        runner = await jd.open()
        await sweep_days(s, range(0, 14), runner)
        actions, by_copy, t = await runner.plan(s.t0 + 14 * DAY + 60)
        assert "carol_test_0103/FoilHole_4_fractions.mrc" in {a.item.relpath for a in actions if a.kind == "transition"}
        assert hold(s, "krios/carol_test_0103").returncode == 0
        blocked = sum(a.kind == "blocked" for a in actions)
        res = await runner.execute(actions, by_copy, t)
        assert res.transitioned == 3  # alice's two and bob's; carol's stays
        assert res.blocked == blocked + 1, res.summary()  # carol's move, held since the plan, is counted
        assert (s.central / "carol_test_0103/FoilHole_4_fractions.mrc").exists()
        assert hold(s, "krios/carol_test_0103").returncode == 0
        from tests.conftest import run_acqd

        assert run_acqd("hold", "krios/carol_test_0103", "--release", "--config", str(s.cfg_path)).returncode == 0
        await sweep_days(s, range(15, 60), runner)
        actions, by_copy, t = await runner.plan(s.t0 + 60 * DAY + 60)
        victim = "alice_apoferritin_0101/FoilHole_2_fractions.mrc"
        assert victim in {a.item.relpath for a in actions if a.kind == "purge"}
        assert hold(s, f"file://{s.capacity}/{victim}").returncode == 0
        blocked = sum(a.kind == "blocked" for a in actions)
        res = await runner.execute(actions, by_copy, t)
        assert res.purged == 3  # alice's other movie, bob's and carol's
        assert res.blocked == blocked + 1, res.summary()
    finally:
        await jd.shutdown()
    assert (s.capacity / victim).exists()
    assert not (s.capacity / "alice_apoferritin_0101/FoilHole_1_fractions.mrc").exists()
    actions_ = audit_actions(s)
    assert "retention.purge.held" in actions_ and "retention.transition.held" in actions_


async def _alices_digest(s: Setup, runner: RetentionRunner) -> tuple[Any, str, list[str]]:
    """Sweeps to day 46 (the warnings): alice's digest, its plain text and its `acqd hold` lines."""
    await sweep_days(s, range(0, 47), runner)
    [alice] = [m for rcpt, m in s.box.messages if rcpt == ["alice@lab.example"]]
    body = alice.get_body(("plain",)).get_content()
    return alice, body, [ln.strip() for ln in body.splitlines() if ln.strip().startswith("acqd hold ")]


async def test_the_hold_command_in_the_warning_works_as_pasted(setup: Setup) -> None:
    from tests.conftest import run_acqd

    s = setup
    r = run_acqd("retention", "ack-clock", "--config", str(s.cfg_path))
    assert r.returncode == 1 and "nothing to acknowledge" in r.stderr  # nothing suspended
    jd = Journaled(s)
    try:
        runner = await jd.open()
        alice, _body, [line] = await _alices_digest(s, runner)
        html = alice.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert line in html_unescape(html)
        args = shlex.split(line)
        assert args[:3] == ["acqd", "hold", "alice_apoferritin_0101"] and args[-2:] == ["--config", str(s.cfg_path)]
        r = run_acqd(*args[1:])
        assert r.returncode == 0 and "2 stored file(s)" not in r.stdout and "3 stored file(s)" in r.stdout, r
        res = await sweep_days(s, range(47, 76), runner)
    finally:
        await jd.shutdown()
    assert sum(r.purged for r in res.values()) == 2  # bob's and carol's; alice's session is held
    assert (s.capacity / "alice_apoferritin_0101/FoilHole_1_fractions.mrc").exists()
    assert not (s.capacity / "carol_test_0103/FoilHole_4_fractions.mrc").exists()


def page_date(j: Journal, s: Setup, session: str, now: float) -> tuple[float | None, str]:
    """What the owner page says about `session` at `now`: its purge date and why."""
    from acqd.owners import local, view

    policy = load_retention(s.cfg)
    assert policy is not None
    ws = local._warnings(j)
    rows = view.sessions("krios", policy, local._items(j), local._holds(j, now), ws, now, local._ended(j, ws, now))
    [row] = [r for r in rows if r.session == session]
    return row.purge_at, " ".join(row.why)


@pytest.mark.parametrize("end", ["until", "released"])
async def test_a_hold_past_the_warned_date_is_followed_by_a_second_warning(setup: Setup, end: str) -> None:
    """Warned on day 46 for day 60; alice holds her session on day 50 until day 70 (or releases it
    on day 65): nothing of hers goes on day 60 nor when the hold ends; the sweep after it mails her a
    second warning (caught by the SMTP server) for a full lead time ahead, and her movies go then.
    The owner page shows that date while the hold runs and after it ended."""
    s = setup
    session = "alice_apoferritin_0101"
    ends = 65 if end == "released" else 70
    jd = Journaled(s)
    try:
        runner = await jd.open()
        assert jd.j is not None
        j, loop = jd.j, asyncio.get_running_loop()
        await sweep_days(s, range(0, 47), runner)
        first = [m for rcpt, m in s.box.messages if rcpt == ["alice@lab.example"]]
        assert len(first) == 1 and day(s.t0 + 60 * DAY + 60) in first[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        await sweep_days(s, range(47, 50), runner)
        await loop.run_in_executor(jd.jexec, jr.add_hold, j, session, s.t0 + 70 * DAY, "revision", s.t0 + 50 * DAY)
        at, why = await loop.run_in_executor(jd.jexec, page_date, j, s, session, s.t0 + 55 * DAY)
        assert at is not None and s.t0 + 84 * DAY <= at <= s.t0 + 84 * DAY + 3600, (at, why)
        assert "warned again before deletion" in why
        res = await sweep_days(s, range(50, ends), runner)
        assert sum(r.purged for r in res.values()) == 2  # bob's and carol's on day 60, not alice's
        if end == "released":
            await loop.run_in_executor(jd.jexec, jr.release_hold, j, session, s.t0 + 65 * DAY)
        # the hold has ended, the sweep not yet come: the page shows the new date already
        at, why = await loop.run_in_executor(jd.jexec, page_date, j, s, session, s.t0 + ends * DAY + 30)
        assert at is not None and s.t0 + (ends + 14) * DAY <= at <= s.t0 + (ends + 14) * DAY + 3600, (at, why)
        res = await sweep_days(s, range(ends, ends + 1), runner)
        assert res[ends].purged == 0 and res[ends].digests == 1
        second = [m for rcpt, m in s.box.messages if rcpt == ["alice@lab.example"]]
        assert len(second) == 2
        body = second[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert session in body and day(s.t0 + (ends + 14) * DAY + 60) in body, body
        res = await sweep_days(s, range(ends + 1, ends + 14), runner)
        assert all(r.purged == 0 for r in res.values())  # a full lead time after the second warning
        res = await sweep_days(s, range(ends + 14, ends + 15), runner)
        assert res[ends + 14].purged == 2
    finally:
        await jd.shutdown()
    assert not (s.capacity / session / "FoilHole_1_fractions.mrc").exists()


async def test_a_purge_the_policy_called_off_is_warned_again_when_it_returns(setup: Setup) -> None:
    """Warned on day 46 for day 60; on day 50 the facility's policy stops deleting movies (the owner
    page says 'kept') and on day 65 it deletes them again: the day-60 warning is called off for good
    (journal, audit); the movies are warned again on day 65 (a second mail) and go on day 79."""
    s = setup
    keep = load_retention(s.cfg)
    assert keep is not None
    rules = tuple(r.model_copy(update={"expiration": None}) for r in keep.spec.rules)
    keep = keep.model_copy(update={"spec": keep.spec.model_copy(update={"rules": rules})})
    jd = Journaled(s)
    try:
        runner = await jd.open()
        await sweep_days(s, range(0, 50), runner)
        deleting = runner.policy
        assert len([m for rcpt, m in s.box.messages if rcpt == ["alice@lab.example"]]) == 1
        runner.policy = keep
        res = await sweep_days(s, range(50, 65), runner)
        assert all(r.purged == 0 for r in res.values())
        runner.policy = deleting
        res = await sweep_days(s, range(65, 79), runner)
        assert res[65].digests == 3 and all(r.purged == 0 for r in res.values())
        second = [m for rcpt, m in s.box.messages if rcpt == ["alice@lab.example"]]
        assert len(second) == 2 and day(s.t0 + 79 * DAY + 60) in second[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        res = await sweep_days(s, range(79, 80), runner)
        assert res[79].purged == 4
    finally:
        await jd.shutdown()
    assert audit_actions(s).count("retention.warning.voided") == 4


def day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def test_the_daemon_suspends_purges_after_a_clock_jump_until_acknowledged(setup: Setup) -> None:
    """`acqd run` itself: its sweeps keep the clock guard's state with this machine's boot id and
    CLOCK_BOOTTIME; a wall clock found 13 days ahead of the trusted calendar at a restart suspends
    purges (audit, log, `acqd status`), and `acqd retention ack-clock` lifts it at the next sweep."""
    from tests.conftest import Background, run_acqd, wait_for

    s = setup
    assert s.cfg.policy is not None
    s.cfg.policy.write_text(POLICY + "  interval: 0.5s\n")

    def clock() -> dict[str, Any] | None:
        j = Journal(journal_path(s.cfg.state_dir), readonly=True)
        try:
            return jr.clock_state(j)
        finally:
            j.close()

    d = Background("run", "--config", str(s.cfg_path))
    try:
        wait_for(lambda: clock() is not None, 60, "a first sweep")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    doc = clock()
    assert doc is not None and doc["last"][1] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert doc["suspension"] is None
    # as if the wall clock had been 13 days behind at that sweep: now it reads 13 days ahead of the trusted calendar
    doc["last"][0] -= 13 * DAY
    doc["anchor"][0] -= 13 * DAY
    j = Journal(journal_path(s.cfg.state_dir))
    try:
        jr.set_clock_state(j, doc)
    finally:
        j.close()
    d = Background("run", "--config", str(s.cfg_path))
    try:
        wait_for(lambda: "retention.clock.suspended" in audit_actions(s), 60, "the suspension")
        r = run_acqd("status", "--config", str(s.cfg_path), "--json")
        assert json.loads(r.stdout)["retention_clock"]["suspended"] is True, r.stdout
        r = run_acqd("retention", "ack-clock", "--config", str(s.cfg_path), "--reason", "NTP was down")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: "retention.clock.acknowledged" in audit_actions(s), 60, "the acknowledgement applied")
        wait_for(lambda: (c := clock()) is not None and c["suspension"] is None, 60, "the suspension lifted")
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "jumped forward by 13.0 days" in err and "acknowledged by" in err and "NTP was down" in err
    r = run_acqd("status", "--config", str(s.cfg_path))
    assert "PURGES SUSPENDED" not in r.stdout


def test_a_journal_from_before_partial_holds_is_read_and_migrated(tmp_path: Path) -> None:
    """A journal written before holds had a watch root and before clock acknowledgements: read-only
    commands (`plan`, `hold --list`) read it as it is; the daemon's writable open migrates it."""
    import sqlite3

    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.executescript(  # as an older acqd left it
        "ALTER TABLE holds DROP COLUMN root; DROP TABLE clock_acks;"
        "INSERT INTO holds(target, until, reason, created) VALUES('bob_ribosome_0102', 2e9, 'paper', 1e9);"
    )
    db.commit()
    db.close()
    j = Journal(path, readonly=True)
    try:
        assert jr.active_holds(j, 1.5e9) == [("bob_ribosome_0102", 2e9, "paper", "")]
        assert jr.pending_clock_acks(j) == []
    finally:
        j.close()
    j = Journal(path)
    try:
        assert jr.active_holds(j, 1.5e9) == [("bob_ribosome_0102", 2e9, "paper", "")]
        jr.add_hold(j, "alice/grid2", 2e9, "fig", 1.5e9, root="/acq")
        assert ("alice/grid2", 2e9, "fig", "/acq") in jr.active_holds(j, 1.5e9)
    finally:
        j.close()


class Refusing(Mailbox):
    """A mail server that refuses some recipients (a full mailbox, a typo in the address)."""

    def __init__(self, refused: set[str]) -> None:
        super().__init__()
        self.refused = refused

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_recipient_whose_digest_was_refused_is_warned_again_alone(setup: Setup) -> None:
    """The movies rule warns the owner and the facility. On day 46 the server refuses alice's
    address: the facility's digest goes out, alice's does not. Alice alone is warned again at the
    next sweep, and her files are purged 14 days after *her* warning; the others on day 60."""
    s = setup
    assert s.cfg.smtp is not None and s.cfg.policy is not None
    text = POLICY.replace("      warn: 14d\n", "      warn: 14d\n      notify: [owner, fallback]\n", 1)
    await asyncio.to_thread(Path(s.cfg.policy).write_text, text)
    s.smtp.stop()
    box = Refusing({"alice@lab.example"})
    s.box, s.smtp = box, Controller(box, hostname="127.0.0.1", port=s.cfg.smtp.port)
    s.smtp.start()
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = make_runner(s, j, jexec, io)
        res = await sweep_days(s, range(0, 47), runner)
        assert res[46].failed == 1 and res[46].digests == 2  # facility and bob; alice refused
        assert sorted(r for rs, _ in box.messages for r in rs) == ["bob@lab.example", "facility@lab.example"]
        box.refused.clear()
        res = await sweep_days(s, range(47, 48), runner)
        assert res[47].digests == 1 and [rs for rs, _ in box.messages[2:]] == [["alice@lab.example"]]
        res = await sweep_days(s, range(48, 61), runner)
        assert len(box.messages) == 3  # nobody is mailed twice for the same purge
        assert res[60].purged == 2  # bob's and carol's: all their recipients warned on day 46
        assert all(r.purged == 0 for d, r in res.items() if d != 60)
        assert (s.capacity / "alice_apoferritin_0101/FoilHole_1_fractions.mrc").exists()
        res = await sweep_days(s, range(61, 62), runner)
        assert res[61].purged == 2  # alice's, 14 days after her own warning
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_warning_sent_while_the_wall_clock_is_behind_counts_from_when_it_went_out(setup: Setup) -> None:
    """From day 40 the wall clock is 5 days behind (the guard judges by the lesser clock, so the
    warning for day 60 goes out on real day 51, when the wall clock says day 46); on day 52 it is
    set right. The warning is stamped with the trusted calendar: it announces day 65 (14 days after
    it really went out) and nothing goes before that; stamped with the wall clock it would have said
    day 60, 9 real days after the mail."""
    s = setup
    jd = Journaled(s)
    try:
        runner = await jd.open()
        for d in range(0, 52):
            res = await runner.sweep(day_reading(s, d, -5 if d >= 40 else 0))
            assert res.purged == 0
            assert (res.digests > 0) == (d == 51), d
        body = [m.get_body(("plain",)).get_content() for _, m in s.box.messages]  # type: ignore[union-attr]
        day65 = datetime.fromtimestamp(s.t0 + 65 * DAY + 60, UTC).strftime("%Y-%m-%d")
        assert all(day65 in b for b in body), (day65, body)
        for d in range(52, 65):
            res = await runner.sweep(day_reading(s, d))
            assert res.purged == 0, d
        res = await runner.sweep(day_reading(s, 65.01))
        assert res.purged == 4
    finally:
        await jd.shutdown()


async def test_warnings_written_to_the_local_mailbox_only_hold_the_purges_back(setup: Setup) -> None:
    """Found by an adversarial review (thirty-first session): with no `smtp:` configured, the warnings
    went to a mailbox file on the acquisition PC, were recorded as delivered, and the files were
    purged on their date though no owner was ever told. Such a warning is now not delivered: the
    mailbox still gets it, each sweep says so (an ERROR, an event), and nothing is purged; once
    `smtp:` is configured, the owners are warned and purged a full warning period later."""
    from acqd.notify import MailboxMailer
    from tests.conftest import run_acqd

    s = setup
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = make_runner(s, j, jexec, io)
        mailbox = s.cfg.state_dir / "mailbox"
        runner.mailer = MailboxMailer(mailbox)
        res = await sweep_days(s, range(0, 75), runner)
        assert all(r.purged == 0 and r.warned == 0 for r in res.values()), res
        assert res[74].blocked > 0
        # and why, in the sweep's result and `acqd status` (it said "0 failed, N blocked": a stranger's walk)
        why = "their warnings went to the local mailbox only (no smtp: configured): purges wait"
        assert res[74].blocked_why.get(why, 0) > 0, res[74].blocked_why
        st = run_acqd("status", "--state-dir", str(s.cfg.state_dir))
        assert f"blocked: {why}" in st.stdout, st.stdout + st.stderr
        assert mailbox.exists() and "will be deleted" in mailbox.read_text(), "the mailbox did not get the digest"
        assert not s.box.messages
        assert any(e.kind == "retention.failed" and "no smtp: configured" in (e.reason or "") for e in s.events)
        runner.mailer = build_mailer(s.cfg)  # smtp: configured (and reloaded): warned now, purged 14 days on
        res = await sweep_days(s, range(75, 89), runner)
        assert res[75].warned > 0 and all(r.purged == 0 for r in res.values()), res
        res = await sweep_days(s, range(89, 90), runner)
        assert res[89].purged > 0
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_warning_sent_in_the_sweep_that_moves_the_data_names_where_it_will_be(setup: Setup) -> None:
    """Found by an adversarial review (thirty-first session): a daemon stopped past both a move's date
    and a warning's (or a hold that ended after both) warned and moved in one sweep; the mail's
    "where:" named the tier the data left ten milliseconds later. It names where the data is then."""
    s = setup
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = make_runner(s, j, jexec, io)
        res = await sweep_days(s, range(50, 51), runner)  # the first sweep: day 50
        assert res[50].transitioned > 0 and res[50].warned > 0, res[50]
        bodies = [m.get_body(("plain",)).get_content() for _, m in s.box.messages]  # type: ignore[union-attr]
        assert bodies and all(str(s.capacity) in b for b in bodies), bodies
        assert not any(str(s.central) in b for b in bodies), bodies
        # the warnings are the moved files' own: not warned again the next day for a later date (they were
        # filed under the copies just moved away: a review of the thirty-third session's diff)
        sent = len(s.box.messages)
        res = await sweep_days(s, range(51, 52), runner)
        assert res[51].warned == 0 and len(s.box.messages) == sent, res[51]
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_warning_sent_in_a_sweep_whose_move_failed_names_where_the_data_is(setup: Setup) -> None:
    """Found by a stranger's review (thirty-third session): the warnings went out before the sweep's
    moves and named the move's tier; the moves failed (another object under each name there), so the
    mail sent the owners to a folder of other bytes, while their data, on central, was purged on the
    day. The moves go first now: the mail names the tier the data is on, and the foreign objects are
    neither replaced nor named."""
    s = setup
    foreign = {}
    for rel in FILES:
        if rel.endswith("_fractions.mrc"):
            p = s.capacity / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"another file's bytes")
            foreign[p] = p.read_bytes()
    res = await sweep_with_a_runner(s, range(50, 51))
    assert res[50].transitioned == 0 and res[50].failed >= len(foreign) and res[50].warned > 0, res[50]
    bodies = [m.get_body(("plain",)).get_content() for _, m in s.box.messages]  # type: ignore[union-attr]
    assert bodies and all(str(s.central) in b for b in bodies), bodies
    assert not any(str(s.capacity) in b for b in bodies), bodies
    assert all(p.read_bytes() == b for p, b in foreign.items())


async def test_a_file_on_two_tiers_is_counted_once_in_its_warning(setup: Setup) -> None:
    """Found by a stranger's review (thirty-third session): a move whose delete of the old copy failed
    left the file verified on both tiers; its warning said each of its files twice in the total (and in
    the subject). Both places are listed (both are deleted on the day), the files counted once."""
    from acqd.errors import PermanentError

    s = setup
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = make_runner(s, j, jexec, io)

        def refused(*_a: Any, **_k: Any) -> None:
            raise PermanentError("delete: permission denied")

        runner.tiers["central"].remove_any = refused  # type: ignore[method-assign]
        res = await sweep_days(s, range(20, 21), runner)
        assert res[20].transitioned == 0 and res[20].failed == 4, res[20]  # copied, the old copy not deleted
        await sweep_days(s, range(50, 51), runner)
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    [alice] = [m for to, m in s.box.messages if to == ["alice@lab.example"]]
    body = alice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert body.count("alice_apoferritin_0101: 2 file(s)") == 2, body  # on central and on capacity
    assert str(s.central) in body and str(s.capacity) in body, body
    assert "Total: 2 file(s)" in body and "[acqd krios] 2 file(s) of yours" in str(alice["Subject"]), body


async def test_a_move_of_a_copy_gone_from_its_tier_says_so(setup: Setup) -> None:
    """Found by a stranger's review (thirty-third session): a copy deleted from central before its move
    failed its first sweep with "path not found", and every later one with the new tier's path
    "missing", as if the trouble were there. Each sweep says the copy on central is not there, and
    nothing is moved or recorded."""
    s = setup
    gone = s.central / "bob_ribosome_0102" / "FoilHole_3_fractions.mrc"
    gone.unlink()
    res = await sweep_with_a_runner(s, range(20, 22))
    for day in (20, 21):
        [err] = [e for e in res[day].errors if "FoilHole_3" in e]
        assert "tier central" in err and str(gone) in err, (day, err)
    assert not (s.capacity / "bob_ribosome_0102" / "FoilHole_3_fractions.mrc").exists()


def test_a_daemon_whose_purge_warnings_reach_nobody_says_so_at_start(setup: Setup, tmp_path: Path) -> None:
    """Found by a stranger's review (twenty-sixth session): with no `smtp:`, the warnings before a
    purge go to the local mailbox (since the thirty-first session: not delivered, the purges wait);
    only `acqd check` said so, `acqd run` not a word. The daemon says it at start, as an error, naming
    the rules and the mailbox."""
    from tests.conftest import Background, wait_for

    doc = json.loads(setup.cfg_path.read_text())
    doc["smtp"] = None
    cfg = tmp_path / "nosmtp.yaml"
    cfg.write_text(json.dumps(doc))
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: "no `smtp:` is configured" in d.stderr(), 60, "the start's error", d)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    [line] = [x for x in err.splitlines() if "no `smtp:` is configured" in x]
    assert "ERROR retention: policy rule(s)" in line and "mailbox" in line, line


def test_plan_says_when_the_running_daemon_sweeps_by_another_policy(setup: Setup) -> None:
    """Found by a stranger's review (twenty-sixth session): `acqd plan` previews the policy file;
    edited without a reload (expiration raised), it showed no purge while the running daemon purged
    by the policy it had loaded. The plan says when the daemon sweeps by another policy than the
    file's, and how to apply the file; after the reload it says nothing."""
    import signal

    from tests.conftest import Background, run_acqd, wait_for

    s = setup
    assert s.cfg.policy is not None
    running = s.cfg.state_dir / "policy-running.json"
    d = Background("run", "--config", str(s.cfg_path))
    try:
        wait_for(running.exists, 60, "the daemon's note of its policy", d)
        r = run_acqd("plan", "--config", str(s.cfg_path))
        assert r.returncode == 0 and "sweeps by the policy as it was" not in r.stderr, r.stderr
        before = running.read_text()
        s.cfg.policy.write_text(POLICY.replace("expiration: {after: 60d}", "expiration: {after: 600d}"))
        assert "600d" in s.cfg.policy.read_text()
        r = run_acqd("plan", "--config", str(s.cfg_path))
        assert r.returncode == 0, r.stderr
        assert f"the running daemon (pid {d.proc.pid}) sweeps by the policy as it was" in r.stderr, r.stderr
        assert "systemctl reload acqd" in r.stderr, r.stderr
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: running.read_text() != before, 60, "the reload's note", d)
        r = run_acqd("plan", "--config", str(s.cfg_path))
        assert r.returncode == 0 and "sweeps by the policy as it was" not in r.stderr, r.stderr
    finally:
        code, err = d.terminate()
    assert code == 0, err
    r = run_acqd("plan", "--config", str(s.cfg_path))  # no daemon running: nothing to compare with
    assert r.returncode == 0 and "running daemon" not in r.stderr, r.stderr


async def test_a_broken_mail_template_holds_the_purges_and_says_so_and_never_stops_retention(
    setup: Setup, tmp_path: Path
) -> None:
    """A facility's own template in /etc/acqd/templates with a Jinja error: the sweep that was to warn
    raised it out of the retention loop, which ended for the daemon's life without a word (no log, no
    metric; a traceback at the stop): nobody was warned, nothing moved or purged until a restart (a
    stranger's first try). Each digest that cannot be made is a warning not delivered (its purges
    wait, an event and a metric per file, the template and line named), every sweep; mended, the
    warnings go out, and the purges follow them a warning period later."""
    import shutil

    from acqd.notify import templates_dirs

    s = setup
    broken = tmp_path / "templates"
    shutil.copytree(templates_dirs()[1], broken)
    (broken / "warning.subject.j2").write_text("[acqd {{ instrument }] {{ total_files }} file(s)\n")
    assert "warning.subject.j2, line 1" in (Digests(broken).problem(s.t0) or "")
    assert Digests().problem(s.t0) is None  # the shipped ones render
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = make_runner(s, j, jexec, io)
        runner.digests = Digests(broken)
        res = await sweep_days(s, range(46, 62), runner)
        assert s.box.messages == []
        assert all(r.digests == 0 and r.purged == 0 for r in res.values())
        assert res[46].failed == 3 and "warning.subject.j2, line 1" in res[46].errors[0], res[46].errors
        failed = [o for o in s.events if o.kind == "retention.failed"]
        assert failed and {o.stage for o in failed} == {"warn"}
        assert "warning mail template cannot be rendered" in (failed[0].reason or "")
        runner.digests = Digests()  # mended
        res = await sweep_days(s, range(62, 63), runner)
        assert res[62].digests == 3 and res[62].purged == 0
        res = await sweep_days(s, range(63, 76), runner)
        assert sum(r.purged for r in res.values()) == 0, "purged before a full warning period"
        res = await sweep_days(s, range(76, 78), runner)
        assert sum(r.purged for r in res.values()) > 0
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_an_unexpected_error_in_a_sweep_does_not_end_the_daemons_retention(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Any error out of a sweep (not only acqd's own: a template's, a library's) ended the retention
    task in silence; the daemon shipped on, never warning, moving or purging again. It is logged
    with its traceback, counted (`acqd_retention_failures_total{action="sweep"}`), and the next
    sweep runs; the daemon stops with 0."""
    s = setup
    assert s.cfg.policy is not None
    s.cfg.policy.write_text(POLICY + "  interval: 0.2s\n")
    calls: list[int] = []
    real = RetentionRunner.sweep

    async def flaky(self: RetentionRunner, now: Any = None) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a library's bug")
        return await real(self, now)

    monkeypatch.setattr(RetentionRunner, "sweep", flaky)
    daemon = Daemon(s.cfg)
    with caplog.at_level(logging.ERROR, logger="acqd"):
        task = asyncio.create_task(daemon.run(install_signals=False))
        try:
            for _ in range(300):
                if len(calls) >= 3:
                    break
                await asyncio.sleep(0.1)
            assert len(calls) >= 3, "retention stopped after the error"
        finally:
            daemon.stop()
            result = await asyncio.wait_for(task, 60)
    assert result.code == 0
    assert "retention sweep failed unexpectedly (retried at the next one): RuntimeError: a library's bug" in caplog.text
    value = daemon.registry.get_sample_value(
        "acqd_retention_failures_total", {"instrument": s.cfg.instrument, "action": "sweep"}
    )
    assert value == 1.0


def test_check_says_a_broken_mail_template_holds_the_purges(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`acqd check` validated the configuration and the policy but never the facility's own mail
    templates: a Jinja error was found by the first sweep that had to warn someone."""
    import acqd.notify
    from acqd.daemon import check
    from acqd.notify import templates_dirs

    assert not [w for w in check(setup.cfg, probe=False).warnings if "template" in w]
    etc = tmp_path / "etc-acqd"
    (etc / "templates").mkdir(parents=True)
    (etc / "templates" / "warning.txt.j2").write_text("Dear {{ recipient }},\n{{ no_such_name }}\n")
    monkeypatch.setattr(acqd.notify, "ETC", etc)
    [said] = [w for w in check(setup.cfg, probe=False).warnings if "template" in w]
    assert "warning.txt.j2" in said and "no_such_name" in said and "no purge is made" in said, said
    # broken only where no owner-page link is given (a daemon without `owner_page:` never gives one):
    # the check rendered the links' branch alone and said nothing (a stranger's review)
    shipped = (templates_dirs()[1] / "warning.txt.j2").read_text()
    assert "{% else %}ask {{ contact }}" in shipped
    (etc / "templates" / "warning.txt.j2").write_text(
        shipped.replace("{% else %}ask {{ contact }}", "{% else %}ask {{ contakt }}")
    )
    [said] = [w for w in check(setup.cfg, probe=False).warnings if "template" in w]
    assert "contakt" in said, said


async def test_the_hold_command_for_a_file_at_the_top_of_a_watch_root_works_as_pasted(tmp_path: Path) -> None:
    """A file written straight into the watch root (no session folder) was listed in the digest as
    session `.`, with `acqd hold . ...` to keep it, which is refused (`.` is the whole watch root) and
    a folder of the whole tier as where it is (a stranger's first try). Its line names the file and
    its copy, and its command keeps that file (and only it) as pasted."""
    from tests.conftest import run_acqd

    async for s in make_setup(tmp_path, [*FILES, "alice_top_fractions.mrc"]):
        jd = Journaled(s)
        try:
            runner = await jd.open()
            _alice, body, held = await _alices_digest(s, runner)
            lines = [shlex.split(ln) for ln in held]
            assert sorted(a[2] for a in lines) == ["alice_apoferritin_0101", "alice_top_fractions.mrc"], body
            assert "acqd hold ." not in body
            assert str(s.capacity / "alice_top_fractions.mrc") in body  # where its copy is: the file's
            [args] = [a for a in lines if a[2] == "alice_top_fractions.mrc"]
            r = run_acqd(*args[1:])
            assert r.returncode == 0 and "1 stored file(s)" in r.stdout, r
            res = await sweep_days(s, range(47, 76), runner)
        finally:
            await jd.shutdown()
        assert sum(r.purged for r in res.values()) == 4  # alice's session, bob's and carol's; not the held file
        assert (s.capacity / "alice_top_fractions.mrc").exists()
        assert not (s.capacity / "alice_apoferritin_0101/FoilHole_1_fractions.mrc").exists()


async def test_a_hold_command_for_a_name_like_an_option_works_as_pasted(setup: Setup) -> None:
    """A session (or a file at the top of a watch root) whose name starts with `-`: the digest's
    `acqd hold -x.tif ...` was refused as an unknown option. The name goes after `--`."""
    from tests.conftest import run_acqd

    s = setup
    jd = Journaled(s)
    try:
        runner = await jd.open()
        args = shlex.split(runner.hold_command("-carol_test_0103", s.t0 + 90 * DAY, "carol@lab.example"))
    finally:
        await jd.shutdown()
    assert args[-2:] == ["--", "-carol_test_0103"], args
    r = run_acqd(*args[1:])
    assert "No such option" not in r.stderr and "-carol_test_0103" in r.stdout + r.stderr, r


async def test_a_mail_a_server_took_for_some_recipients_only_is_not_delivered() -> None:
    """Found by a stranger's review (thirty-third session): a server that took one recipient and
    refused another answered without an error, and the warning was recorded as delivered to all. The
    refused recipients are said, and the mail counts as not delivered (retried, its purges wait)."""
    from email.message import EmailMessage

    from acqd.errors import TransientError
    from acqd.notify import SmtpMailer

    class Picky(Mailbox):
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
            if address.startswith("gone@"):
                return "550 5.1.1 no such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    box = Picky()
    port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        mailer = SmtpMailer("127.0.0.1", port, timeout=10)
        msg = EmailMessage()
        msg["From"], msg["Subject"] = "acqd@krios.lab.example", "t"
        msg["To"] = "alice@lab.example, gone@lab.example"
        msg.set_content("x")
        with pytest.raises(TransientError, match=r"refused recipient\(s\): gone@lab.example: 550"):
            await mailer.send(msg)
        del msg["To"]
        msg["To"] = "alice@lab.example"
        await mailer.send(msg)
        assert [to for to, _ in box.messages] == [["alice@lab.example"], ["alice@lab.example"]]
    finally:
        smtp.stop()
