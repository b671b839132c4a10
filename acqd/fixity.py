"""Reading stored copies back after the fact: `acqd verify` (fixity) and `acqd restore`.

A copy is found on its tier through the configuration, a `--dest` given again, or the tier URL the
journal recorded when it was shipped. A bad copy is reported with what is wrong (missing, truncated,
corrupt) and never stops the check of the others; a restore never leaves a partial output.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from acqd.config import Config
from acqd.errors import AcqdError, ConfigError, PermanentError, VerifyError
from acqd.journal import CopyRow, FileRow, Journal, recorded_tiers, without_password
from acqd.layouts import reading_layout
from acqd.naming import NAME_MAX, manifest_name, session_folder, zarr_own
from acqd.ports import Layout
from acqd.storage import Tier, open_tier
from acqd.storage.base import rename_noreplace

QUICK_CHUNK = 8 << 20


def dest_url(dest: str) -> str:
    """`--dest` as given to the quick form: a folder or an fsspec URL."""
    return dest if "://" in dest else "file://" + str(Path(dest).resolve())


class Tiers:
    """The tiers stored copies are read from: the configuration's, else `--dest`, else the ones the
    journal recorded. Opened once each, on first use."""

    def __init__(self, config: Config | None, dest: str | None, journal: Journal) -> None:
        self.config = config
        self.dest = dest
        self.recorded = recorded_tiers(journal)
        self._open: dict[str, Tier] = {}
        self.chunk = config.limits.chunk_bytes if config is not None else QUICK_CHUNK

    def get(self, name: str) -> Tier:
        if name not in self._open:
            self._open[name] = self._tier(name)
        return self._open[name]

    def _tier(self, name: str) -> Tier:
        if self.config is not None:
            t = self.config.tiers.get(name)
            if t is None:
                raise ConfigError(f"the journal has copies on tier {name!r}, which the configuration does not name")
            url, options = t.url, dict(t.options)
        elif self.dest is not None:
            url, options = dest_url(self.dest), {}
        elif name in self.recorded:
            url, options = self.recorded[name]
        else:
            raise ConfigError(
                f"the journal does not record where tier {name!r} is (shipped by an older acqd): "
                "pass --dest URL (quick form) or --config FILE"
            )
        try:
            return open_tier(name, url, options)
        except PermanentError as exc:
            raise ConfigError(str(exc)) from None

    def elsewhere(self, name: str) -> str | None:
        """The URL copies of tier `name` are read from when it is not where the journal recorded that
        tier (`--dest`, or the configuration's URL edited before the daemon that records it started: a
        mirror, a copy of the share, a migration being prepared): what is found there says nothing about
        the tier's own copies, and is not recorded (a copy missing from a partial mirror was recorded
        lost for good: a stranger's review). None otherwise."""
        if name not in self.recorded:
            return None
        if self.config is not None:
            t = self.config.tiers.get(name)
            if t is None:
                return None
            url, options = t.url.rstrip("/"), json.loads(json.dumps(dict(t.options), default=str))
        elif self.dest is not None:
            url, options = dest_url(self.dest).rstrip("/"), None
        else:
            return None
        # the journal keeps a tier's URL without its password: compared so, a --dest with one is the tier
        shown = without_password(url)
        there, recorded_options = self.recorded[name]
        if shown != without_password(there).rstrip("/"):
            return shown
        # the same URL through other options: an S3 bucket of the same name on another endpoint (a mirror
        # on another server: its missing copies were recorded lost, a stranger's review)
        if options is not None and options != recorded_options:
            changed = sorted(k for k in {*options, *recorded_options} if options.get(k) != recorded_options.get(k))
            return f"{shown} (its options {', '.join(changed)} not as recorded)"
        return None

    def close(self) -> None:
        for t in self._open.values():
            t.close()


def layout_of(copy: CopyRow, chunk: int) -> Layout:
    return reading_layout(copy.layout, copy.codec, chunk=chunk)


@dataclass(frozen=True)
class Problem:
    kind: str  # missing, truncated, corrupt, unreadable
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def check_copy(tier: Tier, copy: CopyRow, chunk: int) -> Problem | None:
    """Is the stored copy there, whole and equal to the source? None if so, else what is wrong."""
    url = tier.url(copy.dest)
    try:
        if not tier.exists(copy.dest):
            return Problem("missing", f"{url} is not there")
        zarr = copy.layout == "zarr"  # the objects acqd wrote: labels added to the store are no damage
        size = tier.tree_size(tier.path(copy.dest), zarr_own) if zarr else tier.size(copy.dest)
        if size is None:
            return Problem("missing", f"{url} is not there")
        if size < copy.stored_bytes:
            return Problem("truncated", f"{url} holds {size} of the {copy.stored_bytes} bytes written")
        if size > copy.stored_bytes:
            return Problem("corrupt", f"{url} holds {size} bytes, {copy.stored_bytes} were written")
    except AcqdError as exc:
        return Problem("unreadable", str(exc))
    try:
        layout_of(copy, chunk).verify(tier, copy.dest, copy.as_result())
    except VerifyError as exc:
        return Problem("corrupt", str(exc))
    except AcqdError as exc:
        return Problem("unreadable", str(exc))
    except Exception as exc:  # a decoder failing on damaged bytes raises whatever it raises
        return Problem("corrupt", f"{url}: cannot be decoded ({type(exc).__name__}: {exc})")
    return None


@dataclass(frozen=True)
class ManifestProblem:
    root: str
    session: str
    kind: str  # missing, unreadable, incomplete
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def _session_base(row: FileRow, copy: CopyRow) -> str | None:
    """The <instrument>[/<prefix>] a copy was stored under (its name is that, then the source path's
    folders and file name: acqd.naming.stored_name), or None if the name does not read that way."""
    parts = copy.dest.split("/")
    n = len(row.relpath.split("/"))
    if len(parts) <= n:
        return None
    base = "/".join(parts[:-n])
    return base if copy.dest.startswith(session_folder(base, row.session) + "/") else None


def check_manifests(
    tiers: Tiers,
    pairs: Iterable[tuple[FileRow, CopyRow]],
    marked: Collection[tuple[str, str]],
    whole: Collection[str],
) -> list[ManifestProblem]:
    """Is each session's manifest at the destination there, readable, and listing every verified copy
    the journal has of the session (by source, version, tier and name)? A session the journal already
    marks to be written again (`marked`: the daemon rewrites it) is not looked at. The manifest is
    looked for where the daemon writes it (its watch root's tier, the configuration's), then on the
    tiers of the session's copies (where the root was placed when it was written); missing only if
    one of those is in `whole`, where copies read back whole (else a share not mounted)."""
    by_session: dict[tuple[str, str], list[tuple[FileRow, CopyRow]]] = {}
    for row, copy in pairs:
        if (row.root, row.session) not in marked:
            by_session.setdefault((row.root, row.session), []).append((row, copy))
    roots = {}
    if tiers.config is not None:
        roots = {str(w.path).rstrip("/"): tiers.config.tier_for(w) for w in tiers.config.watch}
    out: list[ManifestProblem] = []
    for (root, session), rows in sorted(by_session.items()):
        base = next((b for b in (_session_base(r, c) for r, c in rows) if b is not None), None)
        if base is None:
            continue  # names of an older scheme: nothing to tell the manifest's place by
        rel = manifest_name(base, session)
        # where the daemon writes it now (its root's tier), else where it was written (a tier the root
        # was placed on before: one of its copies' tiers); looked for only on tiers seen mounted
        places = list(dict.fromkeys([roots.get(root) or rows[0][1].tier, *sorted({c.tier for _r, c in rows})]))
        data: bytes | None = None
        url = ""
        try:
            for tier_name in places:
                tier = tiers.get(tier_name)
                url = url or tier.url(rel)
                if tier.size(rel) is not None:
                    url = tier.url(rel)
                    with tier.open_read(rel) as f:
                        data = f.read()
                    break
        except AcqdError as exc:
            if any(t in whole for t in places):  # a tier that answers: this manifest cannot be read
                out.append(ManifestProblem(root, session, "unreadable", str(exc)))
            # else a tier that did not answer (a server down): its copies said unreadable; the manifest is
            # not blamed nor marked to be written again (every manifest was, a stranger's review)
            continue
        if data is None:
            if any(t in whole for t in places):  # not a share that is not mounted
                out.append(ManifestProblem(root, session, "missing", f"{url} is not there"))
            continue
        try:
            doc = json.loads(data)
            listed = {(e["source"], e["version"], e["tier"], e["dest"]) for e in doc["files"]}
        except (ValueError, TypeError, KeyError) as exc:
            out.append(ManifestProblem(root, session, "unreadable", f"{url} is not a manifest acqd wrote ({exc})"))
            continue
        unlisted = [r.relpath for r, c in rows if (r.relpath, r.version, c.tier, c.dest) not in listed]
        if unlisted:
            first = ", ".join(repr(u) for u in unlisted[:3]) + (", ..." if len(unlisted) > 3 else "")
            detail = f"{url} does not list {len(unlisted)} of the {len(rows)} verified copies ({first})"
            out.append(ManifestProblem(root, session, "incomplete", detail))
    return out


RESTORE_TEMP = ".acqd-restore-"  # `.<name>.acqd-restore-<host>-<pid>-<random>`: a restore's temporary beside OUT
RESTORE_IDLE = 60.0  # seconds a killed restore's temporary is left unchanged before another restore removes it


def _host() -> str:
    """This host's name as a restore's temporary carries it (no '/', which a name cannot hold)."""
    return os.uname().nodename.replace("/", "_") or "host"


def stale_restores(out_path: Path) -> list[Path]:
    """Remove the temporaries an earlier restore to `out_path` left when it was killed (kill -9, the
    machine stopped): named for that restore's process, which is no longer running. Those of a
    restore still running, or whose process cannot be told, stay. The ones removed."""
    removed = []
    name = out_path.name
    with contextlib.suppress(OSError), os.scandir(out_path.parent) as entries:
        for e in entries:
            stem, sep, tail = e.name.partition(RESTORE_TEMP)
            host, _, pid = tail.rpartition("-")[0].rpartition("-")
            # `.<name>`, or for a name near the length limit `.<its start>` (`restore_copy`)
            short = len(os.fsencode(e.name)) >= NAME_MAX - 4 and len(stem) > 1 and name.startswith(stem[1:])
            if not (sep and stem.startswith(".") and (stem[1:] == name or short) and pid.isdigit()):
                continue
            # a restore of this host (not one in a container's namespace of pids, nor another host's on a
            # shared folder: a review saw a running one's temporary removed), idle a while, whose process
            # is gone
            if host != _host():
                continue
            try:
                if time.time() - e.stat(follow_symlinks=False).st_mtime < RESTORE_IDLE:
                    continue
                os.kill(int(pid), 0)
                continue  # running (or another process has its number now): left alone
            except ProcessLookupError:
                pass
            except OSError:
                continue
            if e.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)
                    removed.append(Path(e.path))
    return removed


def restore_copy(tier: Tier, copy: CopyRow, out_path: Path, chunk: int, mtime_ns: int = 0) -> str:
    """Write the copy back in its source form to `out_path`, through a temporary next to it that is
    renamed only when the content's checksum equals the journal's; never overwrites, never leaves a
    partial file. `mtime_ns` (the source's modification time, as the journal recorded it; 0: unknown)
    is given to the restored file, as `cp -p` or `rsync -a` would."""
    parent = out_path.parent
    if not parent.is_dir():
        raise AcqdError(f"cannot restore to {out_path}: the folder {parent} does not exist")
    if out_path.exists() or out_path.is_symlink():
        raise AcqdError(f"{out_path} exists; restore never overwrites")
    # a name of its own, created here (never an existing file, never through a symlink), and published
    # without replacing: a file that appears under `out_path` meanwhile stays as it is
    tail = f"{RESTORE_TEMP}{_host()}-{os.getpid()}-{os.urandom(4).hex()}"
    stem = out_path.name
    while len(os.fsencode(f".{stem}{tail}")) > NAME_MAX:  # a name near the limit: its temporary shorter
        stem = stem[:-1]
    tmp = parent / f".{stem}{tail}"
    made = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        made = True
        with open(fd, "wb") as f:
            try:
                checksum = layout_of(copy, chunk).restore(tier, copy.dest, f)
            except AcqdError:
                raise
            except Exception as exc:  # damaged bytes make a decoder raise whatever it raises
                raise VerifyError(
                    f"{tier.url(copy.dest)}: cannot be decoded ({type(exc).__name__}: {exc}); nothing written"
                ) from None
            f.flush()
            os.fsync(f.fileno())
        if checksum != copy.checksum:
            raise VerifyError(
                f"{tier.url(copy.dest)}: restored content {checksum} != journal {copy.checksum}; nothing written"
            )
        if mtime_ns > 0:
            os.utime(tmp, ns=(time.time_ns(), mtime_ns), follow_symlinks=False)
        try:
            rename_noreplace(str(tmp), str(out_path))
        except FileExistsError:
            raise AcqdError(f"{out_path} exists (it appeared during the restore); restore never overwrites") from None
        made = False
        return checksum
    except OSError as exc:
        raise AcqdError(f"cannot restore to {out_path}: {exc.strerror or exc}") from None
    finally:
        if made:
            tmp.unlink(missing_ok=True)
