"""Valid but unexpected files are shipped, not stranded (issue 13): a file that reads and only differs
from its detector profile's modes (a K2 linear-mode uint16 image with an FEI1 extended header, a
float32 image, a uint8 TIFF in an sCMOS folder) is stored faithfully in its own dtype, with a
`profile-mismatch` audit entry, event, metric and manifest note; a file that cannot be read
(truncated) is still quarantined. Run with the real daemon in burst mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from acqd.events import event_payload
from acqd.journal import Journal
from acqd.simulate import mrc_header
from acqd.values import Outcome
from tests.conftest import journal_rows
from tests.test_fidelity import restore_cli, stored
from tests.test_frames import ship


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
    }
    daemon: list[Any] = []
    _, dest, state = await ship(tmp_path, "t-k2-modes", files, daemon)
    states = {rel: st for rel, st, _, _ in journal_rows(state)}
    assert states == {
        "s/counting.mrc": "verified",
        "s/superres.mrc": "verified",
        "s/linear.mrc": "verified",
        "s/float.mrc": "verified",
        "s/trunc.mrc": "quarantined",  # cannot be stored faithfully: quarantine stays for that
    }
    notes = _audit(state, "profile-mismatch")
    assert sorted(notes) == ["s/float.mrc", "s/linear.mrc"]
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
    assert m.value("acqd_files_total", detector="t-k2-modes", outcome="profile-mismatch") == 2
    assert m.value("acqd_files_total", detector="t-k2-modes", outcome="verified") == 4
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
