"""Raw frames with a geometry given by the profile (`raw: {shape: [y, x], dtype: <u2, header_bytes: 0}`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

from acqd.errors import CutShortError, FormatError
from acqd.lazy import lazy
from acqd.readers.base import Expect, FrameSource, read_array, read_exact

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


def open_raw(f: BinaryIO, size: int, expect: Expect, options: dict[str, Any]) -> FrameSource:
    try:
        ny, nx = (int(v) for v in options["shape"])
        dtype = np.dtype(options.get("dtype", "<u2"))
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"the profile's raw geometry is incomplete: {exc}") from None
    hb = int(options.get("header_bytes", 0))
    frame = nx * ny * dtype.itemsize
    if size < hb or (size - hb) % frame:
        # a frame half there (cut short, or still written), or bytes the profile's geometry does not
        # account for: stored byte-exact like a truncated MRC or MIB (a stranger's review: it was
        # quarantined, its only copy left on the acquisition disk), never as the whole frames in it
        raise CutShortError(
            f"raw size {size} is not {hb} header bytes plus whole {ny}x{nx} {dtype.name} frames ({frame} bytes): "
            "truncated, still written, or not the geometry the profile gives"
        )
    n = (size - hb) // frame
    if n == 0:  # its header alone: cut short, or still written (as a header-only MRC, stored byte-exact)
        raise CutShortError(
            f"raw file of {size} bytes: its {hb} header bytes and no frame: truncated, or still written"
        )
    restore = read_exact(f, 0, hb) if hb else b""

    def read(start: int, stop: int) -> np.ndarray:
        k = stop - start
        block: np.ndarray = read_array(f, hb + start * frame, k * frame).view(dtype).reshape(k, ny, nx)
        return block

    return FrameSource(
        format="raw",
        shape=(n, ny, nx),
        dtype=dtype,
        header={"header_bytes": hb},
        read=read,
        restore=restore,
        axis0=str(options.get("axis0", "z")),
    )
