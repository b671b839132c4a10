"""MRC2014 (mrcfile's header model), including FEI1/FEI2 extended headers. Movies are (frames, y, x)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, BinaryIO

from acqd.errors import CutShortError, FormatError, UnfinishedFormatError, UnsupportedFormatError
from acqd.lazy import lazy
from acqd.readers.base import Expect, FrameSource, jsonable, read_array, read_exact

if TYPE_CHECKING:
    import mrcfile.utils as mrcfile_utils
    import numpy as np
else:
    mrcfile_utils = lazy("mrcfile.utils")
    np = lazy("numpy")


HEADER = 1024
IMOD_STAMP = 1146047817
# valid modes (MRC2014, IMOD) whose pixels no numpy dtype holds: such a file is checked like any other
# (its size against its header), then left to the layout as valid but not typed frames
UNFRAMED_MODES = {3: "complex int16", 16: "RGB, 3 bytes per pixel (IMOD)", 101: "4-bit, 2 pixels per byte"}


def _section_bytes(mode: int, ny: int, nx: int) -> int:
    if mode == 101:  # each row starts on a byte (IMOD)
        return ny * ((nx + 1) // 2)
    return ny * nx * (4 if mode == 3 else 3)


def _byte_order(raw: bytes) -> str:
    """The header's byte order by its machine stamp (bytes 212-213): big-endian '>' or little '<'."""
    return ">" if bytes(raw[212:214]) in (b"\x11\x11", b"\x11\x00") else "<"


#: bytes per pixel of the modes a header may state (3, 16 and 101 by `_section_bytes`)
_MODE_BYTES = {0: 1, 1: 2, 2: 4, 4: 8, 6: 2, 12: 2}


def _old_style(raw: bytes, size: int) -> str | None:
    """The byte order ("little-endian" or "big-endian") in which a header without 'MAP ' (older than
    MRC2000; mrcfile reads it in permissive mode, as IMOD and RELION do) states dimensions, a mode and
    an extended header whose sizes are exactly the file's; None: no such reading (damaged or not MRC)."""
    for bo, said in (("<", "little-endian"), (">", "big-endian")):
        nx, ny, nz, mode = struct.unpack_from(bo + "4i", raw, 0)
        nsymbt = struct.unpack_from(bo + "i", raw, 92)[0]
        if min(nx, ny, nz) < 1 or nsymbt < 0 or (mode not in _MODE_BYTES and mode not in UNFRAMED_MODES):
            continue
        frame = nx * ny * _MODE_BYTES[mode] if mode in _MODE_BYTES else _section_bytes(mode, ny, nx)
        if HEADER + nsymbt + nz * frame == size:
            return said
    return None


def _header(raw: bytes) -> Any:
    from mrcfile.dtypes import HEADER_DTYPE

    h = np.frombuffer(raw, dtype=HEADER_DTYPE).view(np.recarray)
    if _byte_order(raw) == ">":
        h = h.view(h.dtype.newbyteorder(">")).view(np.recarray)
    return h


def open_mrc(f: BinaryIO, size: int, expect: Expect, options: dict[str, Any]) -> FrameSource:
    raw = read_exact(f, 0, HEADER)
    h = _header(raw)
    if bytes(h.map[0]) not in (b"MAP ", b"MAP\x00", b"MAP"):
        if (order := _old_style(raw, size)) is not None:  # readable, not damaged: never left unstored
            raise UnsupportedFormatError(
                f"an MRC file without 'MAP ' at byte 208 (an older header, {order}, whose sizes add up to the "
                "file's): stored byte-exact, not read as frames"
            )
        raise FormatError("not an MRC file (no 'MAP ' at byte 208)")
    mode = int(h.mode[0])
    dtype: np.dtype[Any] | None = None
    if mode not in UNFRAMED_MODES:
        try:
            dtype = mrcfile_utils.data_dtype_from_header(h)  # the whole record keeps the byte order; h[0] drops it
        except ValueError as exc:  # a mode no standard defines: a damaged header
            raise FormatError(f"bad MRC header: {exc}") from None
    # mode 0 is signed bytes, unless the IMOD stamp says they are unsigned (SerialEM, K2/K3 movies)
    if mode == 0:
        stamp, flags = struct.unpack_from(
            _byte_order(raw) + "2i", raw, 152
        )  # IMOD's stamp and flags (in mrcfile's extra2)
        if stamp == IMOD_STAMP and not flags & 1:
            dtype = np.dtype("uint8")
    nx, ny, nz = int(h.nx[0]), int(h.ny[0]), int(h.nz[0])
    nsymbt = int(h.nsymbt[0])
    if min(nx, ny, nz) < 1 or nsymbt < 0:
        raise FormatError(f"bad MRC header: nx={nx} ny={ny} nz={nz} nsymbt={nsymbt}")
    offset = HEADER + nsymbt
    frame = nx * ny * dtype.itemsize if dtype is not None else _section_bytes(mode, ny, nx)
    kind = dtype.name if dtype is not None else f"mode {mode}"
    expected = offset + nz * frame
    if size < expected:
        have = (size - offset) / frame if size > offset else 0
        raise CutShortError(  # a writer that wrote the header first, still at work or cut short
            f"truncated MRC: the header says {nz} frames of {ny}x{nx} {kind} ({expected} bytes), "
            f"the file has {size} bytes ({have:.2f} frames)"
        )
    if size > expected:  # frames the header does not count yet (a writer that updates it last), or trailing bytes
        raise UnfinishedFormatError(
            f"MRC header frame count disagrees with the file size: {nz} frames = {expected} bytes, "
            f"the file has {size} bytes ({size - expected} extra)"
        )
    if dtype is None:  # whole and valid: its pixels are no dtype a frame layout writes
        raise UnsupportedFormatError(f"MRC mode {mode} ({UNFRAMED_MODES[mode]}): not typed frames")
    dt: np.dtype[Any] = dtype
    restore = raw + read_exact(f, HEADER, nsymbt)
    header = {name: jsonable(h[name][0]) for name in h.dtype.names or ()}
    header["exttyp"] = bytes(h.exttyp[0]).decode("latin-1")
    fei = fei_extended(header["exttyp"], restore[HEADER:], _byte_order(raw), nz)
    if fei is not None:  # what an EPU movie says of its microscope, dose and exposure, readable
        header["fei_extended"] = fei
    row, col, sec = voxel_sizes(h)
    # the profile says what the first axis is (a movie's frames: t); its header's space group (0: an
    # image stack, 1: a volume) only where no profile says
    axis0 = options.get("axis0") or ("t" if int(h.ispg[0]) == 0 else "z")
    movie = axis0 == "t"

    def read(start: int, stop: int) -> np.ndarray:
        n = stop - start
        return read_array(f, offset + start * frame, n * frame).view(dt).reshape(n, ny, nx)

    return FrameSource(
        format="mrc",
        shape=(nz, ny, nx),
        dtype=dt,
        header=header,
        read=read,
        restore=restore,
        axis0="t" if movie else "z",
        pixel_size_um=(row * 1e-4, col * 1e-4) if row and col else None,
        axis0_step_um=sec * 1e-4 if sec and not movie and nz > 1 else None,
        unit="angstrom",
        image2d=nz == 1,
    )


#: FEI extended header fields that are layout, not metadata
_FEI_SKIP = ("Metadata size", "Metadata version", "Bitmask", "Unused", "reserved")


def fei_extended(exttyp: str, ext: bytes, byte_order: str, frames: int) -> dict[str, Any] | None:
    """An FEI1/FEI2 extended header's records (one per frame, as EPU writes them; the rest of the
    block is padding) as JSON: the first record's fields by name (mrcfile's dtype), the number of
    records and the fields whose values differ between them. None for another extended header, or
    one that does not parse (kept byte for byte for the restore all the same)."""
    if exttyp not in ("FEI1", "FEI2") or len(ext) < 8:
        return None
    try:
        from mrcfile.dtypes import get_ext_header_dtype

        dtype = get_ext_header_dtype(exttyp.encode(), byte_order)
        size = struct.unpack_from(byte_order + "i", ext, 0)[0]
        if dtype is None or size < 8 or size > len(ext):  # a record shorter than the dtype: padded
            return None
        n = min(frames, len(ext) // size)
        records = []
        for i in range(n):
            rec = ext[i * size : i * size + size]
            if struct.unpack_from(byte_order + "i", rec, 0)[0] != size:
                break  # the records written end here (the rest of the block is padding)
            records.append(np.frombuffer(rec[: dtype.itemsize].ljust(dtype.itemsize, b"\0"), dtype=dtype)[0])
    except Exception:  # any oddity: the bytes are kept for the restore; only the readable view is left out
        return None
    if not records:
        return None
    names = [n for n in dtype.names or () if not any(s in n for s in _FEI_SKIP)]

    def value(v: Any) -> Any:
        if isinstance(v, bytes | np.bytes_):
            return bytes(v).rstrip(b"\0").decode("latin-1")
        return jsonable(v)

    first = {n: value(records[0][n]) for n in names}
    differ = [n for n in names if any(value(r[n]) != first[n] for r in records[1:])]
    return {"records": len(records), "first": first, "differ": differ}


def voxel_sizes(h: Any) -> tuple[float | None, float | None, float | None]:
    """Angstrom per pixel along rows (y), columns (x) and sections, by the MRC2014 standard: the
    voxel size along X, Y, Z is cella / (mx, my, mz), and mapc/mapr/maps say which of X, Y, Z the
    columns, rows and sections are (1, 2, 3 unless the header says otherwise). None where unknown."""
    cella = (float(h.cella.x[0]), float(h.cella.y[0]), float(h.cella.z[0]))
    m = (int(h.mx[0]), int(h.my[0]), int(h.mz[0]))
    axes = (int(h.mapc[0]), int(h.mapr[0]), int(h.maps[0]))
    if sorted(axes) != [1, 2, 3]:
        axes = (1, 2, 3)  # not a permutation: the standard's default
    size = [cella[i] / m[i] if m[i] > 0 and cella[i] > 0 and np.isfinite(cella[i]) else None for i in range(3)]
    col, row, sec = (size[a - 1] for a in axes)
    return row, col, sec
