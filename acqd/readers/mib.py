"""Quantum Detectors Merlin (Medipix3) .mib: each frame behind its own ASCII header."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO

from acqd.errors import CutShortError, FormatError, UnsupportedFormatError
from acqd.lazy import lazy
from acqd.readers.base import Expect, FrameSource, read_exact, read_into

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


_DTYPES = {"U01": ">u1", "U08": ">u1", "U16": ">u2", "U32": ">u4", "U64": ">u8"}


def _parse(head: bytes) -> dict[str, Any]:
    text = head.decode("ascii", errors="replace")
    parts = text.split(",")
    if len(parts) < 7 or parts[0] != "MQ1":
        raise FormatError("broken MIB frame header (no 'MQ1,' at its start)")
    try:
        return {
            "seq": int(parts[1]),
            "header_bytes": int(parts[2]),
            "chips": int(parts[3]),
            "x": int(parts[4]),
            "y": int(parts[5]),
            "pixel_type": parts[6].strip(),
            "layout": parts[7].strip() if len(parts) > 7 else "",
            "time": parts[9].strip() if len(parts) > 9 else "",
        }
    except ValueError:
        raise FormatError(f"broken MIB frame header: {text[:60]!r}") from None


def open_mib(f: BinaryIO, size: int, expect: Expect, options: dict[str, Any]) -> FrameSource:
    first = _parse(read_exact(f, 0, 64))
    hb, nx, ny, ptype = first["header_bytes"], first["x"], first["y"], first["pixel_type"]
    if ptype == "R64":  # raw mode: a frame's size depends on the counter depth its acquisition chose
        raise UnsupportedFormatError(
            "a raw-mode MIB (pixel type R64: the chips' counter bits as read out, not typed pixels): not read as frames"
        )
    if ptype not in _DTYPES or hb < 64:
        raise FormatError(f"unsupported MIB pixel type {ptype!r} or header size {hb}")
    dtype = np.dtype(_DTYPES[ptype])
    frame = nx * ny * dtype.itemsize
    step = hb + frame
    if size % step:  # a frame still being written, or the file cut short
        whole, extra = divmod(size, step)
        tail = read_exact(f, whole * step, min(extra, 4))
        if b"MQ1,".startswith(tail):  # a frame's header begun: the frame is half there
            raise CutShortError(
                f"MIB size {size} is not a whole number of frames ({step} bytes each): {whole} whole, then "
                f"{extra} bytes of a frame begun: truncated, or still written"
            )
        raise CutShortError(  # a writer writes a frame's header first: not a frame being written, as far as seen
            f"MIB size {size} is {whole} whole frames ({step} bytes each) and {extra} bytes after them that are "
            "not the start of a frame (no 'MQ1,'): trailing bytes of another kind, or a writer acqd does not know"
        )
    n = size // step
    stated = hdr_counts(options.get("path"))
    if stated is not None and stated[1] > n:  # the acquisition's .hdr counts frames the file has not
        raise CutShortError(
            f"the acquisition's .hdr says {stated[1]} frames, the MIB holds {n}: truncated, or still written"
        )
    heads = []
    for i in range(n):
        raw = read_exact(f, i * step, hb)
        p = _parse(raw[:64])
        if (p["header_bytes"], p["x"], p["y"], p["pixel_type"]) != (hb, nx, ny, ptype):
            raise FormatError(f"MIB frame {i}: header disagrees with frame 0 ({p})")
        heads.append(raw)

    def read(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, ny, nx), dtype=dtype)
        for i in range(start, stop):
            read_into(f, i * step + hb, out[i - start])
        return out

    header = {
        "frames": n,
        "header_bytes": hb,
        "pixel_type": ptype,
        "layout": first["layout"],
        "frame_headers": [h.decode("ascii", "replace").rstrip("\x00 ") for h in heads],
    }
    scan = scan_shape(options.get("path"), n)
    return FrameSource(
        format="mib",
        shape=(n, ny, nx),
        dtype=dtype,
        header=header,
        read=read,
        restore=b"".join(heads),
        axis0="t",
        image2d=n == 1,
        scan=scan,
    )


def scan_shape(path: str | None, frames: int) -> tuple[int, int] | None:
    """(scan_y, scan_x) of a 4D-STEM scan as the acquisition's .hdr beside the .mib states it, read
    the way rosettasciio reads it: a scan line is 'Frames per Trigger', the lines are 'Frames in
    Acquisition' divided by that. None unless the .hdr is there, states both and they account for
    exactly this file's frames (a plain series of frames stays (t, y, x))."""
    counts = hdr_counts(path)
    if counts is None:
        return None
    per_line, total = counts
    if per_line < 2 or total != frames or total % per_line:
        return None
    return total // per_line, per_line


def hdr_counts(path: str | None) -> tuple[int, int] | None:
    """('Frames per Trigger', 'Frames in Acquisition') of the .hdr beside the .mib at `path`, if it is
    there and states both."""
    if not path:
        return None
    fields: dict[str, str] = {}
    try:
        with open(os.path.splitext(path)[0] + ".hdr", "rb") as f:
            text = f.read(1 << 16).decode("ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            fields[key.strip().rstrip(":")] = value.strip()
    try:
        return int(fields["Frames per Trigger (Number)"]), int(fields["Frames in Acquisition (Number)"])
    except (KeyError, ValueError):
        return None
