"""What every reader returns, and the profile's expectations it is checked against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from acqd.errors import FormatError
from acqd.lazy import lazy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


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
    axis0_interval_s: float | None = None  # time between a time series' frames, where the source says it
    unit: str = "micrometer"  # the unit the source states its sizes in (NGFF name), for display
    image2d: bool = False  # one 2-D image (not a stack of one frame): stored 2-D
    scan: tuple[int, int] | None = None  # (scan_y, scan_x) of a 4D-STEM scan whose frames are its points
    mismatch: str | None = None  # how a valid file differs from its profile's modes (None: it fits)
    mode: str | None = None  # the profile's mode the file fits, where the profile names its modes
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_bytes(self) -> int:
        return int(self.shape[1] * self.shape[2] * self.dtype.itemsize)


@dataclass(frozen=True)
class Mode:
    """One way the detector writes its files: a dtype and a frame shape (None: any)."""

    name: str = ""
    dtype: str | None = None
    frame_shape: tuple[int, int] | None = None

    def fits(self, src: FrameSource) -> bool:
        if self.dtype is not None and src.dtype.newbyteorder("=") != np.dtype(self.dtype).newbyteorder("="):
            return False
        return self.frame_shape is None or tuple(src.shape[1:]) == tuple(self.frame_shape)

    def __str__(self) -> str:
        shape = f"{self.frame_shape[0]}x{self.frame_shape[1]}" if self.frame_shape else "any size"
        what = f"{self.dtype or 'any dtype'} {shape}"
        return f"{self.name} ({what})" if self.name else what


@dataclass(frozen=True)
class Expect:
    """The profile's expectations: the modes its detector writes (`dtype` and `frame_shape` are one
    unnamed mode). A valid file that fits none of them is not an error: it is stored faithfully and
    flagged (`mismatch`); only a file that cannot be read is a FormatError."""

    dtype: str | None = None
    frame_shape: tuple[int, int] | None = None
    modes: tuple[Mode, ...] = ()

    def all_modes(self) -> tuple[Mode, ...]:
        if self.modes:
            return self.modes
        if self.dtype is None and self.frame_shape is None:
            return ()
        return (Mode("", self.dtype, self.frame_shape),)

    def check(self, src: FrameSource) -> None:
        """Raise for what makes a file unstorable; note how a storable file surprises the profile."""
        if src.shape[0] < 1:
            raise FormatError("no frames")
        modes = self.all_modes()
        fit = next((m for m in modes if m.fits(src)), None)
        if fit is not None:
            src.mode = fit.name or None
        elif modes:
            src.mismatch = (
                f"{src.dtype.name} frames of {src.shape[1]}x{src.shape[2]}, "
                f"the profile lists {'; '.join(map(str, modes))}"
            )


_MAGIC = (
    (b"II*\0", "TIFF"),
    (b"MM\0*", "TIFF"),
    (b"II+\0", "TIFF"),  # BigTIFF
    (b"MM\0+", "TIFF"),
    (b"MQ1,", "MIB"),
    (b"\x89HDF\r\n\x1a\n", "HDF5"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def sniff(head: bytes) -> str | None:
    """The format a file's first bytes (up to 1024) say it is: TIFF, MRC, MIB, HDF5, PNG, JPEG, ZIP,
    gzip or zstd; None for anything else (a damaged file, raw frames, text)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 1024 and head[208:211] == b"MAP":
        return "MRC"
    return None


def read_exact(f: Any, offset: int, n: int) -> bytes:
    f.seek(offset)
    data = f.read(n)
    if len(data) != n:
        raise FormatError(f"truncated: wanted {n} bytes at offset {offset}, got {len(data)}")
    return bytes(data)


def read_array(f: Any, offset: int, n: int) -> np.ndarray:
    """`n` bytes at `offset` as a uint8 array, read straight into it (numpy asks the kernel for huge
    pages for a large array, where a `bytes` object's fresh pages fault 4 KiB at a time)."""
    out = np.empty(n, np.uint8)
    read_into(f, offset, out)
    return out


def read_into(f: Any, offset: int, out: np.ndarray) -> None:
    """Fill the contiguous array `out` with the bytes at `offset`."""
    if not out.flags.c_contiguous:  # reshape would read into a copy
        raise ValueError("read_into needs a contiguous array")
    f.seek(offset)
    view: memoryview = out.reshape(-1).view(np.uint8).data
    n, got = len(view), 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise FormatError(f"truncated: wanted {n} bytes at offset {offset}, got {got}")
        got += k


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
    if v is None or isinstance(v, str | int | float):  # bool is an int
        return v
    return str(v)  # a complex number, a date, an enum a vendor parser gives: said as text


# lengths in micrometres of the NGFF unit names acqd writes, and the spellings sources use for them
UM_PER_UNIT = {
    "picometer": 1e-6,
    "angstrom": 1e-4,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
    "kilometer": 1e9,
    "inch": 25400.0,
}
_UNIT_NAMES = {
    **{u: u for u in UM_PER_UNIT},
    "pm": "picometer",
    "a": "angstrom",
    "å": "angstrom",
    "\u212b": "angstrom",
    "nm": "nanometer",
    "um": "micrometer",
    "µm": "micrometer",
    "\u03bcm": "micrometer",
    "\\u00b5m": "micrometer",
    "\\u00c5": "angstrom",  # ImageJ's description escapes the non-ASCII (looked up lower-cased)
    "\\u212b": "angstrom",
    "micron": "micrometer",
    "microns": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "km": "kilometer",
    "in": "inch",
    "inches": "inch",
    # the plurals, as a user types them into ImageJ's Properties (`nanometers` was no unit: a review)
    **{f"{u}s": u for u in UM_PER_UNIT if u != "inch"},
}


# seconds per time unit, in the spellings sources use (ImageJ's `tunit=`, OME's TimeIncrementUnit)
SECONDS_PER_UNIT = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "\u03bcs": 1e-6,
    "usec": 1e-6,
    "microsecond": 1e-6,
    "microseconds": 1e-6,
    "ns": 1e-9,
    "nanosecond": 1e-9,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


def seconds(value: Any, unit: Any) -> float | None:
    """A time interval in seconds from a source's value and unit name (None: not a positive finite
    number, or a unit that is not a time)."""
    factor = SECONDS_PER_UNIT.get(unit.strip().lower()) if isinstance(unit, str) else None
    try:
        v = float(value) if not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        return None
    return v * factor if factor is not None and v > 0 and np.isfinite(v) else None


def length_unit(text: Any) -> str | None:
    """The NGFF name of a length unit as a source spells it (ImageJ's `unit=micron`, OME's `µm`),
    or None for 'pixel', empty or anything that is not a length."""
    if not isinstance(text, str):
        return None
    return _UNIT_NAMES.get(text.strip().lower())


def display_unit(um: float) -> str:
    """A unit to show a pixel size of `um` micrometres in, when the source states none (TIFF
    resolution per centimetre or inch): nanometres below 0.1 um, millimetres from 1 mm."""
    return "nanometer" if um < 0.1 else "millimeter" if um >= 1000 else "micrometer"
