"""A tier below a mount point of /etc/fstab with nothing mounted is never claimed or written.

A share that is down when acqd uses a tier for the first time leaves an empty folder on the local
disk: with nothing of the instrument there and no copies recorded, acqd had no way to tell it from
a new tier, claimed it and shipped onto the local disk (and with release on, freed the acquisition
disk of files whose only copy was then on the same machine, hidden under the share once mounted).
The system says which folders are mount points (fstab, .mount units); these tests point acqd.mounts
at their own fstab and mountinfo, as a machine with an NFS share listed and not mounted has.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    monkeypatch.setattr(mounts, "MOUNT_UNITS", str(tmp_path / "units" / "*.mount"))
    return fstab, mountinfo


def _mountinfo_line(point: Path) -> str:
    escaped = str(point).replace(" ", "\\040")
    return f"99 22 0:55 / {escaped} rw,relatime shared:40 - nfs4 nas:/export rw\n"


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
    assert mounts.expected() == {"/mnt/central", "/mnt/with space", "/mnt/capacity"}
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
