"""Hold records on the tiers (acqd.holdledger): what a journal restored from a backup, or a tier
that was down, gets back. Real folders as tiers, a real SQLite journal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from acqd import holdledger
from acqd import journal as jr
from acqd.journal import Journal
from acqd.storage import open_tier
from acqd.storage.base import Tier

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
    fresh = Journal(tmp_path / "state2" / "journal.sqlite")
    try:
        done = holdledger.sync(fresh, tiers.values(), "krios")
        assert [h.target for h in done.restored] == ["dave_0104"] and not done.problems
    finally:
        fresh.close()
