"""The bare pipeline: what acqd does to a file, without the daemon around it.

    python -m bench.bare --codec lzw --threads 2 SRC_DIR DEST_DIR

For each file below SRC_DIR: read its frames (MRC or TIFF), hash them, encode them with the codec on
`threads` threads, write the encoded frames to one file under DEST_DIR and fsync it, read it back,
decode, hash, and compare. No journal, no watcher, no temporaries, no metadata: the floor that
acqd's end-to-end figure is held against.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from acqd.sizing import coders, parse_codec


def frames_of(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".mrc", ".mrcs"):
        head = path.read_bytes()[:1024]
        nx, ny, nz, mode = struct.unpack_from("<4i", head, 0)
        ext = struct.unpack_from("<i", head, 92)[0]
        dtype = {0: np.uint8, 1: np.int16, 2: np.float32, 6: np.uint16}[mode]
        return np.memmap(path, dtype=dtype, mode="r", offset=1024 + ext, shape=(nz, ny, nx))
    import tifffile

    arr = tifffile.imread(path)
    return arr.reshape(-1, *arr.shape[-2:])


def _deflate(level: int, nbytes: int) -> tuple[Any, Any]:
    """Deflate as acqd's TIFF layout runs it (ISA-L or libdeflate; libdeflate decodes, as tifffile does)."""
    import imagecodecs

    from acqd.codec import deflate_encoder

    fast = deflate_encoder(level)  # ISA-L at levels 1-3, libdeflate above
    encode = fast if fast is not None else (lambda a: bytes(imagecodecs.deflate_encode(a, level=level)))
    return (lambda a: encode(np.ascontiguousarray(a))), (
        lambda b: np.frombuffer(imagecodecs.deflate_decode(b, out=nbytes), dtype=np.uint8)
    )


def ship(src: Path, dest: Path, enc: Any, dec: Any, pool: ThreadPoolExecutor) -> tuple[int, int]:
    frames = frames_of(src)
    h = xxhash.xxh3_128()
    for f in frames:
        h.update(np.ascontiguousarray(f).data)
    encoded = list(pool.map(enc, [np.ascontiguousarray(f) for f in frames]))
    with open(dest, "wb") as out:
        for e in encoded:
            out.write(struct.pack("<Q", len(e)))
            out.write(e)
        out.flush()
        os.fsync(out.fileno())
    blobs = []
    with open(dest, "rb") as back:
        while head := back.read(8):
            (n,) = struct.unpack("<Q", head)
            blobs.append(back.read(n))
    h2 = xxhash.xxh3_128()
    for d in pool.map(dec, blobs):
        h2.update(np.ascontiguousarray(d).data)
    if h2.digest() != h.digest():
        raise SystemExit(f"{src}: read-back does not match")
    return frames.nbytes, dest.stat().st_size


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    ap.add_argument("--codec", required=True, help="e.g. lzw, blosc-lz4-1, zstd-1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    codec = parse_codec(args.codec)
    files = sorted(p for p in args.src.rglob("*") if p.is_file() and p.suffix.lower() in (".mrc", ".tif", ".tiff"))
    total = stored = 0
    with ThreadPoolExecutor(args.threads) as pool:
        cache: dict[tuple[str, tuple[int, ...]], Any] = {}
        for f in files:
            frames = frames_of(f)
            key = (str(frames.dtype), frames.shape[1:])
            if key not in cache:
                cache[key] = (
                    _deflate(codec.level, frames[0].nbytes)
                    if codec.id == "deflate"
                    else coders(codec, frames.dtype, frames.shape[1:])
                )
            enc, dec = cache[key]
            out = args.dest / f.relative_to(args.src)
            out.parent.mkdir(parents=True, exist_ok=True)
            n, s = ship(f, out, enc, dec, pool)
            total += n
            stored += s
    print(f"{len(files)} files, {total} bytes of frames, {stored} stored", file=sys.stderr)


if __name__ == "__main__":
    main()
