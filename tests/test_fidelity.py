"""What lands reads right in the tools users run (issue 13): cryo-EM TIFF orientation, pixel size and
sample format as libtiff reads them (Debian's libtiff-tools: tiffinfo, tiffcp, tiffdump), and restores
that say how exact they are.

MRC files are made here (mrc_header from acqd.simulate, patched per test); the compressed TIFF
source is written by libtiff's own tiffcp, as a camera using libtiff would.
"""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import tifffile

from acqd.journal import Journal
from acqd.layouts.tiffwrite import TiffPageWriter, image_tags, make_tag
from acqd.simulate import mrc_header
from tests.conftest import journal_rows, need, run_acqd
from tests.test_frames import PROFILES, fei_mrc, ship


def stored(state: Path, tier_root: Path, rel: str) -> Path:
    """Where the journal says `rel` was stored (names come from the journal, never guessed)."""
    j = Journal(state / "journal.sqlite", readonly=True)
    try:
        [(dest,)] = j._db.execute(
            "SELECT c.dest FROM copies c JOIN files f ON f.id = c.file_id WHERE f.relpath = ?", (rel,)
        ).fetchall()
    finally:
        j.close()
    return tier_root / dest


def restore_cli(state: Path, dest: Path, rel: str, out: Path) -> str:
    r = run_acqd("restore", rel, str(out), "--state-dir", str(state), "--dest", str(dest.parent))
    assert r.returncode == 0, r.stderr
    return r.stdout


def tool(*args: str) -> str:
    need(args[0], "Debian's libtiff-tools")
    r = subprocess.run(args, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def libtiff_pages(path: Path, tmp: Path, dtype: np.dtype[Any]) -> np.ndarray:
    """Pixels as libtiff decodes them, without tifffile: tiffcp to one uncompressed strip per page,
    then the raw bytes at the StripOffsets tiffdump lists."""
    plain = tmp / f"plain-{path.name}"
    tool("tiffcp", "-c", "none", "-r", "1000000", str(path), str(plain))
    dump = tool("tiffdump", str(plain))
    width = [int(m) for m in re.findall(r"ImageWidth \(256\) \w+ \(\d+\) 1<(\d+)>", dump)]
    length = [int(m) for m in re.findall(r"ImageLength \(257\) \w+ \(\d+\) 1<(\d+)>", dump)]
    offsets = [int(m) for m in re.findall(r"StripOffsets \(273\) \w+ \(\d+\) 1<(\d+)>", dump)]
    assert len(offsets) == len(width) == len(length) > 0
    raw = plain.read_bytes()
    frames = []
    for off, ny, nx in zip(offsets, length, width, strict=True):
        n = ny * nx * dtype.itemsize
        frames.append(np.frombuffer(raw[off : off + n], dtype=dtype.newbyteorder("<")).reshape(ny, nx))
    return np.stack(frames)


def mrc_bytes(
    data: np.ndarray,
    mode: int,
    *,
    apix: tuple[float, float] = (0.83, 0.83),
    sampling: tuple[int, int] | None = None,
    mapcrs: tuple[int, int, int] = (1, 2, 3),
    imod: tuple[int, int] | None = None,
) -> bytes:
    """An MRC2014 file of `data` (n, ny, nx): voxel sizes apix (X, Y) in Angstrom as cella/m, with
    mx/my = `sampling` (default the image size), the axis mapping, and the IMOD stamp and flags."""
    n, ny, nx = data.shape
    h = bytearray(mrc_header(n, ny, nx, mode))
    mx, my = sampling or (nx, ny)
    struct.pack_into("<3i", h, 28, mx, my, n)
    struct.pack_into("<3f", h, 40, mx * apix[0], my * apix[1], n * 1.0)
    struct.pack_into("<3i", h, 64, *mapcrs)
    struct.pack_into("<2i", h, 152, *(imod or (0, 0)))
    return bytes(h) + data.tobytes()


# --- 1. orientation --------------------------------------------------------------------------


async def test_mrc_to_tiff_rows_follow_the_imod_relion_convention(tmp_path: Path) -> None:
    raw, data = fei_mrc(n=4, ny=30, nx=20, seed=8)
    _, dest, state = await ship(tmp_path, "t-mrc-tiff", {"s/movie.mrc": raw})
    tif = stored(state, dest.parent, "s/movie.mrc")
    with mrcfile.open(tmp_path / "acq" / "s" / "movie.mrc", permissive=True) as m:
        mrc = np.asarray(m.data).copy()
    assert np.array_equal(mrc, data)
    # libtiff (what RELION, MotionCor2 and IMOD read with): TIFF row 0 is the MRC's last row
    assert np.array_equal(libtiff_pages(tif, tmp_path, np.dtype("uint16")), mrc[:, ::-1])
    assert np.array_equal(tifffile.imread(tif), mrc[:, ::-1])
    desc = tifffile.TiffFile(tif).pages[0].description
    assert json.loads(desc.removeprefix("acqd/1 "))["rows"] == "flipped-y"  # restore knows to flip back
    out = restore_cli(state, dest, "s/movie.mrc", tmp_path / "r.mrc")
    assert (tmp_path / "r.mrc").read_bytes() == raw  # flipped back: the MRC byte for byte
    assert out.rstrip().endswith(" OK")


async def test_tiff_stored_before_the_flag_restores_as_before(tmp_path: Path) -> None:
    """A TIFF acqd wrote before the convention (rows in MRC order, no `rows` flag) still restores the
    MRC byte for byte: restore flips only what says it was flipped."""
    raw, data = fei_mrc(n=3, seed=9)
    _, dest, state = await ship(tmp_path, "t-mrc-tiff", {"old.mrc": raw})
    tif = stored(state, dest.parent, "old.mrc")
    meta = json.loads(tifffile.TiffFile(tif).pages[0].description.removeprefix("acqd/1 "))
    del meta["rows"]
    old = tmp_path / "old.tif"
    with tifffile.TiffWriter(old) as tw:  # as acqd wrote it then: tifffile, memory order
        for i, frame in enumerate(data):
            desc = "acqd/1 " + json.dumps(meta) if i == 0 else None
            tw.write(frame, photometric="minisblack", compression="lzw", description=desc, metadata=None)
    tif.write_bytes(old.read_bytes())
    restore_cli(state, dest, "old.mrc", tmp_path / "r.mrc")
    assert (tmp_path / "r.mrc").read_bytes() == raw


# --- 2. pixel size ---------------------------------------------------------------------------


@pytest.mark.parametrize("mapcrs", [(1, 2, 3), (2, 1, 3)], ids=["columns-x", "columns-y"])
async def test_pixel_size_in_tiff_resolution_where_relion_reads_it(
    tmp_path: Path, mapcrs: tuple[int, int, int]
) -> None:
    data = np.random.default_rng(3).integers(0, 9, size=(2, 16, 24), dtype=np.uint16)
    # voxel size is cella / mx by the standard, not cella / nx: mx = 2 nx here (as after binning)
    raw = mrc_bytes(data, 6, apix=(1.06, 0.5), sampling=(48, 32), mapcrs=mapcrs)
    _, dest, state = await ship(tmp_path, "t-mrc-tiff", {"p.mrc": raw})
    info = tool("tiffinfo", str(stored(state, dest.parent, "p.mrc")))
    m = re.search(r"Resolution: ([0-9.e+]+), ([0-9.e+]+) pixels/cm", info)
    assert m, info
    col, row = (1.06, 0.5) if mapcrs[0] == 1 else (0.5, 1.06)  # Angstrom per pixel along columns, rows
    assert float(m.group(1)) == pytest.approx(1e8 / col, rel=1e-5)
    assert float(m.group(2)) == pytest.approx(1e8 / row, rel=1e-5)


async def test_unknown_pixel_size_writes_no_resolution(tmp_path: Path) -> None:
    data = np.zeros((1, 8, 8), dtype=np.uint16)
    raw = bytearray(mrc_bytes(data, 6))
    struct.pack_into("<3f", raw, 40, 0.0, 0.0, 0.0)  # cella 0: the size is not known
    _, dest, state = await ship(tmp_path, "t-mrc-tiff", {"u.mrc": bytes(raw)})
    assert "pixels/cm" not in tool("tiffinfo", str(stored(state, dest.parent, "u.mrc")))


# --- 3. MRC mode 0 ---------------------------------------------------------------------------


MODE0 = [
    ("no-imod-stamp", None, "int8", "signed integer"),  # MRC2014: mode 0 is signed
    ("imod-signed", (1146047817, 1), "int8", "signed integer"),  # IMOD flags bit 0 set: signed
    ("imod-unsigned", (1146047817, 0), "uint8", "unsigned integer"),  # SerialEM K2/K3 movies
]


@pytest.mark.parametrize(("name", "imod", "dtype", "libtiff"), MODE0, ids=[m[0] for m in MODE0])
async def test_mode0_keeps_its_meaning(
    tmp_path: Path, name: str, imod: tuple[int, int] | None, dtype: str, libtiff: str
) -> None:
    values = np.random.default_rng(5).integers(0, 256, size=(3, 12, 10), dtype=np.uint8)
    raw = mrc_bytes(values, 0, imod=imod)
    _, dest, state = await ship(tmp_path, "t-mrc-tiff", {f"{name}.mrc": raw})
    tif = stored(state, dest.parent, f"{name}.mrc")
    info = tool("tiffinfo", str(tif))
    assert f"Sample Format: {libtiff}" in info, info  # written explicitly, 1 included
    pages = tifffile.imread(tif)
    assert pages.dtype == np.dtype(dtype)
    assert np.array_equal(pages, values.view(dtype)[:, ::-1])  # the same numbers, not reinterpreted
    restore_cli(state, dest, f"{name}.mrc", tmp_path / "r.mrc")
    assert (tmp_path / "r.mrc").read_bytes() == raw


# --- 4. restore honesty ----------------------------------------------------------------------


def libtiff_source(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A deflate + predictor TIFF written by libtiff (tiffcp): 16-row strips, SHORT widths, an
    Orientation tag and explicit defaults (PlanarConfiguration 1, SampleFormat 1)."""
    data = np.random.default_rng(7).integers(90, 4000, size=(3, 40, 50), dtype=np.uint16)
    plain = tmp_path / "plain.tif"
    with tifffile.TiffWriter(plain) as tw:
        for i, plane in enumerate(data):
            tw.write(
                plane,
                photometric="minisblack",
                metadata=None,
                software="cam 2.1",
                description=f"plane {i}",
                contiguous=False,
                extratags=[(337, "H", 1, 1, True)],  # a stand-in, renamed to SampleFormat below
            )
    b = bytearray(plain.read_bytes())
    for page in tifffile.TiffFile(plain).pages:  # tifffile will not write SampleFormat 1 itself
        struct.pack_into("<H", b, page.tags[337].offset, 339)
    plain.write_bytes(bytes(b))
    src = tmp_path / "src.tif"
    tool("tiffcp", "-c", "zip:2", "-r", "16", str(plain), str(src))
    return src, data


def tag_lines(path: Path) -> list[str]:
    """tiffdump's tags, less where the strips happen to sit and how long each compressed strip is."""
    out = tool("tiffdump", str(path))
    skip = ("Magic:", "Directory ", f"{path}:", "StripOffsets (273)", "StripByteCounts (279)")
    return [line for line in out.splitlines() if line.strip() and not line.startswith(skip)]


@pytest.mark.parametrize(
    "tail",
    [b"<VendorMetadata>stage x=1.234</VendorMetadata>", b"\0" * 12 + b"\x01" + b"\0" * 3],
    ids=["vendor", "1-byte"],
)
async def test_a_compressed_tiff_with_bytes_beyond_pixels_and_tags_is_stored_byte_exact(
    tmp_path: Path, tail: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vendor's block after the last strip is neither pixels nor tags (no IFD points to it): a
    compressed source written again from those would lose it (found by an adversarial run: released,
    and gone for good). Such a file is stored byte-exact and comes back byte for byte; padding of zero
    bytes alone does not count (`test_compressed_tiff_restores_every_tag_and_says_bytes_differ`).
    Under `compressed_tiff: frames` (the default stores every compressed TIFF byte-exact)."""
    monkeypatch.setitem(PROFILES, "t-tiff-any", PROFILES["t-tiff-any"] + "compressed_tiff: frames\n")
    (tmp_path / "gen").mkdir()
    src, _data = libtiff_source(tmp_path / "gen")
    raw = src.read_bytes() + tail
    _, dest, state = await ship(tmp_path, "t-tiff-any", {"c.tif": raw})
    out = restore_cli(state, dest, "c.tif", tmp_path / "r.tif")
    assert (tmp_path / "r.tif").read_bytes() == raw, out
    assert "bytes differ" not in out


def _patch_page_tag(raw: bytes, page: int, tag: int, field: str, delta: int) -> bytes:
    """`raw` (a classic little-endian TIFF) with one IFD entry of one page changed: its count
    (`field` "count") or its value (`field` "value") plus `delta`."""
    b = bytearray(raw)
    with tifffile.TiffFile(io.BytesIO(raw)) as tf:
        ifd = tf.pages[page].offset
    for i in range(struct.unpack_from("<H", b, ifd)[0]):
        e = ifd + 2 + 12 * i
        t, _typ, count, value = struct.unpack_from("<HHII", b, e)
        if t == tag and field == "count":
            struct.pack_into("<I", b, e + 4, count + delta)
        elif t == tag:
            struct.pack_into("<I", b, e + 8, value + delta)
    return bytes(b)


def _plain_stack(planes: int) -> bytes:
    buf = io.BytesIO()
    data = (np.random.default_rng(2).poisson(5, (planes, 64, 64)) + 100).astype(np.uint16)
    tifffile.imwrite(buf, data, photometric="minisblack", contiguous=False)
    return buf.getvalue()


@pytest.mark.parametrize("compressed", ["byte-exact", "frames"])
async def test_an_uncompressed_tiff_whose_strips_are_not_its_pixels_is_stored_byte_exact(
    tmp_path: Path, compressed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strip 100 bytes longer than its plane (StripByteCounts 8292 for 8192 bytes of pixels): the
    TIFF was stored as frames, said verified and released, and its restore was another file (the 100
    bytes and the count gone) that restore called "pixels and tags equal" (an adversarial run). An
    uncompressed TIFF comes back byte for byte, or is stored byte-exact, said as such (not as a
    compressed TIFF), whatever the profile says of compressed ones."""
    monkeypatch.setitem(PROFILES, "t-tiff-any", PROFILES["t-tiff-any"] + f"compressed_tiff: {compressed}\n")
    raw = _patch_page_tag(_plain_stack(4), 1, 279, "value", 100)
    _, dest, state = await ship(tmp_path, "t-tiff-any", {"s.tif": raw})
    out = restore_cli(state, dest, "s.tif", tmp_path / "r.tif")
    assert (tmp_path / "r.tif").read_bytes() == raw, out
    assert "bytes differ" not in out
    j = Journal(state / "journal.sqlite", readonly=True)
    try:
        notes = [d["reason"] for _, _, a, d in j.audit_log() if a == "profile-mismatch"]
    finally:
        j.close()
    assert notes and "strips do not hold exactly its pixels" in notes[0], notes


async def test_a_tiff_whose_strip_table_contradicts_itself_is_quarantined_with_the_reason(tmp_path: Path) -> None:
    """StripOffsets with no entry beside a StripByteCounts of one: the reader tripped on it (a
    ValueError), and the file was tried again for ever as an internal error, never quarantined."""
    raw = _patch_page_tag(_plain_stack(6), 5, 273, "count", -1)
    watch, _dest, state = await ship(tmp_path, "t-tiff-any", {"bad.tif": raw})
    rows = {r[0]: r for r in journal_rows(state)}
    assert rows["bad.tif"][1] == "quarantined", rows
    assert "page 5 has 0 strip offset(s) and 1 strip byte count(s)" in (rows["bad.tif"][2] or ""), rows
    assert (watch / "bad.tif").read_bytes() == raw


@pytest.mark.parametrize("trips", [ValueError, IndexError, KeyError, struct.error])
def test_a_reader_tripping_on_a_header_says_the_file_is_damaged(
    monkeypatch: pytest.MonkeyPatch, trips: type[Exception]
) -> None:
    """Whatever a reader trips on in a file's header that it did not foresee is a damaged file
    (FormatError: quarantined with the reason, kept), never an internal error tried for ever."""
    from acqd import readers
    from acqd.errors import FormatError
    from acqd.readers import Expect, open_frames

    def tripping(*_a: Any) -> Any:
        raise trips("zip() argument 2 is longer than argument 1")

    monkeypatch.setitem(readers.BUILTIN, "mrc", tripping)
    with pytest.raises(FormatError, match=r"corrupt mrc file: .*argument 2 is longer"):
        open_frames("mrc", io.BytesIO(b"x" * 1024), 1024, Expect(), {})


def test_zero_padding_alone_keeps_a_compressed_tiff_in_frames(tmp_path: Path) -> None:
    from acqd.readers import Expect
    from acqd.readers.tiff import open_tiff

    (tmp_path / "gen").mkdir()
    src, data = libtiff_source(tmp_path / "gen")
    raw = src.read_bytes() + b"\0" * 64
    frames = open_tiff(io.BytesIO(raw), len(raw), Expect(), {"compressed_tiff": "frames"})
    assert np.array_equal(frames.read(0, frames.shape[0]), data)


@pytest.mark.parametrize("profile", ["t-tiff-any", "f-tiff-tiff"])
async def test_compressed_tiff_restores_every_tag_and_says_bytes_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    # a profile that reads compressed TIFF as frames (the default stores it byte-exact)
    monkeypatch.setitem(
        PROFILES,
        "f-tiff-tiff",
        "reader: tiff\nlayout: tiff\ncodec: {id: zstd}\nfiles: ['*.tif']\ncompressed_tiff: frames\n",
    )
    monkeypatch.setitem(PROFILES, "t-tiff-any", PROFILES["t-tiff-any"] + "compressed_tiff: frames\n")
    (tmp_path / "gen").mkdir()
    src, data = libtiff_source(tmp_path / "gen")
    raw = src.read_bytes()
    _, dest, state = await ship(tmp_path, profile, {"c.tif": raw})
    out = restore_cli(state, dest, "c.tif", tmp_path / "r.tif")
    restored = tmp_path / "r.tif"
    assert "pixels and tags equal; bytes differ:" in out, out
    assert restored.read_bytes() != raw
    assert np.array_equal(tifffile.imread(restored), data)
    lines = tag_lines(restored)
    assert lines == tag_lines(src)  # every tag, value, type and count, page by page
    assert any("PlanarConfig (284) SHORT (3) 1<1>" in x for x in lines)
    assert any("SampleFormat (339) SHORT (3) 1<1>" in x for x in lines)
    assert any("Compression (259) SHORT (3) 1<8>" in x for x in lines)  # deflate, as the source
    assert any("Predictor (317) SHORT (3) 1<2>" in x for x in lines)


async def test_byte_identical_tiff_restore_says_ok(tmp_path: Path) -> None:
    """Where the rewrite does give the source's bytes (a file laid out as acqd lays it out), restore
    says OK: the verdict comes from comparing bytes, not from the format."""
    data = np.random.default_rng(2).integers(0, 60000, size=(2, 20, 30), dtype=np.uint16)
    src = tmp_path / "a.tif"
    with src.open("wb") as fh, TiffPageWriter(fh) as tw:
        for plane in data:
            tags = image_tags((20, 30), data.dtype, compression=8, rows_per_strip=8)
            tw.write_page(plane, [*tags, make_tag(305, 2, "cam")], compression=8, rows_per_strip=8)
    raw = src.read_bytes()
    assert "Compression Scheme: AdobeDeflate" in tool("tiffinfo", str(src))
    _, dest, state = await ship(tmp_path, "t-tiff-any", {"a.tif": raw})
    out = restore_cli(state, dest, "a.tif", tmp_path / "r.tif")
    assert (tmp_path / "r.tif").read_bytes() == raw
    assert out.rstrip().endswith(" OK"), out


# --- 5. OME-Zarr: lean metadata --------------------------------------------------------------


async def test_zarr_json_stays_small_with_a_big_private_tag(tmp_path: Path) -> None:
    """An ImageJ stack whose IJMetadata tag holds megabytes: the group's zarr.json stays small (the
    whole header sits in a compressed array beside it), the copy is smaller than the source, and the
    stack still restores byte for byte."""
    data = np.random.default_rng(4).integers(90, 200, size=(4, 32, 32), dtype=np.uint16)
    info = "".join(f"Stage position {i}: x={i * 0.1:.1f} y={i * 0.2:.1f}\n" for i in range(40000))
    src = tmp_path / "ij.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um", "Info": info})
    raw = src.read_bytes()
    assert len(raw) > 2_000_000  # the private tag is most of the file
    _, dest, state = await ship(tmp_path, "t-tiff-any", {"ij.tif": raw})
    root = stored(state, dest.parent, "ij.tif")
    group_json = root / "zarr.json"
    assert group_json.stat().st_size < 64 << 10, group_json.stat().st_size
    stored_bytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert stored_bytes < len(raw)
    restore_cli(state, dest, "ij.tif", tmp_path / "r.tif")
    assert (tmp_path / "r.tif").read_bytes() == raw
    assert "Stage position 39999" in tifffile.TiffFile(tmp_path / "r.tif").imagej_metadata["Info"]  # type: ignore[index]


# --- 6. no copy larger than its source -------------------------------------------------------


async def test_tiff_copy_of_an_mrc_with_a_big_extended_header_is_smaller_than_the_source(tmp_path: Path) -> None:
    """A Velox/EPU MRC whose FEI2 extended header is reserved for many frames (mostly zeros) and
    holds one small image: the header rides compressed in the TIFF, the copy is smaller than the
    source, and it restores byte for byte."""
    data = np.random.default_rng(31).integers(0, 60000, size=(1, 16, 16), dtype=np.uint16)
    ext = bytearray(200 * 768)
    struct.pack_into("<4d", ext, 8, 300e3, 0.83e-10, 1.5, 42.0)  # the first block's metadata, the rest unused
    raw = mrc_header(1, 16, 16, 6, bytes(ext), b"FEI2") + data.tobytes()
    _, dest, state = await ship(tmp_path, "t-mrc-tiff", {"haadf.mrc": raw})
    tif = stored(state, dest.parent, "haadf.mrc")
    assert tif.stat().st_size < len(raw), (tif.stat().st_size, len(raw))
    restore_cli(state, dest, "haadf.mrc", tmp_path / "r.mrc")
    assert (tmp_path / "r.mrc").read_bytes() == raw
