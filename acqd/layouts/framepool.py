"""Every core on one file: the frames of a stored copy decoded on a pool of threads, in order.

A camera writes one movie at a time, so verification (read back, decode, hash, compare) must use all
cores on one file. The caller reads each frame's compressed parts (TIFF strips, Zarr chunks) in
order, the pool decodes them straight into reused frame buffers (imagecodecs and Blosc release the
GIL), and the frames come back in order for the caller to hash. Each part must decode to exactly
the bytes its place in the frame holds: a short or undecodable part is a `VerifyError`, never a
frame with stale bytes from a reused buffer.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from acqd.errors import VerifyError
from acqd.layouts.tiffwrite import PAGES_AHEAD
from acqd.lazy import lazy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


# a part's decoder: (its stored bytes, the frame's bytes it fills) -> how many bytes it decoded
Decode = Callable[[Any, memoryview], int]


@dataclass(frozen=True)
class Part:
    data: bytes | memoryview  # as stored
    start: int  # the byte range of the frame it decodes to
    stop: int
    decode: Decode
    where: str  # for errors: "page 3, strip 7"


@dataclass(frozen=True)
class FramePlan:
    """One frame: its shape and dtype (in the stored byte order) and its parts, which cover it."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    parts: list[Part]


def _run_all(parts: list[Part], flat: memoryview) -> None:
    for p in parts:
        _run(p, flat[p.start : p.stop])


def _run(part: Part, out: memoryview) -> None:
    try:
        n = part.decode(part.data, out)
    except Exception as exc:  # a codec's own error type: the stored part is corrupt
        raise VerifyError(f"{part.where} does not decode: {type(exc).__name__}: {exc}") from None
    if n != len(out):
        raise VerifyError(f"{part.where} decodes to {n} bytes, not the {len(out)} it must hold")


def decoded(plans: Iterable[FramePlan | np.ndarray], threads: int) -> Iterator[np.ndarray]:
    """The frames, in order: plans decoded on `threads` threads (up to threads + PAGES_AHEAD frames in
    flight), arrays (frames decoded some other way) passed through in their place. A yielded frame
    is valid until the next one is asked for (its buffer is then reused)."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix="acqd-verify") if threads > 1 else None
    ahead = threads + PAGES_AHEAD
    free: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
    queue: deque[tuple[np.ndarray, list[Future[None]], bool]] = deque()

    def take() -> Iterator[np.ndarray]:
        buf, futures, pooled = queue.popleft()
        for f in futures:
            f.result()
        yield buf
        if pooled:  # the caller is done with it
            free.setdefault((buf.shape, buf.dtype.str), []).append(buf)

    try:
        for plan in plans:
            if isinstance(plan, np.ndarray):
                queue.append((plan, [], False))
            else:
                key = (plan.shape, plan.dtype.str)
                spare = free.get(key)
                buf = spare.pop() if spare else np.empty(plan.shape, plan.dtype)
                flat = buf.reshape(-1).view(np.uint8).data
                if sum(p.stop - p.start for p in plan.parts) != flat.nbytes:
                    raise VerifyError(f"{plan.parts[0].where if plan.parts else 'a frame'}: its parts do not cover it")
                futures: list[Future[None]] = []
                if pool is None:
                    _run_all(plan.parts, flat)
                else:  # one task per thread and frame (runs of consecutive parts): fewer futures than parts
                    n = len(plan.parts)
                    cuts = [n * i // threads for i in range(threads + 1)]
                    for a, b in itertools.pairwise(cuts):
                        if b > a:
                            futures.append(pool.submit(_run_all, plan.parts[a:b], flat))
                queue.append((buf, futures, True))
            while len(queue) > ahead:
                yield from take()
        while queue:
            yield from take()
    finally:
        for _, futures, _ in queue:
            for f in futures:
                f.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# --- TIFF: the strips of each page -----------------------------------------------------------

_TIFF_DECODERS = (5, 8, 32946, 50000)  # LZW, deflate (both codes), zstd: what acqd writes


def _copy(data: bytes, out: memoryview) -> int:
    """An uncompressed strip (bytes past the frame's end, padding some writers add, are ignored, as
    libtiff and tifffile do)."""
    n = min(len(data), len(out))
    out[:n] = data[:n]
    return n


def _tiff_decoder(compression: int) -> Decode:
    import tifffile

    fn = tifffile.TIFF.DECOMPRESSORS[compression]

    def decode(data: bytes, out: memoryview) -> int:
        return len(memoryview(fn(data, out=out)).cast("B"))

    return decode


def tiff_plan(page: Any, f: BinaryIO, byteorder: str, index: int) -> FramePlan | None:
    """A page's strips, read from `f`, to decode on the pool; None where the page is not a plain
    strip layout acqd writes (tiles, a predictor, several samples, an unknown codec): the caller
    decodes such a page with tifffile instead."""
    comp, pred = int(page.compression), int(page.predictor)
    dtype = np.dtype(page.dtype).newbyteorder(byteorder)
    ny, nx = int(page.imagelength), int(page.imagewidth)
    if (
        (comp != 1 and comp not in _TIFF_DECODERS)
        or pred != 1
        or page.is_tiled
        or int(page.samplesperpixel) != 1
        or int(page.fillorder) != 1
        or int(page.bitspersample) != dtype.itemsize * 8
        or tuple(page.shape) != (ny, nx)
    ):
        return None
    rps = max(1, min(int(page.rowsperstrip or ny), ny))
    offsets, counts = page.dataoffsets, page.databytecounts
    if len(offsets) != -(-ny // rps) or len(counts) != len(offsets):
        return None
    decode = _copy if comp == 1 else _tiff_decoder(comp)
    row = nx * dtype.itemsize
    parts = []
    for i, (data, n) in enumerate(zip(_strips(f, offsets, counts), counts, strict=True)):
        where = f"page {index}, strip {i}"
        if len(data) != n:
            raise VerifyError(f"{where}: {len(data)} of its {n} stored bytes could be read")
        start = i * rps * row
        parts.append(Part(data, start, min(ny * row, start + rps * row), decode, where))
    return FramePlan((ny, nx), dtype, parts)


def _strips(f: BinaryIO, offsets: Any, counts: Any) -> list[bytes | memoryview]:
    """The stored bytes of a page's strips: in one read when they lie one after another (as acqd
    writes them, a pad byte apart at most), else strip by strip. A strip the
    file ends inside comes back short (the caller says which)."""
    offs, lens = [int(o) for o in offsets], [int(c) for c in counts]
    first, end = (offs[0], offs[-1] + lens[-1]) if offs else (0, 0)
    contiguous = all(a <= b <= a + n + 1 for a, n, b in zip(offs, lens, offs[1:], strict=False))
    if not contiguous or end - first > sum(lens) + len(lens):
        out: list[bytes | memoryview] = []
        for at, n in zip(offs, lens, strict=True):
            f.seek(at)
            out.append(f.read(n))
        return out
    buf = np.empty(end - first, np.uint8)
    f.seek(first)
    view: memoryview = buf.data
    got = 0
    while got < len(view):
        k = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not k:
            break
        got += k
    return [
        view[a - first : min(a - first + n, got)] if a - first < got else b"" for a, n in zip(offs, lens, strict=True)
    ]


def tiff_frames(tif: Any, f: BinaryIO, threads: int) -> Iterator[np.ndarray]:
    """Every page of a TIFF as a 2-D frame (stored byte order and row order), decoded on the pool."""

    def plans() -> Iterator[FramePlan | np.ndarray]:
        for i, page in enumerate(tif.pages):
            plan = tiff_plan(page, f, tif.byteorder, i)
            yield plan if plan is not None else page.asarray()

    return decoded(plans(), threads)


# --- Zarr: the chunks of each shard, by the shard's index ----------------------------------------

_NO_CHUNK = 2**64 - 1


def _blosc(data: Any, out: memoryview) -> int:
    """A Blosc chunk (as zarr's BloscCodec writes it through numcodecs). Its header says how many bytes
    it holds (bytes 4-8) and how long it is (12-16): checked before decoding into a reused buffer."""
    from numcodecs import blosc

    head = bytes(data[:16])
    if len(head) < 16:
        raise ValueError(f"{len(head)} bytes: shorter than a Blosc header")
    nbytes, cbytes = int.from_bytes(head[4:8], "little"), int.from_bytes(head[12:16], "little")
    if cbytes != len(data):
        raise ValueError(f"the Blosc header says {cbytes} bytes, the chunk has {len(data)}")
    if nbytes != len(out):  # decoding would leave the rest of a reused buffer as it was
        return nbytes
    blosc.decompress(data, out)
    return nbytes


def _zstd(data: bytes, out: memoryview) -> int:
    import imagecodecs

    return len(memoryview(imagecodecs.zstd_decode(data, out=out)).cast("B"))


def _zarr_decoder(codecs: tuple[Any, ...], itemsize: int) -> Decode | None:
    """The decoder of a sharded array's inner chunks: bytes (little-endian, or one-byte items), then
    Blosc, Zstd or nothing; None for any other chain (the caller reads through zarr then)."""
    from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if itemsize > 1 and endian != "little":
        return None
    rest = codecs[1:]
    if not rest:
        return _copy_exact
    if len(rest) == 1 and isinstance(rest[0], BloscCodec):
        return _blosc
    if len(rest) == 1 and isinstance(rest[0], ZstdCodec):
        return _zstd
    return None


def _copy_exact(data: bytes, out: memoryview) -> int:
    if len(data) == len(out):
        out[:] = data
    return len(data)


def shard_layout(arr: Any) -> tuple[Decode, Any] | None:
    """How to read `arr` shard by shard: (the chunk decoder, the sharding codec), when it is what acqd
    writes (Zarr v3, one sharding codec, a chunk per frame, the index checksummed); else None."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec

    meta = arr.metadata
    codecs: tuple[Any, ...] = tuple(getattr(meta, "codecs", ()))
    if getattr(meta, "zarr_format", 2) != 3 or len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sc = codecs[0]
    shape = tuple(arr.shape)
    if len(shape) < 3 or tuple(sc.chunk_shape) != (1,) * (len(shape) - 2) + shape[-2:]:
        return None
    ic = sc.index_codecs
    if (
        len(ic) != 2
        or not isinstance(ic[0], BytesCodec)
        or getattr(ic[0].endian, "value", ic[0].endian) != "little"
        or not isinstance(ic[1], Crc32cCodec)
    ):
        return None
    decode = _zarr_decoder(tuple(sc.codecs), np.dtype(arr.dtype).itemsize)
    return (decode, sc) if decode is not None else None


def _shard_index(blob: bytes, per_shard: tuple[int, ...], at_start: bool, where: str) -> np.ndarray:
    import google_crc32c

    size = 16 * int(np.prod(per_shard)) + 4
    if len(blob) < size:
        raise VerifyError(f"{where}: {len(blob)} bytes, shorter than its index ({size})")
    raw = blob[:size] if at_start else blob[-size:]
    crc = int(google_crc32c.value(raw[:-4]))
    if crc.to_bytes(4, "little") != raw[-4:]:
        raise VerifyError(f"{where}: the shard index's checksum does not match")
    return np.frombuffer(raw[:-4], dtype="<u8").reshape(*per_shard, 2)


def zarr_frames(arr: Any, read: Callable[[str], bytes | None], threads: int) -> Iterator[np.ndarray] | None:
    """Every frame of a sharded acqd array in C order of its leading axes, each shard read whole and
    its chunks found by the shard's index (whose checksum is checked) and decoded on the pool; None
    when the array is not laid out so (the caller reads through zarr's array API). `read(key)` gives
    a shard's stored bytes (None: not stored, the fill value, as zarr reads it)."""
    how = shard_layout(arr)
    if how is None:
        return None
    decode, sc = how
    shape = tuple(int(x) for x in arr.shape)
    lead = shape[:-2]
    ny, nx = shape[-2:]
    shard = tuple(int(x) for x in arr.shards)[:-2]
    per_shard = tuple(s // c for s, c in zip(arr.shards, sc.chunk_shape, strict=True))
    grid = tuple(-(-n // s) for n, s in zip(lead, shard, strict=True))
    # the frames in the order the shards hold them must be the frames in C order: a shard spans whole
    # rows of the faster axes (what acqd writes); anything else is read through zarr
    order = [
        tuple(g * s + i for g, s, i in zip(sg, shard, inner, strict=True))
        for sg in np.ndindex(*grid)
        for inner in np.ndindex(*per_shard[:-2])
        if all(g * s + i < n for g, s, i, n in zip(sg, shard, inner, lead, strict=True))
    ]
    if order != list(np.ndindex(*lead)):
        return None
    dtype = np.dtype(arr.dtype).newbyteorder("<")
    fill = np.full((ny, nx), arr.fill_value, dtype=dtype)
    at_start = getattr(sc.index_location, "value", sc.index_location) == "start"
    frame_bytes = ny * nx * dtype.itemsize

    def plans() -> Iterator[FramePlan | np.ndarray]:
        for sg in np.ndindex(*grid):
            key = arr.metadata.encode_chunk_key((*sg, 0, 0))
            blob = read(key)
            index = None if blob is None else _shard_index(blob, per_shard, at_start, f"shard {key}")
            for inner in np.ndindex(*per_shard[:-2]):
                if not all(g * s + i < n for g, s, i, n in zip(sg, shard, inner, lead, strict=True)):
                    continue
                if index is None or blob is None:
                    yield fill
                    continue
                at, n = (int(v) for v in index[(*inner, 0, 0)])
                if at == _NO_CHUNK and n == _NO_CHUNK:
                    yield fill
                    continue
                where = f"shard {key}, chunk {inner}"
                if at + n > len(blob):
                    raise VerifyError(f"{where}: its bytes {at}..{at + n} lie past the shard's end ({len(blob)})")
                part = Part(memoryview(blob)[at : at + n], 0, frame_bytes, decode, where)
                yield FramePlan((ny, nx), dtype, [part])

    return decoded(plans(), threads)


# --- Zarr: whole shards written directly -------------------------------------------------------


def chunk_encoder(arr: Any) -> Callable[[np.ndarray], bytes] | None:
    """The encoder of one frame (a chunk) of a sharded acqd array, the very numcodecs codec and
    configuration zarr's own codec runs (so a shard written here is byte for byte what zarr would
    write for its chunks); None for any other layout (the caller writes through zarr then)."""
    how = shard_layout(arr)
    if how is None or getattr(how[1].index_location, "value", how[1].index_location) != "end":
        return None
    import numcodecs
    from zarr.codecs import BloscCodec, ZstdCodec

    inner = tuple(how[1].codecs)[1:]
    dtype = np.dtype(arr.dtype).newbyteorder("<")
    codec: Any = None
    if inner and isinstance(inner[0], BloscCodec):
        conf: dict[str, Any] = dict(inner[0].to_dict()["configuration"])  # type: ignore[arg-type]
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[str(conf["shuffle"])]
        codec = numcodecs.Blosc.from_config(
            {
                "cname": conf["cname"],
                "clevel": conf["clevel"],
                "shuffle": shuffle,
                "blocksize": conf.get("blocksize", 0),
                "typesize": conf.get("typesize"),
            }
        )
    elif inner and isinstance(inner[0], ZstdCodec):
        conf = dict(inner[0].to_dict()["configuration"])  # type: ignore[arg-type]
        codec = numcodecs.Zstd(level=int(conf["level"]), checksum=bool(conf.get("checksum", False)))

    def encode(frame: np.ndarray) -> bytes:
        raw = np.ascontiguousarray(frame, dtype=dtype).reshape(-1).view(np.uint8)
        return raw.tobytes() if codec is None else bytes(codec.encode(raw))

    return encode


def shard_of(arr: Any, first: int, count: int) -> tuple[tuple[int, ...], list[int | None]] | None:
    """The shard that frames [first, first + count) (in C order of the leading axes) fill, and each of
    its chunk places in C order: the frame's number within the block, or None (past the array's end).
    None when the frames are not exactly one shard's (the caller writes through zarr then)."""
    shape = tuple(int(x) for x in arr.shape)
    lead = shape[:-2]
    shard = tuple(int(x) for x in arr.shards)[:-2]
    at = tuple(int(i) for i in np.unravel_index(first, lead))
    if any(a % s for a, s in zip(at, shard, strict=True)):
        return None
    coords = tuple(a // s for a, s in zip(at, shard, strict=True))
    places: list[int | None] = []
    n = 0
    for inner in np.ndindex(*shard):
        pos = tuple(c * s + i for c, s, i in zip(coords, shard, inner, strict=True))
        if all(p < m for p, m in zip(pos, lead, strict=True)):
            if int(np.ravel_multi_index(pos, lead)) != first + n:
                return None
            places.append(n)
            n += 1
        else:
            places.append(None)
    return (coords, places) if n == count else None


def shard_parts(chunks: list[bytes | None]) -> list[bytes]:
    """A shard as zarr's sharding codec stores it with the index at the end, in the pieces to write
    one after the other (no joined copy of a whole shard: it would be fresh memory the kernel zeroes
    and a cold source for the write): the chunks, then for each chunk place in C order its
    (offset, length) as little-endian uint64 (2^64-1 twice: no chunk), then the CRC32C of that index."""
    import google_crc32c

    index = np.full((len(chunks), 2), _NO_CHUNK, dtype="<u8")
    at = 0
    for i, c in enumerate(chunks):
        if c is not None:
            index[i] = (at, len(c))
            at += len(c)
    raw = index.tobytes()
    crc = int(google_crc32c.value(raw)).to_bytes(4, "little")
    return [*(c for c in chunks if c is not None), raw + crc]


def shard_bytes(chunks: list[bytes | None]) -> bytes:
    """The shard `shard_parts` gives, in one piece."""
    return b"".join(shard_parts(chunks))
