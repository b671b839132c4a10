"""What the source's own header says about its pixels reaches the stored copy (found by an adversarial
fidelity review, ninth session): the byte order of an MRC, the planes of a TIFF series that are not
its pages, the axes of a hyperstack. Each input is generated here; the stored copy is read by
tensorstore (zarr v3), tifffile or mrcfile, never through acqd, and every case restores byte-exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import tifffile
from mrcfile.dtypes import HEADER_DTYPE

from tests.test_fidelity import stored
from tests.test_frames import restore, ship


def read_zarr(path: Path) -> np.ndarray:
    """The stored frame array `0`, as tensorstore's zarr3 driver reads it."""
    import tensorstore as ts

    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / "0")}}
    return np.asarray(ts.open(spec).result().read().result())


def ngff_axes(path: Path) -> list[dict[str, Any]]:
    doc = json.loads((path / "zarr.json").read_text())
    axes: list[dict[str, Any]] = doc["attributes"]["ome"]["multiscales"][0]["axes"]
    return axes


def big_endian_mrc(tmp_path: Path, data: np.ndarray) -> bytes:
    """An MRC2014 file in big-endian byte order (machine stamp 0x11 0x11), which mrcfile reads right."""
    le = tmp_path / "le.mrc"
    with mrcfile.new(le, overwrite=True) as m:
        m.set_data(data.astype(data.dtype.newbyteorder("<")))
        m.voxel_size = 1.7
    header = np.frombuffer(le.read_bytes()[:1024], HEADER_DTYPE).astype(HEADER_DTYPE.newbyteorder(">"))
    header["machst"] = np.frombuffer(b"\x11\x11\x00\x00", np.uint8)
    out = header.tobytes() + data.astype(data.dtype.newbyteorder(">")).tobytes()
    check = tmp_path / "be-check.mrc"
    check.write_bytes(out)
    with mrcfile.open(check, permissive=False) as m:
        assert m.data.dtype.byteorder == ">" and np.array_equal(m.data, data)
    return out


@pytest.mark.parametrize("detector", ["t-mrc-zarr", "t-mrc-tiff"])
@pytest.mark.parametrize("dtype", ["int16", "float32"])
async def test_a_big_endian_mrc_is_stored_as_its_values(tmp_path: Path, detector: str, dtype: str) -> None:
    """The reader took the dtype from one header record (`h[0]`), whose fields are native: a
    big-endian MRC's pixels were stored byte-swapped, verified (the checksum was taken over the same
    misread bytes on both sides) and the source released. The stored values are the source's now."""
    rng = np.random.default_rng(1)
    data = rng.integers(-3000, 3000, (3, 10, 12)) if dtype == "int16" else rng.standard_normal((3, 10, 12))
    data = data.astype(dtype)
    raw = big_endian_mrc(tmp_path, data)
    _, dest, state = await ship(tmp_path, detector, {"s/be.mrc": raw})
    copy = stored(state, dest.parent, "s/be.mrc")
    got = read_zarr(copy) if detector == "t-mrc-zarr" else tifffile.imread(copy)[:, ::-1]  # TIFF: rows flipped
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, data), "stored pixels are not the source's values"
    assert restore(state, dest, "s/be.mrc", tmp_path / "r.mrc") == raw


def imagej_one_ifd_stack(path: Path, data: np.ndarray) -> bytes:
    """An ImageJ stack as ImageJ writes one beyond 4 GiB: one IFD whose description says `images=N`,
    the N planes contiguous from its strip on (tifffile and Fiji read all N planes)."""
    n = data.shape[0]
    desc = f"ImageJ=1.54f\nimages={n}\nslices={n}\nloop=false\n"
    tifffile.imwrite(path, data[0], photometric="minisblack", description=desc, metadata=None)
    raw = path.read_bytes() + data[1:].tobytes()
    path.write_bytes(raw)
    with tifffile.TiffFile(path) as t:
        assert len(t.pages) == 1 and np.array_equal(t.asarray(), data)
    return raw


def _layout(state: Path, rel: str) -> str:
    import sqlite3

    db = sqlite3.connect(f"file:{state / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        [(layout,)] = db.execute(
            "SELECT c.layout FROM copies c JOIN files f ON f.id = c.file_id WHERE f.relpath = ?", (rel,)
        ).fetchall()
    finally:
        db.close()
    return str(layout)


async def test_an_imagej_stack_with_one_ifd_is_stored_with_every_plane(tmp_path: Path) -> None:
    """Its planes after the first are in no IFD: acqd stored a 2-D Zarr of the first plane (the
    others hidden in its restore data) and said verified. Such a file is now stored byte-exact."""
    data = np.random.default_rng(4).integers(0, 4000, (5, 10, 12)).astype(np.uint16)
    (tmp_path / "src").mkdir()
    raw = imagej_one_ifd_stack(tmp_path / "src" / "ij.tif", data)
    _, dest, state = await ship(tmp_path, "t-tiff", {"ls/ij.tif": raw})
    assert _layout(state, "ls/ij.tif") == "copy"
    out = restore(state, dest, "ls/ij.tif", tmp_path / "r.tif")
    assert out == raw and np.array_equal(tifffile.imread(tmp_path / "r.tif"), data)


def hyperstack(path: Path, kind: str) -> np.ndarray:
    rng = np.random.default_rng(8)
    if kind == "imagej":
        data = rng.integers(0, 4000, (3, 2, 10, 12)).astype(np.uint16)  # Z C Y X
        tifffile.imwrite(
            path, data, imagej=True, resolution=(10, 10), metadata={"spacing": 0.5, "unit": "um", "axes": "ZCYX"}
        )
    else:
        data = rng.integers(0, 4000, (2, 3, 10, 12)).astype(np.uint16)  # C Z Y X
        tifffile.imwrite(
            path,
            data,
            ome=True,
            photometric="minisblack",
            metadata={"axes": "CZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.5},
        )
    return data


@pytest.mark.parametrize("kind", ["imagej", "ome"])
async def test_a_hyperstack_is_never_stored_as_one_z_axis(tmp_path: Path, kind: str) -> None:
    """3 z slices x 2 channels with a 0.5 um step were stored as 6 planes on a z axis 0.5 um apart:
    a viewer showed channels as depth. A stack of planes cannot hold two axes: stored byte-exact."""
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / f"{kind}.tif"
    data = hyperstack(path, kind)
    raw = path.read_bytes()
    _, dest, state = await ship(tmp_path, "t-tiff", {f"ls/{kind}.tif": raw})
    assert _layout(state, f"ls/{kind}.tif") == "copy"
    assert restore(state, dest, f"ls/{kind}.tif", tmp_path / "r.tif") == raw
    with tifffile.TiffFile(tmp_path / "r.tif") as t:
        assert t.series[0].shape == data.shape and np.array_equal(t.asarray(), data)


@pytest.mark.parametrize(
    ("axes", "name", "kind"), [("TYX", "t", "time"), ("CYX", "c", "channel"), ("ZYX", "z", "space")]
)
async def test_a_stack_of_one_stated_axis_is_labelled_as_the_file_states(
    tmp_path: Path, axes: str, name: str, kind: str
) -> None:
    """The profile says what a stack's planes are where the file does not; where the file's OME-XML
    says (time points, channels, z), the stored axis is that one, with a step for z (its
    PhysicalSizeZ) and for t (its TimeIncrement, in seconds), none for channels."""
    data = np.random.default_rng(9).integers(0, 4000, (4, 10, 12)).astype(np.uint16)
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "s.tif"
    meta = {"axes": axes, "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.5, "TimeIncrement": 2.0}
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata=meta)
    raw = path.read_bytes()
    _, dest, state = await ship(tmp_path, "t-tiff", {"ls/s.tif": raw})
    copy = stored(state, dest.parent, "ls/s.tif")
    ax = ngff_axes(copy)
    assert [(a["name"], a["type"]) for a in ax] == [(name, kind), ("y", "space"), ("x", "space")]
    doc = json.loads((copy / "zarr.json").read_text())
    scale = doc["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[0] == {"z": 0.5, "t": 2.0, "c": 1.0}[name]
    assert np.array_equal(read_zarr(copy), data)
    assert restore(state, dest, "ls/s.tif", tmp_path / "r.tif") == raw


def series_file(path: Path, kind: str) -> list[np.ndarray]:
    """A TIFF of several image series, each as its writer meant it."""
    rng = np.random.default_rng(12)
    if kind == "ome-positions":  # two stage positions, a z-stack of 3 at each (OME-TIFF, one image per position)
        series = [rng.integers(0, 4000, (3, 10, 12)).astype(np.uint16) for _ in range(2)]
        with tifffile.TiffWriter(path, ome=True) as tw:
            for s in series:
                tw.write(s, photometric="minisblack", metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0})
    elif kind == "time-points-per-position":  # Micro-Manager-like: 3 positions x 2 time points
        series = [rng.integers(0, 4000, (2, 10, 12)).astype(np.uint16) for _ in range(3)]
        with tifffile.TiffWriter(path, ome=True) as tw:
            for s in series:
                tw.write(s, photometric="minisblack", metadata={"axes": "TYX", "TimeIncrement": 1.0})
    else:  # two stacks appended by tifffile, each with its own shape
        series = [rng.integers(0, 4000, (4, 10, 12)).astype(np.uint16) for _ in range(2)]
        for s in series:
            tifffile.imwrite(path, s, append=True, photometric="minisblack")
    with tifffile.TiffFile(path) as t:
        assert len(t.series) == len(series)
    return series


@pytest.mark.parametrize("kind", ["ome-positions", "time-points-per-position", "appended-stacks"])
async def test_a_tiff_of_several_series_is_never_stored_as_one_z_axis(tmp_path: Path, kind: str) -> None:
    """Found by a stranger's fidelity review (twenty-sixth session): a TIFF holding several image
    series (two stage positions of a z-stack, positions of a time series) was stored as one z axis of
    all their planes, positions mixed into depth, the first series' z step over all, the time axis
    lost. Stored byte-exact: the file's readers keep its series."""
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "multi.tif"
    series = series_file(path, kind)
    raw = path.read_bytes()
    _, dest, state = await ship(tmp_path, "t-tiff", {"ls/multi.tif": raw})
    assert _layout(state, "ls/multi.tif") == "copy"
    assert restore(state, dest, "ls/multi.tif", tmp_path / "r.tif") == raw
    with tifffile.TiffFile(tmp_path / "r.tif") as t:
        assert [s.asarray().shape for s in t.series] == [s.shape for s in series]
        assert all(np.array_equal(s.asarray(), want) for s, want in zip(t.series, series, strict=True))


async def test_planes_appended_one_series_each_are_still_one_stack(tmp_path: Path) -> None:
    """The rule above leaves a plane-by-plane writer's file alone: each plane appended by tifffile
    with its shape is a series of one plane, and the planes are the stack the profile says."""
    data = np.random.default_rng(13).integers(0, 4000, (5, 10, 12)).astype(np.uint16)
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "planes.tif"
    for plane in data:
        tifffile.imwrite(path, plane, append=True, photometric="minisblack")
    with tifffile.TiffFile(path) as t:
        assert len(t.series) == 5
    _, dest, state = await ship(tmp_path, "t-tiff", {"ls/planes.tif": path.read_bytes()})
    assert _layout(state, "ls/planes.tif") == "zarr"
    assert np.array_equal(read_zarr(stored(state, dest.parent, "ls/planes.tif")), data)
