"""The facility hub (`acqd hub`, issue 16): one retention for every instrument, over the catalog.
Two real daemons publish to a throwaway PostgreSQL, a real SMTP server (aiosmtpd) takes the
digests, real files sit on local-folder tiers; the hub runs as a child process with `--now` (the
clock it judges by) or as a service on the real clock."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from acqd.config import load_hub_config
from acqd.facility import CatalogStore
from acqd.hub import build_tiers, load_hub_policy, open_db
from acqd.journal import Journal, journal_path
from acqd.notify import Digests, SmtpMailer
from acqd.policy.model import DAY, Policy
from acqd.policy.planner import Action, Hold, Item, Warning_, plan
from acqd.retention import RetentionRunner, plan_from_journal
from tests import hubkit
from tests.conftest import REPO, Background, need, run_acqd, wait_for, write_config
from tests.hubkit import (
    LEASE_EXPIRED_SQL,
    PURGES_SQL,
    Mailbox,
    file_tiers,
    hub_sweep,
    ok,
    pg_rows,
    smtp_server,
)
from tests.servers import Postgres, free_port
from tests.test_policy import scenarios

POLICY = """\
apiVersion: acqd/v1
kind: RetentionPolicy
metadata: {name: facility}
spec:
  tiers: [central, capacity]
  owners:
    pattern: "^(?P<owner>[a-z]+)_"
    emails: {alice: alice@lab.example, bob: bob@lab.example}
    fallback: facility@lab.example
  rules:
    - name: long
      match: {glob: "*_long.mrc"}
      expiration: {after: 120d}
      warn: 14d
    - name: movies
      match: {glob: "*.mrc"}
      expiration: {after: 60d}
      warn: 14d
    - name: stacks
      match: {glob: "*.dat"}
      transitions: [{after: 14d, tier: capacity}]
  default: {name: keep}
"""

FILES = {
    "krios": ["alice_apo_0101/a_fractions.mrc", "alice_apo_0101/b_fractions.mrc", "bob_rib_0102/c_fractions.mrc"],
    "talos": ["alice_tomo_0103/d_fractions.mrc", "alice_tomo_0103/e_stack.dat", "alice_tomo_0103/f_long.mrc"],
}


@dataclass
class Facility:
    root: Path
    pg: Postgres
    url: str
    central: Path
    capacity: Path
    hub_yaml: Path
    box: Mailbox
    t0: float  # the latest verification time of the catalogued copies

    def hub(self, days: float, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return hub_sweep(self.hub_yaml, self.t0, days, *args, env=env)

    def q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return pg_rows(self.pg, self.url, sql, *args)

    def stored(self, inst: str, rel: str) -> Path:
        return self.central / inst / rel

    def purged(self) -> list[str]:
        """relpath of each 'retention.purged' in the hub's audit, duplicates kept."""
        return [r[2] for r in self.q(PURGES_SQL)]


def daemon_config(root: Path, inst: str, url: str, pg: Postgres, central: Path, capacity: Path, owner: str) -> Path:
    return hubkit.daemon_config(root, inst, url, pg, file_tiers(central, capacity), owner)


def hub_config(root: Path, url: str, pg: Postgres, central: Path, capacity: Path, smtp: int, extra: str = "") -> Path:
    return hubkit.hub_config(root, url, pg, file_tiers(central, capacity), smtp, extra)


def make_facility(root: Path, pg: Postgres, url: str, policy: str = POLICY, delay: float = 0.0) -> Iterator[Facility]:
    box = Mailbox(delay)
    with smtp_server(box) as port:
        central, capacity = root / "central", root / "capacity"
        for d in (central, capacity):
            d.mkdir()
        (root / "policy.yaml").write_text(policy)
        for i, (inst, names) in enumerate(FILES.items()):
            for j, rel in enumerate(names):
                p = root / inst / "acq" / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(bytes([i * 16 + j]) * (5000 + 100 * j))
            cfg = daemon_config(root, inst, url, pg, central, capacity, "hub")
            if i == 0:
                ok(run_acqd("catalog", "migrate", "--config", str(cfg)))
            ok(run_acqd("run", "--config", str(cfg), "--once"))
        fac = Facility(root, pg, url, central, capacity, hub_config(root, url, pg, central, capacity, port), box, 0.0)
        for tier in ("central", "capacity"):  # once, the shares mounted (the hub touches no unmarked local tier)
            ok(run_acqd("hub", "mark-tier", tier, "--config", str(fac.hub_yaml)))
        n = sum(len(v) for v in FILES.values())
        assert fac.q("SELECT count(*) FROM acqd.copies WHERE state = 'verified'")[0][0] == n
        fac.t0 = float(fac.q("SELECT extract(epoch FROM max(verified_at)) FROM acqd.copies")[0][0])
        yield fac


@pytest.fixture
def facility(pg_server: Postgres, catalog_db: str, tmp_path: Path) -> Iterator[Facility]:
    yield from make_facility(tmp_path, pg_server, catalog_db)


MOVIES = [("krios", "alice_apo_0101/a_fractions.mrc"), ("krios", "alice_apo_0101/b_fractions.mrc")]
MOVIES += [("krios", "bob_rib_0102/c_fractions.mrc"), ("talos", "alice_tomo_0103/d_fractions.mrc")]
LONG = ("talos", "alice_tomo_0103/f_long.mrc")


def test_one_digest_per_owner_across_instruments_and_no_purge_before_its_lead_time(facility: Facility) -> None:
    f = facility
    ok(f.hub(45))  # before any warning window: nothing
    assert f.box.messages == []
    ok(f.hub(47))
    alice, bob = f.box.to("alice@lab.example"), f.box.to("bob@lab.example")
    assert len(alice) == 1 and len(bob) == 1 and len(f.box.messages) == 2, [m["To"] for _, m in f.box.messages]
    text = alice[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "krios/alice_apo_0101" in text and "talos/alice_tomo_0103" in text, text
    assert "--hub" in text and "--instrument krios" in text  # the hold command goes to the catalog
    # the stack moved to capacity after 14 days: copied, verified, then deleted from central
    assert not f.stored("talos", "alice_tomo_0103/e_stack.dat").exists()
    assert (f.capacity / "talos" / "alice_tomo_0103/e_stack.dat").read_bytes() == bytes([17]) * 5100
    ok(f.hub(48))  # warned: no second digest while the date stands
    assert len(f.box.messages) == 2
    # warned on day 47 with 14 days' lead: the purge date is day 61, not the expiry (day 60)
    ok(f.hub(60.9))
    assert all(f.stored(i, r).exists() for i, r in MOVIES) and f.purged() == []
    ok(f.hub(61.1))
    assert not any(f.stored(i, r).exists() for i, r in MOVIES)
    assert f.stored(*LONG).exists()  # expires on day 120: not warned yet, never purged early
    assert sorted(f.purged()) == sorted(r for _, r in MOVIES)
    ok(f.hub(62))
    assert sorted(f.purged()) == sorted(r for _, r in MOVIES)  # nothing twice
    # the daemons' own rows are theirs: what the hub did is in its own tables
    assert f.q("SELECT count(*) FROM acqd.copies WHERE state = 'verified'")[0][0] == 6
    assert f.q("SELECT count(*) FROM acqd.hub_copies WHERE state = 'purged'")[0][0] == 4
    # usage counts what is stored after the hub's actions: the long movie on central, the stack on capacity
    doc = json.loads(ok(run_acqd("hub", "usage", "--json", "--config", str(f.hub_yaml))).stdout)
    assert {t["tier"]: (t["files"], t["bytes"]) for t in doc["tiers"]} == {"central": (1, 5200), "capacity": (1, 5100)}


def test_a_hub_move_after_the_warning_keeps_the_announced_purge(
    pg_server: Postgres, catalog_db: str, tmp_path: Path
) -> None:
    """Warned, then moved before the purge: the new copy had no warning of its own (a second mail,
    a later date, the purge put off: a stranger's review of the daemon's retention, the hub's the
    same). The warnings go with the file: no second digest, the purge on the day announced."""
    old = '      match: {glob: "*.mrc"}\n      expiration: {after: 60d}\n'
    moved = "transitions: [{after: 20d, tier: capacity}]\n      expiration: {after: 30d}"
    new = old.replace("expiration: {after: 60d}", moved)
    assert old in POLICY
    for f in make_facility(tmp_path, pg_server, catalog_db, POLICY.replace(old, new)):
        ok(f.hub(16.5))  # warned: the purge announced for day 30.5 (14 days' lead)
        mails = len(f.box.messages)
        assert mails == 2, [m["To"] for _, m in f.box.messages]
        ok(f.hub(21))  # moved to capacity
        assert all((f.capacity / i / r).exists() and not f.stored(i, r).exists() for i, r in MOVIES)
        ok(f.hub(30.4))
        assert f.purged() == [] and len(f.box.messages) == mails
        ok(f.hub(30.6))
        assert sorted(f.purged()) == sorted(r for _, r in MOVIES) and len(f.box.messages) == mails
        assert not any((f.capacity / i / r).exists() for i, r in MOVIES)


def test_a_hold_in_the_catalog_blocks_the_purge(facility: Facility) -> None:
    f = facility
    ok(f.hub(47))
    r = ok(
        run_acqd(
            "hold", "alice_apo_0101", "--hub", str(f.hub_yaml), "--instrument", "krios",
            "--until", "2999-01-01", "--reason", "paper revision",
        )
    )  # fmt: skip
    assert "2 stored file(s) in 1 session(s)" in r.stdout, r.stdout
    ok(
        run_acqd(
            "hold", "alice_apo_0101", "--hub", str(f.hub_yaml), "--instrument", "krios",
            "--until", "2999-01-01", "--reason", "paper revision",
        )
    )  # fmt: skip
    r = ok(run_acqd("hold", "--list", "--hub", str(f.hub_yaml)))
    assert "krios/alice_apo_0101" in r.stdout and "paper revision" in r.stdout
    assert r.stdout.count("alice_apo_0101") == 1, r.stdout  # the same hold asked twice is one hold
    daemon = f.root / "krios.yaml"  # a hold in the journal of a daemon whose retention is the hub's: refused
    r = run_acqd("hold", "alice_apo_0101", "--config", str(daemon), "--until", "2999-01-01", "--reason", "x")
    assert r.returncode == 78 and "acqd hold TARGET --hub" in r.stderr and "--instrument krios" in r.stderr, r.stderr
    bad = run_acqd("hold", "no_such_session", "--hub", str(f.hub_yaml), "--until", "2999-01-01", "--reason", "x")
    assert bad.returncode == 1 and "nothing catalogued matches" in bad.stderr and "\n" not in bad.stderr.strip()
    now = datetime.fromtimestamp(f.t0 + 62 * DAY, UTC).isoformat()
    r = ok(run_acqd("hub", "plan", "--config", str(f.hub_yaml), "--now", now, "--json"))
    kinds = {(a["instrument"], a["relpath"]): (a["kind"], a["reason"]) for a in json.loads(r.stdout)["actions"]}
    kind, why = kinds[("krios", "alice_apo_0101/a_fractions.mrc")]
    assert kind == "blocked" and why == "purge held back: hold until 2999-01-02 12:00 UTC: paper revision", why
    assert kinds[("krios", "bob_rib_0102/c_fractions.mrc")][0] == "purge"
    assert all(f.stored(i, rel).exists() for i, rel in MOVIES)  # a dry run
    ok(f.hub(62))
    assert f.stored("krios", "alice_apo_0101/a_fractions.mrc").exists()
    assert f.stored("krios", "alice_apo_0101/b_fractions.mrc").exists()
    assert sorted(f.purged()) == ["alice_tomo_0103/d_fractions.mrc", "bob_rib_0102/c_fractions.mrc"]
    blocked = f.q("SELECT count(*) FROM acqd.hub_audit WHERE action LIKE 'retention.%.held'")
    assert blocked == [(0,)]  # the planner blocked them: not even attempted


def test_a_once_sweep_longer_than_its_lease_renews_it(pg_server: Postgres, catalog_db: str, tmp_path: Path) -> None:
    """`acqd hub --once` keeps its lease while it sweeps: with a 2 s lease and a mail server that
    takes 1.5 s per digest, the sweep outlasts the lease's margin and still finishes."""
    gen = make_facility(tmp_path, pg_server, catalog_db, delay=1.5)
    f = next(gen)
    try:
        f.hub_yaml.write_text(f.hub_yaml.read_text() + "lease: {ttl: 2s}\n")
        r = ok(f.hub(47))
        assert "no longer this replica's" not in r.stderr, r.stderr
        assert len(f.box.messages) == 2 and f.q("SELECT count(*) FROM acqd.hub_warnings") == [(4,)]
    finally:
        gen.close()


def test_daemons_learn_what_the_hub_did_to_their_copies(facility: Facility) -> None:
    """The hub purges four movies and moves the stack; each daemon, at its next contact with the
    catalog, records that in its journal: `verify` no longer calls the purged copies missing,
    `restore` finds the stack on its new tier, and the hub never takes the daemon's row for the
    stack's new copy in as a second item."""
    f = facility
    ok(f.hub(47))
    ok(f.hub(62))
    copies = "SELECT c.tier, c.dest, c.state FROM copies c ORDER BY c.tier, c.dest"
    for inst in FILES:  # before: the journals still call every copy verified
        r = run_acqd("verify", "--config", str(f.root / f"{inst}.yaml"))
        assert r.returncode == 1 and "missing" in r.stdout + r.stderr, r.stdout + r.stderr
    krios = f.root / "krios.yaml"  # the hub's actions read back in pages of two (three purges)
    krios.write_text(krios.read_text().replace("connect_timeout: 3s}", "connect_timeout: 3s, batch: 2}"))
    assert "batch: 2" in krios.read_text()
    for inst in FILES:
        ok(run_acqd("run", "--config", str(f.root / f"{inst}.yaml"), "--once"))
    j = Journal(journal_path(f.root / "krios" / "state"), readonly=True)
    try:
        assert j._db.execute("SELECT state, count(*) FROM copies GROUP BY 1").fetchall() == [("purged", 3)]
    finally:
        j.close()
    j = Journal(journal_path(f.root / "talos" / "state"), readonly=True)
    try:
        rows = j._db.execute(copies).fetchall()
        audit = j._db.execute("SELECT action FROM audit WHERE action LIKE 'hub.%' ORDER BY id").fetchall()
    finally:
        j.close()
    assert rows == [
        ("capacity", "talos/alice_tomo_0103/e_stack.dat", "verified"),
        ("central", "talos/alice_tomo_0103/d_fractions.mrc", "purged"),
        ("central", "talos/alice_tomo_0103/e_stack.dat", "moved"),
        ("central", "talos/alice_tomo_0103/f_long.mrc", "verified"),
    ]
    assert sorted(audit) == [("hub.moved",), ("hub.purged",)]
    for inst in FILES:
        r = ok(run_acqd("verify", "--config", str(f.root / f"{inst}.yaml")))
    out = f.root / "restored.dat"
    ok(run_acqd("restore", "--config", str(f.root / "talos.yaml"), "alice_tomo_0103/e_stack.dat", str(out)))
    assert out.read_bytes() == bytes([17]) * 5100
    # the catalog's daemon rows agree with the hub's now; nothing is taken in, warned or purged again
    states = f.q("SELECT tier, state, count(*) FROM acqd.copies GROUP BY 1, 2 ORDER BY 1, 2")
    assert states == [
        ("capacity", "verified", 1),
        ("central", "moved", 1),
        ("central", "purged", 4),
        ("central", "verified", 1),
    ]
    before = f.q("SELECT id, state FROM acqd.hub_copies ORDER BY id")
    r = ok(f.hub(63))
    assert f.q("SELECT id, state FROM acqd.hub_copies ORDER BY id") == before
    assert "0 moved, 0 purged" in r.stderr and "does not manage" not in r.stderr, r.stderr
    assert len(f.box.messages) == 2 and sorted(f.purged()) == sorted(r for _, r in MOVIES)
    # a second look changes nothing (each hub action applied once)
    ok(run_acqd("run", "--config", str(f.root / "talos.yaml"), "--once"))
    j = Journal(journal_path(f.root / "talos" / "state"), readonly=True)
    try:
        assert j._db.execute(copies).fetchall() == rows
        assert j._db.execute("SELECT count(*) FROM audit WHERE action LIKE 'hub.%'").fetchone() == (2,)
    finally:
        j.close()


def test_a_hub_killed_mid_sweep_purges_nothing_twice_or_early(facility: Facility) -> None:
    f = facility
    f.hub_yaml.write_text(f.hub_yaml.read_text() + "lease: {ttl: 2s}\n")
    ok(f.hub(47))
    env = {**os.environ, "ACQD_CRASH_AT": "retention_after_delete:2"}
    r = f.hub(62, env=env)
    assert r.returncode == -9, r.stderr  # SIGKILLed after its second delete, before recording it
    gone = [m for m in MOVIES if not f.stored(*m).exists()]
    assert len(gone) == 2 and len(f.purged()) == 1
    open_actions = f.q("SELECT kind FROM acqd.hub_actions WHERE done IS NULL")
    assert open_actions == [("purge",)]  # begun, never finished
    # the dead process's lease must expire before another process (a new holder) may act
    wait_for(lambda: f.q(LEASE_EXPIRED_SQL) == [(True,)], 60, "the lease to expire")
    ok(f.hub(62))
    assert not any(f.stored(i, r).exists() for i, r in MOVIES) and f.stored(*LONG).exists()
    assert sorted(f.purged()) == sorted(r for _, r in MOVIES)  # each once: the interrupted one recorded, not redone
    assert f.q("SELECT count(*) FROM acqd.hub_copies WHERE state = 'missing'") == [(0,)]
    resumed = f.q("SELECT count(*) FROM acqd.hub_audit WHERE action = 'retention.purged' AND detail ? 'resumed'")
    assert resumed == [(1,)]
    assert f.q("SELECT count(*) FROM acqd.hub_actions WHERE done IS NULL") == [(0,)]


async def test_a_replica_that_lost_the_lease_deletes_nothing(facility: Facility) -> None:
    """The fencing token: a hub whose lease another replica took (it paused past its expiry) stops
    at its next step instead of deleting what the new holder now decides on."""
    f = facility
    ok(f.hub(47))
    cfg = load_hub_config(f.hub_yaml)
    db = open_db(cfg, "replica-a")
    dbx, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    try:
        assert db.acquire()
        runner = RetentionRunner(
            policy=load_hub_policy(cfg),
            store=CatalogStore(db, {n: t.url for n, t in cfg.tiers.items()}),
            jexec=dbx,
            io=io,
            tiers=build_tiers(cfg),
            mailer=SmtpMailer("127.0.0.1", 1),
            digests=Digests(),
            reporter=type("R", (), {"outcome": lambda self, o: None})(),
            instrument="EM facility",
            sender="hub@x",
            contact="staff",
        )
        actions, by_copy, t = await runner.plan(f.t0 + 62 * DAY)
        assert sum(a.kind == "purge" for a in actions) == 4
        f.q("UPDATE acqd.hub_lease SET holder = 'replica-b', token = token + 1 RETURNING token")
        res = await runner.execute(actions, by_copy, t)
    finally:
        dbx.shutdown()
        io.shutdown()
        db.close()
    assert res.purged == 0 and "no longer this replica's" in res.suspended
    assert all(f.stored(i, r).exists() for i, r in MOVIES)
    assert f.q("SELECT count(*) FROM acqd.hub_actions WHERE kind = 'purge'") == [(0,)]


SHORT = POLICY.replace("after: 60d}\n      warn: 14d", "after: 3s}\n      warn: 1s").replace(
    "after: 120d", "after: 1000d"
)


def metric(port: int, name: str) -> float | None:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_two_hubs_one_acts_and_the_other_takes_over(pg_server: Postgres, catalog_db: str, tmp_path: Path) -> None:
    """Two replicas on the real clock, a mail server that takes a second per message (sweeps
    overlap): one digest per owner, each purge once, and the lease moves when its holder dies."""
    gen = make_facility(tmp_path, pg_server, catalog_db, SHORT, delay=1.0)
    f = next(gen)
    try:
        # every movie due for its warning (verified 2 s before) when the hubs start: one digest per owner
        time.sleep(max(0.0, f.t0 + 2.5 - time.time()))
        ports = [free_port(), free_port()]
        hubs = []
        for i, port in enumerate(ports):
            text = f.hub_yaml.read_text().replace("metrics: {enabled: false}", f"metrics: {{bind: '127.0.0.1:{port}'}}")
            cfg = write_config(tmp_path / f"hub{i}.yaml", text + "interval: 0.2s\nlease: {ttl: 3s}\n")
            hubs.append(Background("hub", "--config", str(cfg)))
        try:
            wait_for(lambda: len(f.purged()) == 4, 120, "the four movies purged", hubs[0])
            lease = [metric(p, "acqd_hub_lease_held") for p in ports]
            assert sorted(lease) == [0.0, 1.0], lease
            assert all(0 < (metric(p, "acqd_hub_start_time_seconds") or 0) <= time.time() for p in ports)
            assert len(f.box.to("alice@lab.example")) == 1 and len(f.box.to("bob@lab.example")) == 1
            assert sorted(f.purged()) == sorted(r for _, r in MOVIES)
            actors = f.q("SELECT DISTINCT holder FROM acqd.hub_audit")
            assert len(actors) == 1, actors
            leader = lease.index(1.0)
            assert metric(ports[leader], "acqd_hub_purges_total") == 4.0
            # usage and fleet health on the same port (acqd.overview), from the catalog
            body = urllib.request.urlopen(f"http://127.0.0.1:{ports[leader]}/metrics", timeout=30).read().decode()
            assert "acqd_facility_catalog_up 1.0" in body, body
            assert 'acqd_fleet_backlog_files{instrument="krios"}' in body, body
            wait_for(lambda: metric(ports[leader], "acqd_facility_quarantined_files") is not None or
                     "acqd_facility_usage_age_seconds" in urllib.request.urlopen(
                         f"http://127.0.0.1:{ports[leader]}/metrics", timeout=30).read().decode(),
                     60, "the first usage pass")  # fmt: skip
            hubs[leader].kill()
            other = 1 - leader
            wait_for(lambda: metric(ports[other], "acqd_hub_lease_held") == 1.0, 60, "the standby takes the lease")
            assert "lease 'retention' taken" in hubs[other].stderr()
            code, err = hubs[other].terminate()  # a clean stop: the lease given up
            assert code == 0 and "lease 'retention' given up" in err, err
        finally:
            for h in hubs:
                h.kill()
        assert len(f.box.messages) == 2 and sorted(f.purged()) == sorted(r for _, r in MOVIES)
    finally:
        gen.close()


def test_a_daemon_whose_retention_the_hub_owns_never_sweeps(
    pg_server: Postgres, catalog_db: str, tmp_path: Path
) -> None:
    """The same daemon and policy (a sweep every 0.2 s): with `retention: {owner: daemon}` (the
    control, its own state) it sweeps; with `owner: hub` it never does, over fifteen intervals."""
    central, capacity = tmp_path / "central", tmp_path / "capacity"
    for d in (central, capacity):
        d.mkdir()
    (tmp_path / "policy.yaml").write_text(SHORT + "  interval: 0.2s\n")

    def swept(state: Path) -> bool:
        j = Journal(journal_path(state), readonly=True)
        try:
            return bool(j._db.execute("SELECT 1 FROM meta WHERE key = 'retention_clock'").fetchone())
        finally:
            j.close()

    for inst, owner in (("control", "daemon"), ("krios", "hub")):
        (tmp_path / inst / "acq" / "alice_x").mkdir(parents=True)
        (tmp_path / inst / "acq" / "alice_x" / "m.mrc").write_bytes(b"x" * 5000)
        state = tmp_path / inst / "state"
        cfg = daemon_config(tmp_path, inst, catalog_db, pg_server, central, capacity, owner)
        if owner == "daemon":
            ok(run_acqd("catalog", "migrate", "--config", str(cfg)))
        d = Background("run", "--config", str(cfg))
        try:
            wait_for(lambda d=d: "acqd started" in d.stderr(), 60, "a start", d)
            if owner == "daemon":  # the control sweeps within a few intervals
                wait_for(lambda state=state: swept(state), 60, "a sweep", d)
            else:
                deadline = time.monotonic() + 3.0  # fifteen of its policy's intervals
                while time.monotonic() < deadline:
                    assert not swept(state), "a daemon whose retention the hub owns swept"
                    time.sleep(0.1)
                assert "owned by the facility hub" in d.stderr()
        finally:
            code, err = d.terminate()
        assert code == 0, err
        # and its `acqd plan` (the journal lacks the catalog's holds and warnings) sends to the hub's
        r = run_acqd("plan", "--config", str(cfg))
        if owner == "hub":
            assert r.returncode == 78 and "acqd hub plan" in r.stderr and r.stdout == "", r.stderr
        else:
            assert r.returncode == 0, r.stderr


def test_hub_config_errors_are_one_line(tmp_path: Path, pg_server: Postgres, catalog_db: str) -> None:
    cfg = write_config(tmp_path / "acqd.yaml", "instrument: x\nstate_dir: s\nwatch: [{path: /tmp/acq}]\n"
                       "tiers: {c: {url: 'file:///tmp/c'}}\nretention: {owner: hub}\n")  # fmt: skip
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 78 and "needs a `catalog:` section" in r.stderr, r.stderr
    (tmp_path / "policy.yaml").write_text(POLICY)
    hub = hub_config(tmp_path, catalog_db, pg_server, tmp_path / "c", tmp_path / "d", 25)
    r = run_acqd("hub", "--config", str(hub), "--once")
    assert r.returncode == 1 and "schema is at version 0" in r.stderr and "acqd catalog migrate" in r.stderr
    r = run_acqd("hub", "--config", str(hub), "--now", "2030-01-01")
    assert r.returncode == 2 and "--now needs --once" in r.stderr
    hub.write_text(hub.read_text().replace("capacity:", "cap:"))
    r = run_acqd("hub", "--config", str(hub), "--once")
    assert r.returncode == 78 and "tier(s) capacity not in hub.yaml" in r.stderr, r.stderr


def test_the_hub_unit_verifies_cleanly_and_is_hardened(tmp_path: Path) -> None:
    """deploy/systemd/acqd-hub.service: `systemd-analyze verify` silent, and at least as hardened as
    the daemon's unit (no capabilities at all: the hub only reads and deletes files and talks TCP)."""
    sa = need("systemd-analyze")
    unit = (REPO / "deploy" / "systemd" / "acqd-hub.service").read_text()
    assert "Type=notify" in unit and "RestartPreventExitStatus=78" in unit and "acqd hub --config" in unit
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["CapabilityBoundingSet"] == "" and settings["NoNewPrivileges"] == "yes"
    acqd_bin = REPO / ".venv" / "bin" / "acqd"
    if not acqd_bin.exists():
        acqd_bin = Path(need("acqd", "the installed console script"))
    local = tmp_path / "acqd-hub.service"
    local.write_text(unit.replace("/usr/local/bin/acqd", str(acqd_bin)))
    r = subprocess.run([sa, "verify", str(local)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    r = subprocess.run([sa, "security", "--offline=yes", str(local)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for acqd-hub.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 1.2, r.stdout


# --- the planner's properties, through the catalog ------------------------------------------------


@pytest.fixture
def hub_store(pg_server: Postgres, catalog_db: str, tmp_path: Path) -> Iterator[tuple[CatalogStore, Postgres, str]]:
    cfg = daemon_config(tmp_path, "krios", catalog_db, pg_server, tmp_path / "c", tmp_path / "d", "hub")
    ok(run_acqd("catalog", "migrate", "--config", str(cfg)))
    (tmp_path / "policy.yaml").write_text(POLICY)
    hub = load_hub_config(hub_config(tmp_path, catalog_db, pg_server, tmp_path / "c", tmp_path / "d", 25))
    db = open_db(hub, "property")
    assert db.acquire()
    try:
        yield CatalogStore(db, {n: t.url for n, t in hub.tiers.items()}), pg_server, catalog_db
    finally:
        db.close()


def _load(pg: Postgres, url: str, tier_url: str, items: list[Item], holds: list[Hold], ws: list[Warning_]) -> None:
    """The scenario as the catalog holds it: the daemon's rows, the hub's copies (ids = the items'),
    its delivered warnings and the holds."""
    with pg.connect(url.rpartition("/")[2]) as c, c.transaction():
        c.execute("TRUNCATE acqd.files, acqd.copies, acqd.hub_copies, acqd.hub_warnings, acqd.holds CASCADE")
        for it in items:
            c.execute(
                "INSERT INTO acqd.files VALUES ('krios', 'j', %s, '/acq', %s, 1, true, 'verified', NULL, %s, 0,"
                " 'x', %s, %s, now(), now(), 1)",
                (it.id, it.relpath, it.size, it.detector, it.session),
            )
            c.execute(
                "INSERT INTO acqd.copies VALUES ('krios', 'j', %s, %s, 'central', %s, %s, 'copy', 'none', %s, %s,"
                " 'x', NULL, 'verified', now(), to_timestamp(%s), 1)",
                (it.id, it.id, f"{tier_url}/{it.relpath}", it.relpath, it.size, it.size, it.verified_at),
            )
            c.execute(
                "INSERT INTO acqd.hub_copies VALUES (%s, 'krios', 'j', %s, %s, 'central', %s, 'copy', 'none', %s, %s,"
                " 'x', %s, 'verified', true, 0)",
                (it.id, it.id, it.id, it.relpath, it.size, it.size, it.verified_at),
            )
        for w in ws:
            c.execute(
                "INSERT INTO acqd.hub_warnings (copy, recipient, purge_at, sent_at) VALUES (%s, %s, %s, %s)",
                (w.item_id, w.recipient, w.purge_at, w.sent_at),
            )
        for h in holds:
            c.execute(
                "INSERT INTO acqd.holds (target, until, reason, created) VALUES (%s, %s, %s, 0)",
                (h.target, h.until, h.reason),
            )


def _key(a: Action) -> tuple[Any, ...]:
    return (a.kind, a.item.id, a.rule, a.reason, a.at, a.tier, a.recipients)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sc=scenarios())
def test_the_planner_over_the_catalog_never_purges_out_of_policy(
    hub_store: tuple[CatalogStore, Postgres, str], sc: tuple[Policy, float, list[Item], list[Hold], list[Warning_]]
) -> None:
    """tests/test_policy.py's scenarios, written to the catalog and planned from it as the hub
    does (streamed in batches of 4 copies): the same actions, in the same order, as the planner
    given the values directly, hence the same guarantees (a delivered warning its lead time old,
    never under a hold, within the caps), checked again."""
    store, pg, url = hub_store
    assert store.db.acquire()  # renewed per example: a long shrink outlives a lease
    pol, now, items, holds, warnings = sc
    _load(pg, url, store.tiers["central"], items, holds, warnings)
    # streamed from the catalog's cursor 4 rows at a time: the caps carried from batch to batch
    from_catalog, _ = plan_from_journal(store, pol, now, batch=4)
    direct = plan(now, items, pol, holds, warnings)
    assert [_key(a) for a in from_catalog] == [_key(a) for a in direct]
    rule = pol.spec.rules[0]
    assert rule.expiration is not None
    purges = [a for a in from_catalog if a.kind == "purge"]
    for a in purges:
        ws = [w for w in warnings if w.item_id == a.item.id]
        assert any(w.sent_at + rule.warn <= now and w.purge_at <= now for w in ws)
        assert now >= a.item.verified_at + rule.expiration.after
        assert not any(h.covers(a.item, now) for h in holds)
    assert len(purges) <= pol.spec.caps.maxItemsPerSweep
    assert sum(a.item.size for a in purges) <= pol.spec.caps.maxBytesPerSweep


def test_the_hub_sweep_streams_the_catalog_and_never_holds_it(hub_store: tuple[CatalogStore, Postgres, str]) -> None:
    """The hub's plan reads the copies it manages from a server-side cursor in batches (the
    server's own statement log shows one FETCH per batch, each followed by that batch's warnings),
    holds one batch at a time (Python's peak allocation is a fraction of what one batch of
    everything takes), and decides exactly what the planner does over everything at once, the
    purge cap counted across batches."""
    import tracemalloc

    store, pg, url = hub_store
    pol = Policy.model_validate(__import__("yaml").safe_load(POLICY + "  caps: {maxItemsPerSweep: 10}\n"))
    now, n, batch = 1000 * DAY, 3000, 40

    def kept(i: int) -> bool:  # *.txt: the policy keeps them
        return i % 100 >= 2 and i % 3 == 2

    def age(i: int) -> float:  # 1%: purgeable (61-70 days), 1%: to warn (47-57), the other movies young
        if i % 100 < 2:
            return (61 + 9 * i / n) if i % 100 == 0 else (47 + 10 * i / n)
        return 80 * i / n if kept(i) else 40 * i / n  # kept files of every age, between the others

    def name(i: int) -> str:
        return f"f{i}.txt" if kept(i) else f"f{i}.mrc"

    items = [
        Item(
            i,
            f"{'alice' if i % 3 else 'bob'}_s{i // 100:02d}/{name(i)}",
            f"{'alice' if i % 3 else 'bob'}_s{i // 100:02d}",
            "gatan-k3",
            "central",
            1000 + i,
            now - age(i) * DAY,
        )
        for i in range(n)
    ]
    warnings = [  # each announced its expiry, 14 days before it (one never was)
        Warning_(i, items[i].verified_at + 60 * DAY, items[i].verified_at + 46 * DAY)
        for i in range(0, n, 100)
        if i != 1500
    ]
    holds = [Hold("bob_s02", now + 5 * DAY, "paper")]
    _load(pg, url, store.tiers["central"], items, holds, warnings)
    db_name = url.rpartition("/")[2]
    with pg.connect(db_name) as c:
        c.execute(f"ALTER DATABASE \"{db_name}\" SET log_statement = 'all'")
    store.db.close()  # the next connection logs every statement
    mark = pg.log.stat().st_size

    tracemalloc.start()
    try:
        streamed, rows = plan_from_journal(store, pol, now, batch=batch)
        _, peak_streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole, _ = plan_from_journal(store, pol, now, batch=n)  # one batch: every copy at once
        _, peak_whole = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        with pg.connect(db_name) as c:
            c.execute(f'ALTER DATABASE "{db_name}" RESET log_statement')

    direct = plan(now, items, pol, holds, warnings)
    assert [_key(a) for a in streamed] == [_key(a) for a in direct] == [_key(a) for a in whole]
    kinds = [a.kind for a in direct]
    # 29 purgeable, spread over the batches: the cap of 10 holds across them, 19 wait (and one hold)
    assert kinds.count("purge") == 10 and kinds.count("warn") == 30 and kinds.count("blocked") == 20, kinds
    assert sorted(rows) == sorted(a.item.id for a in direct if a.kind != "blocked")  # rows of these only
    assert store.count == n

    with pg.log.open() as f:
        f.seek(mark)
        log = [line for line in f.read().splitlines() if re.search(r"LOG:  (statement|execute [^:]*):", line)]
    fetch = f'FETCH FORWARD {batch} FROM "acqd_hub_items"'
    fetches = [i for i, line in enumerate(log) if fetch in line]
    assert len(fetches) == n // batch + 1, log[:20]  # the last one finds the cursor at its end
    for i in fetches[:-1]:  # each batch's rows and warnings are read by id right after it, before the next
        assert "FROM unnest(" in log[i + 1] and "FROM acqd.hub_warnings" in log[i + 2], log[i : i + 3]
    assert any(f'FETCH FORWARD {n} FROM "acqd_hub_items"' in line for line in log)
    # held one batch at a time: the whole catalog's rows never were in memory at once
    assert peak_streamed * 4 < peak_whole, (peak_streamed, peak_whole)


def test_a_copy_elsewhere_is_not_the_hubs(facility: Facility) -> None:
    """A catalogued copy whose recorded URL is not the hub's tier URL and its name (a daemon whose
    `central` is another storage) is never warned about, moved or purged by the hub: counted, said."""
    f = facility
    elsewhere = "file:///elsewhere/krios/bob_rib_0102/c_fractions.mrc"
    f.q("UPDATE acqd.copies SET url = %s WHERE dest LIKE %s RETURNING 1", elsewhere, "%/bob_rib_0102/%")
    ok(f.hub(47))
    r = ok(f.hub(62))
    assert "1 verified catalogued copies are on tiers or URLs the hub does not manage" in r.stderr, r.stderr
    assert f.box.to("bob@lab.example") == []
    assert f.stored("krios", "bob_rib_0102/c_fractions.mrc").exists()
    assert sorted(f.purged()) == sorted(r for _, r in MOVIES if not r.startswith("bob"))


def test_a_clock_jump_suspends_the_hubs_purges_until_acknowledged(facility: Facility) -> None:
    """The clock guard's state lives in the catalog: a wall clock 13 days ahead of the hub's
    trusted calendar suspends purges; `acqd hub ack-clock` lifts it at the next sweep."""
    f = facility
    r = run_acqd("hub", "ack-clock", "--config", str(f.hub_yaml), "--reason", "x")
    assert r.returncode == 1 and "nothing to acknowledge" in r.stderr, r.stderr
    ok(f.hub(47))
    doc = f.q("SELECT value FROM acqd.hub_state WHERE key = 'retention_clock'")[0][0]
    doc["anchor"][0] -= 13 * DAY  # as if the wall clock had read 13 days behind so far
    f.q("UPDATE acqd.hub_state SET value = %s::jsonb WHERE key = 'retention_clock' RETURNING 1", json.dumps(doc))
    r = ok(f.hub(62))
    assert "jumped forward by 13.0 days" in r.stderr, r.stderr
    assert f.purged() == [] and all(f.stored(i, rel).exists() for i, rel in MOVIES)
    ok(run_acqd("hub", "ack-clock", "--config", str(f.hub_yaml), "--reason", "NTP was down"))
    ok(f.hub(62))
    assert sorted(f.purged()) == sorted(rel for _, rel in MOVIES)
    acks = f.q("SELECT count(*) FROM acqd.hub_audit WHERE action = 'retention.clock.acknowledged'")
    assert acks == [(1,)]


def test_a_hub_killed_mid_transition_records_the_move_once(facility: Facility) -> None:
    """SIGKILL after a transition deleted the old copy (the new one verified and recorded) and
    before the old copy was recorded as moved: the restart checks the new copy and records the move."""
    f = facility
    f.hub_yaml.write_text(f.hub_yaml.read_text() + "lease: {ttl: 2s}\n")
    stack = ("talos", "alice_tomo_0103/e_stack.dat")
    r = f.hub(20, env={**os.environ, "ACQD_CRASH_AT": "retention_after_delete:1"})
    assert r.returncode == -9, r.stderr
    assert not f.stored(*stack).exists() and (f.capacity / stack[0] / stack[1]).exists()
    wait_for(lambda: f.q(LEASE_EXPIRED_SQL) == [(True,)], 60, "the lease to expire")
    r = ok(f.hub(20))
    assert "failed" not in r.stderr.replace("0 failed", ""), r.stderr
    rows = f.q("SELECT tier, state, origin FROM acqd.hub_copies WHERE dest LIKE '%e_stack.dat' ORDER BY id")
    assert rows == [("central", "moved", True), ("capacity", "verified", False)]
    moved = f.q("SELECT detail FROM acqd.hub_audit WHERE action = 'retention.transitioned'")
    assert len(moved) == 1 and moved[0][0].get("resumed") is True
    assert (f.capacity / stack[0] / stack[1]).read_bytes() == bytes([17]) * 5100


def test_a_hold_in_a_daemons_journal_keeps_its_session_from_the_hub_too(
    pg_server: Postgres, catalog_db: str, tmp_path: Path
) -> None:
    """A daemon that publishes to the catalog and keeps retention itself (`retention: {owner:
    daemon}`, the default) takes holds in its journal: `acqd hold --config` accepts them. The hub
    took in every verified copy on its tiers whatever the daemon's retention owner, planned it with
    the catalog's holds only, and purged the held session: two retention processes acted on one
    copy, and the owner's hold protected nothing. Now the hub takes in only the copies of journals
    that hand retention to it (found by an adversarial review, eighth session)."""
    central, capacity = tmp_path / "central", tmp_path / "capacity"
    for d in (central, capacity):
        d.mkdir()
    (tmp_path / "policy.yaml").write_text(POLICY)
    rels = ["alice_apo_0101/a_fractions.mrc", "bob_rib_0102/c_fractions.mrc"]
    for i, rel in enumerate(rels):
        p = tmp_path / "krios" / "acq" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]) * 5000)
    box = Mailbox(0.0)
    with smtp_server(box) as port:
        cfg = hubkit.daemon_config(tmp_path, "krios", catalog_db, pg_server, file_tiers(central, capacity), "daemon")
        ok(run_acqd("catalog", "migrate", "--config", str(cfg)))
        ok(run_acqd("run", "--config", str(cfg), "--once"))
        r = ok(run_acqd("hold", "alice_apo_0101", "--config", str(cfg), "--until", "2999-01-01", "--reason", "paper"))
        assert "held alice_apo_0101" in r.stdout
        hub_yaml = hubkit.hub_config(tmp_path, catalog_db, pg_server, file_tiers(central, capacity), port)
        t0 = float(pg_rows(pg_server, catalog_db, "SELECT extract(epoch FROM max(verified_at)) FROM acqd.copies")[0][0])
        ok(hub_sweep(hub_yaml, t0, 47))
        ok(hub_sweep(hub_yaml, t0, 62))
        managed = pg_rows(pg_server, catalog_db, "SELECT count(*) FROM acqd.hub_copies")[0][0]
        owners = pg_rows(pg_server, catalog_db, "SELECT retention_owner FROM acqd.journals")
    assert owners == [("daemon",)]  # the daemon says who runs its retention
    assert managed == 0  # none of its copies is the hub's
    assert (central / "krios" / rels[0]).exists(), "the hub purged a session held in the daemon's journal"
    assert (central / "krios" / rels[1]).exists()  # the daemon's own sweeps purge it, not the hub


def test_the_hub_never_moves_onto_a_capacity_share_that_is_not_mounted(facility: Facility) -> None:
    """The hub keeps no claims. With the capacity share unmounted on the hub's host (its mount point
    an empty folder), a transition copied the stack into the mount point on the local disk, verified
    it there and deleted the central copy: hidden once the share mounts again, the only copy. A
    local tier whose folder is empty (or missing) while the catalog has copies there is now taken
    for a share not mounted, and so is one without the marker `acqd hub mark-tier` put there (a mount
    point with a note in it is not empty): the move fails, is retried, and happens once the share is back."""
    f = facility
    ok(f.hub(15))  # the first stack moves to capacity: the catalog now has copies there
    assert (f.capacity / "talos" / "alice_tomo_0103/e_stack.dat").exists()
    talos = daemon_config(f.root, "talos", f.url, f.pg, f.central, f.capacity, "hub")
    second = f.root / "talos" / "acq" / "alice_tomo_0103/g_stack.dat"
    second.write_bytes(b"the second stack" * 300)
    ok(run_acqd("run", "--config", str(talos), "--once"))  # shipped to central now
    away = f.root / "capacity-away"
    f.capacity.rename(away)  # the capacity share unmounted: its mount point, with an admin's note in it
    f.capacity.mkdir()
    note = f.capacity / "NOT-MOUNTED"
    note.write_text("the capacity share is not mounted\n")  # not empty: only the tier's marker tells
    try:
        r = f.hub(45)  # the second stack is due to move
        assert list(f.capacity.iterdir()) == [note], f"the hub wrote onto the mount point: {r.stderr[-2000:]}"
        assert f.stored("talos", "alice_tomo_0103/g_stack.dat").read_bytes() == b"the second stack" * 300
        assert "not mounted" in r.stderr and "~acqd-tier.json" in r.stderr, r.stderr[-2000:]
        # the dry run says so before any sweep would fail on it
        plan = ok(run_acqd("hub", "plan", "--config", str(f.hub_yaml)))
        assert "NOT USABLE: tier capacity: no ~acqd-tier.json" in plan.stdout, plan.stdout
        doc = json.loads(ok(run_acqd("hub", "plan", "--json", "--config", str(f.hub_yaml))).stdout)
        assert list(doc["unmarked_tiers"]) == ["capacity"], doc["unmarked_tiers"]
        assert f.q("SELECT count(*) FROM acqd.hub_copies WHERE state = 'missing'")[0][0] == 0
    finally:  # what a failing run wrote onto the mount point is kept aside (the assertion says it)
        f.capacity.rename(f.root / "capacity-mount-point")
        away.rename(f.capacity)
    assert json.loads(ok(run_acqd("hub", "plan", "--json", "--config", str(f.hub_yaml))).stdout)["unmarked_tiers"] == {}
    ok(f.hub(46))  # the share is back: the move happens
    assert (f.capacity / "talos" / "alice_tomo_0103/g_stack.dat").read_bytes() == b"the second stack" * 300
    assert not f.stored("talos", "alice_tomo_0103/g_stack.dat").exists()


def test_the_hub_takes_a_shipped_policy_by_name_as_acqd_yaml_does(tmp_path: Path) -> None:
    """hub.yaml's `policy: cryoem-facility` said 'file not found' (acqd.yaml takes the name): both
    take a file or the name of a policy in /etc/acqd/policies or shipped with acqd, and an unknown
    name says which there are."""
    from acqd.config import HubConfig
    from acqd.errors import ConfigError

    def cfg(policy: str) -> HubConfig:
        return HubConfig.model_validate(
            {
                "state_dir": str(tmp_path / "hub"),
                "catalog": {"url": "postgresql://acqd@127.0.0.1:1/acqd"},
                "tiers": {
                    "central": {"url": f"file://{tmp_path / 'c'}"},
                    "capacity": {"url": f"file://{tmp_path / 'd'}"},
                },
                "policy": policy,
            }
        )

    assert load_hub_policy(cfg("cryoem-facility")).metadata.name == "cryoem-facility"
    with pytest.raises(ConfigError, match=r"no policy is named 'cryo-facility' \(shipped: .*cryoem-facility"):
        load_hub_policy(cfg("cryo-facility"))
