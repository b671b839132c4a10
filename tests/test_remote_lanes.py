"""A tier that stops answering holds up only its own files: the other tiers' files go on shipping,
and are released (found by a review of the remote tiers, thirty-third session: every ship worker and
I/O thread ended up waiting on the stalled tier, and the healthy tier's files were not even found)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import Background, journal_states, need_path, run_acqd, wait_for, write_config
from tests.servers import SeaweedS3, Sshd, _descendants, weed_binary
from tests.test_remote_hang import SPLIT_POLICY

FAR_FILES = 8  # more than the ship workers (4): before, they took every one


@contextlib.contextmanager
def _frozen(pid: int) -> Iterator[Callable[[], None]]:
    """SIGSTOP a server and its children (it takes connections and never answers); the callable thaws it."""
    stopped = [pid, *_descendants(pid)]
    for p in stopped:
        os.kill(p, signal.SIGSTOP)

    def thaw() -> None:
        for p in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        stopped.clear()

    try:
        yield thaw
    finally:
        thaw()


SPLIT = SPLIT_POLICY.replace("[central, nas]", "[far, nas]")  # .dat files to the local tier


def _beside(tmp_path: Path, far_tier: str, pid: Callable[[], int]) -> None:
    """Watch root `far` ships to `far_tier` (its server's process: `pid`), and keeps its session
    manifests there; its `.dat` files and watch root `near` ship to a local folder. With the far server
    frozen: 8 files for it, a `.dat` whose session manifest then waits on the frozen server, and 4 files
    for the local tier. The local ones are released while it stays frozen; once it answers again, the
    far ones ship too and the `.dat` is released, none lost. The in-flight budget holds two far files'
    chunks: a far file's flight, frozen, holds one, and the next waits (one tier's share)."""
    far, near, state, nas = tmp_path / "far", tmp_path / "near", tmp_path / "state", tmp_path / "nas"
    far.mkdir()
    near.mkdir()
    (tmp_path / "policy.yaml").write_text(SPLIT)
    placed = "detector: generic, settle: 0.2s, placement: {{tier: {}, release_local: after_verify}}"
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
policy: {tmp_path / "policy.yaml"}
watch:
  - {{path: {far}, prefix: far, {placed.format("far")}}}
  - {{path: {near}, prefix: near, {placed.format("nas")}}}
tiers:
{far_tier}
  nas: {{url: "file://{nas}"}}
limits: {{retry_initial: 100ms, retry_max: 1s, stalled_after: 5s, inflight_bytes: 256KiB, chunk_bytes: 64KiB}}
""",
    )
    data = {f"f{i}.raw": os.urandom(200_000) for i in range(FAR_FILES)}
    d = Background("run", "--config", str(cfg))
    try:
        (far / "first.raw").write_bytes(os.urandom(1000))
        wait_for(lambda: journal_states(state).get("first.raw") == "released", 60, "a first file shipped", d, state)
        with _frozen(pid()) as thaw:
            for name, body in data.items():
                (far / name).write_bytes(body)
            wait_for(
                lambda: sum(s == "complete" for s in journal_states(state).values()) >= 1,
                60,
                "ship workers on the frozen server's files",
                d,
                state,
            )
            # shipped to the local tier; its session manifest, on the frozen server, waits: so does its release
            (far / "notes.dat").write_bytes(b"sidecar")
            wait_for(lambda: journal_states(state).get("notes.dat") == "verified", 60, "the sidecar verified", d, state)
            for i in range(4):
                (near / f"n{i}.raw").write_bytes(os.urandom(1000))
            wait_for(
                lambda: all(journal_states(state).get(f"n{i}.raw") == "released" for i in range(4)),
                60,
                "the local tier's files released while the other tier's server is frozen",
                d,
                state,
            )
            states = journal_states(state)
            assert all(states[n] in ("seen", "complete") for n in data), states  # waiting, not lost
            assert states["notes.dat"] == "verified" and (far / "notes.dat").exists(), states
            assert all((far / n).exists() for n in data)
            thaw()
            wait_for(
                lambda: all(journal_states(state).get(n) == "released" for n in [*data, "notes.dat"]),
                180,
                "the far files shipped and the sidecar released",
                d,
                state,
            )
    finally:
        code, err = d.terminate()
    assert code == 0, err[-3000:]
    out = tmp_path / "back.raw"
    r = run_acqd("restore", "f5.raw", str(out), "--config", str(cfg))
    assert r.returncode == 0 and out.read_bytes() == data["f5.raw"], r.stderr


def test_a_frozen_s3_server_does_not_hold_up_a_local_tier(tmp_path: Path) -> None:
    """S3's client retries each call on its own: the calls under way on a frozen server never end, and
    every ship worker stayed on them (the local tier's files were never found)."""
    s3 = SeaweedS3(tmp_path / "seaweedfs", need_path(weed_binary(), "SeaweedFS `weed` not installed"))
    s3.start()
    try:
        bucket = s3.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
        opts = ", ".join(f"{k}: {v}" for k, v in s3.options().items())

        def pid() -> int:
            assert s3.proc is not None
            return s3.proc.pid

        _beside(tmp_path, f'  far: {{url: "s3://{bucket}/facility", options: {{{opts}}}}}', pid)
    finally:
        s3.stop()


def test_a_frozen_sftp_server_does_not_hold_up_a_local_tier(tmp_path: Path) -> None:
    """An SFTP server that takes connections and never answers: each call waits for asyncssh's
    timeouts, and the workers cycled through its files while the local tier's waited."""
    binary = need_path(
        shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.path.exists(p)), None),
        "OpenSSH sshd not installed (apt-get install openssh-server)",
    )
    sshd = Sshd(tmp_path / "sshd", binary)
    sshd.start()
    try:
        (tmp_path / "remote").mkdir()
        opts = ", ".join(f"{k}: {v}" for k, v in sshd.options().items())

        def pid() -> int:
            assert sshd.proc is not None
            return sshd.proc.pid

        _beside(tmp_path, f'  far: {{url: "{sshd.url(tmp_path / "remote")}", options: {{{opts}}}}}', pid)
    finally:
        sshd.stop()
