"""Frames, not bytes: detector readers, frame layouts, restore, bad inputs (issue: frames).

Fixtures reproduce the formats of the real files in ../shared/data: MRC2014 with an FEI2 extended
header (Falcon/Velox), unsigned-byte MRC movies (K3, IMOD stamp), Merlin .mib with per-frame headers,
uint16 TIFF stacks with resolution and a private tag (TVIPS-like), raw frames.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import tifffile
import xxhash
import zarr
from ome_zarr_models.v05.image import Image

from acqd.config import Config
from acqd.daemon import Daemon
from acqd.journal import Journal
from acqd.simulate import SimSpec, mrc_header, simulate
from tests.conftest import journal_rows, journal_states, run_acqd
from tests.test_safeguards import audit

PROFILES = {
    "t-mrc-tiff": "reader: mrc\nlayout: tiff\ncodec: {id: lzw}\nfiles: ['*.mrc']\n",
    "t-mrc-zarr": "reader: mrc\nlayout: zarr\ncodec: {id: blosc, cname: zstd, clevel: 1, shuffle: bitshuffle}\n"
    "files: ['*.mrc']\n",
    "t-k3": "reader: mrc\nlayout: tiff\ncodec: {id: lzw}\nfiles: ['*.mrc']\nexpect: {dtype: uint8}\n",
    "t-k2-modes": "reader: mrc\nlayout: tiff\ncodec: {id: lzw}\nfiles: ['*.mrc']\nexpect: {modes: ["
    "{name: counting, dtype: uint8, frame_shape: [40, 56]}, {name: super-resolution, dtype: uint8, "
    "frame_shape: [80, 112]}]}\n",
    "t-orca-modes": "reader: tiff\nlayout: zarr\naxis0: z\nfiles: ['*.tif']\nexpect: {modes: [{name: 16-bit, "
    "dtype: uint16}]}\n",
    "t-mrc-vol": "reader: mrc\nlayout: zarr\naxis0: z\nfiles: ['*.mrc']\n",
    "t-mib": "reader: mib\nlayout: zarr\nfiles: ['*.mib']\n",
    "t-mib-tiff": "reader: mib\nlayout: tiff\ncodec: {id: deflate, level: 1}\nfiles: ['*.mib']\n",
    "t-tiff": "reader: tiff\nlayout: zarr\naxis0: z\nfiles: ['*.tif']\nexpect: {dtype: uint16}\n",
    "t-tiff-any": "reader: tiff\nlayout: zarr\nfiles: ['*.tif']\n",
    "t-tiff-rewrite": "reader: tiff\nlayout: zarr\nfiles: ['*.tif']\ncompressed_tiff: frames\n",
    "t-raw": "reader: raw\nlayout: zarr\nfiles: ['*.raw']\nraw: {shape: [24, 32], dtype: '<u2', header_bytes: 16}\n",
}


def write_profiles(d: Path) -> Path:
    d.mkdir(exist_ok=True)
    for name, body in PROFILES.items():
        (d / f"{name}.yaml").write_text(
            f"apiVersion: acqd/v1\nkind: DetectorProfile\nname: {name}\nsettle: {{window: 0.2s}}\n"
            # these tests look at the layouts themselves, on tiny files a layout's metadata outweighs: the
            # profile's codec, in its layout (tests/test_codecs.py covers the choice and the fallback)
            + ("" if "codec_candidates" in body else "codec_candidates: []\n")
            + ("" if "never_larger" in body else "never_larger: false\n")
            + body
        )
    return d


async def ship(
    tmp_path: Path, detector: str, files: dict[str, bytes], daemon: list[Daemon] | None = None
) -> tuple[Path, Path, Path]:
    """Run the daemon in burst mode over `files`; the daemon itself is appended to `daemon` if given
    (for its metrics)."""
    watch, dest, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    for rel, data in files.items():
        (watch / rel).parent.mkdir(parents=True, exist_ok=True)
        (watch / rel).write_bytes(data)
    dest.mkdir(exist_ok=True)
    cfg = Config.model_validate(
        {
            "instrument": "scope",
            "state_dir": str(state),
            "detectors_dir": str(write_profiles(tmp_path / "det")),
            "watch": [{"path": str(watch), "detector": detector, "settle": "0.2s"}],
            "tiers": {"central": {"url": f"file://{dest}"}},
            "limits": {"retry_initial": "50ms", "retry_max": "100ms"},
        }
    )
    d = Daemon(cfg, once=True, retry_for=120)
    if daemon is not None:
        daemon.append(d)
    result = await d.run(install_signals=False)
    assert result.pending == 0
    return watch, dest / "scope", state


def restore(state: Path, dest: Path, rel: str, out: Path) -> bytes:
    r = run_acqd("restore", rel, str(out), "--state-dir", str(state), "--dest", str(dest.parent))
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def fei_mrc(n: int = 5, ny: int = 24, nx: int = 32, seed: int = 1) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    ext = rng.integers(0, 255, size=768 * n, dtype=np.uint8).tobytes()
    data = rng.integers(0, 6000, size=(n, ny, nx), dtype=np.uint16)
    return mrc_header(n, ny, nx, 6, ext, b"FEI2") + data.tobytes(), data


def k3_mrc(n: int = 4, ny: int = 40, nx: int = 56) -> tuple[bytes, np.ndarray]:
    data = np.random.default_rng(2).poisson(0.8, (n, ny, nx)).astype(np.uint8)
    return mrc_header(n, ny, nx, 0) + data.tobytes(), data


def mib(n: int = 3, ny: int = 16, nx: int = 16, broken: int | None = None) -> tuple[bytes, np.ndarray]:
    data = np.random.default_rng(3).integers(0, 4096, size=(n, ny, nx)).astype(">u2")
    out = b""
    for i, frame in enumerate(data):
        head = f"MQ1,{i + 1:06d},00768,04,{nx:04d},{ny:04d},U16,   2x2,0F,2021-04-15 15:03:32.{i:06d}".encode()
        if i == broken:
            head = b"XX" + head[2:]
        out += head.ljust(768, b"\0") + frame.tobytes()
    return out, data


def tiff_stack(path: Path, n: int = 6) -> np.ndarray:
    data = np.random.default_rng(4).integers(90, 4000, size=(n, 20, 24), dtype=np.uint16)
    with tifffile.TiffWriter(path) as tw:
        for plane in data:
            tw.write(
                plane,
                photometric="minisblack",
                contiguous=False,
                metadata=None,
                software="camera 1.0",
                resolution=(1 / 0.104e-4, 1 / 0.104e-4),
                resolutionunit=3,
                extratags=[(37706, 7, 8, b"TVIPS\x00\x01\x02", True)],
                description="stack from camera",
            )
    return data


async def test_mrc_with_fei2_header_to_tiff_restores_byte_exact(tmp_path: Path) -> None:
    raw, data = fei_mrc()
    _, dest, state = await ship(tmp_path, "t-mrc-tiff", {"s/a.mrc": raw, "s/a.xml": b"<xml/>"})
    tif = tifffile.TiffFile(dest / "s" / "a.mrc~.tif")
    assert np.array_equal(tif.asarray(), data[:, ::-1])  # rows flipped: the IMOD/RELION TIFF convention
    assert tif.pages[0].compression == 5  # LZW
    assert (dest / "s" / "a.xml").read_bytes() == b"<xml/>"  # sidecars are copied
    assert restore(state, dest, "s/a.mrc", tmp_path / "r.mrc") == raw  # header, FEI2 block, pixels
    with mrcfile.open(tmp_path / "r.mrc", permissive=True) as m:
        assert m.header.exttyp == b"FEI2" and int(m.header.nsymbt) == 768 * 5
    # for a little-endian MRC, header + pixels is the whole file: the checksum is the file's own
    manifest = json.loads((dest / "s" / "~acqd-manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["source"] == "s/a.mrc")
    assert entry["checksum"] == "xxh3-128:" + xxhash.xxh3_128_hexdigest(raw)
    assert entry["layout"] == "tiff" and entry["codec"] == "lzw"


async def test_an_epu_movies_extended_header_is_readable_in_the_stored_copy(tmp_path: Path) -> None:
    """An EPU movie's FEI2 extended header (microscope, HT, dose, exposure, one record per frame) was
    kept only inside the bytes for the restore (a facility engineer's first try): no reader or
    harvester saw it. Its first record is in the stored header by field name (mrcfile's dtype), with
    the number of records and the fields that differ between them; the bytes still restore exactly."""
    from mrcfile.dtypes import get_ext_header_dtype

    n = 4
    dtype = get_ext_header_dtype(b"FEI2", "<")
    rec = np.zeros(n + 2, dtype=dtype)  # two records' room past the frames: padding, as EPU leaves it
    rec["Metadata size"][:n] = dtype.itemsize
    rec["Metadata version"][:n] = 2
    rec["Microscope type"][:n] = b"TITAN52337720"
    rec["HT"][:n] = 300000.0
    rec["Integration time"][:n] = 2.5
    rec["Dose"][:n] = [1e21, 2e21, 3e21, 4e21]
    rec["Camera name"][:n] = b"BM-Falcon"
    data = np.random.default_rng(6).integers(0, 6000, size=(n, 24, 32), dtype=np.uint16)
    raw = mrc_header(n, 24, 32, 6, rec.tobytes(), b"FEI2") + data.tobytes()
    _, dest, state = await ship(tmp_path, "t-mrc-zarr", {"m/movie.mrc": raw})
    group = zarr.open_group(dest / "m" / "movie.mrc~.zarr", mode="r")
    meta = group.attrs.asdict()["acqd"]
    header = (
        meta["header"]
        if "fei_extended" in meta["header"]
        else json.loads(bytes(np.asarray(group["acqd-header"][:]).tobytes()))
    )
    fei = header["fei_extended"]
    assert fei["records"] == n and fei["differ"] == ["Dose"], fei
    first = fei["first"]
    assert (first["Microscope type"], first["HT"], first["Integration time"], first["Camera name"]) == (
        "TITAN52337720",
        300000.0,
        2.5,
        "BM-Falcon",
    )
    assert first["Dose"] == 1e21 and "Metadata size" not in first
    assert restore(state, dest, "m/movie.mrc", tmp_path / "r.mrc") == raw


async def test_mrc_movie_to_ome_zarr_validates_and_restores(tmp_path: Path) -> None:
    raw, data = fei_mrc(n=7, seed=5)
    _, dest, state = await ship(tmp_path, "t-mrc-zarr", {"m/movie.mrc": raw})
    path = dest / "m" / "movie.mrc~.zarr"
    group = zarr.open_group(path, mode="r")
    Image.from_zarr(group)  # a valid OME-Zarr 0.5 image (raises if not)
    arr: Any = group["0"]
    assert arr.shape == (7, 24, 32) and arr.chunks == (1, 24, 32)  # one chunk per frame
    assert np.array_equal(arr[:], data)
    assert group.attrs["ome"]["multiscales"][0]["axes"][0]["name"] == "t"  # type: ignore[index]
    header = group.attrs["acqd"]["header"]  # type: ignore[index]
    assert header["nx"] == 32 and header["exttyp"] == "FEI2"  # acquisition metadata travels along
    chunks = [p for p in (path / "0").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert len(chunks) == 1  # sharded: 7 frames in one object, not one object per frame
    assert restore(state, dest, "m/movie.mrc", tmp_path / "r.mrc") == raw


async def test_k3_unsigned_byte_movie(tmp_path: Path) -> None:
    raw, data = k3_mrc()
    _, dest, state = await ship(tmp_path, "t-k3", {"k3.mrc": raw})
    tif = tifffile.TiffFile(dest / "k3.mrc~.tif")
    assert tif.pages[0].dtype == np.uint8 and np.array_equal(tif.asarray(), data[:, ::-1])
    assert restore(state, dest, "k3.mrc", tmp_path / "r.mrc") == raw


async def test_mib_per_frame_headers_restored_byte_exact(tmp_path: Path) -> None:
    raw, data = mib()
    _, dest, state = await ship(tmp_path, "t-mib", {"scan.mib": raw, "scan.hdr": b"HDR,\r\n"})
    arr: Any = zarr.open_group(dest / "scan.mib~.zarr", mode="r")["0"]
    assert np.array_equal(arr[:], data.astype("<u2")[:, ::-1])  # rows as rosettasciio shows them
    assert restore(state, dest, "scan.mib", tmp_path / "r.mib") == raw


async def test_mib_frames_in_the_tiff_layout_are_oriented_as_in_the_zarr_layout(tmp_path: Path) -> None:
    """A stranger's fidelity review: a .mib placed in the TIFF layout kept the file's row order, while
    its Zarr copy (and rosettasciio) show each frame with its rows reversed: the two copies of one
    acquisition showed it upside down from each other. Both as rosettasciio shows it; restore flips
    back, byte-exact."""
    raw, data = mib()
    _, dest, state = await ship(tmp_path, "t-mib-tiff", {"scan.mib": raw})
    with tifffile.TiffFile(dest / "scan.mib~.tif") as tif:
        assert np.array_equal(tif.asarray(), data.astype("<u2")[:, ::-1])  # rows as rosettasciio shows them
    assert restore(state, dest, "scan.mib", tmp_path / "r.mib") == raw


async def test_tiff_stack_to_zarr_restores_pixels_and_tags(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    data = tiff_stack(tmp_path / "src" / "stack.tif")
    raw = (tmp_path / "src" / "stack.tif").read_bytes()
    _, dest, state = await ship(tmp_path, "t-tiff", {"ls/stack.tif": raw})
    group = zarr.open_group(dest / "ls" / "stack.tif~.zarr", mode="r")
    img = Image.from_zarr(group)
    scale = group.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]  # type: ignore[index]
    assert scale[1] == pytest.approx(0.104)  # pixel size from the TIFF resolution, in micrometres
    assert img is not None
    out = restore(state, dest, "ls/stack.tif", tmp_path / "r.tif")
    assert out == raw  # an uncompressed TIFF comes back byte for byte (its non-pixel bytes are kept)
    a, b = tifffile.TiffFile(tmp_path / "src" / "stack.tif"), tifffile.TiffFile(tmp_path / "r.tif")
    assert np.array_equal(b.asarray(), data)
    for pa, pb in zip(a.pages, b.pages, strict=True):
        assert pb.tags[37706].value == pa.tags[37706].value  # the private tag, bytes equal
        assert pb.description == pa.description
        assert pb.tags["Software"].value == pa.tags["Software"].value
        xa, xb = pa.tags["XResolution"].value, pb.tags["XResolution"].value
        assert xa[0] / xa[1] == pytest.approx(xb[0] / xb[1])
        assert pb.tags["ResolutionUnit"].value == pa.tags["ResolutionUnit"].value


async def test_compressed_tiff_source_restores_pixels_and_tags(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    data = np.random.default_rng(9).integers(0, 255, size=(3, 16, 16), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "src" / "c.tif",
        data,
        compression="zlib",
        photometric="minisblack",
        metadata=None,
        description="compressed by the camera",
        software="cam",
    )
    raw = (tmp_path / "src" / "c.tif").read_bytes()
    _, dest, state = await ship(tmp_path, "t-tiff-any", {"c.tif": raw})
    restore(state, dest, "c.tif", tmp_path / "r.tif")
    b = tifffile.TiffFile(tmp_path / "r.tif")
    assert np.array_equal(b.asarray(), data)  # pixels equal; the tags, value for value
    assert b.pages[0].description == "compressed by the camera" and b.pages[0].tags["Software"].value == "cam"


async def test_a_compressed_tiff_is_stored_byte_exact_and_restored_byte_for_byte(tmp_path: Path) -> None:
    """A stranger's fidelity review: an LZW or deflate TIFF was read as frames and compressed again,
    and `acqd restore` gave back its pixels and tags, not its bytes (exit 0; the original's bytes went
    with the release). By default such a file is stored as the detector wrote it, flagged."""
    data = np.random.default_rng(5).integers(90, 200, (6, 32, 40)).astype(np.uint16)
    files = {}
    for comp in ("lzw", "zlib"):
        buf = io.BytesIO()
        tifffile.imwrite(buf, data, compression=comp, photometric="minisblack")
        files[f"{comp}.tif"] = buf.getvalue()
    _, dest, state = await ship(tmp_path, "t-tiff-any", files)
    notes = [d.get("reason", "") for a, d in audit(state) if a == "profile-mismatch"]
    for name, raw in files.items():
        assert not (dest / f"{name}~.zarr").exists(), name
        assert restore(state, dest, name, tmp_path / f"r-{name}") == raw
    assert sum("a compressed TIFF (" in n and "stored byte-exact" in n for n in notes) == 2, notes


async def test_a_multipage_tiff_tifffile_compressed_goes_to_frames(tmp_path: Path) -> None:
    """tifffile writes each page's tag values after its IFD and then points pages after the first at
    the first's equal values: the unreferenced copies were taken for a vendor's bytes that a rewrite
    would lose, and every such stack (LZW, zlib) was stored byte-exact instead of as frames (a profile
    that reads compressed TIFF as frames: `compressed_tiff: frames`)."""
    data = np.random.default_rng(5).integers(90, 200, (6, 32, 40)).astype(np.uint16)
    files = {}
    for comp in ("lzw", "zlib"):
        buf = io.BytesIO()
        tifffile.imwrite(buf, data, compression=comp)
        files[f"{comp}.tif"] = buf.getvalue()
    _, dest, state = await ship(tmp_path, "t-tiff-rewrite", files)
    for name, raw in files.items():
        arr = zarr.open_group(dest / f"{name}~.zarr", mode="r")["0"]
        assert np.array_equal(np.asarray(arr[:]), data), name  # the frames, as a scientist opens them
        restore(state, dest, name, tmp_path / f"r-{name}")
        with tifffile.TiffFile(tmp_path / f"r-{name}") as back, tifffile.TiffFile(io.BytesIO(raw)) as src:
            assert np.array_equal(back.asarray(), data)
            assert [int(p.compression) for p in back.pages] == [int(p.compression) for p in src.pages]


def _cut_imagej_tiff(tmp_path: Path) -> bytes:
    """An ImageJ hyperstack cut short: tifffile writes its first IFD, the planes, then the other IFDs,
    so the cut leaves one page whose chain points past the end (tifffile only logs that)."""
    p = tmp_path / "ij.tif"
    data = np.random.default_rng(5).integers(90, 200, (20, 64, 64)).astype(np.uint16)
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "ZYX"})
    b = p.read_bytes()
    with tifffile.TiffFile(io.BytesIO(b[: len(b) * 6 // 10])) as t:
        assert len(t.pages) == 1  # what a reader that does not follow the chain would see: one plane
    return b[: len(b) * 6 // 10]


def _pyramid(tmp_path: Path) -> bytes:
    img = np.random.default_rng(7).integers(0, 4000, (64, 64)).astype(np.uint16)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        w.write(img, subifds=1)
        w.write(img[::2, ::2], subfiletype=1)  # the reduced level, in a sub-IFD of the page
    return buf.getvalue()


def _orphan_planes(tmp_path: Path) -> bytes:
    """Three planes, the IFD chain listing two: the third plane's pixels are in the file, no page
    points at them (an uncompressed file keeps them in its restore skeleton, not in its frames)."""
    data = np.random.default_rng(8).integers(0, 4000, (3, 384, 384)).astype(np.uint16)  # pages of 288 KiB
    buf = io.BytesIO()
    tifffile.imwrite(buf, data[:2], metadata=None)
    return buf.getvalue() + data[2].tobytes()


def _cut_stack(tmp_path: Path) -> bytes:
    """A stack written page after page (each IFD, then its plane) cut after its 12th plane: the last
    whole page's IFD points past the end."""
    data = np.random.default_rng(9).integers(0, 4000, (20, 96, 96)).astype(np.uint16)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:  # as a camera's software writes plane by plane
        for plane in data:
            w.write(plane, metadata=None, contiguous=False)
    b = buf.getvalue()
    with tifffile.TiffFile(io.BytesIO(b)) as t:
        cut = b[: t.pages[12].dataoffsets[0] - 8]  # the 13th IFD cut before its plane
    with tifffile.TiffFile(io.BytesIO(cut)) as t:
        assert 1 < len(t.pages) < 20  # tifffile gives the whole pages: a short stack, no word of the rest
    return cut


def _looped_chain(tmp_path: Path) -> bytes:
    """A stack of three planes whose last IFD points back at the first (a damaged file): the reason
    named the pages' series, not the loop (a stranger's review)."""
    data = np.random.default_rng(10).integers(0, 4000, (3, 32, 48)).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, photometric="minisblack")
    b = bytearray(buf.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(b))) as t:
        first, last = t.pages[0].offset, t.pages[-1].offset
    ntags = struct.unpack_from("<H", b, last)[0]
    struct.pack_into("<I", b, last + 2 + 12 * ntags, first)
    return bytes(b)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_looped_chain, "chain of IFDs loops back after 3 IFD(s)"),
        (_pyramid, "sub-IFDs"),
        (_orphan_planes, "neither pixels nor tags"),
        (_cut_imagej_tiff, "runs past the end"),
        (_cut_stack, "runs past the end"),
    ],
)
async def test_a_tiff_whose_pages_are_not_all_its_images_is_stored_byte_exact(
    tmp_path: Path, make: Any, why: str
) -> None:
    """A frame view of such a file would show less than it holds (one pyramid level; two of three
    planes; one plane of an ImageJ stack cut short, whose other planes' pixels are there and whose
    IFDs were to come at the end) with nothing said: stored byte-exact, flagged as not frames,
    restored byte for byte."""
    raw = make(tmp_path)
    _, dest, state = await ship(tmp_path, "t-tiff-any", {"s.tif": raw})
    stored = [p.name for p in dest.iterdir() if p.name.startswith("s.tif")]
    assert stored and not any(n.endswith(".zarr") for n in stored), stored
    assert any(a == "profile-mismatch" and why in d["reason"] for a, d in audit(state)), audit(state)
    assert restore(state, dest, "s.tif", tmp_path / "r.tif") == raw


async def test_an_mrc_with_more_bytes_than_its_header_counts_is_stored_byte_exact(tmp_path: Path) -> None:
    """Frames the header does not count yet (a writer that updates it last) or trailing bytes: not the
    header's frames, and not damaged either. Once no process writes it, it is stored as it is
    (it was quarantined, and never shipped anywhere)."""
    raw = fei_mrc()[0] + bytes(1536)
    _, dest, state = await ship(tmp_path, "t-mrc-tiff", {"lies.mrc": raw})
    [(rel, st, _why, _)] = journal_rows(state)
    assert (rel, st) == ("lies.mrc", "verified")
    assert not any(p.name.endswith(".tif") for p in dest.iterdir())  # not the header's frames
    assert any(a == "profile-mismatch" and "1536 extra" in d["reason"] for a, d in audit(state)), audit(state)
    assert restore(state, dest, "lies.mrc", tmp_path / "r.mrc") == raw


def _cut_tiff_plane(tmp_path: Path) -> bytes:
    """A TIFF whose plane's pixel data runs past the end of the file (its IFD written first)."""
    p = tmp_path / "cut.tif"
    tifffile.imwrite(p, np.arange(96 * 64, dtype=np.uint16).reshape(96, 64), metadata=None, photometric="minisblack")
    raw = p.read_bytes()
    with tifffile.TiffFile(p) as t:  # the pixel data comes last: the cut takes pixels, no IFD
        assert int(t.pages[-1].dataoffsets[-1]) + int(t.pages[-1].databytecounts[-1]) == len(raw)
    return raw[: len(raw) - 100]


@pytest.mark.parametrize(
    ("detector", "name", "make", "why"),
    [
        ("t-mrc-tiff", "trunc.mrc", lambda tp: fei_mrc()[0][:-1000], "truncated MRC: the header says 5 frames"),
        ("t-mib", "short.mib", lambda tp: mib()[0][:-10], "of a frame begun: truncated, or still written"),
        # bytes after the last frame that start no frame: they were called a frame cut short (a review)
        ("t-mib", "tail.mib", lambda tp: mib()[0] + b"\0\0garbage", "and 9 bytes after them that are not the start"),
        ("t-tiff-any", "cut.tif", _cut_tiff_plane, "pixel data ends at byte"),
        # a stranger's review: a raw file with bytes past its last whole frame was quarantined
        ("t-raw", "odd.raw", lambda tp: b"H" * 16 + os.urandom(24 * 32 * 2 + 7), "not 16 header bytes plus whole"),
        ("t-raw", "head.raw", lambda tp: b"H" * 16, "its 16 header bytes and no frame"),  # it was quarantined too
    ],
    ids=["mrc", "mib", "mib-trailing", "tiff", "raw", "raw-header-only"],
)
async def test_a_file_cut_short_is_stored_byte_exact_never_as_its_frames_so_far(
    tmp_path: Path, detector: str, name: str, make: Any, why: str
) -> None:
    """A stranger's fidelity review: a movie cut short (its header counts frames the file has not, a
    frame half there) was quarantined, its only copy left on the acquisition disk, while a TIFF cut
    short was stored. Its format says more is to come: once no process writes it, it is stored
    byte-exact (every byte central, flagged with why), never as the frames found so far."""
    raw = make(tmp_path)
    _, dest, state = await ship(tmp_path, detector, {name: raw})
    [(rel, st, _why, _)] = journal_rows(state)
    assert (rel, st) == (name, "verified")
    assert not any(p.name.endswith((".tif", ".zarr")) and p.name != name for p in dest.iterdir())  # not frames
    reasons = [d.get("reason", "") for a, d in audit(state) if a == "profile-mismatch"]
    assert any(why in r for r in reasons), reasons
    assert restore(state, dest, name, tmp_path / "r.bin") == raw


async def test_a_4d_stem_mib_with_fewer_frames_than_its_hdr_counts_is_stored_byte_exact(tmp_path: Path) -> None:
    """A stranger's fidelity review: a scan's .mib cut after 6 of the 9 frames its .hdr counts was
    stored as a clean 6-frame (t, y, x) movie, nothing said. The .hdr says more is to come: stored
    byte-exact, flagged; a whole scan beside it is still stored as its (scan_y, scan_x, y, x) frames."""
    hdr = b"HDR,\t\r\nFrames in Acquisition (Number):\t9\r\nFrames per Trigger (Number):\t3\r\nEnd\t\r\n"
    cut = mib(n=6)[0]
    whole = mib(n=9)[0]
    _, dest, state = await ship(
        tmp_path, "t-mib", {"s/cut.mib": cut, "s/cut.hdr": hdr, "s/whole.mib": whole, "s/whole.hdr": hdr}
    )
    states = journal_states(state)
    assert states["s/cut.mib"] == "verified" and states["s/whole.mib"] == "verified", states
    reasons = [d.get("reason", "") for a, d in audit(state) if a == "profile-mismatch"]
    assert any("the acquisition's .hdr says 9 frames, the MIB holds 6" in r for r in reasons), reasons
    names = sorted(p.name for p in (dest / "s").iterdir())
    assert not any(n.startswith("cut.mib") and n.endswith(".zarr") for n in names), names  # not as frames
    assert restore(state, dest, "s/cut.mib", tmp_path / "r.mib") == cut
    [store] = [dest / "s" / n for n in names if n.startswith("whole.mib") and n.endswith(".zarr")]
    assert zarr.open_group(str(store), mode="r")["0"].shape == (3, 3, 16, 16)


async def test_an_incompressible_file_that_is_not_frames_is_never_stored_larger(tmp_path: Path) -> None:
    """Its zstd trial sampled the start, middle and end of a file smaller than three samples: the
    samples overlapped, zstd found the repeated bytes, and the whole file went into a zstd frame
    larger than itself."""
    rgb = np.random.default_rng(2).integers(0, 255, (300, 300, 3)).astype(np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb, photometric="rgb", compression="zlib")
    raw = buf.getvalue()
    assert 256 << 10 < len(raw) < 768 << 10
    _, dest, state = await ship(tmp_path, "t-tiff-any", {"rgb.tif": raw})
    [stored] = [p for p in dest.iterdir() if p.name.startswith("rgb.tif")]
    assert stored.name == "rgb.tif" and stored.stat().st_size == len(raw)  # as it is: zstd made it larger
    assert restore(state, dest, "rgb.tif", tmp_path / "r.tif") == raw


async def test_a_placement_in_the_other_frame_layout_takes_a_codec_that_fits_it(tmp_path: Path) -> None:
    """`placement: {layout: tiff}` for a profile whose codec is Blosc (or `zarr` for one whose codec
    is LZW) quarantined every frame file as an internal error, and `acqd check` said OK: the layout's
    own default codec is used where the profile's does not fit it."""
    det = write_profiles(tmp_path / "det")
    (det / "blosc-zarr.yaml").write_text(
        "apiVersion: acqd/v1\nkind: DetectorProfile\nname: blosc-zarr\nsettle: {window: 0.2s}\nreader: tiff\n"
        "layout: zarr\ncodec: {id: blosc, cname: lz4, clevel: 1, shuffle: bitshuffle}\nfiles: ['*.tif']\n"
    )
    plane = np.random.default_rng(3).integers(0, 4000, (4, 32, 32)).astype(np.uint16)
    k2 = k3_mrc()[0]
    watch, dest, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (watch / "a").mkdir(parents=True)
    (watch / "b").mkdir()
    tifffile.imwrite(watch / "a" / "s.tif", plane, metadata=None, photometric="minisblack")
    (watch / "b" / "m.mrc").write_bytes(k2)
    cfg = Config.model_validate(
        {
            "instrument": "scope",
            "state_dir": str(state),
            "detectors_dir": str(det),
            "watch": [
                {
                    "path": str(watch / "a"),
                    "prefix": "a",
                    "detector": "blosc-zarr",
                    "settle": "0.2s",
                    "placement": {"layout": "tiff"},
                },
                {
                    "path": str(watch / "b"),
                    "prefix": "b",
                    "detector": "t-k3",
                    "settle": "0.2s",
                    "placement": {"layout": "zarr"},
                },
            ],
            "tiers": {"central": {"url": f"file://{dest}"}},
        }
    )
    result = await Daemon(cfg, once=True, retry_for=60).run(install_signals=False)
    assert (result.stats.verified, result.pending) == (2, 0), journal_rows(state)
    with tifffile.TiffFile(dest / "scope" / "a" / "s.tif~.tif") as t:  # deflate, the TIFF layout's default
        assert np.array_equal(t.asarray(), plane) and int(t.pages[0].compression) == 8
    arr = zarr.open_group(dest / "scope" / "b" / "m.mrc~.zarr", mode="r")["0"]
    assert np.array_equal(np.asarray(arr[:]), k3_mrc()[1])


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("watch", "watch.0.placement: codec 'blosc' cannot be used in the tiff layout"),
        ("policy", "policy rule movies, for watch root"),
    ],
    ids=["watch", "policy"],
)
def test_a_placement_codec_its_layout_cannot_store_is_a_config_error(tmp_path: Path, where: str, said: str) -> None:
    """Named by the placement itself (not the profile's): said by `acqd check` (an error for the watch
    root's own placement; a warning for a policy rule, whose match may take none of the root's files),
    not at every file."""
    placement = "{layout: tiff, codec: {id: blosc}}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: acqd/v1\nkind: RetentionPolicy\nmetadata: {name: p}\nspec:\n  tiers: [central]\n"
        "  rules:\n    - name: movies\n      match: {glob: '*.tif'}\n      placement: {codec: {id: lzw}}\n"
        "  default: {name: rest}\n"
    )
    cfg = tmp_path / "acqd.yaml"
    cfg.write_text(
        f"instrument: x\nstate_dir: {tmp_path}/s\nwatch:\n  - path: {tmp_path}/acq\n    detector: hamamatsu-orca\n"
        + (f"    placement: {placement}\n" if where == "watch" else f"policy: {policy}\n")
        + f"tiers:\n  central: {{url: 'file://{tmp_path}/c'}}\n"
    )
    (tmp_path / "acq").mkdir()
    r = run_acqd("check", "--config", str(cfg))
    assert said in r.stderr, r.stderr
    if where == "watch":
        assert r.returncode == 78, r.stdout + r.stderr
    else:  # a warning: the rule's glob may match none of the root's files (a review: refused valid configs)
        assert r.returncode == 0 and "acqd: warning: " in r.stderr, r.stdout + r.stderr
        assert "codec 'lzw' cannot be used in the zarr layout" in r.stderr, r.stderr
        # run anyway: the file the rule takes fails (named, kept), every other file of the round ships
        # (a placer's error once ended the tracker's whole round: nothing shipped any more)
        plane = np.arange(64 * 64, dtype="uint16").reshape(64, 64)
        tifffile.imwrite(tmp_path / "acq" / "a.tif", plane)
        tifffile.imwrite(tmp_path / "acq" / "b.tiff", plane)
        cfg.write_text(
            cfg.read_text().replace("detector: hamamatsu-orca\n", "detector: hamamatsu-orca\n    settle: 0.2s\n")
        )
        r = run_acqd("run", "--once", "--retry-for", "6s", "--config", str(cfg))
        assert r.returncode == 1 and "a.tif" in r.stderr, r.stdout + r.stderr
        assert journal_states(tmp_path / "s").get("b.tiff") == "verified", r.stderr
        assert (tmp_path / "acq" / "a.tif").exists()


async def test_a_file_quarantined_by_an_internal_error_is_tried_again_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An internal error (a bug, a configuration the code did not foresee) quarantines a file after
    a few attempts; the file has not changed, so nothing would ever ship it again. The next start
    (an upgrade, a configuration fixed) tries it again; other quarantines stay as they are."""
    from acqd.layouts.frames import ZarrLayout

    data = tiff_stack(tmp_path / "s.tif")
    files = {"ok/s.tif": (tmp_path / "s.tif").read_bytes(), "bad.tif": b"II*\0\0\0\0\0"}
    real = ZarrLayout.write

    def broken(self: Any, *a: Any, **k: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ZarrLayout, "write", broken)
    _, dest, state = await ship(tmp_path, "t-tiff", files)
    rows = {r[0]: r for r in journal_rows(state)}
    assert rows["ok/s.tif"][1] == "quarantined" and "please report it" in (rows["ok/s.tif"][2] or ""), rows
    assert rows["bad.tif"][1] == "quarantined"
    monkeypatch.setattr(ZarrLayout, "write", real)
    await ship(tmp_path, "t-tiff", {})
    rows = {r[0]: r for r in journal_rows(state)}
    assert rows["ok/s.tif"][1] == "verified", rows
    assert rows["bad.tif"][1] == "quarantined" and "no image in it" in (rows["bad.tif"][2] or ""), rows
    assert np.array_equal(np.asarray(zarr.open_group(dest / "ok" / "s.tif~.zarr", mode="r")["0"][:]), data)
    assert any(a == "retry" and "tried again at this start" in d["reason"] for a, d in audit(state))


async def test_raw_frames_with_header(tmp_path: Path) -> None:
    data = np.random.default_rng(6).integers(0, 65535, size=(3, 24, 32), dtype=np.uint16)
    raw = b"H" * 16 + data.tobytes()
    _, dest, state = await ship(tmp_path, "t-raw", {"r.raw": raw})
    assert np.array_equal(zarr.open_group(dest / "r.raw~.zarr", mode="r")["0"][:], data)  # type: ignore[index]
    assert restore(state, dest, "r.raw", tmp_path / "out.raw") == raw


# --- bad inputs: a precise reason, an audit entry, nothing lost -------------------------------


def _corrupt_tiff(tmp_path: Path) -> bytes:
    p = tmp_path / "c.tif"
    tiff_stack(p, n=2)
    b = bytearray(p.read_bytes())
    struct.pack_into("<I", b, 4, len(b) + 4096)  # first IFD offset past the end of the file
    return bytes(b)


BAD: list[tuple[str, str, Any, str]] = [
    ("t-mrc-tiff", "notmrc.mrc", lambda tp: b"\x00" * 4096, "not an MRC file"),
    ("t-tiff", "bad.tif", _corrupt_tiff, "corrupt TIFF"),
    ("t-tiff", "noimage.tif", lambda tp: b"II*\0\0\0\0\0", "corrupt TIFF: no image in it"),
    ("t-mib", "bad.mib", lambda tp: mib(broken=1)[0], "broken MIB frame header"),
]


@pytest.mark.parametrize(("detector", "name", "make", "reason"), BAD, ids=[b[1] for b in BAD])
async def test_bad_input_is_quarantined_with_reason(
    tmp_path: Path, detector: str, name: str, make: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    content = make(tmp_path)
    watch, dest, state = await ship(tmp_path, detector, {name: content})
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"quarantined {name!r}")]
    assert said and reason in said[0] and "`touch` it to try again" in said[0], said  # and what to do
    [(rel, st, why, _)] = journal_rows(state)
    assert (rel, st) == (name, "quarantined")
    assert reason in (why or ""), why
    assert (watch / name).read_bytes() == content  # nothing lost, nothing touched
    assert not any(p.name.startswith(name) for p in dest.rglob("*"))  # nothing half-shipped
    j = Journal(state / "journal.sqlite", readonly=True)
    try:
        audit = [(a, d) for _, _, a, d in j.audit_log()]
    finally:
        j.close()
    assert any(a == "quarantined" and reason in d["reason"] for a, d in audit)
    # `acqd restore` of it says why there is nothing to restore (it said only "no verified copy")
    r = run_acqd("restore", name, str(tmp_path / "out"), "--state-dir", str(state), "--dest", str(dest.parent))
    assert r.returncode != 0 and "is quarantined: " in r.stderr and reason in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_profile_with_a_bad_codec_is_a_config_error(tmp_path: Path) -> None:
    det = tmp_path / "det"
    det.mkdir()
    (det / "cam.yaml").write_text(
        "apiVersion: acqd/v1\nkind: DetectorProfile\nname: cam\nreader: mrc\nlayout: zarr\n"
        "codec: {id: blosc, cname: lz5}\n"
    )
    cfg = tmp_path / "acqd.yaml"
    cfg.write_text(
        f"instrument: x\nstate_dir: {tmp_path}/s\ndetectors_dir: {det}\nwatch:\n  - path: {tmp_path}/acq\n"
        f"    detector: cam\ntiers:\n  c: {{url: 'file://{tmp_path}/c'}}\n"
    )
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 78
    assert "cam.yaml:6: codec" in r.stderr and "lz5" in r.stderr


def test_simulators_are_deterministic_and_valid(tmp_path: Path) -> None:
    spec = SimSpec(files=1, frames=3, height=64, width=80, seed=11)
    a = simulate("gatan-k3", tmp_path / "a", spec)
    b = simulate("gatan-k3", tmp_path / "b", spec)
    assert a[0].read_bytes() == b[0].read_bytes()
    assert mrcfile.validate(str(a[0]), print_file=open(os.devnull, "w"))  # noqa: SIM115
    with mrcfile.open(a[0], permissive=True) as m:
        counts = np.asarray(m.data).view(np.uint8)
    assert 0.7 < counts.mean() < 0.9  # ~0.8 electrons per pixel per frame
    f = simulate("falcon", tmp_path / "f", SimSpec(files=1, frames=2, height=32, width=32))
    assert f[0].name.endswith("_fractions.mrc") and f[0].with_name("FoilHole_1000_Data.xml").exists()
    ls = simulate("hamamatsu-orca", tmp_path / "l", SimSpec(files=1, frames=4, height=256, width=256))
    planes = tifffile.imread(ls[0])
    assert planes.shape == (4, 256, 256) and 95 < np.median(planes) < 110  # camera offset ~100 ADU


async def test_reader_plugin_from_an_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab adds a format without forking: a distribution with an `acqd.readers` entry point."""
    site = tmp_path / "site"
    (site / "mylab_reader-0.1.dist-info").mkdir(parents=True)
    (site / "mylab_reader-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mylab-reader\nVersion: 0.1\n"
    )
    (site / "mylab_reader-0.1.dist-info" / "entry_points.txt").write_text(
        "[acqd.readers]\nmylab = mylab_reader:open_mylab\n"
    )
    (site / "mylab_reader.py").write_text(
        "import numpy as np\n"
        "from acqd.readers.base import FrameSource, read_exact\n"
        "def open_mylab(f, size, expect, options):\n"
        "    n = (size - 4) // 64\n"
        "    def read(a, b):\n"
        "        return np.frombuffer(read_exact(f, 4 + a * 64, (b - a) * 64), '<u2').reshape(b - a, 4, 8)\n"
        "    return FrameSource('mylab', (n, 4, 8), np.dtype('<u2'), {'magic': 'LAB1'}, read,\n"
        "                       restore=read_exact(f, 0, 4))\n"
    )
    monkeypatch.syspath_prepend(str(site))
    PROFILES["t-plugin"] = "reader: mylab\nlayout: zarr\nfiles: ['*.lab']\n"
    try:
        data = np.arange(3 * 32, dtype="<u2").reshape(3, 4, 8)
        raw = b"LAB1" + data.tobytes()
        _, dest, state = await ship(tmp_path, "t-plugin", {"x.lab": raw})
    finally:
        del PROFILES["t-plugin"]
    assert np.array_equal(zarr.open_group(dest / "x.lab~.zarr", mode="r")["0"][:], data)  # type: ignore[index]
    assert journal_rows(state)[0][1] == "verified"


def _raw_mib(frames: int = 2, ny: int = 16, nx: int = 16) -> bytes:
    """Merlin's raw mode (pixel type R64): 12-bit counters packed as read out, 1.5 bytes a pixel."""
    out = b""
    rng = np.random.default_rng(5)
    for i in range(frames):
        head = f"MQ1,{i + 1:06d},00384,01,{nx:04d},{ny:04d},R64,   1x1,01,2021-04-15 15:03:32.{i:06d},0.001,0,0,0,12"
        out += head.encode().ljust(384, b"\0") + rng.integers(0, 256, ny * nx * 12 // 8, dtype=np.uint8).tobytes()
    return out


@pytest.mark.parametrize(
    ("detector", "rel", "kind"),
    [
        ("t-tiff-any", "m/movie.tif", "mrc"),  # an MRC named .tif
        ("t-tiff-any", "m/frames.tif", "mib"),  # a MIB named .tif
        ("t-mrc-zarr", "m/stack.mrc", "tiff"),  # a TIFF named .mrc
        ("t-mib", "m/raw.mib", "raw-mib"),  # Merlin's raw mode: no typed pixels
    ],
)
async def test_a_valid_file_the_reader_cannot_read_as_frames_is_stored_byte_exact(
    tmp_path: Path, detector: str, rel: str, kind: str
) -> None:
    """Found by a stranger's fidelity review (twenty-sixth session): a valid file of another format
    under a name the profile gives its reader (an MRC named .tif) was quarantined as a corrupt TIFF,
    and a raw-mode Merlin MIB as truncated: never stored, their only copy on the acquisition disk.
    A file whose first bytes say another format acqd knows, and a raw-mode MIB, are stored byte-exact
    with the reason (profile mismatch); a damaged file of the reader's own format is still quarantined."""
    if kind == "mrc":
        raw, _ = fei_mrc()
    elif kind == "mib":
        raw, _ = mib()
    elif kind == "raw-mib":
        raw = _raw_mib()
    else:
        (tmp_path / "src").mkdir()
        tiff_stack(tmp_path / "src" / "s.tif")
        raw = (tmp_path / "src" / "s.tif").read_bytes()
    _, dest, state = await ship(tmp_path, detector, {rel: raw, "m/broken.tif": b"II*\0" + b"\xff" * 200})
    states = journal_states(state)
    assert states[rel] == "verified", states
    assert restore(state, dest, rel, tmp_path / "r.bin") == raw
    reasons = [d.get("reason", "") for a, d in audit(state) if a == "profile-mismatch"]
    assert any("not read as frames" in r for r in reasons), reasons
    if detector == "t-tiff-any":  # garbage behind a TIFF's magic: damaged, not another format
        assert states["m/broken.tif"] == "quarantined", states
