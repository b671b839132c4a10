"""Real instrument files through the real daemon, read back with independent readers (issue 13).

The files are small excerpts of real data committed under tests/data/ (provenance, what was cut and
licences in tests/data/README.md). One `acqd run --once` with the shipped detector profiles stores them
all on a file:// tier; each test then reads what acqd stored with tools that are not acqd's:
libtiff's command-line tools for TIFF, tensorstore's zarr3 driver, ome-zarr-models, ngff-zarr's strict
schema and ome-zarr-py for OME-Zarr, rosettasciio for the Merlin frames, mrcfile for the MRC sources,
and compares pixels, orientation (TIFF rows flipped against the MRC, as RELION and IMOD read them),
calibration, metadata size and the restored bytes with the source.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest

from tests.conftest import journal_states, run_acqd, write_config
from tests.test_fidelity import libtiff_pages, restore_cli, stored, tool
from tests.test_ngff import read_everywhere, scale, units

DATA = Path(__file__).resolve().parent / "data"

# watch folder (its shipped detector profile) -> the excerpts it receives
FOLDERS: dict[str, tuple[str, list[str]]] = {
    "falcon": ("falcon", ["falcon/epu2.9_example.mrc", "velox/HAADFscan.mrc"]),
    "de": ("direct-electron", ["de-celeritas/ROI_Random_Scan_movie.mrc", "de-celeritas/ROI_Random_Scan_info.txt"]),
    "merlin": (
        "merlin-medipix",
        ["medipix/Quad_9_Frame_CounterDepth_12_Rows_256.mib", "medipix/Quad_9_Frame_CounterDepth_12_Rows_256.hdr"],
    ),
    "orca": ("hamamatsu-orca", ["lightsheet/im_raw.tif", "tvips/TVIPS_bin4.tif"]),
}
MIB = "Quad_9_Frame_CounterDepth_12_Rows_256.mib"


class Site:
    def __init__(self, root: Path) -> None:
        self.watch, self.dest, self.state = root / "acq", root / "central", root / "state"
        self.tier = self.dest / "scope"  # what the helpers call `dest`: the instrument's folder

    def source(self, name: str) -> Path:
        [path] = [p for p in self.watch.rglob(name) if p.is_file()]
        return path

    def out(self, name: str) -> Path:
        return stored(self.state, self.dest, name)

    def manifest_entry(self, name: str) -> dict[str, Any]:
        for m in self.tier.rglob("~acqd-manifest.json"):
            for entry in json.loads(m.read_text())["files"]:
                if entry["source"] == name:
                    return dict(entry)
        raise AssertionError(f"{name} in no manifest")


def _checked_sums() -> None:
    """The excerpts are the bytes tests/data/README.md describes (a changed file fails here, not later)."""
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        want, rel = line.split(maxsplit=1)
        assert hashlib.sha256((DATA / rel).read_bytes()).hexdigest() == want, f"tests/data/{rel} changed"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    _checked_sums()
    s = Site(tmp_path_factory.mktemp("real"))
    watches = []
    for folder, (detector, files) in FOLDERS.items():
        (s.watch / folder).mkdir(parents=True)
        for rel in files:
            shutil.copyfile(DATA / rel, s.watch / folder / Path(rel).name)
        watches.append(f"  - {{path: {s.watch / folder}, detector: {detector}, prefix: {folder}, settle: 0.1s}}")
    s.dest.mkdir()
    cfg = write_config(
        s.watch.parent / "acqd.yaml",
        f"instrument: scope\nstate_dir: {s.state}\nwatch:\n" + "\n".join(watches) + "\n"
        f'tiers:\n  central: {{url: "file://{s.dest}"}}\n',
    )
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "120s")  # the shipped profiles
    assert r.returncode == 0, r.stderr
    states = journal_states(s.state)
    assert len(states) == sum(len(f) for _, f in FOLDERS.values()) and set(states.values()) == {"verified"}, states
    return s


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


ALL = [Path(rel).name for _, files in FOLDERS.values() for rel in files]


@pytest.mark.parametrize("name", ALL)
def test_restore_is_byte_exact_and_no_copy_is_larger_than_its_source(site: Site, name: str, tmp_path: Path) -> None:
    src = site.source(name)
    assert _size(site.out(name)) <= src.stat().st_size, (_size(site.out(name)), src.stat().st_size)
    out = restore_cli(site.state, site.tier, name, tmp_path / name)
    assert (tmp_path / name).read_bytes() == src.read_bytes()
    assert out.rstrip().endswith(" OK"), out


def _mrc(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """The frames (n, ny, nx) and the pixel size (x, y) in Angstrom as mrcfile reads them."""
    with mrcfile.open(path, permissive=True) as m:
        data = np.asarray(m.data).copy()
        vs = m.voxel_size
        return data.reshape(-1, *data.shape[-2:]), (float(vs.x), float(vs.y))


def _libtiff_resolution(path: Path) -> tuple[float, float, str]:
    m = re.search(r"Resolution: ([0-9.e+-]+), ([0-9.e+-]+) (pixels/\w+|\(unitless\))", tool("tiffinfo", str(path)))
    assert m, f"no resolution in {path}"
    return float(m.group(1)), float(m.group(2)), m.group(3)


@pytest.mark.parametrize("name", ["epu2.9_example.mrc", "HAADFscan.mrc"])
def test_falcon_and_velox_mrc_to_tiff_as_relion_reads_it(site: Site, name: str) -> None:
    """EPU's Falcon sum and Velox's HAADF image (FEI2 extended headers) stored as TIFF: libtiff reads
    the MRC's pixels with the rows flipped (RELION's and IMOD's TIFF convention), the pixel size in
    pixels/cm = 1e8 / (Angstrom per pixel) from the MRC's cella/mx, and the sample format unsigned."""
    tif = site.out(name)
    assert tif.suffix == ".tif"
    data, (ax, ay) = _mrc(site.source(name))
    assert np.array_equal(libtiff_pages(tif, site.watch.parent, np.dtype("uint16")), data[:, ::-1])
    xres, yres, unit = _libtiff_resolution(tif)
    assert unit == "pixels/cm"
    assert xres == pytest.approx(1e8 / ax, rel=1e-5) and yres == pytest.approx(1e8 / ay, rel=1e-5)
    assert "Sample Format: unsigned integer" in tool("tiffinfo", str(tif))
    with mrcfile.open(site.source(name), permissive=True) as m:  # the vendor's own figure agrees (metres)
        fei = m.indexed_extended_header
        assert 1e10 * float(fei["Pixel size X"][0]) == pytest.approx(1e8 / xres, rel=1e-5)
    # valid, but not the 4096 x 4096 a Falcon writes: stored all the same, and the manifest says so
    assert "frames of" in site.manifest_entry(name).get("profile_mismatch", "")


GROUP_JSON_MAX = 32 << 10  # "tens of KiB" at most, whatever the source's private tags hold


def read_all(root: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """read_everywhere (both validators, tensorstore, ome-zarr-py), and ngff-zarr reading the image too:
    the same pixels, axes and calibration."""
    import ngff_zarr

    arr, ms = read_everywhere(root)
    [img, *_] = ngff_zarr.from_ngff_zarr(str(root), validate=True).images
    assert list(img.dims) == [a["name"] for a in ms["axes"]]
    assert [img.scale[a["name"]] for a in ms["axes"]] == pytest.approx(scale(ms))
    assert np.array_equal(np.asarray(img.data), arr)
    return arr, ms


def test_de_celeritas_movie_as_ome_zarr(site: Site) -> None:
    """A Direct Electron movie: the OME-Zarr reads (tensorstore, ome-zarr-py, both validators) as the
    MRC's frames in memory order along t; its cella is negative (-160 A: DE writes no pixel size, its
    info file says -1), so no unit is carried rather than one invented."""
    root = site.out("ROI_Random_Scan_movie.mrc")
    arr, ms = read_all(root)
    data, (ax, _) = _mrc(site.source("ROI_Random_Scan_movie.mrc"))
    assert ax < 0  # what the real header holds
    assert arr.shape == data.shape == (348, 16, 16) and np.array_equal(arr, data)
    assert [(a["name"], a["type"]) for a in ms["axes"]] == [("t", "time"), ("y", "space"), ("x", "space")]
    assert units(ms) == [None, None, None] and scale(ms) == [1.0, 1.0, 1.0]
    assert (root / "zarr.json").stat().st_size < GROUP_JSON_MAX


def test_merlin_frames_as_rosettasciio_reads_them(site: Site) -> None:
    """The Merlin quad's frames (big-endian uint16 behind 768-byte headers; the .hdr says 1 frame per
    trigger, so a frame series, not a scan): the OME-Zarr holds what rosettasciio reads, in its
    orientation."""
    from rsciio.quantumdetector import file_reader

    arr, ms = read_all(site.out(MIB))
    hyperspy = np.asarray(file_reader(str(site.source(MIB)))[0]["data"])
    assert arr.shape == (2, 512, 512) and np.array_equal(arr, hyperspy.reshape(arr.shape))
    assert arr.any() and (arr == 0).mean() > 0.5  # real sparse counting frames, not an empty array
    assert [a["name"] for a in ms["axes"]] == ["t", "y", "x"] and units(ms) == [None] * 3
    assert (site.out(MIB) / "zarr.json").stat().st_size < GROUP_JSON_MAX


def test_lightsheet_stack_as_ome_zarr(site: Site) -> None:
    """The NI-IMAQ light-sheet stack: pixels as libtiff decodes the source, planes along z; its
    resolution is 1/1 with no unit and there is no ImageJ spacing, so no unit is carried; the 16 KB
    private tag of every page stays out of zarr.json."""
    src = site.source("im_raw.tif")
    _, _, unit = _libtiff_resolution(src)
    assert unit == "(unitless)"
    root = site.out("im_raw.tif")
    arr, ms = read_all(root)
    assert arr.shape == (4, 320, 256)
    assert np.array_equal(arr, libtiff_pages(src, site.watch.parent, np.dtype("uint16")))
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"] and units(ms) == [None] * 3
    assert (root / "zarr.json").stat().st_size < GROUP_JSON_MAX
    assert "profile_mismatch" not in site.manifest_entry("im_raw.tif")


def test_tvips_image_as_ome_zarr(site: Site) -> None:
    """A TVIPS camera's uint8 image in the sCMOS folder: stored as uint8 with a profile-mismatch note,
    a 2-D image, pixels as libtiff decodes them, and the pixel size the file states (libtiff's
    resolution in pixels/cm, the TVIPS header's nm) as nanometres."""
    src = site.source("TVIPS_bin4.tif")
    xres, yres, unit = _libtiff_resolution(src)
    assert unit == "pixels/cm"
    root = site.out("TVIPS_bin4.tif")
    arr, ms = read_all(root)
    assert arr.dtype == np.uint8 and arr.shape == (1024, 1024)
    assert np.array_equal(arr, libtiff_pages(src, site.watch.parent, np.dtype("uint8"))[0])
    assert [a["name"] for a in ms["axes"]] == ["y", "x"] and units(ms) == ["nanometer"] * 2
    assert scale(ms) == pytest.approx([1e7 / yres, 1e7 / xres], rel=1e-5)
    assert (root / "zarr.json").stat().st_size < GROUP_JSON_MAX
    assert "uint8" in site.manifest_entry("TVIPS_bin4.tif")["profile_mismatch"]
