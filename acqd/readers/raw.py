"""Raw frames with a geometry given by the profile (`raw: {shape: [y, x], dtype: <u2, header_bytes: 0}`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

from acqd.errors import FormatError
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
        raise FormatError(
            f"raw size {size} is not {hb} header bytes plus whole {ny}x{nx} {dtype.name} frames ({frame} bytes)"
        )
    n = (size - hb) // frame
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
