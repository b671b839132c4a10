"""A tier below a mount point of /etc/fstab with nothing mounted is never claimed or written.

A share that is down when acqd uses a tier for the first time leaves an empty folder on the local
disk: with nothing of the instrument there and no copies recorded, acqd had no way to tell it from
a new tier, claimed it and shipped onto the local disk (and with release on, freed the acquisition
disk of files whose only copy was then on the same machine, hidden under the share once mounted).
The system says which folders are mount points (fstab, .mount units); these tests point acqd.mounts
at their own fstab and mountinfo, as a machine with an NFS share listed and not mounted has.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from acqd import mounts
from acqd.config import Config
from acqd.daemon import Daemon, check


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An fstab and a mountinfo of this test's own (empty at first); no .mount units."""
    fstab, mountinfo = tmp_path / "fstab", tmp_path / "mountinfo"
    fstab.write_text("")
    mountinfo.write_text("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")
    monkeypatch.setattr(mounts, "FSTAB", str(fstab))
    monkeypatch.setattr(mounts, "MOUNTINFO", str(mountinfo))
    monkeypatch.setattr(
        mounts, "MOUNT_UNITS", (str(tmp_path / "units" / "*.mount"), str(tmp_path / "units" / "*.automount"))
    )
    return fstab, mountinfo


@contextlib.asynccontextmanager
async def _running(config: Config) -> AsyncIterator[tuple[Daemon, Any]]:
    """A daemon running in this loop (started: its first scan may not have run yet), with a reporter
    that records outcomes; stopped on the way out."""
    from tests.test_inprocess import Recorder

    rec = Recorder()
    daemon = Daemon(config, reporter=rec)
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(install_signals=False, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield daemon, rec
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 60)


def _mountinfo_line(point: Path) -> str:
    escaped = str(point).replace(" ", "\\040")
    ident = 1000 + sum(map(ord, str(point)))  # one mount per point in these tests
    return f"{ident} 22 0:55 / {escaped} rw,relatime shared:40 - nfs4 nas:/export rw\n"


def test_the_mount_points_the_system_expects_and_has(system: tuple[Path, Path], tmp_path: Path) -> None:
    fstab, mountinfo = system
    fstab.write_text(
        "# /etc/fstab\n"
        "UUID=1 / ext4 defaults 0 1\n"
        "UUID=2 none swap sw 0 0\n"
        "/dev/sdb1 /swapfile swap sw 0 0\n"
        "nas:/export /mnt/central nfs4 _netdev 0 0\n"
        "nas:/cold /mnt/with\\040space nfs4 noauto 0 0\n"
        "   # an indented comment /mnt/not\n"
        "short line\n"
    )
    units = tmp_path / "units"
    units.mkdir()
    (units / "mnt-capacity.mount").write_text("[Mount]\nWhat=nas:/capacity\nWhere=/mnt/capacity/\nType=nfs4\n")
    (units / "mnt-cold.automount").write_text("[Automount]\nWhere = /mnt/cold\n")
    assert mounts.expected() == {"/mnt/central", "/mnt/with space", "/mnt/capacity", "/mnt/cold"}
    mountinfo.write_text(mountinfo.read_text() + _mountinfo_line(Path("/mnt/with space")))
    assert mounts.mounted() == {"/", "/mnt/with space"}
    assert mounts.unmounted_mount_point("/mnt/central") == "/mnt/central"
    assert mounts.unmounted_mount_point("/mnt/central/acqd/deep") == "/mnt/central"
    assert mounts.unmounted_mount_point("/mnt/centrally") is None, "a name that only begins like it"
    assert mounts.unmounted_mount_point("/mnt/with space/x") is None, "mounted"
    assert mounts.unmounted_mount_point("/mnt/capacity") == "/mnt/capacity"
    assert mounts.unmounted_mount_point("/srv/data") is None, "below no mount point but /"


def test_the_outer_of_two_expected_mount_points_is_named_and_symlinks_are_followed(
    system: tuple[Path, Path], tmp_path: Path
) -> None:
    fstab, mountinfo = system
    nas, cold = tmp_path / "nas", tmp_path / "nas" / "cold"
    cold.mkdir(parents=True)
    fstab.write_text(f"nas:/ {nas} nfs4 _netdev 0 0\nnas:/cold {cold} nfs4 _netdev 0 0\n")
    link = tmp_path / "central"
    link.symlink_to(cold)
    assert mounts.unmounted_mount_point(str(link)) == str(nas)
    mountinfo.write_text(mountinfo.read_text() + _mountinfo_line(nas))
    assert mounts.unmounted_mount_point(str(link)) == str(cold)
    mountinfo.write_text(mountinfo.read_text() + _mountinfo_line(cold))
    assert mounts.unmounted_mount_point(str(link)) is None


def _config(tmp_path: Path, mnt: Path, release: bool) -> Config:
    return Config.model_validate(
        {
            "instrument": "scope",
            "state_dir": str(tmp_path / "state"),
            "watch": [
                {
                    "path": str(tmp_path / "acq"),
                    "settle": "0.2s",
                    **({"placement": {"release_local": "after_verify"}} if release else {}),
                }
            ],
            "tiers": {"central": {"url": f"file://{mnt / 'acqd'}"}},
            "limits": {"retry_initial": "50ms", "retry_max": "100ms"},
        }
    )


@pytest.mark.parametrize("leftover", [False, True], ids=["empty-mount-point", "an-old-claim-in-it"])
async def test_a_first_start_with_the_share_not_mounted_ships_nothing_onto_the_local_disk(
    system: tuple[Path, Path], tmp_path: Path, leftover: bool
) -> None:
    """The share is listed in fstab and not mounted at acqd's first start (release on): nothing is
    claimed or written under the mount point, every source stays; once it is mounted, all ships and
    only then is released. `leftover`: what an earlier acqd (before this check) put in the mount
    point, a claim and copies, does not make it the tier either."""
    fstab, mountinfo = system
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fstab.write_text(f"nas:/export {mnt} nfs4 _netdev 0 0\n")
    data = {f"s/m{i}.raw": os.urandom(3000 + i) for i in range(5)}
    for rel, b in data.items():
        (tmp_path / "acq" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "acq" / rel).write_bytes(b)
    config = _config(tmp_path, mnt, release=True)
    if leftover:  # shipped there by a run while the share was down, before acqd looked at fstab
        mountinfo_now = mountinfo.read_text()
        mountinfo.write_text(mountinfo_now + _mountinfo_line(mnt))
        result = await Daemon(config, once=True, retry_for=10).run(install_signals=False)
        assert result.stats.verified == len(data)
        mountinfo.write_text(mountinfo_now)
        (tmp_path / "acq" / "s" / "late.raw").write_bytes(b"the only copy")
        data["s/late.raw"] = b"the only copy"
        before = sorted(p.relative_to(mnt) for p in mnt.rglob("*"))
    result = await Daemon(config, once=True, retry_for=1).run(install_signals=False)
    assert result.code != 0 and result.stats.released == 0
    if leftover:
        assert sorted(p.relative_to(mnt) for p in mnt.rglob("*")) == before, "written under the mount point"
        assert (tmp_path / "acq" / "s" / "late.raw").read_bytes() == b"the only copy"
    else:
        assert list(mnt.iterdir()) == [], "claimed or written onto the empty mount point"
        assert all((tmp_path / "acq" / rel).read_bytes() == b for rel, b in data.items())
    report = check(config, probe=True, probe_timeout=5)
    assert any("nothing mounted" in w and str(mnt) in w for w in report.warnings), report.warnings
    if not leftover:
        assert list(mnt.iterdir()) == [], "check probed the empty mount point"
    # the share mounts (its own folder, empty), and acqd ships to it
    share = tmp_path / "share"
    share.mkdir()
    if leftover:
        mnt.rename(tmp_path / "hidden")
    else:
        mnt.rmdir()
    share.rename(mnt)
    mountinfo.write_text(mountinfo.read_text() + _mountinfo_line(mnt))
    if leftover:  # the journal knows copies that the share does not have: acqd waits as before, safely
        return
    result = await Daemon(config, once=True, retry_for=30).run(install_signals=False)
    assert result.code == 0 and result.stats.released == len(data)
    assert all((mnt / "acqd" / "scope" / rel).read_bytes() == b for rel, b in data.items())


def _self_bind(point: Path) -> str:
    """What systemd's ReadWritePaths= makes of a folder that is not a mount point (ProtectSystem=
    strict): the folder bound onto itself, on the device of the mount below it ("/" here)."""
    escaped = str(point).replace(" ", "\\040")
    return f"120 22 8:1 {escaped} {escaped} rw,relatime shared:50 - ext4 /dev/vda rw\n"


def test_a_folder_bound_onto_itself_is_not_a_share_mounted(system: tuple[Path, Path], tmp_path: Path) -> None:
    """Found by a review: inside the service (ReadWritePaths= of the share's mount point), an
    unmounted share's mount point showed a mount in mountinfo, the local disk bound onto itself, and
    acqd took it for the share. A bind from elsewhere is a mount; the share mounted over the
    self-bind (after acqd started) is too."""
    fstab, mountinfo = system
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fstab.write_text(f"nas:/export {mnt} nfs4 _netdev 0 0\n")
    base = mountinfo.read_text()
    mountinfo.write_text(base + _self_bind(mnt))
    assert mounts.unmounted_mount_point(str(mnt / "acqd")) == str(mnt)
    mountinfo.write_text(base + f"121 22 8:1 /srv/export {mnt} rw - ext4 /dev/vda rw\n")
    assert mounts.unmounted_mount_point(str(mnt / "acqd")) is None, "a bind from another folder"
    mountinfo.write_text(base + _self_bind(mnt) + _mountinfo_line(mnt).replace(" 22 ", " 120 ", 1))
    assert mounts.unmounted_mount_point(str(mnt / "acqd")) is None, "the share mounted over the self-bind"


def test_an_fstab_mount_point_below_a_symlinked_folder_is_found(system: tuple[Path, Path], tmp_path: Path) -> None:
    """Found by a review: on ostree systems /mnt is a symlink to /var/mnt; fstab says /mnt/nas, the
    tier's path resolves to /var/mnt/nas/acqd and was below no expected mount point. A doubled slash
    in fstab too."""
    fstab, _ = system
    (tmp_path / "var" / "mnt" / "nas").mkdir(parents=True)
    (tmp_path / "mnt").symlink_to(tmp_path / "var" / "mnt")
    fstab.write_text(f"nas:/ /{tmp_path}/mnt//nas nfs4 _netdev 0 0\n")
    real = tmp_path / "var" / "mnt" / "nas"
    assert mounts.unmounted_mount_point(str(real / "acqd")) == str(real)
    assert mounts.unmounted_mount_point(str(tmp_path / "mnt" / "nas" / "acqd")) == str(real)


def test_adopt_with_the_share_not_mounted_claims_nothing_on_the_local_disk(
    system: tuple[Path, Path], tmp_path: Path
) -> None:
    """Found by a review: `acqd adopt` wrote its claim without looking; with the share down the
    claim of this run went into the empty mount point, where a later unmount found it and took the
    local disk for the tier."""
    from acqd.daemon import adopt_command
    from acqd.storage.errors import DestinationError

    fstab, _ = system
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "acq").mkdir()
    fstab.write_text(f"nas:/export {mnt} nfs4 _netdev 0 0\n")
    with pytest.raises(DestinationError, match="nothing mounted"):
        adopt_command(_config(tmp_path, mnt, release=True))
    assert list(mnt.iterdir()) == []


async def test_a_claim_of_this_run_in_an_unmounted_mount_point_does_not_make_it_the_tier(
    system: tuple[Path, Path], tmp_path: Path
) -> None:
    """The claim is the running daemon's proof of its tier; one of this run found in the mount point
    (however it came there) is no proof while fstab's share is not mounted: the file waits."""

    fstab, mountinfo = system
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "acq" / "s").mkdir(parents=True)
    fstab.write_text(f"nas:/export {mnt} nfs4 _netdev 0 0\n")
    base = mountinfo.read_text()
    mountinfo.write_text(base + _mountinfo_line(mnt))
    config = _config(tmp_path, mnt, release=True)
    async with _running(config) as (_daemon, rec):
        (tmp_path / "acq" / "s" / "a.raw").write_bytes(os.urandom(2000))
        await rec.wait("released", 1)
        mountinfo.write_text(base)  # unmounted; the folder (the claim in it) stays as it was
        (tmp_path / "acq" / "s" / "b.raw").write_bytes(b"the only copy")
        await rec.wait("retry", 1)
        assert not (mnt / "acqd" / "scope" / "s" / "b.raw").exists(), "written onto the local disk"
        assert (tmp_path / "acq" / "s" / "b.raw").read_bytes() == b"the only copy"
        mountinfo.write_text(base + _mountinfo_line(mnt))
        await rec.wait("released", 2)
    assert (mnt / "acqd" / "scope" / "s" / "b.raw").read_bytes() == b"the only copy"


def test_hub_mark_tier_refuses_an_unmounted_mount_point_and_a_marker_there_is_no_tier(
    system: tuple[Path, Path], tmp_path: Path
) -> None:
    """Found by a review: `acqd hub mark-tier` with the share down put the marker into the empty
    mount point, and the hub then moved movies onto the local disk and deleted the central copies."""
    from acqd.retention import check_marker, mark_tier
    from acqd.storage import open_tier
    from acqd.storage.errors import DestinationError

    fstab, mountinfo = system
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fstab.write_text(f"nas:/capacity {mnt} nfs4 _netdev 0 0\n")
    tier = open_tier("capacity", f"file://{mnt}")
    with pytest.raises(DestinationError, match="nothing mounted"):
        mark_tier(tier, "facility")
    assert list(mnt.iterdir()) == []
    base = mountinfo.read_text()
    mountinfo.write_text(base + _mountinfo_line(mnt))
    mark_tier(tier, "facility")
    check_marker(tier)
    mountinfo.write_text(base)  # the marker stays in the folder, the share is gone
    with pytest.raises(DestinationError, match="nothing mounted"):
        check_marker(tier)


async def test_pending_files_of_a_watch_root_whose_disk_is_not_mounted_are_not_taken_for_gone(
    system: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The acquisition disk, listed in fstab, is not mounted when acqd starts: its mount point is an
    empty folder. The start took every file the journal had pending there for gone (`vanished`
    events and audit entries for a whole session). Now the root waits for its disk, and what the start
    would reconcile for it is done once the disk is mounted (reviews: also later in the same run):
    the files still pending ship, one deleted while acqd was down is said vanished, a release a crash
    interrupted (the file moved aside) is put back and finished. Files the camera wrote into the
    empty mount point are said (an error: on the local disk, hidden once the disk mounts), again
    when the camera writes more there, not shipped under the disk's names; `run --once` refuses with the reason."""
    import logging
    import sqlite3

    from acqd.errors import ConfigError
    from acqd.journal import Journal, Observation
    from acqd.naming import release_aside
    from acqd.values import Identity, SourceRef

    fstab, mountinfo = system
    data, away, state, central = tmp_path / "data", tmp_path / "data-away", tmp_path / "state", tmp_path / "central"
    data.mkdir()
    state.mkdir()
    fstab.write_text(f"/dev/sdb1 {data} xfs defaults 0 2\n")
    base = mountinfo.read_text()
    mounted = base + _mountinfo_line(data)
    mountinfo.write_text(mounted)

    def config(release: bool) -> Config:
        return Config.model_validate(
            {
                "instrument": "scope",
                "state_dir": str(state),
                "watch": [
                    {
                        "path": str(data),
                        "settle": "0.2s",
                        "scan_interval": "0.2s",
                        "placement": {"release_local": "after_verify" if release else "never"},
                    }
                ],
                "tiers": {"central": {"url": f"file://{central}"}},
                "limits": {"retry_initial": "50ms", "retry_max": "100ms"},
            }
        )

    (data / "s").mkdir()
    (data / "s" / "aside.raw").write_bytes(b"its release was interrupted")
    assert (await Daemon(config(False), once=True, retry_for=10).run(install_signals=False)).stats.verified == 1
    files = {f"s/m{i}.raw": os.urandom(4000 + i) for i in range(3)}
    files["s/gone.raw"] = b"deleted while acqd was down"
    j = Journal(state / "journal.sqlite")
    try:  # seen by the last run, not shipped yet; and a release begun on aside.raw, moved aside, then a crash
        obs = []
        for rel, b in files.items():
            (data / rel).write_bytes(b)
            st = (data / rel).stat()
            obs.append(
                Observation(
                    SourceRef(str(data), rel), Identity(st.st_size, st.st_mtime_ns, st.st_ino), "generic", False
                )
            )
        j.observe_many(obs)
        aside_id, aside_ino = j._db.execute("SELECT id, inode FROM files WHERE relpath = 's/aside.raw'").fetchone()
        j.begin_release(aside_id, str(data / "s" / "aside.raw"))
    finally:
        j.close()
    (data / "s" / "gone.raw").unlink()
    del files["s/gone.raw"]
    (data / "s" / "aside.raw").rename(data / "s" / release_aside(aside_ino))
    data.rename(away)  # the disk is not mounted: its mount point is an empty folder
    data.mkdir()
    mountinfo.write_text(base)
    (data / "late").mkdir()
    (data / "late" / "written.raw").write_bytes(b"written into the mount point")  # the camera went on
    with pytest.raises(ConfigError, match="on a disk not mounted"):
        await Daemon(config(False), once=True, retry_for=2).run(install_signals=False)
    caplog.set_level(logging.INFO, logger="acqd")
    caplog.clear()  # the --once run said it too
    async with _running(config(True)) as (daemon, rec):
        for _ in range(600):
            if "are in the empty mount point" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert f"watch root {data} is on a disk not mounted" in caplog.text, caplog.text
        assert "1 file(s) of 28 B are in the empty mount point (late/written.raw)" in caplog.text, caplog.text
        assert f"waiting for watch root(s) {data} (is on a disk not mounted" in daemon._status_line()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "acqd", "status", "--state-dir", str(state), stdout=asyncio.subprocess.PIPE
        )
        said = (await proc.communicate())[0].decode()
        assert f"watch root {data}: WAITING since" in said and "it is on a disk not mounted" in said, said
        await asyncio.sleep(0.6)  # looked at again while it waits: nothing new, nothing said again
        assert caplog.text.count("are in the empty mount point") == 1, caplog.text
        (data / "late" / "second.raw").write_bytes(b"written while acqd watched")
        for _ in range(600):  # the camera went on writing there: said again, with the new file
            if "2 file(s)" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert "2 file(s) of 54 B are in the empty mount point (late/second.raw, late/written.raw)" in caplog.text
        assert daemon.pipeline is not None  # an event of the mount point's, queued before its watch went
        daemon.pipeline.hints.put_nowait((0, str(data / "late" / "second.raw")))
        await asyncio.sleep(1.5)
        assert not [o for o in rec.outcomes if o[1].startswith("late/")], rec.outcomes
        data.rename(tmp_path / "hidden")  # mounted: what was written into the mount point is hidden under it
        away.rename(data)
        mountinfo.write_text(mounted)
        await rec.wait("verified", len(files))
        await rec.wait("released", len(files) + 1)
    assert not (central / "scope" / "late").exists()
    assert [rel for kind, rel in rec.outcomes if kind == "vanished"] == ["s/gone.raw"], rec.outcomes
    assert all((central / "scope" / rel).read_bytes() == b for rel, b in files.items())
    assert not (data / "s" / release_aside(aside_ino)).exists() and not (data / "s" / "aside.raw").exists()
    db = sqlite3.connect(state / "journal.sqlite")
    try:
        states = dict(db.execute("SELECT relpath, state FROM files WHERE current = 1").fetchall())
        begun = db.execute("SELECT COUNT(*) FROM releasing").fetchone()[0]
    finally:
        db.close()
    assert states["s/aside.raw"] == "released" and states["s/gone.raw"] == "vanished" and begun == 0, states


async def test_a_disk_unmounted_under_a_running_daemon_leaves_its_settling_files_pending(
    system: tuple[Path, Path], tmp_path: Path
) -> None:
    """Found by a review: a file settling when the acquisition disk was unmounted was recorded
    vanished. It stays pending and ships once the disk is back."""

    fstab, mountinfo = system
    data, away, central = tmp_path / "data", tmp_path / "data-away", tmp_path / "central"
    (data / "s").mkdir(parents=True)
    fstab.write_text(f"/dev/sdb1 {data} xfs defaults 0 2\n")
    base = mountinfo.read_text()
    mountinfo.write_text(base + _mountinfo_line(data))
    config = Config.model_validate(
        {
            "instrument": "scope",
            "state_dir": str(tmp_path / "state"),
            "watch": [{"path": str(data), "settle": "2s", "scan_interval": "0.2s", "mode": "poll"}],
            "tiers": {"central": {"url": f"file://{central}"}},
        }
    )
    async with _running(config) as (_daemon, rec):
        (data / "s" / "a.raw").write_bytes(b"settling")
        await rec.wait("seen", 1)
        data.rename(away)  # unmounted within the settle window
        data.mkdir()
        mountinfo.write_text(base)
        await asyncio.sleep(2.5)  # the settle window's look meets no file
        assert not [o for o in rec.outcomes if o[0] == "vanished"], rec.outcomes
        data.rmdir()
        away.rename(data)
        mountinfo.write_text(base + _mountinfo_line(data))
        await rec.wait("verified", 1)
    assert (central / "scope" / "s" / "a.raw").read_bytes() == b"settling"


def test_a_mount_and_an_unmount_are_seen_at_once_through_the_kernels_signal(tmp_path: Path) -> None:
    """/proc/self/mountinfo is read again only when the kernel signals a change (POLLPRI): a real
    mount and unmount in a private mount namespace (root only) must each be seen by the next look."""
    import subprocess
    import sys

    from tests.conftest import REQUIRE, need

    unshare = need("unshare", "util-linux's unshare makes a private mount namespace")
    if os.geteuid() != 0:
        if REQUIRE:
            pytest.fail("mounting a tmpfs needs root (ACQD_REQUIRE_SERVICES=1)")
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "point"
    point.mkdir()
    script = f"""
import subprocess
from acqd import mounts
seen = ['{point}' in mounts.mounted()]
subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', '{point}'], check=True)
seen.append('{point}' in mounts.mounted())
subprocess.run(['umount', '{point}'], check=True)
seen.append('{point}' in mounts.mounted())
print(seen)
"""
    r = subprocess.run(
        [unshare, "-m", "--propagation", "private", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[False, True, False]", r.stdout + r.stderr


def test_a_share_mounted_deeper_than_an_unmounted_outer_entry_is_what_the_tier_is_on(
    system: tuple[Path, Path], tmp_path: Path
) -> None:
    """Found by a review: a container given the host's fstab and a bind of one folder of the share,
    or a `noauto` outer entry with the inner share mounted: the outer unmounted entry was named. The
    innermost mount holding the path decides. And a folder fstab binds onto itself (`/data /data none
    bind`) is no share: mounted or not, it is the same folder."""
    fstab, mountinfo = system
    nas, acqd_share = tmp_path / "nas", tmp_path / "nas" / "acqd"
    fstab.write_text(f"nas:/ {nas} nfs4 noauto 0 0\nnas:/acqd {acqd_share} nfs4 _netdev 0 0\n")
    base = mountinfo.read_text()
    assert mounts.unmounted_mount_point(str(acqd_share / "central")) == str(nas)
    mountinfo.write_text(base + _mountinfo_line(acqd_share))
    assert mounts.unmounted_mount_point(str(acqd_share / "central")) is None
    assert mounts.unmounted_mount_point(str(nas / "other")) == str(nas)
    data = tmp_path / "data"
    fstab.write_text(f"{data} {data} none bind 0 0\n")
    mountinfo.write_text(base + _self_bind(data))
    assert mounts.unmounted_mount_point(str(data / "central")) is None
    mountinfo.write_text(base)
    assert mounts.unmounted_mount_point(str(data / "central")) is None


def test_the_take_back_of_a_failed_move_follows_a_tier_folder_that_is_a_symlink(tmp_path: Path) -> None:
    """Found by a review: the take-back opened the tier's folder with O_NOFOLLOW; a tier configured as
    a symlink to its share (/srv/capacity -> /mnt/nas/capacity) kept the copy the failed move made."""
    from acqd.retention import _identity, _take_back
    from acqd.storage import open_tier

    real = tmp_path / "mnt" / "capacity"
    (real / "scope" / "s").mkdir(parents=True)
    link = tmp_path / "capacity"
    link.symlink_to(real)
    tier = open_tier("capacity", f"file://{link}")
    (real / "scope" / "s" / "m.mrc").write_bytes(b"a copy made by a failed move")
    made = _identity(tier, "scope/s/m.mrc")
    assert made is not None
    _take_back(tier, "scope/s/m.mrc", made, tree=False)
    assert list(real.iterdir()) == [], "the copy or the folders it made left"


def test_an_fstab_entry_below_another_is_resolved_without_looking_into_the_outer_one(
    system: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: resolving the parent folder of /mnt/nas/cold looked into /mnt/nas, a share:
    on a hard NFS mount whose server is down that hangs, for every tier's check."""
    fstab, _ = system
    nas = tmp_path / "nas"
    fstab.write_text(f"nas:/ {nas} nfs4 _netdev 0 0\nnas:/cold {nas}/cold nfs4 _netdev 0 0\n")
    looked: list[str] = []
    real = os.path.realpath

    def realpath(p: str, *a: object, **kw: object) -> str:
        looked.append(str(p))
        return real(p)

    monkeypatch.setattr(mounts.os.path, "realpath", realpath)
    assert mounts.expected() == {str(nas), f"{nas}/cold"}
    assert looked and not [p for p in looked if p == str(nas) or p.startswith(f"{nas}/")], looked


async def test_verify_with_the_acquisition_disk_not_mounted_does_not_take_its_files_for_gone(
    system: tuple[Path, Path], tmp_path: Path
) -> None:
    """Found by a review: `acqd verify` looked at the watch root with isdir only; with the disk not
    mounted (its empty mount point there), a damaged copy's source was taken for gone, the file
    quarantined with "nothing can ship this version again". It cannot tell: the daemon decides."""
    import sqlite3

    import yaml
    from typer.testing import CliRunner

    from acqd.cli import app

    fstab, mountinfo = system
    data, away, state, central = tmp_path / "data", tmp_path / "data-away", tmp_path / "state", tmp_path / "central"
    (data / "s").mkdir(parents=True)
    fstab.write_text(f"/dev/sdb1 {data} xfs defaults 0 2\n")
    base = mountinfo.read_text()
    mountinfo.write_text(base + _mountinfo_line(data))
    (data / "s" / "a.raw").write_bytes(os.urandom(5000))
    config = Config.model_validate(
        {
            "instrument": "scope",
            "state_dir": str(state),
            "watch": [{"path": str(data), "settle": "0.2s"}],
            "tiers": {"central": {"url": f"file://{central}"}},
        }
    )
    assert (await Daemon(config, once=True, retry_for=10).run(install_signals=False)).stats.verified == 1
    (central / "scope" / "s" / "a.raw").write_bytes(os.urandom(5000))  # the copy damaged
    data.rename(away)  # the disk not mounted
    data.mkdir()
    mountinfo.write_text(base)
    cfg = tmp_path / "acqd.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    r = CliRunner().invoke(app, ["verify", "--config", str(cfg)])
    assert r.exit_code == 1, r.output
    db = sqlite3.connect(state / "journal.sqlite")
    try:
        (got,) = db.execute("SELECT state FROM files WHERE relpath = 's/a.raw' AND current = 1").fetchone()
    finally:
        db.close()
    assert got != "quarantined", r.output


def test_a_bind_mount_of_a_folder_inside_the_watch_root_is_inside_it(system: tuple[Path, Path], tmp_path: Path) -> None:
    """A tier folder that is a bind mount of a folder inside the watch root (or the share mounted a
    second time at a subfolder): walking up from the tier never passes the watch root, and a release
    deleted each copy's source for a copy that was itself a new file in the watch root (an adversarial
    review: 281 releases in 150 s, the journal's copies deleted one after the other). Where each lies on
    its filesystem (mountinfo's root and mount point) says it is inside."""
    _, mountinfo = system
    acq, central, other = tmp_path / "acq", tmp_path / "central", tmp_path / "other"
    for d in (acq / "spill", central, other):
        d.mkdir(parents=True)
    base = mountinfo.read_text()
    bind = f"{1000} 22 8:1 {acq / 'spill'} {central} rw,relatime shared:1 - ext4 /dev/vda rw\n"
    mountinfo.write_text(base + bind)
    assert mounts.inside_by_mounts(str(central), str(acq))
    assert mounts.inside_by_mounts(str(central / "scope" / "s" / "a.raw"), str(acq))
    assert not mounts.inside_by_mounts(str(other), str(acq))  # a folder beside it on the same disk
    assert not mounts.inside_by_mounts(str(acq), str(central))
    # another filesystem's folder of the same name is elsewhere
    mountinfo.write_text(base + bind.replace(" 8:1 ", " 0:77 "))
    assert not mounts.inside_by_mounts(str(central), str(acq))


def test_acqd_check_refuses_a_tier_bound_from_inside_the_watch_root(tmp_path: Path) -> None:
    """The same with a real bind mount in a private mount namespace (root only): `acqd check` (and so
    `run`) refuses the configuration."""
    import subprocess
    import sys

    from tests.conftest import REQUIRE, acqd_yaml, need

    unshare = need("unshare", "util-linux's unshare makes a private mount namespace")
    if os.geteuid() != 0:
        if REQUIRE:
            pytest.fail("a bind mount needs root (ACQD_REQUIRE_SERVICES=1)")
        pytest.skip("a bind mount needs root")
    acq, central, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    for d in (acq / "spill", central):
        d.mkdir(parents=True)
    cfg = acqd_yaml(tmp_path / "acqd.yaml", state=state, watch=f"path: {acq}", tiers=central)
    script = f"mount --bind {acq / 'spill'} {central} && {sys.executable} -m acqd check --no-probe --config {cfg}"
    r = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.returncode == 78 and "overlap" in r.stderr and str(acq) in r.stderr, r.stdout + r.stderr


async def test_a_copy_on_a_tier_bound_from_inside_the_watch_root_after_the_start_releases_nothing(
    system: tuple[Path, Path], tmp_path: Path
) -> None:
    """The bind mount made while the daemon runs (the start's check passed): a release's look at the
    copy finds it lies in the watch root by where it is on its filesystem, and keeps the source."""
    _, mountinfo = system
    acq, mnt = tmp_path / "acq", tmp_path / "mnt"
    (acq / "s").mkdir(parents=True)
    (acq / "spill").mkdir()
    mnt.mkdir()
    base = mountinfo.read_text()
    async with _running(_config(tmp_path, mnt, release=True)) as (_daemon, rec):
        # from now on, the tier's folder is (as mountinfo says) a bind of acq/spill
        mountinfo.write_text(base + f"1000 22 8:1 {acq / 'spill'} {mnt} rw,relatime shared:1 - ext4 /dev/vda rw\n")
        (acq / "s" / "a.raw").write_bytes(b"x" * 5000)
        await rec.wait("verified", 1)
        await asyncio.sleep(3)  # its release looks at the copy (the manifest's next write, ~2 s)
    assert (acq / "s" / "a.raw").read_bytes() == b"x" * 5000, "released against a copy inside the watch root"
    assert not [o for o in rec.outcomes if o[0] == "released"], rec.outcomes


def test_a_tier_seen_through_a_mount_below_the_watch_root_is_found(system: tuple[Path, Path], tmp_path: Path) -> None:
    """An adversarial review bound the tier's folder into the watch root (`mount --bind central
    acq/mirror`): `check` said OK, acqd shipped its own copies again, folder in folder, and released
    them, deleting the journal's copies of files already released (the "sources" were those copies).
    A tier's folder is found below the watch root through every mount there that shows it: a bind of
    the folder itself, of a folder above it, of a folder inside it; not one of another filesystem."""
    _, mountinfo = system
    acq, central = tmp_path / "acq", tmp_path / "central"
    for d in (acq / "mirror", acq / "up", acq / "sub", acq / "elsewhere", central / "scope" / "s"):
        d.mkdir(parents=True, exist_ok=True)
    base = mountinfo.read_text()

    def bound(src: Path, point: Path, device: str = "8:1") -> str:
        return f"{1000 + len(str(point))} 22 {device} {src} {point} rw,relatime shared:1 - ext4 /dev/vda rw\n"

    assert mounts.views_below(str(acq), [str(central)]) == []
    mountinfo.write_text(base + bound(central, acq / "mirror"))
    assert mounts.views_below(str(acq), [str(central)]) == ["mirror"]
    mountinfo.write_text(base + bound(tmp_path, acq / "up"))  # a folder above the tier
    assert mounts.views_below(str(acq), [str(central)]) == ["up/central"]
    mountinfo.write_text(base + bound(central / "scope" / "s", acq / "sub"))  # a session of the tier
    assert mounts.views_below(str(acq), [str(central)]) == ["sub"]
    mountinfo.write_text(base + bound(central, acq / "elsewhere", device="0:77"))  # another disk's folder
    assert mounts.views_below(str(acq), [str(central)]) == []
    mountinfo.write_text(base + bound(central, tmp_path / "beside"))  # bound outside the watch root
    assert mounts.views_below(str(acq), [str(central)]) == []
    (acq / "link").symlink_to(central)  # a symlink to it: what the path resolves to
    os.rmdir(acq / "mirror")
    assert mounts.views_below(str(acq), [str(acq / "link")]) == []  # the tier named by the link: outside
    inner = acq / "inner"
    inner.mkdir()
    assert mounts.views_below(str(acq), [str(inner)]) == ["inner"]


async def test_a_source_that_lies_on_the_tier_is_never_released(system: tuple[Path, Path], tmp_path: Path) -> None:
    """The release's own guard, whatever the admission saw: a session folder that became (as mountinfo
    says) a bind of the tier's copy of that session between the copy's verification and its release
    holds the tier's files, not the camera's; releasing would delete the stored copies. Kept."""
    _, mountinfo = system
    acq, mnt = tmp_path / "acq", tmp_path / "mnt"
    (acq / "s").mkdir(parents=True)
    mnt.mkdir()
    base = mountinfo.read_text()
    async with _running(_config(tmp_path, mnt, release=True)) as (_daemon, rec):
        (acq / "s" / "a.raw").write_bytes(b"a" * 5000)
        await rec.wait("released", 1)  # the session's manifest written once: the next waits its pause
        (acq / "s" / "b.raw").write_bytes(b"b" * 5000)
        await rec.wait("verified", 2)
        # from now on acq/s is (as mountinfo says) a bind of the tier's folder of session s
        mountinfo.write_text(
            base + f"1000 22 8:1 {mnt / 'acqd' / 'scope' / 's'} {acq / 's'} rw,relatime shared:1 - ext4 /dev/vda rw\n"
        )
        await asyncio.sleep(5)  # the manifest's next write (>= 2 s after the last) and b's release look
    assert (acq / "s" / "b.raw").read_bytes() == b"b" * 5000, "released a source that lies on the tier"
    assert [o for o in rec.outcomes if o[0] == "released"] == [("released", "s/a.raw")], rec.outcomes
    assert (mnt / "acqd" / "scope" / "s" / "b.raw").read_bytes() == b"b" * 5000


def test_the_tier_bound_into_the_watch_root_is_refused_at_start_and_fenced_while_running(tmp_path: Path) -> None:
    """The review's case with real bind mounts in a private mount namespace (root only): with the tier
    bound at acq/mirror, `run` refuses to start (the overlap, where it is mounted); bound while the
    daemon runs, nothing under it is shipped or released, and every copy the journal records stays."""
    import subprocess

    from tests.conftest import REQUIRE, acqd_yaml, need

    unshare = need("unshare", "util-linux's unshare makes a private mount namespace")
    if os.geteuid() != 0:
        if REQUIRE:
            pytest.fail("a bind mount needs root (ACQD_REQUIRE_SERVICES=1)")
        pytest.skip("a bind mount needs root")
    acq, central, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (acq / "sess").mkdir(parents=True)
    central.mkdir()
    first, later = os.urandom(3000), os.urandom(3000)
    (acq / "sess" / "f1.dat").write_bytes(first)
    cfg = acqd_yaml(
        tmp_path / "acqd.yaml",
        state=state,
        watch=f"path: {acq}, settle: 0.2s, placement: {{release_local: after_verify}}",
        tiers=central,
    )
    run = f"{sys.executable} -m acqd run --config {cfg}"
    script = f"""
{run} --once >{tmp_path}/once1.log 2>&1 || exit 11
mkdir {acq}/mirror && mount --bind {central} {acq}/mirror || exit 12
{run} --once --retry-for 10s >{tmp_path}/refused.log 2>&1; echo $? >{tmp_path}/refused.rc
umount {acq}/mirror || exit 13
{run} >{tmp_path}/daemon.log 2>&1 & pid=$!
for i in $(seq 600); do grep -q "is there: scanning it" {tmp_path}/daemon.log && break; sleep 0.1; done
mount --bind {central} {acq}/mirror || exit 14
cp {tmp_path}/later.bin {acq}/sess/f3.dat
for i in $(seq 600); do [ -e {acq}/sess/f3.dat ] || break; sleep 0.1; done
sleep 3
kill -TERM $pid; wait $pid; echo $? >{tmp_path}/daemon.rc
umount {acq}/mirror
"""
    (tmp_path / "later.bin").write_bytes(later)
    r = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parent.parent,
    )
    logs = "".join(f"\n--- {p.name}\n{p.read_text()}" for p in sorted(tmp_path.glob("*.log")))
    assert r.returncode == 0, r.stdout + r.stderr + logs
    refused = (tmp_path / "refused.log").read_text()
    assert (tmp_path / "refused.rc").read_text().strip() == "78", logs
    assert f"mounted or linked at {acq / 'mirror'}" in refused and "overlap" in refused, refused
    assert (tmp_path / "daemon.rc").read_text().strip() == "0", logs
    daemon = (tmp_path / "daemon.log").read_text()
    assert "unreadable 'mirror': a tier's folder" in daemon, daemon
    assert (central / "scope" / "sess" / "f1.dat").read_bytes() == first, "a recorded copy was deleted"
    assert (central / "scope" / "sess" / "f3.dat").read_bytes() == later
    assert not (central / "scope" / "mirror").exists(), "acqd shipped its own copies again"
    assert not (acq / "sess" / "f3.dat").exists(), "the file written beside the mount was not released"
