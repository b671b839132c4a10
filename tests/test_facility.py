"""The facility views (issue 16): `acqd hub usage`, `acqd hub fleet`, the facility gauges and the
publisher's heartbeat, against a real PostgreSQL cluster (and Mosquitto for the MQTT status)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from acqd import catalog
from acqd.journal import Journal, Observation, configure_outbox, snapshot
from acqd.overview.forecast import due_dates, plan_stream
from acqd.overview.gauges import register_facility_collector
from acqd.overview.settings import FacilityView
from acqd.overview.views import Source
from acqd.policy.model import Policy
from acqd.policy.planner import Item, plan
from acqd.publish import JournalOutbox
from acqd.values import Identity, SourceRef, State, WriteResult
from tests.conftest import need, run_acqd, write_config
from tests.servers import PG_PASSWORD, Postgres, free_port
from tests.test_catalog import config, migrate, pg_query, wait_for_async
from tests.test_service import DEPLOY, Broker, dashboard_queries

DAY = 86400.0
NOW = 1_796_083_200.0  # 2026-12-01 00:00 UTC

POLICY = """
apiVersion: acqd/v1
kind: RetentionPolicy
metadata: {name: facility}
spec:
  tiers: [central, capacity]
  dataClasses:
    movie: {globs: ["*.eer"]}
    sum: {globs: ["*.mrc"]}
  owners:
    pattern: "^(?P<owner>[a-z]+)_"
    fallback: facility@example.org
  rules:
    - name: movies
      match: {dataClass: movie}
      transitions: [{after: 14d, tier: capacity}]
      expiration: {after: 60d}
      warn: 14d
  default: {name: keep}
"""


def policy_of(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


# -- the pure parts --------------------------------------------------------------------------------


def _policy() -> Policy:
    import yaml

    return Policy.model_validate(yaml.safe_load(POLICY))


def test_due_dates_follow_the_planner_s_transitions_and_expiry() -> None:
    rule = _policy().rule_for("alice_p/m.eer", "generic", "alice")
    # on central, 50 days old: the move to capacity is overdue (due since day 14), the purge on day 60
    assert due_dates(rule, "central", NOW - 50 * DAY, NOW) == ((NOW - 36 * DAY, "capacity"), NOW + 10 * DAY)
    # already on capacity: nothing more to move
    assert due_dates(rule, "capacity", NOW - 50 * DAY, NOW) == (None, NOW + 10 * DAY)
    # young: the move ahead
    assert due_dates(rule, "central", NOW - 5 * DAY, NOW) == ((NOW + 9 * DAY, "capacity"), NOW + 55 * DAY)
    keep = _policy().rule_for("alice_p/s.mrc", "generic", "alice")
    assert due_dates(keep, "central", NOW - 500 * DAY, NOW) == (None, None)


@pytest.mark.parametrize(("max_items", "max_bytes"), [(4, 10**12), (10**6, 5_000)], ids=["item-cap", "byte-cap"])
def test_plan_stream_equals_one_plan_over_everything_caps_included(max_items: int, max_bytes: int) -> None:
    """Chunked, the planner's purges stop at the same caps as one plan over all items (the caps are
    carried from chunk to chunk), and every other action is the same."""
    import yaml

    doc = yaml.safe_load(POLICY)
    doc["spec"]["caps"] = {"maxItemsPerSweep": max_items, "maxBytesPerSweep": max_bytes}
    pol = Policy.model_validate(doc)
    rng = random.Random(7)
    items = sorted(
        (
            Item(
                i,
                f"{rng.choice(['alice', 'bob'])}_p/{i}.{rng.choice(['eer', 'mrc'])}",
                "s",
                "generic",
                rng.choice(["central", "capacity"]),
                rng.randint(100, 3000),
                NOW - rng.uniform(0, 120) * DAY,
            )
            for i in range(1, 400)
        ),
        key=lambda it: (it.verified_at, it.id),
    )
    # every movie older than 60 d was warned 20 d ago for its expiry: purgeable now, up to the caps
    from acqd.policy.planner import Warning_

    warnings = {
        it.id: [Warning_(it.id, it.verified_at + 60 * DAY, NOW - 20 * DAY)]
        for it in items
        if it.relpath.endswith(".eer") and NOW - it.verified_at > 60 * DAY
    }
    whole = plan(NOW, items, pol, warnings=[w for ws in warnings.values() for w in ws])
    chunks = [items[i : i + 25] for i in range(0, len(items), 25)]
    streamed = list(plan_stream(NOW, chunks, pol, warnings=warnings))
    assert sum(a.kind == "purge" for a in whole) > 0 and any("caps" in a.reason for a in whole)
    # the same actions (plan() lists the capped purges after the rest; the stream, chunk by chunk)
    assert sorted(map(repr, streamed)) == sorted(map(repr, whole))
    assert [a for a in streamed if a.kind == "purge"] == [a for a in whole if a.kind == "purge"]


# -- a catalog with three instruments --------------------------------------------------------------


def ship(j: Journal, rel: str, size: int, tier: str = "central") -> int:
    ident = Identity(size, 1, rng_inode(), 1)
    [(_, row)] = j.observe_many([Observation(SourceRef("/acq", rel), ident, "generic", False)])
    j.mark_complete(row.id, ident, "settled")
    j.record_stored(row.id, tier, f"x/{rel}", "copy", WriteResult(f"xxh3-128:{rel}", size, size, "none"))
    j.record_verified(row.id, tier, f"x/{rel}")
    return row.id


_inode = iter(range(1000, 10**9))


def rng_inode() -> int:
    return next(_inode)


def seen(j: Journal, rel: str, size: int) -> int:
    [(_, row)] = j.observe_many(
        [Observation(SourceRef("/acq", rel), Identity(size, 1, rng_inode(), 1), "generic", False)]
    )
    return row.id


def publish_journal(url: str, instrument: str, path: Path) -> None:
    j = Journal(path, readonly=True)
    jid = j.journal_id
    j.close()

    async def go() -> None:
        conn = await catalog.connect(url, PG_PASSWORD, 10)
        try:
            await catalog.import_snapshot(
                conn, catalog.Target(instrument, jid, {"central": "file:///c"}), snapshot(path)
            )
        finally:
            await conn.close()

    asyncio.run(go())


def facility(tmp_path: Path, url: str) -> None:
    """krios: two movies and a sum of alice and bob (structural), one quarantined; sem: carol's
    image and a file waiting; talos: nothing live, all quarantined."""
    at = {"t": NOW - 50 * DAY}
    krios = Journal(tmp_path / "krios.sqlite", clock=lambda: at["t"])
    try:
        ship(krios, "alice_p1/m1.eer", 1000)
        ship(krios, "alice_p1/s1.mrc", 200)
        at["t"] = NOW - 5 * DAY
        ship(krios, "bob_p2/m2.eer", 3000)
        bad = seen(krios, "bob_p2/bad.eer", 77)
        krios.mark(bad, State.QUARANTINED, "truncated")
    finally:
        krios.close()
    at["t"] = NOW - DAY
    sem = Journal(tmp_path / "sem.sqlite", clock=lambda: at["t"])
    try:
        ship(sem, "carol_x/img.tif", 500)
        seen(sem, "carol_x/wait.tif", 10)
    finally:
        sem.close()
    for name, path in (("krios", tmp_path / "krios.sqlite"), ("sem", tmp_path / "sem.sqlite")):
        publish_journal(url, name, path)


def hub_yaml(tmp_path: Path, url: str, pg: Postgres, extra: str = "") -> Path:
    return write_config(
        tmp_path / "hub.yaml",
        f"""
catalog: {{url: "{url}", password_file: {pg.password_file}}}
policy: {policy_of(tmp_path)}
groups:
  structural: [alice, bob]
usage: {{weeks: 8}}
{extra}""",
    )


def by(rows: list[dict[str, Any]], *keys: str) -> dict[Any, tuple[int, int]]:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: (r["files"], r["bytes"]) for r in rows}


@pytest.mark.service
def test_hub_usage_per_owner_group_instrument_tier_class_and_due_weeks(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    migrate(config(tmp_path, dirs, catalog_db, pg_server.password_file))
    facility(tmp_path, catalog_db)
    hub = hub_yaml(tmp_path, catalog_db, pg_server)
    r = run_acqd("hub", "usage", "--json", "--config", str(hub))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    # `now` is the command's: the journal rows' dates are relative to NOW, so shift what is due
    shift = doc["now"] - NOW
    assert shift >= 0
    assert doc["total"] == {"files": 4, "bytes": 4700}
    assert by(doc["owners"], "owner", "group") == {
        ("alice", "structural"): (2, 1200),
        ("bob", "structural"): (1, 3000),
        ("carol", "(none)"): (1, 500),
    }
    assert by(doc["groups"], "group") == {"structural": (3, 4200), "(none)": (1, 500)}
    assert by(doc["instruments"], "instrument") == {"krios": (3, 4200), "sem": (1, 500)}
    assert by(doc["tiers"], "tier") == {"central": (4, 4700)}
    assert by(doc["data_classes"], "data_class") == {"movie": (2, 4000), "sum": (1, 200), "(none)": (1, 500)}
    assert by(doc["quarantined"], "instrument") == {"krios": (1, 77)}

    # m1: 50 d old: the move overdue (week 0), its purge 10 d ahead; m2: 5 d old: moves in 9 d, purged in 55 d
    def week(days_ahead: float) -> int:
        return int(max(0.0, days_ahead * DAY - shift) // (7 * DAY))

    def per_week(rows: list[tuple[tuple[Any, ...], int]]) -> dict[tuple[Any, ...], int]:
        """Bytes per week (and tier): the command sums what falls in the same week (the rows are dated
        from a fixed day, the command counts from today: as the days pass, two weeks become one)."""
        out: dict[tuple[Any, ...], int] = {}
        for k, n in rows:
            out[k] = out.get(k, 0) + n
        return out

    assert per_week([((p["week"],), p["bytes"]) for p in doc["due"]["purges"]]) == per_week(
        [((week(10),), 1000), ((week(55),), 3000)]
    )
    assert len(doc["due"]["purges"]) == len({p["week"] for p in doc["due"]["purges"]})  # one row per week
    assert per_week([((t["week"], t["tier"]), t["bytes"]) for t in doc["due"]["transitions"]]) == per_week(
        [((0, "capacity"), 1000), ((week(9), "capacity"), 3000)]
    )
    # the human table, and the URL form without hub.yaml (no policy: no owners or classes, same totals)
    r = run_acqd("hub", "usage", "--config", str(hub))
    assert r.returncode == 0 and "per owner" in r.stdout and "structural" in r.stdout, r.stderr
    r = run_acqd("hub", "usage", "--json", "--catalog", catalog_db, "--password-file", str(pg_server.password_file))
    assert r.returncode == 0, r.stderr
    bare = json.loads(r.stdout)
    assert bare["total"] == {"files": 4, "bytes": 4700} and bare["due"] == {"purges": [], "transitions": []}
    # a bad invocation: one line each
    for args in (("--catalog", catalog_db, "--config", str(hub)), ("--catalog", "mysql://x/y")):
        r = run_acqd("hub", "usage", *args)
        assert r.returncode == 78 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_acqd("hub", "usage", "--catalog", f"postgresql://acqd@127.0.0.1:{free_port()}/x")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def set_contact(pg: Postgres, url: str, instrument: str, ago: float) -> None:
    pg_query(
        pg,
        url,
        f"UPDATE acqd.journals SET last_contact = now() - interval '{ago} seconds' "
        f"WHERE instrument = '{instrument}' RETURNING 1",
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def retain(port: int, instrument: str, doc: dict[str, Any]) -> None:
    async def go() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as c:
            await c.publish(f"acqd/{instrument}/status", json.dumps(doc).encode(), qos=1, retain=True)

    asyncio.run(go())


@pytest.mark.service
def test_hub_fleet_flags_an_instrument_silent_while_files_wait(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path], broker: Broker
) -> None:
    migrate(config(tmp_path, dirs, catalog_db, pg_server.password_file))
    facility(tmp_path, catalog_db)
    hub = hub_yaml(tmp_path, catalog_db, pg_server, "fleet: {silent_after: 10m, mqtt_wait: 1s}\n")
    # sem last published two hours ago and one of its files waits; krios an hour ago, nothing waits
    set_contact(pg_server, catalog_db, "sem", 7200)
    set_contact(pg_server, catalog_db, "krios", 3600)
    r = run_acqd("hub", "fleet", "--json", "--config", str(hub))
    assert r.returncode == 1, r.stderr  # an instrument is silent
    docs = {d["instrument"]: d for d in json.loads(r.stdout)["instruments"]}
    assert docs["sem"]["silent"] and docs["sem"]["backlog_files"] == 1 and docs["sem"]["via"] == "catalog"
    assert docs["sem"]["last_contact_age_seconds"] >= 7200
    assert docs["sem"]["oldest_pending_age_seconds"] >= DAY  # first seen NOW - 1 d
    assert not docs["krios"]["silent"] and docs["krios"]["backlog_files"] == 0
    r = run_acqd("hub", "fleet", "--config", str(hub))
    assert r.returncode == 1 and "SILENT" in r.stdout
    # the daemon's retained MQTT status says it is alive (its catalog link is what is down)
    with_mqtt = hub_yaml(
        tmp_path,
        catalog_db,
        pg_server,
        f"fleet: {{silent_after: 10m, mqtt_wait: 1s}}\nmqtt: {{url: 'mqtt://127.0.0.1:{broker.port}'}}\n",
    )
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    retain(broker.port, "sem", {"state": "online", "time": stamp, "backlog_files": 4, "instrument": "sem"})
    retain(broker.port, "talos", {"state": "offline", "time": stamp, "instrument": "talos"})
    r = run_acqd("hub", "fleet", "--json", "--config", str(with_mqtt))
    assert r.returncode == 0, r.stdout + r.stderr
    docs = {d["instrument"]: d for d in json.loads(r.stdout)["instruments"]}
    assert docs["sem"]["via"] == "mqtt" and docs["sem"]["backlog_files"] == 4 and not docs["sem"]["silent"]
    assert docs["sem"]["last_contact_age_seconds"] < 600 and docs["sem"]["online"] is True
    assert docs["talos"]["online"] is False and docs["talos"]["backlog_files"] == 0  # known to MQTT only


# -- gauges ----------------------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


@pytest.fixture
def metrics_server() -> Iterator[tuple[CollectorRegistry, int]]:
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield registry, port
    server.shutdown()
    thread.join(10)


@pytest.mark.service
def test_facility_gauges_scraped_from_a_metrics_server(
    pg_server: Postgres,
    catalog_db: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    metrics_server: tuple[CollectorRegistry, int],
) -> None:
    migrate(config(tmp_path, dirs, catalog_db, pg_server.password_file))
    facility(tmp_path, catalog_db)
    set_contact(pg_server, catalog_db, "sem", 7200)
    set_contact(pg_server, catalog_db, "krios", 3600)
    registry, port = metrics_server
    from acqd.overview.settings import load_view

    src = Source.of(load_view(hub_yaml(tmp_path, catalog_db, pg_server)))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
    col = register_facility_collector(registry, src, lambda: {"krios": {"state": "online", "time": stamp}})
    m = scrape(port)
    assert m[("acqd_facility_catalog_up", ())] == 1
    assert ("acqd_facility_usage_age_seconds", ()) not in m  # no usage pass yet: no usage figures
    assert m[("acqd_fleet_backlog_files", (("instrument", "sem"),))] == 1
    assert m[("acqd_fleet_last_contact_seconds", (("instrument", "sem"),))] >= 7200
    assert 60 <= m[("acqd_fleet_last_contact_seconds", (("instrument", "krios"),))] < 600  # its MQTT status is fresher
    assert m[("acqd_fleet_oldest_pending_seconds", (("instrument", "sem"),))] >= DAY
    assert m[("acqd_fleet_online", (("instrument", "krios"),))] == 1
    assert col.refresh_usage()
    m = scrape(port)
    assert (
        m[("acqd_facility_stored_bytes", (("data_class", "movie"), ("instrument", "krios"), ("tier", "central")))]
        == 4000
    )
    assert m[("acqd_facility_owner_bytes", (("group", "structural"), ("owner", "bob")))] == 3000
    assert m[("acqd_facility_group_files", (("group", "structural"),))] == 3
    assert m[("acqd_facility_quarantined_files", (("instrument", "krios"),))] == 1
    assert sum(v for (n, _), v in m.items() if n == "acqd_facility_due_purge_bytes") == 4000
    assert sum(v for (n, _), v in m.items() if n == "acqd_facility_due_transition_bytes") == 4000
    # every facility metric the dashboard and the alert rules query is one this collector exposes
    import re

    exposed = {name for name, _ in m}
    rules = (DEPLOY / "prometheus" / "acqd.rules.yml").read_text()
    wanted = set(re.findall(r"\bacqd_(?:facility|fleet)_[a-z_]+", " ".join(dashboard_queries("acqd-facility.json"))))
    wanted |= set(re.findall(r"\bacqd_(?:facility|fleet)_[a-z_]+", rules))
    assert len(wanted) >= 12 and wanted <= exposed, wanted - exposed
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
    promtool = need("promtool", "Debian package prometheus")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.service
def test_facility_gauges_survive_a_catalog_that_is_away_or_stuck(
    pg_server: Postgres,
    catalog_db: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    metrics_server: tuple[CollectorRegistry, int],
) -> None:
    """A scrape never hangs on the catalog: a table locked by someone ends in the statement timeout,
    a server that is away in a refused connection; both say acqd_facility_catalog_up 0."""
    migrate(config(tmp_path, dirs, catalog_db, pg_server.password_file))
    facility(tmp_path, catalog_db)
    registry, port = metrics_server
    view = FacilityView.model_validate(
        {"catalog": {"url": catalog_db, "connect_timeout": "3s"}, "usage": {"statement_timeout": "1s"}}
    )
    col = register_facility_collector(registry, Source(view, PG_PASSWORD, None))
    assert col.refresh_usage()
    locker = pg_server.connect(catalog_db.rpartition("/")[2])
    try:
        locker.autocommit = False
        locker.execute("LOCK TABLE acqd.journals IN ACCESS EXCLUSIVE MODE")
        t0 = time.monotonic()
        m = scrape(port)
        assert m[("acqd_facility_catalog_up", ())] == 0
        assert time.monotonic() - t0 < 25  # the statement timeout (1 s), not the lock's holder, ended it
        assert m[("acqd_facility_usage_age_seconds", ())] >= 0  # the last usage figures are still served
        assert (
            m[("acqd_facility_stored_files", (("data_class", "(none)"), ("instrument", "sem"), ("tier", "central")))]
            == 1
        )
    finally:
        locker.rollback()
        locker.close()
    assert scrape(port)[("acqd_facility_catalog_up", ())] == 1
    away = FacilityView.model_validate({"catalog": {"url": f"postgresql://acqd@127.0.0.1:{free_port()}/x"}})
    reg2 = CollectorRegistry()
    register_facility_collector(reg2, Source(away, None, None))
    from prometheus_client import generate_latest

    assert b"acqd_facility_catalog_up 0.0" in generate_latest(reg2)


# -- the publisher's heartbeat, and one row per stored object after `acqd adopt` --------------------


@pytest.mark.service
def test_an_idle_publisher_keeps_its_last_contact_fresh(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    migrate(config(tmp_path, dirs, catalog_db, pg_server.password_file))
    j = Journal(tmp_path / "j.sqlite")
    configure_outbox(j, 1000)
    target = catalog.Target("idle", j.journal_id, {"central": "file:///c"})

    def contact() -> float:
        rows = pg_query(pg_server, catalog_db, "SELECT extract(epoch FROM last_contact)::float8 FROM acqd.journals")
        return float(rows[0][0]) if rows else 0.0

    async def go() -> None:
        with ThreadPoolExecutor(1) as jexec, ThreadPoolExecutor(1) as io:
            p = catalog.Publisher(
                catalog_db, PG_PASSWORD, target, JournalOutbox(j, jexec, io), retry_max=0.5, heartbeat=0.3
            )
            task = asyncio.create_task(p.run())
            try:
                await wait_for_async(lambda: p.connected, 60, lambda: p.last_error)
                await wait_for_async(lambda: contact() > 0, 60, lambda: "registered")
                assert await p.drain(60)  # the first resync: nothing to publish from now on
                first = contact()
                await wait_for_async(lambda: contact() > first + 0.5, 60, lambda: "no heartbeat")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    try:
        asyncio.run(go())
    finally:
        j.close()


@pytest.mark.service
def test_a_new_journal_after_adopt_catalogues_each_stored_object_once(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    """The journal lost, `acqd run --adopt` imports the session manifests into a fresh journal (a new
    journal id): the catalog keeps one row per file version and per stored object, the new journal's."""
    watch, _dest, state = dirs
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file)
    migrate(cfg)
    rng = random.Random(3)
    for i in range(12):
        p = watch / f"s{i % 2}" / f"{i:02d}.raw"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(rng.randbytes(2000 + i))
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr

    def counts() -> tuple[int, int, int, int]:
        [row] = pg_query(
            pg_server,
            catalog_db,
            "SELECT (SELECT count(*) FROM acqd.files), (SELECT count(DISTINCT (relpath, version)) FROM acqd.files),"
            " (SELECT count(*) FROM acqd.copies), (SELECT count(DISTINCT (tier, dest)) FROM acqd.copies)",
        )
        return tuple(int(x) for x in row)  # type: ignore[return-value]

    assert counts() == (12, 12, 12, 12)
    old = pg_query(pg_server, catalog_db, "SELECT DISTINCT journal_id FROM acqd.files")
    backup = tmp_path / "old-journal.sqlite"
    shutil.copy(state / "journal.sqlite", backup)
    shutil.rmtree(state)
    state.mkdir()  # the journal lost; the files still on the acquisition disk
    r = run_acqd("run", "--config", str(cfg), "--once", "--adopt")
    assert r.returncode == 0, r.stderr
    assert counts() == (12, 12, 12, 12)
    new = pg_query(pg_server, catalog_db, "SELECT DISTINCT journal_id FROM acqd.files")
    assert len(new) == 1 and new != old  # the adopting journal's rows
    joined = pg_query(
        pg_server,
        catalog_db,
        "SELECT count(*) FROM acqd.copies c JOIN acqd.files f USING (instrument, journal_id, file_id)",
    )
    assert joined == [(12,)]
    # the old journal published again afterwards (`acqd catalog import` of a backup): still once each,
    # the adopting journal's
    publish_journal(catalog_db, "scope", backup)
    assert counts() == (12, 12, 12, 12)
    assert pg_query(pg_server, catalog_db, "SELECT DISTINCT journal_id FROM acqd.files") == new
    r = run_acqd("hub", "usage", "--json", "--catalog", catalog_db, "--password-file", str(pg_server.password_file))
    assert r.returncode == 0 and json.loads(r.stdout)["total"]["files"] == 12, r.stderr
