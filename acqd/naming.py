"""Destination names: one name belongs to exactly one (watch root, source path, version, layout). Pure.

A source path can contain any character but '/' and NUL, so no decoration acqd adds (a version, a
layout's suffix) and no name acqd keeps for itself (manifests, claims, temporaries) can be made
collision-free by luck. They are made collision-free by construction, with one marker character,
``~`` (an unreserved character in URLs, harmless in shells and on every filesystem):

* every ``~`` of a source name is doubled (``a~b`` is stored as ``a~~b``), so in a stored name
  coming from a source, a single ``~`` only ever starts one of acqd's decorations;
* a version after the first is ``~v<N>`` before the extension: ``movie.mrc`` version 2 is
  ``movie~v2.mrc``;
* a layout that changes the format appends ``~`` and its suffix: ``movie.mrc`` as TIFF is
  ``movie.mrc~.tif``, a stack as OME-Zarr ``stack.tif~.zarr``, a zstd copy ``a.dat~.zst``;
* names acqd keeps for itself begin with a single ``~`` (``~acqd-manifest.json``,
  ``~acqd-claim.json``) or with ``.~`` (hidden temporaries), which no stored source name does.

Read from left to right, a stored name decodes to exactly one (name, version, suffix), so two
distinct sources can never meet under one name; a property test checks this over generated names.
Watch roots' prefixes must not nest (checked in the configuration), so roots own disjoint subtrees.
"""

from __future__ import annotations

import re

import xxhash

MARK = "~"
MANIFEST = "~acqd-manifest.json"
CLAIM = "~acqd-claim.json"
TEMP_PREFIX = ".~acqd-tmp."  # + the final component's name
TEMP_HASHED = ".~acqd-tmp-"  # + a hash of it, when the name is too long to take the prefix
HOLDS = "~acqd-holds"  # INSTRUMENT/~acqd-holds/: the holds' records on a tier (acqd.holdledger), no data
RELEASE_ASIDE = ".~acqd-release."  # + the inode number: a released file moved aside, then unlinked
NAME_MAX = 255  # bytes in one path component, on every filesystem acqd ships to
SUFFIXES = ("", ".tif", ".zarr", ".zst")


def _bytes(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


def escape(component: str) -> str:
    """A source path component as it is stored: every ``~`` doubled."""
    return component.replace(MARK, MARK + MARK)


def split_ext(name: str) -> tuple[str, str]:
    """``movie.mrc`` -> (``movie``, ``.mrc``); a name starting with '.' has no extension."""
    if name.startswith("."):
        return name, ""
    stem, dot, ext = name.partition(".")
    return stem, dot + ext


def stored_component(name: str, version: int = 1, suffix: str = "") -> str:
    """The stored name of one source file name, with its version and the layout's suffix."""
    if suffix not in SUFFIXES:
        raise ValueError(f"unknown layout suffix {suffix!r}")
    if not name or "/" in name or "\0" in name:
        raise ValueError(f"not a file name: {name!r}")
    stem, ext = split_ext(name)
    out = escape(stem)
    if version > 1:
        out += f"{MARK}v{version}"
    out += escape(ext)
    if suffix:
        out += MARK + suffix
    return out


def stored_name(base: str, rel: str, version: int = 1, suffix: str = "") -> str:
    """``<base>/<escaped folders>/<stored file name>``; `base` is ``<instrument>[/<prefix>]``."""
    *folders, name = rel.split("/")
    parts = [escape(f) for f in folders] + [stored_component(name, version, suffix)]
    return "/".join([base.rstrip("/"), *parts]) if base else "/".join(parts)


def session_folder(base: str, session: str) -> str:
    """Where a session's data lands (``.`` is the watch root itself)."""
    return base if session == "." else f"{base}/{escape(session)}"


def manifest_name(base: str, session: str) -> str:
    return f"{session_folder(base, session)}/{MANIFEST}"


def claim_name(instrument: str) -> str:
    return f"{instrument}/{CLAIM}"


def temp_name(rel: str) -> str:
    """The hidden temporary of a stored name, in the same folder; deterministic, so a restart finds it."""
    head, _, base = rel.rpartition("/")
    tmp = TEMP_PREFIX + base
    if _bytes(tmp) > NAME_MAX:
        tmp = TEMP_HASHED + xxhash.xxh3_128_hexdigest(base.encode("utf-8", "surrogateescape"))
    return f"{head}/{tmp}" if head else tmp


def is_temp(component: str) -> bool:
    return component.startswith((TEMP_PREFIX, TEMP_HASHED))


#: the top-level names of what acqd writes in a Zarr copy (the group's zarr.json, the frame array, the
#: header and restore arrays): anything else in the store is someone else's (napari's `labels/`)
ZARR_ARRAY, ZARR_HEADER, ZARR_RESTORE = "0", "acqd-header", "acqd-restore"
ZARR_OWN = (ZARR_ARRAY, ZARR_HEADER, ZARR_RESTORE)


def zarr_own(rel: str) -> bool:
    """Is the object at `rel` (its path in a Zarr copy) one acqd wrote? Integrity checks look at those
    only: labels or annotations a scientist adds to the store are neither damage nor deleted."""
    return rel == "zarr.json" or rel.split("/", 1)[0] in ZARR_OWN


def release_aside(inode: int) -> str:
    """The hidden name a file is moved to, in its own folder, for the instant of its release."""
    return f"{RELEASE_ASIDE}{inode}"


def is_release_aside(component: str) -> bool:
    return component.startswith(RELEASE_ASIDE)


def aside_inode(component: str) -> int | None:
    """The inode a release's hidden name was made for (the journal's, which is not the hidden file's
    own when another program put a new file under the name at the instant of the release); None for
    any other name."""
    digits = component.removeprefix(RELEASE_ASIDE) if is_release_aside(component) else ""
    return int(digits) if digits.isdigit() and digits.isascii() else None


def is_reserved(component: str) -> bool:
    """A component no stored source name can have: acqd's own (manifest, claim, temporaries)."""
    if component.startswith(MARK):
        return not component.startswith(MARK + MARK)
    if component.startswith("." + MARK):
        return not component.startswith("." + MARK + MARK)
    return False


_TOKEN = re.compile(r"~~|~v(\d+)|~(\.[a-z]+)$|~|[^~]+", re.DOTALL)


def parse_component(stored: str) -> tuple[str, int, str] | None:
    """The inverse of `stored_component`: (name, version, suffix), or None for a name acqd keeps for
    itself or one no source maps to."""
    if is_reserved(stored):
        return None
    name, version, suffix = "", 1, ""
    marker_at = -1
    for m in _TOKEN.finditer(stored):
        tok = m.group(0)
        if suffix:
            return None  # nothing may follow the layout's suffix
        if tok == MARK + MARK:
            name += MARK
        elif m.group(1) is not None:
            if marker_at >= 0:
                return None
            version, marker_at = int(m.group(1)), len(name)
            if version < 2:
                return None
        elif m.group(2) is not None:
            suffix = m.group(2)
            if suffix not in SUFFIXES:
                return None
        elif tok == MARK:
            return None
        else:
            name += tok
    if not name or (marker_at >= 0 and marker_at != len(split_ext(name)[0])):
        return None
    return name, version, suffix
