"""acquire-zarr, the C++ streaming Zarr writer acquisition software uses, on the same frames.

    python -m bench.azarr --codec blosc-lz4-1 --threads 2 SRC_DIR DEST_DIR

Each TIFF stack below SRC_DIR is read plane by plane and appended to its own OME-Zarr store under
DEST_DIR with the same chunking as acqd's zarr layout (one chunk per frame, the whole stack one
shard), the same codec and the same number of threads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import acquire_zarr as aqz
import numpy as np
import tifffile

from acqd.sizing import parse_codec
from bench.bare import frames_of

DTYPES = {"uint8": aqz.DataType.UINT8, "uint16": aqz.DataType.UINT16}


def settings(out: Path, n: int, h: int, w: int, dtype: str, codec: str, threads: int) -> aqz.StreamSettings:
    c = parse_codec(codec)
    if c.id == "blosc":
        compression = aqz.CompressionSettings(
            compressor=aqz.Compressor.BLOSC1,
            codec={"lz4": aqz.CompressionCodec.BLOSC_LZ4, "zstd": aqz.CompressionCodec.BLOSC_ZSTD}[c.cname],
            level=c.clevel,
            shuffle={"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[c.shuffle],
        )
    else:
        raise SystemExit(f"acquire-zarr is compared with blosc codecs only, not {codec}")
    dims = [
        aqz.Dimension(name="z", kind=aqz.DimensionType.SPACE, array_size_px=n, chunk_size_px=1, shard_size_chunks=n),
        aqz.Dimension(name="y", kind=aqz.DimensionType.SPACE, array_size_px=h, chunk_size_px=h, shard_size_chunks=1),
        aqz.Dimension(name="x", kind=aqz.DimensionType.SPACE, array_size_px=w, chunk_size_px=w, shard_size_chunks=1),
    ]
    array = aqz.ArraySettings(dimensions=dims, data_type=DTYPES[dtype], compression=compression)
    return aqz.StreamSettings(store_path=str(out), arrays=[array], max_threads=threads, overwrite=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.azarr", description=__doc__)
    ap.add_argument("--codec", default="blosc-lz4-1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    for f in sorted(p for p in args.src.rglob("*") if p.suffix.lower() in (".tif", ".tiff", ".mrc")):
        out = args.dest / (str(f.relative_to(args.src)) + ".zarr")
        out.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix.lower() == ".mrc":  # a movie: frames straight from the file, as a camera would hand them over
            frames = frames_of(f)
            n, h, w = frames.shape
            stream = aqz.ZarrStream(settings(out, n, h, w, str(frames.dtype), args.codec, args.threads))
            for frame in frames:
                stream.append(np.ascontiguousarray(frame))
            stream.close()
            continue
        with tifffile.TiffFile(f) as tif:
            pages = tif.pages
            first = pages[0].asarray()
            stream = aqz.ZarrStream(
                settings(out, len(pages), first.shape[0], first.shape[1], str(first.dtype), args.codec, args.threads)
            )
            stream.append(first)
            for page in pages[1:]:
                stream.append(page.asarray())
            stream.close()


if __name__ == "__main__":
    main()
