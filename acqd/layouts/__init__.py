"""Layouts: how data sits at rest. `build_layout` picks one by name."""

from __future__ import annotations

from acqd.codec import stream_codec
from acqd.layouts.copy import CopyLayout
from acqd.ports import Layout


def build_layout(name: str, compress: str = "none", level: int = 3, chunk: int = 8 << 20) -> Layout:
    if name == "copy":
        return CopyLayout(stream_codec(compress, level), chunk)
    raise ValueError(f"unknown layout {name!r}")


__all__ = ["CopyLayout", "build_layout"]
