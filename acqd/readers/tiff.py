"""TIFF (tifffile): light-sheet planes and stacks, camera TIFFs with private tags."""

from __future__ import annotations

import base64
import contextlib
import math
import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, BinaryIO

from acqd.checksum import Hasher
from acqd.errors import CutShortError, FormatError, UnfinishedFormatError, UnsupportedFormatError
from acqd.lazy import lazy
from acqd.readers.base import UM_PER_UNIT, Expect, FrameSource, display_unit, jsonable, length_unit, seconds

if TYPE_CHECKING:
    import numpy as np
    import tifffile
else:
    np = lazy("numpy")
    tifffile = lazy("tifffile")


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


# where the pixel data sits: rebuilt by whoever writes the file again
DATA_TAGS = {273, 279, 324, 325}

# compression schemes acqd can write again losslessly (tifffile's codec table, via imagecodecs): a source
# compressed otherwise (JPEG, ...) would not come back in its own form, so it is stored byte-exact
ENCODABLE = {1, 5, 8, 32946, 32773, 34925, 50000}


def _check_whole(pages: list[Any], size: int) -> None:
    """A TIFF whose pixel data runs past its end (cut short, or a plane still being written) says more is
    to come: an UnfinishedFormatError, whatever it holds (never stored as the planes found so far)."""
    for i, p in enumerate(pages):
        ends = [int(o) + int(c) for o, c in zip(p.dataoffsets, p.databytecounts, strict=False) if c]
        if ends and max(ends) > size:
            raise CutShortError(f"truncated TIFF: page {i}'s pixel data ends at byte {max(ends)}, the file has {size}")


def _chain(f: BinaryIO, tif: Any, size: int) -> tuple[int, str | None]:
    """The file's chain of IFDs walked as it is: how many distinct IFDs it reaches, and how it ends
    (None: at a zero offset; else "runs past the end" or "loops back")."""
    big = bool(tif.is_bigtiff)
    count_size, entry_size, offset_size = (8, 20, 8) if big else (2, 12, 4)
    bo = tif.byteorder
    f.seek(8 if big else 4)
    raw = f.read(offset_size)
    at = int(struct.unpack(bo + ("Q" if big else "I"), raw)[0]) if len(raw) == offset_size else 0
    seen: set[int] = set()
    while at:
        if at in seen:
            return len(seen), "loops back"
        if at + count_size > size or len(seen) >= 10_000_000:
            return len(seen), "runs past the end"
        seen.add(at)
        f.seek(at)
        head = f.read(count_size)
        ntags = int(struct.unpack(bo + ("Q" if big else "H"), head)[0])
        f.seek(at + count_size + entry_size * ntags)
        raw = f.read(offset_size)
        if len(raw) != offset_size:
            return len(seen), "runs past the end"
        at = int(struct.unpack(bo + ("Q" if big else "I"), raw)[0])
    return len(seen), None


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))


def unframed(pages: list[Any]) -> str | None:
    """What makes a valid TIFF one the frame layouts cannot store as 2-D gray frames and write back in
    its own form (None: nothing): colour or several samples, pages that differ (a pyramid, a
    thumbnail), sub-IFDs, bit depths other than whole bytes, tiles, compression acqd cannot write again."""
    first = pages[0]
    if first.samplesperpixel != 1:
        planar = ", planar" if first.planarconfig == 2 else ""
        return f"{first.samplesperpixel} samples per pixel ({_name(first.photometric)}{planar})"
    if first.ndim != 2:
        return f"pages of shape {first.shape}"
    for i, p in enumerate(pages):
        if 330 in p.tags:  # SubIFDs: a pyramid's reduced levels, thumbnails, a raw image beside a preview
            return f"sub-IFDs (page {i}: a pyramid's levels or other images besides the pages)"
        if p.shape != first.shape or p.dtype != first.dtype:
            return f"pages that differ (page {i}: {p.shape} {p.dtype}; page 0: {first.shape} {first.dtype})"
        res, res0 = (_resolution(p), _resolution(first)) if i else (None, None)
        if res and res0 and (res != res0 or int(p.resolutionunit) != int(first.resolutionunit)):
            # one stack has one pixel size: page 0's would be given to every page (a page without one
            # takes the stack's)
            return (
                f"pages whose pixel sizes differ (page {i}: {res} per {_name(p.resolutionunit)}; "
                f"page 0: {res0} per {_name(first.resolutionunit)})"
            )
        if p.bitspersample != np.dtype(p.dtype).itemsize * 8:
            return f"{p.bitspersample}-bit samples"
        # values whose meaning the frame layouts do not carry: white is 0, a palette's indices; or the
        # rows and columns shown otherwise than stored (a copy's readers would show another image)
        if (tag := p.tags.get(262)) is not None and int(tag.value) != 1:
            return f"photometric interpretation {_name(p.photometric)} (page {i}; frames are stored black is 0)"
        if (tag := p.tags.get(274)) is not None and int(tag.value) != 1:
            return f"orientation {int(tag.value)} (page {i}: rows or columns shown otherwise than stored)"
        if int(p.compression) != int(first.compression) or int(p.predictor) != int(first.predictor):
            return (
                f"pages compressed differently (page {i}: {_name(p.compression)}, predictor {int(p.predictor)}; "
                f"page 0: {_name(first.compression)}, predictor {int(first.predictor)})"
            )
        if int(p.compression) == 1 and int(p.predictor) not in (0, 1):
            return f"predictor {_name(p.predictor)} on uncompressed pixels (page {i})"
        if p.is_tiled:
            return "tiles"
        if int(p.compression) not in ENCODABLE:
            return f"{_name(p.compression)} compression, which acqd cannot write again"
        if int(p.compression) != 1 and int(p.predictor) not in (0, 1, 2):
            return f"predictor {_name(p.predictor)}, which acqd cannot write again"
        if int(p.fillorder) != 1:
            return f"fill order {int(p.fillorder)}"
    return None


def _tags(page: Any, structural: bool = False) -> list[dict[str, Any]]:
    """Every non-structural tag (or, with `structural`, every structural one but the strip/tile table)
    as its raw bytes (whatever tifffile makes of them), type and count."""
    fh = page.parent.filehandle
    out = []
    for tag in page.tags.values():
        if (tag.code in STRUCTURAL) != structural or tag.code in DATA_TAGS:
            continue
        fmt = tifffile.TIFF.DATA_FORMATS[tag.dtype]
        size = struct.calcsize("<" + fmt[-1]) * int(fmt[:-1] or 1) * tag.count
        fh.seek(tag.valueoffset)
        raw = fh.read(size)
        out.append(
            {
                "code": tag.code,
                "name": tag.name,
                "dtype": int(tag.dtype),
                "count": tag.count,
                "b64": base64.b64encode(raw).decode(),
            }
        )
    return out


def _tags_changed(pages: Any, n: int, first: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tags of pages 1 to n-1 that page 0 does not have as they are (a description, a time or a
    stage position per plane), page by page: in the copy's metadata by name, not only in the bytes
    that give the file back (a stranger's fidelity review found only page 0's there)."""
    same = {(t["code"], t["dtype"], t["count"], t["b64"]) for t in first}
    out = []
    for i in range(1, n):
        own = [t for t in _tags(pages[i]) if (t["code"], t["dtype"], t["count"], t["b64"]) not in same]
        if own:
            out.append({"page": i, "tags": own})
    return out


def open_tiff(f: BinaryIO, size: int, expect: Expect, options: dict[str, Any]) -> FrameSource:
    try:
        tif = tifffile.TiffFile(f, name=str(options.get("name", "source.tif")))
        pages = tif.pages
        n = len(pages)
        if n == 0:
            raise FormatError("corrupt TIFF: no image in it (its first IFD offset is 0 or outside the file)")
        first = pages.first
        if first.is_tiled is None:  # pragma: no cover - defensive
            raise FormatError("unreadable TIFF page")
        every = [pages[i] for i in range(n)]
    except tifffile.TiffFileError as exc:
        raise FormatError(f"corrupt TIFF: {exc}") from None
    except (ValueError, IndexError, OSError) as exc:
        raise FormatError(f"corrupt TIFF: {type(exc).__name__}: {exc}") from None
    # tifffile stops at a next IFD past the end and says so only in its log: the pages it gives may
    # not be all the file holds (an ImageJ stack cut short: its other planes' pixels are there, their
    # IFDs were to come at the end; a stack written page by page, its next page begun): more is to
    # come, or was cut off. Never a short stack under the file's name
    chained, ended = _chain(f, tif, size)
    if ended == "runs past the end":
        raise UnfinishedFormatError(
            f"a TIFF whose chain of IFDs runs past the end of the file after {chained} whole IFD(s) ({n} "
            "page(s) read): still being written, or cut short"
        )
    if ended == "loops back":  # damaged: which pages are the stack, readers do not agree; said as it is
        raise UnsupportedFormatError(
            f"a TIFF whose chain of IFDs loops back after {chained} IFD(s) ({n} page(s) read): damaged, its "
            "pages are not a plain stack of frames"
        )
    _check_whole(every, size)  # the last page's pixels cut off, no page said to follow: damaged
    cut = ""
    if ended is not None or chained > n:
        cut = f"; its chain of IFDs {ended or 'goes on'} after {chained} IFD(s), tifffile reads {n} page(s)"
    why = unframed(every)
    if why is not None:
        raise UnsupportedFormatError(f"a TIFF with {why}: not 2-D gray frames acqd gives back in their own form")
    shape = first.shape
    axis0 = _series_axis(f, str(options.get("name", "source.tif")), n, shape) or str(options.get("axis0", "z"))
    dtype = np.dtype(first.dtype).newbyteorder(tif.byteorder)
    header: dict[str, Any] = {
        "byteorder": tif.byteorder,
        "bigtiff": tif.is_bigtiff,
        "compression": int(first.compression),
        "pages": n,
        "tags": _tags(first),
    }
    vendor = vendor_metadata(tif)
    if vendor:  # the tags above keep the bytes; this is what they say, by name, for readers and harvesters
        header["metadata"] = vendor
    skeleton = _skeleton(f, pages, n, size, first.shape, dtype)
    frame_bytes = int(first.shape[0] * first.shape[1] * dtype.itemsize)
    if skeleton is not None:
        header["restore"] = "skeleton"  # byte-exact; the per-page tags are in it
        if len(skeleton) >= frame_bytes:  # as much besides the pages' pixels as a page: what does it hold?
            _, stretch, extra = _unexplained(f, tif, every, size, pointed=True)
            # in one stretch: likely planes no page points to (the frames would show fewer than the
            # file has); where the chain runs past the end, loops, or goes on past what tifffile read,
            # even a small page's worth
            threshold = frame_bytes if cut else max(frame_bytes, ORPHAN_MIN)
            if stretch >= threshold:
                raise UnsupportedFormatError(
                    f"a TIFF with {extra}, in a stretch as long as a page's pixels: a stack of its pages "
                    f"would not show them{cut}"
                )
    elif any(p.compression == 1 for p in every):
        # uncompressed, but its strips do not hold exactly its pixels (a StripByteCounts longer than
        # the plane, strips that overlap): written again from pixels and tags, its bytes would not
        # come back, and an uncompressed TIFF is given back byte for byte, or stored byte-exact
        raise UnsupportedFormatError(
            f"an uncompressed TIFF whose strips do not hold exactly its pixels (a strip table acqd does not "
            f"write back byte for byte){cut}"
        )
    else:
        if options.get("compressed_tiff", "byte-exact") != "frames":
            # a compressed source written again from its pixels and tags comes back equal in pixels and
            # tags, not in bytes (the compressed strips and the places of IFDs are the encoder's own): a
            # facility's checksum of the original would no longer match, and a release would delete the
            # only copy of its bytes (a stranger's fidelity review). Stored as the detector wrote it
            # (RELION, MotionCor2 and cryoSPARC read LZW and deflate TIFF in place)
            raise UnsupportedFormatError(
                f"a compressed TIFF ({_name(first.compression)}): stored byte-exact, so that a restore gives back "
                f"its very bytes (`compressed_tiff: frames` in its profile reads it as frames){cut}"
            )
        found, _, extra = _unexplained(f, tif, every, size)
        if found:  # a rewrite from pixels and tags would lose them: byte-exact instead
            raise UnsupportedFormatError(f"a compressed TIFF with {extra}: written again, they would be lost{cut}")
        # a compressed source is written again from its tags: every page's, structural ones too
        # (explicit defaults such as PlanarConfiguration and SampleFormat, the strip size, the
        # compression scheme and predictor), and the source's own bytes' checksum, so that a restore
        # can say whether it came back byte for byte
        header["structural"] = _tags(first, structural=True)
        if n > 1:
            plain = [_tags(pages[i]) for i in range(n)]
            struct_tags = [_tags(pages[i], structural=True) for i in range(n)]
            if any(t != header["tags"] for t in plain) or any(t != header["structural"] for t in struct_tags):
                header["page_tags"], header["page_structural"] = plain, struct_tags
        header["file_checksum"], header["file_size"] = _file_checksum(f, size), size
    if n > 1 and "page_tags" not in header and (changed := _tags_changed(pages, n, header["tags"])):
        header["page_tags_changed"] = changed

    def read(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *shape), dtype=first.dtype)
        try:
            for k, i in enumerate(range(start, stop)):
                pages[i].asarray(out=out[k])  # decoded straight into the block: no stacking copy
        except Exception as exc:
            raise FormatError(f"corrupt TIFF data: {exc}") from None
        return out.astype(dtype, copy=False)

    cal = calibration(tif, first)
    return FrameSource(
        format="tiff",
        shape=(n, shape[0], shape[1]),
        dtype=dtype,
        header=header,
        read=read,
        restore=skeleton,
        axis0=axis0,
        pixel_size_um=cal.pixel_um,
        axis0_step_um=cal.step_um if n > 1 and axis0 == "z" else None,
        axis0_interval_s=cal.interval_s if n > 1 and axis0 == "t" else None,
        unit=cal.unit,
        image2d=n == 1,
        extra={"tif": tif},
    )


# what the file's own metadata (OME-XML, ImageJ's description) calls its plane axis; other letters
# (tifffile's I and Q: planes of no stated kind) leave it to the detector profile
_AXIS0 = {"Z": "z", "T": "t", "C": "c"}


def _series_axis(f: BinaryIO, name: str, n: int, shape: tuple[int, ...]) -> str | None:
    """The plane axis the file's metadata states (z, t or c), or None where it states none.

    Raises UnsupportedFormatError for what the frame layouts cannot give back as it is meant: a
    series whose planes are not the pages (ImageJ past 4 GiB writes one IFD and the other planes
    after it, `images=N`: the pages would show one plane of N), and a hyperstack with more than one
    axis besides the plane (z and channels, time and z: stacked as one axis they would be read as
    one z of all planes), and a file of several series not all single planes (OME or Micro-Manager
    positions, time points: one z of all would mix them; a plane-by-plane writer's one-plane series
    are a stack). Those are stored byte-exact, so their readers keep the dimensions."""
    try:
        # a TiffFile of its own: reading the series turns the pages of some kinds (OME) into
        # TiffFrames, which the rest of the reader does not expect
        f.seek(0)  # tifffile takes a handle's position for the file's start
        with tifffile.TiffFile(f, name=name, _multifile=False) as tif:  # this file's planes, not its siblings'
            series = tif.series[0]
            axes, dims, count = str(series.axes), tuple(int(d) for d in series.shape), len(tif.series)
            apart = count > 1 and any(len(s.pages) > 1 for s in tif.series)
            ome, described = bool(tif.is_ome), bool(tif.is_ome or tif.is_imagej)
            order = [getattr(p, "index", None) for p in series.pages] if count == 1 else []
            stated = _ome_planes(tif.ome_metadata) if ome and count == 1 and tif.ome_metadata else None
    except Exception:  # tifffile's metadata parsing on an odd file: the pages decide, as before
        return None
    if stated is not None and stated > n:  # tifffile, kept to this file, shows its own planes only
        raise UnsupportedFormatError(
            f"a TIFF whose OME metadata counts {stated} plane(s) and the file holds {n}: one file of a multi-file "
            "dataset (its planes are not the dataset's first ones), read whole by its readers with its siblings"
        )
    if apart or (ome and count > 1):  # positions, time points or channels kept as series of their own
        raise UnsupportedFormatError(
            f"a TIFF of {count} image series{'' if apart else ' (OME images)'}, not one stack of planes "
            "(positions or time points kept apart): stacked as one z axis they would be mixed, so it is not "
            "read as one stack of frames"
        )
    if axes[-2:] != "YX" or dims[-2:] != tuple(shape):
        return None
    lead = [(a, d) for a, d in zip(axes[:-2], dims[:-2], strict=True) if d > 1]
    planes = int(np.prod([d for _, d in lead], dtype=np.int64))
    if planes > n:
        raise UnsupportedFormatError(
            f"a TIFF whose {axes} series holds {planes} planes in {n} IFD(s) (ImageJ's layout past 4 GiB, or one "
            "file of a multi-file dataset): the pages alone are not its planes"
        )
    if described and count == 1 and planes < n:  # an overview, a thumbnail: pages that are not planes
        raise UnsupportedFormatError(
            f"a TIFF whose {'OME' if ome else 'ImageJ'} metadata counts {planes} plane(s) in {n} pages: the "
            "other pages are not planes of it, and a stack of every page would show them as planes"
        )
    if count > 1 or planes < n:
        return None  # more pages than the first series: every page a plane, as the profile says
    if described and order != list(range(n)):  # its planes in another order than its pages
        raise UnsupportedFormatError(
            f"a TIFF whose {'OME' if ome else 'ImageJ'} metadata puts its planes on pages in another order "
            "than the file's (or leaves planes out): a stack of its pages in file order would be another "
            "stack than its readers show"
        )
    if len(lead) > 1:
        raise UnsupportedFormatError(
            f"a {axes} hyperstack of shape {dims}: more than one axis besides the plane, which a stack of "
            "planes would mix into one"
        )
    return _AXIS0.get(lead[0][0]) if lead else None


@dataclass(frozen=True)
class Calibration:
    pixel_um: tuple[float, float] | None = None  # (y, x)
    step_um: float | None = None  # between pages (a z stack's planes)
    unit: str = "micrometer"  # the unit the source states sizes in
    interval_s: float | None = None  # between pages of a time series


#: dots per inch image programs write by default (a screen's, a printer's): no microscope's pixel size
#: (72 dpi would be 352.8 um pixels), so taken for no calibration at all
SCREEN_DPI = frozenset({1.0, 72.0, 96.0, 150.0, 300.0, 600.0})


def calibration(tif: Any, page: Any) -> Calibration:
    """Physical sizes where the file states them (`_sizes`), and the time between a time series'
    planes: OME-XML's TimeIncrement with its unit (seconds by default), else ImageJ's `finterval=` in
    its `tunit=` (seconds by default)."""
    cal = _sizes(tif, page)
    interval = None
    with contextlib.suppress(Exception):
        if tif.is_ome:
            interval = _ome_interval(tif.ome_metadata)
    if interval is None and tif.is_imagej:
        ij = tif.imagej_metadata or {}
        interval = seconds(ij.get("finterval"), ij.get("tunit", "sec"))
    return replace(cal, interval_s=interval) if interval is not None else cal


def _sizes(tif: Any, page: Any) -> Calibration:
    """Physical sizes where the file states them, in this order: OME-XML PhysicalSize{X,Y,Z} with
    their units; ImageJ's `unit=` with X/YResolution (pixels per unit) and `spacing=`; a vendor's tag
    (Zeiss SEM, FEI/Thermo SEM, TVIPS: `vendor_calibration`); TIFF resolution per inch or centimetre,
    but for an image program's default density (`SCREEN_DPI`). Nothing else: unstated sizes stay
    unknown (None)."""
    with contextlib.suppress(Exception):
        if tif.is_ome and (cal := _ome(tif.ome_metadata)) is not None:
            return cal
    res = _resolution(page)
    rtag = page.tags.get("ResolutionUnit")
    runit = int(rtag.value) if rtag is not None else 2  # TIFF's default unit is the inch
    ij = tif.imagej_metadata if tif.is_imagej else None
    # ImageJ's `unit=` states the pixel's unit, whatever ResolutionUnit says: `pixel` (not calibrated) or a
    # unit acqd does not know is no calibration, never the ResolutionUnit's (`unit=pixel` beside per inch
    # was 12.7 mm pixels: a stranger's review)
    ij_unit = isinstance(ij, dict) and ij.get("unit") is not None
    if ij:
        unit = length_unit(ij.get("unit"))
        if unit is not None:
            # as ImageJ reads it (FileOpener.decodeDescriptionString), which is what Fiji shows: y and z
            # in their own units where the description states them (`yunit=`, `zunit=`); X/YResolution
            # pixels per the description's `unit=` and `spacing=` in it, whatever ResolutionUnit says
            # (none, inch or cm). Two cases ImageJ's TiffDecoder makes: 72 per inch is a pixel of one
            # unit, and per centimetre with `unit=um` exactly is per cm (the pixel size times 10^4).
            # The tag taken for the unit made a file with no ResolutionUnit (Pillow's) 25,400 times too
            # large, and a z step in cm or inch (10^4 or 25,400 times too large): strangers' reviews
            yunit, zunit = length_unit(ij.get("yunit")) or unit, length_unit(ij.get("zunit")) or unit
            px = None
            if res:
                if rtag is not None and runit == 2 and res[1] == 72.0:
                    res = (1.0, 1.0)
                elif rtag is not None and runit == 3 and ij.get("unit") == "um":
                    res = (res[0] / 1e4, res[1] / 1e4)
                px = (UM_PER_UNIT[yunit] / res[0], UM_PER_UNIT[unit] / res[1])
            spacing = _positive(ij.get("spacing"))  # `spacing=Infinity` or NaN: no z step
            step = spacing * UM_PER_UNIT[zunit] if spacing is not None else None
            shown = unit if unit not in ("inch", "centimeter") else display_unit(px[1] if px else step or 1.0)
            return Calibration(px, step, shown)
    with contextlib.suppress(Exception):
        if (cal := vendor_calibration(tif)) is not None:
            return cal
    if ij_unit:
        return Calibration()
    if res and runit in (2, 3) and not (runit == 2 and res[0] == res[1] and res[0] in SCREEN_DPI):
        scale = UM_PER_UNIT["inch" if runit == 2 else "centimeter"]
        px = (scale / res[0], scale / res[1])
        return Calibration(px, None, display_unit(px[1]))
    return Calibration()


def _positive(value: Any) -> float | None:
    v = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
    return v if v > 0 and math.isfinite(v) else None


def vendor_calibration(tif: Any) -> Calibration | None:
    """The pixel size a vendor's tag states, as tifffile's own parsers read it (None: none stated):
    Zeiss SEM (CZ_SEM, tag 34118): the 'Image Pixel Size' (or older 'Pixel Size') entry with its
    unit; FEI/Thermo SEM (FEI_HELIOS/FEI_SFEG, tags 34682/34680): [Scan] PixelWidth and PixelHeight in
    metres; TVIPS (tag 37706, header version 2): PixelSizeX/Y in nanometres, except for a diffraction
    pattern (TemMode 3), whose pixel size is reciprocal, not a length."""
    sem = tif.sem_metadata if tif.is_sem else None
    if sem:
        for key in ("ap_image_pixel_size", "ap_pixel_size"):
            entry = sem.get(key)
            if isinstance(entry, tuple) and len(entry) == 3:
                size, unit = _positive(entry[1]), length_unit(entry[2])
                if size is not None and unit is not None:
                    um = size * UM_PER_UNIT[unit]
                    return Calibration((um, um), None, unit)
    fei = tif.fei_metadata if tif.is_fei else None
    scan = fei.get("Scan") if isinstance(fei, dict) else None
    if isinstance(scan, dict):
        x, y = _positive(scan.get("PixelWidth")), _positive(scan.get("PixelHeight"))
        if x is not None:
            px = ((y or x) * 1e6, x * 1e6)
            return Calibration(px, None, display_unit(px[1]))
    tvips = tif.tvips_metadata if tif.is_tvips else None
    if isinstance(tvips, dict) and tvips.get("Version") == 2 and tvips.get("TemMode") != 3:
        x, y = _positive(tvips.get("PixelSizeX")), _positive(tvips.get("PixelSizeY"))
        if x is not None:
            return Calibration(((y or x) * 1e-3, x * 1e-3), None, "nanometer")
    return None


def _resolution(page: Any) -> tuple[float, float] | None:
    """(y, x) pixels per resolution unit, or None unless both are there and positive."""
    out = []
    for name in ("YResolution", "XResolution"):
        tag = page.tags.get(name)
        if tag is None or not isinstance(tag.value, tuple) or len(tag.value) != 2 or not tag.value[1]:
            return None
        v = tag.value[0] / tag.value[1]
        if not v > 0 or not math.isfinite(v):
            return None
        out.append(v)
    return out[0], out[1]


#: tifffile's parsers of vendor and program metadata whose result goes into the header by name
VENDOR_PARSERS = ("imagej", "tvips", "fei", "sem", "micromanager", "scanimage", "andor", "nih", "metaseries")
#: an OME-XML description longer than this is left to the tags (a big plate's XML is megabytes)
OME_XML_MAX = 64 << 10


def vendor_metadata(tif: Any) -> dict[str, Any]:
    """What a TIFF's vendor or program tags say, as tifffile's parsers read them (`tvips`, `fei`,
    `sem`, `imagej`, ...), and its OME-XML text, each as JSON: the bytes of the tags are kept for
    the restore, but only this view shows a reader the microscope's voltage, magnification or
    exposure. A parser that fails leaves its entry out."""
    out: dict[str, Any] = {}
    for name in VENDOR_PARSERS:
        with contextlib.suppress(Exception):
            if getattr(tif, f"is_{name}", False):
                value = getattr(tif, f"{name}_metadata", None)
                if value:
                    out[name] = jsonable(value)
    with contextlib.suppress(Exception):
        if tif.is_ome and tif.ome_metadata and len(tif.ome_metadata) <= OME_XML_MAX:
            out["ome_xml"] = tif.ome_metadata
    return out


def _ome_pixels(xml: str) -> Any:
    """The first image's Pixels element of an OME-XML description (None: none)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    return next((el for el in root.iter() if el.tag.rpartition("}")[2] == "Pixels"), None)


def _ome_planes(xml: str) -> int | None:
    """The planes the first image's Pixels element counts: SizeZ x SizeT x its channels (the Channel
    elements: an RGB channel of 3 samples is one plane), None where it does not say."""
    pixels = _ome_pixels(xml)
    if pixels is None:
        return None
    channels = sum(1 for el in pixels if el.tag.rpartition("}")[2] == "Channel")
    try:
        z, t, c = (int(pixels.get(k, "1")) for k in ("SizeZ", "SizeT", "SizeC"))
    except ValueError:
        return None
    return z * t * (channels or c)


def _ome_interval(xml: str) -> float | None:
    """TimeIncrement of the first image's Pixels element, in seconds (its unit's default: s)."""
    pixels = _ome_pixels(xml)
    if pixels is None:
        return None
    return seconds(pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s"))


def _ome(xml: str) -> Calibration | None:
    """PhysicalSizeX/Y/Z of the first image's Pixels element (default unit: micrometre)."""
    pixels = _ome_pixels(xml)
    if pixels is None:
        return None

    def size(axis: str) -> tuple[float, str] | None:
        text = pixels.get(f"PhysicalSize{axis}")
        unit = length_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        try:
            value = float(text) if text is not None else 0.0
        except ValueError:
            return None
        return (value * UM_PER_UNIT[unit], unit) if unit and value > 0 and math.isfinite(value) else None

    x, y, z = size("X"), size("Y"), size("Z")
    if x is None and y is None and z is None:
        return None
    px = (y[0], x[0]) if x and y else None
    return Calibration(px, z[0] if z else None, (x or y or z)[1])  # type: ignore[index]


# one-value tags that point to a block of their own: SubIFDs, EXIF's and GPS's IFDs (private tags, 32768
# and up, such as TVIPS's header, too)
POINTER_TAGS = {330, 34665, 34853}
# an unexplained stretch shorter than this is not taken for planes (Micro-Manager's index map at the
# end of a stack of many small frames: 20 bytes an image)
ORPHAN_MIN = 256 << 10

# bytes per value of each TIFF field type (TIFF 6.0 and BigTIFF)
TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}


def _unexplained(f: BinaryIO, tif: Any, pages: list[Any], size: int, pointed: bool = False) -> tuple[int, int, str]:
    """Bytes of a TIFF that are neither its header, its IFDs, its tags' values nor its pixel data
    (a vendor's block appended at the end, or pointed to by a private tag, a sub-IFD): a compressed
    source is written again from pixels and tags, and they would not come back. Zero bytes (padding)
    carry nothing and do not count, and neither do the bytes right after an IFD that repeat its own
    tags' values (tifffile writes a page's values there, then points the page at an earlier page's
    equal ones). The IFDs are read as the file has them (a reader may pass over some tags). How many
    such bytes, the longest stretch between what is explained that holds some, and where the first
    is, in words (0, 0 and "" if there are none). `pointed`: a block a tag points to (a one-value
    LONG or IFD tag whose value is an offset into it, as TVIPS's header, EXIF's IFD) counts as
    explained from that offset on, its length unknown."""
    big = bool(tif.is_bigtiff)
    bo = tif.byteorder
    count_size, entry_size, offset_size = (8, 20, 8) if big else (2, 12, 4)
    entry = struct.Struct(bo + ("HHQ8s" if big else "HHI4s"))
    covered = [(0, 16 if big else 8)]
    pointers = set()
    for p in pages:
        at = int(p.offset)
        f.seek(at)
        head = f.read(count_size)
        if len(head) != count_size:
            return size, size, "an IFD cut short"
        (ntags,) = struct.unpack(bo + ("Q" if big else "H"), head)
        raw = f.read(entry_size * ntags)
        if len(raw) != entry_size * ntags:
            return size, size, "an IFD cut short"
        end = at + count_size + entry_size * ntags + offset_size
        covered.append((at, end - at))
        values = []
        for k in range(ntags):
            code, dtype, count, value = entry.unpack_from(raw, k * entry_size)
            item = TYPE_BYTES.get(dtype)
            if item is None:
                return size, size, f"a tag of unknown type {dtype}"
            if item * count > offset_size:  # the value is elsewhere in the file
                values.append((int.from_bytes(value, "big" if bo == ">" else "little"), item * count))
            elif pointed and count == 1 and dtype in (4, 13, 16, 18) and (code >= 32768 or code in POINTER_TAGS):
                pointers.add(int.from_bytes(value[:item], "big" if bo == ">" else "little"))  # a block's offset
        covered += values
        repeated = _repeated_values(f, end, values)
        if repeated:
            covered.append((end, repeated))
        covered += [(int(o), int(c)) for o, c in zip(p.dataoffsets, p.databytecounts, strict=False) if c]
    covered.sort()
    pos, gaps = 0, []
    for off, length in covered:
        if off > pos:
            gaps.append((pos, off - pos))
        pos = max(pos, off + length)
    if pos < size:
        gaps.append((pos, size - pos))
    if pointers:  # what a tag points to, from there to the next explained byte
        gaps = [(off, min([length, *(q - off for q in pointers if off <= q < off + length)])) for off, length in gaps]
    found, largest, first_at = 0, 0, None
    for off, length in gaps:
        f.seek(off)
        left, at, before = length, off, found
        while left > 0:
            chunk = f.read(min(left, 8 << 20))
            if not chunk:
                break
            stripped = chunk.lstrip(b"\0")
            if stripped:
                found += len(chunk.strip(b"\0"))
                if first_at is None:
                    first_at = at + len(chunk) - len(stripped)
            left -= len(chunk)
            at += len(chunk)
        if found > before:
            largest = max(largest, length)
    if not found:
        return 0, 0, ""
    words = f"about {found} bytes that are neither pixels nor tags (the first at byte {first_at})"
    return found, largest, words


def _repeated_values(f: BinaryIO, end: int, values: list[tuple[int, int]]) -> int:
    """How many bytes from `end` (just after an IFD) are its out-of-line tag values again, in its
    order, each word-aligned as writers place them (0: they are not). tifffile writes each page's
    values after its IFD and then points pages after the first at the first's equal values."""
    if not values or any(off == end for off, _ in values):
        return 0
    want = bytearray()
    for off, length in values:
        f.seek(off)
        chunk = f.read(length)
        if len(chunk) != length:
            return 0
        want += chunk + b"\0" * (length % 2)
    f.seek(end)
    return len(want) if f.read(len(want)) == bytes(want) else 0


def _file_checksum(f: BinaryIO, size: int) -> str:
    h = Hasher()
    f.seek(0)
    left = size
    while left > 0:
        chunk = f.read(min(left, 8 << 20))
        if not chunk:
            raise FormatError(f"truncated TIFF: {left} bytes short of {size}")
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


SKELETON_MAGIC = b"ACQDTIF1"


def _skeleton(f: BinaryIO, pages: Any, n: int, size: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> bytes | None:
    """For an uncompressed, untiled TIFF: every byte that is not pixel data (header, IFDs, tag values,
    blocks that tags point to) with its offset, and each page's strip table. With the pixels this
    gives the file back byte for byte. None if the TIFF is compressed or its strips are not plain."""
    frame_bytes = int(shape[0] * shape[1] * dtype.itemsize)
    table: list[list[tuple[int, int]]] = []
    for i in range(n):
        p = pages[i]
        if p.compression != 1 or p.is_tiled or p.predictor not in (0, 1) or p.fillorder != 1:
            return None
        if len(p.dataoffsets) != len(p.databytecounts):
            raise FormatError(
                f"corrupt TIFF: page {i} has {len(p.dataoffsets)} strip offset(s) and {len(p.databytecounts)} strip "
                "byte count(s)"
            )
        strips = [(int(o), int(c)) for o, c in zip(p.dataoffsets, p.databytecounts, strict=True)]
        if sum(c for _, c in strips) != frame_bytes:
            return None
        table.append(strips)
    ranges = sorted(r for strips in table for r in strips)
    segments: list[tuple[int, int]] = []
    pos = 0
    for off, cnt in ranges:
        if off < pos:
            return None  # overlapping strips: not a plain layout
        if off > pos:
            segments.append((pos, off - pos))
        pos = off + cnt
    if pos < size:
        segments.append((pos, size - pos))
    if pos > size:
        return None
    parts = [SKELETON_MAGIC, struct.pack("<QQ", len(segments), n)]
    for strips in table:
        parts.append(struct.pack("<Q", len(strips)))
        parts.extend(struct.pack("<QQ", o, c) for o, c in strips)
    parts.extend(struct.pack("<QQ", o, c) for o, c in segments)
    for off, length in segments:
        f.seek(off)
        chunk = f.read(length)
        if len(chunk) != length:
            raise FormatError(f"truncated TIFF: wanted {length} bytes at {off}")
        parts.append(chunk)
    return b"".join(parts)


def restore_skeleton(blob: bytes, frames: Any, out: BinaryIO, dtype: np.dtype[Any]) -> None:
    """Write a TIFF back from its skeleton and its frames (source byte order), byte for byte."""
    if not blob.startswith(SKELETON_MAGIC):
        raise ValueError("not an acqd TIFF skeleton")
    pos = len(SKELETON_MAGIC)
    nseg, npages = struct.unpack_from("<QQ", blob, pos)
    pos += 16
    table = []
    for _ in range(npages):
        (k,) = struct.unpack_from("<Q", blob, pos)
        pos += 8
        table.append([struct.unpack_from("<QQ", blob, pos + 16 * j) for j in range(k)])
        pos += 16 * k
    segs = [struct.unpack_from("<QQ", blob, pos + 16 * j) for j in range(nseg)]
    pos += 16 * nseg
    for off, length in segs:
        out.seek(off)
        out.write(blob[pos : pos + length])
        pos += length
    for strips, frame in zip(table, frames, strict=True):
        data = np.ascontiguousarray(frame.astype(dtype, copy=False)).tobytes()
        at = 0
        for off, cnt in strips:
            out.seek(off)
            out.write(data[at : at + cnt])
            at += cnt
