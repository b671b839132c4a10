"""Configuration and detector profiles: every YAML in the repo loads; bad ones name file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from acqd.config import Config, load_config
from acqd.errors import ConfigError
from acqd.profiles import DetectorProfile, load_profile, search_path
from acqd.yamlfile import load_model
from tests.conftest import REPO, run_acqd, wait_for, write_config

MINIMAL = """\
instrument: krios-1
state_dir: /var/lib/acqd
watch:
  - path: /data/acquisition
    detector: generic
tiers:
  central:
    url: file:///mnt/central/acqd
metrics:
  bind: 127.0.0.1:9733
mqtt:
  url: mqtt://127.0.0.1:1883
"""


def test_minimal_config_from_the_issue_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "acqd.yaml"
    p.write_text(MINIMAL)
    cfg = load_config(p)
    assert cfg.instrument == "krios-1"
    assert cfg.tier_for(cfg.watch[0]) == "central"
    assert cfg.watch[0].placement.release_local == "never"
    assert cfg.metrics is not None and cfg.metrics.bind == "127.0.0.1:9733"


def test_every_yaml_in_the_repo_loads() -> None:
    """Every YAML file parses; each kind goes through the loader acqd (or its tool) uses for it."""
    import yaml

    def ours(p: Path) -> bool:  # not a virtualenv's (.venv, .venv312, ...), a test's or a build's
        return not any(part.startswith(".venv") or part in ("tests", ".git", "build") for part in p.parts)

    files = sorted(p for p in REPO.rglob("*.y*ml") if ours(p.relative_to(REPO)))
    typed = 0
    for p in files:
        doc = yaml.safe_load(p.read_text())
        assert doc is not None, f"{p} is empty"
        rel = p.relative_to(REPO).as_posix()
        if rel.startswith("detectors/"):
            load_model(p, DetectorProfile)
            typed += 1
        elif rel == "deploy/acqd.example.yaml":
            load_config(p)
            typed += 1
        elif rel == "deploy/hub.example.yaml":
            from acqd.config import load_hub_config

            load_hub_config(p)
            typed += 1
        elif rel.startswith("deploy/prometheus/"):
            assert "groups" in doc or "tests" in doc or "scrape_configs" in doc, rel  # promtool checks them
        elif rel.startswith("deploy/grafana/provisioning/"):
            assert doc["apiVersion"] == 1, rel
        elif rel.startswith("policies/"):
            continue  # loaded by the policy tests
        else:
            raise AssertionError(f"{rel}: a YAML file no test knows how to load")
    assert typed >= 2


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        (MINIMAL.replace("detector: generic", "detektor: generic"), 5, "watch.0.detektor"),
        (MINIMAL.replace("instrument: krios-1", "instrument: 'krios 1/x'"), 1, "instrument"),
        (MINIMAL + "limits:\n  retry_initial: -3s\n", 14, "limits.retry_initial"),
        (MINIMAL + "limits:\n  inflight_bytes: 1MiB\n", 13, "limits"),
        (MINIMAL + "limits:\n  retry_initial: 10m\n  retry_max: 1s\n", 13, "limits: retry_initial must not exceed"),
        (MINIMAL + "limits:\n  backoff:\n    write_latency_above: 50\n", 14, "limits.backoff: write_latency_above"),
        (MINIMAL + "limits:\n  inflight_bytes: 512Mb\n", 14, "limits.inflight_bytes: size '512Mb' is ambiguous"),
        (
            MINIMAL.replace("central/acqd\n", "central/acqd\n  capacity:\n    url: file:///mnt/central/acqd/\n"),
            10,
            "tiers.capacity.url",
        ),
        (MINIMAL.replace("url: file:///mnt/central/acqd", "url: /mnt/central"), 8, "tiers.central.url"),
        (MINIMAL.replace("    detector: generic", "    mode: inotify"), 5, "watch.0.mode"),
        (MINIMAL.replace("    detector: generic", "    settle: 0s"), 5, "watch.0.settle: a settle window of 0s is"),
        (MINIMAL.replace("    detector: generic", "    settle: 20ms"), 5, "watch.0.settle: a settle window of 0.02s"),
        (MINIMAL.replace("127.0.0.1:9733", "localhost:abc"), 10, "metrics.bind"),
        (
            MINIMAL.replace(
                "    detector: generic",
                "    name: k3\n    prefix: a\n  - path: /data/b\n    name: k3\n    prefix: b",
            ),
            8,
            "watch.1.name",
        ),
    ],
)
def test_bad_config_names_file_line_and_field(tmp_path: Path, body: str, line: int, field: str) -> None:
    p = tmp_path / "acqd.yaml"
    p.write_text(body)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert f"{p}:{line}: {field}" in msg, msg
    assert "at least 1 item" not in msg, msg  # a list whose item failed: said once, at the item


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    p = tmp_path / "acqd.yaml"
    p.write_text("instrument: x\nwatch: [\n")
    with pytest.raises(ConfigError, match=r"acqd.yaml:3: YAML syntax error"):
        load_config(p)


@pytest.mark.parametrize(
    ("body", "line", "key"),
    [
        (MINIMAL + "watch:\n  - path: /data/other\n", 13, "watch"),  # a second root list hid the first
        (MINIMAL.replace("instrument: krios-1\n", "instrument: krios-1\ninstrument: krios-2\n"), 2, "instrument"),
        (MINIMAL.replace("    detector: generic\n", "    detector: generic\n    detector: gatan-k3\n"), 6, "detector"),
    ],
    ids=["watch", "instrument", "nested"],
)
def test_a_key_given_twice_is_an_error_not_the_last_one_wins(tmp_path: Path, body: str, line: int, key: str) -> None:
    """YAML keeps the last of two equal keys: a second `watch:` list silently unwatched the first's
    camera folders (found by an adversarial run)."""
    p = tmp_path / "acqd.yaml"
    p.write_text(body)
    with pytest.raises(ConfigError, match=rf"acqd.yaml:{line}: '{key}' is given twice in one section"):
        load_config(p)
    r = run_acqd("check", "--config", str(p))
    assert r.returncode == 78 and "given twice" in r.stderr and "Traceback" not in r.stderr


def test_overlapping_watch_roots_are_rejected() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Config.model_validate(
            {
                "instrument": "x",
                "state_dir": "/s",
                "tiers": {"c": {"url": "memory://c"}},
                "watch": [{"path": "/data"}, {"path": "/data/sub"}],
            }
        )


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL.replace("/mnt/central/acqd", str(tmp_path / "central")))  # made at its first use
    r = run_acqd("check", "--config", str(good))
    assert r.returncode == 0, r.stderr
    assert "detector generic" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("detector: generic", "detector: no-such-camera"))
    r = run_acqd("check", "--config", str(bad))
    assert r.returncode == 78
    assert "watch.0.detector (/data/acquisition): unknown detector profile 'no-such-camera'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    nopolicy = tmp_path / "nopolicy.yaml"  # it said `nope.yaml: file not found`, not which key named it
    nopolicy.write_text(good.read_text() + f"policy: {tmp_path / 'nope.yaml'}\n")
    r = run_acqd("check", "--config", str(nopolicy))
    assert r.returncode == 78 and f"policy: {tmp_path / 'nope.yaml'} does not exist" in r.stderr, r.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text(MINIMAL.replace("tiers:", "tierz:"))
    r = run_acqd("check", "--config", str(typo))
    assert r.returncode == 78 and "typo.yaml:6: tierz" in r.stderr and "Traceback" not in r.stderr


def test_profile_with_a_typo_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "cam.yaml").write_text("apiVersion: acqd/v1\nkind: DetectorProfile\nname: cam\nsettle:\n  windw: 2s\n")
    with pytest.raises(ConfigError, match=r"cam.yaml:5: settle.windw"):
        load_profile("cam", [tmp_path])


PROFILE_HEAD = "apiVersion: acqd/v1\nkind: DetectorProfile\nname: cam\nreader: mrc\nlayout: tiff\n"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("files: '*.mrc'\n", "files: should be a list, e.g. [a, b], not '*.mrc'"),
        ("layout: hdf5\n", "layout: should be 'copy', 'zarr' or 'tiff', not 'hdf5'"),
        ("layout: yes\n", "not True (YAML reads yes, no, on and off as true or false)"),  # release_local: yes
        ("codec: {id: deflate, level: eleven}\n", "level is a whole number from 1 to 12, not 'eleven'"),
        ("codec: {id: deflate, level: 15}\n", "deflate: level is 1-12, not 15"),  # was stored as 12, unsaid
        ("codec: {id: zstd, level: 23}\n", "zstd: level is 1-22, not 23"),
        ("codec: {id: blosc, clevel: 12}\n", "clevel is 0-9, not 12"),
        ("shard_bytes: lots\n", "shard_bytes: not a size: 'lots'"),
        ("expect: {modes: [{name: c, frame_shape: [a, 5760]}]}\n", "frame_shape.0: should be a whole number, not 'a'"),
        ("expect: {modes: [{name: c, frame_shape: [1, 2, 3]}]}\n", "frame_shape: should have at most 2 item(s), not 3"),
        ("expect: {modes: [{frame_shape: [1, 2]}]}\n", "modes.0.name: required, and missing here"),
        ("settle: 5s\n", "settle: should be a section of keys (key: value), not '5s'"),
        ("settle: {window: 0s}\n", "settle.window: a settle window of 0s is too short"),
    ],
)
def test_a_bad_profile_is_explained_in_the_words_of_its_yaml(tmp_path: Path, body: str, said: str) -> None:
    """The operator wrote YAML: lists and sections, not pydantic's tuples, models and 'Value error, '."""
    p = tmp_path / "cam.yaml"
    p.write_text(
        PROFILE_HEAD.replace("layout: tiff\n", "") + body if body.startswith("layout") else PROFILE_HEAD + body
    )
    with pytest.raises(ConfigError) as ei:
        load_profile("cam", [tmp_path])
    msg = str(ei.value)
    assert said in msg and f"{p}:" in msg, msg
    for pydantic_words in (
        "Value error",
        "Input should",
        "Tuple",
        "valid dictionary",
        "Field required",
        "invalid literal",
    ):
        assert pydantic_words not in msg, msg


def test_shipped_generic_profile() -> None:
    p = load_profile("generic", search_path())
    assert p.ignores(".hidden") and p.ignores("frame.tmp") and p.ignores("x.part") and p.ignores("~lock")
    assert not p.ignores("frame_0001.tif")


@pytest.mark.parametrize(
    ("watch", "url", "state"),
    [
        ("/data/acq", "file:///data/acq/central", "/var/lib/acqd"),  # central storage inside the watch folder
        ("/data/acq", "file:///data/acq", "/var/lib/acqd"),  # the same folder
        ("/central/krios", "file:///central", "/var/lib/acqd"),  # the watch root inside central storage
        ("/data/acq", "file:///data/x/../acq/c", "/var/lib/acqd"),  # by `..`
        ("/data/acq", "file:///mnt/central", "/data/acq/.acqd"),  # the journal inside the watch folder
    ],
)
def test_central_storage_or_the_state_folder_overlapping_a_watch_root_is_refused(
    watch: str, url: str, state: str
) -> None:
    """acqd would find its own copies (or its journal) as new files: ship them again, and release a
    file whose only copy is itself (found by an adversarial run: 57 levels of copies of copies)."""
    doc = {"instrument": "x", "state_dir": state, "tiers": {"c": {"url": url}}, "watch": [{"path": watch}]}
    with pytest.raises(ValueError, match="is, or is inside"):
        Config.model_validate(doc)
    doc["tiers"] = {"c": {"url": "file:///mnt/central"}}
    doc["state_dir"] = "/var/lib/acqd"
    assert Config.model_validate(doc).watch[0].path == Path(watch)  # apart: accepted
    for key, inside in (("detectors_dir", "det"), ("policy", "policy.yaml")):  # acqd's own files too
        with pytest.raises(ValueError, match=f"{key} .* is, or is inside, the watch root"):
            Config.model_validate({**doc, key: f"{watch}/{inside}"})


def test_a_quick_form_dest_refused_inside_the_watch_root_leaves_no_folder_there(tmp_path: Path) -> None:
    """`--dest` is made as a folder when it is not there; refused because it lies inside the watch
    root, the run left that empty folder in the acquisition folder (a stranger's run). One that was
    there before is the operator's, and stays."""
    acq = tmp_path / "acq"
    acq.mkdir()
    (acq / "a.xml").write_bytes(b"x")
    args = ("run", "--once", "--watch", str(acq), "--state-dir", str(tmp_path / "s"))
    r = run_acqd(*args, "--dest", str(acq / "central"))
    assert r.returncode == 78 and "overlap" in r.stderr, r.stderr
    assert sorted(p.name for p in acq.iterdir()) == ["a.xml"]
    (acq / "theirs").mkdir()
    r = run_acqd(*args, "--dest", str(acq / "theirs"))
    assert r.returncode == 78 and "overlap" in r.stderr, r.stderr
    assert sorted(p.name for p in acq.iterdir()) == ["a.xml", "theirs"]


def test_a_quick_form_dest_made_for_a_refused_run_is_not_left_behind(tmp_path: Path) -> None:
    """The folder `--dest` names is made before the run's other checks: a run refused for another
    reason (an unknown detector, a watch folder that is not there, an adopt with nothing to adopt)
    left it behind, empty, wherever it was asked for. One that holds anything stays."""
    acq = tmp_path / "acq"
    acq.mkdir()
    (acq / "a.xml").write_bytes(b"x")
    dest = tmp_path / "central"
    state = ("--state-dir", str(tmp_path / "s"))
    r = run_acqd("run", "--once", "--watch", str(acq), "--dest", str(dest), "--detector", "gatan-k9", *state)
    assert r.returncode == 78 and "--detector: unknown detector profile 'gatan-k9'" in r.stderr, r.stderr
    assert not dest.exists()
    r = run_acqd("run", "--once", "--watch", str(tmp_path / "nowhere"), "--dest", str(dest), *state)
    assert r.returncode == 78 and "nowhere" in r.stderr, r.stderr
    assert not dest.exists()
    r = run_acqd("run", "--once", "--watch", str(acq), "--dest", str(dest), *state)  # a run that works
    assert r.returncode == 0, r.stderr
    assert [p.name for p in dest.iterdir()], "made, claimed and used: kept"
    typo = tmp_path / "centrl"  # the journal's copies are in `central`: an adopt of a mistyped one is refused
    r = run_acqd("adopt", "--watch", str(acq), "--dest", str(typo), *state)
    assert r.returncode == 78 and "manifest" in r.stderr, r.stderr
    assert not typo.exists()
    r = run_acqd("run", "--once", "--watch", str(acq), "--dest", str(dest), "--detector", "gatan-k9", *state)
    assert r.returncode == 78 and dest.is_dir(), r.stderr  # no longer empty: kept


@pytest.mark.parametrize("prefix", ["..", "../../outside", "ls/../k3", "a/./b", "."])
def test_a_prefix_with_dot_folders_is_refused(prefix: str) -> None:
    """`..` would write outside the tier, or make two roots' prefixes one folder past the nesting check."""
    doc = {"instrument": "x", "state_dir": "/s", "tiers": {"c": {"url": "file:///c"}}}
    with pytest.raises(ValueError, match="not folder names here"):
        Config.model_validate({**doc, "watch": [{"path": "/data", "prefix": prefix}]})
    assert Config.model_validate({**doc, "watch": [{"path": "/data", "prefix": "a..b/.k3"}]})


def test_an_overlap_hidden_by_a_symlink_is_refused_by_check_and_run(tmp_path: Path) -> None:
    """By name the destination is elsewhere; on the filesystem it is the watch folder's own subfolder."""
    (tmp_path / "acq" / "s1").mkdir(parents=True)
    (tmp_path / "acq" / "s1" / "a.dat").write_bytes(b"the only copy")
    (tmp_path / "acq" / "central").mkdir()
    (tmp_path / "nas").symlink_to(tmp_path / "acq" / "central")
    cfg = tmp_path / "acqd.yaml"
    cfg.write_text(
        f"instrument: x\nstate_dir: {tmp_path / 'state'}\nwatch:\n  - {{path: {tmp_path / 'acq'}, "
        f"placement: {{release_local: after_verify}}}}\ntiers:\n  central: {{url: 'file://{tmp_path / 'nas'}'}}\n"
    )
    for cmd in (("check",), ("run", "--once")):
        r = run_acqd(*cmd, "--config", str(cfg))
        assert r.returncode == 78, (cmd, r.stdout, r.stderr)
        assert "overlap" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (tmp_path / "acq" / "s1" / "a.dat").read_bytes() == b"the only copy"
    assert list((tmp_path / "acq" / "central").iterdir()) == []


def _share_site(tmp_path: Path, watch_extra: str, tiers: str, make_tiers: bool = True) -> Path:
    """An instrument `scope` watching <tmp>/acq (settle 0.3 s, to the first tier) with these tiers."""
    return write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {tmp_path / "state"}
watch:
  - {{path: {tmp_path / "acq"}, settle: 0.3s{watch_extra}}}
tiers:
{tiers}
""",
        make_tiers=make_tiers,
    )


def test_check_writes_nothing_onto_an_unmounted_share_beside_another_tier(tmp_path: Path) -> None:
    """`acqd check` skipped the write probe of a tier holding nothing while the journal has copies
    there (an empty mount point), but its test of whether two tiers are one storage still wrote a
    marker through the first tier by name: onto the local disk under the mount point, leaving the
    instrument's folder there (a FUSE mount refuses a mount point that is not empty). Found by a
    review."""
    (tmp_path / "acq" / "s").mkdir(parents=True)
    mnt = tmp_path / "mnt"  # the share's mount point: the first tier by name
    cfg = _share_site(
        tmp_path, "", f'  aaa_share: {{url: "file://{mnt}"}}\n  zzz_other: {{url: "file://{tmp_path / "other"}"}}'
    )
    (tmp_path / "acq" / "s" / "a.raw").write_bytes(b"shipped while mounted")
    assert run_acqd("run", "--config", str(cfg), "--once").returncode == 0
    assert (mnt / "scope" / "s" / "a.raw").exists()
    mnt.rename(tmp_path / "share")  # unmounted
    mnt.mkdir()
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    written: list[str] = []
    sentinel = mnt / "test-sentinel"  # made after check: its event comes after all of check's (in order)

    class Seen(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("opened", "closed_no_write"):  # a look is not a write
                written.append(f"{event.event_type} {event.src_path}")

    watching = Observer()
    watching.schedule(Seen(), str(mnt), recursive=True)
    watching.start()
    try:
        r = run_acqd("check", "--config", str(cfg))
        sentinel.touch()
        wait_for(lambda: any(str(sentinel) in w for w in written), 30, "the sentinel's event")
    finally:
        watching.stop()
        watching.join()
    assert r.returncode == 0 and "not mounted" in r.stderr, r.stdout + r.stderr
    # the folders it makes are removed after it (a marker's): the mount point is empty again either
    # way, so what is done in it is watched (that cleanup hid the mutant that writes there)
    before = written[: next(i for i, w in enumerate(written) if str(sentinel) in w)]
    assert before == [], f"check wrote onto the empty mount point: {before}"


def test_a_tier_folder_that_has_gone_is_never_made_again(tmp_path: Path) -> None:
    """An unmounted share: its mount point is an empty folder, the tier's folder below it is not
    there. acqd made it (`mkdir -p`) and shipped onto the local disk, and with release on freed the
    acquisition disk into it: the copies hidden once the share mounts over them. A tier's folder is
    made at its first use only: once the journal has copies there, a folder gone is waited for
    (`run` keeps the file and says why); `check` warns and does not make it."""
    (tmp_path / "acq" / "s").mkdir(parents=True)
    mount = tmp_path / "mnt" / "central"  # the mount point
    mount.mkdir(parents=True)
    cfg = _share_site(
        tmp_path,
        ", placement: {release_local: after_verify}",
        f'  central: {{url: "file://{mount / "acqd"}"}}\nlimits: {{retry_initial: 50ms, retry_max: 200ms}}',
        make_tiers=False,
    )
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 0 and "does not exist" in r.stderr and "mount it first" in r.stderr, r.stdout + r.stderr
    assert run_acqd("check", "--config", str(cfg), "--strict").returncode == 1
    assert list(mount.iterdir()) == [], "check made the tier's folder"
    (tmp_path / "acq" / "s" / "a.raw").write_bytes(b"the first file")
    assert run_acqd("run", "--config", str(cfg), "--once").returncode == 0  # first use: made
    assert (mount / "acqd" / "scope" / "s" / "a.raw").exists()
    mount.rename(tmp_path / "share")  # unmounted: the mount point is empty again
    mount.mkdir()
    (tmp_path / "acq" / "s" / "b.raw").write_bytes(b"the only copy")
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "3s")
    assert r.returncode == 1 and "not mounted" in r.stderr, r.stderr
    assert list(mount.iterdir()) == [], "acqd made the tier's folder again on the local disk"
    assert (tmp_path / "acq" / "s" / "b.raw").read_bytes() == b"the only copy"
    mount.rmdir()
    (tmp_path / "share").rename(mount)  # mounted again: it ships
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0 and (mount / "acqd" / "scope" / "s" / "b.raw").read_bytes() == b"the only copy"
    assert not (tmp_path / "acq" / "s" / "b.raw").exists()


def test_a_tier_path_mistyped_two_levels_deep_is_refused_not_built(tmp_path: Path) -> None:
    """`url: file:///mnt/centrl/acqd` (a typo), or a share not mounted whose mount point is gone too:
    acqd built the whole path on the local disk (`mkdir -p`), shipped there and, with release on,
    freed the acquisition disk against copies on the PC's own disk (a review). A tier's folder is
    made only inside a folder that exists: otherwise check and run refuse (exit 78), nothing made."""
    (tmp_path / "acq" / "s").mkdir(parents=True)
    (tmp_path / "acq" / "s" / "a.raw").write_bytes(b"the only copy")
    typo = tmp_path / "mnt" / "centrl" / "acqd"
    cfg = _share_site(
        tmp_path,
        ", placement: {release_local: after_verify}",
        f'  central: {{url: "file://{typo}"}}',
        make_tiers=False,
    )
    for cmd in (["check"], ["run", "--once"]):
        r = run_acqd(*cmd, "--config", str(cfg))
        assert r.returncode == 78 and f"nor the folder it would be made in ({typo.parent})" in r.stderr, r.stderr
    quick = ["--watch", str(tmp_path / "acq"), "--state-dir", str(tmp_path / "q"), "--release", "--settle", "0.1s"]
    r = run_acqd("run", "--once", *quick, "--dest", str(typo))
    assert r.returncode == 78 and f"the folder it would be made in ({typo.parent})" in r.stderr, r.stderr
    assert not (tmp_path / "mnt").exists(), "a mistyped tier path was built"
    assert (tmp_path / "acq" / "s" / "a.raw").read_bytes() == b"the only copy"
    (tmp_path / "mnt" / "centrl").mkdir(parents=True)  # the folder it is made in exists: made, shipped
    assert run_acqd("run", "--config", str(cfg), "--once").returncode == 0
    assert (typo / "scope" / "s" / "a.raw").read_bytes() == b"the only copy"


def test_check_says_why_a_profile_cannot_be_loaded_and_names_each_root(tmp_path: Path) -> None:
    """A profile of yours whose `name:` differs from its file was listed "(unreadable)" with nothing
    more, and a detectors_dir that is not there not at all (a review); each root shows its name."""
    (tmp_path / "acq").mkdir()
    (tmp_path / "central").mkdir()
    det = tmp_path / "det"
    det.mkdir()
    (det / "cam.yaml").write_text((REPO / "detectors" / "generic.yaml").read_text())  # says `name: generic`
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {tmp_path / "state"}
detectors_dir: {det}
watch: [{{path: {tmp_path / "acq"}, name: krios-k3, prefix: k3}}]
tiers:
  central: {{url: "file://{tmp_path / "central"}"}}
""",
    )
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    said = r.stdout + r.stderr
    assert "detector profile cam:" in said and "named 'generic' but the file 'cam'" in said, said
    assert f"watch krios-k3: {tmp_path / 'acq'} (exists, prefix k3)" in r.stdout, r.stdout
    assert run_acqd("check", "--config", str(cfg), "--strict").returncode == 1
    cfg.write_text(cfg.read_text().replace(str(det), str(tmp_path / "no-such-dir")))
    r = run_acqd("check", "--config", str(cfg))
    assert "no-such-dir is not a folder" in r.stdout + r.stderr, r.stdout + r.stderr


def test_check_leaves_no_folder_on_the_tiers(tmp_path: Path) -> None:
    """`acqd check`'s write probes made `<tier>/<instrument>/` and left it, owned by whoever ran
    check (root, typically): the daemon's own user could then not write its copies there (a review)."""
    (tmp_path / "acq").mkdir()
    central, capacity = tmp_path / "central", tmp_path / "capacity"
    central.mkdir()
    capacity.mkdir()
    cfg = _share_site(tmp_path, "", f'  central: {{url: "file://{central}"}}\n  capacity: {{url: "file://{capacity}"}}')
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 0 and "write, read back and delete: OK" in r.stdout, r.stdout + r.stderr
    assert list(central.iterdir()) == [] and list(capacity.iterdir()) == []


def test_a_tier_that_is_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "acq").mkdir()
    (tmp_path / "hostname").write_text("not a folder")
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {tmp_path / "state"}
watch: [{{path: {tmp_path / "acq"}}}]
tiers:
  central: {{url: "file://{tmp_path / "hostname"}"}}
""",
        make_tiers=False,
    )
    for cmd in (["check"], ["run", "--once"]):
        r = run_acqd(*cmd, "--config", str(cfg))
        assert r.returncode == 78 and "is a file, not a folder" in r.stderr, (cmd, r.stderr)


def test_a_relative_credential_outside_systemd_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example configuration's `password_file: mqtt-password` is for systemd's LoadCredential=;
    `acqd check` by hand said only "cannot read mqtt-password: No such file or directory" (a review)."""
    from acqd.config import read_credential

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"CREDENTIALS_DIRECTORY=/etc/acqd acqd"):
        read_credential(Path("mqtt-password"), "mqtt.password_file")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    assert read_credential(Path("mqtt-password"), "mqtt.password_file") == "s3cret"


def test_check_says_what_a_root_does_with_other_files_and_a_frame_layout_that_cannot_apply(tmp_path: Path) -> None:
    """`acqd check` said "other files: copy" for a profile that ignores them, and nothing of a frame
    layout asked for a detector that reads no frames (silently copied byte for byte): a first week's
    questions."""
    from tests.conftest import run_acqd

    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "cam.yaml").write_text(
        "apiVersion: acqd/v1\nkind: DetectorProfile\nname: cam\nreader: tiff\nfiles: ['*.tif']\nother_files: ignore\n"
    )
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
    cfg = tmp_path / "acqd.yaml"
    cfg.write_text(
        f"instrument: x\nstate_dir: {tmp_path}/s\ndetectors_dir: {tmp_path}/det\nwatch:\n"
        f"  - {{path: {tmp_path}/a, detector: cam, prefix: a}}\n"
        f"  - {{path: {tmp_path}/b, detector: generic, prefix: b, placement: {{layout: zarr}}}}\n"
        f"tiers:\n  central: {{url: 'file://{tmp_path}/c'}}\n"
    )
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    a, b = [line for line in r.stdout.splitlines() if line.strip().startswith("watch watch")]
    assert "other files: ignored" in a and "other files: copy," in b, r.stdout
    assert "placement layout zarr has no effect: detector generic reads no frames" in r.stderr, r.stderr
    assert r.stderr.count("has no effect") == 1, r.stderr


def test_the_example_configuration_names_every_key_and_the_hubs_tiers_are_the_daemons() -> None:
    """deploy/acqd.example.yaml says it shows every key: four were missing (a stranger's first try).
    Each key of every section (commented ones show their default) is in it. And the hub's example
    names the same tier URLs as the daemon's: the hub acts only on copies recorded under its tiers'
    URLs, so the two examples as shipped made a hub that managed nothing."""
    import re
    import typing

    import yaml
    from pydantic import BaseModel

    text = (REPO / "deploy" / "acqd.example.yaml").read_text()
    missing: list[str] = []
    seen: set[type] = set()

    def walk(model: type[BaseModel], path: str) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, f in model.model_fields.items():
            key = f.alias or name
            if not re.search(r"(^|[\s{,#])" + re.escape(key) + r":", text, re.M):
                missing.append(path + key)
            args = typing.get_args(f.annotation)
            for t in (f.annotation, *args, *(x for a in args for x in typing.get_args(a))):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    walk(t, f"{path}{key}.")

    walk(Config, "")
    assert missing == []
    daemon = yaml.safe_load(text)["tiers"]
    hub = yaml.safe_load((REPO / "deploy" / "hub.example.yaml").read_text())["tiers"]
    assert {n: t["url"] for n, t in hub.items()} == {n: daemon[n]["url"] for n in hub}


def test_relative_paths_are_taken_from_the_folder_of_acqd_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README (Paths and units): a relative path in acqd.yaml is relative to acqd.yaml's folder, not
    to the current folder (a service's is /); a bare duration is seconds."""
    conf = tmp_path / "etc"
    conf.mkdir()
    p = conf / "acqd.yaml"
    p.write_text(
        "instrument: x\nstate_dir: state\ndetectors_dir: det\nwatch:\n  - {path: acq, settle: 5}\n"
        "tiers:\n  central: {url: 'file:///mnt/central'}\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config(p)
    assert cfg.watch[0].path == conf / "acq" and cfg.state_dir == conf / "state" and cfg.detectors_dir == conf / "det"
    assert cfg.watch[0].settle == 5.0


@pytest.mark.parametrize(
    "url",
    ["mqtt://127.0.0.1:99999", "mqtt://127.0.0.1:abc", "mqtts://broker:8883", "ws://broker", "mqtt://:1883", "h:1883"],
)
def test_a_broker_url_acqd_cannot_use_is_refused_by_check_and_run_with_one_line(tmp_path: Path, url: str) -> None:
    """Found by an adversarial review (thirty-first session): `acqd check` said OK for an MQTT URL with
    a port typo, and `acqd run` claimed its destination, then died with a traceback (a port out of
    range, exit 1: systemd restarted it for ever, nothing shipped). Both now refuse it, exit 78."""
    (tmp_path / "acq").mkdir()
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: t
state_dir: {tmp_path / "state"}
watch:
  - {{path: {tmp_path / "acq"}}}
tiers:
  central: {{url: "file://{tmp_path / "out"}"}}
mqtt: {{url: "{url}"}}
""",
    )
    for args in (("check",), ("run", "--once")):
        r = run_acqd(*args, "--config", str(cfg))
        assert r.returncode == 78, (args, r.returncode, r.stderr)
        assert "mqtt.url: expected mqtt://HOST[:PORT]" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not list((tmp_path / "out").iterdir()) and not (tmp_path / "state").exists()  # nothing claimed or made


def test_an_unknown_key_is_said_with_its_line_and_the_keys_its_section_has(tmp_path: Path) -> None:
    """A typo in acqd.yaml or a policy names the file, the line and the field, and lists the keys
    that section has (it pointed at "the documented keys": a stranger's walk through the README)."""
    from acqd.policy.model import load_policy

    cfg = tmp_path / "acqd.yaml"
    cfg.write_text(
        f"instrument: x\nstate_dir: {tmp_path / 's'}\nwatch:\n  - path: {tmp_path}\n    detektor: generic\n"
        f"    placement: {{tyer: central}}\ntiers:\n  central: {{url: 'file://{tmp_path / 'c'}', optoins: {{}}}}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    said = str(e.value)
    assert f"{cfg}:5: watch.0.detektor: unknown key (typo?); the keys here: detector, ignore, mode," in said, said
    assert f"{cfg}:6: watch.0.placement.tyer: unknown key (typo?); the keys here: codec, compress," in said, said
    assert f"{cfg}:8: tiers.central.optoins: unknown key (typo?); the keys here: bandwidth, options, url" in said
    policy = tmp_path / "policy.yaml"
    text = (REPO / "policies" / "cryoem-facility.yaml").read_text()
    policy.write_text(text.replace("      warn: 14d\n", "      warm: 14d\n"))
    with pytest.raises(ConfigError) as e:
        load_policy(policy)
    assert "spec.rules.0.warm: unknown key (typo?); the keys here: " in str(e.value) and "warn" in str(e.value)
