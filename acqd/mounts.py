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
import select
import stat
import threading
import time
from collections.abc import Collection, Iterable
from typing import Any

from acqd.fsops import same_or_inside

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


def _below(path: str, point: str) -> bool:
    """`path` is `point` or inside it."""
    return path == point or path.startswith(point if point.endswith("/") else point + "/")


def _expected_raw() -> set[str]:
    """The mount points fstab and the .mount units name, as written (normalised). A folder bound onto
    itself (`/data /data none bind`) is left out: mounted or not, it is the same folder."""
    points: set[str] = set()
    for line in _read(FSTAB).splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        source, where, fstype = _unescape(fields[0]), _unescape(fields[1]), fields[2]
        options = fields[3].split(",") if len(fields) > 3 else []
        if fstype == "swap" or not where.startswith("/"):
            continue
        if os.path.normpath(source) == os.path.normpath(where) and ("bind" in options or "rbind" in options):
            continue
        points.add(os.path.normpath(where))
    for unit in sorted(u for pattern in MOUNT_UNITS for u in glob.glob(pattern)):
        for line in _read(unit).splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == "Where" and value.strip().startswith("/"):
                points.add(os.path.normpath(value.strip()))
    points.discard("/")
    return points


_lock = threading.Lock()
_expected_cache: dict[str, Any] = {}
_mountinfo_cache: dict[str, Any] = {}
EXPECTED_TTL = 5.0  # seconds the .mount units are taken as listed (fstab is looked at on each call)


def expected() -> set[str]:
    """The mount points the system is told to mount (fstab, .mount units), with the symlinks of the
    folders above them resolved; not "/". A point below another is resolved through it, never by
    looking into it (the outer one may be a share whose server is down)."""
    try:
        st = os.stat(FSTAB)
        sig: tuple[object, ...] = (FSTAB, MOUNT_UNITS, st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        sig = (FSTAB, MOUNT_UNITS)
    now = time.monotonic()
    with _lock:
        if _expected_cache.get("sig") == sig and now < _expected_cache.get("until", 0.0):
            return set(_expected_cache["points"])
    resolved: dict[str, str] = {}
    for raw in sorted(_expected_raw(), key=len):
        outer = max((r for r in resolved if _below(raw, r)), key=len, default=None)
        resolved[raw] = resolved[outer] + raw[len(outer) :] if outer is not None else _resolved(raw)
    points = set(resolved.values())
    with _lock:
        _expected_cache.update(sig=sig, until=now + EXPECTED_TTL, points=points)
    return set(points)


def _parse_mountinfo(text: str) -> set[str]:
    rows: dict[str, tuple[str, str, str, str]] = {}  # id -> (parent id, device, root, mount point)
    for line in text.splitlines():
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


def mounted() -> set[str]:
    """The mount points of this process's mount namespace, less the binds of a folder onto itself
    (same device as the mount below it, and its own place on that device: systemd's
    ReadWritePaths= of a folder that is not a mount point). A bind from elsewhere counts.
    /proc/self/mountinfo is read again only when the kernel says the mounts changed (POLLPRI)."""
    return set(_mountinfo()[0])


def _mountinfo() -> tuple[set[str], list[tuple[str, str, str]]]:
    """mounted()'s points, and every mount as (device, root within its filesystem, mount point) in
    mountinfo's order (a later one at the same point is on top), read again only when they changed."""
    if not MOUNTINFO.startswith("/proc/"):
        text = _read(MOUNTINFO)
        return _parse_mountinfo(text), _mount_rows(text)
    with _lock:
        fd = _mountinfo_cache.get("fd")
        if _mountinfo_cache.get("path") != MOUNTINFO or fd is None:
            if fd is not None:
                os.close(fd)
            fd = os.open(MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC)
            poller = select.poll()
            poller.register(fd, select.POLLPRI | select.POLLERR)
            _mountinfo_cache.update(path=MOUNTINFO, fd=fd, poll=poller, points=None)
        elif _mountinfo_cache["poll"].poll(0):
            _mountinfo_cache["points"] = None  # the mounts changed since the last read
        if _mountinfo_cache["points"] is None:
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while block := os.read(fd, 1 << 16):
                chunks.append(block)
            text = b"".join(chunks).decode("utf-8", "surrogateescape")
            _mountinfo_cache["points"] = _parse_mountinfo(text)
            _mountinfo_cache["rows"] = _mount_rows(text)
        return _mountinfo_cache["points"], _mountinfo_cache["rows"]


def _mount_rows(text: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            rows.append((fields[2], os.path.normpath(_unescape(fields[3])), os.path.normpath(_unescape(fields[4]))))
    return rows


def fs_place(path: str) -> tuple[str, str] | None:
    """Where `path` (symlinks resolved) is, as its filesystem sees it: the device of the mount that
    holds it and its path from that filesystem's root (the mount's root plus the path below the
    mount point). A bind mount of a folder, a second mount of a share or of a btrfs subvolume gives
    the same place as the folder itself. None without mount information."""
    real = os.path.realpath(path)
    try:
        rows = _mountinfo()[1]
    except OSError:
        return None
    best: tuple[str, str, str] | None = None
    for row in rows:
        if _below(real, row[2]) and (best is None or len(row[2]) >= len(best[2])):
            best = row
    if best is None:
        return None
    device, root, point = best
    rel = os.path.relpath(real, point)
    return device, root if rel == "." else os.path.normpath(os.path.join(root, rel))


def inside_by_mounts(inner: str, outer: str) -> bool:
    """Is `inner` the folder `outer` or below it on the same filesystem, by where each is on it
    (`fs_place`)? What a walk up from `inner` does not see: a bind mount (or a second mount) of a
    folder inside `outer` elsewhere, whose own parents lead away from `outer`."""
    a, b = fs_place(inner), fs_place(outer)
    return a is not None and b is not None and a[0] == b[0] and _below(a[1], b[1])


def views_below(root: str, folders: list[str]) -> list[str]:
    """Where each of `folders` (a local tier's folder) can be reached below the folder `root`,
    relative to it ("" for the root itself): by its path (symlinks resolved), and through every mount
    below `root` that shows it or a part of it (a bind mount of the tier's folder, of a folder above
    it, or of a folder inside it; a second mount of its filesystem), by where each lies on its
    filesystem (`fs_place`). Blocking: a few stats, and mountinfo when the mounts changed."""
    real_root = os.path.realpath(root)
    base = real_root.rstrip("/")
    out: list[str] = []

    def add(path: str) -> None:
        rel = "" if path == real_root else path[len(base) + 1 :] if _below(path, real_root) else None
        if rel is not None and rel not in out:
            out.append(rel)

    places = []
    for f in folders:
        add(os.path.realpath(f))
        if (place := fs_place(f)) is not None:
            places.append(place)
    try:
        rows = _mountinfo()[1]
    except OSError:
        rows = []
    for device, mroot, point in rows:
        if not _below(point, real_root):  # the watch root itself too: a bind of a folder above a tier
            continue
        for tdev, tpath in places:
            if device != tdev:
                continue
            if _below(tpath, mroot):  # the tier's folder is in what is mounted there
                add(point if tpath == mroot else os.path.join(point, os.path.relpath(tpath, mroot)))
            elif _below(mroot, tpath):  # a part of the tier's folder is mounted there
                add(point)
    return out


def folder_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the folder `path` leads to (symlinks followed), or None: not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def moved_below(root: str, rels: Iterable[str], identities: Collection[tuple[int, int]]) -> list[str]:
    """The folders above the files `rels` (relative to the folder `root`) that are one of
    `identities` (a tier's folder as it was last seen): a tier's folder moved into the watch root,
    its path no longer leading to it (a rename, then a symlink at the old path a moment later).
    Blocking: one lstat per distinct folder above `rels`."""
    found: list[str] = []
    looked: set[str] = set()
    for rel in rels:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in found:
                break
            if sub in looked:
                continue
            looked.add(sub)
            try:
                st = os.lstat(os.path.join(root, sub))
            except OSError:
                break
            if (st.st_dev, st.st_ino) in identities:
                found.append(sub)
                break
    return found


def lies_within(inner: str, outer: str) -> bool:
    """Is `inner` the folder `outer` or below it, by a walk up from `inner` (symlinks, a second mount
    of the same filesystem: `fsops.same_or_inside`) or by where each is on its filesystem (a bind
    mount of a folder inside `outer` elsewhere: `inside_by_mounts`)?"""
    return same_or_inside(inner, outer) or inside_by_mounts(inner, outer)


def unmounted_mount_point(path: str) -> str | None:
    """The expected mount point at or above `path` (symlinks resolved) that nothing is mounted on, or
    None: `path` is on what the system means it to be on, or below no expected mount point. Only the
    expected points below the innermost mount that holds `path` count (a share mounted deeper than an
    unmounted outer entry, a container's bind of one folder of a share, is what `path` is on)."""
    real = os.path.realpath(path)
    points = [m for m in expected() if _below(real, m)]
    if not points:
        return None
    innermost = max((m for m in mounted() if _below(real, m)), key=len, default="/")
    deeper = sorted((m for m in points if len(m) > len(innermost) and _below(m, innermost)), key=len)
    return deeper[0] if deeper else None  # the outermost first: /mnt/nas missing says more than /mnt/nas/cold


def describe(point: str) -> str:
    """`point`, said to be expected and not mounted."""
    return f"{point} is a mount point (in {FSTAB} or a systemd .mount unit) with nothing mounted on it"


def describe_tier(point: str) -> str:
    """Why nothing is written to a tier at or below `point` (describe)."""
    return (
        f"{describe(point)}: the copies would go onto the local disk under it, hidden once the share mounts; "
        "acqd waits until it is mounted"
    )
