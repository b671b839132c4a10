"""Running acqd like a service, against the real programs a facility uses: promtool, Prometheus,
Mosquitto, systemd-analyze and a real sd_notify socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.conftest import REPO, Background, digest, journal_states, need, wait_for, write_config

DEPLOY = REPO / "deploy"
pytestmark = pytest.mark.service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def service_config(
    tmp_path: Path,
    watch: Path,
    dest: Path,
    state: Path,
    *,
    metrics: int | None = None,
    mqtt: int | None = None,
    outbox: int = 10_000,
    release: bool = False,
) -> Path:
    body = f"""
instrument: scope
state_dir: {state}
watch:
  - path: {watch}
    name: k3
    settle: 0.2s
    placement: {{release_local: {"after_verify" if release else "never"}}}
tiers:
  central: {{url: "file://{dest}"}}
limits: {{retry_initial: 50ms, retry_max: 200ms}}
"""
    if metrics is not None:
        body += f"metrics: {{bind: '127.0.0.1:{metrics}'}}\n"
    if mqtt is not None:
        body += f"mqtt: {{url: 'mqtt://127.0.0.1:{mqtt}', outbox: {outbox}}}\n"
    return write_config(tmp_path / "acqd.yaml", body)


# --- rules, dashboard, unit: static checks with the real tools ---------------------------------


def test_promtool_checks_and_tests_the_rules() -> None:
    promtool = need("promtool", "Debian package prometheus")
    r = subprocess.run(
        [promtool, "check", "rules", "acqd.rules.yml"], cwd=DEPLOY / "prometheus", capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [promtool, "test", "rules", "acqd.rules.test.yml"], cwd=DEPLOY / "prometheus", capture_output=True, text=True
    )
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(
        [promtool, "check", "config", "prometheus.example.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_severity_and_annotations_and_a_test() -> None:
    import yaml

    rules = yaml.safe_load((DEPLOY / "prometheus" / "acqd.rules.yml").read_text())
    tests = (DEPLOY / "prometheus" / "acqd.rules.test.yml").read_text()
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 7
    for a in alerts:
        assert a["labels"]["severity"] in ("warning", "critical"), a["alert"]
        assert a["annotations"]["summary"] and a["annotations"]["description"], a["alert"]
        assert f"alertname: {a['alert']}" in tests, f"{a['alert']} has no promtool test"


def dashboard_queries(name: str = "acqd.json") -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / name).read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize(
    ("name", "uid", "least"), [("acqd.json", "acqd-overview", 15), ("acqd-facility.json", "acqd-facility", 15)]
)
def test_every_dashboard_query_passes_promtool(tmp_path: Path, name: str, uid: str, least: int) -> None:
    promtool = need("promtool", "Debian package prometheus")
    dash = json.loads((DEPLOY / "grafana" / name).read_text())
    assert dash["uid"] == uid
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instrument"} <= names
    queries = dashboard_queries(name)
    assert len(queries) >= least
    subst = {"$instrument": ".*", "$__rate_interval": "5m", "${datasource}": ""}
    rules = []
    for i, q in enumerate(queries):
        for k, v in subst.items():
            q = q.replace(k, v)
        assert "$" not in q, f"unknown variable in {q}"
        rules.append({"record": f"dashboard:query_{i}", "expr": q})
    f = tmp_path / "dash.rules.yml"
    f.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # and a query that is broken is caught by the same check
    f.write_text(json.dumps({"groups": [{"name": "d", "rules": [{"record": "x:y", "expr": "sum(rate(x[5m])"}]}]}))
    assert subprocess.run([promtool, "check", "rules", str(f)], capture_output=True).returncode != 0


def test_systemd_unit_verifies_cleanly_and_is_hardened(tmp_path: Path) -> None:
    sa = need("systemd-analyze")
    unit = (DEPLOY / "systemd" / "acqd.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "RestartPreventExitStatus=78" in unit
    # acquisition comes first: less CPU and disk time than a default service (the camera software's)
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert int(settings["CPUWeight"]) < 100 and int(settings["IOWeight"]) < 100 and int(settings["Nice"]) > 0
    assert settings["IOSchedulingClass"] in ("idle", "best-effort") and int(settings["IOSchedulingPriority"]) > 4
    acqd_bin = REPO / ".venv" / "bin" / "acqd"
    if not acqd_bin.exists():
        acqd_bin = Path(need("acqd", "the installed console script"))
    # the only change: ExecStart* point at this checkout's acqd instead of /usr/local/bin/acqd
    local = tmp_path / "acqd.service"
    local.write_text(unit.replace("/usr/local/bin/acqd", str(acqd_bin)))
    r = subprocess.run([sa, "verify", str(local)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    r = subprocess.run([sa, "security", "--offline=yes", str(local)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for acqd.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    # 1.8: CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (read-only use of /proc: open writers) cost 0.6
    assert float(m.group(1)) <= 1.8


# --- a live daemon: metrics scraped by promtool and by a real Prometheus ------------------------


@pytest.fixture
def files(dirs: tuple[Path, Path, Path]) -> dict[str, bytes]:
    watch = dirs[0]
    out = {}
    for i in range(6):
        data = os.urandom(20_000 + i * 1000) + bytes(30_000)
        (watch / "s1").mkdir(exist_ok=True)
        (watch / "s1" / f"f{i}.raw").write_bytes(data)
        out[f"s1/f{i}.raw"] = data
    return out


def test_live_metrics_scraped_by_promtool_and_prometheus(
    dirs: tuple[Path, Path, Path], files: dict[str, bytes], tmp_path: Path
) -> None:
    promtool = need("promtool", "Debian package prometheus")
    prometheus = need("prometheus", "Debian package prometheus")
    watch, dest, state = dirs
    mport = free_port()
    before = time.time()
    d = Background("run", "--config", str(service_config(tmp_path, watch, dest, state, metrics=mport)))
    prom: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: sum(s == "verified" for s in journal_states(state).values()) == 6, what="6 verified")
        wait_for(lambda: sample(scrape(mport), "acqd_files_total", outcome="verified") == 6, what="metrics")
        text = scrape(mport)
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
        total = sum(len(v) for v in files.values())
        assert sample(text, "acqd_read_bytes_total", detector="generic") == total
        assert sample(text, "acqd_written_bytes_total", tier="central") == total
        assert sample(text, "acqd_ship_seconds_count", detector="generic") == 6
        assert sample(text, "acqd_stage_seconds_count", stage="verify") == 6
        assert sample(text, "acqd_files_total", outcome="quarantined") == 0
        assert sample(text, "acqd_backlog_files") == 0
        assert sample(text, "acqd_inflight_limit_bytes") == 512 * 2**20
        wait_for(lambda: (sample(scrape(mport), "acqd_watch_size_bytes", watch="k3") or 0) > 0, what="disk gauge")
        assert sample(text, "acqd_build_info", instrument="scope") == 1
        started = sample(text, "acqd_start_time_seconds")  # what AcqdRestarting counts the changes of
        assert started is not None and before - 1 <= started <= time.time(), started
        assert sample(text, "acqd_retention_failures_total", action="warn") == 0  # there before any failure
        # a real Prometheus scrapes the daemon
        pport = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs:\n  - job_name: acqd\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        )
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{pport}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def query(q: str) -> list[dict[str, object]]:
            url = f"http://127.0.0.1:{pport}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    doc = json.loads(resp.read())
            except OSError:
                return []
            return list(doc["data"]["result"])

        wait_for(
            lambda: bool(query('acqd_files_total{outcome="verified"} == 6')),
            timeout=90,
            what="Prometheus to scrape acqd",
        )
        [up] = query('up{job="acqd"}')
        assert up["value"][1] == "1"  # type: ignore[index]
        [rb] = query("sum(acqd_read_bytes_total)")
        assert float(rb["value"][1]) == total  # type: ignore[index]
        assert query('acqd_files_total{outcome="verified", instrument="scope", detector="generic"}')
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        d.terminate()
        d.kill()


# --- MQTT against a real Mosquitto --------------------------------------------------------------


class Broker:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = need("mosquitto", "Debian package mosquitto")
        self.port = free_port()
        self.conf = tmp_path / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.bin, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, what="mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A real MQTT subscriber in a thread, collecting every message on acqd/#."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[str, dict[str, object], bool]] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        assert self.ready.wait(15), "subscriber did not connect"

    async def _run(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the test stops the broker under it
            await self._listen()

    async def _listen(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            await client.subscribe("acqd/#", qos=1)
            self.ready.set()
            async for msg in client.messages:
                self.messages.append((str(msg.topic), json.loads(bytes(msg.payload)), bool(msg.retain)))  # type: ignore[arg-type]
                if self._stop.is_set():
                    return

    def verified(self) -> dict[str, dict[str, object]]:
        return {
            m[1]["file"]["source"]: m[1]
            for m in self.messages  # type: ignore[index]
            if m[0] == "acqd/scope/events/file.verified"
        }

    def status(self) -> list[dict[str, object]]:
        return [m[1] for m in self.messages if m[0] == "acqd/scope/status"]


def test_mqtt_events_outage_and_last_will(dirs: tuple[Path, Path, Path], broker: Broker, tmp_path: Path) -> None:
    watch, dest, state = dirs
    mport = free_port()
    cfg = service_config(tmp_path, watch, dest, state, metrics=mport, mqtt=broker.port, outbox=3)
    sub = Subscriber(broker.port)
    d = Background("run", "--config", str(cfg))
    contents: dict[str, bytes] = {}

    def put(names: list[str]) -> None:
        for n in names:
            data = os.urandom(5000)
            (watch / n).write_bytes(data)
            contents[n] = data

    try:
        wait_for(lambda: any(s.get("state") == "online" for s in sub.status()), what="status online")
        for i in range(5):  # one at a time: a batch of small files would overflow this 3-event outbox at once
            put([f"a{i}.raw"])
            wait_for(lambda i=i: len(sub.verified()) == i + 1, what=f"{i + 1} file.verified events")
        for name, ev in sub.verified().items():
            assert ev["schema"] == "acqd.event/1" and ev["instrument"] == "scope"
            copy = ev["copy"]
            assert copy["checksum"] == "xxh3-128:" + digest(contents[name])  # type: ignore[index]
            assert copy["url"] == f"file://{dest}/scope/{name}"  # type: ignore[index]
        assert len([m for m in sub.messages if m[0].endswith("file.verified")]) == 5  # one per file

        # the broker goes away: shipping goes on, the outbox fills, drops are counted
        broker.stop()
        put([f"b{i}.raw" for i in range(10)])
        wait_for(lambda: sum(s == "verified" for s in journal_states(state).values()) == 15, what="15 verified")
        wait_for(
            lambda: (sample(scrape(mport), "acqd_mqtt_events_dropped_total") or 0) >= 6,
            what="drops: 10 events, 3 in the outbox, 1 held by the sender",
        )
        assert sample(scrape(mport), "acqd_mqtt_connected") == 0

        # the broker returns: acqd reconnects (jittered backoff), flushes what it kept, new events flow
        broker.start()
        sub2 = Subscriber(broker.port)
        wait_for(lambda: sample(scrape(mport), "acqd_mqtt_connected") == 1, timeout=90, what="reconnect")
        put(["c0.raw", "c1.raw"])
        wait_for(lambda: {"c0.raw", "c1.raw"} <= set(sub2.verified()), what="events after the outage")
        err = d.stderr()  # one line when the broker went, one when it came back: not one per attempt
        assert err.count("connection lost") == 1 and err.count("reachable again") == 1, err

        # SIGKILL: no goodbye, the broker publishes the last will: status offline, retained
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(timeout=10)

        def retained_offline() -> bool:
            s3 = Subscriber(broker.port)
            time.sleep(0.3)  # retained messages arrive right after the subscription
            return any(m[0] == "acqd/scope/status" and m[1].get("state") == "offline" and m[2] for m in s3.messages)

        wait_for(retained_offline, timeout=30, what="retained offline status")
    finally:
        d.kill()


def test_mqtt_released_event_names_the_removed_file(
    dirs: tuple[Path, Path, Path], broker: Broker, tmp_path: Path
) -> None:
    """file.released says which local file was removed (file.path, absolute) and why (reason, a
    sentence), beside the file's source path below the watch root."""
    watch, dest, state = dirs
    cfg = service_config(tmp_path, watch, dest, state, mqtt=broker.port, release=True)
    sub = Subscriber(broker.port)
    (watch / "grid1").mkdir()
    data = os.urandom(5000)
    (watch / "grid1" / "a.raw").write_bytes(data)
    d = Background("run", "--config", str(cfg))
    try:

        def released() -> list[dict[str, Any]]:
            return [m[1] for m in sub.messages if m[0] == "acqd/scope/events/file.released"]

        wait_for(lambda: released() != [], what="a file.released event")
        ev = released()[0]
        assert not (watch / "grid1" / "a.raw").exists()
        assert (dest / "scope" / "grid1" / "a.raw").read_bytes() == data
        assert ev["file"]["source"] == "grid1/a.raw", ev
        assert ev["file"]["path"] == str(watch / "grid1" / "a.raw"), ev
        # the watch root it is under: two roots can hold the same relative path (a review, thirty-first session)
        assert ev["file"]["root"] == str(watch), ev
        [verified] = [m[1] for m in sub.messages if m[0] == "acqd/scope/events/file.verified"]
        assert verified["file"]["root"] == str(watch), verified  # type: ignore[index]
        assert "copy is verified" in ev["reason"] and "/" not in ev["reason"], ev
        assert f"removed from the acquisition disk ({watch / 'grid1' / 'a.raw'})" in d.stderr()
    finally:
        d.kill()


def test_a_quarantine_by_acqd_verify_reaches_the_running_daemons_gauge(
    dirs: tuple[Path, Path, Path], files: dict[str, bytes], tmp_path: Path
) -> None:
    """`acqd verify` (a timer beside the daemon) finds a released file's only copy damaged and
    quarantines the file in the journal; the daemon's own counter never sees it. The daemon counts the
    journal's quarantined files into acqd_quarantined_files, which AcqdQuarantines also watches."""
    watch, dest, state = dirs
    mport = free_port()
    cfg = service_config(tmp_path, watch, dest, state, metrics=mport, release=True)
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: sum(s == "released" for s in journal_states(state).values()) == 6, what="6 released")
        wait_for(lambda: sample(scrape(mport), "acqd_quarantined_files") == 0, what="the gauge counted")
        copy = dest / "scope" / "s1" / "f2.raw"
        st = copy.stat()
        with open(copy, "r+b") as f:  # one byte changed in place, its mtime put back
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 0xFF]))
        os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
        r = subprocess.run(
            [sys.executable, "-m", "acqd", "verify", "--config", str(cfg)], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 1 and "s1/f2.raw" in r.stdout + r.stderr, r.stdout + r.stderr
        assert journal_states(state)["s1/f2.raw"] == "quarantined"
        wait_for(lambda: sample(scrape(mport), "acqd_quarantined_files") == 1, 60, "the gauge to count it")
        assert sample(scrape(mport), "acqd_files_total", outcome="quarantined") == 0  # not the daemon's own
    finally:
        code, err = d.terminate()
    assert code == 0, err


def test_mqtt_broker_away_at_start_is_logged_once(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    watch, dest, state = dirs
    cfg = service_config(tmp_path, watch, dest, state, metrics=free_port(), mqtt=free_port(), outbox=3)
    (watch / "a.raw").write_bytes(os.urandom(5000))
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: journal_states(state).get("a.raw") == "verified", what="the file shipped")
        time.sleep(3)  # several reconnect attempts (0.5 s, 1 s, 2 s backoff)
        err = d.stderr()
        assert err.count("unreachable") == 1, err
    finally:
        d.kill()


# --- systemd notify protocol with a real socket -------------------------------------------------


def test_sd_notify_ready_watchdog_reload_stopping(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    watch, dest, state = dirs
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    got: list[str] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                continue

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    cfg = service_config(tmp_path, watch, dest, state)
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="200000", JOURNAL_STREAM="8:1234")
    errf = tmp_path / "stderr.txt"
    with open(errf, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "acqd", "run", "--config", str(cfg)], env=env, stderr=err, stdout=subprocess.DEVNULL
        )
    try:
        wait_for(lambda: any("READY=1" in m for m in got), what="READY=1")
        wait_for(lambda: sum("WATCHDOG=1" in m for m in got) >= 3, what="watchdog pings")
        (watch / "x.raw").write_bytes(b"x" * 1000)
        wait_for(lambda: journal_states(state).get("x.raw") == "verified", what="a file shipped")
        n = len(got)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("READY=1" in m for m in got[n:]), what="READY=1 after reload")
        after = got[n:]
        reloading = next(i for i, m in enumerate(after) if "RELOADING=1" in m)
        assert "MONOTONIC_USEC=" in after[reloading]
        assert reloading < next(i for i, m in enumerate(after) if "READY=1" in m)
        # a broken config on SIGHUP: the old one stays, the error is logged, the daemon ships on
        cfg.write_text(cfg.read_text().replace("settle: 0.2s", "settle: soon"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in errf.read_text(), what="the reload error in the log")
        (watch / "y.raw").write_bytes(b"y" * 1000)
        wait_for(lambda: journal_states(state).get("y.raw") == "verified", what="shipping after a bad reload")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        wait_for(lambda: any("STOPPING=1" in m for m in got), what="STOPPING=1")
    finally:
        stop.set()
        t.join(timeout=5)
        if proc.poll() is None:
            proc.kill()
        sock.close()
    log = errf.read_text()
    assert re.search(r"^<6>verified 'x.raw'", log, re.M), log  # journald priority prefixes
    assert re.search(r"^<3>reload failed", log, re.M), log


def test_a_reload_asked_while_acqd_starts_is_applied_not_fatal(tmp_path: Path) -> None:
    """Found by a review: a SIGHUP in the first moments of `acqd run` (before the daemon's handler is
    in place: its journal, claims and tiers being set up) ended it, exit 129, nothing said: in a
    kill-and-restart run, 8 starts of 10. From the start, a reload is held and applied once the
    daemon runs."""
    acq, central, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    acq.mkdir()
    cfg = tmp_path / "acqd.yaml"
    cfg.write_text(
        f"instrument: scope\nstate_dir: {state}\npolicy: default\nwatch:\n  - {{path: {acq}, settle: 0.2s}}\n"
        f"tiers:\n  central: {{url: 'file://{central}'}}\n"
    )
    d = Background("run", "--config", str(cfg))

    def catches_sighup() -> bool:  # bit 0 of the signals the process catches: SIGHUP
        try:
            status = Path(f"/proc/{d.proc.pid}/status").read_text()
        except FileNotFoundError:
            return False
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        return bool(int(caught.split()[1], 16) & 1)

    try:
        deadline = time.monotonic() + 30
        while not catches_sighup() and d.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        # caught from the start: before the daemon made its journal (its modules still loading)
        assert catches_sighup() and not (state / "journal.sqlite").exists(), d.stderr()
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded configuration" in d.stderr(), 30, "the reload applied", d)
        (acq / "f.bin").write_bytes(b"shipped after the early reload")
        wait_for(lambda: journal_states(state).get("f.bin") == "verified", 60, "the file verified", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    # applied once every part runs: the policy's runner was not there yet, and it said "a policy was added"
    assert "a policy was added" not in err, err
