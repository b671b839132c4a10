"""The fleet (issue 16): three real `acqd run` daemons with distinct instruments ship thousands of
small files to an S3 tier (SeaweedFS) and publish to the shared catalog (a throwaway PostgreSQL),
which is stopped and started again mid-run; `acqd hub` owns retention (the daemons' acqd.yaml says
so) and sweeps on a controllable clock (`--once --now`, as tests/test_hub.py), is SIGKILLed
mid-sweep (crash point `retention_after_delete`) and run again. Then: every file catalogued
exactly once with the checksum of the bytes written, one digest per owner per sweep across the
instruments, nothing purged before its warned date plus the lead time, nothing purged twice,
nothing purged while held, and storage holding exactly what the catalog says."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from acqd.policy.model import DAY
from tests.conftest import Background, digest, journal_states, run_acqd, wait_for
from tests.hubkit import (
    LEASE_EXPIRED_SQL,
    PURGES_SQL,
    Mailbox,
    daemon_config,
    hub_config,
    hub_sweep,
    ok,
    pg_rows,
    smtp_server,
)
from tests.servers import Postgres, SeaweedS3

pytestmark = [pytest.mark.slow, pytest.mark.service]

POLICY = """\
apiVersion: acqd/v1
kind: RetentionPolicy
metadata: {name: fleet}
spec:
  tiers: [central, capacity]
  owners:
    pattern: "^(?P<owner>[a-z]+)_"
    emails: {alice: alice@lab.example, bob: bob@lab.example, carol: carol@lab.example, dave: dave@lab.example}
    fallback: facility@lab.example
  rules:
    - name: movies
      match: {glob: "*.mrc"}
      expiration: {after: 60d}
      warn: 14d
    - name: stacks
      match: {glob: "*.dat"}
      transitions: [{after: 14d, tier: capacity}]
  default: {name: keep}
"""
EXPIRY, LEAD = 60 * DAY, 14 * DAY
OWNERS = ("alice", "bob", "carol", "dave")
INSTRUMENTS = ("krios", "talos", "glacios")
# per session: movies (purged at day 61), stacks (moved to capacity at day 14), the rest kept
MOVIES, STACKS, KEPT = 150, 10, 90
SESSIONS_EARLY = ("alice_{inst}_0101", "bob_{inst}_0102")  # written while the catalog is up
SESSIONS_LATE = ("carol_{inst}_0103", "dave_grid_0104")  # written while it is down (dave's: one name, 3 instruments)
HOLDS = (("dave_grid_0104", "talos"), ("alice_glacios_0101", None))  # placed after the warnings


def session_files(session: str, rng: random.Random) -> dict[str, bytes]:
    names = [f"m_{k:04d}_fractions.mrc" for k in range(MOVIES)]
    names += [f"s_{k:04d}.dat" for k in range(STACKS)] + [f"n_{k:04d}.tif" for k in range(KEPT)]
    return {f"{session}/{n}": rng.randbytes(rng.randint(64, 3000)) for n in names}


def write_files(watch: Path, files: dict[str, bytes]) -> None:
    """As an instrument does: each file written, then renamed into its final name."""
    for rel, data in files.items():
        p = watch / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name("." + p.name + ".part")
        tmp.write_bytes(data)
        tmp.rename(p)


def outbox_depth(state: Path) -> int:
    db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def listing(s3: SeaweedS3, bucket: str, prefix: str) -> dict[str, str]:
    """key below `prefix` -> ETag (the MD5 of a single-part object) of every object stored but the
    instruments' claims."""
    c: Any = s3.client()
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            if o["Key"].endswith("/~acqd-claim.json"):
                continue
            out[o["Key"][len(prefix) + 1 :]] = o["ETag"].strip('"')
    return out


def held(inst: str, rel: str) -> bool:
    session = rel.partition("/")[0]
    return any(session == s and (i is None or i == inst) for s, i in HOLDS)


def test_a_fleet_of_three_daemons_a_catalog_outage_and_a_killed_hub(
    pg_server: Postgres, catalog_db: str, s3_server: SeaweedS3, tmp_path: Path
) -> None:
    rng = random.Random(16)
    bucket = s3_server.bucket(f"fleet-{uuid.uuid4().hex[:12]}")
    opts = ", ".join(f"{k}: {v}" for k, v in s3_server.options().items())
    tiers = (
        f'  central: {{url: "s3://{bucket}/facility", options: {{{opts}}}}}\n'
        f'  capacity: {{url: "s3://{bucket}/capacity", options: {{{opts}}}}}\n'
    )
    (tmp_path / "policy.yaml").write_text(POLICY.replace("  default:", "  caps: {maxItemsPerSweep: 1000}\n  default:"))
    expected: dict[str, dict[str, bytes]] = {inst: {} for inst in INSTRUMENTS}
    cfgs = {
        inst: daemon_config(tmp_path, inst, catalog_db, pg_server, tiers, "hub", ", readback: 1s")
        for inst in INSTRUMENTS
    }
    states = {inst: tmp_path / inst / "state" for inst in INSTRUMENTS}
    ok(run_acqd("catalog", "migrate", "--config", str(cfgs["krios"])))

    def catalogued() -> int:
        return int(pg_rows(pg_server, catalog_db, "SELECT count(*) FROM acqd.copies WHERE state = 'verified'")[0][0])

    def all_verified(inst: str) -> bool:
        st = journal_states(states[inst])
        return len(st) == len(expected[inst]) and set(st.values()) == {"verified"}

    t_start = time.monotonic()
    took: dict[str, float] = {}  # phase -> seconds since the start (printed: figures, not asserted)

    def mark(phase: str) -> None:
        took[phase] = round(time.monotonic() - t_start, 1)

    daemons = {inst: Background("run", "--config", str(cfgs[inst])) for inst in INSTRUMENTS}
    try:
        for inst in INSTRUMENTS:
            for s in SESSIONS_EARLY:
                files = session_files(s.format(inst=inst), rng)
                expected[inst] |= files
                write_files(tmp_path / inst / "acq", files)
        total = sum(len(v) for v in expected.values())
        for inst, d in daemons.items():
            wait_for(lambda inst=inst: all_verified(inst), 300, f"{inst}'s first sessions", d, states[inst])  # type: ignore[misc]
        wait_for(lambda: catalogued() == total, 120, "the first sessions catalogued", daemons["krios"])
        mark("1,500 files shipped and catalogued")
        # the catalog's server goes away (as if it crashed); the instruments go on acquiring
        pg_server.stop("immediate")
        try:
            for inst in INSTRUMENTS:
                for s in SESSIONS_LATE:
                    files = session_files(s.format(inst=inst), rng)
                    expected[inst] |= files
                    write_files(tmp_path / inst / "acq", files)
            for inst, d in daemons.items():
                wait_for(
                    lambda inst=inst: all_verified(inst), 300, f"{inst} shipping without the catalog", d, states[inst]
                )  # type: ignore[misc]
                assert outbox_depth(states[inst]) >= 2 * len(SESSIONS_LATE) * (MOVIES + STACKS + KEPT)
            mark("1,500 more shipped, PostgreSQL down")
        finally:
            pg_server.start()
        total = sum(len(v) for v in expected.values())
        wait_for(lambda: catalogued() == total, 180, "the outboxes drained into the catalog", daemons["krios"])
        for inst, d in daemons.items():
            wait_for(lambda inst=inst: outbox_depth(states[inst]) == 0, 60, f"{inst}'s outbox empty", d)  # type: ignore[misc]
            assert "catalog" in d.stderr() and "publishing again" in d.stderr(), d.stderr()[-3000:]
        mark("outboxes drained")

        # -- every file catalogued exactly once, with the checksum of the bytes written -------------
        rows = pg_rows(
            pg_server,
            catalog_db,
            "SELECT f.instrument, f.relpath, f.version, f.state, f.checksum, f.size, c.tier, c.url, c.state,"
            " c.checksum, c.stored_bytes FROM acqd.files f JOIN acqd.copies c USING (instrument, journal_id, file_id)",
        )
        assert len(pg_rows(pg_server, catalog_db, "SELECT 1 FROM acqd.files")) == total
        seen = Counter((r[0], r[1]) for r in rows)
        assert seen == Counter({(i, rel): 1 for i in INSTRUMENTS for rel in expected[i]})
        for inst, rel, version, fstate, fsum, size, tier, url, cstate, csum, stored in rows:
            data = expected[inst][rel]
            assert (version, fstate, size, tier, cstate, stored) == (
                1,
                "verified",
                len(data),
                "central",
                "verified",
                len(data),
            )
            assert fsum == csum == "xxh3-128:" + digest(data), (inst, rel)
            assert url == f"s3://{bucket}/facility/{inst}/{rel}"
        central = listing(s3_server, bucket, "facility")
        for inst in INSTRUMENTS:
            for rel, data in expected[inst].items():
                assert central[f"{inst}/{rel}"] == hashlib.md5(data).hexdigest(), (inst, rel)
        t0 = float(pg_rows(pg_server, catalog_db, "SELECT extract(epoch FROM max(verified_at)) FROM acqd.copies")[0][0])

        # -- the hub: transitions, warnings, holds, purges on a controllable clock -------------------
        box = Mailbox()
        with smtp_server(box) as port:
            hub_yaml = hub_config(tmp_path, catalog_db, pg_server, tiers, port, "lease: {ttl: 4s}\n")
            sweeps: list[tuple[float, int]] = []  # (day, last audit id) after each sweep
            mail: list[list[str]] = []  # recipients of each sweep's messages

            def sweep(days: float, env: dict[str, str] | None = None, rc: int = 0) -> str:
                """One sweep at `days`; its exit status checked; its log returned."""
                before = len(box.messages)
                r = hub_sweep(hub_yaml, t0, days, env=env, timeout=300)
                top = pg_rows(pg_server, catalog_db, "SELECT COALESCE(max(id), 0) FROM acqd.hub_audit")[0][0]
                sweeps.append((days, int(top)))
                mail.append([rcpt for rs, _ in box.messages[before:] for rcpt in rs])
                assert r.returncode == rc, f"sweep at day {days}: exit {r.returncode}\n{r.stderr[-4000:]}"
                return r.stderr

            sweep(13.9)
            assert box.messages == []
            assert listing(s3_server, bucket, "capacity") == {}
            sweep(14.1)  # the stacks move to capacity: copied, verified, deleted from central
            sweep(45.9)
            assert box.messages == []  # before the warning window: no mail
            sweep(47)  # the movies' warnings: one digest per owner, every instrument in it
            assert sorted(mail[-1]) == [f"{o}@lab.example" for o in OWNERS], mail[-1]
            text = box.to("dave@lab.example")[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert all(f"{inst}/dave_grid_0104" in text for inst in INSTRUMENTS), text
            for target, inst in HOLDS:
                args = ["--instrument", inst] if inst else []
                ok(
                    run_acqd(
                        "hold", target, "--hub", str(hub_yaml), "--until", "2999-01-01", "--reason", "paper", *args
                    )
                )
            sweep(48)
            sweep(60.9)  # warned at day 47, 14 days' lead: not before day 61
            assert pg_rows(pg_server, catalog_db, PURGES_SQL) == []
            # SIGKILLed after its 400th delete, before recording it
            sweep(62, env={**os.environ, "ACQD_CRASH_AT": "retention_after_delete:400"}, rc=-9)
            assert len(pg_rows(pg_server, catalog_db, PURGES_SQL)) == 399
            wait_for(lambda: pg_rows(pg_server, catalog_db, LEASE_EXPIRED_SQL) == [(True,)], 60, "the lease to expire")
            purgeable = {
                (i, rel) for i in INSTRUMENTS for rel in expected[i] if rel.endswith(".mrc") and not held(i, rel)
            }
            day = 62.0
            while len(pg_rows(pg_server, catalog_db, PURGES_SQL)) < len(purgeable) and day < 64:
                sweep(day)  # at most 1000 purges a sweep (the policy's cap)
                day += 0.25
            sweep(70)  # nothing left to do
            assert all(m == [] for i, m in enumerate(mail) if sweeps[i][0] != 47), mail
        mark(f"{len(sweeps)} hub sweeps")

        # -- nothing purged twice, early or while held -----------------------------------------------
        purges = pg_rows(pg_server, catalog_db, PURGES_SQL)
        done = Counter((inst, rel) for _, inst, rel in purges)
        assert set(done) == purgeable and max(done.values()) == 1
        resumed = pg_rows(
            pg_server,
            catalog_db,
            "SELECT count(*) FROM acqd.hub_audit WHERE action = 'retention.purged' AND detail ? 'resumed'",
        )
        assert resumed == [(1,)]  # the killed sweep's 400th delete: recorded by the next, not redone
        warned = {
            (inst, rel): (purge_at, sent_at, verified_at)
            for inst, rel, purge_at, sent_at, verified_at in pg_rows(
                pg_server,
                catalog_db,
                "SELECT f.instrument, f.relpath, w.purge_at, w.sent_at, h.verified_at FROM acqd.hub_warnings w"
                " JOIN acqd.hub_copies h ON h.id = w.copy JOIN acqd.files f"
                " ON (f.instrument, f.journal_id, f.file_id) = (h.instrument, h.journal_id, h.file_id)"
                " WHERE w.voided IS NULL",
            )
        }
        for audit_id, inst, rel in purges:
            at = t0 + next(d for d, top in sweeps if audit_id <= top) * DAY  # the clock of the sweep that purged it
            purge_at, sent_at, verified_at = warned[(inst, rel)]
            assert at >= purge_at >= sent_at + LEAD and purge_at >= verified_at + EXPIRY, (inst, rel)
        moved_n = len(INSTRUMENTS) * 4 * STACKS
        moves = pg_rows(pg_server, catalog_db, "SELECT id FROM acqd.hub_audit WHERE action = 'retention.transitioned'")
        assert len(moves) == moved_n  # each once, all by the day-14.1 sweep (none on day 13.9)
        assert {next(d for d, top in sweeps if i <= top) for (i,) in moves} == {14.1}
        # -- storage holds exactly what the catalog says ---------------------------------------------
        central, capacity = listing(s3_server, bucket, "facility"), listing(s3_server, bucket, "capacity")
        for inst in INSTRUMENTS:
            for rel, data in expected[inst].items():
                key, md5 = f"{inst}/{rel}", hashlib.md5(data).hexdigest()
                if rel.endswith(".dat"):
                    assert key not in central and capacity[key] == md5, key
                elif (inst, rel) in purgeable:
                    assert key not in central, key
                else:  # kept, or a movie under a hold
                    assert central[key] == md5, key
        # usage (`acqd hub usage`) counts what storage holds after the hub's actions
        doc = json.loads(ok(run_acqd("hub", "usage", "--json", "--config", str(hub_yaml))).stdout)
        want: dict[str, list[int]] = {"central": [0, 0], "capacity": [0, 0]}
        for inst in INSTRUMENTS:
            for rel, data in expected[inst].items():
                if (inst, rel) not in purgeable:
                    tier = want["capacity" if rel.endswith(".dat") else "central"]
                    tier[0], tier[1] = tier[0] + 1, tier[1] + len(data)
        assert {t["tier"]: [t["files"], t["bytes"]] for t in doc["tiers"]} == want

        # -- each daemon learns what the hub did to its copies (the catalog read back into its journal)
        def copy_states(inst: str) -> Counter[tuple[str, str]]:
            db = sqlite3.connect(f"file:{states[inst] / 'journal.sqlite'}?mode=ro", uri=True)
            try:
                return Counter(db.execute("SELECT tier, state FROM copies").fetchall())
            finally:
                db.close()

        for inst, d in daemons.items():
            gone = sum(1 for i, _ in purgeable if i == inst)
            want_states = Counter(
                {
                    ("central", "purged"): gone,
                    ("central", "moved"): 4 * STACKS,
                    ("capacity", "verified"): 4 * STACKS,
                    ("central", "verified"): len(expected[inst]) - gone - 4 * STACKS,
                }
            )
            wait_for(
                lambda inst=inst, w=want_states: copy_states(inst) == w, 120, f"{inst} to read the hub's actions", d
            )  # type: ignore[misc]
            wait_for(lambda inst=inst: outbox_depth(states[inst]) == 0, 60, f"{inst}'s outbox empty", d)  # type: ignore[misc]
        mark("journals agree with the hub")
        # the fixity check no longer calls the purged copies missing; a moved stack restores from capacity
        ok(run_acqd("verify", "--config", str(cfgs["talos"]), timeout=300))
        out = tmp_path / "restored.dat"
        ok(run_acqd("restore", "--config", str(cfgs["krios"]), "alice_krios_0101/s_0003.dat", str(out)))
        assert out.read_bytes() == expected["krios"]["alice_krios_0101/s_0003.dat"]
        # the daemons' rows now agree with the hub's; the hub takes none of them in a second time
        daemon_rows = dict(
            pg_rows(pg_server, catalog_db, "SELECT c.tier || ':' || c.state, count(*) FROM acqd.copies c GROUP BY 1")
        )
        assert daemon_rows == {
            "central:purged": len(purgeable),
            "central:moved": moved_n,
            "capacity:verified": moved_n,
            "central:verified": total - len(purgeable) - moved_n,
        }
        hub_rows = pg_rows(pg_server, catalog_db, "SELECT count(*) FROM acqd.hub_copies")
        with smtp_server(box) as port:
            hub_yaml = hub_config(tmp_path, catalog_db, pg_server, tiers, port, "lease: {ttl: 4s}\n")
            log = sweep(70.5)
        assert pg_rows(pg_server, catalog_db, "SELECT count(*) FROM acqd.hub_copies") == hub_rows
        assert "0 warned in 0 digest(s), 0 moved, 0 purged" in log and "do not manage" not in log, log
        doc = json.loads(ok(run_acqd("hub", "usage", "--json", "--config", str(hub_yaml))).stdout)
        assert {t["tier"]: [t["files"], t["bytes"]] for t in doc["tiers"]} == want
        states_now = dict(pg_rows(pg_server, catalog_db, "SELECT state, count(*) FROM acqd.hub_copies GROUP BY state"))
        assert states_now == {"purged": len(purgeable), "moved": moved_n, "verified": total - len(purgeable)}
    finally:
        codes = {inst: d.terminate() for inst, d in daemons.items()}
    print("fleet phases (s since the daemons started):", took)
    for code, err in codes.values():
        assert code == 0, err[-3000:]
        assert "owned by the facility hub" in err  # the daemons never swept
