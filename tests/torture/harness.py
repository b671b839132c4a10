"""The crash torture harness: the real `acqd run` killed with SIGKILL again and again.

Two watch roots are fed between runs: light-sheet TIFF stacks written by `acqd simulate` (shipped
as OME-Zarr) and raw files of random sizes (shipped as zstd copies), both released after
verification. Each round starts the daemon and kills it, either at a named crash point
(``ACQD_CRASH_AT``, cycling through all of them) or after a seeded random delay. After every kill
the invariants that must hold at any instant are checked against the destination, the journal and
the acquisition folders; after the last, one clean run must finish the work and the end state is
checked: every file verified exactly once with equal content, nothing partial, no duplicate, no
unverified release, no temporaries, journal and destination agree.

The destination is a local folder (`file://`) by default, or any tier acqd ships to (`Destination`:
the S3 run uses SeaweedFS on loopback); every check reads it through acqd's own tier, so the same
invariants hold on every backend. On a remote tier a Zarr tree is being copied object by object
with its root `zarr.json` last: a prefix without it is not a readable store, so it counts as not
yet there while the daemon runs, and as a leftover at the end.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import xxhash
import zstandard

from acqd.crash import POINTS
from acqd.naming import parse_component
from acqd.simulate import SimSpec, simulate
from acqd.storage import Tier, open_tier
from tests.servers import SeaweedS3

INSTRUMENT = "scope"
MANIFEST = "~acqd-manifest.json"


@dataclass
class Figures:
    kills: int = 0
    named_kills: dict[str, int] = field(default_factory=dict)
    random_kills: int = 0
    named_not_reached: int = 0
    rounds: int = 0
    files: int = 0
    bytes: int = 0
    objects_checked: int = 0
    lost: int = 0
    corrupt: int = 0
    partial_under_final_name: int = 0
    duplicates: int = 0
    unverified_releases: int = 0
    stale_temporaries_at_end: int = 0
    journal_mismatches: int = 0
    held_open: int = 0  # files a writer kept open across rounds
    released_while_open: int = 0
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Destination:
    """The tier the torture ships to: its URL and options, and (S3) a way to list unfinished uploads."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    uploads: Callable[[], list[str]] | None = None


class Torture:
    def __init__(
        self,
        work: Path,
        seed: int = 1,
        files_per_round: int = 2,
        dest: Destination | None = None,
        writers: bool = True,
    ) -> None:
        self.work = work
        self.rng = random.Random(seed)
        self.seed = seed
        self.files_per_round = files_per_round
        self.ls, self.raw = work / "acq" / "ls", work / "acq" / "raw"
        self.dest, self.state = work / "central", work / "state"
        for d in (self.ls, self.raw, self.dest, self.state):
            d.mkdir(parents=True, exist_ok=True)
        self.destination = dest or Destination(f"file://{self.dest}")
        self.tier: Tier = open_tier("central", self.destination.url, self.destination.options)
        options = json.dumps(self.destination.options)  # JSON is YAML
        self.config = work / "acqd.yaml"
        self.config.write_text(
            f"""instrument: {INSTRUMENT}
state_dir: {self.state}
watch:
  - {{path: {self.ls}, name: ls, prefix: ls, detector: hamamatsu-orca, settle: 0.1s, scan_interval: 1s,
     placement: {{release_local: after_verify}}}}
  - {{path: {self.raw}, name: raw, prefix: raw, detector: generic, settle: 0.1s, scan_interval: 1s,
     placement: {{compress: zstd, release_local: after_verify}}}}
tiers:
  central: {{url: "{self.destination.url}", options: {options}}}
limits: {{concurrent_files: 3, io_threads: 3, chunk_bytes: 256KiB, inflight_bytes: 16MiB,
          retry_initial: 50ms, retry_max: 500ms}}
"""
        )
        self.expected: dict[str, tuple[str, int]] = {}  # "ls/rel" or "raw/rel" -> (xxh3 of content, size)
        self.figures = Figures()
        self._checked: dict[str, Any] = {}
        self._stamps: dict[str, list[Any]] = {}
        self.unfinished: list[str] = []
        self._round = 0
        self._batch = 0
        self._layouts: dict[str, Any] = {}
        self.writers_open = writers
        self.held: dict[str, tuple[int, int]] = {}  # key -> (descriptor open for writing, rounds left)

    # -- feeding ------------------------------------------------------------------------------
    def feed(self) -> None:
        r = self._batch  # a new folder each time: a name is never written twice
        self._batch += 1
        n_ls = self.rng.randint(0, self.files_per_round)
        if n_ls:
            spec = SimSpec(files=n_ls, frames=self.rng.randint(2, 6), height=128, width=128, seed=r)
            for p in simulate("hamamatsu-orca", self.ls / f"round_{r:05d}", spec):
                self._expect("ls", self.ls, p)
        for i in range(self.rng.randint(1, self.files_per_round)):
            # some names look like acqd's own decorations: versions, layout suffixes, manifests
            name = self.rng.choice([f"movie_{i}.raw"] * 4 + [f"movie_{i}~v2.raw", f"movie_{i}.raw~.zst", f"m{i}.v2.raw",
                                    f"acqd-manifest_{i}.json", f"movie_{i}.raw.zst", f"a~~{i}.raw"])  # fmt: skip
            p = self.raw / f"round_{r:05d}" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(self.rng.randbytes(self.rng.randint(1, 200_000)) + bytes(self.rng.randint(0, 1_500_000)))
            self._expect("raw", self.raw, p)
            if self.writers_open and self.rng.random() < 0.15:
                # a writer keeps the finished file open (like a camera that closes late): acqd may
                # ship it, never release it while the descriptor is open
                self.held[f"raw/{p.relative_to(self.raw)}"] = (os.open(p, os.O_WRONLY), self.rng.randint(1, 4))
                self.figures.held_open += 1

    def _expect(self, prefix: str, root: Path, p: Path) -> None:
        data = p.read_bytes()
        self.expected[f"{prefix}/{p.relative_to(root)}"] = (xxhash.xxh3_128_hexdigest(data), len(data))
        self.figures.files += 1
        self.figures.bytes += len(data)

    # -- one round ----------------------------------------------------------------------------
    def _cmd(self) -> list[str]:
        return [sys.executable, "-m", "acqd", "run", "--config", str(self.config)]

    def round(self) -> None:
        during = self.rng.random() < 0.3  # some rounds: the camera writes while acqd runs
        if not during:
            self.feed()
        self._round += 1
        self.figures.rounds += 1
        env = dict(os.environ)
        named = self.rng.random() < 0.6
        point = POINTS[self.figures.rounds % len(POINTS)]
        if named:
            env["ACQD_CRASH_AT"] = f"{point}:{self.rng.randint(1, 3)}"
        with open(self.work / "daemon.log", "ab") as log:
            proc = subprocess.Popen(self._cmd(), env=env, stdout=log, stderr=log)
            feeder = None
            if during:
                feeder = threading.Timer(self.rng.uniform(0.0, 1.0), self.feed)
                feeder.start()
            try:
                if named:
                    try:
                        proc.wait(timeout=8)
                    except subprocess.TimeoutExpired:
                        self.figures.named_not_reached += 1
                        named = False
                else:
                    time.sleep(self.rng.uniform(0.05, 2.5))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                if feeder is not None:
                    feeder.join()
        if proc.returncode == -signal.SIGKILL:
            self.figures.kills += 1
            if named:
                self.figures.named_kills[point] = self.figures.named_kills.get(point, 0) + 1
            else:
                self.figures.random_kills += 1
        else:
            self.figures.problems.append(f"round {self._round}: daemon exited {proc.returncode}, not killed")
        self.check_any_time()

    # -- invariants -----------------------------------------------------------------------------
    def _layout(self, prefix: str) -> Any:
        if prefix not in self._layouts:
            from acqd.daemon import frame_layout
            from acqd.layouts import build_layout
            from acqd.profiles import load_profile, search_path

            if prefix == "ls":
                self._layouts[prefix] = frame_layout(load_profile("hamamatsu-orca", search_path()), "zarr", None)
            else:
                self._layouts[prefix] = build_layout("copy", "zstd", chunk=1 << 20)
        return self._layouts[prefix]

    def listing(self) -> dict[str, dict[str, Any]]:
        """Every object below the instrument's prefix (relative to the tier root) -> its details."""
        fs = self.tier.fs
        fs.invalidate_cache()
        base = self.tier.path(INSTRUMENT)
        if not fs.exists(base):
            return {}
        cut = len(self.tier.root) + 1 if self.tier.root else 0
        found = fs.find(base, detail=True)
        return {p[cut:]: info for p, info in found.items() if info.get("type") != "directory"}

    def final_objects(self) -> dict[str, str]:
        """Objects under final names: source key ("ls/rel") -> object name (a file or a .zarr tree).
        Remote Zarr trees still being copied (no root zarr.json yet) go to `self.unfinished`."""
        out: dict[str, str] = {}
        trees: dict[str, set[str]] = {}
        self._stamps: dict[str, list[Any]] = {}
        for name, info in sorted(self.listing().items()):
            parts = name.split("/")  # scope/<prefix>/.../object
            if len(parts) < 3 or parts[1] not in ("ls", "raw"):
                # the claim, manifests, and their temporaries (a kill while a start writes its claim)
                if not parts[-1].startswith(("~acqd-", ".")):
                    self.figures.problems.append(f"unexpected object {name}")
                continue
            if any(p.startswith(".") for p in parts):
                continue  # a temporary (file or tree)
            stamp = (name, info.get("size"), str(info.get("mtime", info.get("LastModified"))), info.get("ETag"))
            if parts[-1].startswith("~acqd-"):
                continue  # acqd's own: the session manifests, the instrument's claim
            zarr_at = next((i for i in range(2, len(parts) - 1) if parts[i].endswith("~.zarr")), None)
            if zarr_at is not None:
                root = "/".join(parts[: zarr_at + 1])
                key = f"{parts[1]}/{'/'.join(parts[2 : zarr_at + 1])[: -len('~.zarr')]}"
                trees.setdefault(key, set()).add("/".join(parts[zarr_at + 1 :]))
                out[key] = root
                self._stamps.setdefault(key, []).append(stamp)
            elif (parsed := parse_component(parts[-1])) is not None and parsed[2] == ".zst" and parsed[1] == 1:
                folders = [p.replace("~~", "~") for p in parts[2:-1]]
                key = f"{parts[1]}/{'/'.join([*folders, parsed[0]])}"
                out[key] = name
                self._stamps[key] = [stamp]
            else:
                self.figures.problems.append(f"unexpected object {name}")
        self.unfinished = []
        if not self.tier.local:  # see the module docstring
            for key, members in trees.items():
                if "zarr.json" not in members:
                    self.unfinished.append(out.pop(key))
        return out

    def temporaries(self) -> list[str]:
        temps = [n for n in self.listing() if any(p.startswith(".") for p in n.split("/"))]
        if self.destination.uploads is not None:
            temps += [f"unfinished upload {k}" for k in self.destination.uploads()]
        return temps

    def _stamp(self, key: str) -> Any:
        return tuple(sorted(self._stamps.get(key, [])))

    def _restored_digest(self, key: str, rel: str) -> str | None:
        prefix = key.split("/", 1)[0]
        out = io.BytesIO()
        try:
            if prefix == "ls":
                self._layout(prefix).restore(self.tier, rel, out)
                data = out.getvalue()
            else:
                with self.tier.open_read(rel) as f:
                    data = zstandard.ZstdDecompressor().stream_reader(f).read()
        except Exception as exc:
            self.figures.problems.append(f"cannot read {rel}: {type(exc).__name__}: {exc}")
            return None
        return xxhash.xxh3_128_hexdigest(data)

    def check_objects(self) -> dict[str, str]:
        objects = self.final_objects()
        for key, path in objects.items():
            if key not in self.expected:
                self.figures.problems.append(f"object for an unknown source: {path}")
                continue
            stamp = self._stamp(key)
            if self._checked.get(key) == stamp:
                continue
            got = self._restored_digest(key, path)
            self.figures.objects_checked += 1
            if got != self.expected[key][0]:
                self.figures.partial_under_final_name += 1
                self.figures.problems.append(f"partial or corrupt copy under a final name: {path}")
            self._checked[key] = stamp
        return objects

    def journal(self) -> dict[str, list[tuple[str, int]]]:
        """ "ls/rel" -> [(state, version)] for every row."""
        path = self.state / "journal.sqlite"
        if not path.exists():
            return {}
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            roots = {str(self.ls): "ls", str(self.raw): "raw"}
            out: dict[str, list[tuple[str, int]]] = {}
            try:
                rows = db.execute("SELECT root, relpath, state, version FROM files").fetchall()
            except sqlite3.OperationalError:
                return {}
            for root, rel, state, version in rows:
                out.setdefault(f"{roots.get(root, root)}/{rel}", []).append((state, version))
            return out
        finally:
            db.close()

    def source_exists(self, key: str) -> bool:
        prefix, rel = key.split("/", 1)
        return (self.ls if prefix == "ls" else self.raw).joinpath(rel).exists()

    def _close_writers(self, all_: bool = False) -> None:
        for key, (fd, left) in list(self.held.items()):
            if all_ or left <= 1:
                os.close(fd)
                del self.held[key]
            else:
                self.held[key] = (fd, left - 1)

    def check_any_time(self) -> None:
        for key in self.held:
            if not self.source_exists(key):
                self.figures.released_while_open += 1
                self.figures.problems.append(f"{key} was released while a writer had it open")
        self._close_writers()
        objects = self.check_objects()
        journal = self.journal()
        for key in self.expected:
            if self.source_exists(key):
                continue
            states = [s for s, _ in journal.get(key, [])]
            if key not in objects or not any(s in ("verified", "released") for s in states):
                self.figures.unverified_releases += 1
                self.figures.problems.append(f"{key} was removed from the acquisition disk without a verified copy")

    def finish(self) -> None:
        """One clean run to the end, then the end-state invariants."""
        self._close_writers(all_=True)
        r = subprocess.run([*self._cmd(), "--once", "--retry-for", "60s"], capture_output=True, text=True)
        if r.returncode != 0:
            self.figures.problems.append(f"the final run exited {r.returncode}: {r.stderr[-2000:]}")
        objects = self.check_objects()
        journal = self.journal()
        f = self.figures
        for key in self.expected:
            rows = journal.get(key, [])
            if key not in objects:
                f.lost += 1
                f.problems.append(f"lost: {key} has no copy")
            if len(rows) != 1 or rows[0] != ("released", 1):
                f.problems.append(f"{key}: journal rows {rows}, expected one released version 1")
                f.journal_mismatches += 1
            if self.source_exists(key):
                f.problems.append(f"{key} still on the acquisition disk after the final run")
        extra = set(objects) - set(self.expected)
        f.duplicates = len(extra) + sum(max(0, len(journal.get(k, [])) - 1) for k in self.expected)
        f.corrupt = f.partial_under_final_name
        temps = self.temporaries() + self.unfinished
        f.stale_temporaries_at_end = len(temps)
        if temps:
            f.problems.append(f"temporaries left: {temps[:5]}")
        # the journal's copies agree with the destination
        db = sqlite3.connect(f"file:{self.state / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            for dest, state in db.execute("SELECT dest, state FROM copies"):
                if state in ("verified", "stored") and not self.tier.exists(dest):
                    f.journal_mismatches += 1
                    f.problems.append(f"journal copy {dest} ({state}) is not at the destination")
        finally:
            db.close()


def s3_destination(server: SeaweedS3) -> Destination:
    """A fresh bucket on the server, and a look at its unfinished multipart uploads."""
    bucket = server.bucket(f"torture-{uuid.uuid4().hex[:12]}")

    def uploads() -> list[str]:
        got = server.client().list_multipart_uploads(Bucket=bucket)
        return [u["Key"] for u in got.get("Uploads", [])]

    return Destination(f"s3://{bucket}/facility", server.options(), uploads)


def run(work: Path, kills: int, seed: int = 1, progress: bool = False, dest: Destination | None = None) -> Figures:
    t = Torture(work, seed, dest=dest)
    t0 = time.monotonic()
    while t.figures.kills < kills:
        t.round()
        if progress and t.figures.rounds % 25 == 0:
            f = t.figures
            print(
                f"round {f.rounds}: kills {f.kills} ({f.random_kills} random), files {f.files}, "
                f"problems {len(f.problems)}, {time.monotonic() - t0:.0f}s",
                flush=True,
            )
    t.finish()
    t.tier.close()
    t.figures.wall_seconds = round(time.monotonic() - t0, 1)
    counts = Counter(t.figures.named_kills)
    t.figures.named_kills = dict(sorted(counts.items()))
    return t.figures


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fig = run(Path(d), int(sys.argv[1]) if len(sys.argv) > 1 else 10, progress=True)
        print(json.dumps(fig.as_dict(), indent=1))
