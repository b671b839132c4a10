"""Hold records on the tiers (acqd.holdledger): what a journal restored from a backup, or a tier
that was down, gets back. Real folders as tiers, a real SQLite journal."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from acqd import holdledger
from acqd import journal as jr
from acqd.journal import Journal
from acqd.storage import open_tier
from acqd.storage.base import Tier
from tests.servers import SeaweedS3, Sshd

DAY = 86400.0


def _tiers(tmp_path: Path) -> dict[str, Tier]:
    out = {}
    for name in ("central", "capacity"):
        (tmp_path / name).mkdir()
        out[name] = open_tier(name, f"file://{tmp_path / name}")
    return out


def test_a_hold_comes_back_from_either_tier_and_a_release_follows(tmp_path: Path) -> None:
    tiers = _tiers(tmp_path)
    j = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        jr.add_hold(j, "alice_0101", 1000 * DAY, "paper revision", 10 * DAY, root="/acq")
        jr.add_hold(j, "bob_0102/movie.mrc", 500 * DAY, "reprocessing", 11 * DAY, root="/acq")
        done = holdledger.sync(j, tiers.values(), "krios")
        assert done.written == 4 and not done.problems and not done.restored
        names = sorted(p.name for p in (tmp_path / "central" / "krios" / "~acqd-holds").iterdir())
        assert len(names) == 2 and all(n.endswith(".json") for n in names)
        # a journal that never had them (a backup from before, or a new state disk) gets them back
        shutil.rmtree(tmp_path / "central" / "krios")  # and one tier lost its records: the other has them
    finally:
        j.close()
    fresh = Journal(tmp_path / "state2" / "journal.sqlite")
    try:
        done = holdledger.sync(fresh, tiers.values(), "krios")
        assert sorted(h.target for h in done.restored) == ["alice_0101", "bob_0102/movie.mrc"]
        assert done.written == 2  # central gets its records back
        active = jr.active_holds(fresh, 100 * DAY)
        assert sorted((t, u, why, root) for t, u, why, root in active) == [
            ("alice_0101", 1000 * DAY, "paper revision", "/acq"),
            ("bob_0102/movie.mrc", 500 * DAY, "reprocessing", "/acq"),
        ]
        assert holdledger.sync(fresh, tiers.values(), "krios").restored == []  # once, not at every sync
        # a release is recorded too, and a journal that still has the hold in force learns it
        jr.release_hold(fresh, "bob_0102/movie.mrc", 120 * DAY)
        holdledger.sync(fresh, tiers.values(), "krios")
    finally:
        fresh.close()
    old = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        done = holdledger.sync(old, tiers.values(), "krios")
        assert [h.target for h in done.released] == ["bob_0102/movie.mrc"]
        assert [t for t, *_ in jr.active_holds(old, 130 * DAY)] == ["alice_0101"]
    finally:
        old.close()


def test_a_tier_that_is_down_is_named_and_gets_its_records_later(tmp_path: Path) -> None:
    tiers = _tiers(tmp_path)
    j = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        jr.add_hold(j, "carol_0103", 300 * DAY, "thesis", 5 * DAY, root="/acq")
        shutil.rmtree(tmp_path / "capacity")  # the tier's mount is gone (root ignores permissions: a file)
        (tmp_path / "capacity").write_text("not a folder")
        done = holdledger.sync(j, tiers.values(), "krios")
        assert done.written == 1 and len(done.problems) == 1 and "capacity" in done.problems[0]
        (tmp_path / "capacity").unlink()
        (tmp_path / "capacity").mkdir()
        done = holdledger.sync(j, tiers.values(), "krios")
        assert done.written == 1 and not done.problems
        [rec] = (tmp_path / "capacity" / "krios" / "~acqd-holds").iterdir()
        assert json.loads(rec.read_text())["target"] == "carol_0103"
    finally:
        j.close()


def test_a_damaged_record_is_skipped_and_the_others_still_count(tmp_path: Path) -> None:
    tiers = _tiers(tmp_path)
    j = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        jr.add_hold(j, "dave_0104", 300 * DAY, "review", 5 * DAY, root="/acq")
        holdledger.sync(j, tiers.values(), "krios")
    finally:
        j.close()
    for name in ("central", "capacity"):
        folder = tmp_path / name / "krios" / "~acqd-holds"
        (folder / "0123.json").write_text("{not json")
        # JSON's NaN: a record whose name matches, which the journal's NOT NULL column refuses
        nan = holdledger.LedgerHold("/acq", "dave_0104", float("nan"), "forged", 6 * DAY)
        (folder / f"{nan.key}.json").write_bytes(nan.encode())
        # a record of 8 MiB under a matching name (the key does not cover the reason): not read whole
        big = holdledger.LedgerHold("/acq", "dave_0104", 400 * DAY, "x" * (8 << 20), 7 * DAY)
        (folder / f"{big.key}.json").write_bytes(big.encode())
    fresh = Journal(tmp_path / "state2" / "journal.sqlite")
    try:
        done = holdledger.sync(fresh, tiers.values(), "krios")
        assert [h.target for h in done.restored] == ["dave_0104"] and not done.problems
    finally:
        fresh.close()


def test_a_release_marker_written_at_the_destination_does_not_lift_a_hold_in_force(tmp_path: Path) -> None:
    """Anyone who can write to one tier can write `KEY.released.json` there (the key is in the hold's
    record, readable there). Obeyed, it lifts the hold in the journal, and the retention sweep then
    purges the held data on every tier, the ones the writer cannot touch included. A release record
    counts only if every tier of the daemon has it (as the daemon writes them), so it gives nobody a
    power over the data they do not already have."""
    tiers = _tiers(tmp_path)
    j = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        jr.add_hold(j, "erin_0105", 1000 * DAY, "legal hold", 10 * DAY, root="/acq")
        holdledger.sync(j, tiers.values(), "krios")
        folder = tmp_path / "capacity" / "krios" / "~acqd-holds"  # the one tier the writer can write to
        [rec] = folder.iterdir()
        (folder / rec.name.replace(".json", ".released.json")).write_text(json.dumps({"released": 11 * DAY}))
        done = holdledger.sync(j, tiers.values(), "krios")
        assert done.released == [] and [h.target for h in done.ignored_releases] == ["erin_0105"]
        assert [t for t, *_ in jr.active_holds(j, 20 * DAY)] == ["erin_0105"]
        # nor when the other tier cannot be read at that sweep
        shutil.rmtree(tmp_path / "central")
        (tmp_path / "central").write_text("not a folder")
        done = holdledger.sync(j, tiers.values(), "krios")
        assert done.released == [] and done.problems
        assert [t for t, *_ in jr.active_holds(j, 20 * DAY)] == ["erin_0105"]
    finally:
        j.close()
    # a journal that lacks the hold (restored from before it): the hold comes back, in force
    fresh = Journal(tmp_path / "state2" / "journal.sqlite")
    try:
        done = holdledger.sync(fresh, tiers.values(), "krios")
        assert [h.target for h in done.restored] == ["erin_0105"]
        assert [t for t, *_ in jr.active_holds(fresh, 20 * DAY)] == ["erin_0105"]
    finally:
        fresh.close()


def test_hold_records_on_object_storage_and_sftp(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The records' folder `~acqd-holds` (a `~` name) listed, read and written on S3 (SeaweedFS) and
    SFTP (OpenSSH) as on a folder: a fresh journal gets the hold back from either."""
    s3: SeaweedS3 = request.getfixturevalue("s3_server")
    sshd: Sshd = request.getfixturevalue("sshd_server")
    bucket = s3.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    tiers = {
        "central": open_tier("central", f"s3://{bucket}/central", s3.options()),
        "capacity": open_tier("capacity", sshd.url(tmp_path / "sftp"), sshd.options()),
    }
    try:
        j = Journal(tmp_path / "state" / "journal.sqlite")
        try:
            jr.add_hold(j, "frank_0106/movie 1~a.mrc", 300 * DAY, "review", 5 * DAY, root="/acq")
            done = holdledger.sync(j, tiers.values(), "krios")
            assert done.written == 2 and not done.problems, done.problems
            assert holdledger.sync(j, tiers.values(), "krios").written == 0  # seen there: not written again
        finally:
            j.close()
        for lost in ("central", "capacity"):
            fresh = Journal(tmp_path / f"state-{lost}" / "journal.sqlite")
            try:
                only = [t for n, t in tiers.items() if n != lost]
                done = holdledger.sync(fresh, only, "krios")
                assert [h.target for h in done.restored] == ["frank_0106/movie 1~a.mrc"] and not done.problems
            finally:
                fresh.close()
    finally:
        for t in tiers.values():
            t.close()


def test_hold_records_do_not_wait_for_a_tiers_bandwidth_schedule(tmp_path: Path) -> None:
    """A tier limited to 1 B/s (a schedule that all but closes the link in working hours): a record of
    ~300 bytes booked against it would hold the retention sweep (which syncs the records first) for
    minutes per hold. The records are a few hundred bytes of acqd's own: they do not book bandwidth."""
    from acqd.pace import Window
    from acqd.pacing import TierPacer

    tiers = _tiers(tmp_path)
    pacers = {}
    for name, t in tiers.items():
        pacer = pacers[name] = TierPacer((Window(limit=1),))

        def pace(n: int, pacer: TierPacer = pacer) -> float:
            wait = pacer.reserve(n)
            assert wait < 1, f"a hold record of {n} bytes waits {wait:.0f} s for the tier's bandwidth"
            return wait

        t.pace = pace
    j = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        for i in range(3):
            jr.add_hold(j, f"gina_010{i}", 300 * DAY, "review", 5 * DAY + i, root="/acq")
        done = holdledger.sync(j, tiers.values(), "krios")
        assert done.written == 6 and not done.problems
        assert all(p.waited == 0 for p in pacers.values()), {n: p.waited for n, p in pacers.items()}
    finally:
        j.close()


def test_acqd_hold_with_a_tier_that_does_not_answer_succeeds_and_says_so(tmp_path: Path) -> None:
    """A tier whose server accepts the connection and never answers (a hung S3 gateway): `acqd hold`
    placed the hold in the journal, then waited for the record on that tier for minutes (botocore's
    timeouts and retries: 6 min here) without having said that the hold was placed; an operator who
    gives up with ^C is left believing it failed. The command says the hold is placed first, waits for
    the tiers at most `--wait`, names the one that did not take the record and exits 0."""
    import socket
    import threading

    from tests.conftest import run_acqd, write_config

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except TimeoutError:
                continue

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    acq, central = tmp_path / "acq", tmp_path / "central"
    (acq / "alice_0101").mkdir(parents=True)
    central.mkdir()
    port = silent.getsockname()[1]
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"instrument: krios\nstate_dir: {tmp_path}/state\nwatch:\n  - {{path: {acq}}}\n"
        f"tiers:\n  central: {{url: 'file://{central}'}}\n"
        f"  capacity: {{url: 's3://nobucket/cap', options: {{endpoint_url: 'http://127.0.0.1:{port}'}}}}\n",
    )
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")
    try:
        r = run_acqd(
            "hold",
            "alice_0101",
            "--until",
            "2099-01-01",
            "--reason",
            "paper",
            "--config",
            str(cfg),
            "--wait",
            "3s",
            env=env,
        )
    finally:
        stop.set()
        th.join()
        for c in held:
            c.close()
        silent.close()
    assert r.returncode == 0, r.stderr
    assert "held alice_0101 until the end of 2099-01-01 everywhere on Earth" in r.stdout
    assert "tier capacity" in r.stderr and "the daemon's next retention sweep records it" in r.stderr, r.stderr
    assert len(list((central / "krios" / "~acqd-holds").iterdir())) == 1  # the tier that answered has it
    r = run_acqd("hold", "--list", "--config", str(cfg))
    assert "alice_0101" in r.stdout and "paper" in r.stdout


def test_a_sweep_reads_only_the_records_it_has_not_read_before(tmp_path: Path) -> None:
    """Records are never rewritten, so each is read once per process: a sweep (which syncs first)
    lists the records' folder and reads only new names. It read every record of every tier at every
    sweep: 2,000 holds on SeaweedFS S3 were 13 s of GETs per sweep (BENCHMARKS.md)."""
    tiers = _tiers(tmp_path)
    opened: list[str] = []
    for t in tiers.values():
        real = t.open_read

        def counted(rel: str, real: Any = real) -> Any:
            opened.append(rel)
            return real(rel)

        t.open_read = counted  # type: ignore[method-assign]
    j = Journal(tmp_path / "state" / "journal.sqlite")
    try:
        for i in range(20):
            jr.add_hold(j, f"hana_{i:04}", 300 * DAY, "review", 5 * DAY + i, root="/acq")
        assert holdledger.sync(j, tiers.values(), "krios").written == 40
        jr.release_hold(j, "hana_0003", 6 * DAY)
        assert holdledger.sync(j, tiers.values(), "krios").written == 2
        assert opened == []  # what this process wrote, it knows
    finally:
        j.close()
    fresh = Journal(tmp_path / "state2" / "journal.sqlite")
    try:
        for t in tiers.values():  # another process (a restart): nothing known yet
            holdledger._READ.pop(t, None)
        assert len(holdledger.sync(fresh, tiers.values(), "krios").restored) == 20
        assert len(opened) == 42
        opened.clear()
        for _ in range(3):
            assert holdledger.sync(fresh, tiers.values(), "krios").restored == []
        assert opened == []
        # a new record on one tier (another process's hold) is read, once
        other = holdledger.LedgerHold("/acq", "ivan_0200", 300 * DAY, "other", 7 * DAY)
        folder = tmp_path / "capacity" / "krios" / "~acqd-holds"
        (folder / f"{other.key}.json").write_bytes(other.encode())
        assert [h.target for h in holdledger.sync(fresh, tiers.values(), "krios").restored] == ["ivan_0200"]
        assert len(opened) == 1
    finally:
        fresh.close()


def test_hold_records_do_not_make_a_new_tier_look_like_another_daemons_data(tmp_path: Path) -> None:
    """A daemon claims the instrument's prefix on a tier before its first write, and refuses one that
    already holds objects its journal does not know (`acqd adopt`). A hold record is no such data: a
    hold placed before the first start (or a tier that was down at the start, whose records the first
    sweep writes before the claim) must not make the daemon refuse the tier."""
    from tests.conftest import run_acqd, tree, write_config

    acq, central = tmp_path / "acq", tmp_path / "central"
    (acq / "alice_0101").mkdir(parents=True)
    (acq / "alice_0101" / "movie.mrc").write_bytes(os.urandom(20_000))
    central.mkdir()
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"instrument: krios\nstate_dir: {tmp_path}/state\nwatch:\n  - {{path: {acq}}}\n"
        f"tiers:\n  central: {{url: 'file://{central}'}}\n",
    )
    r = run_acqd("hold", "alice_0101", "--until", "2099-01-01", "--reason", "paper", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert list((central / "krios" / "~acqd-holds").iterdir())
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    assert any(p.endswith("movie.mrc") for p in tree(central)), r.stderr


def test_hold_records_are_never_written_into_a_tier_folder_that_is_not_this_journals(tmp_path: Path) -> None:
    """`acqd hold` wrote its records into a tier's folder swapped for an empty one (a share not
    mounted: the records land on the local disk, the share never gets them) and into a folder another
    journal claims; the daemon refuses both. The hold is in the journal all the same; the command
    warns, names the tier and writes nothing there; once the right folder is back its records go there."""
    from tests.conftest import run_acqd, tree, write_config

    acq, central = tmp_path / "acq", tmp_path / "central"
    (acq / "alice_0101").mkdir(parents=True)
    (acq / "alice_0101" / "movie.mrc").write_bytes(os.urandom(20_000))
    central.mkdir()
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"instrument: krios\nstate_dir: {tmp_path}/state\nwatch:\n  - {{path: {acq}}}\n"
        f"tiers:\n  central: {{url: 'file://{central}'}}\n",
    )
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    central.rename(tmp_path / "share")
    central.mkdir()  # the mount point, nothing mounted on it
    r = run_acqd("hold", "alice_0101", "--until", "2099-01-01", "--reason", "paper", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "tier central" in r.stderr and "not even its claim" in r.stderr, r.stderr
    assert not tree(central), "hold records written into the empty mount point"
    r = run_acqd("hold", "--list", "--config", str(cfg))
    assert "alice_0101" in r.stdout, r.stdout + r.stderr  # in force all the same
    # another journal's claim there
    central.rmdir()
    (tmp_path / "share").rename(central)
    claim = central / "krios" / "~acqd-claim.json"
    doc = json.loads(claim.read_text())
    claim.write_text(json.dumps({**doc, "journal_id": uuid.uuid4().hex}))
    holds = central / "krios" / "~acqd-holds"
    before = sorted(p.name for p in holds.iterdir()) if holds.exists() else []
    r = run_acqd("hold", "alice_0101/movie.mrc", "--until", "2099-01-01", "--reason", "x", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "claimed by another journal" in r.stderr, r.stderr
    assert (sorted(p.name for p in holds.iterdir()) if holds.exists() else []) == before
    # its own claim back: the records of both holds are written
    claim.write_text(json.dumps(doc))
    r = run_acqd("hold", "--release", "alice_0101/movie.mrc", "--config", str(cfg))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert len([p for p in holds.iterdir() if not p.name.endswith(".released.json")]) == 2


def test_the_owner_pages_sync_counts_a_release_only_on_every_tier_even_those_it_leaves_alone(
    tmp_path: Path,
) -> None:
    """`acqd owner-page` syncs the records after a hold is placed or released there. With a tier it
    leaves alone (claimed by another journal), it counted only the others: a release record forged on
    the one left lifted the hold (a stranger's run). A release counts only if every tier has it."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from acqd.cli import _owner_page_records
    from acqd.naming import claim_name

    tiers = _tiers(tmp_path)
    j = Journal(tmp_path / "state" / "journal.sqlite")
    jexec, tier_io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    try:
        jr.add_hold(j, "s1", 1000 * DAY, "paper", 10 * DAY, root="/acq")
        holdledger.sync(j, tiers.values(), "krios")
        [(key, _row)] = [(k, v) for k, v in holdledger.journal_holds(j).items()]
        forged = tmp_path / "central" / holdledger._rel("krios", key, released=True)
        forged.write_text(json.dumps({"released": 20 * DAY}))  # by anyone who can write to one tier
        other = tmp_path / "capacity" / claim_name("krios")
        other.parent.mkdir(parents=True, exist_ok=True)
        other.write_text(
            json.dumps(
                {
                    "schema": "acqd-claim/1",
                    "instrument": "krios",
                    "machine_id": "m",
                    "host": "h",
                    "journal_id": uuid.uuid4().hex,
                    "state_dir": "/elsewhere",
                    "since": "2026-01-01T00:00:00Z",
                }
            )
        )
        asyncio.run(_owner_page_records(j, jexec, tier_io, list(tiers.values()), "krios"))
        assert [t for t, *_ in jr.active_holds(j, 30 * DAY)] == ["s1"], "the hold was lifted by one tier's record"
        held = tmp_path / "capacity" / "krios" / "~acqd-holds"
        assert not any(p.name.endswith(".released.json") for p in held.iterdir())
    finally:
        jexec.shutdown()
        tier_io.shutdown()
        j.close()
