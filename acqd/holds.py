"""What `acqd hold TARGET` means: the forms a person pastes, resolved against the journal.

A target may be a session name, a source path (absolute, or relative to a watch root; a file or a
folder), a destination path or URL (a tier's URL or local root plus the stored name, e.g.
file:///mnt/central/krios/sess/x.tif or s3://bucket/krios/sess), or a destination name below a
tier's root (`instrument/session`, `instrument/prefix/session`). Destinations are matched against the
names the journal recorded for each copy, never recomputed. Every form resolves to holds on paths
relative to a watch root (a session, a folder or one file), which is what the planner and the
runner compare each stored file with. Blocking (journal reads).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from acqd import journal as jr
from acqd.errors import AcqdError
from acqd.journal import Journal


class HoldTargetError(AcqdError):
    """A hold target that matches nothing the journal knows."""


@dataclass(frozen=True, order=True, slots=True)
class Target:
    root: str  # a watch root
    path: str  # relative to it; "" = the whole root


@dataclass
class Resolution:
    asked: str
    forms: list[str] = field(default_factory=list)  # which readings of `asked` matched
    targets: list[Target] = field(default_factory=list)
    files: int = 0  # files with a verified copy the holds cover now
    sessions: int = 0
    bytes: int = 0

    def describe(self) -> str:
        where = ", ".join(f"{t.root.rstrip('/')}/{t.path}" if t.path else t.root for t in self.targets)
        return (
            f"{self.asked} ({' and '.join(self.forms)}): {self.files} stored file(s) in {self.sessions} "
            f"session(s), {_human(self.bytes)}; held: {where}"
        )


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _below(path: str, base: str) -> str | None:
    """`path` relative to `base` ("" if equal), or None if it is not at or below it."""
    base = base.rstrip("/")
    if path.rstrip("/") == base:
        return ""
    if path.startswith(base + "/"):
        return path[len(base) + 1 :].strip("/")
    return None


def _source_of(row: jr.ScopeRow, dest: str) -> Target:
    """The source path a destination name `dest` stands for, given one copy at or below it: the
    copy's own file if `dest` is that copy (or a path inside it), else the source folder whose
    components line up with the stored name's (the file itself if they do not)."""
    root, relpath, _, _, _, stored, _, _ = row
    d = dest.strip("/")
    if stored == d or d.startswith(stored + "/"):
        return Target(root, relpath)
    tail = stored[len(d) + 1 :].split("/")
    rel = relpath.split("/")
    if len(tail) > len(rel):  # the destination asked is above the watch root's folder
        return Target(root, "")
    if tail[:-1] != rel[len(rel) - len(tail) : -1]:  # folders do not line up (a version store): the file
        return Target(root, relpath)
    return Target(root, "/".join(rel[: len(rel) - len(tail)]))


def _minimal(targets: Iterable[Target]) -> list[Target]:
    """Drop targets that another target of the same root already covers."""
    out: list[Target] = []
    for t in sorted(set(targets), key=lambda t: (t.root, t.path.count("/") if t.path else -1, t.path)):
        if not any(o.root == t.root and (o.path == "" or _below(t.path, o.path) is not None) for o in out):
            out.append(t)
    return sorted(out)


def resolve(
    j: Journal,
    asked: str,
    watch_roots: Iterable[str] = (),
    tiers: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Resolution:
    """Resolve `asked`; raise HoldTargetError (with the closest matches) if it matches nothing."""
    text = asked.strip()
    if not text:
        raise HoldTargetError("an empty hold target")
    tiers = tiers or {}
    roots = sorted({*(r.rstrip("/") for r in watch_roots), *(r.rstrip("/") for r in j.roots())})
    res = Resolution(asked)
    targets: list[Target] = []

    def by_source(root: str, rel: str, form: str) -> None:
        rows = jr.copies_below(j, root, rel)
        on_disk = os.path.lexists(os.path.join(root, rel)) if rel else os.path.isdir(root)
        if rows or on_disk:
            targets.append(Target(root, rel))
            if form not in res.forms:
                res.forms.append(form)

    def by_dest(dest: str, tier: str | None, form: str) -> None:
        rows = jr.copies_at_dest(j, dest, tier)
        if rows:
            targets.extend(_source_of(r, dest) for r in rows)
            if form not in res.forms:
                res.forms.append(form)

    if "://" in text:
        for name, url in tiers.items():
            rest = _below(text, url.rstrip("/"))
            if rest is not None:
                by_dest(rest, name, f"a destination URL on tier {name}")
    elif text.startswith("/"):
        path = os.path.normpath(text)
        for root in roots:
            rel = _below(path, root)
            if rel is not None:
                by_source(root, rel, "a source path")
        for name, url in tiers.items():
            if url.startswith("file://"):
                rest = _below(path, os.path.normpath(url[len("file://") :]))
                if rest is not None:
                    by_dest(rest, name, f"a destination path on tier {name}")
    else:
        rel = os.path.normpath(text).strip("/")
        if rel == ".." or rel.startswith("../"):
            raise HoldTargetError(f"{asked!r} leaves the watch root")
        if rel == ".":
            raise HoldTargetError("to hold a whole watch root, give its absolute path")
        for root in roots:
            if jr.copies_below(j, root, rel) or os.path.lexists(os.path.join(root, rel)):
                by_source(root, rel, "a session" if "/" not in rel else "a path in a watch root")
        by_dest(rel, None, "a destination name")
        here = os.path.normpath(os.path.join(cwd or Path.cwd(), text))
        for root in roots:
            below = _below(here, root)
            if below is not None and below != rel and os.path.lexists(here):
                by_source(root, below, "a path from the current folder")
    res.targets = _minimal(targets)
    if not res.targets:
        raise HoldTargetError(_nothing(j, asked, tiers))
    files: set[int] = set()
    sessions: set[tuple[str, str]] = set()
    for t in res.targets:
        for root, _, session, fid, _, _, size, state in jr.copies_below(j, t.root, t.path):
            if state == "verified" and fid not in files:
                files.add(fid)
                sessions.add((root, session))
                res.bytes += size
    res.files, res.sessions = len(files), len(sessions)
    return res


def _nothing(j: Journal, asked: str, tiers: dict[str, str]) -> str:
    """The one-line refusal, with the closest matches."""
    candidates: set[str] = set()
    for root, session, relpath, dest in jr.session_names(j):
        candidates.update((session, f"{root.rstrip('/')}/{session}"))
        depth, cut = relpath.count("/"), dest.split("/")
        if session != "." and depth < len(cut) and cut[len(cut) - depth - 1] == session:
            sess_dest = "/".join(cut[: len(cut) - depth])  # the session's folder at the destination
            candidates.add(sess_dest)
            candidates.update(f"{url.rstrip('/')}/{sess_dest}" for url in tiers.values())
        if session in asked:  # a mistyped file or folder of a session named right
            rels = [r[1] for r in jr.copies_below(j, root, session)[:2000]]
            candidates.update(f"{root.rstrip('/')}/{r}" if asked.startswith("/") else r for r in rels)
    close = difflib.get_close_matches(asked, sorted(candidates), n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else "; `acqd plan --config FILE` lists what is stored"
    return f"nothing stored matches hold target {asked!r} (a session, a source path or a destination path/URL){hint}"
