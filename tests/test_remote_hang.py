"""A destination that stops answering must not keep a stopping daemon alive (found by an adversarial
review of the remote tiers, ninth session)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

from tests.conftest import Background, need_path, wait_for
from tests.servers import SeaweedS3, _descendants, weed_binary
from tests.test_remote_names import _config, _s3_tier


def test_sigterm_stops_the_daemon_while_the_s3_server_hangs(tmp_path: Path) -> None:
    """The S3 server stops answering (SIGSTOP) in the middle of a multipart upload. SIGTERM was not
    honoured: "drain deadline reached" after 30 s, then the process stayed, its I/O thread blocked in
    the upload (measured: still running 330 s after SIGTERM; systemd SIGKILLs it). The daemon now
    leaves blocked storage calls behind 15 s after the drain, says so, and exits; the source stays.
    A server of its own: a stopped SeaweedFS may fail the next requests of whoever shares it."""
    s3_server = SeaweedS3(tmp_path / "seaweedfs", need_path(weed_binary(), "SeaweedFS `weed` not installed"))
    s3_server.start()
    try:
        _hang(s3_server, tmp_path)
    finally:
        s3_server.stop()


def _hang(s3_server: SeaweedS3, tmp_path: Path) -> None:
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    watch, state = tmp_path / "acq", tmp_path / "state"
    watch.mkdir()
    (watch / "movie_0.raw").write_bytes(os.urandom(12 << 20))
    # a bandwidth limit keeps the upload going long enough to stop the server in its middle
    cfg = _config(tmp_path, watch, state, _s3_tier(s3_server, bucket, ", bandwidth: [{limit: 3MB/s}]"))

    def uploading() -> bool:
        got = s3_server.client().list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
        return bool(got.get("Uploads"))

    d = Background("run", "--config", str(cfg))
    assert s3_server.proc is not None
    stopped: list[int] = []
    try:
        wait_for(uploading, 60, "a multipart upload under way", daemon=d, state=state)
        time.sleep(1)
        stopped = [s3_server.proc.pid, *_descendants(s3_server.proc.pid)]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(3)
        d.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        with contextlib.suppress(Exception):
            d.proc.wait(timeout=100)  # the drain's 30 s and 15 s for the I/O threads, with room
        took = time.monotonic() - t0
        assert d.proc.poll() is not None, f"still running {took:.0f}s after SIGTERM:\n{d.stderr()[-2000:]}"
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        d.kill()
    assert (watch / "movie_0.raw").exists()
    assert "still blocked" in d.stderr(), d.stderr()[-2000:]
