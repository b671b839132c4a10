"""Small files ship in batches (one durability barrier and one journal transaction per step for many
files); a SIGKILL in the middle of a batch, at each crash point a batch passes, must leave nothing
partial under a final name, release nothing unverified, and after a restart every file must be
verified exactly once with its content intact."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash
import zstandard

pytestmark = pytest.mark.slow

INSTRUMENT = "scope"
FILES_PER_ROUND = 24
#: (crash point, which hit): every point is armed at a hit in the middle of a batch
KILLS = [
    ("during_release", 5),  # a fresh batch: its releases run together; killed after the 5th unlink
    ("before_release", 3),  # a fresh batch (the 19 begun above were settled first): its third release
    ("after_read", 5),
    ("after_encode", 9),
    ("after_temp_write", 12),
    ("after_rename", 7),
    ("before_journal_commit", 1),
    ("after_verify", 1),
]

#: the points whose counts prove a kill inside one batch (of published, unrecorded copies; of releases
#: begun): an earlier kill's leftovers are settled first, so that the round is one batch
EXACT = ("before_release", "after_temp_write", "after_rename")


class Batches:
    def __init__(self, work: Path) -> None:
        self.acq, self.dest, self.state = work / "acq", work / "central", work / "state"
        for d in (self.acq, self.dest, self.state):
            d.mkdir()
        self.config = work / "acqd.yaml"
        # one worker: the one-file path never has more than one copy published and not yet recorded
        self.config.write_text(
            f"""instrument: {INSTRUMENT}
state_dir: {self.state}
watch:
  - {{path: {self.acq}, detector: generic, settle: 0.1s, scan_interval: 1s,
     placement: {{compress: zstd, release_local: after_verify}}}}
tiers:
  central: {{url: "file://{self.dest}"}}
limits: {{concurrent_files: 1, io_threads: 2, retry_initial: 50ms, retry_max: 500ms}}
"""
        )
        self.expected: dict[str, str] = {}  # relpath -> xxh3 of its content
        self.rounds = 0
        self.problems: list[str] = []

    def feed(self) -> None:
        """A round's files appear at once, last written before their settle window (a folder written
        beside the watched one, then renamed into it): they settle together and ship as one batch
        whatever the machine's load."""
        name = f"grid_{self.rounds:02d}"
        staging = self.acq.parent / f"staging_{name}"
        staging.mkdir()
        for i in range(FILES_PER_ROUND):
            data = os.urandom(100 + 97 * i)
            (staging / f"FoilHole_{i:03d}.xml").write_bytes(data)
            os.utime(staging / f"FoilHole_{i:03d}.xml", (time.time() - 5, time.time() - 5))
            self.expected[f"{name}/FoilHole_{i:03d}.xml"] = xxhash.xxh3_128_hexdigest(data)
        staging.rename(self.acq / name)
        self.rounds += 1

    def settle_all(self) -> None:
        """A run without a kill: everything there verified and released, nothing partial."""
        done = subprocess.run(
            [*self.cmd(), "--once", "--retry-for", "60s"], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        self.check()
        assert not any(p.is_file() for p in self.acq.rglob("*")), "a clean run left a source unreleased"

    def cmd(self) -> list[str]:
        return [sys.executable, "-m", "acqd", "run", "--config", str(self.config)]

    def objects(self) -> dict[str, Path]:
        """Copies under final names: relpath -> path."""
        out = {}
        base = self.dest / INSTRUMENT
        for p in base.rglob("*~.zst") if base.exists() else []:
            if not any(part.startswith(".") for part in p.relative_to(base).parts):
                out[str(p.relative_to(base))[: -len("~.zst")]] = p
        return out

    def temporaries(self) -> list[Path]:
        return [p for p in self.dest.rglob(".*")]

    def journal(self, sql: str) -> list[tuple[object, ...]]:
        db = sqlite3.connect(f"file:{self.state / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def check(self) -> dict[str, Path]:
        """What must hold at any instant: a final name holds a whole, right copy; a source is gone
        only if its copy is verified."""
        objects = self.objects()
        for rel, path in objects.items():
            with open(path, "rb") as f:
                data = zstandard.ZstdDecompressor().stream_reader(f).read()
            if xxhash.xxh3_128_hexdigest(data) != self.expected.get(rel):
                self.problems.append(f"partial or wrong copy under a final name: {path}")
        done = {r for r, s in self.journal("SELECT relpath, state FROM files") if s in ("verified", "released")}
        for rel in self.expected:
            if not (self.acq / rel).exists() and (rel not in objects or rel not in done):
                self.problems.append(f"{rel} left the acquisition disk without a verified copy")
        return objects


def kill_once(b: Batches, point: str, hit: int, before: set[str]) -> tuple[str, set[str]]:
    """One round killed at `point`'s `hit`: what must hold at any instant is checked (b.problems); returns
    why the kill was not inside one batch ("" if it was) and the copies left published, unrecorded."""
    b.feed()
    # every start writes its claim first (acqd.claims), through the same two points as a file
    at = hit + 1 if point in ("after_temp_write", "after_rename") else hit
    env = dict(os.environ, ACQD_CRASH_AT=f"{point}:{at}")
    proc = subprocess.run(b.cmd(), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"{point}:{hit} not reached: {proc.stderr[-2000:]}"
    objects = b.check()
    recorded = {r for (r,) in b.journal("SELECT relpath FROM files WHERE state IN ('stored', 'verified', 'released')")}
    unrecorded = {rel for rel in objects if rel not in recorded}
    # counted by name: a run may first take over (record) copies an earlier kill left unrecorded
    new = len(unrecorded - before)
    # killed between two renames of one batch: copies published that no journal entry records yet,
    # which the one-file path (one worker here) never leaves more than one of
    if point == "after_temp_write" and new != hit - 1:
        return f"not killed inside a batch: {new} new", unrecorded
    if point == "after_rename" and new != hit:
        return f"not killed inside a batch: {new} new", unrecorded
    # a batch's releases go step by step for all its files (each step's checks for every file, then
    # the intents, then the unlinks): one by one, never more than one would be begun or unlinked
    begun = b.journal("SELECT COUNT(*) FROM releasing")[0][0]
    if point == "during_release":
        states = dict(b.journal("SELECT relpath, state FROM files"))
        aside = len(list(b.acq.rglob(".~acqd-release.*")))  # moved aside, its unlink still to come
        gone = [r for r in b.expected if not (b.acq / r).exists() and states.get(r) != "released"]
        # a batch's files are all moved aside, then one writers' scan, then the unlinks: killed
        # with some unlinked and not recorded, and more of the batch aside (a batch's verified
        # files may reach their release in more than one group: counted from the kill)
        unlinked = len(gone) - aside
        if not (unlinked >= 1 and aside >= 1):
            return f"not killed inside a batch's unlinks: {unlinked} unlinked, {aside} aside", unrecorded
    if point == "before_release" and begun < 2:
        return f"not killed inside a batch's releases: {begun} begun", unrecorded
    return "", unrecorded


def test_kill_in_the_middle_of_a_batch(tmp_path: Path) -> None:
    b = Batches(tmp_path)
    before: set[str] = set()  # copies under final names the journal does not record yet
    for point, hit in KILLS:
        # a kill proves its point only if it landed inside one batch; under load the files a round
        # admits at once can still reach a step in smaller groups (seen in CI: a release group of one),
        # so such a round is settled and done again: what must hold at every kill is checked each time
        missed = ""
        for _attempt in range(3):
            if point in EXACT or missed:
                # the copies an earlier kill left are settled first (a clean run, its recovery checked),
                # so that this run's files are one folder, admitted at once: one batch. Left to the run
                # that is killed, a load-dependent share of them could form a batch of its own ahead of
                # the new round (seen in CI: 9 copies published where 11 were counted)
                b.settle_all()
                before = set()
            missed, before = kill_once(b, point, hit, before)
            if not missed:
                break
        assert not missed, f"{point}:{hit} {missed} (three rounds)"
    assert b.problems == []
    done = subprocess.run([*b.cmd(), "--once", "--retry-for", "60s"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    objects = b.check()
    assert b.problems == []
    assert sorted(objects) == sorted(b.expected), "a file has no copy, or an extra copy exists"
    rows = b.journal("SELECT relpath, state, version FROM files")
    assert sorted(r[0] for r in rows) == sorted(b.expected), "one journal row per file"
    assert {(s, v) for _r, s, v in rows} == {("released", 1)}
    verified = b.journal("SELECT file_id, COUNT(*) FROM audit WHERE action = 'verified' GROUP BY file_id")
    assert len(verified) == len(b.expected) and {n for _f, n in verified} == {1}, "every file verified exactly once"
    assert b.temporaries() == []
    assert not any(p.is_file() for p in b.acq.rglob("*")), "every source released"
