"""The facility hub keeps no claims: a local tier is the tier only while its folder holds the marker
the operator put there once, with the share mounted (`acqd hub mark-tier`). A review of the hub's
first fix (the folder's device and inode within a sweep, thirteenth session) found seven ways a
network share's mount point (empty, or holding a stray file, or what a failed move left) was still
taken for the tier: each case below, with the hub's runner (no claims, markers on), ends with every
movie still where it can be read (central, or the mounted capacity share) and nothing recorded that
is not there. Unmounting is simulated as the kernel does it: what is written into the mount point
while the share is away stays there, hidden under the share once it is mounted again."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from acqd import journal as jr
from acqd import retention as retention_mod
from acqd.daemon import build_tiers, journal_path
from acqd.journal import Journal
from acqd.policy.model import DAY
from acqd.retention import RetentionRunner, mark_tier
from acqd.storage.errors import DestinationError
from tests.test_retention import FILES, Setup, make_runner, make_setup


@pytest.fixture
async def movies(tmp_path: Path) -> AsyncIterator[Setup]:
    """test_retention's setting: a Krios's sessions shipped to central, a capacity tier, a policy."""
    async for st in make_setup(tmp_path, FILES):
        yield st


class Share:
    """A network share mounted at `point`: its content in `away` while unmounted; what was put into the
    mount point while it was away is in `hidden` while the share is mounted."""

    def __init__(self, point: Path) -> None:
        self.point = point
        self.away = point.with_name(point.name + "-away")
        self.hidden = point.with_name(point.name + "-mount-point")
        self.hidden.mkdir()

    def unmount(self) -> None:
        self.point.rename(self.away)
        self.hidden.rename(self.point)

    def mount(self) -> None:
        self.point.rename(self.hidden)
        self.away.rename(self.point)


def mark(s: Setup) -> None:
    """`acqd hub mark-tier` for both tiers, the shares mounted."""
    for tier in build_tiers(s.cfg).values():
        mark_tier(tier, "facility")


def hub_runner(s: Setup, j: Journal, jexec: ThreadPoolExecutor, io: ThreadPoolExecutor) -> RetentionRunner:
    runner = make_runner(s, j, jexec, io)  # no guard: as the hub runs
    runner.markers = True
    return runner


def lost(s: Setup, before: dict[Path, bytes]) -> list[str]:
    """Movies whose bytes are nowhere to be read (central, or the mounted capacity share)."""
    out = []
    for p, b in before.items():
        q = s.capacity / p.relative_to(s.central)
        if not (p.exists() and p.read_bytes() == b) and not (q.exists() and q.read_bytes() == b):
            out.append(str(p.relative_to(s.central)))
    return out


def recorded_but_not_there(s: Setup, j: Journal) -> list[str]:
    """Copies the journal has verified on capacity that the mounted share does not hold."""
    return [
        r.copy.dest
        for r in jr.retention_items(j)
        if r.copy.tier == "capacity" and not (s.capacity.parent / r.copy.dest).exists()
    ]


@contextlib.asynccontextmanager
async def opened(s: Setup) -> AsyncIterator[tuple[Journal, ThreadPoolExecutor, ThreadPoolExecutor]]:
    """The daemon's journal with its thread, and two I/O threads, closed after."""
    jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
    loop = asyncio.get_running_loop()
    j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
    try:
        yield j, jexec, io
    finally:
        await loop.run_in_executor(jexec, j.close)
        jexec.shutdown()
        io.shutdown()


def _movies(s: Setup) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(s.central.rglob("*_fractions.mrc"))}


async def test_a_tiers_first_use_with_its_share_not_mounted_moves_nothing(movies: Setup) -> None:
    """No copies recorded on capacity yet (an fstab `nofail` mount with the NAS down at boot): the
    empty mount point passed every look; all four movies went onto the local disk."""
    s = movies
    mark(s)
    cap = Share(s.capacity.parent)
    cap.unmount()
    async with opened(s) as (j, jexec, io):
        before = _movies(s)
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        assert res.transitioned == 0 and res.failed == 4, res
        assert "no ~acqd-tier.json" in res.errors[0] and "mark-tier" in res.errors[0], res.errors
        assert list(s.capacity.parent.rglob("*")) == []  # nothing written into the mount point
        cap.mount()
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 15 * DAY + 60)
        assert res.transitioned == 4 and res.failed == 0, res
        assert lost(s, before) == [] and recorded_but_not_there(s, j) == []


async def test_a_stray_file_in_the_mount_point_is_not_the_tier(movies: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies on capacity; the share unmounted between sweeps; an admin's NOT-MOUNTED note in its
    mount point: "not empty" passed, three movies were recorded there and their central copies deleted."""
    s = movies
    mark(s)
    cap = Share(s.capacity.parent)
    (cap.hidden / "NOT-MOUNTED").write_text("the capacity share is not mounted\n")
    real = retention_mod.copy_between
    n: list[int] = []

    def copy_between(*a: Any) -> Any:
        n.append(1)
        if len(n) > 1:
            raise DestinationError("transient")  # only the first move succeeds in the first sweep
        return real(*a)

    async with opened(s) as (j, jexec, io):
        before = _movies(s)
        monkeypatch.setattr(retention_mod, "copy_between", copy_between)
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        assert res.transitioned == 1, res
        monkeypatch.setattr(retention_mod, "copy_between", real)
        cap.unmount()
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 15 * DAY + 60)
        assert res.transitioned == 0 and res.failed == 3, res
        cap.mount()
        assert lost(s, before) == [] and recorded_but_not_there(s, j) == []


async def test_a_copy_left_when_the_source_also_went_away_is_taken_back(
    movies: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Capacity went away as a copy started, central after the copy: the look after it failed on
    central first, and the copy in capacity's mount point stayed (then "not empty" at the next sweep).
    The new tier is looked at first now, and its copy taken back."""
    s = movies
    mark(s)
    cap, central = Share(s.capacity.parent), Share(s.central.parent)
    real = retention_mod.copy_between
    n: list[int] = []

    def copy_between(*a: Any) -> Any:
        n.append(1)
        if len(n) == 2:
            cap.unmount()
            out = real(*a)
            central.unmount()
            return out
        return real(*a)

    async with opened(s) as (j, jexec, io):
        before = _movies(s)
        monkeypatch.setattr(retention_mod, "copy_between", copy_between)
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        assert res.transitioned == 1 and res.failed == 3, res
        assert list(s.capacity.parent.rglob("*")) == [], "the copy made into the mount point left there"
        monkeypatch.setattr(retention_mod, "copy_between", real)
        central.mount()
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 15 * DAY + 60)
        assert res.transitioned == 0 and res.failed == 3, res
        cap.mount()
        assert lost(s, before) == [] and recorded_but_not_there(s, j) == []


async def test_what_a_copy_that_failed_in_the_mount_point_left_is_not_the_tier(
    movies: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The share went away as a copy started and the copy into the mount point failed (the local disk
    full: RLIMIT_FSIZE stands in for ENOSPC): its folders stayed, and the next sweep, the share still
    away, found the tier's folder not empty."""
    s = movies
    mark(s)
    cap = Share(s.capacity.parent)
    real = retention_mod.copy_between
    n: list[int] = []

    def copy_between(*a: Any) -> Any:
        n.append(1)
        if len(n) == 2:
            cap.unmount()
            old = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1000, old[1]))
            try:
                return real(*a)
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, old)
        return real(*a)

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        async with opened(s) as (j, jexec, io):
            before = _movies(s)
            monkeypatch.setattr(retention_mod, "copy_between", copy_between)
            res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
            assert res.transitioned == 1 and res.failed == 3, res
            monkeypatch.setattr(retention_mod, "copy_between", real)
            res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 15 * DAY + 60)  # the share still away
            assert res.transitioned == 0 and res.failed == 3, res
            cap.mount()
            assert lost(s, before) == [] and recorded_but_not_there(s, j) == []
    finally:
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)


async def test_a_leftover_copy_verified_while_the_share_was_away_is_not_recorded(
    movies: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole copy of a movie lay in the mount point, hidden under the share. During that movie's move
    the share went away (the name showed the leftover: not made by this move), the leftover verified,
    and the share came back before the look: the move was recorded, the central copy deleted, and the
    share held no copy. What was verified must still be under the name after the look."""
    s = movies
    mark(s)
    cap = Share(s.capacity.parent)
    before = _movies(s)
    first = next(iter(before))
    dest = str(first.relative_to(s.central.parent))
    leftover = cap.hidden / dest
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(before[first])
    real_look, real_copy = RetentionRunner._still_ours, retention_mod.copy_between
    state = {"copies": 0, "back": 0}

    def copy_between(*a: Any) -> Any:
        if a[2] == dest:
            state["copies"] += 1
            cap.unmount()
        return real_copy(*a)

    async def still_ours(self: Any, *tiers: Any, **kw: Any) -> Any:
        if state["copies"] == 1 and not state["back"]:
            cap.mount()
            state["back"] = 1
        return await real_look(self, *tiers, **kw)

    monkeypatch.setattr(retention_mod, "copy_between", copy_between)
    monkeypatch.setattr(RetentionRunner, "_still_ours", still_ours)
    async with opened(s) as (j, jexec, io):
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        assert state["back"] and res.failed == 1, res
        assert first.read_bytes() == before[first], "the central copy was deleted"
        assert lost(s, before) == [] and recorded_but_not_there(s, j) == []


async def test_a_purge_with_the_share_away_forgets_nothing(movies: Setup) -> None:
    """A stray file in the mount point passed the look, the purge found no copy and recorded all four
    movies as missing from capacity, where they were (on the share)."""
    s = movies
    mark(s)
    cap = Share(s.capacity.parent)
    (cap.hidden / "NOT-MOUNTED").write_text("x")
    async with opened(s) as (j, jexec, io):
        assert (await hub_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)).transitioned == 4
        await hub_runner(s, j, jexec, io).sweep(s.t0 + 47 * DAY + 60)  # warned
        cap.unmount()
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 75 * DAY + 60)
        assert res.purged == 0 and res.failed == 4, res
        cap.mount()
        missing = [d for _, _, a, d in j.audit_log() if a == "retention.missing"]
        assert missing == [], missing
        assert len(list(s.capacity.rglob("*_fractions.mrc"))) == 4


async def test_a_copy_hidden_by_a_share_mounted_during_a_move_is_never_taken_later(
    movies: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The share went away during a copy and came back before the look: the move failed (right), but
    its copy stayed in the mount point, hidden under the share. When the share was next unmounted
    between sweeps, the mount point was not empty, and that movie's move took the hidden copy."""
    s = movies
    mark(s)
    cap = Share(s.capacity.parent)
    real_look, real_copy = RetentionRunner._still_ours, retention_mod.copy_between
    state = {"copies": 0, "back": 0}

    def copy_between(*a: Any) -> Any:
        state["copies"] += 1
        if state["copies"] == 1:
            cap.unmount()
        return real_copy(*a)

    async def still_ours(self: Any, *tiers: Any, **kw: Any) -> Any:
        if state["copies"] == 1 and not state["back"]:
            cap.mount()
            state["back"] = 1
        return await real_look(self, *tiers, **kw)

    async with opened(s) as (j, jexec, io):
        before = _movies(s)
        monkeypatch.setattr(retention_mod, "copy_between", copy_between)
        monkeypatch.setattr(RetentionRunner, "_still_ours", still_ours)
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        assert res.failed == 1 and res.transitioned == 3, res
        monkeypatch.setattr(retention_mod, "copy_between", real_copy)
        monkeypatch.setattr(RetentionRunner, "_still_ours", real_look)
        cap.unmount()  # days later, between sweeps
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 15 * DAY + 60)
        assert res.transitioned == 0 and res.failed == 1, res
        cap.mount()
        assert lost(s, before) == [] and recorded_but_not_there(s, j) == []


def test_acqd_hub_mark_tier_marks_a_mounted_local_tier_and_refuses_anything_else(tmp_path: Path) -> None:
    """`acqd hub mark-tier NAME`: the marker goes into the tier's folder (which must be there: a share
    mounted); a tier that is not in hub.yaml is a usage error (exit 2) naming the tiers; a folder that
    is not there is an error (exit 1) that writes nothing; a remote tier needs no marker."""
    from tests.conftest import run_acqd

    central, capacity = tmp_path / "central", tmp_path / "capacity"
    central.mkdir()
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "policy.yaml").write_text("")
    hub = tmp_path / "hub.yaml"
    hub.write_text(
        f"""facility: EM facility
state_dir: {tmp_path / "hub"}
catalog: {{url: "postgresql://acqd@127.0.0.1:9/acqd", password_file: "{tmp_path / "pw"}"}}
tiers:
  central: {{url: "file://{central}"}}
  capacity: {{url: "file://{capacity}"}}
  archive: {{url: "s3://bucket/archive", options: {{endpoint_url: "http://127.0.0.1:9"}}}}
policy: {tmp_path / "policy.yaml"}
metrics: {{enabled: false}}
"""
    )
    r = run_acqd("hub", "mark-tier", "central", "--config", str(hub))
    assert r.returncode == 0, r.stderr
    assert "marked" in r.stdout and (central / "~acqd-tier.json").is_file()
    r = run_acqd("hub", "mark-tier", "nearline", "--config", str(hub))
    assert r.returncode == 2 and "no tier 'nearline'" in r.stderr and "capacity" in r.stderr, r.stderr
    r = run_acqd("hub", "mark-tier", "capacity", "--config", str(hub))
    assert r.returncode == 1 and "mount the share" in r.stderr, r.stderr
    assert not capacity.exists()
    r = run_acqd("hub", "mark-tier", "archive", "--config", str(hub))
    assert r.returncode == 1 and "needs no marker" in r.stderr, r.stderr


async def test_a_marker_of_another_tier_is_not_this_tiers(movies: Setup) -> None:
    """The capacity share mounted where central's should be (or two tiers on one folder): capacity's
    marker in central's folder does not make it central; nothing is moved from or purged there."""
    s = movies
    tiers = build_tiers(s.cfg)
    mark_tier(tiers["capacity"], "facility")
    marker = Path(tiers["capacity"].root) / "~acqd-tier.json"
    (Path(tiers["central"].root) / marker.name).write_bytes(marker.read_bytes())
    async with opened(s) as (j, jexec, io):
        before = _movies(s)
        res = await hub_runner(s, j, jexec, io).sweep(s.t0 + 14 * DAY + 60)
        assert res.transitioned == 0 and res.failed == 4, res
        assert "marks another tier ('capacity')" in res.errors[0], res.errors
        assert _movies(s) == before
