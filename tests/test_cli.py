"""The command line as a newcomer meets it: ordinary mistakes give one line and an exit code, never a
traceback; --version; output piped to a file is not cut to 80 columns; `check` runs `run`'s
validation plus a write probe of each tier."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from acqd import __version__
from acqd.naming import TEMP_PREFIX
from tests.conftest import Background, acqd_cmd, acqd_yaml, run_acqd, wait_for, write_config


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "acq").mkdir()
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "not-a-demo").mkdir()
    (tmp_path / "not-a-demo" / "data").write_text("keep me")
    broken = tmp_path / "broken.yaml"
    broken.write_text("instrument: [unclosed\n")
    return {
        "T": str(tmp_path),
        "ACQ": str(tmp_path / "acq"),
        "FILE": str(tmp_path / "a-file"),
        "BROKEN": str(broken),
        "NODEMO": str(tmp_path / "not-a-demo"),
        "EMPTY": str(tmp_path / "empty.bin"),
    }


# (arguments, exit code, a piece of the message that says what to do)
BAD = [
    (["run", "--watch", "{ACQ}", "--dest", "{T}/c", "--settle", "soon"], 2, "--settle"),
    (["run", "--watch", "{ACQ}", "--dest", "{T}/c", "--settle", "0"], 2, "at least 0.1s"),
    (["run", "--watch", "{ACQ}", "--dest", "{T}/c", "--once", "--retry-for", "soon"], 2, "--retry-for"),
    (["run", "--watch", "{ACQ}", "--dest", "{T}/c", "--compress", "lz4"], 2, "'none' or 'zstd'"),
    (["run"], 2, "--watch DIR and --dest URL"),
    (["run", "--config", "{T}/acqd.yaml", "--watch", "{ACQ}"], 2, "not both"),
    (["run", "--bogus"], 2, "--bogus"),
    (["run", "--watch", "{ACQ}", "--dest", "{T}/c", "--detector", "nope", "--state-dir", "{T}/s"], 78, "gatan-k3"),
    (["run", "--config", "{T}/no-such.yaml"], 78, "no-such.yaml"),
    (["run", "--config", "{BROKEN}"], 78, "broken.yaml"),
    (["check", "--config", "{T}/no-such.yaml"], 78, "no-such.yaml"),
    (["status", "--state-dir", "{T}/nothing"], 1, "no journal"),
    (["verify", "--state-dir", "{T}/nothing"], 1, "no journal"),
    (["restore", "a/b.tif", "{T}/no-such-folder/b.tif", "--state-dir", "{T}/nothing"], 2, "does not exist"),
    (["restore", "a/b.tif", "{T}/out.tif", "--state-dir", "{T}/nothing"], 1, "no journal"),
    (["restore"], 2, "SOURCE_PATH"),
    (["simulate", "--out", "{T}/sim", "--detector", "nope"], 2, "gatan-k3"),
    (["simulate", "--out", "{T}/sim", "--size", "big"], 2, "HEIGHTxWIDTH"),
    (["simulate", "--out", "{FILE}"], 2, "not a folder"),
    (["simulate", "--out", "{T}/sim", "--files", "0"], 2, "--files"),
    (["bench", "--link", "3 pigeons"], 2, "--link"),
    (["bench", "--data", "{T}/nothing"], 2, "no such file"),
    (["bench", "--codecs", "gzip"], 2, "--codecs"),
    (["bench", "--detector", "k3"], 2, "--detector"),
    (["bench", "--data", "{T}/acq"], 1, "no files"),
    (
        ["run", "--watch", "{ACQ}", "--dest", "{T}/c", "--instrument", "bad name!", "--state-dir", "{T}/s"],
        78,
        "letters",
    ),
    (["demo", "--dir", "{NODEMO}"], 1, "--dir"),
    # a quick-form option beside --config used to be passed over in silence (verify said "OK" of
    # copies it never looked for at --dest)
    (["status", "--config", "{T}/acqd.yaml", "--state-dir", "{T}/s"], 2, "--state-dir"),
    (["verify", "--config", "{T}/acqd.yaml", "--dest", "{T}/elsewhere"], 2, "--dest"),
    (["restore", "a/b.tif", "{T}/out.tif", "--config", "{T}/acqd.yaml", "--state-dir", "{T}/s"], 2, "quick form"),
    (["run", "--config", "{T}/acqd.yaml", "--state-dir", "{T}/s"], 2, "--state-dir"),
    # the quick-form options with a default too (`--release` beside --config released nothing, silently)
    (["run", "--config", "{T}/acqd.yaml", "--once", "--release"], 2, "placement.release_local"),
    (["run", "--config", "{T}/acqd.yaml", "--once", "--no-release"], 2, "--release"),
    (["run", "--config", "{T}/acqd.yaml", "--detector", "generic"], 2, "watch: detector"),
    (["run", "--config", "{T}/acqd.yaml", "--compress", "zstd"], 2, "placement.compress"),
    (["hold", "s1", "--config", "{T}/acqd.yaml", "--state-dir", "{T}/s", "--list"], 2, "--state-dir"),
    (["restore", "a/b.tif", "{T}/out.tif", "--version", "0", "--state-dir", "{T}/nothing"], 2, "--version"),
    (["hold", "s1", "--until", "tomorrow", "--reason", "x", "--state-dir", "{T}/nothing"], 2, "--until"),
    (["hold", "s1", "--until", "2001-01-01", "--reason", "x", "--state-dir", "{T}/nothing"], 2, "in the past"),
    (["hold", "s1", "--until", "2027-02-30", "--reason", "x", "--state-dir", "{T}/nothing"], 2, "calendar"),
    (["run", "--config", "{T}/acqd.yaml", "--json"], 2, "--once"),
    (["hold", "s1", "--state-dir", "{T}/nothing"], 2, "--until DATE is missing"),
    # it said "Invalid value for --until" when --until was there and --reason was not
    (["hold", "s1", "--until", "2999-01-01", "--state-dir", "{T}/nothing"], 2, "--reason TEXT is missing"),
    (["bench", "--data", "{EMPTY}"], 1, "no bytes"),
    (["no-such-command"], 2, "no-such-command"),
    (["run", "--once", "--watch", "{ACQ}", "--dest", "{T}/c", "--state-dir", "{FILE}"], 78, "is a file, not a folder"),
    # a backend that connects as it is made, to a server that is not there: which tier, and why
    (
        ["run", "--once", "--watch", "{ACQ}", "--dest", "ftp://127.0.0.1:1/x", "--state-dir", "{T}/s"],
        1,
        "tier central (ftp://127.0.0.1:1/x): cannot be reached: Connection refused",
    ),
]


@pytest.mark.parametrize(("args", "code", "hint"), BAD, ids=[" ".join(a[:3]) for a, _, _ in BAD])
def test_a_user_error_is_one_line_without_a_traceback(
    args: list[str], code: int, hint: str, places: dict[str, str]
) -> None:
    r = run_acqd(*[a.format(**places) for a in args])
    line = _one_line_error(r)
    assert r.returncode == code, (r.returncode, line)
    assert hint in line, line
    assert line.startswith("acqd")
    if args[0] == "demo":
        assert (Path(places["NODEMO"]) / "data").read_text() == "keep me"


def test_version() -> None:
    r = run_acqd("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"acqd {__version__}"
    from importlib.metadata import version

    assert version("acqd") == __version__  # one version: pyproject reads it from acqd/__init__.py


def test_piped_output_is_not_cut_to_80_columns(tmp_path: Path) -> None:
    r = run_acqd("bench", "--detector", "hamamatsu-orca", "--frames", "1", "--codecs", "zstd-1", "--threads", "1")
    assert r.returncode == 0, r.stderr
    header = next(ln for ln in r.stdout.splitlines() if "codec" in ln)
    assert "sustained GB/s" in header and "cores for 0.9 GB/s" in header, r.stdout  # not wrapped
    assert len(header) > 100 and "…" not in r.stdout


def test_check_reports_a_missing_watch_folder_and_probes_each_tier(tmp_path: Path) -> None:
    central = tmp_path / "central"
    central.mkdir()
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"instrument: scope\nstate_dir: {tmp_path}/state\nwatch:\n  - path: {tmp_path}/not-yet\n"
        f"tiers:\n  central: {{url: 'file://{central}'}}\n  spare: {{url: 'file://{tmp_path}/spare'}}\n",
    )
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    [warning] = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "warning" in warning and f"{tmp_path}/not-yet does not exist" in warning
    assert f"tier central (file://{central}/scope): write, read back and delete: OK" in r.stdout
    assert "tier spare" in r.stdout
    assert not list(central.rglob(TEMP_PREFIX + "*"))  # the probe cleaned up after itself
    assert list(central.rglob("*")) == []  # nor the folders it made (owned by whoever ran check)
    r = run_acqd("check", "--config", str(cfg), "--strict")
    assert r.returncode == 1

    # a tier it cannot write to: a warning naming the tier's URL (a file where the instrument's folder
    # should be; a tier that is itself a file is a configuration error, test_config.py)
    (tmp_path / "not-yet").mkdir()
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "scope").write_text("a file, not a folder")
    cfg.write_text(cfg.read_text().replace(f"{tmp_path}/spare", f"{tmp_path}/blocked"))
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    [warning] = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert f"tier spare (file://{tmp_path}/blocked/scope): write probe failed" in warning
    assert f"file://{tmp_path}/blocked/scope is a file where a folder is needed" in warning  # the cause, its URL
    assert run_acqd("check", "--config", str(cfg), "--strict").returncode == 1
    assert run_acqd("check", "--config", str(cfg), "--no-probe", "--strict").returncode == 0
    # a tier folder that is not there (a share not mounted): a look, not a write, so --no-probe says it too
    cfg.write_text(cfg.read_text().replace(f"{tmp_path}/blocked", f"{tmp_path}/nas-not-mounted"))
    r = run_acqd("check", "--config", str(cfg), "--no-probe", "--strict")
    assert r.returncode == 1 and f"{tmp_path}/nas-not-mounted does not exist" in r.stderr, r.stderr
    assert not (tmp_path / "nas-not-mounted").exists()


def test_the_probe_name_is_a_temporary_name(tmp_path: Path) -> None:
    """The probe object is named like acqd's temporaries, which no stored copy of a source file can be
    called, so a probe can never touch data."""
    from acqd.storage import open_tier, temp_name

    seen: list[str] = []
    tier = open_tier("t", f"file://{tmp_path}")
    original = tier.write_atomic

    def spy(rel: str, chunks, **kw):  # type: ignore[no-untyped-def]
        seen.append(rel)
        return original(rel, chunks, **kw)

    tier.write_atomic = spy  # type: ignore[method-assign]
    tier.probe("scope")
    [rel] = seen
    head, _, base = rel.rpartition("/")
    assert head == "scope" and base.startswith(TEMP_PREFIX)
    assert rel == temp_name(f"scope/{base[len(TEMP_PREFIX) :]}")
    assert list(tmp_path.rglob("*.*")) == []


@pytest.mark.slow
def test_simulate_into_a_folder_an_acqd_releases(tmp_path: Path) -> None:
    """A simulated camera writing into a folder a running acqd ships and frees: both finish cleanly."""
    acq, central, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    acq.mkdir()
    daemon = Background(
        "run", "--watch", str(acq), "--dest", str(central), "--state-dir", str(state), "--release", "--settle", "0.2s"
    )
    try:
        wait_for(lambda: (state / "journal.sqlite").exists(), what="the daemon to start")
        r = run_acqd(
            "simulate", "--detector", "generic", "--out", str(acq), "--files", "6", "--frames", "4",
            "--size", "64x64", "--rate", "0.05",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr and "wrote 6 files" in r.stdout
        wait_for(lambda: not [p for p in acq.rglob("*") if p.is_file()], what="every file to be released")
    finally:
        code, err = daemon.terminate()
    assert code == 0 and "Traceback" not in err
    shipped = next(p for p in central.rglob("*") if p.is_file() and not p.name.startswith("~")).relative_to(central)
    rel = "/".join(shipped.parts[1:])  # below the instrument folder: the path in the watch root
    r = run_acqd("restore", rel, str(tmp_path / "r"), "--state-dir", str(state), "--version", "7")
    assert r.returncode == 1 and "has no version 7 with a verified copy (shipped: 1)" in r.stderr, r.stderr
    r = run_acqd("restore", rel, str(tmp_path / "r"), "--state-dir", str(state), "--version", "1")
    assert r.returncode == 0, r.stderr


def test_status_json_and_plan_with_nothing_due(tmp_path: Path) -> None:
    acq, central = tmp_path / "acq", tmp_path / "central"
    acq.mkdir()
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"instrument: scope\nstate_dir: {tmp_path}/state\nwatch:\n  - path: {acq}\n"
        f"tiers:\n  central: {{url: 'file://{central}'}}\npolicy: default\n",
    )
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    r = run_acqd("plan", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert re.match(r"nothing due as of \S+ \(policy \S+\)", r.stdout.strip()), r.stdout
    r = run_acqd("status", "--config", str(cfg), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["states"] == {}


def test_help_and_status_do_not_import_the_daemon(tmp_path: Path) -> None:
    """`acqd --help` and `acqd status` start fast: they load neither the daemon nor numpy, zarr, fsspec."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['acqd', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('acqd', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('acqd.daemon', 'acqd.config', 'numpy', 'zarr', 'fsspec') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    for args in (["--help"], ["status", "--state-dir", str(tmp_path)]):
        r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
        assert "HEAVY []" in r.stderr, (args, r.stderr)


def test_the_example_config_passes_check_once_its_paths_are_changed(tmp_path: Path) -> None:
    """deploy/acqd.example.yaml as an admin starts from it: only the paths changed (to folders of this
    test), the password files where systemd puts credentials; `acqd check` passes, probes both tiers,
    keeps the profiles' layouts, loads the policy and finds the SMTP and MQTT passwords."""
    import os

    from acqd.config import load_config

    text = (Path(__file__).resolve().parent.parent / "deploy" / "acqd.example.yaml").read_text()
    paths = {
        "/var/lib/acqd": tmp_path / "state",
        "/etc/acqd/detectors": tmp_path / "detectors",
        "/data/acquisition": tmp_path / "acquisition",
        "/mnt/central/acqd": tmp_path / "central",
        "/mnt/capacity/acqd": tmp_path / "capacity",
    }
    for old, new in paths.items():
        assert old in text, old
        text = text.replace(old, str(new))
    for d in ("acquisition/k3", "acquisition/lightsheet", "detectors"):
        (tmp_path / d).mkdir(parents=True)
    cfg = write_config(tmp_path / "acqd.yaml", text)
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt-password").write_text("secret\n")
    (creds / "smtp-password").write_text("secret\n")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}
    r = run_acqd("check", "--config", str(cfg), "--strict", env=env)
    # the example keeps every copy: a facility policy that purges is chosen on purpose (a stranger's
    # walk through the README: the example purged with the policy's placeholder owners' addresses)
    assert r.returncode == 0 and "policy default" in r.stdout, r.stdout + r.stderr
    purging = write_config(tmp_path / "purging.yaml", text.replace("policy: default\n", "policy: cryoem-facility\n"))
    r = run_acqd("check", "--config", str(purging), "--strict", env=env)
    # the shipped facility policy's addresses are placeholders: said, and the only warnings
    assert r.returncode == 1 and "OK, 2 warning(s)" in r.stdout, r.stdout + r.stderr
    for address in ("alice@example.org", "cryoem-facility@example.org"):
        assert f"{address} is in a domain reserved for examples" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "policy cryoem-facility" in r.stdout
    assert "frames: tiff" in r.stdout and "frames: zarr" in r.stdout  # not forced to copy
    assert r.stdout.count("write, read back and delete: OK") == 2
    c = load_config(cfg)
    assert c.smtp is not None and c.mqtt is not None and c.detectors_dir == tmp_path / "detectors"
    assert [w.prefix for w in c.watch] == ["k3", "lightsheet"]

    (creds / "smtp-password").unlink()  # what `run` would refuse, `check` refuses
    r = run_acqd("check", "--config", str(cfg), env=env)
    assert r.returncode == 78 and "smtp.password_file" in r.stderr, r.stderr


def test_profiles_and_templates_are_found_in_the_admins_folders_before_the_shipped_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from acqd.notify import templates_dirs
    from acqd.profiles import load_profile, search_path
    from acqd.shipped import ETC, shipped

    env = tmp_path / "env"
    env.mkdir()
    monkeypatch.setenv("ACQD_DETECTORS", str(env))
    own = tmp_path / "own"
    own.mkdir()
    dirs = search_path(own)
    assert dirs == [own, env, ETC / "detectors", shipped("detectors")]
    assert (shipped("detectors") / "gatan-k3.yaml").is_file()
    (own / "gatan-k3.yaml").write_text(
        (shipped("detectors") / "gatan-k3.yaml").read_text().replace("settle: {window: 5s", "settle: {window: 9s")
    )
    assert load_profile("gatan-k3", dirs).settle.window == 9.0  # the admin's copy wins
    assert load_profile("gatan-k3", [shipped("detectors")]).settle.window == 5.0
    assert templates_dirs() == [ETC / "templates", shipped("policies/templates")]


def test_simulate_never_overwrites_a_file_in_its_output_folder(tmp_path: Path) -> None:
    """A simulated camera pointed at a folder that holds real data replaced it without a word."""
    movie = tmp_path / "session_000" / "movie_00000.mrc"
    movie.parent.mkdir()
    movie.write_bytes(b"PRECIOUS REAL DATA")
    r = run_acqd(
        "simulate", "--detector", "gatan-k3", "--out", str(tmp_path), "--files", "1", "--frames", "2", "--size", "16x16"
    )
    assert r.returncode == 1 and "never overwrites" in r.stderr, r.stdout + r.stderr
    assert movie.read_bytes() == b"PRECIOUS REAL DATA"


def test_camera_files_no_profile_took_get_a_hint_about_the_detector(tmp_path: Path) -> None:
    """The quick form's default (`generic`), or another camera's profile, stores a camera's movies
    byte-exact with nothing said: ratio 1.00, and the operator does not know why (a review)."""
    import mrcfile
    import numpy as np

    acq = tmp_path / "acq"
    (acq / "s").mkdir(parents=True)
    with mrcfile.new(acq / "s" / "movie.mrc") as m:
        m.set_data(np.zeros((3, 32, 32), dtype=np.uint8))
    quick = ["--watch", str(acq), "--settle", "0.3s"]
    r = run_acqd("run", "--once", *quick, "--dest", str(tmp_path / "c1"), "--state-dir", str(tmp_path / "s1"))
    assert r.returncode == 0 and "1 verified" in r.stdout, r.stderr
    assert "hint: 1 .mrc file(s) were stored byte-exact" in r.stderr and "detector generic" in r.stderr, r.stderr
    # every camera profile named, usable as it stands in the quick form (which has no acqd.yaml to check)
    named = r.stderr.partition("--detector ")[2].partition(" (")[0].split(", ")
    assert {"gatan-k3", "falcon", "hamamatsu-orca", "merlin-medipix"} <= set(named) and "generic" not in named, named
    falcon = ["--detector", "falcon", "--dest", str(tmp_path / "c2"), "--state-dir", str(tmp_path / "s2")]
    r = run_acqd("run", "--once", *quick, *falcon)
    assert r.returncode == 0 and "1 verified" in r.stdout, r.stderr
    assert "hint:" not in r.stderr, r.stderr  # stored as frames


def test_a_running_daemon_says_once_which_camera_files_its_profile_does_not_take(tmp_path: Path) -> None:
    """In daemon mode there is no summary: a wrong `detector:` copied a camera's movies uncompressed
    for ever with nothing said (a facility engineer's first try). The daemon says it once per watch
    root and extension, naming the profile; `acqd check` lists the profiles and what each takes."""
    import mrcfile
    import numpy as np

    from tests.conftest import journal_states

    acq, state = tmp_path / "acq", tmp_path / "state"
    (acq / "s").mkdir(parents=True)
    for i in range(3):
        with mrcfile.new(acq / "s" / f"movie_{i}.mrc") as m:
            m.set_data(np.zeros((3, 32, 32), dtype=np.uint8))
    (acq / "s" / "notes.txt").write_text("not a camera file")
    cfg = acqd_yaml(
        tmp_path / "acqd.yaml",
        state=state,
        watch=f"path: {acq}, detector: hamamatsu-orca, settle: 0.2s",
        tiers=tmp_path / "central",
    )
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(
            lambda: len(journal_states(state)) == 4 and set(journal_states(state).values()) == {"verified"},
            60,
            "all verified",
            d,
            state,
        )
    finally:
        code, err = d.terminate()
    assert code == 0, err
    said = [line for line in err.splitlines() if "stored byte-exact, not as frames" in line]
    assert len(said) == 1, err  # once for the three movies; the text file is no camera file
    assert "detector hamamatsu-orca does not take .mrc files" in said[0] and str(acq) in said[0], said
    r = run_acqd("check", "--config", str(cfg), "--no-probe")
    assert r.returncode == 0, r.stderr
    assert "detector hamamatsu-orca (frames: *.tif, *.tiff)" in r.stdout, r.stdout
    assert "gatan-k3 (*.mrc *.mrcs)" in r.stdout and "generic (copies every file)" in r.stdout, r.stdout


def test_restore_into_a_folder_named_with_a_trailing_slash(tmp_path: Path) -> None:
    """`acqd restore X out/` with out/ not there wrote a file named `out` (a first try): a trailing
    slash names a folder, made once the file is found, the file under its own name in it; nothing is
    made when the file is not found, and a file in the way is refused."""
    acq = tmp_path / "acq"
    (acq / "s").mkdir(parents=True)
    data = bytes(range(256)) * 20
    (acq / "s" / "f.raw").write_bytes(data)
    quick = ["--state-dir", str(tmp_path / "state")]
    r = run_acqd("run", "--once", "--watch", str(acq), "--settle", "0.2s", "--dest", str(tmp_path / "c"), *quick)
    assert r.returncode == 0, r.stderr
    r = run_acqd("restore", "s/nope.raw", str(tmp_path / "none") + "/", *quick)
    assert r.returncode != 0 and not (tmp_path / "none").exists(), r.stderr
    r = run_acqd("restore", "s/f.raw", str(tmp_path / "out") + "/", *quick)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "f.raw").read_bytes() == data
    (tmp_path / "afile").write_bytes(b"x")
    r = run_acqd("restore", "s/f.raw", str(tmp_path / "afile") + "/", *quick)
    assert r.returncode == 2 and "is not a folder" in r.stderr and (tmp_path / "afile").read_bytes() == b"x", r.stderr


def test_restore_of_a_purged_file_says_when_and_by_which_rule(tmp_path: Path) -> None:
    """`acqd restore` of a file retention purged said only 'no verified copy in the journal' (a first
    try): it says what became of each copy, when, and by which rule."""
    from acqd.journal import Journal, mark_copy

    acq, state = tmp_path / "acq", tmp_path / "state"
    (acq / "s").mkdir(parents=True)
    (acq / "s" / "f.raw").write_bytes(b"x" * 3000)
    r = run_acqd(
        "run",
        "--once",
        "--watch",
        str(acq),
        "--settle",
        "0.2s",
        "--dest",
        str(tmp_path / "c"),
        "--state-dir",
        str(state),
    )
    assert r.returncode == 0, r.stderr
    j = Journal(state / "journal.sqlite")
    [row] = j.find_versions("s/f.raw")
    [copy] = j.copies_of(row.id)
    mark_copy(j, copy.id, "purged", "retention.purged", rule="movies", bytes=3000)
    j.close()
    r = run_acqd("restore", "s/f.raw", str(tmp_path / "out.raw"), "--state-dir", str(state))
    assert r.returncode == 1 and not (tmp_path / "out.raw").exists(), r.stderr
    assert f"its copy on tier {copy.tier} was purged by retention on 20" in r.stderr and "(rule movies)" in r.stderr, (
        r.stderr
    )
    # the source was kept (no release): where it is, said (a review: nothing said it was still there)
    assert f"its source is still on the acquisition disk, as it was shipped: {acq / 's' / 'f.raw'}" in r.stderr
    (acq / "s" / "f.raw").write_bytes(b"y" * 3001)  # changed since: not the file shipped, not said
    r = run_acqd("restore", "s/f.raw", str(tmp_path / "out.raw"), "--state-dir", str(state))
    assert r.returncode == 1 and "still on the acquisition disk" not in r.stderr, r.stderr


def test_status_says_whether_the_daemon_is_running(tmp_path: Path) -> None:
    """`acqd status` after the daemon stopped printed its last back-off or full-disk state as if
    current (a first try): it says whether a daemon runs with that state directory, and its pid."""
    import json

    from tests.conftest import journal_states

    acq, state = tmp_path / "acq", tmp_path / "state"
    (acq / "s").mkdir(parents=True)
    (acq / "s" / "f.raw").write_bytes(b"x" * 3000)
    quick = ["--watch", str(acq), "--settle", "0.2s", "--dest", str(tmp_path / "c"), "--state-dir", str(state)]
    d = Background("run", *quick)
    try:
        wait_for(lambda: journal_states(state).get("s/f.raw") == "verified", 60, "verified", d, state)
        r = run_acqd("status", "--state-dir", str(state))
        assert r.returncode == 0 and f"acqd is running (pid {d.proc.pid})" in r.stdout, r.stdout + r.stderr
        doc = json.loads(run_acqd("status", "--state-dir", str(state), "--json").stdout)
        assert doc["daemon"] == {"running": True, "pid": d.proc.pid}
    finally:
        code, err = d.terminate()
    assert code == 0, err
    r = run_acqd("status", "--state-dir", str(state))
    assert r.returncode == 0 and re.search(
        r"acqd is not running, last started .+: what follows is as it last saw it", r.stdout
    ), r.stdout
    assert json.loads(run_acqd("status", "--state-dir", str(state), "--json").stdout)["daemon"]["running"] is False
    # the lock file keeps the stopped daemon's pid: a process of that pid now, with acqd in its
    # command line (another acqd, an `acqd verify`), is not this state directory's daemon
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "acqd", "verify"])
    try:
        (state / "acqd.lock").write_text(f"{other.pid}\n")
        r = run_acqd("status", "--state-dir", str(state))
        assert r.returncode == 0 and "acqd is not running" in r.stdout, r.stdout
    finally:
        other.kill()
        other.wait()


def test_status_says_each_tiers_copies_and_the_files_retried(tmp_path: Path) -> None:
    """`acqd status` said files per state and little else: it names each tier with its verified
    copies and when the last was verified, and the files failing again and again with why."""
    import json

    acq, central, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (acq / "s").mkdir(parents=True)
    (acq / "s" / "a.raw").write_bytes(os.urandom(5000))
    quick = ["--watch", str(acq), "--dest", str(central), "--state-dir", str(state), "--instrument", "scope"]
    r = run_acqd("run", "--once", "--settle", "0.1s", *quick)
    assert r.returncode == 0, r.stderr
    (acq / "s" / "b.raw").write_bytes(os.urandom(3000))
    (central / "scope" / "s" / "b.raw").write_bytes(b"somebody else's")  # in the way: kept, retried
    odd = "c\nd\x1b[2J.raw"  # a line break and an escape sequence (clear the screen) in its name
    (acq / "s" / odd).write_bytes(os.urandom(2000))
    (central / "scope" / "s" / odd).write_bytes(b"in the way too")
    r = run_acqd("run", "--once", "--settle", "0.1s", "--retry-for", "1s", *quick)
    assert r.returncode == 1, r.stdout + r.stderr
    r = run_acqd("status", "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout, r.stdout  # the name's reason shown escaped, on its line
    [line] = [ln for ln in r.stdout.splitlines() if ln.startswith("  's/c\\nd")]
    assert "/scope/s/c\\nd\\x1b[2J.raw is in the way" in line and line.endswith("the file is kept and retried"), line
    assert re.search(
        rf"tier central \(file://{central}\): 1 verified copy, 4\.9 KiB stored as 4\.9 KiB \(ratio 1\.00\), "
        r"the last verified \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+ s ago\)",
        r.stdout,
    ), r.stdout
    assert re.search(
        r"retrying: 2 file\(s\) failed and are tried again; waiting longest:\n(  .*\n)?"
        r"  's/b\.raw': [1-9]\d* attempt\(s\) since .+: .*b\.raw is in the way",
        r.stdout,
    ), r.stdout
    doc = json.loads(run_acqd("status", "--state-dir", str(state), "--json").stdout)
    assert doc["tiers"]["central"]["copies"] == 1 and doc["tiers"]["central"]["source_bytes"] == 5000
    assert doc["retrying"]["files"] == 2 and {f["path"] for f in doc["retrying"]["oldest"]} == {"s/b.raw", f"s/{odd}"}
    assert doc["last_start"] is not None
    # a file that failed and has moved on since (stored after a retry: its reason cleared, its attempts
    # kept, as the daemon leaves it) made `status` crash with a traceback while a tier recovered (a
    # stranger's review of the remote tiers); it is not retrying
    import sqlite3

    db = sqlite3.connect(state / "journal.sqlite")
    with db:
        db.execute("UPDATE files SET state = 'stored', reason = NULL WHERE relpath = 's/b.raw'")
    db.close()
    r = run_acqd("status", "--state-dir", str(state))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "retrying: 1 file(s)" in r.stdout and "'s/b.raw'" not in r.stdout, r.stdout


def test_restore_takes_a_stored_copys_path_and_names_files_of_a_bare_name(tmp_path: Path) -> None:
    """What a user sees on the NAS is the stored copy's path, and a bare file name is what they
    remember (a first try: 'not below any watch root', 'never seen'): the copy's path restores its
    file; a bare name that is no path says which files have that name; a name with a '_' is matched
    exactly, not as a wildcard."""
    acq, central, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (acq / "s").mkdir(parents=True)
    (acq / "s" / "movie_1.raw").write_bytes(b"a" * 3000)
    (acq / "s" / "movieX1.raw").write_bytes(b"b" * 3000)
    quick = ["--state-dir", str(state)]
    r = run_acqd("run", "--once", "--watch", str(acq), "--settle", "0.2s", "--dest", str(central), *quick)
    assert r.returncode == 0, r.stderr
    [copy] = [p for p in central.rglob("movie_1.raw")]
    r = run_acqd("restore", str(copy), str(tmp_path / "r1"), *quick)
    assert r.returncode == 0 and "restored 's/movie_1.raw'" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "r1").read_bytes() == b"a" * 3000
    r = run_acqd("restore", str(copy.with_name("movieX1.raw")), str(tmp_path / "r2"), *quick)
    assert r.returncode == 0 and (tmp_path / "r2").read_bytes() == b"b" * 3000, r.stderr
    r = run_acqd("restore", "movie_1.raw", str(tmp_path / "r3"), *quick)
    assert r.returncode == 1 and f"files of that name: {acq}/s/movie_1.raw" in r.stderr, r.stderr
    r = run_acqd("restore", "/elsewhere/movie_1.raw", str(tmp_path / "r4"), *quick)
    assert r.returncode == 1 and "nor a stored copy's path" in r.stderr and str(acq) in r.stderr, r.stderr
    # a path typed from the current folder (beside the watch root, or inside it): it was refused,
    # the message offering the same file's absolute path back
    for k, (cwd, given) in enumerate(
        ((tmp_path, "acq/s/movieX1.raw"), (acq / "s", "movieX1.raw"), (acq, "./s/movieX1.raw"))
    ):
        out = tmp_path / f"here{k}"
        r = subprocess.run(acqd_cmd("restore", given, str(out), *quick), cwd=cwd, capture_output=True, text=True)
        assert r.returncode == 0 and "restored 's/movieX1.raw'" in r.stdout, r.stdout + r.stderr
        assert out.read_bytes() == b"b" * 3000
    # the file changed and was shipped again: each stored copy's path restores its own version
    (acq / "s" / "movie_1.raw").write_bytes(b"c" * 3000)
    r = run_acqd("run", "--once", "--watch", str(acq), "--settle", "0.2s", "--dest", str(central), *quick)
    assert r.returncode == 0, r.stderr
    [v2] = [p for p in central.rglob("movie_1*.raw") if p != copy]
    for path, content, out in ((copy, b"a", "r5"), (v2, b"c", "r6")):
        r = run_acqd("restore", str(path), str(tmp_path / out), *quick)
        assert r.returncode == 0 and (tmp_path / out).read_bytes() == content * 3000, r.stdout + r.stderr
    r = run_acqd("restore", str(copy), str(tmp_path / "r7"), "--version", "2", *quick)
    assert r.returncode == 1 and "is the copy of version 1" in r.stderr and not (tmp_path / "r7").exists(), r.stderr
    # a path that names one file relative to its watch root and another from the current folder: refused
    (acq / "movie_1.raw").write_bytes(b"top" * 1000)  # acq/movie_1.raw, beside s/movie_1.raw
    r = run_acqd("run", "--once", "--watch", str(acq), "--settle", "0.2s", "--dest", str(central), *quick)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        acqd_cmd("restore", "movie_1.raw", str(tmp_path / "amb"), *quick), cwd=acq / "s", capture_output=True, text=True
    )
    assert r.returncode == 1 and "names two files" in r.stderr and not (tmp_path / "amb").exists(), r.stderr


def test_status_masks_an_s3_tiers_access_key() -> None:
    from acqd.journal import _shown

    assert _shown("s3://AKIAEXAMPLE@127.0.0.1:9000/bucket/p") == "s3://***@127.0.0.1:9000/bucket/p"
    assert _shown("sftp://acqd@nas/data") == "sftp://acqd@nas/data"  # a user name is no secret
    assert _shown("file:///mnt/central") == "file:///mnt/central"


def test_ctrl_c_while_acqd_starts_is_one_line_not_a_traceback() -> None:
    """Found by an adversarial review (thirty-first session): Ctrl-C in acqd's first half second (its
    modules loading) printed Python's KeyboardInterrupt traceback. The `acqd` command and `python -m
    acqd` (`acqd.__main__.entry`) now end with one line and exit 130 then too, as `acqd.cli.main`
    does later. The interrupt is made to arrive during the import of acqd.cli (a finder that raises
    it), not by a signal at a guessed moment."""
    code = (
        "import importlib.abc, sys\n"
        "class Stop(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'acqd.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "from acqd.__main__ import entry\n"
        "entry()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and r.stderr == "acqd: interrupted\n", (r.returncode, r.stderr[-2000:])
    import tomllib

    scripts = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["acqd"] == "acqd.__main__:entry"  # the installed command takes the same way in


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("empty", "is empty: no acqd has recorded anything in it yet"),
        ("foreign", "is not an acqd journal (an SQLite database without acqd's tables)"),
        ("being-made", "is being made (an acqd starting): try again in a moment"),  # some of acqd's tables
    ],
)
@pytest.mark.parametrize("command", [("status",), ("verify",), ("restore", "s/a.raw", "{out}")])
def test_a_journal_that_is_empty_or_not_acqds_is_one_line_not_a_traceback(
    tmp_path: Path, kind: str, said: str, command: tuple[str, ...]
) -> None:
    """Found by a stranger's review: a 0-byte journal.sqlite, or another program's SQLite database
    under that name, made `status`, `verify` and `restore` end in a traceback (no such table). One
    line says what the file is; nothing is written to it."""
    import sqlite3

    state = tmp_path / "state"
    state.mkdir()
    journal = state / "journal.sqlite"
    if kind == "empty":
        journal.touch()
    else:
        db = sqlite3.connect(journal)
        db.execute("CREATE TABLE samples(a)" if kind == "foreign" else "CREATE TABLE meta(key TEXT, value TEXT)")
        db.commit()
        db.close()
    before = journal.read_bytes()
    args = [a.format(out=tmp_path / "out.raw") for a in command]
    r = run_acqd(*args, "--state-dir", str(state))
    assert r.returncode == 1 and said in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert journal.read_bytes() == before and not (tmp_path / "out.raw").exists()


def test_status_says_which_verified_files_are_earlier_versions(tmp_path: Path) -> None:
    """Found by a stranger's review (thirty-third session): after files were written again, `acqd
    status` counted their earlier versions as verified with the rest, read as files waiting to be
    freed. It says how many of the verified are earlier versions (kept, nothing to release)."""
    acq, central, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (acq / "s").mkdir(parents=True)
    common = ("--watch", str(acq), "--dest", str(central), "--state-dir", str(state), "--settle", "0.2s")
    (acq / "s" / "a.dat").write_bytes(b"a" * 3000)
    (acq / "s" / "b.dat").write_bytes(b"b" * 3000)
    assert run_acqd("run", "--once", *common).returncode == 0
    (acq / "s" / "a.dat").write_bytes(b"A" * 4000)  # written again: version 2
    r = run_acqd("run", "--once", *common)
    assert r.returncode == 0, r.stderr
    r = run_acqd("status", "--state-dir", str(state))
    assert "of the verified: 1 earlier version(s) of files written again since" in r.stdout, r.stdout
    states = json.loads(run_acqd("status", "--state-dir", str(state), "--json").stdout)["states"]
    assert states["verified"]["files"] == 3 and states["verified"]["earlier_versions"] == 1, states
