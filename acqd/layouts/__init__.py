"""Layouts: how data sits at rest. `build_layout` picks one by name."""

from __future__ import annotations

from typing import Any

from acqd.codec import FrameCodec, frame_codec, stream_codec
from acqd.layouts.copy import CopyLayout
from acqd.layouts.frames import Restored, TiffLayout, ZarrLayout, restore_verdict
from acqd.ports import Layout
from acqd.readers import Expect

DEFAULT_CODECS: dict[str, dict[str, Any]] = {
    "zarr": {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "bitshuffle"},
    "tiff": {"id": "deflate", "level": 1},
}


def build_layout(
    name: str,
    compress: str = "none",
    level: int = 3,
    chunk: int = 8 << 20,
    *,
    codec: dict[str, Any] | None = None,
    reader: str = "bytes",
    expect: Expect | None = None,
    options: dict[str, Any] | None = None,
    shard_bytes: int = 64 << 20,
) -> Layout:
    if name == "copy":
        return CopyLayout(stream_codec(compress, level), chunk)
    if name in ("zarr", "tiff"):
        fc: FrameCodec = frame_codec(codec if codec is not None else DEFAULT_CODECS[name])
        cls = ZarrLayout if name == "zarr" else TiffLayout
        return cls(fc, reader, expect or Expect(), options or {}, shard_bytes)
    raise ValueError(f"unknown layout {name!r}")


__all__ = ["CopyLayout", "Restored", "TiffLayout", "ZarrLayout", "build_layout", "restore_verdict"]
