"""`acqd bench`: size an acquisition PC. Sweeps candidate lossless codecs over a detector's simulated
frames or the user's own files and reports, per codec and thread count, the ratio, encode and
decode rates, the acquisition rate a network link then sustains (`min(encode, ratio x link)`), and
how many cores the detector's peak rate needs.

Encoding runs in Python threads over whole frames (numcodecs and imagecodecs release the GIL);
Blosc's own thread pool is switched off so that "threads" means the same for every codec.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acqd.codec import Choice, FrameCodec, choose_codec, codec_label, parse_label
from acqd.readers.base import Expect

#: bytes per second on the wire for the usual link names (payload, before protocol overhead)
LINKS = {"1gbe": 0.125e9, "10gbe": 1.25e9, "25gbe": 3.125e9, "40gbe": 5e9, "100gbe": 12.5e9}

DEFAULT_CODECS = (
    "none",
    "blosc-lz4-1",
    "blosc-lz4-5",
    "blosc-zstd-1",
    "blosc-zstd-3",
    "zstd-1",
    "zstd-3",
    "deflate-1",
    "lzw",
)


def parse_link(text: str) -> float:
    """Bytes per second from '10GbE', '25gbe', '800MB/s', '1.2GB/s' or '10Gbit/s' (as the
    configuration's rates: '10Gb/s' is refused as ambiguous, bits or bytes)."""
    from acqd.pace import parse_rate

    t = text.strip().lower()
    if t in LINKS:
        return LINKS[t]
    hint = "use 1GbE, 10GbE, 25GbE, 40GbE, 100GbE, or a rate as 800MB/s or 10Gbit/s"
    try:
        rate = parse_rate(text)
    except ValueError as exc:
        if "ambiguous" in str(exc):  # '10Gb/s': which it means is said, not guessed
            raise
        raise ValueError(f"not a link: {text!r} ({hint})") from None
    if rate is None:
        raise ValueError(f"not a link: {text!r} ({hint})")
    return float(rate)


def parse_codec(text: str) -> FrameCodec:
    """'blosc-lz4-1' (shuffle: bitshuffle), 'blosc-zstd-3-shuffle', 'zstd-3', 'deflate-1', 'lzw', 'none'."""
    return parse_label(text)


def coders(
    c: FrameCodec, dtype: np.dtype[Any], shape: tuple[int, ...]
) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    if c.id == "none":
        return (lambda a: a.tobytes()), (lambda b: np.frombuffer(b, dtype=dtype).reshape(shape))
    if c.id == "lzw":
        import imagecodecs

        return (lambda a: bytes(imagecodecs.lzw_encode(a.tobytes()))), (
            lambda b: np.frombuffer(imagecodecs.lzw_decode(b), dtype=dtype).reshape(shape)
        )
    import numcodecs.blosc

    numcodecs.blosc.use_threads = False
    nc = c.numcodecs()
    return (lambda a: bytes(nc.encode(a))), (lambda b: np.frombuffer(nc.decode(b), dtype=dtype).reshape(shape))


@dataclass(frozen=True)
class Result:
    codec: str
    threads: int
    ratio: float
    encode_gb_s: float
    decode_gb_s: float
    link_gb_s: float  # ratio x link: what the link carries in source bytes
    effective_gb_s: float  # min(encode, ratio x link): what the PC and link together sustain
    cores_for_peak: int | None  # cores this codec needs to encode the detector's peak rate

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(fn: Callable[[Any], Any], items: list[Any], nbytes: int, threads: int, min_seconds: float) -> float:
    """Source bytes per second of `fn` over `items` on `threads` threads (repeated to `min_seconds`)."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items[: max(threads, 1)]))  # warm up
        done, t0 = 0, time.perf_counter()
        while True:
            list(pool.map(fn, items))
            done += nbytes
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                return done / elapsed


def bench(
    frames: np.ndarray,
    codecs: list[FrameCodec],
    threads: list[int],
    link: float,
    peak_rate: float | None = None,
    min_seconds: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """Sweep `codecs` x `threads` over `frames` (n, y, x); every codec is checked to round-trip."""
    items = [np.ascontiguousarray(f) for f in frames]
    nbytes = sum(f.nbytes for f in items)
    out = []
    for c in codecs:
        enc, dec = coders(c, items[0].dtype, items[0].shape)
        encoded = [enc(f) for f in items]
        for f, e in zip(items, encoded, strict=True):
            if not np.array_equal(dec(e), f):
                raise RuntimeError(f"{codec_label(c)} does not round-trip these frames")
        ratio = nbytes / max(1, sum(len(e) for e in encoded))
        per_thread: float | None = None
        for t in threads:
            if progress is not None:
                progress(f"{codec_label(c)} on {t} thread(s)")
            e_rate = _rate(enc, items, nbytes, t, min_seconds)
            d_rate = _rate(dec, encoded, nbytes, t, min_seconds)
            if t == 1 or per_thread is None:
                per_thread = e_rate / t
            cores = math.ceil(peak_rate / per_thread) if peak_rate and per_thread else None
            out.append(
                Result(
                    codec=codec_label(c),
                    threads=t,
                    ratio=round(ratio, 3),
                    encode_gb_s=round(e_rate / 1e9, 3),
                    decode_gb_s=round(d_rate / 1e9, 3),
                    link_gb_s=round(ratio * link / 1e9, 3),
                    effective_gb_s=round(min(e_rate, ratio * link) / 1e9, 3),
                    cores_for_peak=cores,
                )
            )
    return out


def detector_frames(detector: str, n: int = 8, seed: int = 0) -> np.ndarray:
    """`n` frames as the detector's simulator writes them (shape and dtype of the real camera)."""
    from acqd.simulate import FRAME_SHAPES, poisson_frames, scmos_frames, sparse_counts

    if detector not in FRAME_SHAPES:
        raise ValueError(f"no simulated frames for {detector!r} (have: {', '.join(FRAME_SHAPES)})")
    h, w = FRAME_SHAPES[detector]
    rng = np.random.default_rng(seed)
    if detector in ("gatan-k3", "gatan-k2"):
        return poisson_frames(rng, n, h, w, 0.8, "uint8")
    if detector in ("falcon", "direct-electron"):
        return poisson_frames(rng, n, h, w, 0.8, "uint16")
    if detector == "merlin-medipix":
        return sparse_counts(rng, n, h, w).astype("<u2")
    return scmos_frames(rng, n, h, w)


def file_frames(path: Path, max_bytes: int = 1 << 30) -> np.ndarray:
    """Frames from the user's own file (or the first files of a folder) through acqd's readers;
    a file no reader takes is benchmarked as bytes cut into 4 MiB rows."""
    from acqd.readers import open_frames

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"{path}: no files")
    reader = {".mrc": "mrc", ".mrcs": "mrc", ".tif": "tiff", ".tiff": "tiff", ".mib": "mib"}
    stacks: list[np.ndarray] = []
    total = 0
    for f in files:
        kind = reader.get(f.suffix.lower())
        if kind is not None:
            with open(f, "rb") as fh:
                try:
                    src = open_frames(kind, fh, os.fstat(fh.fileno()).st_size, Expect(), {})
                    n = max(1, min(src.shape[0], max_bytes // max(1, src.frame_bytes)))
                    stack = np.asarray(src.read(0, n))
                except Exception:
                    kind = None
        if kind is None:
            raw = np.fromfile(f, dtype=np.uint8, count=max_bytes)
            row = 4 << 20
            n = max(1, raw.size // row)
            stack = raw[: n * row].reshape(n, 1, row) if raw.size >= row else raw.reshape(1, 1, -1)
        if stacks and (stack.shape[1:] != stacks[0].shape[1:] or stack.dtype != stacks[0].dtype):
            continue  # frames of another geometry: the first kind found is what is measured
        stacks.append(stack)
        total += stack.nbytes
        if total >= max_bytes:
            break
    out = np.concatenate(stacks)
    if out.nbytes == 0:
        raise ValueError(f"{path}: no bytes to measure (empty file{'s' if len(files) > 1 else ''})")
    return out


def would_choose(
    frames: np.ndarray, candidates: tuple[FrameCodec, ...], layout: str, budget_ns: float, budget_why: str
) -> Choice:
    """What a frame layout would choose for these frames: the daemon's own sample, measurement and
    decision (acqd.layouts.choose, acqd.codec.choose_codec)."""
    from acqd.layouts.choose import measure, sample
    from acqd.readers.base import FrameSource

    stack = np.ascontiguousarray(frames)
    shape = (stack.shape[0], stack.shape[1], stack.shape[2])
    src = FrameSource("bench", shape, stack.dtype, {}, lambda a, b: stack[a:b])
    return choose_codec(measure(sample(src), candidates, layout), budget_ns, budget_why)
