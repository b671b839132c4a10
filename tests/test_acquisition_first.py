"""Acquisition comes first, end to end with the real daemon: it backs off while the acquisition
disk's writes are slow (and loses nothing: the files ship once they are fast again), ships at full
speed while the disk fills, and keeps a tier's bandwidth schedule.

The disk's counters come from a block stat file the test writes (`limits.backoff.stat_file`, the
same format as /sys/block/*/stat): a CI machine's real disk latency cannot be steered."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from acqd.simulate import SimSpec, simulate
from tests.conftest import Background, journal_states, run_acqd, tree, wait_for, write_config
from tests.servers import SeaweedS3, free_port


class FakeDisk:
    """A block stat file whose counters advance every 20 ms with a chosen mean write latency."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.latency_ms = 1.0
        self.writes = self.write_ms = self.io_ms = 0
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        f = [0] * 17
        f[4], f[7], f[9] = self.writes, self.write_ms, self.io_ms
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(" ".join(map(str, f)) + "\n")
        os.replace(tmp, self.path)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.writes += 10
            self.write_ms += int(10 * self.latency_ms)
            self.io_ms += 10
            self._write()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[FakeDisk]:
    d = FakeDisk(tmp_path / "stat")
    yield d
    d.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def gauge(port: int, name: str) -> float | None:
    """A gauge's value (its first series), or None while the daemon does not answer yet."""
    try:
        text = scrape(port)
    except OSError:
        return None
    m = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def config(tmp_path: Path, dirs: tuple[Path, Path, Path], port: int, free_below: float) -> Path:
    watch, dest, state = dirs
    return write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - path: {watch}
    settle: 0.2s
tiers:
  central: {{url: "file://{dest}"}}
metrics: {{bind: "127.0.0.1:{port}"}}
limits:
  concurrent_files: 3
  backoff:
    write_latency_above: 50ms
    write_latency_below: 20ms
    concurrent_files: 0
    interval: 100ms
    free_below_percent: {free_below}
    stat_file: {tmp_path / "stat"}
""",
    )


def test_backoff_pauses_new_work_and_loses_nothing(
    tmp_path: Path, dirs: tuple[Path, Path, Path], disk: FakeDisk
) -> None:
    watch, dest, state = dirs
    port = free_port()
    cfg = config(tmp_path, dirs, port, free_below=0)
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: gauge(port, "acqd_backoff") == 0.0, what="metrics up, not backing off", daemon=d)
        disk.latency_ms = 200.0  # the camera's writes are slow now
        wait_for(lambda: gauge(port, "acqd_backoff") == 1.0, what="back-off", daemon=d)
        assert gauge(port, "acqd_ship_slots") == 0.0
        wait_for(  # a reading wholly after the change (the first may straddle it)
            lambda: abs((gauge(port, "acqd_acquisition_disk_write_latency_seconds") or 0) - 0.2) < 0.05,
            what="the disk's write latency exported",
            daemon=d,
        )
        files = {f"s/f{i}.bin": os.urandom(50_000 + i) for i in range(5)}
        for rel, data in files.items():
            (watch / rel).parent.mkdir(exist_ok=True)
            (watch / rel).write_bytes(data)
        wait_for(lambda: set(journal_states(state)) == set(files), what="files seen", daemon=d, state=state)
        # paused: nothing is shipped while the disk stays slow (a bounded look: many settle windows)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert set(journal_states(state).values()) <= {"seen"}, journal_states(state)
            time.sleep(0.1)
        st = run_acqd("status", "--state-dir", str(state))
        assert st.returncode == 0, st.stderr
        shown = " ".join(st.stdout.split())
        assert "acquisition disk: backing off for the camera, 0 file(s) at once since" in shown
        assert re.search(r"\(watch watch0: write latency \d+ ms > 50 ms\)", shown), shown
        disk.latency_ms = 30.0  # better, but not yet at the leave threshold: still paused
        time.sleep(1.0)
        assert gauge(port, "acqd_backoff") == 1.0
        disk.latency_ms = 5.0
        wait_for(
            lambda: set(journal_states(state).values()) == {"verified"}, what="all verified", daemon=d, state=state
        )
        assert gauge(port, "acqd_backoff") == 0.0
        assert gauge(port, "acqd_ship_slots") == 3.0
        assert {k.removeprefix("scope/"): v for k, v in tree(dest).items() if not k.endswith(".json")} == files
        st = run_acqd("status", "--state-dir", str(state))
        assert "acquisition disk" not in st.stdout
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert err.count("backing off for the camera") == 1, err  # logged once when entering ...
    assert err.count("back-off over") == 1, err  # ... and once when leaving


def test_free_space_pressure_overrides_the_backoff(
    tmp_path: Path, dirs: tuple[Path, Path, Path], disk: FakeDisk
) -> None:
    """Below free_below_percent acqd ships at full speed however slow the disk is (100 %: always)."""
    watch, _dest, state = dirs
    port = free_port()
    disk.latency_ms = 200.0
    cfg = config(tmp_path, dirs, port, free_below=100)
    chk = run_acqd("check", "--config", str(cfg), "--no-probe")
    assert chk.returncode == 0, chk.stderr
    assert f"back-off: watch watch0: disk counters {tmp_path / 'stat'}, back off above 50 ms" in chk.stdout
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: gauge(port, "acqd_free_space_override") == 1.0, what="override", daemon=d)
        assert gauge(port, "acqd_backoff") == 0.0
        assert gauge(port, "acqd_ship_slots") == 3.0
        for i in range(3):
            (watch / f"f{i}.bin").write_bytes(os.urandom(10_000))
        wait_for(
            lambda: journal_states(state) == {f"f{i}.bin": "verified" for i in range(3)},
            what="shipped despite the slow disk",
            daemon=d,
            state=state,
        )
        st = run_acqd("status", "--state-dir", str(state))
        assert "acquisition disk: nearly full, shipping at full speed" in " ".join(st.stdout.split())
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "acquisition disk nearly full" in err and "back-off overridden" in err


RATE = 250_000  # bytes per second


@pytest.mark.parametrize("case", ["copy-large", "copy-small", "zarr", "tiff", "s3"])
def test_tier_bandwidth_limit_is_kept(
    tmp_path: Path, dirs: tuple[Path, Path, Path], case: str, request: pytest.FixtureRequest
) -> None:
    """What lands on a tier limited to 250 kB/s takes at least (stored bytes / 250 kB/s) to get there,
    asserted loosely (half of it, ~3 s; an unlimited run takes a fraction of that), whatever path
    the bytes take: byte-exact copies (a large file: write_atomic; small ones: the batched write), a
    Zarr store (orca), a TIFF written in place (K3), and an S3 upload (SeaweedFS)."""
    watch, dest, state = dirs
    files: dict[str, bytes] = {}
    detector = {"zarr": "hamamatsu-orca", "tiff": "gatan-k3"}.get(case, "generic")
    if case in ("copy-large", "s3"):
        files = {"s/big.bin": os.urandom(1_500_000)}
    elif case == "copy-small":
        files = {f"s/small{i}.bin": os.urandom(250_000) for i in range(6)}
    else:
        frames = 8 if case == "zarr" else 20
        simulate(detector, watch / "s", SimSpec(files=1, frames=frames, height=512, width=512, seed=3))
    for rel, data in files.items():
        (watch / rel).parent.mkdir(exist_ok=True)
        (watch / rel).write_bytes(data)
    tier = f'{{url: "file://{dest}"'
    if case == "s3":
        s3: SeaweedS3 = request.getfixturevalue("s3_server")
        opts = ", ".join(f"{k}: {v}" for k, v in s3.options(part_size="5MiB").items())
        tier = f'{{url: "s3://{s3.bucket(f"acqd-{uuid.uuid4().hex[:12]}")}/facility", options: {{{opts}}}'
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - path: {watch}
    detector: {detector}
    settle: 0.1s
tiers:
  central: {tier}, bandwidth: [{{hours: "00-24", days: "mon-sun", limit: {RATE}}}]}}
limits: {{backoff: {{enabled: false}}}}
""",
    )
    t0 = time.monotonic()
    r = run_acqd("run", "--config", str(cfg), "--once", timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert set(journal_states(state).values()) == {"verified"}
    stored = 1_500_000 if case == "s3" else sum(len(v) for v in tree(dest).values())
    print(f"{case}: {stored} bytes stored in {elapsed:.1f}s")
    assert stored > 1_200_000, stored  # enough for the bound to mean something
    assert elapsed >= 0.5 * stored / RATE, f"{stored} bytes at {RATE} B/s in {elapsed:.1f}s"
    if files and case != "s3":
        assert {k.removeprefix("scope/"): v for k, v in tree(dest).items() if not k.endswith(".json")} == files


def test_a_stop_while_backing_off_leaves_the_waiting_files_for_the_next_start(
    tmp_path: Path, dirs: tuple[Path, Path, Path], disk: FakeDisk
) -> None:
    """SIGTERM while every ship slot is withheld and files wait for one: the daemon exits at once
    (not at the drain deadline) and the files it had not started are shipped by the next start."""
    watch, dest, state = dirs
    port = free_port()
    cfg = config(tmp_path, dirs, port, free_below=0)
    disk.latency_ms = 200.0
    files = {f"f{i}.bin": os.urandom(20_000) for i in range(4)}
    for rel, data in files.items():
        (watch / rel).write_bytes(data)
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: gauge(port, "acqd_backoff") == 1.0, what="back-off", daemon=d)
        wait_for(lambda: (gauge(port, "acqd_ship_waiting") or 0) >= 1, what="a file held back", daemon=d)
    finally:
        t0 = time.monotonic()
        code, err = d.terminate()
    assert code == 0, err
    assert time.monotonic() - t0 < 25, "the stop waited for the drain deadline"  # generous: DRAIN_SECONDS is 30
    assert "verified" not in set(journal_states(state).values())
    disk.latency_ms = 1.0
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(
            lambda: set(journal_states(state).values()) == {"verified"}, what="all verified", daemon=d, state=state
        )
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert {k.removeprefix("scope/"): v for k, v in tree(dest).items() if not k.endswith(".json")} == files


def test_backoff_and_bandwidth_settings_follow_a_sighup(
    tmp_path: Path, dirs: tuple[Path, Path, Path], disk: FakeDisk
) -> None:
    """An operator tunes the back-off thresholds, the ship slots and a tier's bandwidth schedule on
    a running daemon with SIGHUP (systemctl reload): each takes effect without a restart."""
    _watch, dest, _state = dirs
    port = free_port()
    cfg = config(tmp_path, dirs, port, free_below=0)
    disk.latency_ms = 30.0  # under the 50 ms threshold: full speed
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: gauge(port, "acqd_ship_slots") == 3.0, what="metrics up, 3 slots", daemon=d)
        wait_for(
            lambda: abs((gauge(port, "acqd_acquisition_disk_write_latency_seconds") or 0) - 0.03) < 0.01,
            what="the disk's write latency exported",
            daemon=d,
        )
        assert gauge(port, "acqd_backoff") == 0.0
        assert gauge(port, "acqd_tier_bandwidth_limit_bytes") in (None, 0.0)
        text = cfg.read_text()
        text = text.replace("write_latency_above: 50ms", "write_latency_above: 20ms")
        text = text.replace("write_latency_below: 20ms", "write_latency_below: 10ms")
        text = text.replace(
            f'central: {{url: "file://{dest}"}}',
            f'central: {{url: "file://{dest}", bandwidth: [{{hours: "00-24", days: "mon-sun", limit: 1MB/s}}]}}',
        )
        assert "bandwidth" in text
        cfg.write_text(text)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: gauge(port, "acqd_backoff") == 1.0, what="back-off at the new threshold", daemon=d)
        wait_for(lambda: gauge(port, "acqd_tier_bandwidth_limit_bytes") == 1e6, what="the new schedule", daemon=d)
        cfg.write_text(
            text.replace("write_latency_above: 20ms", "write_latency_above: 50ms")
            .replace("write_latency_below: 10ms", "write_latency_below: 40ms")
            .replace("concurrent_files: 3", "concurrent_files: 2")
        )
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: gauge(port, "acqd_ship_slots") == 2.0, what="2 slots after the reload", daemon=d)
        assert gauge(port, "acqd_backoff") == 0.0
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert "change only with a restart" not in err, err
