"""Source names that hold characters S3 clients read as something else (found by an adversarial
review of the remote tiers, ninth session): `?`, `*` and `[..]` are glob patterns to fsspec's rm,
copy and mv, and `?versionId=` an object version to s3fs. A name is an exact key: nothing beside it
is touched, and a name S3 cannot hold is quarantined with the reason, the source kept."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from acqd.simulate import SimSpec, simulate
from tests.conftest import journal_rows, run_acqd, write_config
from tests.servers import SeaweedS3


def _s3_tier(s3: SeaweedS3, bucket: str, extra: str = "") -> str:
    opts = s3.options(part_size="5MiB", concurrency=2)
    body = ", ".join(f"{k}: {v}" for k, v in opts.items())
    return f'  central: {{url: "s3://{bucket}/facility", options: {{{body}}}{extra}}}'


def _keys(s3: SeaweedS3, bucket: str) -> list[str]:
    c = s3.client()
    out: list[str] = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):  # type: ignore[attr-defined]
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def _config(tmp_path: Path, watch: Path, state: Path, tiers: str, detector: str = "generic") -> Path:
    return write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - {{path: {watch}, detector: {detector}, settle: 0.2s, placement: {{release_local: after_verify}}}}
tiers:
{tiers}
limits: {{retry_initial: 100ms, retry_max: 1s, chunk_bytes: 1MiB}}
""",
    )


def test_an_s3_zarr_name_with_a_glob_character_never_deletes_another_files_copy(
    s3_server: SeaweedS3, tmp_path: Path
) -> None:
    """`stackA.tif` ships to S3 as OME-Zarr, verifies, and its source is released. Then `stack?.tif`
    arrives in the same session. Its S3 tree commit (`fs.copy` per object) and later the removal of
    its own unverified copy (`fs.rm(path, recursive=True)`) go through fsspec's glob expansion: the
    `?` matches the `A`, and stackA.tif's only copy is deleted while its journal row says released."""
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    stacks = simulate("hamamatsu-orca", tmp_path / "gen", SimSpec(files=2, frames=4, height=64, width=64))
    watch, state = tmp_path / "acq", tmp_path / "state"
    (watch / "sess").mkdir(parents=True)
    shutil.copy(stacks[0], watch / "sess" / "stackA.tif")
    cfg = _config(tmp_path, watch, state, _s3_tier(s3_server, bucket), detector="hamamatsu-orca")
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s", timeout=180)
    assert r.returncode == 0, r.stderr
    assert not (watch / "sess" / "stackA.tif").exists(), "released after its copy verified"
    before = [k for k in _keys(s3_server, bucket) if "/stackA.tif~.zarr/" in k]
    assert any(k.endswith("stackA.tif~.zarr/zarr.json") for k in before), before

    shutil.copy(stacks[1], watch / "sess" / "stack?.tif")
    run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "10s", timeout=180)
    after = [k for k in _keys(s3_server, bucket) if "/stackA.tif~.zarr/" in k]
    assert after == before, (
        f"stackA.tif (released, journal: {journal_rows(state)}) lost its only copy: {before} -> {after}"
    )


@pytest.mark.parametrize("name", ["stack[1].tif", "stack?.tif", "stack*.tif"])
def test_an_s3_zarr_name_with_a_glob_character_ships(name: str, s3_server: SeaweedS3, tmp_path: Path) -> None:
    """A single light-sheet stack whose name holds `[`...`]` or `?` never ships to S3: `[1]` -> the
    commit's glob matches nothing ("clean ...: path not found on the destination", retried for ever);
    `?` -> the objects are copied to wrong keys (`0/zarr.json/zarr.json`), so a tree without a root
    `zarr.json` sits under the final name and verify fails for ever ("No group found")."""
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    stacks = simulate("hamamatsu-orca", tmp_path / "gen", SimSpec(files=1, frames=4, height=64, width=64))
    watch, state = tmp_path / "acq", tmp_path / "state"
    (watch / "sess").mkdir(parents=True)
    shutil.copy(stacks[0], watch / "sess" / name)
    cfg = _config(tmp_path, watch, state, _s3_tier(s3_server, bucket), detector="hamamatsu-orca")
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "15s", timeout=180)
    assert r.returncode == 0, (journal_rows(state), _keys(s3_server, bucket), r.stderr[-1500:])
    assert [row[1] for row in journal_rows(state)] == ["released"]


def test_an_s3_name_holding_versionid_is_quarantined_and_kept(s3_server: SeaweedS3, tmp_path: Path) -> None:
    """`q?versionId=3.dat` was written under its literal key and read back through s3fs, which splits
    `?versionId=` off as an object version: "missing", retried for ever. S3 cannot hold such a name
    for its clients: the file is quarantined with the reason, kept where it is, and the others ship."""
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    watch, state = tmp_path / "acq", tmp_path / "state"
    (watch / "s").mkdir(parents=True)
    data = os.urandom(2000)
    (watch / "s" / "q?versionId=3.dat").write_bytes(data)
    (watch / "s" / "fine.dat").write_bytes(b"an ordinary name")
    cfg = _config(tmp_path, watch, state, _s3_tier(s3_server, bucket))
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "10s", timeout=120)
    assert r.returncode == 0, r.stderr  # every complete file verified or quarantined (README)
    assert "versionId" in r.stderr and "quarantined" in r.stderr, r.stderr
    assert (watch / "s" / "q?versionId=3.dat").read_bytes() == data
    assert not any("versionId" in k for k in _keys(s3_server, bucket))
    states = {row[0]: row[1] for row in journal_rows(state)}
    assert states == {"s/q?versionId=3.dat": "quarantined", "s/fine.dat": "released"}, states
