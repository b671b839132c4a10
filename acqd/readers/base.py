"""What every reader returns, and the profile's expectations it is checked against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acqd.errors import FormatError


@dataclass
class FrameSource:
    """Frames of one source file: shape (frames, y, x), dtype in the file's own byte order.

    `header` holds every header field as JSON values (they travel into the stored copy's
    attributes); `restore` holds the bytes that, with the pixels, give the source file back byte for
    byte (MRC: main and extended header; MIB: each frame's header), or None when the format is
    rebuilt from `header` (TIFF).
    """

    format: str
    shape: tuple[int, int, int]
    dtype: np.dtype[Any]
    header: dict[str, Any]
    read: Callable[[int, int], np.ndarray]  # frames [start, stop) as an array (frames, y, x)
    restore: bytes | None = None
    axis0: str = "t"  # t for movies and time series, z for stacks
    pixel_size_um: tuple[float, float] | None = None  # (y, x): along rows, along columns
    axis0_step_um: float | None = None  # spacing of a z stack's planes, where the source says it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_bytes(self) -> int:
        return int(self.shape[1] * self.shape[2] * self.dtype.itemsize)


@dataclass(frozen=True)
class Expect:
    dtype: str | None = None
    frame_shape: tuple[int, int] | None = None

    def check(self, src: FrameSource) -> None:
        if self.dtype is not None and src.dtype.newbyteorder("=") != np.dtype(self.dtype).newbyteorder("="):
            raise FormatError(f"dtype {src.dtype.name} does not match the profile's {self.dtype}")
        if self.frame_shape is not None and tuple(src.shape[1:]) != tuple(self.frame_shape):
            raise FormatError(
                f"frame shape {src.shape[1]}x{src.shape[2]} does not match the profile's "
                f"{self.frame_shape[0]}x{self.frame_shape[1]}"
            )
        if src.shape[0] < 1:
            raise FormatError("no frames")


def read_exact(f: Any, offset: int, n: int) -> bytes:
    f.seek(offset)
    data = f.read(n)
    if len(data) != n:
        raise FormatError(f"truncated: wanted {n} bytes at offset {offset}, got {len(data)}")
    return bytes(data)


def jsonable(v: Any) -> Any:
    """Header values as JSON: numpy scalars and arrays to lists, bytes to text (latin-1)."""
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, np.generic):
        return jsonable(v.item())
    if isinstance(v, bytes):
        return v.decode("latin-1").rstrip("\x00")
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v
