"""Is a folder below a mount point the system expects, with nothing mounted there now?

A network share listed in /etc/fstab (or a systemd .mount unit) that is not mounted leaves its empty
mount point on the local disk. A tier whose folder is there would take the copies onto the local
disk, under a folder the share hides once it mounts (and release would then free the acquisition
disk of files whose only other copy is on the same machine). `unmounted_mount_point(path)` names
such a mount point, so that acqd waits for the share instead of claiming its empty mount point.

What the system expects: the mount points of /etc/fstab (not swap) and the `Where=` of the .mount
and .automount units in /etc/systemd/system, each with the symlinks of its parent folders resolved
(on ostree systems /mnt is /var/mnt). What is mounted: this process's /proc/self/mountinfo, less the
bind mounts of a folder onto itself: systemd makes one of each `ReadWritePaths=` folder that is not a
mount point (ProtectSystem=strict), so inside acqd's service an unmounted share's mount point shows a
mount of the local disk. A share mounted by hand and listed nowhere cannot be told from a folder:
list it in /etc/fstab (README).
"""

from __future__ import annotations

import glob
import os
import re

#: where the expected mount points are read from (tests point these at their own files)
FSTAB = "/etc/fstab"
MOUNT_UNITS = ("/etc/systemd/system/*.mount", "/etc/systemd/system/*.automount")
MOUNTINFO = "/proc/self/mountinfo"

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    r"""fstab's and mountinfo's escapes (a space is `\040`)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return ""


def _resolved(point: str) -> str:
    """`point` with its parent folders' symlinks resolved (not the point itself: a share that hangs
    is never looked into)."""
    parent, name = os.path.split(os.path.normpath(point))
    return os.path.join(os.path.realpath(parent), name) if name else os.path.realpath(parent)


def expected() -> set[str]:
    """The mount points the system is told to mount (fstab, .mount units), resolved; not "/"."""
    points: set[str] = set()
    for line in _read(FSTAB).splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        where, fstype = _unescape(fields[1]), fields[2]
        if fstype != "swap" and where.startswith("/"):
            points.add(_resolved(where))
    for unit in sorted(u for pattern in MOUNT_UNITS for u in glob.glob(pattern)):
        for line in _read(unit).splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == "Where" and value.strip().startswith("/"):
                points.add(_resolved(value.strip()))
    points.discard("/")
    return points


def mounted() -> set[str]:
    """The mount points of this process's mount namespace, less the binds of a folder onto itself
    (same device as the mount below it, and its own place on that device: systemd's
    ReadWritePaths= of a folder that is not a mount point). A bind from elsewhere counts."""
    rows: dict[str, tuple[str, str, str, str]] = {}  # id -> (parent id, device, root, mount point)
    for line in _read(MOUNTINFO).splitlines():
        fields = line.split()
        if len(fields) > 4:
            rows[fields[0]] = (fields[1], fields[2], _unescape(fields[3]), os.path.normpath(_unescape(fields[4])))
    points: set[str] = set()
    for parent_id, device, root, point in rows.values():
        parent = rows.get(parent_id)
        if parent is not None and parent[1] == device and parent[3] != point:
            below = os.path.relpath(point, parent[3])
            if not below.startswith("..") and os.path.normpath(os.path.join(parent[2], below)) == root:
                continue  # the folder bound onto itself: what is there is the disk below
        points.add(point)
    return points


def unmounted_mount_point(path: str) -> str | None:
    """The expected mount point at or above `path` (symlinks resolved) that nothing is mounted on, or
    None: `path` is on what the system means it to be on, or below no expected mount point."""
    real = os.path.realpath(path)
    above = sorted(
        (m for m in expected() if real == m or real.startswith(m + "/")),
        key=len,
    )
    if not above:
        return None
    now = mounted()
    for point in above:  # the outermost first: /mnt/nas missing says more than /mnt/nas/cold
        if point not in now:
            return point
    return None


def describe(point: str) -> str:
    return (
        f"{point} is a mount point (in {FSTAB} or a systemd .mount unit) with nothing mounted on it: the copies "
        "would go onto the local disk under it, hidden once the share mounts; acqd waits until it is mounted"
    )
