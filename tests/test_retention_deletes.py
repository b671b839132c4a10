"""Retention deletes only what it verified: ways a purge or a transition could delete what it must not
(found by an adversarial review, eighth session), each fixed and kept fixed here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from acqd import journal as jr
from acqd.config import Config
from acqd.daemon import Daemon, build_tiers, journal_path
from acqd.journal import Journal
from acqd.policy.model import DAY
from acqd.storage.s3 import META_CHECKSUM
from tests.servers import SeaweedS3
from tests.test_retention import FILES, Setup, make_runner, make_setup, sweep_days
from tests.test_safeguards import _runner as retention_runner

SCRATCH = """\
apiVersion: acqd/v1
kind: RetentionPolicy
metadata: {name: scratch}
spec:
  tiers: [central]
  owners: {fallback: facility@lab.example}
  rules:
    - name: scratch
      match: {glob: "*/run1"}
      expiration: {after: 10d}
      warn: 2d
      notify: [fallback]
  default: {name: keep}
"""


@pytest.fixture
async def movies(tmp_path: Path) -> AsyncIterator[Setup]:
    """test_retention's setting: a Krios's sessions shipped to central, a capacity tier, a policy."""
    async for st in make_setup(tmp_path, FILES):
        yield st


def _s3_site(s3_server: SeaweedS3, tmp_path: Path) -> tuple[Config, Path, str]:
    """A Krios shipping <tmp>/acq to a fresh bucket's `central/`, release on, the SCRATCH policy."""
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    watch = tmp_path / "acq"
    (watch / "sess").mkdir(parents=True)
    (tmp_path / "policy.yaml").write_text(SCRATCH)
    cfg = Config.model_validate(
        {
            "instrument": "krios",
            "state_dir": str(tmp_path / "state"),
            "policy": str(tmp_path / "policy.yaml"),
            "watch": [{"path": str(watch), "settle": "0.2s", "placement": {"release_local": "after_verify"}}],
            "tiers": {"central": {"url": f"s3://{bucket}/central", "options": s3_server.options()}},
        }
    )
    return cfg, watch, bucket


async def _sweep_scratch(cfg: Config) -> int:
    """The daemon's retention sweeps from day 7 to 12 after the newest copy: how many it purged."""
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(cfg.state_dir))
    try:
        t0 = max(r.copy.verified_at or 0 for r in jr.retention_items(j))
        runner = retention_runner(cfg, j, jexec, io)
        purged = 0
        for d in range(7, 13):
            purged += (await runner.sweep(t0 + d * DAY + 60)).purged
        return purged
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_an_s3_purge_of_a_file_never_deletes_the_copies_stored_below_its_name(
    s3_server: SeaweedS3, tmp_path: Path
) -> None:
    """On S3 a key can be an object and a prefix at once. The acquisition PC wrote a file
    `sess/run1` (shipped, verified, released), later a folder of the same name `sess/run1/` with a
    movie in it (shipped under `krios/sess/run1/x_fractions.mrc`, released: its only copy is at the
    destination; the policy keeps it for ever). The purge of the file `run1` must delete that one
    object. `Tier.remove_any` asked s3fs `isdir` (true: objects exist below `run1/`) and removed the
    name recursively: the kept movie's only copy went with it. Now the copy's layout says what it is."""
    cfg, watch, _ = _s3_site(s3_server, tmp_path)
    (watch / "sess/run1").write_bytes(b"scratch " * 1000)
    res = await Daemon(cfg, once=True, retry_for=120).run(install_signals=False)
    assert res.stats.verified == 1 and not (watch / "sess/run1").exists()  # released
    (watch / "sess/run1").mkdir()
    (watch / "sess/run1/x_fractions.mrc").write_bytes(b"the only copy " * 1000)
    res = await Daemon(cfg, once=True, retry_for=120).run(install_signals=False)
    assert res.stats.verified == 1 and not (watch / "sess/run1/x_fractions.mrc").exists()  # released
    tier = build_tiers(cfg)["central"]
    assert tier.exists("krios/sess/run1/x_fractions.mrc")

    purged = await _sweep_scratch(cfg)
    left = [p for p in tier.find("krios") if "~acqd" not in p]
    assert purged == 1 and "krios/sess/run1" not in left  # the file run1: purged, as the policy says
    # the movie below the same name: kept by the policy, its source released long ago
    assert "krios/sess/run1/x_fractions.mrc" in left, f"the purge of run1 deleted another file's only copy: {left}"


async def test_a_purge_never_deletes_an_object_that_replaced_the_verified_copy(movies: Setup) -> None:
    """The live object is "re-checked just before a delete" (README); the purge only asked whether
    something existed under the name. After the movie moved to capacity, somebody put another file
    under its name there (a re-export, a restore from elsewhere: other bytes, another size). The
    object under the name is not the copy retention was told to delete: it is kept, and the copy is
    recorded missing."""
    s = movies
    rel = "alice_apoferritin_0101/FoilHole_1_fractions.mrc"
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        runner = make_runner(s, j, jexec, io)
        await sweep_days(s, range(14, 15), runner)  # moved to capacity
        await sweep_days(s, range(46, 47), runner)  # warned
        foreign = s.capacity / rel
        assert foreign.exists()
        foreign.unlink()
        foreign.write_bytes(b"not the verified copy: somebody else's bytes" * 50)
        res = await sweep_days(s, range(60, 61), runner)
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    assert res[60].purged >= 2  # the other movies, as the policy says
    assert foreign.exists(), "the purge deleted an object that is not the copy it verified"


async def test_an_s3_purge_never_deletes_an_object_of_the_same_size_that_replaced_the_copy(
    s3_server: SeaweedS3, tmp_path: Path
) -> None:
    """The purge's re-check looked at the size alone: an object of the same size put under the
    copy's name (a re-export with other bytes) was deleted as the copy. It now also compares the
    checksum the tier keeps with the object (S3 metadata, as the release's quick re-check does)."""
    cfg, watch, bucket = _s3_site(s3_server, tmp_path)
    (watch / "sess2").mkdir()
    for sess in ("sess", "sess2"):
        (watch / sess / "run1").write_bytes(b"scratch " * 1000)
    res = await Daemon(cfg, once=True, retry_for=120).run(install_signals=False)
    assert res.stats.verified == 2 and not (watch / "sess/run1").exists()
    client = s3_server.client()
    others = {}
    # one replaced without acqd's checksum, one with a wrong one
    for sess, meta in (("sess", {}), ("sess2", {META_CHECKSUM: "0" * 32})):
        key = f"central/krios/{sess}/run1"
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        others[key] = (f"{sess}: SOMEBODY ELSE'S BYTES ".encode() * size)[:size]
        client.put_object(Bucket=bucket, Key=key, Body=others[key], Metadata=meta)
    assert await _sweep_scratch(cfg) == 0
    for key, other in others.items():
        got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == other, f"the purge deleted {key}, an object of the same size that is not the copy it verified"


class Killed(BaseException):
    """What SIGKILL at a crash point leaves, in process: nothing after the point runs."""


async def _killed_after_a_delete(runner: Any, now: float, monkeypatch: Any) -> None:
    """A sweep at `now` killed at `retention_after_delete` (its first delete done, not recorded), as
    SIGKILL leaves it in process; the crash point is quiet again afterwards."""
    import acqd.retention as retention

    def kill_at(point: str) -> None:
        if point == "retention_after_delete":
            raise Killed(point)

    monkeypatch.setattr(retention, "crash_point", kill_at)
    with pytest.raises(Killed):
        await runner.sweep(now)
    monkeypatch.setattr(retention, "crash_point", lambda point: None)


async def test_a_daemon_killed_after_a_transitions_delete_records_the_move_at_its_next_sweep(
    movies: Setup, monkeypatch: Any
) -> None:
    """`retention_after_delete` in a transition: the new copy verified and recorded, the old one
    deleted, the old row not yet `moved`. The hub's store resumes (its `fence` says the step was
    begun); the daemon's journal kept no such record then, so its next sweep copied from the deleted
    old copy, failed, and failed again at every sweep: the move was never recorded, the journal kept a
    `verified` copy that did not exist, and five such failures suspended every later sweep before
    its purges (suspendErrorRatio). Now the journal records the step begun too, and the new copy being
    there, and verifying, is the proof."""
    s = movies
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        await _killed_after_a_delete(make_runner(s, j, jexec, io), s.t0 + 14 * DAY + 60, monkeypatch)
        (rel,) = [r.file.relpath for r in jr.retention_items(j) if r.copy.tier == "capacity"]  # the one killed
        assert (s.capacity / rel).exists() and not (s.central / rel).exists()
        res = await make_runner(s, j, jexec, io).sweep(s.t0 + 15 * DAY + 60)
        fid = next(r.file.id for r in jr.retention_items(j) if r.file.relpath == rel)
        copies = [(c.tier, c.state) for c in j.copies_of(fid)]
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    assert res.failed == 0, f"the interrupted transition fails again at every sweep: {copies}"
    assert sorted(copies) == [("capacity", "verified"), ("central", "moved")], copies


async def test_a_daemon_killed_after_a_purges_delete_records_the_purge_at_its_next_sweep(
    movies: Setup, monkeypatch: Any
) -> None:
    """`retention_after_delete` in a purge: the copy deleted, not yet recorded purged. The daemon's
    journal kept no record of the step begun, so the next sweep found the copy gone and marked it
    `missing` (nothing said, the file still counted verified with no copy anywhere: a stranger's
    review). The step is recorded as begun now, and the next sweep records the purge."""
    s = movies
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    j = await asyncio.get_running_loop().run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        for day in (14, 47):  # moved to capacity, then the owners warned two weeks ahead
            await make_runner(s, j, jexec, io).sweep(s.t0 + day * DAY + 60)
        movies = {r.file.id: r.copy.id for r in jr.retention_items(j) if r.copy.tier == "capacity"}
        assert len(movies) == 4, movies
        await _killed_after_a_delete(make_runner(s, j, jexec, io), s.t0 + 75 * DAY + 60, monkeypatch)
        res = await make_runner(s, j, jexec, io).sweep(s.t0 + 76 * DAY + 60)
        states = {(r.file.relpath, r.copy.tier): r.copy.state for r in jr.retention_items(j)}
        moved = {(c.tier, c.state) for fid in movies for c in j.copies_of(fid)}
        left = [j.get_meta(f"retention.begun.purge.{c}") for c in movies.values()]
    finally:
        await asyncio.get_running_loop().run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()
    assert res.failed == 0 and res.purged == 4, res
    assert moved == {("central", "moved"), ("capacity", "purged")}, moved  # none missing
    assert not any(k[1] == "capacity" for k in states), states  # no capacity copy still taken for verified
    assert left == [None] * 4  # each step finished


def _unmount(share: Path, away: Path) -> None:
    """The share a tier is on is unmounted: its content elsewhere, its mount point an empty folder."""
    share.rename(away)
    share.mkdir()


def _mount(share: Path, away: Path) -> None:
    share.rmdir()
    away.rename(share)


async def test_retention_never_moves_onto_or_forgets_copies_on_an_unmounted_share(movies: Setup) -> None:
    """The claim guard covered the pipeline, not retention: a transition onto a capacity share
    unmounted under the daemon copied the movies into its empty mount point on the local disk,
    verified them there and deleted the central copies (hidden, then, once the share mounted over
    them: the only copies); a purge on an unmounted tier found nothing and marked the copy missing
    (forgotten, although it is on the share). Both now look at the tier's claim afresh: the action
    fails, nothing is written or marked, and the next sweep with the share back does it."""
    from acqd import claims

    s = movies
    cap_share, central_share = s.capacity.parent, s.central.parent  # the tiers' folders (the mount points)
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        tiers = build_tiers(s.cfg)
        claim = claims.read_claim(tiers["capacity"], "krios")  # what the daemon's run claimed
        assert claim is not None
        guard = claims.Guard(claim, j, runs=j.runs())
        before = {p: p.read_bytes() for p in s.central.rglob("*_fractions.mrc")}
        # a hold (on a sum, kept anyway): its record goes to every tier at each sweep, not onto a mount point
        jr.add_hold(j, "alice_apoferritin_0101/FoilHole_1_DW.mrc", s.t0 + 400 * DAY, "figure 2", s.t0)

        _unmount(cap_share, cap_share.with_name("capacity-away"))
        res = await make_runner(s, j, jexec, io, guard=guard).sweep(s.t0 + 14 * DAY + 60)
        assert res.transitioned == 0 and res.failed == 4, res  # the four movies
        assert list(cap_share.iterdir()) == [], "a transition wrote onto the local disk under the mount point"
        assert {p: p.read_bytes() for p in before if p.exists()} == before  # every central copy kept
        failures = [str(d) for _, _, a, d in j.audit_log() if a == "retention.transition.failed"]
        assert len(failures) == 4 and all("has gone" in f for f in failures), failures
        _mount(cap_share, cap_share.with_name("capacity-away"))
        res = await make_runner(s, j, jexec, io, guard=guard).sweep(s.t0 + 15 * DAY + 60)
        assert res.transitioned == 4 and res.failed == 0, res

        res = await make_runner(s, j, jexec, io, guard=guard).sweep(s.t0 + 47 * DAY + 60)
        assert res.warned == 4 and res.purged == 0, res  # the owners warned two weeks ahead
        _unmount(central_share, central_share.with_name("central-away"))  # the sums' tier (kept for ever)
        _unmount(cap_share, cap_share.with_name("capacity-away"))  # the movies' tier at their purge
        res = await make_runner(s, j, jexec, io, guard=guard).sweep(s.t0 + 75 * DAY + 60)
        assert res.purged == 0 and res.failed == 4, res
        states = {(r.file.relpath, r.copy.tier): r.copy.state for r in jr.retention_items(j)}
        assert "missing" not in states.values(), states  # nothing forgotten while the share was away
        _mount(cap_share, cap_share.with_name("capacity-away"))
        _mount(central_share, central_share.with_name("central-away"))
        res = await make_runner(s, j, jexec, io, guard=guard).sweep(s.t0 + 76 * DAY + 60)
        assert res.purged == 4 and res.failed == 0, res
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_share_unmounted_while_retention_copies_onto_it_keeps_the_old_copy(
    movies: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review (twelfth session): a transition looked at the tiers' claims once, before the
    copy. The capacity share unmounted while the movies were copied took them into its empty mount
    point, they verified there, were recorded and the central copies deleted: the only copies then
    hidden under the share once mounted again. The claims are looked at again after the copy is
    verified, before anything is recorded or deleted."""
    import shutil

    from acqd import claims
    from acqd import retention as retention_mod

    s = movies
    cap_share = s.capacity.parent
    away = cap_share.with_name("capacity-away")
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    real = retention_mod.copy_between
    gone: list[bool] = []

    def copy_between(src: Any, dst: Any, rel: str, tree: bool) -> Any:
        if not gone:  # the share goes away as the first copy starts
            gone.append(True)
            _unmount(cap_share, away)
        return real(src, dst, rel, tree)

    monkeypatch.setattr(retention_mod, "copy_between", copy_between)
    try:
        tiers = build_tiers(s.cfg)
        claim = claims.read_claim(tiers["capacity"], "krios")
        assert claim is not None
        guard = claims.Guard(claim, j, runs=j.runs())
        before = {p: p.read_bytes() for p in s.central.rglob("*_fractions.mrc")}
        res = await make_runner(s, j, jexec, io, guard=guard).sweep(s.t0 + 14 * DAY + 60)
        assert gone and res.transitioned == 0 and res.failed == 4, res
        assert {p: p.read_bytes() for p in before if p.exists()} == before  # every central copy kept
        states = {(r.file.relpath, r.copy.tier): r.copy.state for r in jr.retention_items(j)}
        assert all(t != "capacity" for _, t in states), states  # no copy recorded on the mount point
        shutil.rmtree(cap_share)  # what was written into the mount point is hidden by the share
        cap_share.mkdir()
        _mount(cap_share, away)
        monkeypatch.setattr(retention_mod, "copy_between", real)
        res = await make_runner(s, j, jexec, io, guard=guard).sweep(s.t0 + 15 * DAY + 60)
        assert res.transitioned == 4 and res.failed == 0, res
        assert all((s.capacity / p.relative_to(s.central)).exists() for p in before)
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_share_unmounted_during_a_claimless_sweep_keeps_every_old_copy(
    movies: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The facility hub keeps no claims (noticed in the twelfth session, fixed in the thirteenth): its
    only look at a local tier was "missing or empty while copies are recorded there". A capacity
    share unmounted while a movie was copied took the copy into its empty mount point, where it
    verified; the folder was then no longer empty, so the look passed, the copy was recorded and the
    central copy deleted, and every later move went the same way: the only copies hidden once the
    share mounts again. Each local tier's folder must now be the one the sweep first saw (its device
    and inode), or the action fails; the copy made into the mount point is taken back with the
    folders it made, so that the next sweep, the share still away, finds the tier's folder empty
    (a review found the folders left behind letting that sweep move everything onto the local disk)."""
    import shutil

    from acqd import retention as retention_mod

    s = movies
    cap_share = s.capacity.parent
    away = cap_share.with_name("capacity-away")
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    real = retention_mod.copy_between
    started: list[str] = []

    def copy_between(src: Any, dst: Any, rel: str, tree: bool) -> Any:
        started.append(rel)
        if len(started) == 3:  # the share goes away as the third copy starts: two are on it, recorded
            _unmount(cap_share, away)
        return real(src, dst, rel, tree)

    monkeypatch.setattr(retention_mod, "copy_between", copy_between)
    try:
        before = {p: p.read_bytes() for p in s.central.rglob("*_fractions.mrc")}
        res = await make_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)  # no guard: as the hub runs
        assert len(started) == 3 and res.transitioned == 2 and res.failed == 2, res
        moved = {r.file.relpath for r in jr.retention_items(j) if r.copy.tier == "capacity"}
        assert len(moved) == 2, moved
        kept = {p: b for p, b in before.items() if p.exists()}  # the two not moved: their central copies
        assert len(kept) == 2 and {p: p.read_bytes() for p in kept} == kept
        assert list(cap_share.rglob("*")) == [], "the copy made into the mount point, or its folders, left"
        failures = [str(d) for _, _, a, d in j.audit_log() if a == "retention.transition.failed"]
        # the third: its folder changed under it; the fourth: the folder not the sweep's first one either
        assert len(failures) == 2 and all("not the folder it was" in f for f in failures), failures
        res = await make_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 120)  # the share still away
        assert res.transitioned == 0 and res.failed == 2, res
        assert {p: p.read_bytes() for p in kept if p.exists()} == kept
        assert [p for p in cap_share.rglob("*") if p.is_file()] == [], "moved onto the local disk"
        states = {(r.file.relpath, r.copy.tier): r.copy.state for r in jr.retention_items(j)}
        assert sum(t == "capacity" for _, t in states) == 2, states
        shutil.rmtree(cap_share)  # the share mounted again
        cap_share.mkdir()
        _mount(cap_share, away)
        monkeypatch.setattr(retention_mod, "copy_between", real)
        res = await make_runner(s, j, jexec, io).sweep(s.t0 + 15 * DAY + 60)
        assert res.transitioned == 2 and res.failed == 0, res
        assert all((s.capacity / p.relative_to(s.central)).read_bytes() == b for p, b in before.items())
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_share_mounted_while_a_failed_move_takes_its_copy_back_keeps_what_it_holds(
    movies: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The take-back of a copy a failed move made in an unmounted share's mount point looked at the
    name, then deleted by path: a share mounted in between (noticed in the thirteenth session) lost
    the object under that name. The folders are held open before the look, and the delete goes
    through them: it takes the copy from the mount point, never the share's object."""
    import os as os_mod

    from acqd import retention as retention_mod

    s = movies
    cap_share = s.capacity.parent
    away, hidden = cap_share.with_name("capacity-away"), tmp_path / "mount-point-hidden"
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    real_copy, real_unlink = retention_mod.copy_between, os_mod.unlink
    started: list[str] = []
    theirs: dict[Path, bytes] = {}

    def copy_between(src: Any, dst: Any, rel: str, tree: bool) -> Any:
        started.append(rel)
        if len(started) == 3:  # the share goes away as the third copy starts; it holds an object of that name
            _unmount(cap_share, away)
            q = away / rel
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_bytes(b"the share's only copy")
            theirs[q] = q.read_bytes()
        return real_copy(src, dst, rel, tree)

    def unlink(path: Any, *a: Any, **kw: Any) -> None:
        if started[2:] and not hidden.exists() and os_mod.path.basename(str(path)) == os_mod.path.basename(started[2]):
            cap_share.rename(hidden)  # mounted again between the take-back's look and its delete
            away.rename(cap_share)
        real_unlink(path, *a, **kw)

    monkeypatch.setattr(retention_mod, "copy_between", copy_between)
    monkeypatch.setattr(os_mod, "unlink", unlink)
    monkeypatch.setattr(os_mod, "remove", unlink)
    try:
        before = {p: p.read_bytes() for p in s.central.rglob("*_fractions.mrc")}
        res = await make_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        # the third move fails (its folder changed under it); the fourth finds the share back, as the sweep began
        assert len(started) == 4 and res.transitioned == 3 and res.failed == 1 and hidden.exists(), res
        mine = {q.relative_to(away).as_posix(): b for q, b in theirs.items()}
        assert {r: (cap_share / r).read_bytes() for r in mine} == mine, "the share's object was deleted"
        assert [p for p in hidden.rglob("*") if p.is_file()] == [], "the copy in the mount point left"
        assert list(hidden.iterdir()) == [], "the folders it made left (the tier's folder, the mount point, stays)"
        third = s.central.parent / started[2]
        assert third.read_bytes() == before[third] and sum(p.exists() for p in before) == 1  # its old copy kept
    finally:
        monkeypatch.undo()
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_failed_claimless_move_never_takes_back_an_object_it_did_not_make(
    movies: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The take-back of a move whose new tier's folder changed (the test above) removes only what the
    move made. Here the sweep starts with the capacity share unmounted, and the share is mounted
    between the first copy and the look after it: under the copy's name on the share is another
    object (found by a review: it was deleted). It stays; the move fails; the old copy stays."""
    from acqd import retention as retention_mod

    s = movies
    cap_share = s.capacity.parent
    away, hidden = cap_share.with_name("capacity-away"), tmp_path / "mount-point-hidden"
    foreign = {}
    for p in s.central.rglob("*_fractions.mrc"):
        q = cap_share / p.relative_to(s.central.parent)
        q.parent.mkdir(parents=True, exist_ok=True)
        q.write_bytes(b"somebody else's only copy")
        foreign[q] = q.read_bytes()
    _unmount(cap_share, away)  # not mounted at the sweep's first look
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    real_look, real_copy = retention_mod.RetentionRunner._still_ours, retention_mod.copy_between
    copies: list[str] = []

    def copy_between(*a: Any) -> Any:
        out = real_copy(*a)
        copies.append(a[2])
        return out

    async def still_ours(self: Any, *tiers: Any, **kw: Any) -> Any:
        if len(copies) == 1 and not hidden.exists():  # mounted between the first copy and the look after it
            cap_share.rename(hidden)
            away.rename(cap_share)
        return await real_look(self, *tiers, **kw)

    monkeypatch.setattr(retention_mod, "copy_between", copy_between)
    monkeypatch.setattr(retention_mod.RetentionRunner, "_still_ours", still_ours)
    try:
        before = {p: p.read_bytes() for p in s.central.rglob("*_fractions.mrc")}
        res = await make_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        assert copies and hidden.exists() and res.transitioned == 0, res
        assert {q: q.read_bytes() for q in foreign if q.exists()} == foreign, "an object acqd did not make was deleted"
        assert {p: p.read_bytes() for p in before if p.exists()} == before  # every central copy kept
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_share_unmounted_and_mounted_again_during_one_copy_keeps_the_old_copy(
    movies: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The folder looks before and after a move see the same share when it went away during the copy
    and came back before the look after it (found by a review): the copy was made and verified in the
    mount point, now hidden under the share. The name must still show the object the move made (its
    device and inode), or the move fails and the old copy stays."""
    from acqd import retention as retention_mod

    s = movies
    cap_share = s.capacity.parent
    away, hidden = cap_share.with_name("capacity-away"), tmp_path / "mount-point-hidden"
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    real_look, real_copy = retention_mod.RetentionRunner._still_ours, retention_mod.copy_between
    copies: list[str] = []

    def copy_between(*a: Any) -> Any:
        if not copies:  # away during the first copy (which verifies in the mount point) ...
            _unmount(cap_share, away)
        copies.append(a[2])
        return real_copy(*a)

    async def still_ours(self: Any, *tiers: Any, **kw: Any) -> Any:
        if len(copies) == 1 and not hidden.exists():  # ... and back before the look after it
            cap_share.rename(hidden)
            away.rename(cap_share)
        return await real_look(self, *tiers, **kw)

    monkeypatch.setattr(retention_mod, "copy_between", copy_between)
    monkeypatch.setattr(retention_mod.RetentionRunner, "_still_ours", still_ours)
    try:
        before = {p: p.read_bytes() for p in s.central.rglob("*_fractions.mrc")}
        res = await make_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        first = copies[0]  # the tier's name for the copy, below its root
        assert hidden.exists() and res.failed == 1 and res.transitioned == len(before) - 1, res
        assert (s.central.parent / first).read_bytes() == before[s.central.parent / first], "the old copy deleted"
        moved = {r.copy.dest for r in jr.retention_items(j) if r.copy.tier == "capacity"}
        assert first not in moved and len(moved) == len(before) - 1, moved
        failures = [str(d) for _, _, a, d in j.audit_log() if a == "retention.transition.failed"]
        assert len(failures) == 1 and "not the copy this move verified" in failures[0], failures
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


async def test_a_share_mounted_again_between_two_sweeps_of_one_runner_is_its_folder_then(
    movies: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """A daemon's runner lives across sweeps, and its hold records are synced before each sweep's plan
    (and by the owner page between sweeps). Each sweep looks at its tiers' folders afresh: a share
    mounted again between two sweeps (another device and inode, the same content) is that sweep's
    folder, not a change (a review found the hold records of both tiers skipped after a remount)."""
    import logging
    import shutil

    s = movies
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        await loop.run_in_executor(jexec, jr.add_hold, j, "bob_ribosome_0102", s.t0 + 120 * DAY, "paper", s.t0)
        runner = make_runner(s, j, jexec, io)
        res = await runner.sweep(s.t0 + 14 * DAY + 60)
        assert res.transitioned > 0 and res.failed == 0, res
        for share in (s.central.parent, s.capacity.parent):  # mounted again: a new folder, the same content
            again = share.with_name(share.name + "-again")
            shutil.copytree(share, again)
            shutil.rmtree(share)
            again.rename(share)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="acqd.retention"):
            await runner.sync_holds()  # as the owner page does between sweeps
            res = await runner.sweep(s.t0 + 15 * DAY + 60)
        assert res.failed == 0, res
        said = [r.getMessage() for r in caplog.records if "not the folder it was" in r.getMessage()]
        assert said == [], said
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


def test_acqd_adopt_never_records_a_copy_outside_the_instruments_prefix(tmp_path: Path) -> None:
    """`acqd adopt` imports each session manifest's entries as verified copies, `dest` verbatim. A
    manifest is a file at the destination that anyone who can write there can edit (or a session
    folder copied in from another instrument's tree, its manifest fixed up by hand). An entry whose
    `dest` leaves the instrument's prefix (`..`, another instrument's name) becomes a copy that
    retention later purges or moves: `Tier.path` joins it to the root, and the delete goes
    wherever it points. Such entries are skipped (and `Tier.path` refuses `..`)."""
    import json

    from acqd import claims
    from acqd.storage import Tier

    central = tmp_path / "central"
    central.mkdir()
    (tmp_path / "thesis.tex").write_text("not acqd's")
    (central / "talos" / "s").mkdir(parents=True)
    (central / "talos" / "s" / "m.mrc").write_bytes(b"another instrument's only copy")
    tier = Tier("central", f"file://{central}")
    watch = str(tmp_path / "acq")
    doc = {
        "instrument": "krios",
        "watch_root": watch,
        "files": [
            {"source": "s/a.mrc", "dest": "../thesis.tex", "state": "released", "checksum": "0" * 32,
             "source_bytes": 10, "stored_bytes": 10, "layout": "copy", "codec": "none"},
            {"source": "s/b.mrc", "dest": "talos/s/m.mrc", "state": "released", "checksum": "0" * 32,
             "source_bytes": 10, "stored_bytes": 10, "layout": "copy", "codec": "none"},
        ],
    }  # fmt: skip
    tier.write_atomic("krios/s/~acqd-manifest.json", [json.dumps(doc).encode()])
    j = Journal(tmp_path / "journal.db")
    try:
        claim = claims.Claim("krios", "m", "h", "j", str(tmp_path), "now")
        claims.adopt({"central": tier}, claim, j, {watch: watch}, lambda p: None)
        dests = [r.copy.dest for r in jr.retention_items(j)]
    finally:
        j.close()
    assert all(d.startswith("krios/") and ".." not in d.split("/") for d in dests), dests


def test_a_tier_refuses_a_name_that_leaves_its_location(tmp_path: Path) -> None:
    """Whatever a journal or manifest says, a tier never reaches outside its root: `..` parts and
    absolute names are refused before the backend is asked (a delete of `../thesis.tex` deleted the
    file beside the tier)."""
    from acqd.errors import AcqdError
    from acqd.storage import Tier

    central = tmp_path / "central"
    central.mkdir()
    outside = tmp_path / "thesis.tex"
    outside.write_text("not acqd's")
    tier = Tier("central", f"file://{central}")
    for rel in ("../thesis.tex", "krios/../../thesis.tex", str(outside)):
        with pytest.raises(AcqdError, match="leaves the tier"):
            tier.remove_any(rel, tree=False)
        with pytest.raises(AcqdError, match="leaves the tier"):
            tier.open_read(rel)
    assert outside.read_text() == "not acqd's"
