"""A real install: the wheel built from the repository, installed into a fresh venv outside the clone,
ships files with a detector profile, a retention policy and mail templates it carries itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "acqd", "detectors", "policies")


def _run(cmd: list[str | Path], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "ACQD_DETECTORS")}
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def test_the_wheel_carries_profiles_policies_and_templates_and_ships_from_a_fresh_venv(tmp_path: Path) -> None:
    # build from a copy of the sources: a build in the clone would leave build/ and *.egg-info there
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "_shipped", "*.egg-info"))
        else:
            shutil.copy2(p, src / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, src], cwd=tmp_path)
    [wheel] = wheels.glob("acqd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, pattern in (("detectors", "*.yaml"), ("policies", "*.yaml"), ("policies/templates", "*.j2")):
        shipped = sorted(p.name for p in (REPO / folder).glob(pattern))
        assert shipped, folder
        assert {f"acqd/_shipped/{folder}/{n}" for n in shipped} <= names, sorted(names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], cwd=tmp_path)
    acqd = venv / "bin" / "acqd"
    work = tmp_path / "work"  # nowhere near the clone
    work.mkdir()
    r = _run([venv / "bin" / "python", "-c", "import acqd.shipped as s; print(s.shipped('detectors'))"], cwd=work)
    assert Path(r.stdout.strip()).is_relative_to(venv), r.stdout
    # the catalog's SQL migrations ship, and the module loads without the optional PostgreSQL client
    assert {f"acqd/catalog_sql/{p.name}" for p in (REPO / "acqd" / "catalog_sql").glob("*.sql")} <= names
    r = _run([venv / "bin" / "python", "-c", "import acqd.catalog as c; print(c.SCHEMA_VERSION)"], cwd=work)
    assert r.stdout.strip() == str(len(list((REPO / "acqd" / "catalog_sql").glob("*.sql")))), r.stdout

    _run([acqd, "simulate", "--detector", "hamamatsu-orca", "--out", "acq", "--files", "2", "--frames", "4",
          "--size", "64x64"], cwd=work)  # fmt: skip
    r = _run([acqd, "run", "--once", "--watch", "acq", "--dest", "central", "--detector", "hamamatsu-orca",
              "--state-dir", "state", "--instrument", "scope", "--settle", "0.3s"], cwd=work)  # fmt: skip
    assert "2 verified" in r.stdout and "0 quarantined" in r.stdout, r.stdout
    stored = sorted(p.name for p in (work / "central" / "scope" / "session_000").glob("*.zarr"))
    assert stored == ["stack_00000.tif~.zarr", "stack_00001.tif~.zarr"]  # OME-Zarr: the profile's layout
    r = _run([acqd, "verify", "--state-dir", "state"], cwd=work)
    assert "2 copies OK, 0 failed" in r.stdout

    # a shipped retention policy by name, and the shipped mail templates
    (work / "acqd.yaml").write_text(
        f"instrument: scope2\nstate_dir: {work}/state2\nwatch:\n  - path: {work}/acq\n    detector: gatan-k3\n"
        f"tiers:\n  central: {{url: 'file://{work}/central'}}\n  capacity: {{url: 'file://{work}/capacity'}}\n"
        "policy: cryoem-facility\n"
    )
    r = _run([acqd, "check", "--config", "acqd.yaml"], cwd=work)
    assert "policy cryoem-facility" in r.stdout and "detector gatan-k3" in r.stdout, r.stdout
    r = _run(
        [venv / "bin" / "python", "-c", "from acqd.notify import Digests; print(Digests().env.list_templates())"],
        cwd=work,
    )
    assert "warning.txt.j2" in r.stdout and "warning.html.j2" in r.stdout
