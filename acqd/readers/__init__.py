"""Readers: one module per format. Each opens a source file (already opened by acqd, never by path
again), validates it against its profile, and yields frames plus every header field.

A lab adds its own format with a Python entry point in the group `acqd.readers`, whose value is a
callable with the signature of `open_frames` below, without forking acqd.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, BinaryIO

from acqd.errors import FormatError
from acqd.readers.base import Expect, FrameSource, Mode
from acqd.readers.mib import open_mib
from acqd.readers.mrc import open_mrc
from acqd.readers.raw import open_raw
from acqd.readers.tiff import open_tiff

BUILTIN = {"mrc": open_mrc, "tiff": open_tiff, "mib": open_mib, "raw": open_raw}


def reader_names() -> list[str]:
    return sorted({*BUILTIN, "bytes", *(ep.name for ep in entry_points(group="acqd.readers"))})


def open_frames(reader: str, f: BinaryIO, size: int, expect: Expect, options: dict[str, Any]) -> FrameSource:
    fn = BUILTIN.get(reader)
    if fn is None:
        eps = [ep for ep in entry_points(group="acqd.readers") if ep.name == reader]
        if not eps:
            raise FormatError(f"no reader {reader!r} (known: {', '.join(reader_names())})")
        fn = eps[0].load()
    src = fn(f, size, expect, options)
    expect.check(src)
    return src


__all__ = ["BUILTIN", "Expect", "FrameSource", "Mode", "open_frames", "reader_names"]
