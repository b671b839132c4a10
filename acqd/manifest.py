"""The per-session manifest written next to the data on central storage. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from acqd.naming import MANIFEST, manifest_name

SCHEMA = "acqd-manifest/1"
NAME = MANIFEST  # a reserved name (acqd.naming): no stored source can be called that


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    source: str
    version: int
    dest: str
    tier: str
    layout: str
    codec: str
    source_bytes: int
    stored_bytes: int
    checksum: str
    source_mtime_ns: int
    verified_at: float | None
    state: str
    detector: str
    profile_mismatch: str | None = None  # a valid file its detector profile did not expect (stored as is)
    codec_why: str | None = None  # why its codec was chosen (measured per session), or why byte-exact


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def manifest_path(base: str, session: str) -> str:
    """`base` is <instrument>[/<prefix>] of the watch root."""
    return manifest_name(base, session)


def other_roots(doc: object, watch_root: str) -> list[dict[str, object]]:
    """The entries of a manifest already at the destination that another watch root shipped (the
    same prefix and session: a watch root whose path changed, or a PC that took over): they are
    kept when this root writes the manifest again, each naming its own root."""
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        return []
    top = doc.get("watch_root")
    out = []
    for e in doc["files"]:
        if not isinstance(e, dict):
            continue
        root = e.get("watch_root", top)
        if isinstance(root, str) and root != watch_root and _well_formed(e):
            out.append({**e, "watch_root": root})
    return out


def own_entries(doc: object, watch_root: str) -> set[tuple[str, int, str]]:
    """(source, version, dest) of each entry of a manifest at the destination that `watch_root`
    shipped: what the journal that writes it again must know (`Pipeline._stale_journal`)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        return set()
    top = doc.get("watch_root")
    return {
        (str(e["source"]), int(str(e["version"])), str(e["dest"]))
        for e in doc["files"]
        if isinstance(e, dict) and e.get("watch_root", top) == watch_root and _well_formed(e)
    }


def _well_formed(e: dict[str, object]) -> bool:
    """An entry as acqd writes one (a manifest at the destination can be edited by anyone who can
    write there: an entry that is not is dropped rather than let stop every manifest's rewrite)."""
    texts = all(isinstance(e.get(k), str) for k in ("source", "dest", "tier", "layout", "codec", "checksum"))
    numbers = all(
        isinstance(e.get(k), int) and not isinstance(e.get(k), bool)
        for k in ("version", "source_bytes", "stored_bytes")
    )
    return texts and numbers


def build(
    instrument: str,
    session: str,
    watch_root: str,
    entries: Iterable[ManifestEntry],
    now: float,
    others: Iterable[dict[str, object]] = (),
) -> bytes:
    """The manifest of `watch_root`'s files of `session`, with `others` (`other_roots`) kept beside them."""
    files: list[dict[str, object]] = [
        {
            "source": e.source,
            "version": e.version,
            "dest": e.dest,
            "tier": e.tier,
            "layout": e.layout,
            "codec": e.codec,
            "source_bytes": e.source_bytes,
            "stored_bytes": e.stored_bytes,
            "checksum": e.checksum,
            "source_mtime": iso(e.source_mtime_ns / 1e9),
            "source_mtime_ns": e.source_mtime_ns,
            "verified_at": iso(e.verified_at),
            "state": e.state,
            "detector": e.detector,
            **({"profile_mismatch": e.profile_mismatch} if e.profile_mismatch else {}),
            **({"codec_why": e.codec_why} if e.codec_why else {}),
        }
        for e in entries
    ]
    files += others
    head = {
        "schema": SCHEMA,
        "instrument": instrument,
        "session": session,
        "watch_root": watch_root,
        "updated": iso(now),
    }
    totals = {
        "files": len(files),
        "source_bytes": sum(int(f["source_bytes"]) for f in files),  # type: ignore[call-overload]
        "stored_bytes": sum(int(f["stored_bytes"]) for f in files),  # type: ignore[call-overload]
    }
    # one line per file, by the C encoder (json's `indent` takes its pure-Python encoder: ten times
    # the CPU, and a session's manifest is written again as its files are verified)
    lines = [f" {_ENCODE(k)}: {_ENCODE(v)}," for k, v in head.items()]
    body = ",\n  ".join(_ENCODE(f) for f in files)
    lines.append(f' "files": [\n  {body}\n ],' if files else ' "files": [],')
    lines.append(f' "totals": {_ENCODE(totals)}')
    return ("{\n" + "\n".join(lines) + "\n}\n").encode("utf-8")


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
