"""`acqd demo`, as a newcomer runs it first: every simulated file shipped, verified and released,
nothing quarantined, the acquisition folder empty at the end."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from acqd.demo import CAMERAS
from tests.conftest import journal_rows, run_acqd

pytestmark = pytest.mark.slow


def test_the_demo_ships_and_verifies_every_file_and_quarantines_none(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    r = run_acqd("demo", "--dir", str(base), timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "quarantined" not in r.stderr, r.stderr
    rows = journal_rows(base / "state")
    expected = sum(spec.files for _, _, spec, _ in CAMERAS)
    assert len(rows) == expected, rows
    assert {state for _, state, _, _ in rows} == {"released"}, rows  # verified, then freed locally
    assert [p for p in (base / "acquisition").rglob("*") if p.is_file()] == []
    central = base / "central" / "demo-scope"
    assert len(list(central.glob("k3/*/*.mrc~.tif"))) == CAMERAS[0][2].files
    assert len(list(central.glob("lightsheet/*/*.tif~.zarr"))) == CAMERAS[1][2].files
    assert "files left on the acquisition disk: 0" in r.stdout
    # the commands it prints work as pasted (here acqd ran as `python -m acqd`: that is what it says)
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("restore: ")]
    args = shlex.split(line.removeprefix("restore: "))
    assert args[:3] == [sys.executable, "-m", "acqd"] and args[3] == "restore", args
    restored = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert restored.returncode == 0 and restored.stdout.strip().endswith(" OK"), restored.stdout + restored.stderr
    assert (base / "movie_00000.mrc").stat().st_size > 0
