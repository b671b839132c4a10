"""End to end: the real `acqd run` process on real folders (issue: the spine)."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import pytest
import zstandard

from acqd.naming import CLAIM
from tests.conftest import (
    Background,
    digest,
    journal_rows,
    journal_states,
    run_acqd,
    tree,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

ODD_NAMES = [
    "session 1/frame 0001.raw",
    "Zebrafisch_Größe/µm_stack_ä.raw",
    "grid..3/run..1.raw",
    "grid..3/x..y..z",
    "top-level-file.dat",
    "deep/a/b/c/d/e.bin",
]
IGNORED = ["session 1/.hidden", "session 1/frame.tmp", "session 1/frame.part", "session 1/~lock"]


def quick(watch: Path, dest: Path, state: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--once",
        "--watch",
        str(watch),
        "--dest",
        str(dest),
        "--state-dir",
        str(state),
        "--instrument",
        "scope",
        "--settle",
        "0.3s",
        *extra,
    ]


def populate(watch: Path, names: list[str], seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {}
    for i, name in enumerate(names):
        p = watch / name
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(1000 + 137 * i) + bytes(5000)
        p.write_bytes(data)
        out[name] = data
    return out


def test_present_before_start_odd_names_once_and_status(dirs: tuple[Path, Path, Path]) -> None:
    watch, dest, state = dirs
    expected = populate(watch, ODD_NAMES)
    populate(watch, IGNORED, seed=2)
    r = run_acqd(*quick(watch, dest, state))
    assert r.returncode == 0, r.stderr
    assert "6 verified" in r.stdout
    landed = {k: v for k, v in tree(dest / "scope").items() if not k.rpartition("/")[2].startswith("~acqd-")}
    assert landed == expected  # byte-exact, each once, nothing ignored shipped
    manifest = json.loads((dest / "scope" / "session 1" / "~acqd-manifest.json").read_text())
    assert [f["source"] for f in manifest["files"]] == ["session 1/frame 0001.raw"]
    assert manifest["files"][0]["checksum"] == "xxh3-128:" + digest(expected["session 1/frame 0001.raw"])
    assert (dest / "scope" / "~acqd-manifest.json").exists()  # the session of top-level files

    st = run_acqd("status", "--state-dir", str(state), "--json")
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["states"]["verified"]["files"] == 6
    assert doc["states"]["verified"]["bytes"] == sum(len(v) for v in expected.values())

    # a second run ships nothing again (its claim names the new run: acqd.claims)
    def stored() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (dest / "scope").rglob("*") if p.is_file() and p.name != CLAIM}

    before = stored()
    r2 = run_acqd(*quick(watch, dest, state))
    assert r2.returncode == 0, r2.stderr
    assert "0 verified" in r2.stdout
    assert before == stored() and before


def test_zstd_release_restore_and_fixity(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    watch, dest, state = dirs
    expected = populate(watch, [f"s{i % 2}/f{i}.raw" for i in range(10)])
    r = run_acqd(*quick(watch, dest, state, "--compress", "zstd", "--release"))
    assert r.returncode == 0, r.stderr
    assert tree(watch) == {}  # every source released ...
    dctx = zstandard.ZstdDecompressor()
    for name, data in expected.items():  # ... and every copy decodes to its source
        assert dctx.decompress((dest / "scope" / (name + "~.zst")).read_bytes()) == data
    assert set(journal_states(state).values()) == {"released"}
    out = tmp_path / "restored.raw"
    r = run_acqd("restore", "s1/f3.raw", str(out), "--state-dir", str(state), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == expected["s1/f3.raw"]
    r = run_acqd("restore", "s1/f3.raw", str(out), "--state-dir", str(state), "--dest", str(dest))
    assert r.returncode == 1 and "never overwrites" in r.stderr
    r = run_acqd("verify", "--state-dir", str(state), "--dest", str(dest))
    assert r.returncode == 0 and "10 copies OK, 0 failed" in r.stdout
    victim = dest / "scope" / "s0" / "f4.raw~.zst"
    victim.write_bytes(zstandard.ZstdCompressor().compress(b"bit rot"))
    r = run_acqd("verify", "--state-dir", str(state), "--dest", str(dest))
    assert r.returncode == 1 and "9 copies OK, 1 failed" in r.stdout and "s0/f4.raw" in r.stderr


def test_progressively_written_file_ships_once_complete(dirs: tuple[Path, Path, Path]) -> None:
    watch, dest, state = dirs
    path = watch / "growing.raw"
    chunks = [os.urandom(200_000) for _ in range(12)]
    path.write_bytes(chunks[0])

    def writer() -> None:
        with open(path, "ab") as f:
            for c in chunks[1:]:
                time.sleep(0.25)
                f.write(c)
                f.flush()

    t = threading.Thread(target=writer)
    t.start()
    r = run_acqd(*quick(watch, dest, state)[:-2], "--settle", "1s")
    t.join()
    assert r.returncode == 0, r.stderr
    assert (dest / "scope" / "growing.raw").read_bytes() == b"".join(chunks)
    assert journal_rows(state) == [("growing.raw", "verified", None, 1)]


def test_temp_rename_and_bulk_copy_with_the_daemon_running(dirs: tuple[Path, Path, Path]) -> None:
    watch, dest, state = dirs
    args = quick(watch, dest, state)
    args.remove("--once")
    d = Background(*args)
    try:
        wait_for(lambda: (state / "journal.sqlite").exists(), what="daemon start")
        # EPU style: a temporary name, written slowly, then renamed
        tmp = watch / "movie.mrc.part"
        with open(tmp, "wb") as f:
            for _ in range(5):
                f.write(os.urandom(100_000))
                f.flush()
                time.sleep(0.1)
        os.rename(tmp, watch / "movie.mrc")
        # a bulk copy of 1,000 small files
        bulk = watch / "bulk"
        bulk.mkdir()
        for i in range(1000):
            (bulk / f"f{i:04d}.txt").write_bytes(f"frame {i}\n".encode() * 10)
        wait_for(
            lambda: sum(1 for s in journal_states(state).values() if s == "verified") == 1001,
            timeout=120,
            what="1,001 files verified",
        )
        code, err = d.terminate()
    finally:
        d.kill()
    assert code == 0, err
    rows = journal_rows(state)
    assert {r[0] for r in rows} == {"movie.mrc"} | {f"bulk/f{i:04d}.txt" for i in range(1000)}
    assert all(r[1] == "verified" and r[3] == 1 for r in rows)  # each once, no second version
    assert (dest / "scope" / "movie.mrc").read_bytes() == (watch / "movie.mrc").read_bytes()
    assert not any(".part" in p or "acqd-tmp" in p for p in tree(dest))
    assert "stopping" in err


def test_sigkill_at_random_points_loses_and_duplicates_nothing(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    watch, dest, state = dirs
    rng = random.Random(7)
    expected: dict[str, bytes] = {}
    for i in range(48):
        name = f"session_{i % 4}/movie_{i:03d}.raw"
        data = rng.randbytes(rng.randint(50_000, 400_000)) + bytes(rng.randint(500_000, 2_000_000))
        (watch / name).parent.mkdir(parents=True, exist_ok=True)
        (watch / name).write_bytes(data)
        expected[name] = data
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - path: {watch}
    settle: 0.2s
    placement: {{compress: zstd, release_local: after_verify}}
tiers:
  central: {{url: "file://{dest}"}}
limits: {{concurrent_files: 3, io_threads: 3, chunk_bytes: 256KiB, inflight_bytes: 4MiB}}
""",
    )
    dctx = zstandard.ZstdDecompressor()

    def check_invariants() -> None:
        states = journal_states(state)
        for rel, data in tree(dest / "scope").items() if (dest / "scope").exists() else []:
            name = rel.rpartition("/")[2]
            if name.startswith("~acqd-"):
                continue
            assert not name.startswith("."), f"temporary left visible: {rel}"  # cleaned at the next start
            assert rel.endswith("~.zst") and rel[:-5] in expected, f"unexpected object {rel}"
            assert dctx.decompress(data) == expected[rel[:-5]], f"partial or corrupt copy under final name: {rel}"
        for name in expected:
            if not (watch / name).exists():  # released: must be verified and its copy intact
                assert states.get(name) in ("verified", "released"), f"{name} released unverified"
                assert dctx.decompress((dest / "scope" / (name + "~.zst")).read_bytes()) == expected[name]

    kills = 0
    for _ in range(8):
        d = Background("run", "--config", str(cfg))
        time.sleep(rng.uniform(0.3, 1.5))
        d.kill()
        kills += 1
        # temporaries may exist right after a SIGKILL; everything under a final name must be whole
        check_invariants_allowing_temps(dest, expected, dctx)
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    check_invariants()
    objects = sorted(k for k in tree(dest / "scope") if not k.rpartition("/")[2].startswith("~acqd-"))
    assert objects == sorted(n + "~.zst" for n in expected)  # each exactly once
    assert tree(watch) == {}
    rows = journal_rows(state)
    assert len(rows) == len(expected) and all(r[1] == "released" and r[3] == 1 for r in rows)
    assert kills == 8


def check_invariants_allowing_temps(dest: Path, expected: dict[str, bytes], dctx: zstandard.ZstdDecompressor) -> None:
    if not (dest / "scope").exists():
        return
    for rel, data in tree(dest / "scope").items():
        name = rel.rpartition("/")[2]
        if name.startswith((".", "~acqd-")):
            continue
        assert dctx.decompress(data) == expected[rel[:-5]], f"partial copy under a final name: {rel}"


def _bad_input_config(tmp_path: Path, watch: Path, dest: Path, state: Path, release: bool = False) -> Path:
    return write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {state}
watch:
  - path: {watch}
    settle: 0.3s
    placement: {{release_local: {"after_verify" if release else "never"}}}
tiers:
  central: {{url: "file://{dest}"}}
limits: {{retry_initial: 50ms, retry_max: 200ms}}
""",
    )


def test_bad_inputs_are_quarantined_and_nothing_is_lost(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    watch, dest, state = dirs
    outside = tmp_path / "outside.raw"
    outside.write_bytes(b"secret outside the watch root")
    (watch / "s").mkdir()
    (watch / "s" / "empty.raw").write_bytes(b"")
    (watch / "s" / "locked.raw").write_bytes(b"no permission" * 100)
    (watch / "s" / "locked.raw").chmod(0o000)
    (watch / "s" / "link.raw").symlink_to(outside)
    (watch / "s" / "linkdir").symlink_to(tmp_path)
    os.mkfifo(watch / "s" / "pipe.raw")
    (watch / "s" / "good.raw").write_bytes(b"good" * 1000)
    cfg = _bad_input_config(tmp_path, watch, dest, state)
    r = run_acqd("run", "--config", str(cfg), "--once", drop_caps=True)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rows = {rel: (st, reason) for rel, st, reason, _ in journal_rows(state)}
    assert rows["s/good.raw"][0] == "verified"
    assert rows["s/empty.raw"] == ("quarantined", "zero-byte file (re-examined if it grows)")
    assert rows["s/locked.raw"][0] == "quarantined" and "cannot read the source" in rows["s/locked.raw"][1]
    assert rows["s/link.raw"][0] == "quarantined" and "symlink" in rows["s/link.raw"][1]
    assert rows["s/linkdir"][0] == "quarantined" and "symlink" in rows["s/linkdir"][1]
    assert rows["s/pipe.raw"][0] == "quarantined" and "not a regular file" in rows["s/pipe.raw"][1]
    assert sorted(tree(dest / "scope")) == ["s/good.raw", "s/~acqd-manifest.json"]  # nothing followed out
    assert outside.read_bytes() == b"secret outside the watch root"
    for name in ("empty.raw", "locked.raw", "link.raw", "pipe.raw"):  # nothing lost
        assert os.path.lexists(watch / "s" / name)
    # the fix for a quarantine: make the file readable; the next run ships it
    (watch / "s" / "locked.raw").chmod(0o644)
    (watch / "s" / "empty.raw").write_bytes(b"now it has data")
    r = run_acqd("run", "--config", str(cfg), "--once", drop_caps=True)
    assert r.returncode == 0, r.stderr
    assert (dest / "scope" / "s" / "locked.raw").read_bytes() == b"no permission" * 100
    assert (dest / "scope" / "s" / "empty.raw").read_bytes() == b"now it has data"


def test_file_deleted_before_it_settles(dirs: tuple[Path, Path, Path]) -> None:
    watch, dest, state = dirs
    args = [*quick(watch, dest, state)[:-2], "--settle", "30s"]
    args.remove("--once")
    (watch / "brief.raw").write_bytes(b"x" * 1000)
    d = Background(*args)
    try:
        wait_for(lambda: journal_states(state).get("brief.raw") == "seen", what="the file to be seen")
        (watch / "brief.raw").unlink()  # long before its 30 s settle window ends
        wait_for(lambda: journal_states(state).get("brief.raw") == "vanished", what="the file to vanish")
        code, err = d.terminate()
    finally:
        d.kill()
    assert code == 0, err
    # the same while acqd is down: the restart reconciles the journal with the disk
    (watch / "brief2.raw").write_bytes(b"y" * 1000)
    d = Background(*args)
    wait_for(lambda: journal_states(state).get("brief2.raw") == "seen", what="the second file to be seen")
    d.kill()
    (watch / "brief2.raw").unlink()
    r = run_acqd(*quick(watch, dest, state))
    assert r.returncode == 0, r.stderr
    assert journal_states(state) == {"brief.raw": "vanished", "brief2.raw": "vanished"}
    assert tree(dest) == {}


def test_destination_refusing_writes_waits_and_releases_nothing(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    watch, dest, state = dirs
    (watch / "s").mkdir()
    data = os.urandom(100_000)
    (watch / "s" / "a.raw").write_bytes(data)
    cfg = _bad_input_config(tmp_path, watch, dest, state, release=True)
    dest.chmod(0o555)
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "2s", drop_caps=True)
    assert r.returncode == 1, r.stderr
    assert "permission denied" in r.stderr and "1 file(s) not shipped" in r.stderr
    assert "Traceback" not in r.stderr
    assert (watch / "s" / "a.raw").read_bytes() == data  # not released
    assert journal_states(state)["s/a.raw"] == "complete"
    assert tree(dest) == {}
    dest.chmod(0o755)
    r = run_acqd("run", "--config", str(cfg), "--once", drop_caps=True)
    assert r.returncode == 0, r.stderr
    assert (dest / "scope" / "s" / "a.raw").read_bytes() == data
    assert not (watch / "s" / "a.raw").exists()
    assert journal_states(state)["s/a.raw"] == "released"


def test_second_daemon_on_the_same_state_dir_is_refused(dirs: tuple[Path, Path, Path]) -> None:
    watch, dest, state = dirs
    args = quick(watch, dest, state)
    args.remove("--once")
    d = Background(*args)
    try:
        wait_for(
            lambda: (state / "acqd.lock").exists() and (state / "acqd.lock").read_text().strip() != "",
            what="the first daemon's lock",
        )
        r = run_acqd(*quick(watch, dest, state))
        assert r.returncode == 1
        assert "another acqd" in r.stderr and "Traceback" not in r.stderr
    finally:
        d.terminate()
        d.kill()
