"""Is a file complete? Pure decisions from observations, a monotonic `now` and header bytes."""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from acqd.values import Identity


class Verdict(enum.Enum):
    WAIT = "wait"
    COMPLETE = "complete"
    CHANGED = "changed"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    check_at: float = 0.0  # monotonic time of the next look (WAIT, CHANGED)


FORMAT_PROOF = "format: size matches the header"  # the reason of a completion by the format's proof


def decide(
    window: float,
    stable: Identity,
    stable_since: float,
    current: Identity | None,
    now: float,
    *,
    format_complete: bool = False,
    marker_present: bool = False,
) -> Decision:
    """One look at a candidate.

    `stable` is the identity last seen and `stable_since` the monotonic time since which it has not
    changed. The file is complete when it has been still for `window`, when its format proves it
    (`format_complete`, computed on `current`), or when its marker file is present.
    """
    if current is None:
        return Decision(Verdict.GONE, "vanished")
    if current.size == 0 and not marker_present:
        # An empty file is a file being created: it has to stay still for the full window.
        format_complete = False
    if format_complete:
        return Decision(Verdict.COMPLETE, FORMAT_PROOF)
    if marker_present:
        return Decision(Verdict.COMPLETE, "marker file present")
    if not current.same_content_as(stable):
        why = "shrank" if current.size < stable.size else "changed"
        return Decision(Verdict.CHANGED, why, check_at=now + window)
    if now - stable_since >= window:
        return Decision(Verdict.COMPLETE, f"still for {window:g}s")
    return Decision(Verdict.WAIT, "settling", check_at=stable_since + window)


# --- format proofs -------------------------------------------------------------------------------

_MRC_MODE_BITS = {0: 8, 1: 16, 2: 32, 3: 32, 4: 64, 6: 16, 12: 16, 101: 4}


def mrc_expected_size(header: bytes) -> int | None:
    """The file size an MRC2014 header implies, or None if the header is not a plausible MRC one."""
    shape = mrc_shape(header)
    return None if shape is None else shape[0]


def mrc_shape(header: bytes) -> tuple[int, int] | None:
    """(the file size an MRC2014 header implies, its section count nz), or None if the header is not a
    plausible MRC one."""
    if len(header) < 1024:
        return None
    stamp = header[212:214]
    orders = ["<", ">"] if stamp != b"\x11\x11" else [">", "<"]
    for bo in orders:
        nx, ny, nz, mode = struct.unpack_from(bo + "4i", header, 0)
        (nsymbt,) = struct.unpack_from(bo + "i", header, 92)
        if mode in _MRC_MODE_BITS and 0 < nx < 2**20 and 0 < ny < 2**20 and 0 < nz < 2**24 and nsymbt >= 0:
            bits = nx * ny * nz * _MRC_MODE_BITS[mode]
            return int(1024 + nsymbt + (bits + 7) // 8), nz
    return None


#: bytes at a movie's end that must not all be zero for its header's size to prove it complete
UNWRITTEN_TAIL = 4096


def tail_unwritten(read: Callable[[int, int], bytes], size: int, start: int = 1024) -> bool:
    """Are the last bytes of a file (after `start`, its header) all zero, or no longer there? A writer
    that pre-allocated the movie (its full size at once, then the frames written into it) has not
    written its last frame yet: the size its header announces then proves nothing. (A movie whose
    last frame is truly blank only waits for stillness, as a file without a format proof does.)"""
    n = min(UNWRITTEN_TAIL, size - start)
    if n <= 0:
        return False
    data = read(size - n, n)
    return len(data) < n or data.count(0) == n


_TIFF_TYPE = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # SHORT, LONG, LONG8
_OFFSETS_TAGS = {273: 279, 324: 325}  # StripOffsets -> StripByteCounts, TileOffsets -> TileByteCounts


def tiff_chain_complete(read: Callable[[int, int], bytes], size: int, max_ifds: int = 1_000_000) -> bool:
    """True if the TIFF's IFD chain parses to its end within `size` bytes and every strip or tile it
    points to lies inside the file (classic TIFF and BigTIFF)."""
    head = read(0, 16)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return False
    bo = "<" if head[:2] == b"II" else ">"
    (version,) = struct.unpack_from(bo + "H", head, 2)
    if version == 42:
        (offset,) = struct.unpack_from(bo + "I", head, 4)
        count_fmt, count_len, entry_len, off_fmt, off_len = "H", 2, 12, "I", 4
    elif version == 43 and len(head) >= 16:
        (offset,) = struct.unpack_from(bo + "Q", head, 8)
        count_fmt, count_len, entry_len, off_fmt, off_len = "Q", 8, 20, "Q", 8
    else:
        return False
    seen: set[int] = set()
    while offset != 0:
        if offset in seen or len(seen) >= max_ifds or offset + count_len > size:
            return False
        seen.add(offset)
        raw = read(offset, count_len)
        if len(raw) < count_len:
            return False
        (count,) = struct.unpack(bo + count_fmt, raw)
        nxt = offset + count_len + count * entry_len
        if nxt + off_len > size or count > 10_000:
            return False
        entries = read(offset + count_len, count * entry_len)
        raw = read(nxt, off_len)
        if len(raw) < off_len or len(entries) < count * entry_len:
            return False
        values: dict[int, list[int]] = {}
        for i in range(count):
            e = entries[i * entry_len : (i + 1) * entry_len]
            tag, typ = struct.unpack_from(bo + "HH", e, 0)
            if tag not in _OFFSETS_TAGS and tag not in _OFFSETS_TAGS.values():
                continue
            if typ not in _TIFF_TYPE:
                return False
            fmt, width = _TIFF_TYPE[typ]
            (n,) = struct.unpack_from(bo + off_fmt, e, 4)
            if n * width <= off_len:
                data = e[4 + off_len : 4 + off_len + n * width]
            else:
                (where,) = struct.unpack_from(bo + off_fmt, e, 4 + off_len)
                if where + n * width > size:
                    return False
                data = read(where, n * width)
            if len(data) < n * width:
                return False
            values[tag] = list(struct.unpack(f"{bo}{n}{fmt}", data))
        for off_tag, cnt_tag in _OFFSETS_TAGS.items():
            offs, cnts = values.get(off_tag, []), values.get(cnt_tag, [])
            if any(o + c > size for o, c in zip(offs, cnts, strict=False)):
                return False
        (offset,) = struct.unpack(bo + off_fmt, raw)
    return bool(seen)


def marker_name(template: str, name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return template.format(name=name, stem=stem if dot else name)
