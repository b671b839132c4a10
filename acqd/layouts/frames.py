"""Frame-aware layouts: `zarr` (OME-Zarr 0.5 on Zarr v3, sharded) and `tiff` (compressed TIFF).

Both read frames through a reader, take the checksum of the decoded pixels (canonical little-endian
bytes, frame by frame), write to a hidden temporary and commit it under the final name, verify by
decoding what was written, and restore the source format (MRC, MIB and raw byte for byte; TIFF with
its pixels and tags).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import json
import math
import struct
import tempfile
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from acqd.checksum import Hasher
from acqd.codec import MIN_RATIO, FrameCodec, codec_label, parse_label, stream_codec
from acqd.crash import crash_point
from acqd.errors import (
    AcqdError,
    NameTakenError,
    SourceReadError,
    StoredLargerError,
    UnfinishedFormatError,
    UnsupportedFormatError,
    VerifyError,
)
from acqd.layouts.choose import ChoosePolicy, Chooser, Decision
from acqd.layouts.copy import CopyLayout
from acqd.layouts.framepool import chunk_encoder, shard_bytes, shard_of, shard_parts, tiff_frames, zarr_frames
from acqd.layouts.tiffwrite import (
    Tag,
    TiffPageWriter,
    default_rows_per_strip,
    frame_threads,
    image_tags,
    make_tag,
    rational,
)
from acqd.lazy import lazy
from acqd.naming import ZARR_ARRAY, ZARR_HEADER, ZARR_RESTORE, zarr_own
from acqd.ports import Layout, TierPort
from acqd.readers import Expect, FrameSource, open_frames
from acqd.readers.base import UM_PER_UNIT
from acqd.readers.tiff import ENCODABLE
from acqd.values import WriteResult

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


ARRAY = ZARR_ARRAY
# sources whose rows the TIFF layout reverses: IMOD, SerialEM, MotionCor2 and RELION flip the slow
# axis whenever they read or write a TIFF, so an MRC's row 0 is a TIFF's last row; a Merlin .mib
# frame as rosettasciio shows it, as in the Zarr layout (a stranger's review: its TIFF copy kept the
# file's row order, upside down beside its Zarr copy)
FLIP_FORMATS = {"mrc", "mib"}
# sources whose rows the Zarr layout reverses: rosettasciio (hyperspy) shows a Merlin .mib frame with
# its rows reversed, and 4D-STEM users compare with what it shows
ZARR_FLIP_FORMATS = {"mib"}
ROWS_FLIPPED = "flipped-y"  # the `rows` flag in a TIFF's acqd metadata; absent: rows as in the source
TIFF_SCHEMES: dict[str | None, int] = {None: 1, "lzw": 5, "zlib": 8, "zstd": 50000}
DESC_PREFIX = "acqd/1 "  # not bare JSON: tifffile would take a JSON description for its own metadata
RESTORE = ZARR_RESTORE
HEADER = ZARR_HEADER  # a compressed array with the whole source header, when it is big
HEADER_INLINE = 16 << 10  # a header up to this size (JSON) sits whole in the group's attributes
LEAN_VALUE = 1024  # in the lean header, longer strings and lists point to the header array


def lean(value: Any) -> Any:
    """The header as the group's attributes carry it: long strings (base64 of private tags, big
    descriptions) and long lists (per-frame headers, per-page tags) replaced by a note of their size
    and where the whole value is, so that every viewer parses a small zarr.json."""
    if isinstance(value, str) and len(value) > LEAN_VALUE:
        return {"chars": len(value), "in": HEADER}
    if isinstance(value, list):
        if len(value) > 64:
            return {"items": len(value), "in": HEADER}
        return [lean(v) for v in value]
    if isinstance(value, dict):
        return {k: lean(v) for k, v in value.items()}
    return value


def _header_is_big(src: FrameSource) -> bool:
    return len(json.dumps(src.header, separators=(",", ":"))) > HEADER_INLINE


GREW_MAX = 4096  # files remembered as stored byte-exact (until they are planned again)
ZSTD_PROBE = 256 << 10  # a file stored byte-exact because it is not frames: zstd if these samples shrink


@dataclass(frozen=True)
class FilePlan:
    """How one file is stored: the layout (with its codec, or byte-exact) and the session's decision
    behind it (None: no choice made for it, e.g. a fixed codec)."""

    layout: Layout
    decision: Decision | None


def _identity(source: Any, size: int) -> tuple[Any, ...]:
    expected = getattr(source, "expected", None)
    return (getattr(source, "path", None), size, getattr(expected, "mtime_ns", None), getattr(expected, "inode", None))


def canonical(block: np.ndarray) -> np.ndarray:
    """The bytes the pixel checksum is taken over: C order, little-endian."""
    le = block.dtype.newbyteorder("<")
    return np.ascontiguousarray(block.astype(le, copy=False))


HASH_PIECE = 1 << 20  # bytes of rows copied at a time when a block is not in canonical order
# Source frames are read in pieces of at most this many bytes (whole frames; one frame if a frame is
# larger), not a shard's or a block's worth at once: a piece stays below the allocator's mmap
# threshold (acqd.memory, 32 MiB), so its memory is reused from piece to piece instead of mapped
# afresh, faulted in and zeroed by the kernel for every block (with transparent huge pages, and on a
# virtual machine whose host takes freed memory back, reading 96 MB blocks of a light-sheet stack
# into fresh memory took 0.3-1.6 s per GB against 0.18 s in pieces; `bench/results/` notes).
READ_PIECE = 24 << 20


def hash_canonical(hasher: Any, block: np.ndarray) -> None:
    """`hasher.update(canonical(block).data)`, without the canonical copy of the whole block when it
    is not in C order or not little-endian (a frame read with its rows flipped, big-endian pixels):
    rows are put in order a megabyte at a time, in a buffer that stays in the CPU's cache, instead
    of into a fresh frame-sized array."""
    le = block.dtype.newbyteorder("<")
    if (block.dtype == le and block.flags.c_contiguous) or block.ndim < 2 or block.size == 0:
        hasher.update(canonical(block).data)
        return
    ny, nx = block.shape[-2:]
    step = max(1, HASH_PIECE // max(1, nx * le.itemsize))
    scratch = np.empty((min(step, ny), nx), le)
    for lead in np.ndindex(*block.shape[:-2]):
        frame = block[lead]
        for i in range(0, ny, step):
            piece = frame[i : i + step]
            out = scratch[: len(piece)]
            np.copyto(out, piece, casting="equiv")
            hasher.update(out.data)


class FrameLayout:
    """Shared reading, hashing and timing; subclasses write and read their format."""

    name = "frames"
    suffix = ""

    def __init__(
        self,
        codec: FrameCodec,
        reader: str,
        expect: Expect,
        options: dict[str, Any],
        shard_bytes: int = 64 << 20,
        choose: ChoosePolicy | None = None,
        never_larger: bool = True,
        threads: int = 0,
    ) -> None:
        self.codec = codec
        self.reader = reader
        self.expect = expect
        self.options = options
        self.shard_bytes = shard_bytes
        self.never_larger = never_larger  # a copy larger than its source: stored byte-exact instead
        self.threads = frame_threads(threads)  # encode and verify the frames of one file on this many threads
        if choose is not None:
            choose = dataclasses.replace(choose, allow_copy=never_larger)
        self.chooser = (
            Chooser(choose, self.name, threads=self.threads)
            if choose is not None and len(choose.candidates) > 1
            else None
        )
        self.fallback = CopyLayout(stream_codec("none"), 8 << 20)  # byte-exact: never larger than the source
        # files to store byte-exact when next planned: their frame copy came out larger, or they are
        # valid files this layout cannot represent (an RGB TIFF, a 4-bit MRC)
        self._grew: OrderedDict[tuple[Any, ...], CopyLayout] = OrderedDict()
        self._why: str | None = None  # a file's plan: why its codec
        self._observe: tuple[str, str] | None = None  # a file's plan: (session key, character) to report to

    # -- the codec of each file (acqd.layouts.choose), decided before its name is -------------------
    def choice_key(self, root: str, session: str) -> str | None:
        """The journal key under which a session's codec choice is kept (None: a fixed codec)."""
        return self.chooser.key(root, session) if self.chooser is not None else None

    def plan(
        self, source: Any, size: int, key: str | None, recorded: str | None, src: FrameSource | None = None
    ) -> FilePlan:
        """How this file is stored: this layout with the session's codec for its data character
        (measured on its sample frames when the session starts or its data changes), or byte-exact
        (the copy layout) when nothing makes it smaller. Decided before the name, which depends on it.
        `src`: the frames to decide from, already opened (a movie still being written: those so far)."""
        grew = self._grew.get(_identity(source, size))
        if grew is not None:
            return FilePlan(grew, None)
        if self.chooser is None or key is None:
            return FilePlan(self, None)
        if src is None:
            try:
                src = self._open(source, size)
            except UnsupportedFormatError as exc:
                return FilePlan(self._unframed(source, size, str(exc)), None)
        name = str(getattr(source, "path", "") or "").rpartition("/")[2]
        d = self.chooser.decide(key, recorded, src, name)
        e = d.entry
        if d.measured:
            why = f"{e.cause}: {e.choice.why}"
        elif e.choice.label is None:
            why = f"stored byte-exact: this session's {d.character} frames are incompressible (measured on {e.origin})"
        else:
            why = (
                f"{e.choice.label}: the session's choice for {d.character} frames, {e.choice.ratio:.2f}x on the "
                f"sample of {e.origin} at {e.choice.ns_per_byte:.2f} ns/B (budget {e.choice.budget_ns:.2f} ns/B)"
            )
        if e.choice.label is None:
            return FilePlan(CopyLayout(self.fallback.codec, self.fallback.chunk, why), d)
        mine = copy.copy(self)
        by_label = {codec_label(c): c for c in self.chooser.policy.candidates}
        mine.codec = by_label.get(e.choice.label) or parse_label(e.choice.label)
        mine._why = why
        mine._observe = (key, d.character)
        return FilePlan(mine, d)

    def for_copy(self, layout: str, codec: str = "none") -> Layout:
        """The layout a stored copy was written with (`layout`, `codec` as the journal has them): this
        one, or its byte-exact fallback (in a zstd frame, for a file that is not frames)."""
        if layout != self.fallback.name or layout == self.name:
            return self
        if codec.startswith("zstd"):
            return CopyLayout(stream_codec("zstd"), self.fallback.chunk)
        return self.fallback

    def _remember(self, source: Any, size: int, layout: CopyLayout) -> None:
        self._grew[_identity(source, size)] = layout
        while len(self._grew) > GREW_MAX:
            self._grew.popitem(last=False)

    def _unframed(self, source: Any, size: int, why: str) -> CopyLayout:
        """The byte-exact copy of a valid file this layout cannot represent: in a zstd frame where
        samples of it (start, middle, end) shrink by MIN_RATIO, else as it is (never larger)."""
        probe = bytearray()
        f = source.file
        if size <= 3 * ZSTD_PROBE:  # the whole file (samples that overlapped repeated bytes, which zstd
            spans = [(0, size)]  # then found again: a file that does not shrink seemed to)
        else:
            spans = [(at, ZSTD_PROBE) for at in (0, size // 2 - ZSTD_PROBE // 2, size - ZSTD_PROBE)]
        for at, length in spans:
            f.seek(at)
            probe += f.read(length)
        zstd = stream_codec("zstd")
        enc = zstd.encoder(len(probe))
        packed = len(enc.compress(bytes(probe))) + len(enc.flush())
        zst = bool(probe) and len(probe) >= MIN_RATIO * packed
        codec = zstd if zst else self.fallback.codec
        how = f"zstd, {len(probe) / max(1, packed):.2f}x on samples" if zst else "incompressible samples"
        return CopyLayout(codec, self.fallback.chunk, f"stored byte-exact ({how}): {why}", why)

    def frames_per_block(self, src: FrameSource) -> int:
        return max(1, min(src.shape[0], self.shard_bytes // max(1, src.frame_bytes)))

    def _open(self, source: Any, size: int) -> FrameSource:
        try:
            options = {**self.options, "path": getattr(source, "path", None)}
            return open_frames(self.reader, source.file, size, self.expect, options)
        except UnfinishedFormatError as exc:
            if getattr(source, "at_rest", False):  # no process writes it any more: kept as it is
                raise UnsupportedFormatError(f"{exc}, and no process writes it any more") from None
            raise
        except OSError as exc:
            raise SourceReadError(f"read error: {exc.strerror or exc}") from None

    @staticmethod
    def _pieces(src: FrameSource, start: int, stop: int) -> list[tuple[int, int]]:
        """Frames [start, stop) as consecutive ranges of at most READ_PIECE bytes (at least a frame)."""
        per = max(1, READ_PIECE // max(1, src.frame_bytes))
        return [(a, min(stop, a + per)) for a in range(start, stop, per)]

    def _blocks(
        self,
        src: FrameSource,
        k: int,
        hasher: Hasher,
        timing: dict[str, float],
        ranges: Iterable[tuple[int, int]] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Frames [start, stop) in order, `k` at a time or by the given consecutive ranges."""
        if ranges is None:
            ranges = ((start, min(src.shape[0], start + k)) for start in range(0, src.shape[0], k))
        for start, stop in ranges:
            t0 = time.perf_counter()
            try:
                block = src.read(start, stop)
            except OSError as exc:
                raise SourceReadError(f"read error: {exc.strerror or exc}") from None
            hash_canonical(hasher, block)
            timing["read"] += time.perf_counter() - t0
            yield start, block

    def source_checksum(self, source: BinaryIO, size: int) -> str | None:
        """The checksum `write` records (the bytes kept for the restore, then the frames), read and
        hashed as `write` reads them. None for a source the restore rebuilds from its tags (a
        compressed TIFF): its checksum covers the frames, not every byte."""
        src = self._open(source, size)
        if src.restore is None:
            return None
        hasher = Hasher()
        hasher.update(src.restore)
        timing = {"read": 0.0}
        for _ in self._blocks(src, 1, hasher, timing, self._pieces(src, 0, src.shape[0])):
            pass
        return hasher.hexdigest()

    def meta(self, src: FrameSource) -> dict[str, Any]:
        return {
            "format": src.format,
            "dtype": src.dtype.str,
            "shape": list(src.shape),
            "header": src.header,
            "axis0": src.axis0,
            "pixel_size_um": list(src.pixel_size_um) if src.pixel_size_um else None,
            **({"frame_interval_s": src.axis0_interval_s} if src.axis0_interval_s else {}),
            **({"mode": src.mode} if src.mode else {}),
            **({"profile_mismatch": src.mismatch} if src.mismatch else {}),
        }

    def write(self, source: BinaryIO, size: int, tier: TierPort, dest: str) -> WriteResult:
        try:
            src = self._open(source, size)
        except UnsupportedFormatError as exc:  # nothing published: the next plan of this file says copy
            self._remember(source, size, self._unframed(source, size, str(exc)))
            raise
        hasher = Hasher()
        hasher.update(src.restore or b"")  # header bytes are content too: the checksum covers them
        timing = {"read": 0.0, "encode": 0.0, "write": 0.0}
        t0 = time.perf_counter()
        try:
            stored = self._write(src, hasher, timing, tier, dest, source, size)
        except NameTakenError as exc:  # the caller verifies what is in the way against this result
            exc.result = WriteResult(
                hasher.hexdigest(), size, 0, self.codec.spec, mismatch=src.mismatch, codec_why=self._why
            )
            raise
        except StoredLargerError as exc:  # nothing published: the next plan of this file says copy
            why = f"stored byte-exact: {exc}"
            self._remember(source, size, CopyLayout(self.fallback.codec, self.fallback.chunk, why))
            if self.chooser is not None and self._observe is not None:
                self.chooser.observe(*self._observe, 0.0)
            raise
        total = time.perf_counter() - t0
        timing["write"] = max(0.0, total - timing["read"] - timing["encode"])
        if self.chooser is not None and self._observe is not None and stored:
            self.chooser.observe(*self._observe, size / stored)
        return WriteResult(
            hasher.hexdigest(), size, stored, self.codec.spec, tuple(timing.items()), src.mismatch, self._why
        )

    def verify(self, tier: TierPort, dest: str, expected: WriteResult) -> None:
        raise NotImplementedError

    def restore(self, tier: TierPort, dest: str, out: BinaryIO) -> str:
        raise NotImplementedError

    def _larger(self, stored: int, size: int) -> StoredLargerError:
        return StoredLargerError(
            f"the {self.name} copy with {codec_label(self.codec)} came to {stored} bytes, more than the source's {size}"
        )

    def _write(
        self,
        src: FrameSource,
        hasher: Hasher,
        timing: dict[str, float],
        tier: TierPort,
        dest: str,
        source: Any,
        size: int,
    ) -> int:
        raise NotImplementedError

    @staticmethod
    def _restore_bytes(
        meta: dict[str, Any], blob: bytes, frames: Iterator[np.ndarray], out: BinaryIO, hasher: Hasher
    ) -> None:
        """Write the source file back: header bytes and pixels in the source's own byte order."""
        dtype = np.dtype(meta["dtype"])
        fmt = meta["format"]
        hasher.update(blob)
        if fmt == "mib":
            hb = meta["header"]["header_bytes"]
            for i, frame in enumerate(frames):
                hash_canonical(hasher, frame)
                out.write(blob[i * hb : (i + 1) * hb])
                out.write(np.ascontiguousarray(frame.astype(dtype, copy=False)).tobytes())
            return
        out.write(blob)
        for frame in frames:
            hash_canonical(hasher, frame)
            out.write(np.ascontiguousarray(frame.astype(dtype, copy=False)).tobytes())

    @staticmethod
    def _restore_tiff(
        meta: dict[str, Any], frames: Iterator[np.ndarray], out: BinaryIO, hasher: Hasher, blob: bytes = b""
    ) -> str:
        """Write a TIFF source back; return "" if byte for byte, else what differs."""
        import tifffile

        from acqd.readers.tiff import restore_skeleton

        dtype = np.dtype(meta["dtype"])
        header = meta["header"]

        def hashed() -> Iterator[np.ndarray]:
            for frame in frames:
                hash_canonical(hasher, frame)
                yield frame

        if blob:  # an uncompressed source: its skeleton and the pixels give it back byte for byte
            hasher.update(blob)
            restore_skeleton(blob, hashed(), out, dtype)
            return ""
        if "structural" in header:  # every tag kept: written again tag for tag
            return _rewrite_tiff(header, hashed(), out)
        # stored before acqd kept the structural tags: pixels and the non-structural tags
        per_page = header.get("page_tags")
        with tifffile.TiffWriter(
            out, byteorder=header.get("byteorder", "<"), bigtiff=header.get("bigtiff", False)
        ) as tw:
            for i, frame in enumerate(frames):
                hash_canonical(hasher, frame)
                tags = per_page[i] if per_page else header["tags"]
                extratags = []
                res: dict[int, Any] = {}
                for t in tags:
                    value = _tag_value(t, header.get("byteorder", "<"))
                    if t["code"] in (282, 283, 296):  # resolution: tifffile writes these itself
                        res[t["code"]] = value
                        continue
                    extratags.append((t["code"], t["dtype"], t["count"], value, True))
                resolution = (tuple(res[282]), tuple(res[283])) if 282 in res and 283 in res else None
                tw.write(
                    frame.astype(dtype.newbyteorder("="), copy=False),
                    photometric="minisblack",
                    metadata=None,
                    description=None,
                    software=False,
                    extratags=extratags,
                    resolution=resolution,
                    resolutionunit=res.get(296),
                    contiguous=False,
                )
        return "pixels and tags equal; bytes differ: stored before acqd kept a TIFF's structural tags"


def _restore_blob(meta: dict[str, Any]) -> bytes:
    """The source's header bytes a TIFF copy keeps in its description (compressed; plain base64 in
    copies written before)."""
    if "restore_zlib_b64" in meta:
        return zlib.decompress(base64.b64decode(meta["restore_zlib_b64"]))
    return base64.b64decode(meta.get("restore_b64", ""))


def _source_rows(tif: Any, meta: dict[str, Any]) -> Iterator[np.ndarray]:
    """The pages of an acqd TIFF as the source's frames (rows flipped back where they were flipped)."""
    flipped = meta.get("rows") == ROWS_FLIPPED
    for page in tif.pages:
        frame = page.asarray()
        yield frame[::-1] if flipped else frame


def resolution_tags(pixel_size_um: tuple[float, float] | None) -> list[Tag]:
    """X/YResolution in pixels per centimetre (ResolutionUnit 3), where RELION reads the pixel size:
    1e8 / (Angstrom per pixel). None when the size is unknown or out of a RATIONAL's range."""
    if not pixel_size_um:
        return []
    py, px = pixel_size_um
    xr, yr = rational(1e4 / px) if px > 0 else None, rational(1e4 / py) if py > 0 else None
    if xr is None or yr is None:
        return []
    return [make_tag(282, 5, xr), make_tag(283, 5, yr), make_tag(296, 3, 3)]


class Restored(str):
    """What a layout's restore returns: the checksum of the restored content (compared with the
    journal's), with a note on how exact the file is ("" when byte for byte)."""

    note: str

    def __new__(cls, checksum: str, note: str = "") -> Restored:
        obj = super().__new__(cls, checksum)
        obj.note = note
        return obj


def restore_verdict(checksum: str) -> str:
    """What `acqd restore` prints after the checksum: "OK" for a byte-exact file, else what differs."""
    return getattr(checksum, "note", "") or "OK"


_TILE_TAGS = {322, 323, 32997, 32998}
_SCHEME_NAMES = {1: "none", 5: "LZW", 7: "JPEG", 8: "deflate", 32946: "deflate", 32773: "PackBits", 50000: "zstd"}


def _rewrite_tiff(header: dict[str, Any], frames: Iterator[np.ndarray], out: BinaryIO) -> str:
    """A compressed TIFF source, written again from every tag it had (structural ones included) with
    its compression scheme, predictor and strip size where acqd can encode them. The file goes to a
    spool first so its bytes can be compared with the source's checksum."""
    bo = header.get("byteorder", "<")
    changed: set[str] = set()
    hasher = Hasher()
    size = 0
    with tempfile.TemporaryFile(prefix="acqd-restore-") as spool:
        with TiffPageWriter(spool, byteorder=bo, bigtiff=header.get("bigtiff", False), workers=frame_threads(0)) as tw:
            for i, frame in enumerate(frames):
                kept = header["page_structural"][i] if "page_structural" in header else header["structural"]
                plain = header["page_tags"][i] if "page_tags" in header else header["tags"]
                tags = [_kept_tag(t) for t in (*kept, *plain)]
                codes = {t.code: t for t in tags}
                scheme, predictor = _int_tag(codes.get(259), bo, 1), _int_tag(codes.get(317), bo, 1)
                rps = _int_tag(codes.get(278), bo, frame.shape[0])
                if scheme not in ENCODABLE or predictor not in (1, 2) or _TILE_TAGS & codes.keys():
                    why = _SCHEME_NAMES.get(scheme, f"compression {scheme}")
                    if _TILE_TAGS & codes.keys():
                        why += " tiles"
                    changed.add(f"{why} written as uncompressed strips")
                    drop = _TILE_TAGS | {259, 317, 278}
                    tags = [t for t in tags if t.code not in drop]
                    tags += [make_tag(259, 3, 1, bo), make_tag(278, 4, frame.shape[0], bo)]
                    scheme, predictor, rps = 1, 1, frame.shape[0]
                tw.write_page(frame, tags, compression=scheme, predictor=predictor, rows_per_strip=rps)
        spool.seek(0)
        while chunk := spool.read(8 << 20):
            hasher.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if changed:
        return "pixels equal; tags differ: " + "; ".join(sorted(changed))
    if hasher.hexdigest() == header.get("file_checksum"):
        return ""
    return (
        "pixels and tags equal; bytes differ: the compressed strips and the places of IFDs and values "
        f"are acqd's own ({size} bytes, the source had {header.get('file_size', 'unknown')})"
    )


def _kept_tag(t: dict[str, Any]) -> Tag:
    return Tag(int(t["code"]), int(t["dtype"]), int(t["count"]), base64.b64decode(t["b64"]))


def _int_tag(t: Tag | None, byteorder: str, default: int) -> int:
    """The first value of an integer tag (SHORT or LONG), or `default` when the tag is absent."""
    if t is None or t.dtype not in (3, 4, 16):
        return default
    fmt = {3: "H", 4: "I", 16: "Q"}[t.dtype]
    return int(struct.unpack_from(byteorder + fmt, t.data)[0])


def _tag_value(t: dict[str, Any], byteorder: str) -> Any:
    """A TIFF tag's value, decoded from the raw bytes the reader kept, in the form tifffile writes."""
    import tifffile

    raw = base64.b64decode(t["b64"])
    dtype = int(t["dtype"])
    if dtype == 7:  # UNDEFINED
        return raw
    if dtype == 2:  # ASCII; cameras put 8-bit bytes here too, which go back as they were
        text = raw.rstrip(b"\0")
        return text.decode("ascii") if text.isascii() else raw
    fmt = tifffile.TIFF.DATA_FORMATS[dtype]
    values = struct.unpack(f"{byteorder}{len(raw) // struct.calcsize('<' + fmt[-1])}{fmt[-1]}", raw)
    if dtype in (5, 10):  # rationals: pairs
        pairs = tuple(values)
        return pairs if int(t["count"]) > 1 else pairs[:2]
    return values[0] if int(t["count"]) == 1 else tuple(values)


def _axes(src: FrameSource) -> list[dict[str, Any]]:
    """NGFF axes of the stored array, each with its scale under "_scale" (popped by the caller):
    (y, x) for a 2-D image, (t|z|c, y, x) for a movie, a stack or channels, (scan_y, scan_x, det_y, det_x) for a
    4D-STEM scan. Units only where the source states the size."""
    unit = src.unit if src.unit in UM_PER_UNIT else "micrometer"

    def stated(value: float | None) -> float | None:
        """A scale as written: a positive finite number, else none (an `Infinity` or `NaN` in zarr.json
        is not JSON: tensorstore and browsers refused the group, a stranger's review; 0 is no scale)."""
        v = float(f"{value:.12g}") if value is not None else 0.0
        return v if v > 0 and math.isfinite(v) else None

    def length(um: float | None) -> tuple[float, str | None]:
        v = stated(um / UM_PER_UNIT[unit]) if um is not None else None
        return (v, unit) if v is not None else (1.0, None)

    def axis(name: str, kind: str, size: tuple[float, str | None] = (1.0, None)) -> dict[str, Any]:
        a: dict[str, Any] = {"name": name, "type": kind, "_scale": size[0]}
        if size[1]:
            a["unit"] = size[1]
        return a

    if src.scan:
        # NGFF 0.5 allows 2-3 space axes, last, and one custom axis: the detector plane is what a
        # viewer shows (det_y, det_x); the fast scan axis is space, the slow one a custom "scan" axis
        return [axis("scan_y", "scan"), axis("scan_x", "space"), axis("det_y", "space"), axis("det_x", "space")]
    py, px = src.pixel_size_um or (None, None)
    plane = [axis("y", "space", length(py)), axis("x", "space", length(px))]
    if src.image2d:
        return plane
    if src.axis0 == "t":
        dt = stated(src.axis0_interval_s)
        return [axis("t", "time", (dt, "second") if dt is not None else (1.0, None)), *plane]
    if src.axis0 == "c":
        return [axis("c", "channel"), *plane]
    return [axis(src.axis0, "space", length(src.axis0_step_um)), *plane]


def _geometry(
    src: FrameSource, k: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | None, list[tuple[int, int]]]:
    """The stored array's shape, chunks (one frame each), shards (about `k` frames each) and the
    frame ranges that fill one shard each, so that every shard is written once."""
    n, ny, nx = src.shape
    if src.image2d:
        return (ny, nx), (ny, nx), None, [(0, 1)]
    if src.scan:
        sy, sx = src.scan
        if k >= sx:  # whole scan rows per shard
            rows = k // sx
            ranges = [(r * sx, min(sy, r + rows) * sx) for r in range(0, sy, rows)]
            return (sy, sx, ny, nx), (1, 1, ny, nx), (rows, sx, ny, nx), ranges
        ranges = [(r * sx + c, r * sx + min(sx, c + k)) for r in range(sy) for c in range(0, sx, k)]
        return (sy, sx, ny, nx), (1, 1, ny, nx), (1, k, ny, nx), ranges
    ranges = [(start, min(n, start + k)) for start in range(0, n, k)]
    return (n, ny, nx), (1, ny, nx), (k, ny, nx), ranges


def _where(src: FrameSource, start: int, count: int) -> Any:
    """The index of frames [start, start + count) in the stored array (one shard's frames)."""
    if src.image2d:
        return slice(None)
    if src.scan:
        sx = src.scan[1]
        if count >= sx:  # whole rows
            return (slice(start // sx, (start + count) // sx),)
        return (start // sx, slice(start % sx, start % sx + count))
    return slice(start, start + count)


def _block_shape(src: FrameSource, block: np.ndarray) -> tuple[int, ...]:
    ny, nx = block.shape[1:]
    if src.image2d:
        return (ny, nx)
    if src.scan and block.shape[0] >= src.scan[1]:
        return (-1, src.scan[1], ny, nx)
    return block.shape


class ZarrLayout(FrameLayout):
    """OME-Zarr 0.5 on Zarr v3: one array per source file, one chunk per frame, sharded so a file is a
    few objects; each shard is written once (a whole shard's frames at a time)."""

    name = "zarr"
    suffix = ".zarr"

    def _write(
        self,
        src: FrameSource,
        hasher: Hasher,
        timing: dict[str, float],
        tier: TierPort,
        dest: str,
        source: Any,
        size: int,
    ) -> int:
        k = self.frames_per_block(src)
        tmp = tier.temp_tree(dest)
        tier.remove_temp(dest)
        try:
            asyncio.run(self._write_async(src, k, hasher, timing, tier, tmp, dest))
            crash_point("after_encode")
            source.check()  # the source is unchanged: only now may the copy get its final name
            stored = tier.tree_size(tmp)
            if stored > size and self.never_larger:  # never stored larger than the source: byte-exact instead
                raise self._larger(stored, size)
            tier.commit_tree(dest)
        except BaseException:
            with contextlib.suppress(AcqdError):  # the tier unreachable: removed at a later start
                tier.remove_temp(dest)
            raise
        return stored

    async def create(self, store: Any, src: FrameSource, k: int, mode: Literal["w", "a"]) -> Any:
        """The copy's group and array metadata (and the header and restore arrays) for `src`, frames
        in shards of about `k`: zarr.json objects only, the frame array's shards are written by the
        caller. `mode`: "w" (a fresh store), or "a" (shards already streamed into it, kept; no group
        there yet)."""
        import zarr

        group = await zarr.api.asynchronous.open_group(
            store=store, mode=mode, zarr_format=3, attributes=self.group_attrs(src)
        )
        shape, chunks, shards, _ = _geometry(src, k)
        arr = await group.create_array(
            ARRAY,
            shape=shape,
            dtype=src.dtype.newbyteorder("<"),
            chunks=chunks,
            shards=shards,
            compressors=self.codec.zarr_compressors(src.dtype.itemsize),
            fill_value=0,
            dimension_names=tuple(a["name"] for a in _axes(src)),
            # every frame is data: skip zarr's scan of each chunk for "all fill value" (11 % of the
            # CPU time on light-sheet stacks)
            config={"write_empty_chunks": True},
        )
        if _header_is_big(src):  # the whole header, compressed, beside the lean attributes
            full = json.dumps(src.header, separators=(",", ":")).encode()
            ha = await group.create_array(
                HEADER,
                shape=(len(full),),
                dtype="uint8",
                chunks=(len(full),),
                compressors=self.codec.for_bytes().zarr_compressors(1) if self.codec.id != "none" else (),
            )
            await ha.setitem(slice(None), np.frombuffer(full, dtype=np.uint8))
        blob = src.restore or b""
        if blob:
            ra = await group.create_array(
                RESTORE,
                shape=(len(blob),),
                dtype="uint8",
                chunks=(len(blob),),
                compressors=self.codec.for_bytes().zarr_compressors(1) if self.codec.id != "none" else (),
            )
            await ra.setitem(slice(None), np.frombuffer(blob, dtype=np.uint8))
        return arr

    async def _write_async(
        self, src: FrameSource, k: int, hasher: Hasher, timing: dict[str, float], tier: TierPort, path: str, dest: str
    ) -> None:
        from zarr.core.buffer import default_buffer_prototype

        store = tier.zarr_store(path)
        _, _, shards, ranges = _geometry(src, k)
        arr = await self.create(store, src, k, mode="w")
        flip = src.format in ZARR_FLIP_FORMATS
        encode = chunk_encoder(arr) if shards is not None else None
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="acqd-zarr") if encode is not None else None
        # a shard's chunks encoded on the pool while the next shard's frames are read and hashed
        queued: tuple[str, list[int | None], list[Future[bytes]]] | None = None

        async def put(key: str, places: list[int | None], futures: list[Future[bytes]]) -> None:
            chunks: list[bytes | None] = []
            for i in places:
                if i is None:
                    chunks.append(None)  # a place past the array's end
                else:
                    encoded: bytes = await asyncio.wrap_future(futures[i])
                    chunks.append(encoded)
            if tier.local:  # in pieces, one writev: no joined copy of the shard
                await asyncio.to_thread(tier.put_in_temp_tree, dest, key, shard_parts(chunks))
            else:
                await store.set(key, default_buffer_prototype().buffer.from_bytes(shard_bytes(chunks)))

        def little(block: np.ndarray) -> np.ndarray:
            data = block.astype(block.dtype.newbyteorder("<"), copy=False)
            return data[:, ::-1] if flip else data  # flip: rows as rosettasciio (hyperspy) shows a Merlin frame

        try:
            for a, b in ranges:
                spot = shard_of(arr, a, b - a) if pool is not None and encode is not None else None
                if spot is None or pool is None or encode is None:  # through zarr's pipeline, a block at once
                    for start, block in self._blocks(src, k, hasher, timing, [(a, b)]):
                        t0 = time.perf_counter()
                        data = little(block)
                        await arr.setitem(_where(src, start, block.shape[0]), data.reshape(_block_shape(src, data)))
                        timing["encode"] += time.perf_counter() - t0
                    continue
                # the whole shard, as zarr's sharding codec lays it out, in one write; its frames read
                # in pieces, each piece's frames encoded on the pool while the next piece is read
                futures: list[Future[bytes]] = []
                for _, piece in self._blocks(src, k, hasher, timing, self._pieces(src, a, b)):
                    t0 = time.perf_counter()
                    futures.extend(pool.submit(encode, frame) for frame in little(piece))
                    timing["encode"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                key = f"{ARRAY}/{arr.metadata.encode_chunk_key((*spot[0], 0, 0))}"
                if queued is not None:
                    await put(*queued)
                queued = (key, spot[1], futures)
                timing["encode"] += time.perf_counter() - t0  # encode and write of a whole shard
            if queued is not None:
                t0 = time.perf_counter()
                await put(*queued)
                timing["encode"] += time.perf_counter() - t0
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def meta(self, src: FrameSource) -> dict[str, Any]:
        out = super().meta(src)
        if src.format in ZARR_FLIP_FORMATS:
            out["rows"] = ROWS_FLIPPED
        if src.scan:
            out["scan"] = list(src.scan)
        return out

    def group_attrs(self, src: FrameSource) -> dict[str, Any]:
        """NGFF 0.5 image metadata (strict: multiscales name, type and metadata) with the physical
        sizes the source states, in the unit it states them in; where a size is unknown, the scale
        is 1 and the axis has no unit."""
        axes = _axes(src)
        return {
            "ome": {
                "version": "0.5",
                "multiscales": [
                    {
                        "name": "frames",
                        "type": "none",
                        "metadata": {"description": "one resolution level: the source's pixels, not downsampled"},
                        "axes": axes,
                        "datasets": [
                            {
                                "path": ARRAY,
                                "coordinateTransformations": [
                                    {"type": "scale", "scale": [float(a.pop("_scale")) for a in axes]}
                                ],
                            }
                        ],
                    }
                ],
            },
            "acqd": {**self.meta(src), "header": lean(src.header) if _header_is_big(src) else src.header},
        }

    def _open_read(self, tier: TierPort, dest: str) -> tuple[Any, dict[str, Any], bytes]:
        import zarr

        try:
            group: Any = zarr.open_group(store=tier.zarr_store(tier.path(dest)), mode="r")
            arr = group[ARRAY]
            meta: dict[str, Any] = dict(group.attrs["acqd"])
            if HEADER in group:  # the whole header (the attributes hold a lean one)
                meta["header"] = json.loads(bytes(np.asarray(group[HEADER][:]).tobytes()))
            blob = bytes(np.asarray(group[RESTORE][:]).tobytes()) if RESTORE in group else b""
        except (KeyError, FileNotFoundError, ValueError) as exc:
            raise VerifyError(f"{tier.url(dest)}: not a readable acqd Zarr: {exc}") from None
        return arr, meta, blob

    def _frames(self, arr: Any, meta: dict[str, Any]) -> Iterator[np.ndarray]:
        """The stored frames in the source's order and orientation, a shard's worth at a time."""
        flipped = meta.get("rows") == ROWS_FLIPPED
        ny, nx = arr.shape[-2:]
        if arr.ndim == 2:  # a 2-D image
            blocks: Iterator[np.ndarray] = iter([np.asarray(arr[:])[None]])
        else:
            per = int(np.prod(arr.shape[1:-2], dtype=np.int64))  # frames per index of the first axis
            k = max(1, self.shard_bytes // max(1, ny * nx * arr.dtype.itemsize * per))
            blocks = (np.asarray(arr[i : i + k]).reshape(-1, ny, nx) for i in range(0, arr.shape[0], k))
        for block in blocks:
            for frame in block:
                yield frame[::-1] if flipped else frame

    def _stored_frames(self, tier: TierPort, dest: str, arr: Any, meta: dict[str, Any]) -> Iterator[np.ndarray]:
        """The stored frames as `_frames` gives them, each shard read whole and decoded by its index on
        `threads` threads (acqd.layouts.framepool) where the array is laid out as acqd writes it."""

        def read(key: str) -> bytes | None:
            rel = f"{dest}/{ARRAY}/{key}"
            try:
                f = tier.open_read(rel)
            except AcqdError:
                if tier.size(rel) is None:
                    return None  # not stored: zarr reads the fill value
                raise
            try:
                return f.read()
            finally:
                f.close()

        frames = zarr_frames(arr, read, self.threads)
        if frames is None:
            return self._frames(arr, meta)
        if meta.get("rows") == ROWS_FLIPPED:
            return (frame[::-1] for frame in frames)
        return frames

    def verify(self, tier: TierPort, dest: str, expected: WriteResult) -> None:
        arr, meta, blob = self._open_read(tier, dest)
        h = Hasher()
        h.update(blob)
        with _naming(tier, dest):
            for frame in self._stored_frames(tier, dest, arr, meta):
                hash_canonical(h, frame)
        if h.hexdigest() != expected.source_checksum:
            raise VerifyError(f"{tier.url(dest)}: pixel checksum {h.hexdigest()} != source {expected.source_checksum}")
        _same_metadata(self, tier, dest, expected, "its zarr.json documents (scale, units, axes, attributes)")

    def meta_checksum(self, tier: TierPort, dest: str) -> str:
        """Every zarr.json of the store (the group's, with OME-NGFF's scale and units and acqd's own
        attributes; each array's, with its shape, dtype and codecs), by its path in the store."""
        h = Hasher()
        top = len(dest.rstrip("/")) + 1
        for rel in sorted(p for p in tier.find(dest) if p.rpartition("/")[2] == "zarr.json" and zarr_own(p[top:])):
            with tier.open_read(rel) as f:
                h.update(rel[top:].encode() + b"\0" + f.read() + b"\0")
        return h.hexdigest()

    def restore(self, tier: TierPort, dest: str, out: BinaryIO) -> str:
        arr, meta, blob = self._open_read(tier, dest)
        h = Hasher()
        note = ""
        if meta["format"] == "tiff":
            note = self._restore_tiff(meta, self._frames(arr, meta), out, h, blob)
        else:
            self._restore_bytes(meta, blob, self._frames(arr, meta), out, h)
        return Restored(h.hexdigest(), note)


def _same_metadata(layout: Any, tier: TierPort, dest: str, expected: WriteResult, what: str) -> None:
    """The copy's metadata as it was written (`expected.meta_checksum`; None: recorded by an acqd before
    it was kept, not compared): a changed pixel size or unit passes a pixel checksum."""
    if expected.meta_checksum is None:
        return
    got = layout.meta_checksum(tier, dest)
    if got != expected.meta_checksum:
        raise VerifyError(
            f"{tier.url(dest)}: {what} changed since it was written (metadata checksum {got}, "
            f"written {expected.meta_checksum})"
        )


@contextmanager
def _naming(tier: TierPort, dest: str) -> Iterator[None]:
    """A verification failure names the stored object (an operator acts on it)."""
    try:
        yield
    except VerifyError as exc:
        url = tier.url(dest)
        if url in str(exc):
            raise
        raise VerifyError(f"{url}: {exc}") from None


class TiffLayout(FrameLayout):
    """Compressed TIFF (deflate, LZW or zstd) that RELION, cryoSPARC and MotionCor read; the source
    header (e.g. the MRC header with its FEI extended header) rides in the first ImageDescription."""

    name = "tiff"
    suffix = ".tif"

    def _write(
        self,
        src: FrameSource,
        hasher: Hasher,
        timing: dict[str, float],
        tier: TierPort,
        dest: str,
        source: Any,
        size: int,
    ) -> int:
        compression, level = self.codec.tiff_compression()
        scheme = TIFF_SCHEMES[compression]
        meta = self.meta(src)
        if src.restore:  # header bytes (an FEI extended header: mostly zeros) compressed, not inflated by base64
            meta["restore_zlib_b64"] = base64.b64encode(zlib.compress(src.restore, 6)).decode()
        flip = src.format in FLIP_FORMATS
        if flip:
            meta["rows"] = ROWS_FLIPPED
        description = DESC_PREFIX + json.dumps(meta, separators=(",", ":"))
        k = self.frames_per_block(src)
        bigtiff = src.shape[0] * src.frame_bytes > 2**31
        frame_shape = (src.shape[1], src.shape[2])
        rps = default_rows_per_strip(frame_shape, src.dtype.itemsize, scheme)
        base = image_tags(frame_shape, src.dtype, compression=scheme, rows_per_strip=rps)
        base += resolution_tags(src.pixel_size_um)
        first_tags = [*base, make_tag(270, 2, description)]
        # a local tier: written in place into its hidden temporary; elsewhere through a spool file
        # (TIFF writers seek back), which the pipeline counts against the in-flight budget
        direct = tier.atomic_file(dest)
        spool: Any = (
            direct.file if direct is not None else tempfile.NamedTemporaryFile(prefix="acqd-", suffix=".tif")  # noqa: SIM115 (closed below)
        )
        try:
            with TiffPageWriter(spool, bigtiff=bigtiff, workers=self.threads) as tw:
                first = True
                for _, block in self._blocks(src, k, hasher, timing, self._pieces(src, 0, src.shape[0])):
                    t0 = time.perf_counter()
                    for frame in block:
                        # IMOD/SerialEM/MotionCor2/RELION: TIFF rows run the other way from MRC rows
                        tw.write_page(
                            frame[::-1] if flip else frame,
                            first_tags if first else base,
                            compression=scheme,
                            rows_per_strip=rps,
                            level=level,
                            wait=False,  # encoded on the pool while the next frames are read and hashed
                        )
                        first = False
                    timing["encode"] += time.perf_counter() - t0
            spool.flush()
            crash_point("after_encode")
            source.check()
            stored = spool.seek(0, 2)
            if stored > size and self.never_larger:  # never stored larger than the source: byte-exact instead
                raise self._larger(stored, size)
            if direct is not None:
                return int(direct.commit())
            spool.seek(0)

            def chunks() -> Iterator[bytes]:
                while block := spool.read(8 << 20):
                    yield block

            return tier.write_atomic(dest, chunks())
        finally:
            if direct is not None:
                direct.abort()
            else:
                spool.close()

    def _read(self, tier: TierPort, dest: str) -> tuple[Any, dict[str, Any], BinaryIO]:
        import tifffile

        f = tier.open_read(dest)
        try:
            tif = tifffile.TiffFile(f, name=dest.rpartition("/")[2])
            desc = tif.pages.first.description
            if not desc.startswith(DESC_PREFIX):
                raise ValueError("no acqd description on the first page")
            meta = json.loads(desc[len(DESC_PREFIX) :])
        except Exception as exc:
            f.close()
            raise VerifyError(f"{tier.url(dest)}: not a readable acqd TIFF: {exc}") from None
        return tif, meta, f

    def verify(self, tier: TierPort, dest: str, expected: WriteResult) -> None:
        tif, meta, f = self._read(tier, dest)
        h = Hasher()
        h.update(_restore_blob(meta))
        flipped = meta.get("rows") == ROWS_FLIPPED
        try:
            with _naming(tier, dest):  # every strip read back and decoded on the pool, hashed in order
                for frame in tiff_frames(tif, f, self.threads):
                    hash_canonical(h, frame[::-1] if flipped else frame)
        finally:
            tif.close()
            f.close()
        if h.hexdigest() != expected.source_checksum:
            raise VerifyError(f"{tier.url(dest)}: pixel checksum {h.hexdigest()} != source {expected.source_checksum}")
        _same_metadata(self, tier, dest, expected, "its header, IFDs and tag values (resolution, description)")

    def meta_checksum(self, tier: TierPort, dest: str) -> str:
        """Every byte of the TIFF but its pixel data: header, IFDs and tag values (the resolution and
        unit a viewer scales by, acqd's description with the source's header)."""
        tif, _meta, f = self._read(tier, dest)
        try:
            spans = sorted(
                (int(o), int(o) + int(n))
                for page in tif.pages
                for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)
                if n
            )
            size = f.seek(0, 2)
            h = Hasher()
            at = 0
            for start, stop in [*spans, (size, size)]:
                if start > at:
                    f.seek(at)
                    h.update(f.read(start - at))
                at = max(at, stop)
            return h.hexdigest()
        finally:
            tif.close()
            f.close()

    def restore(self, tier: TierPort, dest: str, out: BinaryIO) -> str:
        tif, meta, f = self._read(tier, dest)
        h = Hasher()
        note = ""
        try:
            frames = _source_rows(tif, meta)
            if meta["format"] == "tiff":
                note = self._restore_tiff(meta, frames, out, h, _restore_blob(meta))
            else:
                self._restore_bytes(meta, _restore_blob(meta), frames, out, h)
        finally:
            tif.close()
            f.close()
        return Restored(h.hexdigest(), note)
