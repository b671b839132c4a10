"""The daemon shipping to real remote tiers: SeaweedFS over S3, OpenSSH over SFTP.

Simulated K3 movies (MRC -> compressed TIFF) and light-sheet stacks (TIFF -> OME-Zarr) ship and
verify, and restore byte for byte; then the server is stopped in the middle of large uploads
(and the daemon killed while it is down): nothing partial is ever under a final name, and
everything ships once the server is back.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from acqd.simulate import SimSpec, simulate
from tests.conftest import Background, journal_rows, run_acqd, wait_for, write_config
from tests.servers import SeaweedS3, Sshd

pytestmark = pytest.mark.slow


def _tier_yaml(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, extra: str = ""
) -> tuple[str, Callable[[], dict[str, bytes]], Callable[[], list[str]]]:
    """The tiers: block for `kind` (with `extra` tier settings, YAML flow), what is stored (name ->
    bytes), and unfinished uploads (S3 multipart uploads, SFTP temporaries)."""
    if kind == "s3":
        s3: SeaweedS3 = request.getfixturevalue("s3_server")
        bucket = s3.bucket(f"acqd-{uuid.uuid4().hex[:12]}")

        def listing() -> dict[str, bytes]:
            c = s3.client()
            out: dict[str, bytes] = {}
            for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="facility/"):  # type: ignore[attr-defined]
                for o in page.get("Contents", []):
                    out[o["Key"][len("facility/") :]] = c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()  # type: ignore[attr-defined]
            return out

        def uploads() -> list[str]:
            got = s3.client().list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
            return [u["Key"] for u in got.get("Uploads", [])]

        opts = s3.options(part_size="5MiB", concurrency=3)
        body = ", ".join(f"{k}: {v}" for k, v in opts.items())
        return f'  central: {{url: "s3://{bucket}/facility", options: {{{body}}}{extra}}}', listing, uploads
    sshd: Sshd = request.getfixturevalue("sshd_server")
    root = tmp_path / "sftp-root"
    root.mkdir()

    def listing_sftp() -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    opts = sshd.options(connect_timeout=3)
    body = ", ".join(f"{k}: {v}" for k, v in opts.items())

    def temporaries() -> list[str]:
        return [str(p) for p in root.rglob(".~acqd-tmp*")]

    return f'  central: {{url: "{sshd.url(root)}", options: {{{body}}}{extra}}}', listing_sftp, temporaries


@pytest.mark.parametrize("kind", ["s3", "sftp"])
def test_k3_and_lightsheet_ship_verify_and_restore(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    k3 = simulate("gatan-k3", tmp_path / "acq" / "k3", SimSpec(files=2, frames=3, height=4092, width=5760))
    ls = simulate("hamamatsu-orca", tmp_path / "acq" / "ls", SimSpec(files=2, frames=8, height=512, width=512))
    originals = tmp_path / "originals"
    shutil.copytree(tmp_path / "acq", originals)
    tiers, listing, _ = _tier_yaml(kind, request, tmp_path)
    state = tmp_path / "state"
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - {{path: {tmp_path / "acq" / "k3"}, name: k3, prefix: k3, detector: gatan-k3, settle: 0.2s,
     placement: {{release_local: after_verify}}}}
  - {{path: {tmp_path / "acq" / "ls"}, name: ls, prefix: ls, detector: hamamatsu-orca, settle: 0.2s,
     placement: {{release_local: after_verify}}}}
tiers:
{tiers}
""",
    )
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "30s", timeout=300)
    assert r.returncode == 0, r.stderr
    rows = journal_rows(state)
    assert len(rows) == len(k3) + len(ls) and all(row[1] == "released" for row in rows), rows
    stored = listing()
    assert any(k.startswith("scope/k3/") and k.endswith(".tif") for k in stored), sorted(stored)
    assert any("scope/ls/" in k and ".zarr/" in k for k in stored), sorted(stored)
    assert not any(".~acqd-tmp" in k for k in stored), sorted(stored)
    for src in [*k3, *ls]:
        rel = src.relative_to(tmp_path / "acq")
        out = tmp_path / "restored" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        r = run_acqd("restore", str(src), str(out), "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == (originals / rel).read_bytes(), rel


def _outage_config(tmp_path: Path, watch: Path, state: Path, tiers: str) -> Path:
    """The outage tests' acqd.yaml: zstd copies released once verified, two files at a time, quick retries."""
    return write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - {{path: {watch}, settle: 0.2s, placement: {{compress: zstd, zstd_level: 1, release_local: after_verify}}}}
tiers:
{tiers}
limits: {{concurrent_files: 2, chunk_bytes: 1MiB, retry_initial: 100ms, retry_max: 1s}}
""",
    )


@pytest.mark.parametrize("kind", ["s3", "sftp"])
def test_an_outage_the_daemon_lives_through_leaves_no_unfinished_upload(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The server stops in the middle of an upload and comes back while acqd runs on: the upload's
    abort failed with the server away, and the unfinished S3 upload was left, and billed, until the
    next start (a daemon runs for months: an adversarial review). It is aborted once the server
    answers again; every file ships and is released."""
    watch, state = tmp_path / "acq", tmp_path / "state"
    watch.mkdir()
    rng = __import__("random").Random(12)
    for i in range(2):  # three parts each on S3
        (watch / f"movie_{i}.raw").write_bytes(rng.randbytes(11 << 20) + bytes(3 << 20))
    tiers, _listing, uploads = _tier_yaml(kind, request, tmp_path, ", bandwidth: [{limit: 4MB/s}]")
    server: SeaweedS3 | Sshd = request.getfixturevalue("s3_server" if kind == "s3" else "sshd_server")
    cfg = _outage_config(tmp_path, watch, state, tiers)
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: bool(uploads()), 60, "an upload under way", daemon=d, state=state)
        server.stop()
        time.sleep(3)  # the writes fail, and so do their aborts
        server.start()
        released = lambda: sorted(p.name for p in watch.iterdir()) == []  # noqa: E731
        wait_for(released, 180, "every file released", daemon=d, state=state)
        wait_for(lambda: uploads() == [], 30, "no unfinished upload left", daemon=d, state=state)
    finally:
        d.terminate()
        if server.proc is None:
            server.start()


def test_an_upload_abandoned_in_an_outage_is_aborted_without_a_restart(
    s3_server: SeaweedS3, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """As above, but the files being shipped are moved away during the outage (an operator's): their
    keys are never uploaded again, so only the abort remembered from the outage, made once the
    server answers (here: for another file), ends the unfinished upload before the next start."""
    watch, state = tmp_path / "acq", tmp_path / "state"
    watch.mkdir()
    rng = __import__("random").Random(13)
    for i in range(2):
        (watch / f"movie_{i}.raw").write_bytes(rng.randbytes(11 << 20) + bytes(3 << 20))
    tiers, _listing, uploads = _tier_yaml("s3", request, tmp_path, ", bandwidth: [{limit: 4MB/s}]")
    cfg = _outage_config(tmp_path, watch, state, tiers)
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: bool(uploads()), 60, "an upload under way", daemon=d, state=state)
        s3_server.stop()
        # the write failed with the server still away, and so did its abort (not once it was back)
        wait_for(lambda: "retry 'movie_" in d.stderr(), 120, "a write failed in the outage", daemon=d, state=state)
        aside = tmp_path / "aside"
        aside.mkdir()
        for p in watch.iterdir():
            p.rename(aside / p.name)
        s3_server.start()
        (watch / "late.raw").write_bytes(rng.randbytes(1 << 20))
        wait_for(lambda: not (watch / "late.raw").exists(), 180, "the late file released", daemon=d, state=state)
        wait_for(lambda: uploads() == [], 30, "no unfinished upload left", daemon=d, state=state)
    finally:
        d.terminate()
        if s3_server.proc is None:
            s3_server.start()


@pytest.mark.parametrize("kind", ["s3", "sftp"])
def test_server_stopped_mid_upload_leaves_nothing_partial(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    watch, state = tmp_path / "acq", tmp_path / "state"
    watch.mkdir()
    rng = __import__("random").Random(11)
    expected: dict[str, bytes] = {}
    for i in range(4):  # 14 MiB each, 11 MiB compressed: three parts on S3
        data = rng.randbytes(11 << 20) + bytes(3 << 20)
        (watch / f"movie_{i}.raw").write_bytes(data)
        expected[f"movie_{i}.raw"] = data
    # The tier's bandwidth schedule holds each upload open for seconds (at full speed on loopback a
    # whole upload could begin and end between two looks, and the server would never be stopped
    # in the middle of one).
    tiers, listing, uploads = _tier_yaml(kind, request, tmp_path, ", bandwidth: [{limit: 4MB/s}]")
    server: SeaweedS3 | Sshd = request.getfixturevalue("s3_server" if kind == "s3" else "sshd_server")
    cfg = _outage_config(tmp_path, watch, state, tiers)
    dctx = zstandard.ZstdDecompressor()

    def whole_under_final_names(stored: dict[str, bytes]) -> None:
        for key, data in stored.items():
            name = key.rpartition("/")[2]
            if name.startswith((".", "~acqd-")):
                continue
            assert key.startswith("scope/") and key.endswith("~.zst"), key
            assert dctx.decompress(data) == expected[key[len("scope/") : -5]], f"partial object under {key}"

    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: bool(uploads()), 60, "an upload under way", daemon=d, state=state)
        server.stop()
        time.sleep(1.5)
    finally:
        d.kill()  # the daemon dies while the server is down (and never outlives the test)
        if server.proc is None:
            server.start()
    whole_under_final_names(listing())
    # the rest ships at full speed: the same configuration without the schedule
    cfg.write_text(cfg.read_text().replace(", bandwidth: [{limit: 4MB/s}]", ""))
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "60s", timeout=300)
    assert r.returncode == 0, r.stderr
    stored = listing()
    whole_under_final_names(stored)
    finals = sorted(k for k in stored if not k.rpartition("/")[2].startswith("~acqd-"))
    assert finals == sorted(f"scope/{n}~.zst" for n in expected), finals  # each once, no temporaries
    assert sorted(p.name for p in watch.iterdir()) == []  # all released, each after its verification
    assert uploads() == [], "an unfinished upload was left behind"
