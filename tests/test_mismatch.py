"""Valid but unexpected files are shipped, not stranded (issue 13): a file that reads and only differs
from its detector profile's modes (a K2 linear-mode uint16 image with an FEI1 extended header, a
float32 image, a uint8 TIFF in an sCMOS folder) is stored faithfully in its own dtype, with a
`profile-mismatch` audit entry, event, metric and manifest note; a file cut short is stored byte-exact
and flagged (its format says more is to come); a file that cannot be read (a header that contradicts
itself) is still quarantined. Run with the real daemon in burst mode."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import tifffile
import zarr

from acqd.config import Config
from acqd.daemon import Daemon
from acqd.events import event_payload
from acqd.journal import Journal
from acqd.simulate import mrc_header
from acqd.values import Outcome
from tests.conftest import journal_rows
from tests.test_fidelity import restore_cli, stored
from tests.test_frames import PROFILES, ship, write_profiles


def _mrc(data: np.ndarray, mode: int, ext: bytes = b"", exttyp: bytes = b"") -> bytes:
    n, ny, nx = data.shape
    return mrc_header(n, ny, nx, mode, ext, exttyp) + data.tobytes()


def _audit(state: Path, action: str) -> dict[str, str]:
    j = Journal(state / "journal.sqlite", readonly=True)
    try:
        rel = dict(j._db.execute("SELECT id, relpath FROM files").fetchall())
        return {rel[fid]: d["reason"] for _, fid, a, d in j.audit_log() if a == action and fid is not None}
    finally:
        j.close()


async def test_valid_mrc_outside_the_profiles_modes_is_stored_and_flagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    counting = rng.poisson(0.8, (3, 40, 56)).astype(np.uint8)
    superres = rng.poisson(0.2, (2, 80, 112)).astype(np.uint8)
    linear = rng.integers(0, 9000, (1, 40, 56), dtype=np.uint16)  # EPU's K2 image: integrated, FEI1 header
    floats = rng.normal(3.0, 1.0, (2, 40, 56)).astype(np.float32)
    files = {
        "s/counting.mrc": _mrc(counting, 0),
        "s/superres.mrc": _mrc(superres, 0),
        "s/linear.mrc": _mrc(linear, 6, bytes(range(256)) * 3, b"FEI1"),
        "s/float.mrc": _mrc(floats, 2),
        "s/trunc.mrc": _mrc(counting, 0)[:-100],
        "s/bad.mrc": mrc_header(0, 40, 56, 0) + counting.tobytes(),  # no frames, yet pixels: damaged
    }
    daemon: list[Any] = []
    _, dest, state = await ship(tmp_path, "t-k2-modes", files, daemon)
    states = {rel: st for rel, st, _, _ in journal_rows(state)}
    assert states == {
        "s/counting.mrc": "verified",
        "s/superres.mrc": "verified",
        "s/linear.mrc": "verified",
        "s/float.mrc": "verified",
        "s/trunc.mrc": "verified",  # cut short: stored byte-exact, flagged
        "s/bad.mrc": "quarantined",  # cannot be read: quarantine stays for that
    }
    notes = _audit(state, "profile-mismatch")
    assert sorted(notes) == ["s/float.mrc", "s/linear.mrc", "s/trunc.mrc"]
    assert "truncated MRC" in notes["s/trunc.mrc"]
    assert restore_cli(state, dest, "s/trunc.mrc", tmp_path / "t.mrc")
    assert (tmp_path / "t.mrc").read_bytes() == files["s/trunc.mrc"]
    assert "uint16 frames of 40x56" in notes["s/linear.mrc"] and "counting (uint8 40x56)" in notes["s/linear.mrc"]
    assert "float32 frames of 40x56" in notes["s/float.mrc"]
    # stored in its own dtype, as the TIFF layout stores every MRC (rows per the IMOD/RELION convention)
    for rel, data in (("s/linear.mrc", linear), ("s/float.mrc", floats)):
        tif = tifffile.TiffFile(stored(state, dest.parent, rel))
        assert tif.pages[0].dtype == data.dtype
        assert np.array_equal(tif.asarray().reshape(data.shape), data[:, ::-1])
        assert "profile_mismatch" in tif.pages[0].description  # the copy says so too
    assert restore_cli(state, dest, "s/linear.mrc", tmp_path / "r.mrc")
    assert (tmp_path / "r.mrc").read_bytes() == files["s/linear.mrc"]  # FEI1 block and all
    manifest = json.loads((dest / "s" / "~acqd-manifest.json").read_text())
    flagged = {f["source"]: f.get("profile_mismatch") for f in manifest["files"]}
    assert flagged["s/linear.mrc"] == notes["s/linear.mrc"] and flagged["s/float.mrc"] == notes["s/float.mrc"]
    assert flagged["s/counting.mrc"] is None and flagged["s/superres.mrc"] is None
    m = daemon[0].metrics
    assert m.value("acqd_files_total", detector="t-k2-modes", outcome="profile-mismatch") == 3
    assert m.value("acqd_files_total", detector="t-k2-modes", outcome="verified") == 5
    assert m.value("acqd_files_total", detector="t-k2-modes", outcome="quarantined") == 1


async def test_uint8_tiff_in_an_scmos_folder_is_stored_as_uint8_and_flagged(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    tvips = np.random.default_rng(14).integers(0, 255, (64, 48), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "src" / "tvips.tif", tvips, extratags=[(37706, 7, 8, b"TVIPS\x00\x01\x02", True)])
    planes = np.random.default_rng(15).integers(90, 4000, (3, 20, 24), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "src" / "orca.tif", planes, photometric="minisblack")
    files = {f"ls/{n}": (tmp_path / "src" / n).read_bytes() for n in ("tvips.tif", "orca.tif")}
    _, dest, state = await ship(tmp_path, "t-orca-modes", files)
    assert {st for _, st, _, _ in journal_rows(state)} == {"verified"}
    notes = _audit(state, "profile-mismatch")
    assert list(notes) == ["ls/tvips.tif"] and "uint8" in notes["ls/tvips.tif"]
    group = zarr.open_group(stored(state, dest.parent, "ls/tvips.tif"), mode="r")
    arr: Any = group["0"]
    assert arr.dtype == np.uint8 and np.array_equal(np.asarray(arr[:]).reshape(tvips.shape), tvips)
    assert "16-bit (uint16 any size)" in group.attrs["acqd"]["profile_mismatch"]  # type: ignore[index,operator]
    restore_cli(state, dest, "ls/tvips.tif", tmp_path / "r.tif")
    assert (tmp_path / "r.tif").read_bytes() == files["ls/tvips.tif"]


def test_profile_mismatch_event_says_where_the_copy_is() -> None:
    o = Outcome(kind="profile-mismatch", relpath="a.mrc", session="s", detector="d", tier="t", dest="file:///x")
    body = event_payload("scope", o)
    assert body["type"] == "file.profile-mismatch" and body["copy"]["url"] == "file:///x"


# --- valid files no frame layout represents: stored byte-exact, never quarantined -------------------


def _tif(data: np.ndarray, **kw: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, **kw)
    return buf.getvalue()


def _copies(state: Path) -> dict[str, tuple[str, str, int, int]]:
    """relpath -> (layout, codec, stored bytes, source bytes) of its verified copy."""
    j = Journal(state / "journal.sqlite", readonly=True)
    try:
        rows = j._db.execute(
            "SELECT f.relpath, c.layout, c.codec, c.stored_bytes, f.size FROM copies c JOIN files f ON f.id = c.file_id"
            " WHERE c.state = 'verified'"
        ).fetchall()
    finally:
        j.close()
    return {r: (layout, codec, int(stored_bytes), int(size)) for r, layout, codec, stored_bytes, size in rows}


def _ome(tiffdata: str, sizez: int) -> str:
    """OME-XML of one 64 x 64 uint16 image of `sizez` planes mapped to IFDs by `tiffdata`."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="64" SizeY="48" '
        f'SizeZ="{sizez}" SizeC="1" SizeT="1" PhysicalSizeX="0.1" PhysicalSizeY="0.1" PhysicalSizeZ="0.5">'
        f'<Channel ID="Channel:0:0" SamplesPerPixel="1"/>{tiffdata}</Pixels></Image></OME>'
    )


def _stacks_not_in_file_order(gray: np.ndarray) -> dict[str, bytes]:
    """TIFFs whose own metadata makes their pages another stack than the pages in file order (a
    stranger's fidelity review: each was stored as a z stack of its pages, the stack upside down, an
    overview image as its first plane, stage positions as planes)."""
    planes = np.stack([gray + k for k in range(3)])
    positions = io.BytesIO()  # four OME images (stage positions), one plane each
    with tifffile.TiffWriter(positions, ome=True) as tw:
        for i in range(4):
            tw.write(
                gray + i,
                photometric="minisblack",
                metadata={"axes": "YX", "Name": f"Pos{i}", "Plane": {"PositionX": [100.0 * i], "PositionY": [0.0]}},
            )
    backwards = "".join(f'<TiffData FirstZ="{z}" IFD="{2 - z}" PlaneCount="1"/>' for z in range(3))
    overview = '<TiffData FirstZ="0" IFD="1" PlaneCount="3"/>'  # IFD 0: an overview, not a plane
    four = np.stack([gray // 2, *planes])

    def part(first: int) -> str:  # one file of a dataset of two (Micro-Manager's, Bio-Formats' split files)
        return "".join(
            f'<TiffData FirstZ="{z}" IFD="0" PlaneCount="3"><UUID FileName="p{z // 3}.ome.tif">urn:uuid:{z}</UUID>'
            "</TiffData>"
            for z in (0, 3)
        )

    return {
        # planes 0-2 and 3-5 of one 6-plane dataset: each was stored as its own stack from z = 0 (a review)
        "p0.ome.tif": _tif(planes, photometric="minisblack", metadata=None, description=_ome(part(0), 6)),
        "p1.ome.tif": _tif(planes, photometric="minisblack", metadata=None, description=_ome(part(3), 6)),
        "positions.ome.tif": positions.getvalue(),
        "reversed.ome.tif": _tif(planes, photometric="minisblack", metadata=None, description=_ome(backwards, 3)),
        "overview.ome.tif": _tif(four, photometric="minisblack", metadata=None, description=_ome(overview, 3)),
        "images-3-of-4.tif": _tif(
            four, photometric="minisblack", metadata=None, description="ImageJ=1.53t\nimages=3\nslices=3\n"
        ),
    }


def _unframed_tiffs() -> tuple[dict[str, bytes], dict[str, str]]:
    """TIFFs that read, and that the frame layouts cannot store as 2-D gray frames and give back in
    their own form (name -> bytes), with what each one's profile-mismatch note must say."""
    rng = np.random.default_rng(16)
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = ((yy // 8 * 40 + xx // 8 * 16) % 256).astype(np.uint8)  # flat patches: compresses
    gray = rng.integers(0, 4000, (48, 64), dtype=np.uint16)
    pyramid = io.BytesIO()
    with tifffile.TiffWriter(pyramid) as tw:  # a full image and its thumbnail
        tw.write(gray)
        tw.write(gray[::4, ::4])
    two_sizes = io.BytesIO()  # a stack whose second page has another pixel size (a stranger's review)
    with tifffile.TiffWriter(two_sizes) as tw:
        tw.write(gray, photometric="minisblack", resolution=(10000, 10000), resolutionunit="CENTIMETER")
        tw.write(gray, photometric="minisblack", resolution=(20000, 20000), resolutionunit="CENTIMETER")
    mixed = io.BytesIO()  # pages compressed differently: raw, then LZW
    with tifffile.TiffWriter(mixed) as tw:
        tw.write(gray, photometric="minisblack", metadata=None)
        tw.write(gray, photometric="minisblack", compression="lzw", metadata=None)
    files = {
        **_stacks_not_in_file_order(gray),
        "two-pixel-sizes.tif": two_sizes.getvalue(),
        # values whose meaning a frame layout drops (a stranger's fidelity review: MinIsWhite was written
        # back as MinIsBlack, the image shown inverted), rows shown flipped
        "palette.tif": _tif(
            rng.integers(0, 255, (20, 24), dtype=np.uint8),
            photometric="palette",
            colormap=rng.integers(0, 65535, (3, 256), dtype=np.uint16),
        ),
        "miniswhite.tif": _tif(gray, photometric="miniswhite"),
        "orientation.tif": _tif(gray, photometric="minisblack", extratags=[(274, "H", 1, 4, True)]),
        "compressed-differently.tif": mixed.getvalue(),
        "rgb.tif": _tif(np.stack([smooth, smooth[::-1], smooth // 2], -1), photometric="rgb"),
        "rgb-noise.tif": _tif(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), photometric="rgb"),
        "planar.tif": _tif(np.stack([smooth, smooth // 2, smooth // 3]), photometric="rgb", planarconfig="separate"),
        "tiled.tif": _tif(gray, tile=(16, 16)),
        "tiled-deflate.tif": _tif(gray, tile=(16, 16), compression="zlib"),
        "jpeg.tif": _tif(smooth, compression="jpeg"),
        "float-predictor.tif": _tif(rng.normal(size=(48, 64)).astype(np.float32), compression="zlib", predictor=3),
        "pyramid.tif": pyramid.getvalue(),
        "bilevel.tif": _tif(smooth > 128),
    }
    why = {
        "positions.ome.tif": "4 image series (OME images), not one stack of planes",
        "reversed.ome.tif": "OME metadata puts its planes on pages in another order",
        "p0.ome.tif": "OME metadata counts 6 plane(s) and the file holds 3: one file of a multi-file dataset",
        "p1.ome.tif": "OME metadata counts 6 plane(s) and the file holds 3: one file of a multi-file dataset",
        "overview.ome.tif": "OME metadata counts 3 plane(s) in 4 pages",
        "images-3-of-4.tif": "ImageJ metadata counts 3 plane(s) in 4 pages",
        "palette.tif": "photometric interpretation PALETTE",
        "miniswhite.tif": "photometric interpretation MINISWHITE",
        "orientation.tif": "orientation 4",
        "compressed-differently.tif": "pages compressed differently (page 1: LZW",
        "two-pixel-sizes.tif": "pages whose pixel sizes differ (page 1: (20000.0, 20000.0) per CENTIMETER",
        "rgb.tif": "3 samples per pixel (RGB)",
        "rgb-noise.tif": "3 samples per pixel (RGB)",
        "planar.tif": "3 samples per pixel (RGB, planar)",
        "tiled.tif": "tiles",
        "tiled-deflate.tif": "tiles",
        "jpeg.tif": "JPEG compression",
        "float-predictor.tif": "predictor FLOATINGPOINT",
        "pyramid.tif": "pages that differ (page 1: (12, 16) uint16",
        "bilevel.tif": "1-bit samples",
    }
    return files, why


async def _ship_flagged(tmp_path: Path, detector: str, files: dict[str, bytes], frames: set[str]) -> None:
    """Ship `files`: `frames` are stored by the profile's frame layout, the damaged `bad-*` are
    quarantined, and the rest (valid, not frames, or `cut-*` short) as the issue asks: verified, stored byte-exact (zstd
    where it shrinks, never larger), flagged with the reason (audit, metric, manifest). Every verified
    file comes back byte for byte from `acqd restore`."""
    daemon: list[Any] = []
    _, dest, state = await ship(tmp_path, detector, files, daemon)
    states = {rel: st for rel, st, _, _ in journal_rows(state)}
    bad = {rel for rel in files if rel.rpartition("/")[2].startswith("bad-")}
    assert {rel for rel, st in states.items() if st == "quarantined"} == bad  # damaged: quarantine stays for that
    assert {rel for rel, st in states.items() if st == "verified"} == set(files) - bad
    copies = _copies(state)
    notes = _audit(state, "profile-mismatch")
    unframed = {rel for rel, (layout, *_) in copies.items() if layout == "copy"}
    assert unframed == set(files) - bad - {f"s/{name}" for name in frames}
    assert set(notes) >= unframed
    manifest = json.loads((dest / "s" / "~acqd-manifest.json").read_text())
    flagged = {f["source"]: f.get("profile_mismatch") for f in manifest["files"]}
    for rel in unframed:
        *_, stored_bytes, size = copies[rel]
        assert stored_bytes <= size, rel  # never larger than the source
        assert flagged[rel] == notes[rel]
    for rel in copies:
        out = tmp_path / ("r-" + rel.replace("/", "-"))
        said = restore_cli(state, dest, rel, out)
        assert out.read_bytes() == files[rel], rel
        assert said.rstrip().endswith("OK"), said
    m = daemon[0].metrics
    assert m.value("acqd_files_total", detector=detector, outcome="profile-mismatch") == len(notes)
    assert m.value("acqd_files_total", detector=detector, outcome="quarantined") == len(bad)


async def test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """RGB, planar, tiled, JPEG, floating-point predictor, pyramid and 1-bit TIFFs read fine but are not
    2-D gray frames acqd can give back in their own form: each is stored byte-exact with a
    profile-mismatch note saying why (palette and MinIsWhite too: their values' meaning is not in a
    frame layout; OME or ImageJ metadata that makes other planes of the pages); gray TIFFs beside
    them (float16, big-endian, int8, complex64) still go to Zarr; cut or corrupt ones are
    quarantined. Both ways a plan is made: a fixed codec (found when writing) and a session's choice
    (found when measuring)."""
    files, why = _unframed_tiffs()
    gray = np.random.default_rng(17).integers(0, 4000, (2, 48, 64), dtype=np.uint16)
    src = {f"s/{k}": v for k, v in files.items()}
    src["s/gray.tif"] = _tif(gray, photometric="minisblack")
    rng = np.random.default_rng(19)  # unusual, and frames all the same: stored by the frame layout
    unusual = {
        "float16.tif": _tif(rng.normal(size=(20, 24)).astype(np.float16)),
        "big-endian.tif": _tif(gray, byteorder=">", photometric="minisblack"),
        "int8.tif": _tif(rng.integers(-100, 100, (20, 24)).astype(np.int8)),
        "complex64.tif": _tif(rng.normal(size=(20, 24)).astype(np.complex64)),
    }
    src.update({f"s/{k}": v for k, v in unusual.items()})
    src["s/cut-rgb.tif"] = files["rgb-noise.tif"][: len(files["rgb-noise.tif"]) - 3000]
    src["s/cut-tiled.tif"] = files["tiled.tif"][: len(files["tiled.tif"]) - 1000]
    src["s/bad-garbage.tif"] = b"II*\x00" + bytes(range(256)) * 4
    for detector, body in (
        ("t-tiff-any", None),
        ("t-tiff-chosen", "reader: tiff\nlayout: zarr\naxis0: z\nfiles: ['*.tif']\ncodec_candidates: null\n"),
    ):
        if body is not None:
            monkeypatch.setitem(PROFILES, detector, body)
        run = tmp_path / detector
        run.mkdir()
        await _ship_flagged(run, detector, src, frames={"gray.tif", *unusual})
        state, central = run / "state", run / "central"
        notes = _audit(state, "profile-mismatch")
        for cut in ("s/cut-tiled.tif", "s/cut-rgb.tif"):  # stored byte-exact as cut short, not as a valid file
            assert "truncated" in notes[cut] or "past the end" in notes[cut], notes[cut]
        for name, reason in why.items():
            assert reason in notes[f"s/{name}"], (name, notes[f"s/{name}"])
            assert "stored byte-exact" not in notes[f"s/{name}"]  # the note says what the file is
        copies = _copies(state)
        assert copies["s/rgb.tif"][1].startswith("zstd")  # compresses: a .zst frame
        assert copies["s/rgb-noise.tif"][1] == "none"  # does not: as it is
        assert stored(state, central, "s/rgb.tif").name == "rgb.tif~.zst"
        assert copies["s/gray.tif"][0] == "zarr" and "s/gray.tif" not in notes
        group = zarr.open_group(stored(state, central, "s/gray.tif"), mode="r")
        assert np.array_equal(np.asarray(group["0"][:]).reshape(gray.shape), gray)  # type: ignore[index]


async def test_valid_mrc_modes_no_frame_layout_represents_are_stored_byte_exact(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """SerialEM's 4-bit mode 101 (odd widths too), complex int16 mode 3 and IMOD's RGB mode 16 are
    valid MRC files without a dtype for typed frames: stored byte-exact and flagged, in a session
    whose codec is measured (t-k3-chosen) and with a fixed codec (t-k2-modes); complex64 (mode 4),
    float16 (mode 12), big-endian and odd-extended-header files are typed frames and go to TIFF; a
    header older than MRC2000 (no 'MAP ') whose sizes are the file's is stored byte-exact, as is a
    4-bit file cut short (flagged); a header with a mode no standard defines, or without 'MAP ' and
    sizes that do not add up, is quarantined."""
    rng = np.random.default_rng(18)
    smooth = np.repeat(np.arange(0, 256, 8, dtype=np.uint8), 35)[: 20 * 28].tobytes()

    def raw(mode: int, nz: int, ny: int, nx: int, data: bytes) -> bytes:
        return mrc_header(nz, ny, nx, mode, b"\x01" * 37, b"SERI") + data

    files = {
        "s/serialem-4bit.mrc": raw(101, 2, 20, 56, smooth * 2),
        "s/odd-4bit.mrc": raw(101, 1, 20, 55, bytes(rng.integers(0, 256, 20 * 28, dtype=np.uint8))),
        "s/complex.mrc": raw(3, 1, 20, 28, rng.integers(-900, 900, 20 * 28 * 2, dtype=np.int16).tobytes()),
        "s/rgb.mrc": raw(16, 1, 20, 28, bytes(rng.integers(0, 256, 20 * 28 * 3, dtype=np.uint8))),
        "s/counting.mrc": _mrc(rng.poisson(0.8, (3, 40, 56)).astype(np.uint8), 0),
        # unusual, and frames all the same: stored by the frame layout
        "s/complex64.mrc": _mrc(rng.normal(size=(2, 20, 28)).astype(np.complex64), 4),
        "s/float16.mrc": _mrc(rng.normal(size=(2, 20, 28)).astype(np.float16), 12),
        "s/odd-ext.mrc": raw(1, 2, 20, 28, rng.integers(-900, 900, (2, 20, 28), dtype=np.int16).tobytes()),
        "s/cut-4bit.mrc": raw(101, 2, 20, 56, smooth * 2)[:-100],
        "s/bad-mode.mrc": raw(77, 1, 20, 28, bytes(20 * 28 * 2)),
    }
    # a header older than MRC2000 (no 'MAP ' at byte 208), its sizes the file's: mrcfile, IMOD and RELION
    # read it, and it was quarantined, never backed up (a stranger's fidelity review); with sizes that
    # do not add up it is no MRC acqd can tell
    old = bytearray(raw(1, 2, 20, 28, rng.integers(-900, 900, (2, 20, 28), dtype=np.int16).tobytes()))
    old[208:212] = bytes(4)
    files["s/old-style.mrc"] = bytes(old)
    files["s/bad-no-map.mrc"] = bytes(old[:-10])
    with mrcfile.new(str(tmp_path / "be.mrc")) as m:  # a big-endian MRC, as mrcfile writes one
        m.set_data(rng.integers(-900, 900, (2, 20, 28)).astype(">i2"))
    files["s/big-endian.mrc"] = (tmp_path / "be.mrc").read_bytes()
    frames = {"counting.mrc", "complex64.mrc", "float16.mrc", "odd-ext.mrc", "big-endian.mrc"}
    monkeypatch.setitem(PROFILES, "t-k3-chosen", PROFILES["t-k3"] + "codec_candidates: null\n")
    for detector in ("t-k2-modes", "t-k3-chosen"):
        run = tmp_path / detector
        run.mkdir()
        await _ship_flagged(run, detector, files, frames)
        notes = _audit(run / "state", "profile-mismatch")
        assert "MRC mode 101 (4-bit" in notes["s/serialem-4bit.mrc"] and "mode 101" in notes["s/odd-4bit.mrc"]
        assert "MRC mode 3 (complex int16)" in notes["s/complex.mrc"] and "MRC mode 16" in notes["s/rgb.mrc"]
        assert _copies(run / "state")["s/serialem-4bit.mrc"][1].startswith("zstd")
        reasons = {rel: why for rel, st, why, _ in journal_rows(run / "state") if st == "quarantined"}
        assert sorted(reasons) == ["s/bad-mode.mrc", "s/bad-no-map.mrc"] and "mode" in str(reasons["s/bad-mode.mrc"])
        assert "without 'MAP ' at byte 208 (an older header, little-endian" in notes["s/old-style.mrc"]
        assert "truncated MRC" in notes["s/cut-4bit.mrc"]  # cut short: stored byte-exact, flagged


async def test_byte_exact_copy_of_an_unframed_file_is_released_after_a_full_recheck(tmp_path: Path) -> None:
    """A zstd copy under a frame placement (an RGB TIFF in a Zarr profile) is re-read with its own
    codec before the local file is released (release_verify: full): released, never taken for lost."""
    files, _ = _unframed_tiffs()
    watch, dest, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (watch / "s").mkdir(parents=True)
    dest.mkdir()
    (watch / "s" / "rgb.tif").write_bytes(files["rgb.tif"])
    cfg = Config.model_validate(
        {
            "instrument": "scope",
            "state_dir": str(state),
            "detectors_dir": str(write_profiles(tmp_path / "det")),
            "watch": [
                {
                    "path": str(watch),
                    "detector": "t-tiff-any",
                    "settle": "0.2s",
                    "placement": {"release_local": "after_verify"},
                }
            ],
            "tiers": {"central": {"url": f"file://{dest}"}},
            "limits": {"retry_initial": "50ms", "retry_max": "100ms", "release_verify": "full"},
        }
    )
    # a copy re-read with the wrong codec would be taken for lost and shipped again, round and round
    result = await asyncio.wait_for(Daemon(cfg, once=True, retry_for=120).run(install_signals=False), 300)
    assert result.pending == 0
    assert [(rel, st) for rel, st, _, _ in journal_rows(state)] == [("s/rgb.tif", "released")]
    assert not (watch / "s" / "rgb.tif").exists() and not _audit(state, "copy_lost")
    assert _copies(state)["s/rgb.tif"][1].startswith("zstd")
    restore_cli(state, dest / "scope", "s/rgb.tif", tmp_path / "r.tif")
    assert (tmp_path / "r.tif").read_bytes() == files["rgb.tif"]
