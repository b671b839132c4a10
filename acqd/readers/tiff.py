"""TIFF (tifffile): light-sheet planes and stacks, camera TIFFs with private tags."""

from __future__ import annotations

import base64
from typing import Any, BinaryIO

import numpy as np
import tifffile

from acqd.errors import FormatError
from acqd.readers.base import Expect, FrameSource, jsonable

# tags tifffile writes itself from the array and its arguments; every other tag is kept and restored
STRUCTURAL = {
    256,
    257,
    258,
    259,
    262,
    273,
    277,
    278,
    279,
    284,
    317,
    322,
    323,
    324,
    325,
    338,
    339,
    347,
}


def _tags(page: Any) -> list[dict[str, Any]]:
    out = []
    for tag in page.tags.values():
        if tag.code in STRUCTURAL:
            continue
        raw = tag.value
        entry: dict[str, Any] = {"code": tag.code, "name": tag.name, "dtype": int(tag.dtype), "count": tag.count}
        if isinstance(raw, bytes):
            entry["b64"] = base64.b64encode(raw).decode()
        else:
            try:
                entry["value"] = jsonable(raw.value if hasattr(raw, "value") and not isinstance(raw, str) else raw)
            except Exception:
                continue
        out.append(entry)
    return out


def open_tiff(f: BinaryIO, size: int, expect: Expect, options: dict[str, Any]) -> FrameSource:
    try:
        tif = tifffile.TiffFile(f, name=str(options.get("name", "source.tif")))
        pages = tif.pages
        n = len(pages)
        first = pages.first
        if first.is_tiled is None:  # pragma: no cover - defensive
            raise FormatError("unreadable TIFF page")
    except tifffile.TiffFileError as exc:
        raise FormatError(f"corrupt TIFF: {exc}") from None
    except (ValueError, IndexError, OSError) as exc:
        raise FormatError(f"corrupt TIFF: {exc}") from None
    if first.ndim != 2 or first.samplesperpixel != 1:
        raise FormatError(f"TIFF pages of shape {first.shape} (samples {first.samplesperpixel}): only 2-D gray planes")
    shape = first.shape
    dtype = np.dtype(first.dtype).newbyteorder(tif.byteorder)
    for i in range(n):
        p = pages[i]
        if p.shape != shape or p.dtype != first.dtype:
            raise FormatError(f"TIFF page {i} is {p.shape} {p.dtype}, page 0 is {shape} {first.dtype}")
    header: dict[str, Any] = {
        "byteorder": tif.byteorder,
        "bigtiff": tif.is_bigtiff,
        "compression": int(first.compression),
        "pages": n,
        "tags": _tags(first),
    }
    if n > 1:
        later = [_tags(pages[i]) for i in (1, n - 1)]
        if any(t != header["tags"] for t in later):
            header["page_tags"] = [_tags(pages[i]) for i in range(n)]

    def read(start: int, stop: int) -> np.ndarray:
        try:
            out = np.stack([pages[i].asarray() for i in range(start, stop)])
        except Exception as exc:
            raise FormatError(f"corrupt TIFF data: {exc}") from None
        return out.astype(dtype, copy=False)

    px = None
    xres = first.tags.get("XResolution")
    unit = first.tags.get("ResolutionUnit")
    if xres is not None and unit is not None and int(unit.value) == 3 and xres.value[0] > 0:  # per centimetre
        um = 1e4 * xres.value[1] / xres.value[0]
        px = (um, um)
    return FrameSource(
        format="tiff",
        shape=(n, shape[0], shape[1]),
        dtype=dtype,
        header=header,
        read=read,
        restore=None,
        axis0=str(options.get("axis0", "z")),
        pixel_size_um=px,
        extra={"tif": tif},
    )
