"""Tail-follow streaming: a movie's frames encoded into the destination's temporary while the camera
still writes it. Blocking: every method runs in the I/O executor, one at a time per stream.

Scope: files whose frames can be found while they grow (MRC movies, whose header comes first and
says the frame count, shape and dtype; raw frames of the profile's geometry; Merlin .mib frames
behind their own headers; TIFF stacks written plane by plane), stored in the TIFF or the Zarr
layout on a local tier (the copy is written in place into its hidden temporary, as the whole-file
path does). Each `step` reads the frames the file holds in full and adds them to the source
checksum, then:

- TIFF (`TiffStream`): encodes them as pages appended to the temporary, then reads those pages back
  from the temporary, decodes them and adds them to the copy's checksum (the frames are verified as
  written);
- Zarr (`ZarrStream`): encodes each frame as its chunk, and writes a shard into the temporary folder
  as soon as its frames are all encoded; the copy is verified whole after the commit, read back and
  decoded, as a copy written the whole-file way is.

`finish`, once the file is complete, reads the rest, re-reads the whole source at hash speed and
compares it with what was streamed, completes the copy (TIFF: the description and the page chain
checked; Zarr: the last shard and the metadata, from the complete file) and commits the temporary
under its final name. Anything unexpected raises `Surprise`: the caller drops the temporary and
ships the file the whole-file way, so a rewrite never yields a wrong copy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import stat
import struct
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from acqd.checksum import Hasher
from acqd.crash import crash_point
from acqd.errors import AcqdError, FormatError, UnsupportedFormatError, VerifyError
from acqd.layouts.framepool import chunk_encoder, shard_parts
from acqd.layouts.frames import (
    ARRAY,
    DESC_PREFIX,
    FLIP_FORMATS,
    ROWS_FLIPPED,
    TIFF_SCHEMES,
    ZARR_FLIP_FORMATS,
    FilePlan,
    TiffLayout,
    ZarrLayout,
    canonical,
    hash_canonical,
    resolution_tags,
)
from acqd.layouts.tiffwrite import TiffPageWriter, default_rows_per_strip, image_tags, make_tag
from acqd.lazy import lazy
from acqd.ports import TierPort
from acqd.readers.base import FrameSource
from acqd.settle import mrc_expected_size, tail_unwritten
from acqd.values import WriteResult

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


HEADER = 1024  # an MRC main header
REHASH_CHUNK = 8 << 20  # the compare at completion reads the source this much at a time (at least a frame)
STREAM_BLOCK = 32 << 20  # frames read and encoded at a time while streaming (at least one frame)


class Surprise(Exception):
    """The source did not grow the way its header said (rewritten, truncated, replaced, ...), or the
    streamed copy is not what it must be: the stream is dropped and the file shipped whole."""


class NotYet(Exception):
    """Nothing to stream from yet (the header is not written, or not an MRC one)."""


PREALLOCATED = (
    "pre-allocated to its full size, its last frame not written yet: which frames are written cannot be told "
    "by its size (shipped whole once complete)"
)


class NotStreamable(Exception):
    """This file cannot be streamed (an MRC mode the layout does not write, a remote tier, ...)."""


class Unfit(Surprise):
    """Known only once the file is complete: it is not what this stream writes (a single-plane TIFF
    is a 2-D image, not a stack of frames; a scan's rows shape its shards). Nothing is wrong with the
    file: the stream is dropped without a fallback being announced, and the file shipped whole."""


class _Opened:
    """What a reader is handed: the file object and its path."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.file = io.FileIO(fd, "rb", closefd=False)


# -- how a file of each format is read while it grows -------------------------------------------
class Growth:
    """The frames of one growing source file, whatever its format: how many are written in full at a
    given size, and reading them (in the file's byte order). Subclasses: one per format streamed."""

    format = ""
    expected: int | None = None  # the complete file's size where its header says it (MRC), else None
    fixed = b""  # leading bytes that must stay as they are while the file is streamed (a header)
    pixel_size_um: tuple[float, float] | None = None  # as the start of the file states it (the TIFF tags)

    def __init__(self, fd: int, path: str, dtype: np.dtype[Any], shape: tuple[int, int]) -> None:
        self.fd, self.path, self.dtype, self.frame_shape = fd, path, dtype, shape
        self.flip = self.format in FLIP_FORMATS

    @property
    def frame_bytes(self) -> int:
        return int(self.frame_shape[0] * self.frame_shape[1] * self.dtype.itemsize)

    def avail(self, size: int) -> int:
        """Frames written in full when the file has `size` bytes."""
        raise NotImplementedError

    def preallocated(self, size: int) -> bool:
        """Whether the file has its full size while its last frame is not written (zeros): a writer that
        pre-allocates the movie and fills it frame by frame. Its size then says nothing of which
        frames are written (only a format whose header announces the size can tell)."""
        return False

    def read(self, start: int, stop: int, keep: bool = True) -> np.ndarray:
        """Frames [start, stop) as (frames, y, x); `keep`: the frames streamed, in order (a format
        with per-frame headers keeps them; a sample for the codec choice does not)."""
        raise NotImplementedError

    def restore(self) -> bytes | None:
        """The header bytes streamed, which the complete file must have (None: taken from the complete
        file, as for a TIFF whose tags and IFD chain change as planes are added)."""
        return self.fixed

    def partial(self, n: int) -> FrameSource:
        """The first `n` frames as a FrameSource (what the codec choice samples)."""
        return FrameSource(
            self.format,
            (n, *self.frame_shape),
            self.dtype,
            {},
            lambda a, b: self.read(a, b, keep=False),
            restore=self.fixed,
        )

    def _pread(self, n: int, at: int) -> bytes:
        data = os.pread(self.fd, n, at)
        if len(data) != n:
            raise Surprise(f"{n} bytes at {at} not readable ({len(data)} read): truncated?")
        return data


class MrcGrowth(Growth):
    """An MRC movie: its header comes first and says the frame count, shape and dtype."""

    format = "mrc"

    def __init__(self, fd: int, path: str, layout: Any) -> None:
        head = os.pread(fd, HEADER, 0)
        src: FrameSource
        expected = mrc_expected_size(head)
        if expected is None:
            raise NotYet("no MRC header yet")
        try:
            # the reader checks the header as if the file were whole: frames are read only once there
            src = layout._open(_Opened(path, fd), expected)
        except UnsupportedFormatError as exc:
            raise NotStreamable(str(exc)) from None
        except AcqdError as exc:
            raise NotYet(f"header not readable yet: {exc}") from None
        if src.format != "mrc" or src.scan or src.image2d or src.shape[0] < 2:
            raise NotStreamable("not a movie of frames")
        super().__init__(fd, path, src.dtype, (src.shape[1], src.shape[2]))
        self.src: FrameSource = src
        self.pixel_size_um = src.pixel_size_um
        self.expected: int | None = expected
        self.frames = int(src.shape[0])
        self.fixed = src.restore or b""
        self.offset = expected - self.frames * src.frame_bytes  # where the first frame starts

    def avail(self, size: int) -> int:
        return int(min(self.frames, max(0, (size - self.offset) // max(1, self.frame_bytes))))

    def preallocated(self, size: int) -> bool:
        full = self.expected is not None and size >= self.expected
        return full and tail_unwritten(lambda at, n: os.pread(self.fd, n, at), size, self.offset)

    def read(self, start: int, stop: int, keep: bool = True) -> np.ndarray:
        return self.src.read(start, stop)


class RawGrowth(Growth):
    """Raw frames whose geometry the detector profile gives (`raw: {shape, dtype, header_bytes}`)."""

    format = "raw"

    def __init__(self, fd: int, path: str, options: dict[str, Any]) -> None:
        try:
            ny, nx = (int(v) for v in options["shape"])
            dtype = np.dtype(options.get("dtype", "<u2"))
        except (KeyError, TypeError, ValueError) as exc:
            raise NotStreamable(f"the profile's raw geometry is incomplete: {exc}") from None
        super().__init__(fd, path, dtype, (ny, nx))
        self.hb = int(options.get("header_bytes", 0))
        fixed = os.pread(fd, self.hb, 0)
        if len(fixed) < self.hb:
            raise NotYet("its header is not written yet")
        self.fixed = fixed

    def avail(self, size: int) -> int:
        return max(0, (size - self.hb) // max(1, self.frame_bytes))

    def read(self, start: int, stop: int, keep: bool = True) -> np.ndarray:
        k, fb = stop - start, self.frame_bytes
        data = self._pread(k * fb, self.hb + start * fb)
        return np.frombuffer(data, dtype=self.dtype).reshape(k, *self.frame_shape)


class MibGrowth(Growth):
    """A Merlin .mib stream: each frame behind its own header, all of one geometry. Each frame's
    header is checked as its frame is read, and kept (the copy's restore bytes)."""

    format = "mib"

    def __init__(self, fd: int, path: str) -> None:
        from acqd.readers.mib import _DTYPES, _parse

        head = os.pread(fd, 64, 0)
        if len(head) < 64 or not head.strip(b"\0"):
            raise NotYet("no MIB frame header yet")  # zeros: allocated ahead of the writer
        try:
            first = _parse(head)
        except FormatError as exc:
            raise NotStreamable(str(exc)) from None
        self.hb, ptype = int(first["header_bytes"]), first["pixel_type"]
        if ptype not in _DTYPES or self.hb < 64:
            raise NotStreamable(f"unsupported MIB pixel type {ptype!r} or header size {self.hb}")
        super().__init__(fd, path, np.dtype(_DTYPES[ptype]), (int(first["y"]), int(first["x"])))
        self.geometry = (self.hb, first["x"], first["y"], ptype)
        self.step = self.hb + self.frame_bytes
        self.heads: list[bytes] = []
        self._parse = _parse

    def avail(self, size: int) -> int:
        return size // self.step

    def read(self, start: int, stop: int, keep: bool = True) -> np.ndarray:
        out = np.empty((stop - start, *self.frame_shape), dtype=self.dtype)
        data = self._pread((stop - start) * self.step, start * self.step)
        for i in range(start, stop):
            at = (i - start) * self.step
            head = data[at : at + self.hb]
            try:
                p = self._parse(head[:64])
            except FormatError as exc:
                raise Surprise(f"frame {i}: {exc}") from None
            if (p["header_bytes"], p["x"], p["y"], p["pixel_type"]) != self.geometry:
                raise Surprise(f"frame {i}'s header disagrees with frame 0's ({p})")
            out[i - start] = np.frombuffer(
                data, self.dtype, self.frame_bytes // self.dtype.itemsize, at + self.hb
            ).reshape(self.frame_shape)
            if keep:
                if i != len(self.heads):
                    raise Surprise(f"frame {i} streamed out of order")  # pragma: no cover - defensive
                self.heads.append(head)
        return out

    def restore(self) -> bytes | None:
        return b"".join(self.heads)

    def partial(self, n: int) -> FrameSource:
        src = super().partial(n)
        src.restore = b"".join(self.heads)
        return src


_TIFF_TYPES = {1: "B", 2: "B", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 16: "Q", 17: "q", 18: "Q"}
_SAMPLE_KINDS = {1: "u", 2: "i", 3: "f"}


class TiffGrowth(Growth):
    """A TIFF stack written plane by plane: a plane is streamed once its IFD, the values it points to
    and its strips all lie inside the file, and the IFD chain links to it. Uncompressed one-sample
    planes in strips, all of one shape and dtype (anything else: not streamed, shipped whole)."""

    format = "tiff"

    def __init__(self, fd: int, path: str) -> None:
        head = os.pread(fd, 16, 0)
        if len(head) < 8:
            raise NotYet("no TIFF header yet")
        if head[:2] not in (b"II", b"MM"):
            raise NotStreamable("not a TIFF")
        self.bo = "<" if head[:2] == b"II" else ">"
        (version,) = struct.unpack_from(self.bo + "H", head, 2)
        if version == 42:
            self.big, self.link_at = False, 4
        elif version == 43:
            self.big, self.link_at = True, 8
        else:
            raise NotStreamable(f"not a TIFF (version {version})")
        self.pages: list[list[tuple[int, int]]] = []  # each plane found whole: its strips (offset, bytes)
        self.ifds: set[int] = set()  # where the planes' IFDs are: a chain that comes back is refused
        self.geometry: tuple[int, int, str] | None = None
        super().__init__(fd, path, np.dtype("u1"), (0, 0))
        self.fixed = b""

    def _refuse(self, why: str) -> Exception:
        """A plane this reading does not take: not streamed (the first), or a surprise (a later one)."""
        return Surprise(f"plane {len(self.pages)}: {why}") if self.pages else NotStreamable(why)

    def _plane(self, ifd: int, size: int) -> tuple[list[tuple[int, int]], int] | None:
        """The strips of the plane whose IFD is at `ifd` and where its link to the next IFD sits, or
        None while it is not written in full."""
        bo = self.bo
        nfmt, nlen, elen, ofmt, olen = ("Q", 8, 20, "Q", 8) if self.big else ("H", 2, 12, "I", 4)
        if ifd + nlen > size:
            return None
        (count,) = struct.unpack(bo + nfmt, os.pread(self.fd, nlen, ifd))
        if count == 0 or count > 4096:
            return None  # zeros ahead of the writer (or not an IFD yet)
        link = ifd + nlen + count * elen
        if link + olen > size:
            return None
        raw = os.pread(self.fd, count * elen, ifd + nlen)
        tags: dict[int, list[int]] = {}
        for i in range(count):
            code, typ = struct.unpack_from(bo + "HH", raw, i * elen)
            (n,) = struct.unpack_from(bo + ofmt, raw, i * elen + 4)
            if typ not in _TIFF_TYPES or n > 1 << 20:
                continue  # a tag this reading does not need (rationals, ...)
            width = struct.calcsize(_TIFF_TYPES[typ])
            if n * width <= olen:
                data = raw[i * elen + 4 + olen : i * elen + 4 + olen + n * width]
            else:
                (where,) = struct.unpack_from(bo + ofmt, raw, i * elen + 4 + olen)
                if where + n * width > size:
                    return None
                data = os.pread(self.fd, n * width, where)
            if code in (254, 256, 257, 258, 259, 262, 266, 273, 277, 279, 284, 317, 322, 324, 330, 339):
                tags[code] = list(struct.unpack(f"{bo}{n}{_TIFF_TYPES[typ]}", data))
        one = {c: v[0] for c, v in tags.items() if v}
        if 322 in tags or 324 in tags:
            raise self._refuse("a TIFF in tiles")
        if 330 in tags or one.get(254, 0) & 1:
            raise self._refuse("a TIFF with reduced-resolution images or sub-IFDs")
        if one.get(259, 1) != 1 or one.get(317, 1) != 1:
            raise self._refuse("compressed TIFF planes (only uncompressed ones are streamed)")
        if one.get(277, 1) != 1 or one.get(266, 1) != 1 or one.get(262, 1) not in (0, 1):
            raise self._refuse("not one-sample gray planes")
        bits, kind = one.get(258, 1), _SAMPLE_KINDS.get(one.get(339, 1))
        if kind is None or bits not in (8, 16, 32, 64) or (kind == "f" and bits == 8):
            raise self._refuse(f"{bits}-bit samples of format {one.get(339, 1)}")
        if 256 not in one or 257 not in one or 273 not in tags or 279 not in tags:
            raise self._refuse("a plane without its size or strips")
        geometry = (int(one[257]), int(one[256]), f"{bo}{kind}{bits // 8}")
        if self.geometry is None:
            self.geometry = geometry
            self.dtype, self.frame_shape = np.dtype(geometry[2]), (geometry[0], geometry[1])
        elif geometry != self.geometry:
            raise Surprise(f"plane {len(self.pages)} is {geometry}, the first {self.geometry}")
        strips = list(zip(tags[273], tags[279], strict=False))
        if len(tags[273]) != len(tags[279]) or sum(c for _, c in strips) != self.frame_bytes:
            raise self._refuse("strips that are not the plane's pixels")
        if any(o + c > size for o, c in strips):
            return None
        return strips, link

    def avail(self, size: int) -> int:
        olen, ofmt = (8, "Q") if self.big else (4, "I")
        while True:
            raw = os.pread(self.fd, olen, self.link_at)
            if len(raw) < olen:
                break
            (ifd,) = struct.unpack(self.bo + ofmt, raw)
            if ifd == 0:
                break
            if ifd in self.ifds:  # followed, it would add the same planes for ever (and never return)
                raise self._refuse(f"an IFD chain that comes back to the IFD at {ifd}")
            plane = self._plane(ifd, size)
            if plane is None:
                break
            self.pages.append(plane[0])
            self.ifds.add(ifd)
            self.link_at = plane[1]
        return len(self.pages)

    def read(self, start: int, stop: int, keep: bool = True) -> np.ndarray:
        out = np.empty((stop - start, *self.frame_shape), dtype=self.dtype)
        for i in range(start, stop):
            data = b"".join(self._pread(c, o) for o, c in self.pages[i])
            out[i - start] = np.frombuffer(data, dtype=self.dtype).reshape(self.frame_shape)
        return out

    def restore(self) -> bytes | None:
        return None

    def calibrate(self) -> None:
        """The pixel size the first plane states (its tags, an ImageJ or OME description), read as the
        TIFF reader reads it; the complete file must state the same."""
        import tifffile

        from acqd.readers.tiff import calibration

        try:
            with tifffile.TiffFile(_Opened(self.path, self.fd).file, name=os.path.basename(self.path)) as tif:
                self.pixel_size_um = calibration(tif, tif.pages.first).pixel_um
        except Exception as exc:
            raise NotYet(f"its first plane is not readable yet: {exc}") from None


def growth(layout: Any, fd: int, path: str) -> Growth:
    """The reading of a growing file of the layout's reader. NotYet while its header is not there;
    NotStreamable for a reader or file that cannot be streamed."""
    reader = getattr(layout, "reader", None)
    if reader == "mrc":
        return MrcGrowth(fd, path, layout)
    if reader == "raw":
        return RawGrowth(fd, path, layout.options)
    if reader == "mib":
        return MibGrowth(fd, path)
    if reader == "tiff":
        g = TiffGrowth(fd, path)
        if g.avail(os.fstat(fd).st_size) < 1:
            raise NotYet("no whole TIFF plane yet")
        g.calibrate()
        return g
    raise NotStreamable(f"reader {reader!r} is not streamed")


def plan_growing(layout: Any, path: str, key: str | None, recorded: str | None) -> FilePlan:
    """The layout's plan (its codec: acqd.layouts.choose) for a file still being written, decided
    from the frames written so far. NotYet while no frame is there; NotStreamable for a valid file
    the frame layout does not take (it is shipped the whole-file way when complete)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        g = growth(layout, fd, path)
        size = os.fstat(fd).st_size
        if g.preallocated(size):
            raise NotStreamable(PREALLOCATED)
        avail = g.avail(size)
        if avail < 1:
            raise NotYet("no whole frame yet")
        # a frame sampled that is not what its format says (a .mib frame header of zeros ahead of its
        # writer): Surprise, the stream is not started and the file ships whole
        plan: FilePlan = layout.plan(_Opened(path, fd), g.expected or 0, key, recorded, src=g.partial(avail))
        return plan
    finally:
        os.close(fd)


STREAMED_READERS = ("mrc", "raw", "mib", "tiff")


def streamable(layout: Any, reader: str, tier: TierPort) -> bool:
    """Whether files of this reader, stored with this layout on this tier, can be streamed."""
    frames = isinstance(layout, TiffLayout | ZarrLayout)
    return frames and reader in STREAMED_READERS and bool(getattr(tier, "local", False))


def open_stream(layout: Any, path: str, tier: TierPort, dest: str) -> FrameStream:
    """The stream of a growing file into its copy's temporary, for the layout's format."""
    if isinstance(layout, ZarrLayout):
        return ZarrStream(layout, path, tier, dest)
    if isinstance(layout, TiffLayout):
        return TiffStream(layout, path, tier, dest)
    raise NotStreamable(f"the {getattr(layout, 'name', '?')} layout is not streamed")


class FrameStream:
    """One file being streamed into its copy's temporary on a local tier: what every format shares
    (following the file as it grows, hashing its frames, the compare at completion); subclasses
    encode the frames into their format and publish the copy."""

    # whether the copy's frames were read back and decoded from the temporary as they were written
    # (then the commit's size check is its verification); else the pipeline verifies it whole
    verified_as_written = False
    flip_formats: frozenset[str] | set[str] = FLIP_FORMATS

    def __init__(self, layout: Any, path: str, tier: TierPort, dest: str) -> None:
        self.layout, self.path, self.tier, self.dest = layout, path, tier, dest
        self.fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        self._opened = False
        try:
            self._start()
        except BaseException:
            self.abort()
            raise

    def _start(self) -> None:
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotStreamable("not a regular file")
        self.file_key = (st.st_dev, st.st_ino)
        self.g = g = growth(self.layout, self.fd, self.path)
        self.expected = g.expected  # None: the size is known only once the file is complete
        self.seen = st.st_size
        self.flip = g.format in self.flip_formats
        self.k: int = max(1, int(self.layout.shard_bytes) // max(1, g.frame_bytes))
        # frames per block while streaming: small blocks, so a ship taking the stream over waits little
        self.per = max(1, min(self.k, STREAM_BLOCK // max(1, g.frame_bytes)))
        self.hurry = False  # the ship wants the stream: end the step after the current block
        self.hasher = Hasher()  # the source's frames, as streamed
        self.done = 0  # frames encoded into the temporary
        self.while_growing = 0  # of those, encoded before the file's last growth seen (as far as known)
        self._size_seen_last = int(st.st_size)  # the size the last step saw, and the frames done by then
        self._done_last = 0
        self.timing = {"read": 0.0, "encode": 0.0, "write": 0.0, "stream": 0.0}
        self._open_copy()
        self._opened = True

    def _open_copy(self) -> None:
        raise NotImplementedError

    @property
    def frames(self) -> int:
        """Frames the file holds: those its header announces, else those streamed so far."""
        return int(getattr(self.g, "frames", self.done))

    def block_bytes(self) -> int:
        """Bytes of frame data one step holds at most (what it reserves in the in-flight budget)."""
        raise NotImplementedError

    # -- while the file grows ---------------------------------------------------------------------
    def _look(self) -> int:
        """The file's size now, after checking it is still the file streamed and grew as announced."""
        st = os.fstat(self.fd)
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            raise Surprise("removed or renamed while it was streamed") from None
        if (now.st_dev, now.st_ino) != self.file_key:
            raise Surprise("replaced by another file while it was streamed")
        size = int(st.st_size)
        if size < self.seen:
            raise Surprise(f"truncated while it was streamed ({size} bytes, {self.seen} before)")
        if self.expected is not None and size > self.expected:
            raise Surprise(f"{size} bytes, more than the {self.expected} its header announces")
        fixed = self.g.fixed
        if fixed and os.pread(self.fd, len(fixed), 0) != fixed:
            raise Surprise("its header was rewritten while it was streamed")
        self.seen = size
        return size

    def step(self, complete: bool = False) -> int:
        """Encode the frames written in full since the last step, a block of `per` frames at a time;
        return how many. `hurry` (set by another thread) ends it after the block. Frames count as
        encoded while the file grew when a later step finds it larger (a file complete when its
        stream began counts none). NotStreamable for a movie pre-allocated to its full size while it
        is written (`complete`: the file is complete, its last frame may be blank)."""
        t0 = time.perf_counter()
        size = self._look()
        if not complete and self.g.preallocated(size):
            # its zeros would be read as frames and the copy dropped at completion with a warning that
            # it was rewritten (a stranger's review): the file ships whole once complete
            raise NotStreamable(PREALLOCATED)
        if size > self._size_seen_last:  # it grew: what the steps before encoded, they encoded while it grew
            self.while_growing = self._done_last
            self._size_seen_last = size
        avail = self.g.avail(size)
        n = 0
        while self.done < avail and not (n and self.hurry):
            stop = min(avail, self.done + self.per)
            t = time.perf_counter()
            try:
                block = self.g.read(self.done, stop)
            except (OSError, AcqdError) as exc:
                raise Surprise(f"frames {self.done}-{stop} not readable: {exc}") from None
            hash_canonical(self.hasher, block)
            self.timing["read"] += time.perf_counter() - t
            t = time.perf_counter()
            self._encode(block)
            self.timing["encode"] += time.perf_counter() - t
            n += stop - self.done
            self.done = stop
        self._done_last = self.done
        if n:
            self._stepped()
            crash_point("during_stream")
        self.timing["stream"] += time.perf_counter() - t0
        return n

    def _encode(self, block: np.ndarray) -> None:
        """Frames [done, done + len(block)) into the copy."""
        raise NotImplementedError

    def _stepped(self) -> None:
        """After a step that encoded frames."""

    # -- at completion ---------------------------------------------------------------------------
    def finish(self, source: Any, size: int) -> WriteResult:
        """The file is complete (`source`: the settled file, opened and identity-checked, `size` its
        size): stream the rest, compare, check and commit. Raises Surprise for anything unexpected,
        SourceChangedError if the file changed since it settled."""
        t0 = time.perf_counter()
        if self.expected is not None and size != self.expected:
            raise Surprise(f"completed at {size} bytes, its header announced {self.expected}")
        self.hurry = False
        self.step(complete=True)
        if self.expected is not None and self.done != self.frames:
            raise Surprise(f"completed with {self.done} of its {self.frames} frames readable")
        digest = self.hasher.hexdigest()
        # the compare at completion: the whole source read again (from the page cache, at hash speed)
        # through its reader, as a whole-file ship reads it, must hold exactly the frames streamed; a
        # frame or header rewritten after it was streamed, zeros written ahead and filled in later, a
        # file truncated and written again: all differ here
        t = time.perf_counter()
        again = self._rehash(source, size)
        if again != digest:
            raise Surprise("the complete file differs from the frames streamed (rewritten after they were read)")
        self.timing["compare"] = time.perf_counter() - t
        source.check()  # unchanged since it settled: SourceChangedError otherwise
        crash_point("after_compare")
        stored = self._complete(digest, size)
        layout = self.layout
        if layout.chooser is not None and layout._observe is not None and stored:
            layout.chooser.observe(*layout._observe, size / stored)
        self.timing["write"] += time.perf_counter() - t0 - self.timing["compare"]
        stages = (
            ("read", self.timing["read"]),
            ("encode", self.timing["encode"]),
            ("write", self.timing["write"]),
        )
        return WriteResult(self.checksum, size, stored, layout.codec.spec, stages, self.whole.mismatch, layout._why)

    def _complete(self, digest: str, size: int) -> int:
        """The copy finished, checked and committed under its final name; its stored bytes."""
        raise NotImplementedError

    def _rehash(self, source: Any, size: int) -> str:
        """The checksum of the complete file's frames as they are now, read again from the start
        through the format's reader (which checks the whole file as a ship does); sets `checksum`
        (header bytes and frames: what is recorded) and `whole`. An MRC or raw file whose pixels are
        bytes or little-endian is hashed as it is read (its header, then its frames: the checksum's
        bytes are the file's own), into one buffer."""
        try:
            whole = self.layout._open(source, size)
        except AcqdError as exc:
            raise Surprise(f"not readable as a whole: {exc}") from None
        g = self.g
        if whole.shape != (self.done, *g.frame_shape) or whole.dtype != g.dtype:
            got = f"{whole.shape} {whole.dtype}"
            raise Surprise(f"the complete file is {got}, {self.done} frames {g.frame_shape} {g.dtype} were streamed")
        if whole.pixel_size_um != g.pixel_size_um:
            raise Surprise(f"the complete file states a pixel size of {whole.pixel_size_um} um, not {g.pixel_size_um}")
        restore = whole.restore or b""
        kept = g.restore()
        if kept is not None and restore != kept:
            raise Surprise("its header bytes differ from those streamed (rewritten after they were read)")
        checksum, pixels = Hasher(), Hasher()
        checksum.update(restore)
        dt = whole.dtype
        little = dt.itemsize == 1 or dt.byteorder == "<" or (dt.byteorder == "=" and sys.byteorder == "little")
        if whole.format in ("mrc", "raw") and little and size == len(restore) + whole.shape[0] * whole.frame_bytes:
            buf = bytearray(REHASH_CHUNK)
            view = memoryview(buf)
            f = source.file
            f.seek(len(restore))
            total = len(restore)
            while n := f.readinto(buf):
                checksum.update(view[:n])
                pixels.update(view[:n])
                total += n
            if total != size:
                raise Surprise(f"read {total} bytes of its {size} at completion")
        else:
            per = max(1, REHASH_CHUNK // max(1, whole.frame_bytes))  # small blocks: in cache, little memory
            for start in range(0, whole.shape[0], per):
                block = canonical(whole.read(start, min(whole.shape[0], start + per))).data
                checksum.update(block)
                pixels.update(block)
        self.checksum, self.whole = checksum.hexdigest(), whole
        return pixels.hexdigest()

    def abort(self) -> None:
        """Drop the temporary and close everything (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        """After a commit: close the source and the encoder threads."""
        self.abort()


class TiffStream(FrameStream):
    """One file being streamed into its TIFF copy's temporary on a local tier. Each step's pages are
    read back from the temporary and decoded as they are written (the frames verified as written)."""

    verified_as_written = True

    def __init__(self, layout: TiffLayout, path: str, tier: TierPort, dest: str) -> None:
        self.direct: Any = None
        self.tw: TiffPageWriter | None = None
        super().__init__(layout, path, tier, dest)

    def _open_copy(self) -> None:
        g, layout = self.g, self.layout
        compression, self.level = layout.codec.tiff_compression()
        self.scheme = TIFF_SCHEMES[compression]
        frame_shape = g.frame_shape
        self.rps = default_rows_per_strip(frame_shape, g.dtype.itemsize, self.scheme)
        self.base = image_tags(frame_shape, g.dtype, compression=self.scheme, rows_per_strip=self.rps)
        self.base += resolution_tags(g.pixel_size_um)
        # the description comes from the complete file (`finish`): the first page's is a placeholder
        # until then, its value written after the last page and its entry pointed there
        self.first_tags = [*self.base, make_tag(270, 2, "")]
        self.direct = self.tier.atomic_file(self.dest)
        if self.direct is None:
            raise NotStreamable("the tier cannot be written in place")
        # a size the header announces: BigTIFF where the whole-file way writes one; a size not known
        # yet: classic TIFF while the copy fits in one (4 GiB), the file shipped whole beyond
        self.big = self.expected is not None and self.expected > 2**31
        self.tw = TiffPageWriter(self.direct.file, bigtiff=self.big, workers=max(1, int(self.layout.threads)))
        self.back = Hasher()  # the copy's frames, decoded from the temporary
        self.checked = 0  # frames read back and verified
        self.strips: list[tuple[tuple[int, ...], tuple[int, ...]]] = []  # each page's strip table as read back

    def block_bytes(self) -> int:
        """A block's frames as read, their encoded pages, and a page decoded again when read back."""
        return 3 * self.per * self.g.frame_bytes

    def _encode(self, block: np.ndarray) -> None:
        assert self.tw is not None
        limit = 2**32 - (1 << 20) - 2 * self.g.frame_bytes  # room for the next page in a classic TIFF
        for i, frame in enumerate(block):
            if not self.big and self.tw.size > limit:
                raise Surprise("the copy outgrows a classic TIFF while its size is not known")
            self.tw.write_page(
                frame[::-1] if self.flip else frame,
                self.first_tags if self.done + i == 0 else self.base,
                compression=self.scheme,
                rows_per_strip=self.rps,
                level=self.level,
            )

    def _stepped(self) -> None:
        self._read_back()

    def _read_back(self) -> None:
        """Read the pages written since the last check back from the temporary and decode them: each
        must be the frame streamed."""
        import tifffile

        t = time.perf_counter()
        assert self.tw is not None
        self.tw.flush()  # pages still being encoded on the frame pool are written first
        self.direct.file.flush()
        with open(self.direct.tmp, "rb") as f:
            try:
                tif = tifffile.TiffFile(f)
            except Exception as exc:
                raise VerifyError(f"the streamed temporary of {self.dest} does not parse: {exc}") from None
            try:
                pages = tif.pages
                if len(pages) != self.done:
                    raise VerifyError(f"the streamed temporary of {self.dest} has {len(pages)} pages, not {self.done}")
                native = self.g.dtype.newbyteorder("=")
                for i in range(self.checked, self.done):
                    page: Any = pages[i]
                    frame = page.asarray()
                    if frame.shape != self.g.frame_shape or frame.dtype.newbyteorder("=") != native:
                        what = f"page {i} is {frame.shape} {frame.dtype}"
                        raise VerifyError(f"the streamed temporary of {self.dest}: {what}")
                    hash_canonical(self.back, frame[::-1] if self.flip else frame)
                    self.strips.append((tuple(page.dataoffsets), tuple(page.databytecounts)))
            finally:
                tif.close()
        self.checked = self.done
        self.timing["verify_stream"] = self.timing.get("verify_stream", 0.0) + time.perf_counter() - t

    def _complete(self, digest: str, size: int) -> int:
        whole = self.whole
        meta = self.layout.meta(whole)
        restore = whole.restore or b""
        if restore:
            meta["restore_zlib_b64"] = base64.b64encode(zlib.compress(restore, 6)).decode()
        if self.flip:
            meta["rows"] = ROWS_FLIPPED
        self.description = DESC_PREFIX + json.dumps(meta, separators=(",", ":"))
        assert self.tw is not None
        self.tw.flush()
        self.tw.set_first(make_tag(270, 2, self.description))
        self._check_copy(digest)
        self.tw.close()
        stored = int(self.direct.file.seek(0, 2))
        if stored > size and self.layout.never_larger:
            raise Surprise(f"the copy came to {stored} bytes, more than the source's {size}")
        crash_point("after_encode")
        return int(self.direct.commit())

    def _check_copy(self, digest: str) -> None:
        """The copy as it will be published: every page verified as written, its page chain, parsed
        afresh, points to exactly the strips that were verified (nothing patched in between), and its
        first page carries the description."""
        import tifffile

        if self.back.hexdigest() != digest:
            got = self.back.hexdigest()
            raise VerifyError(f"{self.dest}: the streamed pages decode to {got}, the source is {digest}")
        self.direct.file.flush()
        with open(self.direct.tmp, "rb") as f, tifffile.TiffFile(f) as tif:
            strips = [(tuple(p.dataoffsets), tuple(p.databytecounts)) for p in tif.pages]
            if strips != self.strips:
                raise VerifyError(f"{self.dest}: the copy's page chain is not the pages verified as they were written")
            if tif.pages.first.description != self.description:
                raise VerifyError(f"{self.dest}: the copy's first page does not carry its description")

    def abort(self) -> None:
        try:
            if self.tw is not None:
                tw, self.tw = self.tw, None
                tw.close()
        finally:
            try:
                if self.direct is not None:
                    self.direct.abort()
            finally:
                super().abort()


class ZarrStream(FrameStream):
    """One file being streamed into its Zarr copy's temporary folder on a local tier: its frames are
    encoded as they are written in full (a chunk each, on the frame pool), and each shard is written
    into the temporary as soon as its frames are all encoded. At completion, once the compare has
    passed, the last shard, the group and array metadata (from the complete file) and the header
    arrays are written, and the folder is made durable and renamed. The copy is then verified whole,
    read back and decoded, as a copy written the whole-file way is."""

    flip_formats = ZARR_FLIP_FORMATS

    def __init__(self, layout: ZarrLayout, path: str, tier: TierPort, dest: str) -> None:
        self.pool: ThreadPoolExecutor | None = None
        self.tmp = ""
        super().__init__(layout, path, tier, dest)

    def _open_copy(self) -> None:
        g = self.g
        if g.format == "mib" and os.path.exists(os.path.splitext(self.path)[0] + ".hdr"):
            # a 4D-STEM scan: its shards follow scan rows the .hdr states, known for sure at the end
            raise NotStreamable("a 4D-STEM scan (its .hdr is there): shipped whole when complete")
        self.encode = self._prototype()
        self.tmp = self.tier.temp_tree(self.dest)
        self.tier.remove_temp(self.dest)
        os.makedirs(self.tmp)
        self.pool = ThreadPoolExecutor(max(1, int(self.layout.threads)), thread_name_prefix="acqd-zarr")
        self.pending: list[bytes] = []  # the encoded chunks of the shard being filled
        self.shards = 0  # shards written (each of `k` frames)

    def _prototype(self) -> Any:
        """The chunk encoder the copy's array will have (the very codec configuration zarr writes), from
        an array of the same dtype, frame shape, shards and codec made in memory."""
        import zarr
        from zarr.storage import MemoryStore

        g = self.g
        arr = zarr.create_array(
            MemoryStore(),
            shape=(self.k, *g.frame_shape),
            dtype=g.dtype.newbyteorder("<"),
            chunks=(1, *g.frame_shape),
            shards=(self.k, *g.frame_shape),
            compressors=self.layout.codec.zarr_compressors(g.dtype.itemsize),
            fill_value=0,
        )
        encode = chunk_encoder(arr)
        if encode is None:
            raise NotStreamable("the codec is not written shard by shard")
        self.array_meta = arr.metadata
        return encode

    def key_of(self, shard: int) -> str:
        """The store key of the frame array's `shard`-th shard (along the frames)."""
        return f"{ARRAY}/{self.array_meta.encode_chunk_key((shard, 0, 0))}"

    def block_bytes(self) -> int:
        """A block's frames as read, made little-endian and encoded, and the encoded chunks of the shard
        being filled with the shard joined for its write (at most a shard's frames, incompressible)."""
        return 3 * self.per * self.g.frame_bytes + 2 * self.k * self.g.frame_bytes

    def _encode(self, block: np.ndarray) -> None:
        assert self.pool is not None
        data = block.astype(block.dtype.newbyteorder("<"), copy=False)
        if self.flip:  # rows as rosettasciio (hyperspy) shows a Merlin frame
            data = data[:, ::-1]
        for chunk in list(self.pool.map(self.encode, data)):
            self.pending.append(chunk)
            if len(self.pending) == self.k:
                self._write_shard(self.shards, list(self.pending))
                self.pending.clear()
                self.shards += 1

    def _write_shard(self, index: int, chunks: list[bytes | None]) -> None:
        """A shard into the temporary folder, paced by the tier's bandwidth schedule and with its
        errors translated at the storage edge, as the whole-file path's writes are."""
        self.tier.put_in_temp_tree(self.dest, self.key_of(index), shard_parts(chunks))

    def _complete(self, digest: str, size: int) -> int:
        from acqd.layouts.frames import _geometry

        whole, tmp = self.whole, self.tmp
        k = self.layout.frames_per_block(whole)
        shape, _, shards, _ = _geometry(whole, k)
        if whole.image2d or whole.scan or shards is None or len(shape) != 3:
            raise Unfit(f"the complete file is not a stack of frames in shards along them ({shape})")
        if shards != (self.k, *self.g.frame_shape) and self.shards:
            raise Surprise(f"the complete file's shards are {shards}, {self.k} frames each were streamed")
        if self.pending:  # the last shard: its places past the array's end hold no chunk
            self._write_shard(self.shards, [*self.pending, *[None] * (shards[0] - len(self.pending))])
            self.pending.clear()
        asyncio.run(self.layout.create(self.tier.zarr_store(tmp), whole, k, mode="a"))
        stored = int(self.tier.tree_size(tmp))
        if stored > size and self.layout.never_larger:
            raise Surprise(f"the copy came to {stored} bytes, more than the source's {size}")
        crash_point("after_encode")
        self.tier.commit_tree(self.dest)
        self.tmp = ""
        return stored

    def abort(self) -> None:
        try:
            if self.pool is not None:
                pool, self.pool = self.pool, None
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            try:
                if self.tmp:
                    self.tmp = ""
                    with contextlib.suppress(AcqdError):  # the tier unreachable: removed at a later start
                        self.tier.remove_temp(self.dest)
            finally:
                super().abort()


def verify_streamed(tier: TierPort, dest: str, expected: WriteResult) -> None:
    """The verify step of a streamed copy: its frames were decoded from the temporary as they were
    written and its page chain checked against them before the commit (`TiffStream.finish`); the
    published object is that temporary renamed, so it must have exactly the size committed."""
    got = tier.size(dest)
    if got != expected.stored_bytes:
        raise VerifyError(f"{tier.url(dest)}: {got} bytes, {expected.stored_bytes} were committed")


__all__ = [
    "STREAMED_READERS",
    "FrameStream",
    "Growth",
    "NotStreamable",
    "NotYet",
    "Surprise",
    "TiffStream",
    "Unfit",
    "ZarrStream",
    "growth",
    "open_stream",
    "plan_growing",
    "streamable",
    "verify_streamed",
]
