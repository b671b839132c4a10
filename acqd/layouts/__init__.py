"""Layouts: how data sits at rest. `build_layout` picks one by name."""

from __future__ import annotations

from typing import Any

from acqd.codec import LAYOUT_CODECS, FrameCodec, frame_codec, stream_codec
from acqd.layouts.choose import ChoosePolicy
from acqd.layouts.copy import CopyLayout
from acqd.layouts.frames import FilePlan, FrameLayout, Restored, TiffLayout, ZarrLayout, restore_verdict
from acqd.ports import Layout
from acqd.readers import Expect

DEFAULT_CODECS: dict[str, dict[str, Any]] = LAYOUT_CODECS


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
    choose: ChoosePolicy | None = None,
    never_larger: bool = True,
    threads: int = 0,
) -> Layout:
    if name == "copy":
        return CopyLayout(stream_codec(compress, level), chunk)
    if name in ("zarr", "tiff"):
        fc: FrameCodec = frame_codec(codec if codec is not None else DEFAULT_CODECS[name])
        cls = ZarrLayout if name == "zarr" else TiffLayout
        return cls(fc, reader, expect or Expect(), options or {}, shard_bytes, choose, never_larger, threads)
    raise ValueError(f"unknown layout {name!r}")


def reading_layout(stored_with: str, codec: str, like: Layout | None = None, chunk: int = 8 << 20) -> Layout:
    """The layout that reads a copy stored with layout `stored_with` and `codec` (as the journal has
    them). `like` is the placement's: a frame layout of the same kind reads the copy itself (it knows
    the detector's reader, which re-reads the source), as does its byte-exact fallback, by the copy's
    codec; anything else is built by name and codec (a placement changed since the copy was written:
    another layout, another `compress`), with `like`'s reader where it is a frame layout."""
    if isinstance(like, FrameLayout):
        got = like.for_copy(stored_with, codec)
        if got.name == stored_with:
            return got
    if isinstance(like, CopyLayout):
        chunk = like.chunk
    reader = like.reader if isinstance(like, FrameLayout) else "bytes"
    return build_layout(stored_with, "zstd" if codec.startswith("zstd") else "none", chunk=chunk, reader=reader)


__all__ = [
    "ChoosePolicy",
    "CopyLayout",
    "FilePlan",
    "FrameLayout",
    "Restored",
    "TiffLayout",
    "ZarrLayout",
    "build_layout",
    "reading_layout",
    "restore_verdict",
]
