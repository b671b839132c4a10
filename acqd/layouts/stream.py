"""Tail-follow streaming: a movie's frames encoded into the destination's temporary while the camera
still writes it. Blocking: every method runs in the I/O executor, one at a time per stream.

Today's scope: MRC movies (their header comes first and says the frame count, shape and dtype)
stored in the TIFF layout on a local tier (the copy is written in place into its hidden temporary,
as the whole-file path does). Each `step` reads the frames the file holds in full, adds them to the
source checksum, encodes them as TIFF pages appended to the temporary, then reads those pages back
from the temporary, decodes them and adds them to the copy's checksum (the frames are verified as
written). `finish`, once the file is complete, reads the rest, re-reads the whole source at hash
speed and compares it with what was streamed, checks the copy's page chain, and commits the
temporary under its final name. Anything unexpected raises `Surprise`: the caller drops the
temporary and ships the file the whole-file way, so a rewrite never yields a wrong copy.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import stat
import sys
import time
import zlib
from typing import Any

from acqd.checksum import Hasher
from acqd.crash import crash_point
from acqd.errors import AcqdError, UnsupportedFormatError, VerifyError
from acqd.layouts.frames import (
    DESC_PREFIX,
    FLIP_FORMATS,
    ROWS_FLIPPED,
    TIFF_SCHEMES,
    FilePlan,
    TiffLayout,
    canonical,
    resolution_tags,
)
from acqd.layouts.tiffwrite import TiffPageWriter, default_rows_per_strip, frame_threads, image_tags, make_tag
from acqd.ports import TierPort
from acqd.readers.base import FrameSource
from acqd.settle import mrc_expected_size
from acqd.values import WriteResult

HEADER = 1024  # an MRC main header
REHASH_CHUNK = 8 << 20  # the compare at completion reads the source this much at a time
STREAM_BLOCK = 32 << 20  # frames read and encoded at a time while streaming (at least one frame)


class Surprise(Exception):
    """The source did not grow the way its header said (rewritten, truncated, replaced, ...), or the
    streamed copy is not what it must be: the stream is dropped and the file shipped whole."""


class NotYet(Exception):
    """Nothing to stream from yet (the header is not written, or not an MRC one)."""


class NotStreamable(Exception):
    """This file cannot be streamed (an MRC mode the layout does not write, a remote tier, ...)."""


class _Opened:
    """What a reader is handed: the file object and its path."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.file = io.FileIO(fd, "rb", closefd=False)


def plan_growing(layout: Any, path: str, key: str | None, recorded: str | None) -> FilePlan:
    """The layout's plan (its codec: acqd.layouts.choose) for a movie still being written, decided
    from the frames written so far. NotYet while no frame is there; NotStreamable for a valid file
    the frame layout does not take (it is copied byte-exact when complete)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        expected = mrc_expected_size(os.pread(fd, HEADER, 0))
        if expected is None:
            raise NotYet("no MRC header yet")
        opened = _Opened(path, fd)
        try:
            src = layout._open(opened, expected)
        except UnsupportedFormatError as exc:
            raise NotStreamable(str(exc)) from None
        except AcqdError as exc:
            raise NotYet(f"header not readable yet: {exc}") from None
        offset = expected - src.shape[0] * src.frame_bytes
        avail = min(src.shape[0], max(0, (size - offset) // max(1, src.frame_bytes)))
        if avail < 1:
            raise NotYet("no whole frame yet")
        part = dataclasses.replace(src, shape=(avail, src.shape[1], src.shape[2]))
        plan: FilePlan = layout.plan(opened, expected, key, recorded, src=part)
        return plan
    finally:
        os.close(fd)


def streamable(layout: Any, reader: str, tier: TierPort) -> bool:
    """Whether files of this reader, stored with this layout on this tier, can be streamed."""
    return isinstance(layout, TiffLayout) and reader == "mrc" and bool(getattr(tier, "local", False))


class TiffStream:
    """One movie being streamed into its TIFF copy's temporary on a local tier."""

    def __init__(self, layout: TiffLayout, path: str, tier: TierPort, dest: str) -> None:
        self.layout, self.path, self.tier, self.dest = layout, path, tier, dest
        self.fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        self.direct: Any = None
        self.tw: TiffPageWriter | None = None
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
        head = os.pread(self.fd, HEADER, 0)
        expected = mrc_expected_size(head)
        if expected is None:
            raise NotYet("no MRC header yet")
        self.expected = expected
        opened = _Opened(self.path, self.fd)
        try:
            # the reader checks the header as if the file were whole: frames are read only once there
            src = self.layout._open(opened, expected)
        except UnsupportedFormatError as exc:
            raise NotStreamable(str(exc)) from None
        except AcqdError as exc:
            raise NotYet(f"header not readable yet: {exc}") from None
        if src.format != "mrc" or src.scan or src.image2d or src.shape[0] < 2:
            raise NotStreamable("not a movie of frames")
        self.src: FrameSource = src
        self.restore = src.restore or b""
        self.offset = expected - src.shape[0] * src.frame_bytes  # where the first frame starts
        self.seen = st.st_size
        layout = self.layout
        compression, self.level = layout.codec.tiff_compression()
        self.scheme = TIFF_SCHEMES[compression]
        meta = layout.meta(src)
        if self.restore:
            meta["restore_zlib_b64"] = base64.b64encode(zlib.compress(self.restore, 6)).decode()
        self.flip = src.format in FLIP_FORMATS
        if self.flip:
            meta["rows"] = ROWS_FLIPPED
        self.description = DESC_PREFIX + json.dumps(meta, separators=(",", ":"))
        frame_shape = (src.shape[1], src.shape[2])
        self.rps = default_rows_per_strip(frame_shape, src.dtype.itemsize, self.scheme)
        self.base = image_tags(frame_shape, src.dtype, compression=self.scheme, rows_per_strip=self.rps)
        self.base += resolution_tags(src.pixel_size_um)
        self.first_tags = [*self.base, make_tag(270, 2, self.description)]
        self.k = layout.frames_per_block(src)
        # frames per block while streaming: small blocks, so a ship taking the stream over waits little
        self.per = max(1, min(self.k, STREAM_BLOCK // max(1, src.frame_bytes)))
        self.hurry = False  # the ship wants the stream: end the step after the current block
        self.direct = self.tier.atomic_file(self.dest)
        if self.direct is None:
            raise NotStreamable("the tier cannot be written in place")
        bigtiff = src.shape[0] * src.frame_bytes > 2**31
        self.tw = TiffPageWriter(self.direct.file, bigtiff=bigtiff, workers=frame_threads(0))
        self.hasher = Hasher()  # the source: header bytes and frames, as streamed
        self.hasher.update(self.restore)
        self.back = Hasher()  # the copy: its frames decoded from the temporary
        self.back.update(self.restore)
        self.done = 0  # frames encoded into the temporary
        self.while_growing = 0  # of those, encoded while the file was not complete yet (its size short)
        self.checked = 0  # of those, read back and verified
        self.strips: list[tuple[tuple[int, ...], tuple[int, ...]]] = []  # each page's strip table as read back
        self.timing = {"read": 0.0, "encode": 0.0, "write": 0.0, "stream": 0.0}

    @property
    def frames(self) -> int:
        return int(self.src.shape[0])

    @property
    def header_bytes(self) -> int:
        return len(self.restore)

    def block_bytes(self) -> int:
        """Bytes of frame data one step holds at most (what it reserves in the in-flight budget): a
        block's frames as read, their encoded pages, and a page decoded again when read back."""
        return 3 * self.per * self.src.frame_bytes

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
        if size > self.expected:
            raise Surprise(f"grew beyond the {self.expected} bytes its header announces ({size} bytes)")
        if os.pread(self.fd, len(self.restore), 0) != self.restore:
            raise Surprise("its header was rewritten while it was streamed")
        self.seen = size
        return size

    def step(self) -> int:
        """Encode the frames written in full since the last step, a block of `per` frames at a time, and
        read them back; return how many. `hurry` (set by another thread) ends it after the block."""
        t0 = time.perf_counter()
        size = self._look()
        avail = min(self.frames, max(0, (size - self.offset) // self.src.frame_bytes))
        n = 0
        assert self.tw is not None
        while self.done < avail and not (n and self.hurry):
            stop = min(avail, self.done + self.per)
            t = time.perf_counter()
            try:
                block = self.src.read(self.done, stop)
            except (OSError, AcqdError) as exc:
                raise Surprise(f"frames {self.done}-{stop} not readable: {exc}") from None
            self.hasher.update(canonical(block).data)
            self.timing["read"] += time.perf_counter() - t
            t = time.perf_counter()
            for i, frame in enumerate(block):
                self.tw.write_page(
                    frame[::-1] if self.flip else frame,
                    self.first_tags if self.done + i == 0 else self.base,
                    compression=self.scheme,
                    rows_per_strip=self.rps,
                    level=self.level,
                )
            self.timing["encode"] += time.perf_counter() - t
            n += stop - self.done
            self.done = stop
        if size < self.expected:
            self.while_growing = self.done
        if n:
            self._read_back()
            crash_point("during_stream")
        self.timing["stream"] += time.perf_counter() - t0
        return n

    def _read_back(self) -> None:
        """Read the pages written since the last check back from the temporary and decode them: each
        must be the frame streamed, and the first carry the description written."""
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
                for i in range(self.checked, self.done):
                    page: Any = pages[i]
                    if i == 0 and page.description != self.description:
                        raise VerifyError(f"the streamed temporary of {self.dest}: its description differs")
                    frame = page.asarray()
                    native = self.src.dtype.newbyteorder("=")
                    if frame.shape != self.src.shape[1:] or frame.dtype.newbyteorder("=") != native:
                        what = f"page {i} is {frame.shape} {frame.dtype}"
                        raise VerifyError(f"the streamed temporary of {self.dest}: {what}")
                    self.back.update(canonical(frame[::-1] if self.flip else frame).data)
                    self.strips.append((tuple(page.dataoffsets), tuple(page.databytecounts)))
            finally:
                tif.close()
        self.checked = self.done
        self.timing["verify_stream"] = self.timing.get("verify_stream", 0.0) + time.perf_counter() - t

    # -- at completion ---------------------------------------------------------------------------
    def finish(self, source: Any, size: int) -> WriteResult:
        """The file is complete (`source`: the settled file, opened and identity-checked, `size` its
        size): stream the rest, compare, check and commit. Raises Surprise for anything unexpected,
        SourceChangedError if the file changed since it settled."""
        t0 = time.perf_counter()
        if size != self.expected:
            raise Surprise(f"completed at {size} bytes, its header announced {self.expected}")
        self.hurry = False
        self.step()
        if self.done != self.frames:
            raise Surprise(f"completed with {self.done} of its {self.frames} frames readable")
        digest = self.hasher.hexdigest()
        # the compare at completion: the whole source read again (from the page cache, at hash speed)
        # must be exactly what was streamed; a frame or the header rewritten after it was streamed,
        # zeros written ahead and filled in later, a file truncated and written again: all differ here
        t = time.perf_counter()
        again = self._rehash(source, size)
        if again != digest:
            raise Surprise("the complete file differs from the frames streamed (rewritten after they were read)")
        self.timing["compare"] = time.perf_counter() - t
        source.check()  # unchanged since it settled: SourceChangedError otherwise
        crash_point("after_compare")
        self._check_copy(digest)
        assert self.tw is not None
        self.tw.close()
        stored = int(self.direct.file.seek(0, 2))
        if stored > size and self.layout.never_larger:
            raise Surprise(f"the copy came to {stored} bytes, more than the source's {size}")
        crash_point("after_encode")
        stored = int(self.direct.commit())
        layout = self.layout
        if layout.chooser is not None and layout._observe is not None and stored:
            layout.chooser.observe(*layout._observe, size / stored)
        self.timing["write"] += time.perf_counter() - t0 - self.timing["compare"]
        stages = (
            ("read", self.timing["read"]),
            ("encode", self.timing["encode"]),
            ("write", self.timing["write"]),
        )
        return WriteResult(digest, size, stored, layout.codec.spec, stages, self.src.mismatch, layout._why)

    def _rehash(self, source: Any, size: int) -> str:
        """The checksum of the complete file as it is now, read again from its first byte. For an MRC
        movie whose pixels are bytes or little-endian, the checksum's bytes are the file's own (its
        header and extended header, then the frames): it is hashed as it is read, into one buffer;
        otherwise through the reader, frame block by frame block, as a ship hashes it."""
        h = Hasher()
        dt = self.src.dtype
        little = dt.itemsize == 1 or dt.byteorder == "<" or (dt.byteorder == "=" and sys.byteorder == "little")
        if self.src.format == "mrc" and little:
            buf = bytearray(REHASH_CHUNK)
            view = memoryview(buf)
            f = source.file
            f.seek(0)
            total = 0
            while n := f.readinto(buf):
                h.update(view[:n])
                total += n
            if total != size:
                raise Surprise(f"read {total} bytes of its {size} at completion")
            return h.hexdigest()
        try:
            whole = self.layout._open(source, size)
        except AcqdError as exc:
            raise Surprise(f"not readable as a whole: {exc}") from None
        h.update(whole.restore or b"")
        for start in range(0, whole.shape[0], self.k):
            h.update(canonical(whole.read(start, min(whole.shape[0], start + self.k))).data)
        return h.hexdigest()

    def _check_copy(self, digest: str) -> None:
        """The copy as it will be published: every page verified as written, and its page chain, parsed
        afresh, points to exactly the strips that were verified (nothing patched in between)."""
        import tifffile

        if self.back.hexdigest() != digest:
            got = self.back.hexdigest()
            raise VerifyError(f"{self.dest}: the streamed pages decode to {got}, the source is {digest}")
        self.direct.file.flush()
        with open(self.direct.tmp, "rb") as f, tifffile.TiffFile(f) as tif:
            strips = [(tuple(p.dataoffsets), tuple(p.databytecounts)) for p in tif.pages]
            if strips != self.strips:
                raise VerifyError(f"{self.dest}: the copy's page chain is not the pages verified as they were written")

    def abort(self) -> None:
        """Drop the temporary and close everything (idempotent)."""
        if self.tw is not None:
            self.tw.close()
            self.tw = None
        if self.direct is not None:
            self.direct.abort()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        """After a commit: close the source and the encoder threads."""
        self.abort()


def verify_streamed(tier: TierPort, dest: str, expected: WriteResult) -> None:
    """The verify step of a streamed copy: its frames were decoded from the temporary as they were
    written and its page chain checked against them before the commit (`TiffStream.finish`); the
    published object is that temporary renamed, so it must have exactly the size committed."""
    got = tier.size(dest)
    if got != expected.stored_bytes:
        raise VerifyError(f"{tier.url(dest)}: {got} bytes, {expected.stored_bytes} were committed")


__all__ = ["NotStreamable", "NotYet", "Surprise", "TiffStream", "plan_growing", "streamable", "verify_streamed"]
