"""The facility catalog (issue 16, first slice): the journal's outbox, the publisher and the
`acqd catalog` commands, against a real PostgreSQL cluster started by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from acqd import catalog
from acqd.daemon import CATALOG_DRAIN_SECONDS
from acqd.journal import (
    Journal,
    Observation,
    begin_resync,
    configure_outbox,
    end_resync,
    journal_path,
    outbox_done,
    outbox_next,
    outbox_state,
    snapshot,
)
from acqd.publish import JournalOutbox
from acqd.values import Identity, OutboxRecord, SourceRef, State, WriteResult
from tests.conftest import Background, digest, journal_rows, journal_states, run_acqd, wait_for, write_config
from tests.servers import PG_PASSWORD, Postgres, free_port


def populate(watch: Path, names: list[str], seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {}
    for name in names:
        p = watch / name
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(2000, 40_000))
        p.write_bytes(data)
        out[name] = data
    return out


def config(
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    url: str | None,
    password_file: Path | None,
    extra: str = "",
    metrics_port: int | None = None,
) -> Path:
    watch, dest, state = dirs
    catalog = ""
    if url is not None:
        catalog = f"catalog:\n  url: {url}\n" + (f"  password_file: {password_file}\n" if password_file else "")
        catalog += "  retry_max: 0.5s\n  connect_timeout: 3s\n" + extra
    metrics = f"metrics: {{bind: '127.0.0.1:{metrics_port}'}}\n" if metrics_port else ""
    return write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - path: {watch}
    settle: 0.2s
tiers:
  central: {{url: "file://{dest}"}}
limits: {{retry_initial: 50ms, retry_max: 200ms}}
{metrics}{catalog}""",
    )


def pg_query(pg: Postgres, url: str, sql: str) -> list[tuple[Any, ...]]:
    with pg.connect(url.rpartition("/")[2]) as c:
        return list(c.execute(sql).fetchall())


def catalog_files(pg: Postgres, url: str) -> list[tuple[Any, ...]]:
    """(relpath, version, state, checksum, size) per catalogued file row, duplicates kept."""
    return pg_query(pg, url, "SELECT relpath, version, state, checksum, size FROM acqd.files ORDER BY relpath, version")


def catalog_copies(pg: Postgres, url: str) -> list[tuple[Any, ...]]:
    return pg_query(
        pg,
        url,
        "SELECT f.relpath, c.tier, c.url, c.layout, c.codec, c.source_bytes, c.stored_bytes, c.checksum, c.state"
        " FROM acqd.copies c JOIN acqd.files f USING (instrument, journal_id, file_id) ORDER BY f.relpath",
    )


def assert_catalog_matches_journal(pg: Postgres, url: str, state: Path, dest: Path, expected: dict[str, bytes]) -> None:
    """Every journal row exactly once in the catalog with the journal's state, and every file with
    its content checksum and its verified copy (tier, URL, sizes, checksum)."""
    files = catalog_files(pg, url)
    names = [(r[0], r[1]) for r in files]
    assert len(names) == len(set(names)), "a file row catalogued twice"
    db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        jfiles = db.execute("SELECT relpath, version, state, checksum, size FROM files ORDER BY relpath, version")
        assert files == [tuple(r) for r in jfiles]
        jcopies = db.execute("SELECT COUNT(*) FROM copies").fetchone()[0]
    finally:
        db.close()
    assert {r[0] for r in files} == set(expected)
    by_name = {r[0]: r for r in files}
    for name, data in expected.items():
        assert by_name[name][2] == "verified"
        assert by_name[name][3] == "xxh3-128:" + digest(data)  # the content checksum
    copies = catalog_copies(pg, url)
    assert len(copies) == jcopies == len(expected)
    for rel, tier, curl, layout, _codec, sbytes, stored, checksum, cstate in copies:
        assert (tier, layout, cstate) == ("central", "copy", "verified")
        assert curl == f"file://{dest}/scope/{rel}"
        assert sbytes == stored == len(expected[rel]) and checksum == "xxh3-128:" + digest(expected[rel])
        assert (dest / "scope" / rel).read_bytes() == expected[rel]


def migrate(cfg: Path) -> str:
    r = run_acqd("catalog", "migrate", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    return r.stdout


# -- the outbox, in process (no server) ----------------------------------------------------------


def _ship(j: Journal, rel: str) -> int:
    [(_, row)] = j.observe_many([Observation(SourceRef("/acq", rel), Identity(10, 1, 1, 1), "generic", False)])
    j.mark_complete(row.id, Identity(10, 1, 1, 1), "settled")
    j.record_stored(row.id, "central", f"scope/{rel}", "copy", WriteResult("abc", 10, 10, "none"))
    j.record_verified(row.id, "central", f"scope/{rel}")
    return row.id


def test_outbox_records_changes_in_the_journal_transaction_and_stops_at_its_cap(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite")
    try:
        _ship(j, "before.raw")  # no catalog yet: nothing recorded
        assert outbox_state(j)["depth"] == 0
        assert configure_outbox(j, 100) is True  # first time: a resync is due (the history)
        begin_resync(j)  # the outbox records again; the resync stays due until it is finished ...
        assert outbox_state(j)["resync_since"] is not None
        assert configure_outbox(j, 100) is True  # ... also after a crash and a restart
        end_resync(j)
        assert outbox_state(j)["resync_since"] is None
        fid = _ship(j, "a.raw")
        recs = outbox_next(j, 1000)
        # seen, complete, stored (+ its copy), verified (+ its copy): in order, one per change
        assert [(r.kind, r.doc.get("state")) for r in recs] == [
            ("file", "seen"),
            ("file", "complete"),
            ("file", "stored"),
            ("copy", "stored"),
            ("file", "verified"),
            ("copy", "verified"),
        ]
        assert [r.seq for r in recs] == sorted(r.seq for r in recs) and recs[-1].doc["id"] == fid
        assert recs[2].doc["checksum"] == "abc" and recs[3].doc["dest"] == "scope/a.raw"
        # a change that rolls back leaves no outbox record either (same transaction)
        with pytest.raises(Exception, match="illegal"):
            j.mark(fid, State.COMPLETE)
        j.bump_attempts(fid, "retry noise")  # not worth publishing
        assert len(outbox_next(j, 1000)) == len(recs)
        outbox_done(j, recs[-1].seq, {"published_total": 6})
        assert outbox_state(j)["depth"] == 0 and outbox_state(j)["status"] == {"published_total": 6}
        # at the cap: the journal goes on, the outbox stops growing, a resync is noted
        for i in range(30):
            _ship(j, f"many/{i}.raw")
        st = outbox_state(j)
        assert st["depth"] == 100 and st["resync_since"] is not None
        assert j.lookup(SourceRef("/acq", "many/29.raw")).state is State.VERIFIED  # type: ignore[union-attr]
        # the snapshot carries every row's current state
        snap = [r for batch in snapshot(j.path, batch=7) for r in batch]
        assert sum(1 for r in snap if r.kind == "file") == 32 and sum(1 for r in snap if r.kind == "copy") == 32
        assert {r.doc["state"] for r in snap} == {"verified"}
        # without a catalog the triggers are gone and the outbox is empty
        assert configure_outbox(j, None) is False
        _ship(j, "after.raw")
        assert outbox_state(j)["depth"] == 0 and outbox_state(j)["cap"] is None
    finally:
        j.close()


# -- against PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.service
@pytest.mark.slow
def test_migrate_twice_is_a_noop_and_check_connects(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file)
    r = run_acqd("check", "--config", str(cfg), "--no-probe")
    assert r.returncode == 0  # --no-probe: no connection attempted
    r = run_acqd("check", "--config", str(cfg))
    assert "schema is at version 0" in r.stderr and "acqd catalog migrate" in r.stderr
    assert "applied 0001_catalog, 0002_hub" in migrate(cfg)
    tables = pg_query(pg_server, catalog_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'acqd' ORDER BY 1")
    assert [t[0] for t in tables] == [
        *("copies", "files", "holds", "hub_actions", "hub_audit", "hub_clock_acks", "hub_copies", "hub_lease"),
        *("hub_state", "hub_warnings", "journals", "schema_version", "tiers"),
    ]
    assert "schema up to date" in migrate(cfg)
    versions = [(m.version, m.name) for m in catalog.migrations()]
    assert versions[0] == (1, "catalog") and len(versions) == catalog.SCHEMA_VERSION
    assert pg_query(pg_server, catalog_db, "SELECT version, name FROM acqd.schema_version ORDER BY 1") == versions
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 0 and f"connected, schema version {catalog.SCHEMA_VERSION}" in r.stdout, r.stderr
    assert "warning" not in r.stderr


@pytest.mark.service
def test_replayed_or_late_records_never_double_or_roll_back_a_row(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    """A crash between PostgreSQL's commit and the outbox's delete replays a batch; a snapshot and
    the outbox may arrive in either order: the newest state wins, each row exists once."""
    migrate(config(tmp_path, dirs, catalog_db, pg_server.password_file))
    j = Journal(tmp_path / "j.sqlite")
    try:
        configure_outbox(j, 1000)
        begin_resync(j)
        end_resync(j)
        _ship(j, "a.raw")
        recs = outbox_next(j, 100)
    finally:
        j.close()
    target = catalog.Target("scope", "jid", {"central": "file:///central"})

    async def publish(*batches: list[OutboxRecord]) -> None:
        conn = await catalog.connect(catalog_db, PG_PASSWORD, 10)
        try:
            for b in batches:
                await catalog.upsert(conn, target, b)
        finally:
            await conn.close()

    def rows() -> list[tuple[Any, ...]]:
        return pg_query(
            pg_server,
            catalog_db,
            "SELECT f.state, c.state, f.seq, c.seq FROM acqd.files f JOIN acqd.copies c USING (file_id)",
        )

    asyncio.run(publish(recs[:3], recs[3:]))
    assert rows() == [("verified", "verified", recs[4].seq, recs[5].seq)]
    asyncio.run(publish(recs, recs[:4], [recs[0]], [recs[3]]))  # replays, then older states late
    assert rows() == [("verified", "verified", recs[4].seq, recs[5].seq)]


@pytest.mark.service
@pytest.mark.slow
def test_daemon_publishes_every_file_once_with_its_checksum_and_copy(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    watch, dest, state = dirs
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file)
    migrate(cfg)
    with pg_server.connect(catalog_db.rpartition("/")[2]) as c:  # a busy catalog: a second per transaction
        c.execute(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$"
        )
        c.execute("CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON acqd.journals FOR EACH ROW EXECUTE FUNCTION slow()")
    expected = populate(watch, [f"session_{i % 3}/movie_{i:03d}.raw" for i in range(40)])
    # --once ends after the last file is verified, with records still on their way: it waits for them
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)
    jid = Journal(state / "journal.sqlite", readonly=True)
    try:
        journal_id = jid.journal_id
    finally:
        jid.close()
    assert pg_query(pg_server, catalog_db, "SELECT instrument, journal_id FROM acqd.journals") == [
        ("scope", journal_id)
    ]
    assert pg_query(pg_server, catalog_db, "SELECT tier, url FROM acqd.tiers") == [("central", f"file://{dest}")]
    r = run_acqd("status", "--config", str(cfg))
    assert "catalog: 0 record(s) in the outbox (cap 1000000)" in r.stdout, r.stdout
    # a new version of one file: a second row, the first one stays (superseded, still verified)
    (watch / "session_0/movie_000.raw").write_bytes(b"retaken" * 1000)
    expected["session_0/movie_000.raw"] = b"retaken" * 1000
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    rows = [f for f in catalog_files(pg_server, catalog_db) if f[0] == "session_0/movie_000.raw"]
    assert [(f[1], f[2]) for f in rows] == [(1, "verified"), (2, "verified")]
    assert rows[1][3] == "xxh3-128:" + digest(b"retaken" * 1000)
    current = pg_query(pg_server, catalog_db, "SELECT count(*) FROM acqd.files WHERE current")[0][0]
    assert current == 40


def metric(port: int, name: str) -> float | None:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.service
@pytest.mark.slow
def test_postgres_outage_mid_run_loses_and_doubles_nothing(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    watch, dest, state = dirs
    port = free_port()
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file, metrics_port=port)
    migrate(cfg)
    expected = populate(watch, [f"a/{i:03d}.raw" for i in range(15)])
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: len(catalog_files(pg_server, catalog_db)) == 15, 90, "the first files catalogued", d, state)
        wait_for(lambda: set(journal_states(state).values()) == {"verified"}, 90, "first verified", d, state)
        pg_server.stop("immediate")  # as if the server crashed
        try:
            expected |= populate(watch, [f"b/{i:03d}.raw" for i in range(25)], seed=2)
            wait_for(
                lambda: len(journal_states(state)) == 40 and set(journal_states(state).values()) == {"verified"},
                90,
                "shipping to go on without the catalog",
                d,
                state,
            )
            wait_for(lambda: (metric(port, "acqd_catalog_outbox_records") or 0) > 0, 60, "the outbox metric", d)
            assert metric(port, "acqd_catalog_connected") == 0
            wait_for(lambda: (metric(port, "acqd_catalog_errors_total") or 0) >= 1, 60, "an error counted", d)
            r = run_acqd("status", "--config", str(cfg))
            assert "last error:" in r.stdout and "record(s) in the outbox" in r.stdout, r.stdout
            assert not r.stdout.split("catalog: ", 1)[1].startswith("0 record")
        finally:
            pg_server.start()
        wait_for(lambda: len(catalog_files(pg_server, catalog_db)) == 40, 120, "the outbox drained", d, state)
        wait_for(lambda: metric(port, "acqd_catalog_outbox_records") == 0, 60, "an empty outbox", d)
        code, err = d.terminate()
        assert code == 0, err
        assert "shipping goes on; the outbox keeps the records" in err  # the outage was logged ...
        assert "publishing again after" in err  # ... and the recovery
    finally:
        d.kill()
    assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)


@pytest.mark.service
@pytest.mark.slow
def test_a_batch_the_catalog_rejects_stays_in_the_outbox(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    """A transaction PostgreSQL refuses (here a trigger of the facility's; in life a full disk, a
    constraint) is retried; its records leave the outbox only once committed."""
    watch, dest, state = dirs
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file)
    migrate(cfg)
    expected = populate(watch, ["first.raw"], seed=7)
    d = Background("run", "--config", str(cfg))
    try:
        # the first start's resync done, changes now go through the outbox
        wait_for(lambda: len(catalog_files(pg_server, catalog_db)) == 1, 90, "the first file catalogued", d, state)
        with pg_server.connect(catalog_db.rpartition("/")[2]) as c:
            c.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF NEW.relpath LIKE 'poison%' THEN RAISE EXCEPTION 'refused by the facility'; END IF;"
                " RETURN NEW; END $$"
            )
            c.execute(
                "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON acqd.files FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        expected |= populate(watch, [f"ok/{i}.raw" for i in range(8)] + ["poison.raw"])
        wait_for(
            lambda: len(journal_states(state)) == 10 and set(journal_states(state).values()) == {"verified"},
            90,
            "shipping goes on",
            d,
            state,
        )

        def outbox() -> tuple[int, int, str]:
            c = json.loads(run_acqd("status", "--config", str(cfg), "--json").stdout)["catalog"]
            st = c.get("status") or {}
            return int(c["depth"]), int(st.get("errors", 0)), str(st.get("last_error") or "")

        # every record is in the outbox now; two more refusals after this point mean the publisher
        # tried the refused batch again (kept) rather than dropped it and went on (depth 0)
        _depth, errors0, _ = outbox()
        wait_for(lambda: outbox()[0] == 0 or outbox()[1] >= errors0 + 2, 90, "two more attempts", d, state)
        depth, _errors, last = outbox()
        assert depth > 0 and "refused by the facility" in last, (depth, last)
        with pg_server.connect(catalog_db.rpartition("/")[2]) as c:
            c.execute("DROP TRIGGER refuse ON acqd.files")
        wait_for(
            lambda: [r[2] for r in catalog_files(pg_server, catalog_db)] == ["verified"] * 10,
            90,
            "everything published once accepted",
            d,
            state,
        )
        code, err = d.terminate()
        assert code == 0, err
        assert err.count("refused by the facility") == 1  # logged once, not once per retry ...
        assert err.count("publishing again after") == 1  # ... and its end
    finally:
        d.kill()
    assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)


@pytest.mark.service
@pytest.mark.slow
def test_full_outbox_keeps_shipping_and_resyncs_when_the_server_returns(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    watch, dest, state = dirs
    port = free_port()
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file, extra="  outbox_cap: 100\n", metrics_port=port)
    migrate(cfg)
    expected = populate(watch, ["first.raw"], seed=9)
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: len(catalog_files(pg_server, catalog_db)) == 1, 90, "the first file catalogued", d, state)
        pg_server.stop()
        try:
            expected |= populate(watch, [f"s/{i:03d}.raw" for i in range(60)])  # ~6 changes each: far over 100
            wait_for(
                lambda: len(journal_states(state)) == 61 and set(journal_states(state).values()) == {"verified"},
                120,
                "every file verified although the outbox is full",
                d,
                state,
            )
            wait_for(lambda: metric(port, "acqd_catalog_outbox_full") == 1, 60, "the full-outbox metric", d)
            r = run_acqd("status", "--config", str(cfg))
            assert "catalog: 100 record(s) in the outbox (cap 100); FULL" in r.stdout, r.stdout
            assert d.stderr().count("outbox reached its cap of 100") == 1  # said once, loudly
        finally:
            pg_server.start()
        wait_for(lambda: len(catalog_files(pg_server, catalog_db)) == 61, 120, "the catalog resynchronised", d, state)
        wait_for(
            lambda: {r[2] for r in catalog_files(pg_server, catalog_db)} == {"verified"}, 60, "final states", d, state
        )
        wait_for(lambda: metric(port, "acqd_catalog_outbox_full") == 0, 60, "the outbox no longer full", d)
        assert (metric(port, "acqd_catalog_resyncs_total") or 0) >= 1
        # after the resync the outbox records changes again
        expected |= populate(watch, ["t/late.raw"], seed=3)
        wait_for(
            lambda: [r[2] for r in catalog_files(pg_server, catalog_db)] == ["verified"] * 62,
            90,
            "a later file catalogued as verified",
            d,
            state,
        )
        wait_for(lambda: metric(port, "acqd_catalog_outbox_records") == 0, 60, "an empty outbox", d)
        code, err = d.terminate()
        assert code == 0, err
    finally:
        d.kill()
    assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)


@pytest.mark.service
@pytest.mark.slow
def test_sigkilled_daemon_restarts_without_doubles(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    watch, dest, state = dirs
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file)
    migrate(cfg)
    rng = random.Random(5)
    expected = populate(watch, [f"k/{i:03d}.raw" for i in range(60)], seed=5)
    for _ in range(4):
        d = Background("run", "--config", str(cfg))
        time.sleep(rng.uniform(0.5, 2.0))  # a random point in the run, not a synchronisation
        d.kill()
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    assert all(row[1] == "verified" for row in journal_rows(state))
    assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)


@pytest.mark.service
@pytest.mark.slow
def test_import_of_an_existing_journal(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    watch, dest, state = dirs
    plain = config(tmp_path, dirs, None, None)
    expected = populate(watch, [f"old/{i:03d}.raw" for i in range(20)])
    r = run_acqd("run", "--config", str(plain), "--once")  # months of history without a catalog
    assert r.returncode == 0, r.stderr
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file)
    r = run_acqd("catalog", "import", "--config", str(cfg))
    assert r.returncode == 1 and "acqd catalog migrate" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    migrate(cfg)
    for _ in range(2):  # idempotent
        r = run_acqd("catalog", "import", "--config", str(cfg))
        assert r.returncode == 0 and "imported 40 journal row(s) of scope" in r.stdout, r.stderr
        assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)
    # then the daemon with the catalog: the history stays, new files join it, nothing doubles
    expected |= populate(watch, [f"new/{i:03d}.raw" for i in range(5)], seed=4)
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)


@pytest.mark.service
@pytest.mark.slow
def test_bad_catalog_settings_are_one_line_and_never_stop_shipping(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    watch, dest, state = dirs
    # a password in the URL: refused before anything starts, without echoing it
    host = catalog_db.partition("@")[2]
    cfg = config(tmp_path, dirs, f"postgresql://acqd:{PG_PASSWORD}@{host}", None)
    for cmd in (("check",), ("run", "--once"), ("catalog", "migrate")):
        r = run_acqd(*cmd, "--config", str(cfg))
        assert r.returncode == 78, (cmd, r.stderr)
        assert "catalog.url holds a password" in r.stderr and PG_PASSWORD not in r.stderr + r.stdout
    cfg = config(tmp_path, dirs, "mysql://acqd@127.0.0.1/db", None)
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 78 and "postgresql://" in r.stderr
    cfg = config(tmp_path, dirs, catalog_db, tmp_path / "missing-password")
    for cmd in (("check",), ("check", "--no-probe"), ("run", "--once")):
        r = run_acqd(*cmd, "--config", str(cfg))
        assert r.returncode == 78 and "catalog.password_file: cannot read" in r.stderr, (cmd, r.stderr)
    config(tmp_path, dirs, catalog_db, pg_server.password_file)
    migrate(tmp_path / "acqd.yaml")
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-it\n")
    down = f"postgresql://acqd@127.0.0.1:{free_port()}/x"
    for url, pw, why in (
        (catalog_db, wrong, "password authentication failed"),
        (down, pg_server.password_file, "Connection refused"),
    ):
        cfg = config(tmp_path, dirs, url, pw)
        r = run_acqd("check", "--config", str(cfg))
        assert r.returncode == 0, r.stderr  # run would start (and retry): a warning, not a refusal
        lines = [ln for ln in r.stderr.splitlines() if "catalog" in ln]
        assert len(lines) == 1 and why in lines[0] and lines[0].startswith("acqd: warning: catalog"), r.stderr
        assert run_acqd("check", "--strict", "--config", str(cfg)).returncode == 1
    # at run time: shipping goes on, the error is logged once per kind, the outbox keeps the records
    expected = populate(watch, [f"w/{i}.raw" for i in range(10)])
    cfg = config(tmp_path, dirs, catalog_db, wrong)
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    assert set(journal_states(state).values()) == {"verified"}
    assert {p.relative_to(dest / "scope").as_posix() for p in (dest / "scope").rglob("*.raw")} == set(expected)
    assert r.stderr.count("password authentication failed") == 1, r.stderr
    assert catalog_files(pg_server, catalog_db) == []
    # the right password: everything the outbox kept is published
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file)
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)


def _publish_until_drained(j: Journal, url: str, password: str) -> None:
    """The daemon's wiring in process: a publisher over the journal's outbox, until it is drained."""
    target = catalog.Target("scope", j.journal_id, {"central": "file:///central"})

    async def go() -> None:
        with ThreadPoolExecutor(1) as jexec, ThreadPoolExecutor(1) as io:
            p = catalog.Publisher(url, password, target, JournalOutbox(j, jexec, io), retry_max=0.5)
            t0 = time.time()
            task = asyncio.create_task(p.run())
            try:  # something committed in this run (a batch or a resync), then nothing left
                await wait_for_async(lambda: p.status().get("last_ok", 0) > t0, 60, lambda: p.last_error)
                assert await p.drain(60), p.last_error
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(go())


async def wait_for_async(cond: Any, seconds: float, why: Any) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"timed out: {why()}"
        await asyncio.sleep(0.05)


@pytest.mark.service
@pytest.mark.parametrize("restored_import", [False, True], ids=["daemon", "import"])
def test_a_journal_restored_from_backup_is_catalogued_as_it_is(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path], restored_import: bool
) -> None:
    """A journal restored from a backup numbers its outbox (and new rows) from where the backup
    was; the catalog holds newer sequence numbers for that journal. The restored journal's rows
    and changes must still win (it is the source of truth), not be refused as 'older'."""
    migrate(config(tmp_path, dirs, catalog_db, pg_server.password_file))
    path = tmp_path / "j.sqlite"
    backup = tmp_path / "backup.sqlite"
    j = Journal(path)
    try:
        configure_outbox(j, 1000)
        _ship(j, "a.raw")
        _publish_until_drained(j, catalog_db, PG_PASSWORD)
    finally:
        j.close()
    backup.write_bytes(path.read_bytes())
    j = Journal(path)
    try:
        for name in ("c.raw", "d.raw", "e.raw"):
            _ship(j, name)
        _publish_until_drained(j, catalog_db, PG_PASSWORD)
    finally:
        j.close()
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    path.write_bytes(backup.read_bytes())  # the operator restores last night's backup
    j = Journal(path)
    try:
        configure_outbox(j, 1000)
        # a new file takes the row id c.raw has in the catalog, at lower sequence numbers
        [(_, row)] = j.observe_many([Observation(SourceRef("/acq", "x.raw"), Identity(10, 1, 1, 1), "generic", False)])
        j.mark_complete(row.id, Identity(10, 1, 1, 1), "settled")
        if not restored_import:
            _publish_until_drained(j, catalog_db, PG_PASSWORD)  # the daemon with the restored journal
        jid = j.journal_id
    finally:
        j.close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        journal = [tuple(r) for r in db.execute("SELECT id, relpath, state FROM files ORDER BY id")]
    finally:
        db.close()
    assert [r[1] for r in journal] == ["a.raw", "x.raw"]
    cfg = config(tmp_path, (dirs[0], dirs[1], tmp_path), catalog_db, pg_server.password_file)
    if restored_import:  # `acqd catalog import` before the daemon ran with the restored journal
        path.rename(journal_path(tmp_path))
        r = run_acqd("catalog", "import", "--config", str(cfg))
        assert r.returncode == 1 and "restored from a backup" in r.stderr, r.stdout + r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        j = Journal(journal_path(tmp_path))
        try:
            _publish_until_drained(j, catalog_db, PG_PASSWORD)  # the daemon with it
        finally:
            j.close()
        r = run_acqd("catalog", "import", "--config", str(cfg))
        assert r.returncode == 0 and "imported 3 journal row(s) of scope" in r.stdout, r.stderr
    got = pg_query(
        pg_server,
        catalog_db,
        f"SELECT file_id, relpath, state FROM acqd.files WHERE journal_id = '{jid}' AND file_id <= 2 ORDER BY 1",
    )
    assert got == journal


@pytest.mark.service
def test_a_server_that_never_answers_a_statement_is_an_error_not_a_stall(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    """PostgreSQL takes the connection but a statement never returns (here a lock someone holds):
    the publisher reports an error after its statement timeout and retries, then publishes."""
    migrate(config(tmp_path, dirs, catalog_db, pg_server.password_file))
    j = Journal(tmp_path / "j.sqlite")
    try:
        configure_outbox(j, 1000)
        _ship(j, "a.raw")
        target = catalog.Target("scope", j.journal_id, {"central": "file:///central"})
        holder = pg_server.connect(catalog_db.rpartition("/")[2])
        holder.autocommit = False
        holder.execute("LOCK TABLE acqd.files IN ACCESS EXCLUSIVE MODE")

        async def go() -> None:
            with ThreadPoolExecutor(1) as jexec, ThreadPoolExecutor(1) as io:
                outbox = JournalOutbox(j, jexec, io)
                p = catalog.Publisher(catalog_db, PG_PASSWORD, target, outbox, retry_max=0.5, statement_timeout=1.0)
                task = asyncio.create_task(p.run())
                try:
                    await wait_for_async(lambda: "statement timeout" in (p.last_error or ""), 60, lambda: p.last_error)
                    holder.rollback()  # the lock released: the records go through
                    await wait_for_async(lambda: p.last_error is None and p.connected, 60, lambda: p.last_error)
                    assert await p.drain(60), p.last_error
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

        try:
            asyncio.run(go())
        finally:
            holder.close()
        assert [r[2] for r in catalog_files(pg_server, catalog_db)] == ["verified"]
    finally:
        j.close()


@pytest.mark.service
@pytest.mark.slow
def test_a_stop_waits_for_a_hung_catalog_at_most_its_bound(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    """A stop while PostgreSQL holds the publisher's statement (a lock someone holds): the daemon
    gives the catalog its drain bound, then stops; the records wait in the outbox."""
    watch, dest, state = dirs
    cfg = config(tmp_path, dirs, catalog_db, pg_server.password_file)
    migrate(cfg)
    expected = populate(watch, ["first.raw"], seed=7)
    d = Background("run", "--config", str(cfg))
    holder = pg_server.connect(catalog_db.rpartition("/")[2])
    try:
        wait_for(lambda: len(catalog_files(pg_server, catalog_db)) == 1, 90, "the first file catalogued", d, state)
        holder.autocommit = False
        holder.execute("LOCK TABLE acqd.files IN ACCESS EXCLUSIVE MODE")
        expected |= populate(watch, ["second.raw"], seed=8)
        wait_for(lambda: journal_states(state).get("second.raw") == "verified", 90, "shipping goes on", d, state)
        t0 = time.monotonic()
        code, err = d.terminate()
        took = time.monotonic() - t0
        assert code == 0, err
        assert took < CATALOG_DRAIN_SECONDS + 30, err  # the drain's bound, then the stop (generous)
        assert "record(s) wait in the outbox for the next start" in err
    finally:
        d.kill()
        holder.close()
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    assert_catalog_matches_journal(pg_server, catalog_db, state, dest, expected)


@pytest.mark.service
def test_a_password_parameter_spelled_with_escapes_is_refused(
    pg_server: Postgres, catalog_db: str, tmp_path: Path, dirs: tuple[Path, Path, Path]
) -> None:
    """libpq decodes %-escapes in a URL's parameter names: `pass%77ord=` is a password, and the URL
    is in every log line about the catalog. Refused like `password=`, without echoing it."""
    for name in ("pass%77ord", "%50ASSWORD"):
        cfg = config(tmp_path, dirs, f"{catalog_db}?{name}={PG_PASSWORD}", None)
        r = run_acqd("check", "--config", str(cfg))
        assert r.returncode == 78, r.stdout + r.stderr
        assert "holds a password parameter" in r.stderr and PG_PASSWORD not in r.stderr + r.stdout
