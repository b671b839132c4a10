"""Readers: one module per format. Each opens a source file (already opened by acqd, never by path
again), validates it against its profile, and yields frames plus every header field.

A lab adds its own format with a Python entry point in the group `acqd.readers`, whose value is a
callable with the signature of `open_frames` below, without forking acqd.
"""

from __future__ import annotations

import struct
from importlib.metadata import entry_points
from typing import Any, BinaryIO

from acqd.errors import FormatError, UnfinishedFormatError, UnsupportedFormatError
from acqd.readers.base import Expect, FrameSource, Mode, sniff
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
    try:
        try:
            src = fn(f, size, expect, options)
        except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as exc:
            # what a file's header says does not add up in a way its reader did not foresee (a TIFF's
            # strip table of two lengths): a damaged file, quarantined with the reason and kept, never
            # an internal error tried again for ever
            raise FormatError(f"corrupt {reader} file: {type(exc).__name__}: {exc}") from None
    except UnfinishedFormatError:
        raise
    except FormatError as exc:
        # a valid file of another format under a name the profile gives this reader (an MRC named
        # .tif): not damaged, so not quarantined (never backed up), but stored byte-exact with the reason
        kind = _other_format(f, reader)
        if kind is None:
            raise
        raise UnsupportedFormatError(
            f"a {kind} file, not {reader.upper()} as its name says to this profile ({exc}): not read as frames"
        ) from None
    expect.check(src)
    return src


def _other_format(f: BinaryIO, reader: str) -> str | None:
    """The format a file's first bytes say it is, if one acqd knows and not `reader`'s."""
    try:
        f.seek(0)
        head = f.read(1024)
    except OSError:
        return None
    kind = sniff(bytes(head))
    return kind if kind is not None and kind.lower() != reader else None


__all__ = ["BUILTIN", "Expect", "FrameSource", "Mode", "open_frames", "reader_names"]
