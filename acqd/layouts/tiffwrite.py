"""A small TIFF writer that writes every tag exactly as it is given.

tifffile decides some tags itself and refuses others (it never writes PlanarConfiguration or
SampleFormat for a one-sample unsigned image), so a source's explicit defaults, its tag types
(SHORT or LONG widths) and its strip size would be lost on restore, and cryo-EM tools that ask
libtiff for SampleFormat would find none. Here the caller gives the tags (all but StripOffsets and
StripByteCounts, which the writer fills in), the compression scheme, predictor and rows per strip;
strips are encoded with tifffile's codec table (imagecodecs, which releases the GIL) on a pool of
threads, several pages at once: the caller reads and hashes the next frames while the pool encodes,
and pages are written in order as their strips come back.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from acqd.codec import deflate_encoder
from acqd.lazy import lazy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


# bytes per value of each TIFF field type
TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_PACK = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 11: "f", 12: "d", 13: "I", 16: "Q", 17: "q", 18: "Q"}
# tags whose values say where pixel data sits: the writer makes them
DATA_TAGS = {273, 279, 324, 325}
# pages queued for encoding beyond the workers' own (what keeps every worker busy between frames)
PAGES_AHEAD = 2


def cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - not Linux


def frame_threads(setting: int) -> int:
    """Threads that encode and verify the frames of one file: `setting`, or one per core when 0."""
    return setting if setting > 0 else cores()


@dataclass(frozen=True)
class Tag:
    code: int
    dtype: int
    count: int
    data: bytes  # the value's bytes, in the file's byte order


def make_tag(code: int, dtype: int, values: Any, byteorder: str = "<") -> Tag:
    """A tag from Python values: str/bytes for ASCII (2) and UNDEFINED (7), numbers otherwise,
    (numerator, denominator) pairs for RATIONAL (5)."""
    if dtype == 2:
        raw = values.encode("latin-1") if isinstance(values, str) else bytes(values)
        raw = raw if raw.endswith(b"\0") else raw + b"\0"
        return Tag(code, 2, len(raw), raw)
    if dtype == 7:
        return Tag(code, 7, len(values), bytes(values))
    flat: list[Any]
    if dtype in (5, 10):
        pairs = [values] if isinstance(values[0], int) else list(values)
        flat = [int(v) for pair in pairs for v in pair]
        fmt = "I" if dtype == 5 else "i"
        return Tag(code, dtype, len(pairs), struct.pack(f"{byteorder}{len(flat)}{fmt}", *flat))
    flat = list(values) if isinstance(values, list | tuple) else [values]
    return Tag(code, dtype, len(flat), struct.pack(f"{byteorder}{len(flat)}{_PACK[dtype]}", *flat))


def rational(value: float) -> tuple[int, int] | None:
    """`value` as a TIFF RATIONAL (two uint32), as close as they allow; None if out of range."""
    if not value > 0 or value >= 2**32 - 1:
        return None
    f = Fraction(value).limit_denominator(max(1, int((2**32 - 1) // value)))
    while f.numerator > 2**32 - 1 or f.denominator > 2**32 - 1:  # pragma: no cover - rounding edge
        f = Fraction(f.numerator // 2, max(1, f.denominator // 2))
    return (f.numerator, f.denominator) if f.numerator > 0 else None


def sample_format(dtype: np.dtype[Any]) -> int:
    return {"u": 1, "i": 2, "f": 3, "c": 6}[dtype.kind]


def image_tags(
    shape: tuple[int, int],
    dtype: np.dtype[Any],
    *,
    compression: int,
    predictor: int = 1,
    rows_per_strip: int,
    byteorder: str = "<",
) -> list[Tag]:
    """The structural tags of a one-sample gray page, defaults written explicitly (PlanarConfiguration
    1, SampleFormat, 1 for unsigned): what libtiff-based readers ask for."""
    ny, nx = shape
    tags = [
        make_tag(256, 4, nx, byteorder),
        make_tag(257, 4, ny, byteorder),
        make_tag(258, 3, dtype.itemsize * 8, byteorder),
        make_tag(259, 3, compression, byteorder),
        make_tag(262, 3, 1, byteorder),  # min-is-black
        make_tag(277, 3, 1, byteorder),
        make_tag(278, 4, rows_per_strip, byteorder),
        make_tag(284, 3, 1, byteorder),  # one image plane
        make_tag(339, 3, sample_format(dtype), byteorder),
    ]
    if predictor != 1:
        tags.append(make_tag(317, 3, predictor, byteorder))
    return tags


def default_rows_per_strip(shape: tuple[int, int], itemsize: int, compression: int) -> int:
    """~256 KiB strips when compressed (as tifffile does), one strip when not."""
    if compression == 1:
        return shape[0]
    return max(1, min(shape[0], 262144 // max(1, shape[1] * itemsize)))


def encode_strip(strip: np.ndarray, compression: int, predictor: int, level: int | None, byteorder: str = "<") -> bytes:
    """One strip's bytes as they sit in the file (also what the codec choice measures)."""
    import tifffile

    data = strip
    if predictor == 2:
        data = tifffile.TIFF.PREDICTORS[2](np.ascontiguousarray(strip), axis=-1)
    data = np.ascontiguousarray(data, dtype=strip.dtype.newbyteorder(byteorder))  # type: ignore[arg-type]
    if compression == 1:
        return data.tobytes()
    fast = deflate_encoder(level) if compression in (8, 32946) else None
    if fast is not None:  # ISA-L at levels 1-3 (acqd.codec)
        return fast(data)
    encode = tifffile.TIFF.COMPRESSORS[compression]
    out = encode(data, level=level) if level is not None else encode(data)
    return bytes(out)


class TiffPageWriter:
    """Writes pages one after another to a seekable binary file (classic TIFF or BigTIFF).

    With `workers` > 1 the strips of each page are encoded on a pool of that many threads, and up to
    `workers + PAGES_AHEAD` pages are in flight: `write_page(..., wait=False)` queues a page and
    returns (the caller goes on reading and hashing), and pages reach the file in the order they were
    given. `flush()` (and leaving the `with` block without an error) writes every queued page.
    """

    def __init__(self, fh: IO[bytes], *, byteorder: str = "<", bigtiff: bool = False, workers: int = 1) -> None:
        self.fh = fh
        self.bo: Any = byteorder  # '<' or '>'
        self.big = bigtiff
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="acqd-tiff") if workers > 1 else None
        self._ahead = workers + PAGES_AHEAD
        # queued pages: their strips (encoded, or being encoded) and their tags
        self._workers = workers
        self._queue: deque[tuple[Sequence[list[bytes] | Future[list[bytes]]], list[Tag]]] = deque()
        mark = b"II" if byteorder == "<" else b"MM"
        if bigtiff:
            fh.write(mark + struct.pack(f"{byteorder}HHHQ", 43, 8, 0, 0))
            self._next = 8
        else:
            fh.write(mark + struct.pack(f"{byteorder}HI", 42, 0))
            self._next = 4
        self._pos = fh.tell()
        self._first: tuple[int, list[int]] | None = None  # the first page's IFD: its offset and tag codes

    @property
    def size(self) -> int:
        """Bytes written so far (pages still queued not counted)."""
        return self._pos

    def set_first(self, tag: Tag) -> None:
        """Give a tag of the first page (written with a placeholder value) its value: written after the
        last page, its IFD entry pointed there. Every page must be written (`flush()`)."""
        if self._first is None or tag.code not in self._first[1] or self._queue:
            raise ValueError(f"tag {tag.code} is not on a written first page")
        fh, bo = self.fh, self.bo
        ifd, codes = self._first
        nfmt, efmt, vsize = ("Q", "HHQ", 8) if self.big else ("H", "HHI", 4)
        esize = 2 + 2 + vsize + vsize
        entry = struct.pack(bo + efmt, tag.code, tag.dtype, tag.count)
        if len(tag.data) <= vsize:
            entry += tag.data.ljust(vsize, b"\0")
        else:
            fh.seek(self._pos)
            if self._pos % 2:
                fh.write(b"\0")
            entry += struct.pack(bo + ("Q" if self.big else "I"), fh.tell())
            fh.write(tag.data + (b"\0" if len(tag.data) % 2 else b""))
            self._pos = fh.tell()
        fh.seek(ifd + struct.calcsize(bo + nfmt) + codes.index(tag.code) * esize)
        fh.write(entry)
        fh.seek(self._pos)

    def __enter__(self) -> TiffPageWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is None:
            self.flush()
        self.close()

    def close(self) -> None:
        """Stop the pool; pages still queued are dropped (call `flush()` first to write them)."""
        for strips, _ in self._queue:
            for f in strips:
                if isinstance(f, Future):
                    f.cancel()
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def flush(self) -> None:
        """Write every queued page (in order)."""
        while self._queue:
            self._write_next()

    def _encode_run(self, strips: list[np.ndarray], compression: int, predictor: int, level: int | None) -> list[bytes]:
        return [encode_strip(s, compression, predictor, level, self.bo) for s in strips]

    def write_page(
        self,
        frame: np.ndarray,
        tags: Iterable[Tag],
        *,
        compression: int,
        predictor: int = 1,
        rows_per_strip: int,
        level: int | None = None,
        wait: bool = True,
    ) -> None:
        """One page: `frame` (2-D, any byte order) with `tags` (every tag except the strip table).
        `wait=False`: queued (encoded on the pool), written in order when its strips are done; the
        caller must not change `frame` until then."""
        native = frame.astype(frame.dtype.newbyteorder("="), copy=False)
        rps = max(1, min(rows_per_strip, native.shape[0]))
        strips = [native[i : i + rps] for i in range(0, native.shape[0], rps)]
        encoded: Sequence[list[bytes] | Future[list[bytes]]]
        if self._pool is not None and compression != 1:
            # one task per worker and page (runs of consecutive strips): fewer futures than strips
            pool, n = self._pool, len(strips)
            cuts = [n * i // self._workers for i in range(self._workers + 1)]
            runs = [strips[a:b] for a, b in itertools.pairwise(cuts) if b > a]
            encoded = [pool.submit(self._encode_run, run, compression, predictor, level) for run in runs]
        else:
            encoded = [self._encode_run(strips, compression, predictor, level)]
        self._queue.append((encoded, list(tags)))
        while len(self._queue) > (0 if wait else self._ahead):
            self._write_next()

    def _write_next(self) -> None:
        strips, tags = self._queue.popleft()
        fh, bo = self.fh, self.bo
        fh.seek(self._pos)
        offsets, counts = [], []
        for data in (d for run in strips for d in (run.result() if isinstance(run, Future) else run)):
            if fh.tell() % 2:
                fh.write(b"\0")
            offsets.append(fh.tell())
            counts.append(len(data))
            fh.write(data)
        ltype = 16 if self.big else 4
        entries = [t for t in tags if t.code not in DATA_TAGS]
        entries += [make_tag(273, ltype, offsets, bo), make_tag(279, ltype, counts, bo)]
        entries.sort(key=lambda t: t.code)
        if fh.tell() % 2:
            fh.write(b"\0")
        ifd = fh.tell()
        if self._first is None:
            self._first = (ifd, [t.code for t in entries])
        nfmt, efmt, vsize, psize = ("Q", "HHQ", 8, 8) if self.big else ("H", "HHI", 4, 4)
        head = struct.calcsize(bo + nfmt)
        esize = 2 + 2 + (8 if self.big else 4) + vsize
        extra = ifd + head + len(entries) * esize + psize
        body = [struct.pack(bo + nfmt, len(entries))]
        blobs = []
        for t in entries:
            entry = struct.pack(bo + efmt, t.code, t.dtype, t.count)
            if len(t.data) <= vsize:
                entry += t.data.ljust(vsize, b"\0")
            else:
                entry += struct.pack(bo + ("Q" if self.big else "I"), extra)
                blob = t.data + (b"\0" if len(t.data) % 2 else b"")
                blobs.append(blob)
                extra += len(blob)
            body.append(entry)
        body.append(bytes(psize))  # next IFD: patched when another page follows
        fh.write(b"".join(body))
        fh.write(b"".join(blobs))
        self._pos = fh.tell()
        fh.seek(self._next)
        fh.write(struct.pack(bo + ("Q" if self.big else "I"), ifd))
        self._next = ifd + head + len(entries) * esize
        fh.seek(self._pos)
