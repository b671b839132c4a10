"""A destination name belongs to exactly one source, for ever (issue: never lose the only copy).

The property test shows the naming is injective over generated names; the rest runs the real
daemon (`acqd run` as a child process) with release on, on real folders, in the situations that
used to overwrite a stored copy whose local original was already gone. The oracle is the test's
own: the sha256 of every content ever written must be found, at the end, either in the watch
folder or byte-exact (decoded) at the destination.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from acqd import claims, naming
from acqd.config import prefixes_nest
from acqd.errors import ClaimError
from acqd.journal import Journal
from acqd.storage import open_tier
from tests.conftest import (
    Background,
    acqd_cmd,
    acqd_yaml,
    journal_rows,
    journal_states,
    need,
    run_acqd,
    tree,
    wait_for,
    write_config,
)

# -- the property ------------------------------------------------------------------------------
_chars = st.sampled_from([*"a~.v2~0-_ Zé", "~~", ".v", "~v", "~.", ".zarr", ".tif", ".zst", "acqd"])
component = st.lists(_chars, min_size=1, max_size=8).map("".join).filter(lambda c: c not in (".", ".."))
relpath = st.lists(component, min_size=1, max_size=3).map("/".join)
source = st.tuples(st.sampled_from(["", "k3", "ls/a"]), relpath, st.integers(1, 12), st.sampled_from(naming.SUFFIXES))


@settings(max_examples=3000, deadline=None)
@given(st.lists(source, min_size=2, max_size=12, unique=True))
def test_no_two_sources_share_a_name_and_none_lands_on_a_reserved_one(sources: list[tuple[str, str, int, str]]) -> None:
    # watch roots whose prefixes nest are refused by the configuration: keep one root per nest
    roots: list[str] = []
    for prefix, *_ in sources:
        if prefix not in roots and not any(prefixes_nest(prefix, r) for r in roots):
            roots.append(prefix)
    names: dict[str, tuple[str, str, int, str]] = {}
    for s in sources:
        prefix, rel, version, suffix = s
        if prefix not in roots:
            continue
        base = f"inst/{prefix}" if prefix else "inst"
        name = naming.stored_name(base, rel, version, suffix)
        assert names.setdefault(name, s) == s, f"{s} and {names[name]} both map to {name}"
        parts = name.split("/")
        assert not any(naming.is_reserved(p) for p in parts[1:]), name
        assert naming.parse_component(parts[-1]) == (rel.rpartition("/")[2], version, suffix)
        for reserved in (naming.manifest_name(base, rel.partition("/")[0]), naming.claim_name("inst")):
            assert name != reserved
        tmp = naming.temp_name(name)
        assert naming.is_reserved(tmp.rpartition("/")[2]) and tmp != name
    # no stored name is a folder of another one, unless the sources already are (a file `a` shipped,
    # later a folder `a/` with files: those two never exist at once, and the second waits with an error)
    for name, (prefix, rel, *_rest) in names.items():
        head = name
        while "/" in head:
            head = head.rpartition("/")[0]
            if head in names:
                other_prefix, other_rel, *_o = names[head]
                assert other_prefix == prefix and rel.startswith(other_rel + "/"), f"{head} is a folder of {name}"


def test_nested_prefixes_are_a_configuration_error(tmp_path: Path) -> None:
    for a in ("a", "b"):
        (tmp_path / a).mkdir()
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {tmp_path / "state"}
watch:
  - {{path: {tmp_path / "a"}}}
  - {{path: {tmp_path / "b"}, prefix: sess}}
tiers:
  central: {{url: "file://{tmp_path / "central"}"}}
  other: {{url: "file://{tmp_path / "other"}"}}
""",
    )
    for cmd in ("check", "run"):
        r = run_acqd(cmd, "--config", str(cfg))
        assert r.returncode == 78, r.stderr
        assert "nest" in r.stderr and "Traceback" not in r.stderr


# -- the daemon ----------------------------------------------------------------------------------
EVERYTHING = """apiVersion: acqd/v1
kind: DetectorProfile
name: everything
description: every file, including names that start with '.' or '~'
files: ["*"]
ignore: []
reader: bytes
layout: copy
settle: {window: 0.2s}
"""


def site(tmp_path: Path, name: str = "a", *, compress: str = "none", detector: str = "everything") -> Path:
    """A config shipping <tmp>/acq to <tmp>/central with release on; returns its path."""
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "everything.yaml").write_text(EVERYTHING)
    (tmp_path / "acq").mkdir(exist_ok=True)
    return write_config(
        tmp_path / f"{name}.yaml",
        f"""
instrument: scope
state_dir: {tmp_path / f"state-{name}"}
detectors_dir: {tmp_path / "profiles"}
watch:
  - path: {tmp_path / "acq"}
    detector: {detector}
    settle: 0.3s
    placement: {{release_local: after_verify, compress: {compress}}}
tiers:
  central: {{url: "file://{tmp_path / "central"}"}}
limits: {{retry_initial: 50ms, retry_max: 200ms}}
""",
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def survivors(watch: Path, dest: Path) -> set[str]:
    """sha256 of every content in the watch folder, and of every stored object decoded."""
    found = {sha(p.read_bytes()) for p in watch.rglob("*") if p.is_file() and not p.is_symlink()}
    dctx = zstandard.ZstdDecompressor()
    for p in dest.rglob("*"):
        if not p.is_file() or naming.is_reserved(p.name):
            continue
        parsed = naming.parse_component(p.name)
        data = p.read_bytes()
        if parsed is not None and parsed[2] == ".zst":
            data = dctx.decompress(data)
        found.add(sha(data))
    return found


class Oracle:
    """Every content the test ever wrote into the watch folder."""

    def __init__(self, watch: Path) -> None:
        self.watch = watch
        self.written: dict[str, str] = {}

    def write(self, rel: str, data: bytes) -> None:
        p = self.watch / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.written[sha(data)] = rel

    def check(self, dest: Path) -> None:
        lost = {rel for h, rel in self.written.items() if h not in survivors(self.watch, dest)}
        assert not lost, f"contents lost: {sorted(lost)}"


def once(cfg: Path, *extra: str, code: int = 0, other_pc: bool = False) -> str:
    """`acqd run --once`; `other_pc`: as on another PC sharing the folders, in a network namespace of
    its own (where a daemon of this machine holding the watch root is not seen: acqd.rootlock)."""
    # a file that cannot be shipped (in the way) gives up after 3 s; a success is not slowed by it
    args = ("run", "--config", str(cfg), "--once", "--retry-for", "3s" if code == 1 else "120s", *extra)
    if other_pc:
        cmd = [need("unshare", "another PC's run (a network namespace of its own)"), "-n", *acqd_cmd(*args)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    else:
        r = run_acqd(*args)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr


def test_versions_never_land_on_real_names(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    o = Oracle(tmp_path / "acq")
    # a.dat, then real files named like its versions; then a.dat changes (version 2)
    o.write("s/a.dat", b"a, version 1")
    o.write("s/a.v2.dat", b"a real file called a.v2.dat")
    o.write("s/a~v2.dat", b"a real file called a~v2.dat")
    once(cfg)
    o.write("s/a.dat", b"a, version 2, which used to overwrite a.v2.dat")
    once(cfg)
    # the reverse order: b.dat changes first, then real files named like its version arrive
    o.write("s/b.dat", b"b, version 1")
    once(cfg)
    o.write("s/b.dat", b"b, version 2")
    once(cfg)
    o.write("s/b.v2.dat", b"a real file called b.v2.dat")
    o.write("s/b~v2.dat", b"a real file called b~v2.dat")
    o.write("s/b~~v2.dat", b"a real file called b~~v2.dat")
    once(cfg)
    assert not any(p.is_file() for p in (tmp_path / "acq").rglob("*")), "everything was released"
    o.check(tmp_path / "central")
    stored = sorted(p.name for p in (tmp_path / "central" / "scope" / "s").iterdir())
    a = ["a.dat", "a~v2.dat", "a.v2.dat", "a~~v2.dat"]
    b = ["b.dat", "b~v2.dat", "b.v2.dat", "b~~v2.dat", "b~~~~v2.dat"]
    assert stored == sorted([*a, *b, "~acqd-manifest.json"])


def test_files_named_like_acqds_own_are_shipped_and_never_overwritten(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    o = Oracle(tmp_path / "acq")
    for rel in (
        "acqd-manifest.json",
        "~acqd-manifest.json",
        "~acqd-claim.json",
        "s/acqd-manifest.json",
        "s/~acqd-manifest.json",
        "s/.~acqd-tmp.x.dat",
        "s/x.dat",
        "~acqd-claim.json.d/f",
    ):
        o.write(rel, f"user data in {rel}".encode())
    once(cfg)
    o.write("s/y.dat", b"one more, so that the manifests are rewritten")
    once(cfg)
    assert not any(p.is_file() for p in (tmp_path / "acq").rglob("*")), "everything was released"
    o.check(tmp_path / "central")
    manifest = json.loads((tmp_path / "central" / "scope" / "s" / naming.MANIFEST).read_text())
    assert manifest["schema"] == "acqd-manifest/1" and len(manifest["files"]) == 5
    claim = json.loads((tmp_path / "central" / "scope" / naming.CLAIM).read_text())
    assert claim["schema"] == "acqd-claim/1"


def test_layout_suffixes_never_meet_real_names(tmp_path: Path) -> None:
    cfg = site(tmp_path, compress="zstd")
    o = Oracle(tmp_path / "acq")
    o.write("s/a.dat", b"stored as a.dat~.zst")
    o.write("s/a.dat.zst", b"a real file called a.dat.zst")
    o.write("s/a.dat~.zst", b"a real file called a.dat~.zst")
    o.write("s/a.dat~.zst.d/inner", b"a real folder named almost like the copy")
    once(cfg)
    o.write("s/a.dat", b"version 2")
    once(cfg)
    o.check(tmp_path / "central")


def test_a_zarr_store_never_meets_a_real_folder(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    import numpy as np
    import zarr

    cfg = site(tmp_path, detector="hamamatsu-orca")
    o = Oracle(tmp_path / "acq")
    o.write("s/stack.tif.zarr/zarr.json", b'{"a user folder": 1}')
    o.write("s/stack.tif~.zarr/zarr.json", b'{"another user folder": 2}')
    once(cfg)
    data = np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64)
    tifffile.imwrite(tmp_path / "stack.tif", data, photometric="minisblack")
    o.write("s/stack.tif", (tmp_path / "stack.tif").read_bytes())
    once(cfg)
    dest = tmp_path / "central" / "scope" / "s"
    assert json.loads((dest / "stack.tif.zarr" / "zarr.json").read_bytes()) == {"a user folder": 1}
    assert json.loads((dest / "stack.tif~~.zarr" / "zarr.json").read_bytes()) == {"another user folder": 2}
    stored = zarr.open_group(dest / "stack.tif~.zarr", mode="r")
    assert np.array_equal(stored["0"][:], data)  # type: ignore[index]


def test_an_object_acqd_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    o = Oracle(tmp_path / "acq")
    theirs = tmp_path / "central" / "scope" / "s" / "f.raw"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"someone else's data, put there by hand")
    same = tmp_path / "central" / "scope" / "s" / "same.raw"
    same.write_bytes(b"identical content")
    (tmp_path / "central" / "scope" / naming.CLAIM).write_bytes(b"")  # not a claim: refused below
    err = once(cfg, code=78)
    assert "claim" in err
    (tmp_path / "central" / "scope" / naming.CLAIM).unlink()
    err = once(cfg, "--adopt")  # the prefix holds data this journal does not know: take it over on purpose
    o.write("s/f.raw", b"acqd's file with the same name")
    o.write("s/same.raw", b"identical content")
    err = once(cfg, code=1)
    assert "in the way" in err and str(theirs).split("/central/")[1] in err
    assert theirs.read_bytes() == b"someone else's data, put there by hand"
    assert (tmp_path / "acq" / "s" / "f.raw").exists(), "kept: its copy could not be stored"
    assert not (tmp_path / "acq" / "s" / "same.raw").exists(), "the object in the way was its copy: released"
    assert journal_states(tmp_path / "state-a") == {"s/f.raw": "complete", "s/same.raw": "released"}
    o.check(tmp_path / "central")


def _central_tree(tmp_path: Path) -> dict[str, bytes]:
    top = tmp_path / "central" / "scope"
    files = [p for p in sorted(top.rglob("*")) if p.is_file() and p.name != naming.CLAIM]  # the claim: every start
    return {str(p.relative_to(top)): p.read_bytes() for p in files}


def test_a_file_and_a_folder_taking_one_name_in_turn_wait_with_the_cause_then_ship_once_renamed(
    tmp_path: Path,
) -> None:
    """A filesystem tier cannot hold a file and a folder under one name: the second to come is
    kept on the acquisition disk (a conflict, said with its cause and its remedy: rename it there),
    never written over what is stored, nor retried as if the destination were failing; renamed, it
    ships, and its old name is forgotten (no warning at every start)."""
    cfg = site(tmp_path)
    o = Oracle(tmp_path / "acq")
    o.write("x", b"x, a file first")
    o.write("y/a", b"y/a, in a folder first")
    once(cfg)
    assert journal_states(tmp_path / "state-a") == {"x": "released", "y/a": "released"}
    os.rmdir(tmp_path / "acq" / "y")
    o.write("x/a", b"x/a: x is a folder now")
    o.write("y", b"y: a file now")
    stored = _central_tree(tmp_path)
    err = once(cfg, code=1)
    assert "is the stored copy of the file 'x': the folder 'x' cannot be stored under the same name" in err, err
    assert "is a folder of stored copies ('y/a' among them" in err, err
    assert "Rename 'x' on the acquisition disk" in err and "Rename 'y' on the acquisition disk" in err, err
    assert "FileExistsError" not in err and "stored size" not in err, err  # the cause, not the symptom
    assert "retry (write)" not in err, err  # a conflict: the destination is not failing
    assert err.count("ERROR conflict 'x/a'") == 1 and err.count("ERROR conflict 'y'") == 1, err  # said once
    attempts = [int(n) for n in re.findall(r"(\d+) attempt\(s\)", run_acqd("status", "--config", str(cfg)).stdout)]
    assert attempts and min(attempts) >= 2, attempts  # and retried all the same
    assert _central_tree(tmp_path) == stored  # nothing stored touched, nothing written beside it
    assert (tmp_path / "acq" / "x" / "a").exists() and (tmp_path / "acq" / "y").is_file()  # both kept
    (tmp_path / "acq" / "x").rename(tmp_path / "acq" / "x_2")
    (tmp_path / "acq" / "y").rename(tmp_path / "acq" / "y_2")
    err = once(cfg)
    assert "could not clean" not in err, err
    states = journal_states(tmp_path / "state-a")
    assert states["x_2/a"] == "released" and states["y_2"] == "released", states
    assert states["x/a"] == "vanished" and states["y"] == "vanished", states  # renamed: gone under that name
    assert "x_2/a" in _central_tree(tmp_path) and "y_2" in _central_tree(tmp_path)
    o.check(tmp_path / "central")


def test_a_file_in_the_way_of_a_folder_at_the_destination_is_a_conflict_never_replaced(tmp_path: Path) -> None:
    """Somebody's file at the destination where a folder of a source's name is needed: named as the
    cause, the source kept and retried as a conflict, the file never replaced."""
    cfg = site(tmp_path)
    o = Oracle(tmp_path / "acq")
    theirs = tmp_path / "central" / "scope" / "s"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"somebody's file called s")
    once(cfg, "--adopt")  # the prefix holds data this journal does not know: taken over on purpose
    o.write("s/f.raw", b"acqd's s/f.raw")
    err = once(cfg, code=1)
    assert f"{theirs.as_uri()} is a file where a folder is needed" in err, err
    assert "conflict 's/f.raw'" in err and "retry (write)" not in err, err
    assert theirs.read_bytes() == b"somebody's file called s"
    assert journal_states(tmp_path / "state-a") == {"s/f.raw": "complete"}
    o.check(tmp_path / "central")


def test_a_crash_between_publish_and_journal_adopts_the_copy(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    o = Oracle(tmp_path / "acq")
    o.write("s/f.raw", os.urandom(200_000))
    env = dict(os.environ, ACQD_CRASH_AT="after_rename:2")  # the first is the claim
    r = run_acqd("run", "--config", str(cfg), "--once", env=env)
    assert r.returncode != 0
    assert (tmp_path / "central" / "scope" / "s" / "f.raw").exists()
    once(cfg)
    assert journal_states(tmp_path / "state-a") == {"s/f.raw": "released"}
    db = sqlite3.connect(tmp_path / "state-a" / "journal.sqlite")
    assert db.execute("SELECT COUNT(*) FROM audit WHERE action = 'adopted'").fetchone()[0] == 1
    o.check(tmp_path / "central")


def _append(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(os.urandom(1000))


def _rewrite_head(path: Path) -> None:  # a header rewritten after the close (SerialEM's way), size kept
    with open(path, "r+b") as f:
        f.write(os.urandom(64))


def _one_or_a_batch(tmp_path: Path, files: int) -> tuple[Path, Path]:
    """A site (`site`) and its session folder holding `files` random files f0.raw, f1.raw, ...: one
    file alone, shipped by itself (2 MB), or small files shipped as one batch. (config, folder)"""
    cfg = site(tmp_path)
    acq = tmp_path / "acq" / "s"
    acq.mkdir(parents=True)
    size = 2_000_000 if files == 1 else 3000
    for i in range(files):
        (acq / f"f{i}.raw").write_bytes(os.urandom(size))
    return cfg, acq


@pytest.mark.parametrize("change", [_append, _rewrite_head])
@pytest.mark.parametrize("files", [1, 6], ids=["one-file", "a-batch"])
def test_a_crash_between_publish_and_journal_then_a_change_keeps_the_earlier_copy(
    tmp_path: Path, change: Any, files: int
) -> None:
    """Killed between a copy's publication and its record, and the file changed before the restart
    (appended, its header rewritten): the object under its name is its copy of the earlier content,
    whose only copy it is. It was taken for somebody else's object (the file never shipped, every run
    a conflict); then it was removed (the earlier content lost: a second adversarial run). Now it is
    kept as it is and the file as it is now ships as its next version, as without the crash."""
    cfg, acq = _one_or_a_batch(tmp_path, files)
    at = 2 if files == 1 else 4  # the first rename is the claim's; a batch's third copy published
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT=f"after_rename:{at}"))
    assert r.returncode == -9, r.stderr
    dest = tmp_path / "central" / "scope" / "s"
    published = sorted(p.name for p in dest.iterdir() if p.name.startswith("f"))
    assert published, "killed before a copy was published"
    changed = published[-1]  # the last one published, never recorded
    earlier = (dest / changed).read_bytes()
    assert earlier == (acq / changed).read_bytes()
    change(acq / changed)
    finals = {p.name: p.read_bytes() for p in acq.iterdir()}
    once(cfg)
    rows = journal_rows(tmp_path / "state-a")
    assert {r[0]: r[1] for r in rows if r[0] != f"s/{changed}"} == {
        f"s/{n}": "released" for n in finals if n != changed
    }
    assert [(r[1], r[3]) for r in rows if r[0] == f"s/{changed}"] == [("vanished", 1), ("released", 2)], rows
    assert (dest / changed).read_bytes() == earlier, "the earlier content's only copy is gone"
    stem, _, ext = changed.rpartition(".")
    assert (dest / f"{stem}~v2.{ext}").read_bytes() == finals[changed]
    assert {n: (dest / n).read_bytes() for n in finals if n != changed} == {
        n: b for n, b in finals.items() if n != changed
    }
    db = sqlite3.connect(tmp_path / "state-a" / "journal.sqlite")
    try:
        (kept,) = db.execute("SELECT COUNT(*) FROM audit WHERE action = 'unrecorded-kept'").fetchone()
    finally:
        db.close()
    assert kept == 1


def _replace(path: Path) -> None:  # deleted by its owner, a new acquisition written under its name
    path.unlink()
    path.write_bytes(os.urandom(5000))


def _damage(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(10)
        b = f.read(1)
        f.seek(10)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.mark.parametrize(
    "change",
    ["unchanged", "replaced", "appended", "copy-damaged", "copy-damaged-and-replaced"],
)
@pytest.mark.parametrize("files", [1, 6], ids=["one-file", "a-batch"])
def test_a_crash_between_a_copys_record_and_its_verification_never_removes_an_earlier_content(
    tmp_path: Path, change: str, files: int
) -> None:
    """Killed after a copy was recorded stored and read back, before it was recorded verified; then
    the file is left alone, deleted by its owner and written again under its name, or appended to,
    and/or the copy damaged. The copy was removed and written again from the file as it now is: the
    earlier content, whose only copy it was, lost (a delete and a new acquisition under the same name).
    Now a copy of what the file still holds is adopted (read back, not written again), a damaged one of
    it written again; a copy of an earlier content is kept (verified, version 1, if it reads back as
    recorded) and the file ships as version 2 beside it."""
    cfg, acq = _one_or_a_batch(tmp_path, files)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_verify"))
    assert r.returncode == -9, r.stderr
    assert {x[0]: x[1] for x in journal_rows(tmp_path / "state-a")} == {f"s/f{i}.raw": "stored" for i in range(files)}
    dest = tmp_path / "central" / "scope" / "s"
    earlier = (acq / "f0.raw").read_bytes()
    assert (dest / "f0.raw").read_bytes() == earlier
    if change in ("replaced", "copy-damaged-and-replaced"):
        _replace(acq / "f0.raw")
    elif change == "appended":
        _append(acq / "f0.raw")
    if change.startswith("copy-damaged"):
        _damage(dest / "f0.raw")
    kept = (dest / "f0.raw").read_bytes()
    finals = {p.name: p.read_bytes() for p in acq.iterdir()}
    once(cfg)
    rows = journal_rows(tmp_path / "state-a")
    assert {x[0]: x[1] for x in rows if x[0] != "s/f0.raw"} == {f"s/f{i}.raw": "released" for i in range(1, files)}
    assert {n: (dest / n).read_bytes() for n in finals if n != "f0.raw"} == {
        n: b for n, b in finals.items() if n != "f0.raw"
    }
    f0 = [(x[1], x[3]) for x in rows if x[0] == "s/f0.raw"]
    db = sqlite3.connect(tmp_path / "state-a" / "journal.sqlite")
    try:
        audit = [a for (a,) in db.execute("SELECT action FROM audit")]
    finally:
        db.close()
    if change in ("unchanged", "copy-damaged"):  # the file still holds what was stored: one copy of it
        assert f0 == [("released", 1)], rows
        assert (dest / "f0.raw").read_bytes() == earlier
        assert not (dest / "f0~v2.raw").exists()
        damaged = int(change == "copy-damaged")
        assert (audit.count("adopted"), audit.count("damaged-rewritten")) == (files - damaged, damaged), audit
        return
    assert (dest / "f0.raw").read_bytes() == kept, "the earlier content's only copy was touched"
    assert (dest / "f0~v2.raw").read_bytes() == finals["f0.raw"]
    assert (audit.count("stored-kept"), audit.count("adopted")) == (1, files - 1), audit
    if change == "copy-damaged-and-replaced":
        assert f0 == [("vanished", 1), ("released", 2)], rows
        return
    assert f0 == [("verified", 1), ("released", 2)], rows  # version 1: a verified copy, restorable
    out = tmp_path / "restored"
    rr = run_acqd("restore", "--config", str(cfg), "--version", "1", "s/f0.raw", f"{out}/")
    assert rr.returncode == 0, rr.stderr
    assert (out / "f0.raw").read_bytes() == earlier


@pytest.mark.parametrize("change", ["replaced", "deleted", "deleted-copy-damaged", "deleted-copy-gone"])
async def test_once_is_not_idle_while_a_file_is_looked_at_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    """A copy stored before a crash and not verified, its file replaced (kept as version 1, the file
    ships as version 2) or deleted since: the file is looked at afresh, its journal work between its
    flight's end and its admission. A `run --once` that looked idle in between ended there, the file
    pending, exit 1 (a CI run, under load). The journal is slow here (half a second per audit line),
    so the monitor's 50 ms looks fall in that gap every time. The file deleted, the copy was marked
    vanished unread: its only copy, out of sight of `acqd restore`. Now it is read back against its
    record: verified (restorable, in its manifest), or, damaged, vanished and left as it is."""
    gone = change.startswith("deleted")
    import asyncio

    from acqd.config import load_config
    from acqd.daemon import Daemon

    cfg, acq = _one_or_a_batch(tmp_path, 1)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_verify"))
    assert r.returncode == -9, r.stderr
    earlier = (acq / "f0.raw").read_bytes()
    if gone:
        (acq / "f0.raw").unlink()
    else:
        _replace(acq / "f0.raw")
    now = None if gone else (acq / "f0.raw").read_bytes()
    dest = tmp_path / "central" / "scope" / "s"
    if change == "deleted-copy-damaged":
        _damage(dest / "f0.raw")
        earlier = (dest / "f0.raw").read_bytes()
    if change == "deleted-copy-gone":
        (dest / "f0.raw").unlink()
    real = Journal.audit

    def slow(self: Journal, *a: Any, **k: Any) -> Any:
        time.sleep(0.5)
        return real(self, *a, **k)

    monkeypatch.setattr(Journal, "audit", slow)
    async with asyncio.timeout(120):
        result = await Daemon(load_config(cfg), once=True, retry_for=60).run(install_signals=False)
    rows = [(x[0], x[1], x[3]) for x in journal_rows(tmp_path / "state-a")]
    if change == "deleted-copy-gone":  # nothing kept anywhere: vanished, its copy recorded lost, not listed
        assert (result.code, result.pending) == (0, 0), (result, rows)
        assert rows == [("s/f0.raw", "vanished", 1)], rows
        st = run_acqd("status", "--config", str(cfg), "--json")
        assert json.loads(st.stdout)["kept_unverified"] == [], st.stdout
        return
    assert (dest / "f0.raw").read_bytes() == earlier
    if change == "deleted-copy-damaged":  # said, and the copy left as it is (`--once`: exit 1)
        assert (result.code, result.pending) == (1, 0), (result, rows)
        assert rows == [("s/f0.raw", "vanished", 1)], rows
        assert "does not read back as recorded" in caplog.text, caplog.text
        st = run_acqd("status", "--config", str(cfg))
        assert "kept, not verified: 's/f0.raw' (version 1)" in st.stdout, st.stdout + st.stderr
        return
    if gone:  # the file's only copy, read back as recorded: verified, given back by restore
        assert (result.code, result.pending) == (0, 0), (result, rows)
        assert rows == [("s/f0.raw", "verified", 1)], rows
        out = tmp_path / "restored"
        rr = run_acqd("restore", "--config", str(cfg), "s/f0.raw", f"{out}/")
        assert rr.returncode == 0, rr.stderr
        assert (out / "f0.raw").read_bytes() == earlier
        manifest = json.loads((dest / "~acqd-manifest.json").read_text())
        assert "f0.raw" in json.dumps(manifest), manifest
        return
    assert (result.code, result.pending) == (0, 0), (result, rows)
    assert rows == [("s/f0.raw", "verified", 1), ("s/f0.raw", "released", 2)], rows
    assert (dest / "f0~v2.raw").read_bytes() == now


async def test_once_is_not_idle_while_a_file_gone_during_its_settle_window_has_its_copy_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The same gap at a settle look: a file whose copy was stored before a crash, deleted while it
    settles at the next start, is taken off the candidates and its copy read back (`_gone`): neither
    waiting nor in flight meanwhile, and a `--once` run could end there with the row pending (exit 1).
    The journal is slow here (half a second to list the file's copies), so the gap is met every time."""
    import asyncio
    import logging

    from acqd.config import load_config
    from acqd.daemon import Daemon

    caplog.set_level(logging.INFO, logger="acqd")
    cfg, acq = _one_or_a_batch(tmp_path, 1)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_verify"))
    assert r.returncode == -9, r.stderr
    earlier = (acq / "f0.raw").read_bytes()
    config = load_config(cfg)
    config = config.model_copy(
        update={"watch": tuple(w.model_copy(update={"settle": 4.0}) for w in config.watch)}
    )  # long enough to delete the file while it settles
    real = Journal.copies_of

    def slow(self: Journal, *a: Any, **k: Any) -> Any:
        time.sleep(0.5)
        return real(self, *a, **k)

    monkeypatch.setattr(Journal, "copies_of", slow)
    async with asyncio.timeout(120):
        run = asyncio.create_task(Daemon(config, once=True, retry_for=60).run(install_signals=False))
        while "is there: scanning it" not in caplog.text:
            assert not run.done(), caplog.text
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # scanned, and well inside its 4 s settle window
        (acq / "f0.raw").unlink()
        result = await run
    rows = [(x[0], x[1], x[3]) for x in journal_rows(tmp_path / "state-a")]
    assert "vanished before it was shipped" in caplog.text, caplog.text  # the settle look, not the start
    assert (result.code, result.pending) == (0, 0), (result, rows)
    assert rows == [("s/f0.raw", "verified", 1)], rows
    assert (tmp_path / "central" / "scope" / "s" / "f0.raw").read_bytes() == earlier


@pytest.mark.parametrize("changed", [False, True], ids=["unchanged", "rewritten"])
def test_a_compressed_tiff_stored_before_a_crash_is_adopted_or_kept_not_compared_for_ever(
    tmp_path: Path, changed: bool
) -> None:
    """A compressed TIFF, stored as Zarr (its restore rebuilds it from its tags: no checksum of its
    bytes to compare with), recorded stored and never verified (a crash between). Its content could
    not be compared, which was taken for a change during the read: re-examined four times a second
    for ever, `run --once` never ending (an adversarial review). Unchanged since (its identity): the
    copy is adopted; rewritten: the copy is kept as version 1 and the file ships as version 2."""
    import numpy as np
    import tifffile

    acq, state = tmp_path / "acq", tmp_path / "state"
    (acq / "s").mkdir(parents=True)
    src = acq / "s" / "x.tif"

    def pixels(seed: int) -> Any:  # smooth, so that its Zarr copy is smaller than the TIFF
        ramp = np.add.outer(np.arange(256), np.arange(256)).astype(np.uint16) * 8
        return ramp + np.random.default_rng(seed).integers(0, 4, (6, 256, 256), dtype=np.uint16)

    def write(seed: int) -> None:
        tifffile.imwrite(src, pixels(seed), photometric="minisblack", compression="packbits")

    write(1)
    # the light-sheet profile, reading compressed TIFF as frames (its default stores it byte-exact)
    (tmp_path / "det").mkdir()
    orca = (Path(__file__).resolve().parent.parent / "detectors" / "hamamatsu-orca.yaml").read_text()
    (tmp_path / "det" / "orca-frames.yaml").write_text(
        orca.replace("name: hamamatsu-orca", "name: orca-frames") + "\ncompressed_tiff: frames\n"
    )
    env = dict(os.environ, ACQD_DETECTORS=str(tmp_path / "det"))
    quick = ["--watch", str(acq), "--dest", str(tmp_path / "central"), "--state-dir", str(state)]
    quick += ["--settle", "0.2s", "--detector", "orca-frames"]
    r = run_acqd("run", "--once", *quick, env=dict(env, ACQD_CRASH_AT="after_verify"))
    assert r.returncode == -9, r.stderr
    assert journal_states(state) == {"s/x.tif": "stored"}
    [store] = list((tmp_path / "central").rglob("x.tif~.zarr"))
    if changed:
        src.unlink()
        write(2)
    r = run_acqd("run", "--once", "--retry-for", "20s", *quick, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [(x[1], x[3]) for x in journal_rows(state)]
    if not changed:
        assert rows == [("verified", 1)], rows
        assert "adopted" in r.stderr, r.stderr[-3000:]
        return
    assert rows == [("verified", 1), ("verified", 2)], rows
    assert store.exists()
    out = tmp_path / "restored"
    for version in (1, 2):
        (out / str(version)).mkdir(parents=True)
        rr = run_acqd(
            "restore", "--version", str(version), "s/x.tif", f"{out / str(version)}/", "--state-dir", str(state)
        )
        assert rr.returncode == 0, rr.stderr
    first, second = (tifffile.imread(out / v / "x.tif") for v in ("1", "2"))
    assert (first == pixels(1)).all()
    assert (second == tifffile.imread(src)).all()


def test_a_gone_files_copy_on_a_share_not_mounted_is_looked_at_again_not_called_damaged(tmp_path: Path) -> None:
    """A review of the gone-file read-back: the file deleted after a crash between its copy's record
    and its verification, and the share not mounted at the next start (its mount point empty): the
    guard's "not mounted" was taken for "the copy does not read back", the row vanished for good and
    the intact copy out of sight of restore once the share was back. Now nothing is concluded from a
    tier that is not there: the row stays stored (exit 1, pending), and with the share back the copy
    is read back and recorded verified."""
    cfg, acq = _one_or_a_batch(tmp_path, 1)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_verify"))
    assert r.returncode == -9, r.stderr
    earlier = (acq / "f0.raw").read_bytes()
    (acq / "f0.raw").unlink()
    central = tmp_path / "central"
    central.rename(tmp_path / "central.away")
    central.mkdir()  # the share's mount point, nothing mounted on it
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "5s")
    assert r.returncode == 1, r.stderr
    assert journal_states(tmp_path / "state-a") == {"s/f0.raw": "stored"}, r.stderr
    assert "looked at again at the next start" in r.stderr, r.stderr
    central.rmdir()
    (tmp_path / "central.away").rename(central)
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "20s")
    assert r.returncode == 0, r.stderr
    assert journal_states(tmp_path / "state-a") == {"s/f0.raw": "verified"}
    out = tmp_path / "restored"
    rr = run_acqd("restore", "--config", str(cfg), "s/f0.raw", f"{out}/")
    assert rr.returncode == 0, rr.stderr
    assert (out / "f0.raw").read_bytes() == earlier


@pytest.mark.parametrize("gone", [True, False], ids=["file-deleted", "file-kept"])
def test_a_copy_stored_before_a_crash_whose_metadata_changed_is_not_recorded_verified(
    tmp_path: Path, gone: bool
) -> None:
    """A review of the gone-file read-back: a compressed TIFF stored as Zarr, recorded stored and not
    verified (a crash between), the file deleted, and the copy's zarr.json edited (its OME scale): it
    was read back without its metadata checksum and recorded verified, and `acqd verify` then called it
    corrupt. Now its metadata is compared as written: kept as it is, not verified, listed by `acqd
    status`, and `run --once` exits 1. The file still there, the copy was adopted the same way: now it
    is written again from the file (which holds its content), and `acqd verify` finds it sound."""
    import numpy as np
    import tifffile

    acq, state = tmp_path / "acq", tmp_path / "state"
    (acq / "s").mkdir(parents=True)
    ramp = np.add.outer(np.arange(128), np.arange(128)).astype(np.uint16) * 8
    tifffile.imwrite(acq / "s" / "x.tif", np.stack([ramp] * 6), photometric="minisblack")
    quick = ["--watch", str(acq), "--dest", str(tmp_path / "central"), "--state-dir", str(state)]
    quick += ["--settle", "0.2s", "--detector", "hamamatsu-orca"]
    r = run_acqd("run", "--once", *quick, env=dict(os.environ, ACQD_CRASH_AT="after_verify"))
    assert r.returncode == -9, r.stderr
    assert journal_states(state) == {"s/x.tif": "stored"}
    if gone:
        (acq / "s" / "x.tif").unlink()
    [meta] = [p for p in (tmp_path / "central").rglob("zarr.json") if p.parent.name == "x.tif~.zarr"]
    written = meta.read_text()
    meta.write_text(_scaled(written))
    r = run_acqd("run", "--once", "--retry-for", "20s", *quick)
    if not gone:
        assert r.returncode == 0, r.stderr[-3000:]
        assert journal_states(state) == {"s/x.tif": "verified"}
        assert "written again" in r.stderr, r.stderr[-3000:]
        assert json.loads(meta.read_text()) == json.loads(written)
        v = run_acqd("verify", "--state-dir", str(state))
        assert v.returncode == 0, v.stdout + v.stderr
        return
    assert r.returncode == 1, r.stderr[-3000:]
    assert journal_states(state) == {"s/x.tif": "vanished"}, r.stderr[-3000:]
    assert "does not read back as recorded" in r.stderr
    st = run_acqd("status", "--state-dir", str(state))
    assert "kept, not verified: 's/x.tif' (version 1)" in st.stdout, st.stdout


def _scaled(zarr_json: str) -> str:
    """The document with the first number of its first OME scale doubled (a calibration changed)."""
    doc = json.loads(zarr_json)

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if isinstance(node.get("scale"), list) and node["scale"]:
                node["scale"][-1] = float(node["scale"][-1]) * 2
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    assert walk(doc), zarr_json
    return json.dumps(doc)


def test_an_object_put_under_a_name_after_a_failed_attempt_is_never_removed(tmp_path: Path) -> None:
    """An attempt noted its publication and failed before its rename (killed after its temporary was
    written); an object then appears under the file's name (somebody's, or another file's on a tier
    that folds case). The note made it the file's own: removed. Now it is never touched: the file ships
    as its next version beside it."""
    cfg = site(tmp_path)
    acq = tmp_path / "acq" / "s"
    acq.mkdir(parents=True)
    data = os.urandom(2_000_000)
    (acq / "a.raw").write_bytes(data)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_temp_write:2"))
    assert r.returncode == -9, r.stderr
    dest = tmp_path / "central" / "scope" / "s"
    assert not (dest / "a.raw").exists()
    (dest / "a.raw").write_bytes(b"someone else's data, put there by hand")
    once(cfg)
    assert (dest / "a.raw").read_bytes() == b"someone else's data, put there by hand"
    assert (dest / "a~v2.raw").read_bytes() == data
    assert [(r[1], r[3]) for r in journal_rows(tmp_path / "state-a")] == [("vanished", 1), ("released", 2)]


def test_a_watch_folder_moved_after_an_unfinished_publication_ships_from_its_new_place(tmp_path: Path) -> None:
    """Killed after a copy's temporary was written (its publication noted), then the acquisition folder
    moved (mounted elsewhere) and the configuration follows it: the old root's row, never to ship again,
    kept the name noted, and the moved file was retried for ever as an internal error naming journal
    rows. A root no longer watched holds no name: the file ships from its new place."""
    cfg = site(tmp_path)
    (tmp_path / "acq" / "s").mkdir()
    data = os.urandom(2_000_000)
    (tmp_path / "acq" / "s" / "a.raw").write_bytes(data)
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="after_temp_write:2"))
    assert r.returncode == -9, r.stderr
    (tmp_path / "acq").rename(tmp_path / "acq2")
    cfg.write_text(cfg.read_text().replace(f"path: {tmp_path / 'acq'}\n", f"path: {tmp_path / 'acq2'}\n"))
    err = once(cfg)  # exit 0: the old root's row is not this configuration's to ship, and it says so
    assert f"this configuration does not watch ({tmp_path / 'acq'})" in err, err
    assert (tmp_path / "central" / "scope" / "s" / "a.raw").read_bytes() == data
    assert not (tmp_path / "acq2" / "s" / "a.raw").exists()
    assert not [p for p in tree(tmp_path / "central") if "acqd-tmp" in p]


def test_two_daemons_never_share_a_destination(tmp_path: Path) -> None:
    a, b = site(tmp_path, "a"), site(tmp_path, "b")  # same instrument, same tier, two journals
    o = Oracle(tmp_path / "acq")
    o.write("s/f.raw", b"shipped by a")
    once(a)
    o.write("s/f.raw", b"changed: b would ship it as version 1 over a's copy")
    err = once(b, code=78)
    assert err.count("\n") == 1 and "claimed by" in err and str(tmp_path / "state-a") in err
    r = run_acqd("check", "--config", str(b))
    assert r.returncode == 78 and "claimed by" in r.stderr
    assert run_acqd("check", "--config", str(a)).returncode == 0
    r = run_acqd("adopt", "--config", str(b))  # b takes over on purpose
    assert r.returncode == 0 and "adopted 1 stored file" in r.stdout, r.stderr
    once(b)  # the changed file is a new version with a name of its own
    assert [row[3] for row in journal_rows(tmp_path / "state-b")] == [1, 2]
    err = once(a, code=78)  # and now a is refused
    assert "claimed by" in err
    o.check(tmp_path / "central")


def test_a_takeover_under_a_running_daemon_halts_it_for_its_claim(tmp_path: Path) -> None:
    """`acqd adopt` by another journal while this daemon runs: it stops at its next commit, and says
    why as a claim (its own journal is fine). Every claim message names the journal that holds the
    claim, so every takeover was labelled a journal halt (`acqd_halted{reason="journal"}`; an
    adversarial review)."""
    a, b = site(tmp_path, "a"), site(tmp_path, "b")
    o = Oracle(tmp_path / "acq")
    o.write("s/f.raw", b"shipped by a")
    d = Background("run", "--config", str(a))
    try:
        wait_for(lambda: journal_states(tmp_path / "state-a").get("s/f.raw") == "released", what="a's release")
        r = run_acqd("adopt", "--config", str(b))
        assert r.returncode == 0, r.stderr
        o.write("s/g.raw", b"a's next commit meets b's claim")
        d.proc.wait(timeout=60)
        assert d.proc.returncode == 78, d.stderr()
        err = d.stderr()
        assert "halted (claim)" in err and "halted (journal)" not in err, err
    finally:
        d.kill()


@pytest.mark.slow
def test_every_file_released_during_a_takeover_is_known_to_the_new_journal(tmp_path: Path) -> None:
    """`acqd adopt` read the manifests, imported them (a while, for a large destination), and claimed
    the prefix last: the old daemon went on releasing meanwhile, and the files it released in that
    time were known to no journal (adversarial review, sixteenth session). The claim comes first now."""
    import threading

    a, c = site(tmp_path, "a"), site(tmp_path, "c")
    old = tmp_path / "central" / "scope" / "old"
    entries = [  # a large session shipped long ago: its import takes adopt a while
        {"source": f"old/f{i}.raw", "version": 1, "dest": f"scope/old/f{i}.raw", "tier": "central",
         "layout": "copy", "codec": "none", "source_bytes": 1, "stored_bytes": 1, "checksum": f"xxh3-128:{i:032x}",
         "source_mtime_ns": 0, "verified_at": None, "state": "released", "detector": "everything"}
        for i in range(60_000)
    ]  # fmt: skip
    doc = {"schema": "acqd-manifest/1", "instrument": "scope", "session": "old", "watch_root": str(tmp_path / "acq")}
    o = Oracle(tmp_path / "acq")
    stop = threading.Event()

    def camera() -> None:
        i = 0
        while not stop.is_set():
            o.write(f"live/L{i:04d}.raw", os.urandom(2000))
            i += 1
            time.sleep(0.05)

    d = Background("run", "--config", str(a))
    writer = threading.Thread(target=camera)
    try:
        o.write("live/first.raw", b"first")
        wait_for(lambda: journal_states(tmp_path / "state-a").get("live/first.raw") == "released", what="a running")
        old.mkdir()
        (old / "~acqd-manifest.json").write_text(json.dumps({**doc, "files": entries}))  # a's own, earlier
        writer.start()
        r = run_acqd("adopt", "--config", str(c), timeout=300)
        assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        d.terminate()
    released_by_a = {rel for rel, st, _, _ in journal_rows(tmp_path / "state-a") if st == "released"}
    known_to_c = {rel for rel, _, _, _ in journal_rows(tmp_path / "state-c")}
    assert len(o.written) > 10  # the camera wrote all through the adopt
    assert released_by_a <= known_to_c, sorted(released_by_a - known_to_c)
    once(c)
    o.check(tmp_path / "central")


def test_an_adopt_stopped_half_way_leaves_nothing_to_run_until_one_finishes(tmp_path: Path) -> None:
    """Adopt writes its claim first, then imports. Stopped in between (SIGTERM, a crash, a tier
    error), the prefix was claimed by a journal that had imported nothing, and the next `run` wrote
    the session manifests again without the released files' copies: in no record any more (a review).
    Such a journal is refused until an adopt finishes; a tier renamed in the new configuration does
    not make adopt import nothing (it claimed the prefix all the same)."""
    import signal
    import subprocess

    from tests.conftest import acqd_cmd

    a = site(tmp_path, "a")
    o = Oracle(tmp_path / "acq")
    for i in range(3):
        o.write(f"s/f{i}.raw", os.urandom(3000 + i))
    once(a)  # shipped and released by journal a
    manifest = tmp_path / "central" / "scope" / "s" / "~acqd-manifest.json"
    assert len(json.loads(manifest.read_text())["files"]) == 3
    c = write_config(tmp_path / "c.yaml", a.read_text().replace("state-a", "state-c").replace("central:", "nas:"))
    p = subprocess.Popen(acqd_cmd("adopt", "--config", str(c)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (tmp_path / "central" / "scope" / "~acqd-claim.json").exists() and "state-c" in (
        tmp_path / "central" / "scope" / "~acqd-claim.json").read_text(), what="adopt's claim")  # fmt: skip
    p.send_signal(signal.SIGTERM)  # in its grace, before the import
    p.wait(timeout=60)
    o.write("s/late.raw", b"written after the takeover")
    err = once(c, code=78)
    assert "did not finish" in err and "acqd adopt" in err, err
    assert len(json.loads(manifest.read_text())["files"]) == 3  # not written again without them
    r = run_acqd("check", "--config", str(c))
    assert r.returncode != 0 and "did not finish" in r.stdout + r.stderr, r.stdout + r.stderr
    r = run_acqd("adopt", "--config", str(c))
    assert r.returncode == 0 and "adopted 3 stored file(s)" in r.stdout, r.stdout + r.stderr  # on tier nas
    once(c)
    assert {e["source"] for e in json.loads(manifest.read_text())["files"]} == {f"s/f{i}.raw" for i in range(3)} | {
        "s/late.raw"
    }
    o.check(tmp_path / "central")


def test_a_journal_lost_while_running_stops_shipping(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    state = tmp_path / "state-a"
    o = Oracle(tmp_path / "acq")
    o.write("s/f.raw", b"first")
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: journal_states(state).get("s/f.raw") == "released", what="the first file to be released")
        manifest = tmp_path / "central" / "scope" / "s" / "~acqd-manifest.json"

        def lists_it_released() -> bool:  # the manifest (what `--adopt` imports), rewritten after the release
            return manifest.exists() and '"state": "released"' in manifest.read_text()

        wait_for(lists_it_released, what="its session manifest to list the release")  # written every 2 s
        for p in state.glob("journal.sqlite*"):
            p.unlink()
        d.proc.wait(timeout=60)
        assert d.proc.returncode == 78
        assert "journal" in d.stderr() and "deleted" in d.stderr()
        assert "halted (journal)" in d.stderr()
    finally:
        d.kill()
    o.write("s/f.raw", b"second: with a fresh journal this was shipped as version 1 over the first")
    err = once(cfg, code=78)  # a fresh journal facing the claimed destination refuses
    assert "claimed by" in err and "acqd adopt" in err
    assert (tmp_path / "acq" / "s" / "f.raw").exists()
    once(cfg, "--adopt")  # imports the manifests: the changed file becomes version 2
    assert [row[1:4:2] for row in journal_rows(state)] == [("released", 1), ("released", 2)]
    o.check(tmp_path / "central")


def _copy_state(src: Path, dst: Path) -> None:
    """A state folder copied the way a backup tool or `cp -a` would (the journal consistent)."""
    dst.mkdir(parents=True)
    db = sqlite3.connect(src / "journal.sqlite")
    out = sqlite3.connect(dst / "journal.sqlite")
    try:
        db.backup(out)
    finally:
        out.close()
        db.close()


def _manifest_sources(central: Path) -> set[str]:
    doc = json.loads((central / "scope" / "s" / "~acqd-manifest.json").read_text())
    return {e["source"] for e in doc["files"]}


def _adopt_then_all_released(cfg: Path, state: Path, o: Oracle, central: Path) -> None:
    """`acqd adopt` imports b (shipped after the backup), and the next run releases a, b and c."""
    r = run_acqd("adopt", "--config", str(cfg))
    assert r.returncode == 0 and "adopted 1 stored file" in r.stdout, r.stdout + r.stderr
    once(cfg)
    assert journal_states(state) == {"s/a.raw": "released", "s/b.raw": "released", "s/c.raw": "released"}
    assert _manifest_sources(central) == {"s/a.raw", "s/b.raw", "s/c.raw"}
    o.check(central)


def test_a_journal_restored_from_a_backup_is_refused_until_adopt(tmp_path: Path) -> None:
    """A journal restored from last night's backup does not know the files shipped since; run, it
    would rewrite their sessions' manifests without them. The destination's claim counts the
    journal's runs: a run this journal has not counted refuses it, however often it is started,
    and `acqd adopt` brings the newer manifests' files in."""
    cfg = site(tmp_path)
    state = tmp_path / "state-a"
    o = Oracle(tmp_path / "acq")
    o.write("s/a.raw", b"shipped before the backup")
    once(cfg)
    _copy_state(state, tmp_path / "backup")
    o.write("s/b.raw", b"shipped after the backup")
    once(cfg)
    assert _manifest_sources(tmp_path / "central") == {"s/a.raw", "s/b.raw"}
    shutil.rmtree(state)
    shutil.copytree(tmp_path / "backup", state)  # the operator restores the backup
    o.write("s/c.raw", b"written after the restore")
    for _ in range(2):  # refused, and still refused: a refused start does not count a run
        err = once(cfg, code=78)
        assert "restored from a backup" in err and "acqd adopt" in err, err
    r = run_acqd("check", "--config", str(cfg))
    assert r.returncode == 78 and "restored from a backup" in r.stderr, r.stdout + r.stderr
    assert _manifest_sources(tmp_path / "central") == {"s/a.raw", "s/b.raw"}  # not rewritten
    assert (tmp_path / "acq" / "s" / "c.raw").exists()
    _adopt_then_all_released(cfg, state, o, tmp_path / "central")


@pytest.mark.parametrize("b_in_backup", [False, True])
def test_a_journal_restored_from_a_backup_with_the_claim_deleted_writes_no_manifest_without_newer_files(
    tmp_path: Path, b_in_backup: bool
) -> None:
    """The claim was the only guard against a journal restored from a backup (an adversarial review:
    with `~acqd-claim.json` deleted, the old journal started, claimed afresh and wrote its sessions'
    manifests without the files shipped since). A manifest that lists files of this watch root the
    journal has no record of stops the daemon before it is written again (exit 78, said why), and
    `acqd adopt` brings them in, also a file the backup knew only as seen (backed up while it was
    being written: adopt skipped it, and the daemon stopped again at every start)."""
    cfg = site(tmp_path)
    state = tmp_path / "state-a"
    o = Oracle(tmp_path / "acq")
    o.write("s/a.raw", b"shipped before the backup")
    once(cfg)
    if b_in_backup:  # the backup is taken while b settles (a long settle window): its row is `seen`
        slow = write_config(tmp_path / "slow.yaml", cfg.read_text().replace("settle: 0.3s", "settle: 60s"))
        d = Background("run", "--config", str(slow))
        try:
            o.write("s/b.raw", b"shipped after the backup")
            wait_for(lambda: journal_states(state).get("s/b.raw") == "seen", 30, "b seen", d, state)
            _copy_state(state, tmp_path / "backup")
        finally:
            code, err = d.terminate()
        assert code == 0, err
    else:
        _copy_state(state, tmp_path / "backup")
        o.write("s/b.raw", b"shipped after the backup")
    once(cfg)
    shutil.rmtree(state)
    shutil.copytree(tmp_path / "backup", state)  # the operator restores the backup
    (tmp_path / "central" / "scope" / "~acqd-claim.json").unlink()  # and clears the "stale" claim
    o.write("s/c.raw", b"written after the restore")
    err = once(cfg, code=78)
    assert "lists 1 stored file(s) of watch root" in err and "'s/b.raw'" in err and "acqd adopt" in err, err
    assert _manifest_sources(tmp_path / "central") == {"s/a.raw", "s/b.raw"}  # not rewritten without b
    _adopt_then_all_released(cfg, state, o, tmp_path / "central")


def test_a_copy_of_a_running_daemons_state_folder_never_writes_beside_it(tmp_path: Path) -> None:
    """The same state folder copied to a second PC (same machine id, a cloned image): whichever run
    claimed last owns the destination; the other stops writing there at its next commit, and an
    older copy started later is refused."""
    cfg = site(tmp_path)
    state = tmp_path / "state-a"
    o = Oracle(tmp_path / "acq")
    o.write("s/a.raw", b"first")
    once(cfg)
    _copy_state(state, tmp_path / "old-copy")  # a copy taken before the daemon's next start
    d = Background("run", "--config", str(cfg))
    try:
        o.write("s/b.raw", b"second")
        wait_for(lambda: journal_states(state).get("s/b.raw") == "released", what="the running daemon to ship")
        old = write_config(tmp_path / "old.yaml", cfg.read_text().replace(str(state), str(tmp_path / "old-copy")))
        # the copy's runs are on another PC sharing the folders (on this one, the watch root is held)
        err = once(old, code=78, other_pc=True)  # a later run claimed since: refused at its start, nothing written
        assert "does not know" in err
        _copy_state(state, tmp_path / "state-b")  # the running daemon's state folder, copied (a cloned VM)
        copy = write_config(tmp_path / "b.yaml", cfg.read_text().replace(str(state), str(tmp_path / "state-b")))
        once(copy, other_pc=True)  # the copy's run is later: it takes the claim (nothing new to ship)
        time.sleep(claims.CHECK_EVERY + 0.5)  # a commit trusts a look at the claim at most this old
        o.write("s/c.raw", b"third: the first daemon must not commit it any more")
        d.proc.wait(timeout=60)
        assert d.proc.returncode == 78 and "another run of this journal" in d.stderr(), d.stderr()
    finally:
        d.kill()
    assert journal_states(state).get("s/c.raw") != "released"
    err = once(cfg, code=78)  # and the first, started again, is the stale one now
    assert "does not know" in err
    o.check(tmp_path / "central")


def test_a_journal_replaced_while_running_stops_shipping(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    state = tmp_path / "state-a"
    o = Oracle(tmp_path / "acq")
    o.write("s/f.raw", b"first")
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: journal_states(state).get("s/f.raw") == "released", what="the first file to be released")
        shutil.copy(state / "journal.sqlite", state / "copy")
        os.replace(state / "copy", state / "journal.sqlite")  # e.g. restored from a backup
        d.proc.wait(timeout=60)
        assert d.proc.returncode == 78 and "replaced" in d.stderr()
    finally:
        d.kill()
    o.check(tmp_path / "central")


@pytest.mark.slow
def test_s3_versions_and_foreign_objects(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    s3 = request.getfixturevalue("s3_server")
    bucket = s3.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    opts = ", ".join(f"{k}: {v}" for k, v in s3.options().items())
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "everything.yaml").write_text(EVERYTHING)
    cfg = write_config(
        tmp_path / "s3.yaml",
        f"""
instrument: scope
state_dir: {tmp_path / "state"}
detectors_dir: {tmp_path / "profiles"}
watch:
  - {{path: {tmp_path / "acq"}, detector: everything, settle: 0.3s, placement: {{release_local: after_verify}}}}
tiers:
  central: {{url: "s3://{bucket}/facility", options: {{{opts}}}}}
limits: {{retry_initial: 50ms, retry_max: 200ms}}
""",
    )
    c = s3.client()
    o = Oracle(tmp_path / "acq")
    o.write("s/a.dat", b"a, version 1")
    o.write("s/a.v2.dat", b"a real a.v2.dat")
    once(cfg)
    o.write("s/a.dat", b"a, version 2")
    o.write("s/g.raw", b"acqd's g.raw")
    c.put_object(Bucket=bucket, Key="facility/scope/s/g.raw", Body=b"a foreign object")
    err = once(cfg, code=1)
    assert "in the way" in err
    keys = {
        o_["Key"].removeprefix("facility/scope/"): c.get_object(Bucket=bucket, Key=o_["Key"])["Body"].read()
        for o_ in c.list_objects_v2(Bucket=bucket, Prefix="facility/").get("Contents", [])
    }
    assert keys["s/a.dat"] == b"a, version 1" and keys["s/a~v2.dat"] == b"a, version 2"
    assert keys["s/a.v2.dat"] == b"a real a.v2.dat" and keys["s/g.raw"] == b"a foreign object"
    assert (tmp_path / "acq" / "s" / "g.raw").read_bytes() == b"acqd's g.raw"
    # a key and a folder of keys under one name: S3 itself would take both, a filer-backed server
    # (SeaweedFS here, MinIO) does not ("object not found", retried for ever): a conflict on every tier
    (tmp_path / "acq" / "s" / "g.raw").unlink()  # in the way of a foreign object: let go
    o.write("s/t/u", b"in a folder t")
    once(cfg)
    os.rmdir(tmp_path / "acq" / "s" / "t")  # its file released
    o.write("s/t", b"t is a file now")
    err = once(cfg, code=1)
    assert "is a folder of stored copies ('s/t/u' among them" in err and "object not found" not in err, err
    assert (tmp_path / "acq" / "s" / "t").read_bytes() == b"t is a file now"


async def test_a_transition_never_replaces_an_object_in_the_way(tmp_path: Path) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from acqd.daemon import journal_path
    from acqd.journal import Journal
    from tests import test_retention as tr

    gen = tr.setup.__wrapped__(tmp_path)  # type: ignore[attr-defined]
    s = await gen.__anext__()
    try:
        mine = s.central / "alice_apoferritin_0101/FoilHole_1_fractions.mrc"
        theirs = s.capacity / "alice_apoferritin_0101/FoilHole_2_fractions.mrc"
        theirs.parent.mkdir(parents=True)
        theirs.write_bytes(b"somebody else's file on the capacity tier")
        crashed = s.capacity / "alice_apoferritin_0101/FoilHole_1_fractions.mrc"
        crashed.write_bytes(mine.read_bytes())  # a transition that crashed before it was recorded
        original = mine.read_bytes()
        jexec, io = ThreadPoolExecutor(1), ThreadPoolExecutor(2)
        loop = asyncio.get_running_loop()
        j = await loop.run_in_executor(jexec, Journal, journal_path(s.cfg.state_dir))
        try:
            res = await tr.sweep_days(s, range(14, 15), tr.make_runner(s, j, jexec, io))
        finally:
            await loop.run_in_executor(jexec, j.close)
            jexec.shutdown()
            io.shutdown()
        assert res[14].failed == 1
        assert theirs.read_bytes() == b"somebody else's file on the capacity tier"  # never replaced
        assert (s.central / "alice_apoferritin_0101/FoilHole_2_fractions.mrc").exists()  # the old copy stays
        assert crashed.read_bytes() == original and not mine.exists()  # verified as this copy: taken
    finally:
        await gen.aclose()


@pytest.mark.slow
def test_s3_zarr_store_cut_short_by_a_crash_is_written_again(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """On S3 a Zarr store is published object by object: a crash part way leaves a prefix without its
    root. The journal recorded, before publishing, whose name it is: the next run removes exactly that
    partial copy and writes it whole (a foreign object would have been left alone)."""
    import numpy as np
    import tifffile

    s3 = request.getfixturevalue("s3_server")
    bucket = s3.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    opts = ", ".join(f"{k}: {v}" for k, v in s3.options().items())
    cfg = write_config(
        tmp_path / "s3.yaml",
        f"""
instrument: scope
state_dir: {tmp_path / "state"}
watch:
  - {{path: {tmp_path / "acq"}, detector: hamamatsu-orca, settle: 0.3s}}
tiers:
  central: {{url: "s3://{bucket}/facility", options: {{{opts}}}}}
limits: {{retry_initial: 50ms, retry_max: 200ms}}
""",
    )
    data = np.random.default_rng(1).integers(0, 4000, (6, 64, 64), dtype=np.uint16)
    (tmp_path / "acq" / "s").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "acq" / "s" / "stack.tif", data, photometric="minisblack")
    r = run_acqd("run", "--config", str(cfg), "--once", env=dict(os.environ, ACQD_CRASH_AT="during_commit"))
    assert r.returncode != 0
    c = s3.client()
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=bucket, Prefix="facility/scope/s/stack.tif~.zarr/")["Contents"]]
    assert keys and "facility/scope/s/stack.tif~.zarr/zarr.json" not in keys  # partial, no root
    r = run_acqd("run", "--config", str(cfg), "--once", "--retry-for", "60s", timeout=300)
    assert r.returncode == 0, r.stderr
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite")
    assert db.execute("SELECT COUNT(*) FROM audit WHERE action = 'partial-removed'").fetchone()[0] == 1
    assert journal_states(tmp_path / "state") == {"s/stack.tif": "verified"}
    r = run_acqd("verify", "--config", str(cfg))  # decodes the store and compares the pixels' checksum
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_claim_temporary_left_by_a_crash_is_not_data(tmp_path: Path) -> None:
    """A crash while the very first claim was written leaves its hidden temporary under the prefix;
    the next start must not take it for "data this journal does not know" and refuse."""
    cfg = site(tmp_path)
    (tmp_path / "central" / "scope").mkdir(parents=True)
    (tmp_path / "central" / "scope" / naming.temp_name("~acqd-claim.json")).write_bytes(b'{"half": ')
    o = Oracle(tmp_path / "acq")
    o.write("s/f.raw", b"the first file of a new instrument")
    once(cfg)
    assert journal_states(tmp_path / "state-a") == {"s/f.raw": "released"}
    assert not any(naming.is_temp(p.name) for p in (tmp_path / "central").rglob("*"))
    o.check(tmp_path / "central")


def test_ship_workers_claiming_at_once_claim_once(tmp_path: Path) -> None:
    """A tier claimed late (it failed at start) is claimed by the first ship worker that gets there;
    workers arriving meanwhile wait for it instead of seeing its claim half-written (which used to
    halt the daemon: "already holds data this journal does not know")."""
    tier = open_tier("central", f"file://{tmp_path / 'central'}", {})
    journal = Journal(tmp_path / "journal.sqlite")
    guard = claims.Guard(claims.ours("scope", journal, tmp_path), journal, {"central": False})
    writes = []
    real = tier.write_atomic

    def slow_write(rel: str, chunks: Any, **kw: Any) -> Any:
        writes.append(rel)
        time.sleep(0.3)  # the claim's temporary sits there for a while
        return real(rel, chunks, **kw)

    tier.write_atomic = slow_write  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(guard, tier) for _ in range(4)]:
                f.result()
    finally:
        journal.close()
    assert writes == ["scope/~acqd-claim.json"]
    assert claims.read_claim(tier, "scope") is not None


def test_a_tier_that_hangs_never_holds_up_the_claim_checks_of_the_others(tmp_path: Path) -> None:
    """Retention looks at its tiers' claims through the daemon's guard too (a cold tier on a hard
    NFS mount whose server is down hangs in the look). With one lock for all tiers, every ship
    worker's check of the central tier waited behind it, and shipping stopped with the acquisition
    disk filling (found by a review). The guard serialises the looks per tier."""
    import threading

    hot = open_tier("central", f"file://{tmp_path / 'central'}", {})
    cold = open_tier("cold", f"file://{tmp_path / 'cold'}", {})
    journal = Journal(tmp_path / "journal.sqlite")
    guard = claims.Guard(claims.ours("scope", journal, tmp_path), journal, {"central": False, "cold": False})
    hung, entered = threading.Event(), threading.Event()
    real = cold.size

    def hangs(rel: str) -> int | None:
        entered.set()
        hung.wait(60)
        return real(rel)

    cold.size = hangs  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(guard, cold, True)
            assert entered.wait(30), "the cold tier's look never started"
            ok = pool.submit(guard, hot, True)
            try:
                ok.result(timeout=30)  # done while the cold tier's look still hangs
                assert not stuck.done()
            finally:
                hung.set()
            stuck.result(timeout=30)
    finally:
        journal.close()
    assert claims.read_claim(hot, "scope") is not None and claims.read_claim(cold, "scope") is not None


ONLY_MRC = """apiVersion: acqd/v1
kind: DetectorProfile
name: only-mrc
description: MRC files only, everything else left alone
files: ["*.mrc"]
other_files: ignore
reader: bytes
layout: copy
settle: {window: 0.2s}
"""


def test_other_files_ignore_leaves_the_other_files_and_never_the_folders(tmp_path: Path) -> None:
    """`other_files: ignore` is a rule about files: the profile's files in session folders (found by
    the start's scan and by the watch) ship, the others stay untouched and unshipped."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "only-mrc.yaml").write_text(ONLY_MRC)
    cfg = site(tmp_path, detector="only-mrc")
    acq = tmp_path / "acq"
    (acq / "sess" / "grid1").mkdir(parents=True)
    (acq / "sess" / "grid1" / "a.mrc").write_bytes(b"a" * 3000)
    (acq / "sess" / "notes.txt").write_text("not shipped")
    (acq / "top.mrc").write_bytes(b"t" * 100)
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: len(journal_states(tmp_path / "state-a")) == 2, 60, "the scan's two MRC files", d)
        (acq / "sess" / "grid2").mkdir()  # made while acqd watches
        (acq / "sess" / "grid2" / "b.xml").write_text("<not shipped/>")  # before the MRC file: seen first
        (acq / "sess" / "grid2" / "b.mrc").write_bytes(b"b" * 2000)
        done = ["released"] * 3
        wait_for(lambda: list(journal_states(tmp_path / "state-a").values()) == done, 60, "the MRC files shipped", d)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert sorted(journal_states(tmp_path / "state-a")) == ["sess/grid1/a.mrc", "sess/grid2/b.mrc", "top.mrc"]
    stored = tree(tmp_path / "central" / "scope")
    assert sorted(k for k in stored if "acqd-manifest" not in k) == ["sess/grid1/a.mrc", "sess/grid2/b.mrc", "top.mrc"]
    assert (acq / "sess" / "notes.txt").read_text() == "not shipped" and (acq / "sess" / "grid2" / "b.xml").exists()


def test_a_release_hidden_name_gives_back_the_inode_it_was_made_for() -> None:
    from acqd.naming import aside_inode, release_aside

    assert aside_inode(release_aside(2229601)) == 2229601
    for other in (".~acqd-release.", ".~acqd-release.12x", ".~acqd-release.-3", ".~acqd-release.١٢", "a.raw", "12"):
        assert aside_inode(other) is None, other


def test_adopt_never_releases_a_file_rewritten_since_its_copy_on_the_strength_of_size_and_mtime(
    tmp_path: Path,
) -> None:
    """A manifest records a source's size and mtime, not its ctime or inode. A file rewritten in
    place keeping both (`cp --preserve=timestamps`, `touch -r`; the journal catches it by its ctime)
    was taken by `acqd adopt` for the shipped file and released: the new content, never shipped, was
    deleted (found by an adversarial review, eighth session). Adopt now compares the bytes' checksum;
    the rewritten file is shipped as a new version, and the untouched one is still taken as shipped."""
    cfg = site(tmp_path)
    keep = cfg.read_text()
    assert "release_local: after_verify, " in keep
    cfg.write_text(keep.replace("release_local: after_verify, ", ""))  # files kept on the PC
    state = tmp_path / "state-a"
    src = tmp_path / "acq" / "s" / "a.raw"
    o = Oracle(tmp_path / "acq")
    o.write("s/a.raw", b"AAAA first acquisition")
    o.write("s/same.raw", b"untouched since it was shipped")
    once(cfg)
    st = src.stat()
    for p in state.glob("journal.sqlite*"):
        p.unlink()  # the journal is lost
    o.write("s/a.raw", b"BBBB new acquisition!!")  # same size, in place (same inode) ...
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and its mtime kept
    cfg.write_text(keep)  # releases on, as the facility's standard config has them
    r = run_acqd("adopt", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    once(cfg)
    o.check(tmp_path / "central")  # "BBBB new acquisition!!" is on the tier or still on the PC
    rows = {(row[0], row[3]): row[1] for row in journal_rows(state)}
    assert rows[("s/a.raw", 2)] == "released", rows  # shipped as a new version, then released
    assert ("s/same.raw", 2) not in rows and rows[("s/same.raw", 1)] == "released", rows  # taken as shipped


def test_a_copy_adopted_from_a_manifest_is_read_back_before_its_first_release(tmp_path: Path) -> None:
    """`acqd adopt` knows a copy from its manifest and reads none back. A copy the NAS damaged before
    the takeover, its size kept, passed the release's quick check (no stamp, no tier checksum on a
    folder): the source was deleted and the damaged copy was all that was left (adversarial review,
    sixteenth session). It is read back once now: found damaged, shipped again, then released."""
    cfg = site(tmp_path)
    keep = cfg.read_text()
    cfg.write_text(keep.replace("release_local: after_verify, ", ""))  # files kept on the PC
    state = tmp_path / "state-a"
    o = Oracle(tmp_path / "acq")
    first = os.urandom(50_000)
    o.write("s/a.raw", first)
    o.write("s/b.raw", os.urandom(50_000))
    once(cfg)
    bad = tmp_path / "central" / "scope" / "s" / "a.raw"
    with open(bad, "r+b") as f:  # bit rot on the NAS: four bytes, the size kept
        f.seek(20_000)
        f.write(b"\0\0\0\0")
    for p in state.glob("journal.sqlite*"):
        p.unlink()  # the journal is lost
    cfg.write_text(keep)  # releases on
    r = run_acqd("adopt", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    once(cfg)
    o.check(tmp_path / "central")  # every byte on the tier or still on the PC
    rows = {(rel, st) for rel, st, _, _ in journal_rows(state)}
    assert ("s/a.raw", "released") in rows and ("s/b.raw", "released") in rows, rows
    stored = [p.read_bytes() for p in (tmp_path / "central" / "scope" / "s").iterdir() if p.name.startswith("a")]
    assert first in stored, "the source was released with only its damaged copy left"
    j = Journal(state / "journal.sqlite", readonly=True)
    try:
        lost = [d for _, _, a, d in j.audit_log() if a == "copy-lost"]
    finally:
        j.close()
    assert lost and "does not verify" in lost[0]["reason"], lost


@pytest.mark.parametrize("below", [False, True], ids=["tier-is-the-mount-point", "tier-below-the-mount-point"])
def test_a_share_unmounted_under_a_running_daemon_is_never_written_to_the_local_disk(
    tmp_path: Path, below: bool
) -> None:
    """The share the tier is on goes away under a running daemon (unmounted; its mount point is an
    empty folder on the local disk). acqd claimed its prefix again there (or made the tier's folder)
    and shipped and released onto the local disk: the copies hidden once the share mounts over them
    (found by a review of observability). Now the file waits, saying why, also across a restart,
    and ships once the share is back."""
    mnt = tmp_path / "mnt"
    root = mnt / "acqd" if below else mnt
    root.mkdir(parents=True)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "everything.yaml").write_text(EVERYTHING)
    cfg = write_config(
        tmp_path / "acqd.yaml",
        f"""
instrument: scope
state_dir: {tmp_path / "state"}
detectors_dir: {tmp_path / "profiles"}
watch:
  - {{path: {tmp_path / "acq"}, detector: everything, settle: 0.3s, placement: {{release_local: after_verify}}}}
tiers:
  central: {{url: "file://{root}"}}
limits: {{retry_initial: 50ms, retry_max: 200ms}}
""",
    )
    o = Oracle(tmp_path / "acq")
    o.write("s/a.raw", b"shipped while mounted")
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: journal_states(tmp_path / "state").get("s/a.raw") == "released", what="a to be released")
        mnt.rename(tmp_path / "share")  # unmounted: the share's content is elsewhere, the mount point empty
        mnt.mkdir()
        time.sleep(2.5)  # past the claim's 2 s check
        o.write("s/b.raw", b"written while the share is away")
        wait_for(lambda: "has gone" in d.stderr() or "does not exist" in d.stderr(), what="the daemon to say why")
        time.sleep(1)
        assert list(mnt.iterdir()) == [], f"acqd wrote onto the local disk: {tree(mnt)}\n{d.stderr()[-3000:]}"
        assert journal_states(tmp_path / "state").get("s/b.raw") != "released"
    finally:
        d.terminate()
    err = once(cfg, code=1)  # a restart while it is away: still waits
    assert "not mounted" in err or "does not exist" in err, err
    r = run_acqd("check", "--config", str(cfg))  # says so too, and its write probe writes nothing there
    assert r.returncode == 0 and ("not mounted" in r.stderr or "does not exist" in r.stderr), r.stdout + r.stderr
    assert run_acqd("check", "--config", str(cfg), "--strict").returncode == 1
    assert list(mnt.iterdir()) == [] and (tmp_path / "acq" / "s" / "b.raw").exists()
    mnt.rmdir()
    (tmp_path / "share").rename(mnt)  # mounted again
    once(cfg)
    assert journal_states(tmp_path / "state") == {"s/a.raw": "released", "s/b.raw": "released"}
    assert (root / "scope" / "s" / "b.raw").read_bytes() == b"written while the share is away"


def test_a_run_given_another_dest_by_mistake_leaves_the_journal_knowing_where_its_copies_are(tmp_path: Path) -> None:
    """Found by a stranger's first try (twenty-eighth session): a second quick-form run on the same
    journal with another `--dest` (a typo, another folder) waited for it, rightly (it holds nothing of
    the journal's copies), but recorded it as where the tier is: `status` named it, `restore` without
    `--dest` failed, `verify` called every copy missing. The tier's place is recorded only once it is
    claimed."""
    (tmp_path / "acq" / "s").mkdir(parents=True)
    (tmp_path / "other" / "s").mkdir(parents=True)
    data = os.urandom(50_000)
    (tmp_path / "acq" / "s" / "a.bin").write_bytes(data)
    (tmp_path / "other" / "s" / "b.bin").write_bytes(os.urandom(50_000))
    state, central, wrong = tmp_path / "state", tmp_path / "central", tmp_path / "centrl"
    r = run_acqd("run", "--once", "--watch", str(tmp_path / "acq"), "--dest", str(central), "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    r = run_acqd(
        "run", "--once", "--watch", str(tmp_path / "other"), "--dest", str(wrong), "--state-dir", str(state),
        "--retry-for", "3s",
    )  # fmt: skip
    assert r.returncode != 0 and "holds nothing" in r.stderr, r.stderr
    r = run_acqd("status", "--state-dir", str(state))
    assert f"tier central (file://{central})" in r.stdout, r.stdout
    out = tmp_path / "restored.bin"
    r = run_acqd("restore", "s/a.bin", str(out), "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data
    r = run_acqd("verify", "--state-dir", str(state))
    assert r.returncode == 0 and "missing" not in r.stdout, r.stdout + r.stderr


def test_adopt_given_another_dest_by_mistake_is_refused_and_a_moved_tier_is_adopted(tmp_path: Path) -> None:
    """A stranger's first try (twenty-eighth session): `acqd adopt` on a journal with copies, given a
    `--dest` that is not where they are (a typo), claimed that folder, imported nothing and recorded
    it as the tier's place: `verify` then called every copy missing and `restore` found none. Refused
    now (exit 78), nothing claimed or recorded. The copies moved there with their manifests (a share
    mounted at a new path) are adopted, and the journal then knows the new place."""
    acq = tmp_path / "acq"
    (acq / "s").mkdir(parents=True)
    data = os.urandom(50_000)
    (acq / "s" / "a.bin").write_bytes(data)
    state, central, wrong = tmp_path / "state", tmp_path / "central", tmp_path / "centrl"
    r = run_acqd("run", "--once", "--watch", str(acq), "--dest", str(central), "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    wrong.mkdir()
    r = run_acqd("adopt", "--watch", str(acq), "--dest", str(wrong), "--state-dir", str(state))
    assert r.returncode == 78 and "holds no manifest" in r.stderr and str(central) in r.stderr, r.stderr
    assert not list(wrong.iterdir()), "claimed all the same"
    # `run --adopt` adopts the same way (a review: it claimed the mistyped place and recorded it)
    r = run_acqd("run", "--once", "--adopt", "--watch", str(acq), "--dest", str(wrong), "--state-dir", str(state))
    assert r.returncode == 78 and "holds no manifest" in r.stderr, r.stderr
    assert not list(wrong.iterdir()), "claimed all the same by run --adopt"
    r = run_acqd("status", "--state-dir", str(state))
    assert f"tier central (file://{central})" in r.stdout, r.stdout
    r = run_acqd("verify", "--state-dir", str(state))
    assert r.returncode == 0 and "missing" not in r.stdout, r.stdout + r.stderr
    moved = tmp_path / "mnt" / "central"
    moved.parent.mkdir()
    central.rename(moved)  # the share, mounted at a new path
    r = run_acqd("adopt", "--watch", str(acq), "--dest", str(moved), "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    r = run_acqd("status", "--state-dir", str(state))
    assert f"tier central (file://{moved})" in r.stdout, r.stdout
    out = tmp_path / "restored.bin"
    r = run_acqd("restore", "s/a.bin", str(out), "--state-dir", str(state))
    assert r.returncode == 0 and out.read_bytes() == data, r.stderr


def _newer_run(journal: Journal, state: Path, epoch: int) -> claims.Claim:
    """The claim a run of this same journal made that this copy of it never made (the journal in use
    ran on; ours is a backup of it)."""
    import dataclasses

    c = claims.ours("scope", journal, state)
    return dataclasses.replace(c, epoch=epoch, run="the-newer-run", since="2030-01-01T00:00:00Z")


def _start(j: Journal, tiers: dict[str, Any], known: dict[str, bool]) -> tuple[list[str], dict[str, bool]]:
    """What a daemon's start does with its claims (acqd.daemon)."""
    c = claims.ours("scope", j, j.path.parent)
    return claims.establish(tiers, c, known, lambda: j.count_run(c.run, c.epoch), j.runs())


def test_a_stale_journal_started_while_its_tier_is_down_stays_refused(tmp_path: Path) -> None:
    """Found by a review of this change: a stale journal counted a run at every start, also while its
    tier could not be looked at; after as many starts as the journal in use had made runs, its count
    passed the claim's and it took the prefix over. A claim is now refused when it names a run the
    journal never made, whatever the counts."""
    from acqd.storage.errors import DestinationError

    (tmp_path / "state").mkdir()
    j = Journal(tmp_path / "state" / "journal.sqlite")
    tier = open_tier("central", f"file://{tmp_path / 'central'}")
    (tmp_path / "central" / "scope").mkdir(parents=True)
    (tmp_path / "central" / "scope" / "f.raw").write_bytes(b"a copy")
    claims.write_claim(tier, _newer_run(j, tmp_path / "state", epoch=3), replace=False)

    def down(*_a: Any, **_k: Any) -> Any:
        raise DestinationError("tier central: not reachable")

    try:
        with pytest.raises(ClaimError, match="never made"):
            _start(j, {"central": tier}, {"central": True})
        for _ in range(5):  # a NAS mounted late, an S3 outage: the tier cannot be looked at
            away = open_tier("central", f"file://{tmp_path / 'central'}")
            away.size = down  # type: ignore[method-assign]
            away.has_objects = down  # type: ignore[method-assign]
            _notes, later = _start(j, {"central": away}, {"central": True})
            assert "central" in later
        with pytest.raises(ClaimError, match="never made"):  # back: still refused
            _start(j, {"central": tier}, {"central": True})
        guard = claims.Guard(claims.ours("scope", j, tmp_path / "state"), j, {"central": True}, runs=j.runs())
        with pytest.raises(ClaimError, match="never made"):  # nor does the guard take it later
            guard(tier)
    finally:
        j.close()


def test_a_failed_adopt_leaves_the_tiers_it_did_not_adopt_refused(tmp_path: Path) -> None:
    """Found by the same review: adopt counted a run past every claim before it imported anything;
    failing on the second tier, it let the next plain run take that tier, its manifests never
    imported. A run adopt made is recorded, but the second tier's claim still names a run this
    journal never made."""
    from acqd.storage.errors import DestinationError

    (tmp_path / "state").mkdir()
    j = Journal(tmp_path / "state" / "journal.sqlite")
    tiers = {t: open_tier(t, f"file://{tmp_path / t}") for t in ("a", "b")}
    for t in tiers:
        (tmp_path / t / "scope" / "s").mkdir(parents=True)
        (tmp_path / t / "scope" / "s" / "~acqd-manifest.json").write_text(
            json.dumps({"instrument": "scope", "watch_root": "/nowhere", "files": []})
        )
        claims.write_claim(tiers[t], _newer_run(j, tmp_path / "state", epoch=5), replace=False)

    def failing_find(*_a: Any, **_k: Any) -> Any:
        raise DestinationError("tier b: listing failed")

    flaky = open_tier("b", f"file://{tmp_path / 'b'}")
    flaky.find = failing_find  # type: ignore[method-assign]
    try:
        with pytest.raises(DestinationError):
            claims.adopt(
                {"a": tiers["a"], "b": flaky}, claims.ours("scope", j, tmp_path / "state"), j, {}, lambda p: None
            )
        with pytest.raises(ClaimError, match="never made"):
            _start(j, tiers, {"a": True, "b": True})
    finally:
        j.close()


def test_a_renamed_instrument_is_named_as_the_cause_and_refused(tmp_path: Path) -> None:
    """`instrument:` changed in acqd.yaml: the tier held nothing under the new prefix, and acqd said
    'a network share not mounted? ... if emptied on purpose, run acqd adopt'; following that hint
    released files whose copies no manifest of the new name records (an adversarial review). The
    journal's own claim under the old prefix names the cause; `check` and `run` refuse (exit 78)."""
    acq, central, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    (acq / "s1").mkdir(parents=True)
    (acq / "s1" / "a.dat").write_bytes(b"a" * 20000)

    def named(instrument: str) -> Path:
        watch = f"path: {acq}, settle: 0.2s"
        return acqd_yaml(tmp_path / "acqd.yaml", state=state, watch=watch, tiers=central, instrument=instrument)

    cfg = named("krios")
    assert run_acqd("run", "--once", "--config", str(cfg)).returncode == 0
    named("krios-1")
    for cmd in (["check", "--no-probe"], ["run", "--once"]):
        r = run_acqd(*cmd, "--config", str(cfg))
        assert r.returncode == 78, (cmd, r.stdout, r.stderr)
        assert "was `instrument:` renamed from 'krios'? Put `instrument: krios` back" in r.stderr, r.stderr
    assert sorted(p.name for p in central.iterdir()) == ["krios"]  # nothing written under the new name
