"""Measuring codec candidates on a file's sample frames, the way a frame layout encodes them.

The decision is pure (`acqd.codec.choose_codec`); this module reads the sample, encodes it with each
candidate exactly as the layout would (Zarr: one Blosc/Zstd chunk per frame; TIFF: libtiff strips via
imagecodecs) and times it in CPU seconds of the encoding thread (what other processes on the PC do
to the wall clock does not count).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acqd.codec import COST_TIE, MIN_RATIO, Choice, FrameCodec, Trial, choose_codec, codec_label, codec_spec, drifted
from acqd.lazy import lazy
from acqd.readers import FrameSource

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


SAMPLE_BYTES = 8 << 20  # what the candidates are tried on: a few frames (or bands of them), ~8 MiB
SAMPLE_FRAMES = 3  # at least this many frames, spread over the file, where it has them
REPEATS = 2  # timings: the smallest of this many runs
CUTOFF = 2.0  # a candidate over this many times the CPU budget on its first sample frames is not timed further
CUTOFF_AFTER = 256 << 10  # ... judged on at least this many bytes


@dataclass(frozen=True)
class ChoosePolicy:
    """What a frame layout may choose from and what it may cost (from the profile or the policy)."""

    candidates: tuple[FrameCodec, ...]
    budget_ns: float
    budget_why: str
    sample_bytes: int = SAMPLE_BYTES
    allow_copy: bool = True  # incompressible data: byte-exact (the profile's never_larger)

    @property
    def key(self) -> str:
        """Short and stable: a different candidate set or budget makes a new choice."""
        doc = json.dumps(
            [[codec_spec(c) for c in self.candidates], round(self.budget_ns, 4), self.allow_copy], sort_keys=True
        )
        return hashlib.sha256(doc.encode()).hexdigest()[:12]


def character(src: FrameSource) -> str:
    """What makes data a different class for a codec: dtype and frame shape, e.g. 'uint16 320x256'."""
    return f"{src.dtype.newbyteorder('=').name} {src.shape[1]}x{src.shape[2]}"


def sample(src: FrameSource, target: int = SAMPLE_BYTES) -> list[np.ndarray]:
    """Frames spread over the file (first, last and between), little-endian, about `target` bytes in
    all; frames larger than their share are cut to a band of whole rows from their middle."""
    n, ny, nx = src.shape
    fb = max(1, src.frame_bytes)
    k = max(1, min(n, max(SAMPLE_FRAMES, target // fb)))
    picks = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    share = max(1, target // len(picks))
    rows = max(1, min(ny, share // max(1, nx * src.dtype.itemsize)))
    top = (ny - rows) // 2
    out = []
    for i in picks:
        frame = np.asarray(src.read(i, i + 1))[0]
        band = frame[top : top + rows]
        out.append(np.ascontiguousarray(band.astype(band.dtype.newbyteorder("<"), copy=False)))
    return out


def with_header(frames: list[np.ndarray], src: FrameSource, layout: str, target: int = SAMPLE_BYTES) -> list[Any]:
    """The sample plus the header bytes kept for restore, where the layout compresses them with the
    frame codec (Zarr's `acqd-restore` array): an FEI2 extended header can be most of a small file."""
    if layout != "zarr" or not src.restore:
        return frames
    return [*frames, HeaderBytes(np.frombuffer(src.restore[:target], dtype=np.uint8))]


class HeaderBytes:
    """Header bytes in a sample (`with_header`): measured with the codec the layout stores them with
    (`FrameCodec.for_bytes`), not the frames'. A wrapper, not an array type: defining a numpy
    subclass here would import numpy with this module, ahead of the frame libraries."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.nbytes = int(data.nbytes)


def _encoder(layout: str, c: FrameCodec, itemsize: int) -> Any:
    """A function frame -> stored bytes of that frame, as `layout` writes it with codec `c`."""
    if layout == "tiff":
        from acqd.layouts.frames import TIFF_SCHEMES
        from acqd.layouts.tiffwrite import default_rows_per_strip, encode_strip

        compression, level = c.tiff_compression()
        scheme = TIFF_SCHEMES[compression]

        def tiff(frame: np.ndarray) -> int:
            rps = default_rows_per_strip(frame.shape, itemsize, scheme)
            return sum(len(encode_strip(frame[i : i + rps], scheme, 1, level)) for i in range(0, frame.shape[0], rps))

        return tiff
    if c.id == "none":
        return lambda frame: frame.nbytes
    codec = c.numcodecs()
    return lambda frame: len(codec.encode(frame))


def measure(
    frames: Sequence[Any],
    candidates: Sequence[FrameCodec],
    layout: str,
    threads: int = 1,
    cutoff_ns: float | None = None,
) -> list[Trial]:
    """Each candidate's stored bytes and encoding CPU seconds on `frames`, in candidate order; the
    candidates are measured `threads` at a time (each timed on its own thread's CPU clock), so a
    session's first file, and the files of the session waiting for its choice, wait less.
    `cutoff_ns`: a candidate costing more than this per byte on the frames encoded so far is not
    measured further (its Trial covers those frames only: `partial`)."""
    import numcodecs.blosc

    nbytes = sum(f.nbytes for f in frames)
    itemsize = frames[0].dtype.itemsize if frames else 1

    def trial(c: FrameCodec) -> Trial:
        frame_enc, bytes_enc = _encoder(layout, c, itemsize), _encoder(layout, c.for_bytes(), 1)

        def enc(f: Any) -> int:
            return int(bytes_enc(f.data) if isinstance(f, HeaderBytes) else frame_enc(f))

        if frames:  # a codec's first call sets itself up (tables, contexts): not what a frame costs
            enc(np.ascontiguousarray(frames[0][:1]))
        best = float("inf")
        stored = 0
        for rep in range(REPEATS):
            spent, seen, stored = 0.0, 0, 0
            for f in frames:
                t0 = time.thread_time()
                stored += enc(f)
                spent += time.thread_time() - t0
                seen += f.nbytes
                if (
                    rep == 0
                    and cutoff_ns is not None
                    and CUTOFF_AFTER <= seen < nbytes
                    and spent * 1e9 > cutoff_ns * seen
                ):
                    return Trial(codec_label(c), seen, stored, spent)  # far too costly: no need to know how far
            best = min(best, spent)
        return Trial(codec_label(c), nbytes, stored, best)

    use_threads = numcodecs.blosc.use_threads
    numcodecs.blosc.use_threads = False  # Blosc's own pool would hide CPU time from this thread's clock
    try:
        if threads > 1 and len(candidates) > 1:
            with ThreadPoolExecutor(min(threads, len(candidates)), thread_name_prefix="acqd-trial") as pool:
                return list(pool.map(trial, candidates))
        return [trial(c) for c in candidates]
    finally:
        numcodecs.blosc.use_threads = use_threads


@dataclass
class Entry:
    """A session's choice for one data character, and the file it was measured on."""

    choice: Choice
    origin: str
    cause: str
    stale: bool = False  # a file's ratio drifted far from the sample's: measure again on the next one

    def as_json(self) -> dict[str, Any]:
        c = self.choice
        trials = [[t.label, t.source_bytes, t.stored_bytes, t.cpu_seconds] for t in c.trials]
        return {
            "codec": c.label,
            "ratio": round(c.ratio, 4),
            "ns_per_byte": round(c.ns_per_byte, 4),
            "budget_ns_per_byte": round(c.budget_ns, 4),
            "why": c.why,
            "origin": self.origin,
            "cause": self.cause,
            "trials": trials,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Entry:
        trials = tuple(Trial(str(t[0]), int(t[1]), int(t[2]), float(t[3])) for t in d.get("trials", ()))
        choice = Choice(
            d["codec"], float(d["ratio"]), float(d["ns_per_byte"]), float(d["budget_ns_per_byte"]), d["why"], trials
        )
        return cls(choice, str(d.get("origin", "")), str(d.get("cause", "start")))


@dataclass(frozen=True)
class Decision:
    """What `Chooser.decide` gives a file: the session's entry for its character, whether it was
    measured just now (and why), and the record to keep (None: unchanged)."""

    entry: Entry
    character: str
    measured: bool
    record: str | None


class Chooser:
    """Per session and data character: measure the candidates once, remember the choice (in memory
    and in the record the caller keeps in its journal), and measure again when the data changes
    character (dtype, frame shape) or a file's ratio drifts far from what the sample promised.
    One measurement at a time: files of a session that arrive together wait for the first one's."""

    def __init__(self, policy: ChoosePolicy, layout: str, max_sessions: int = 256, threads: int = 1) -> None:
        self.policy = policy
        self.layout = layout
        self.threads = threads
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, dict[str, Entry]] = OrderedDict()

    def key(self, root: str, session: str) -> str:
        """The journal key of a session's record (a new candidate set or budget: a new record)."""
        return f"codec-choice/{self.layout}/{self.policy.key}/{root}/{session}"

    def _entries(self, key: str, recorded: str | None) -> dict[str, Entry]:
        entries = self._sessions.get(key)
        if entries is None:
            entries = {}
            if recorded:
                try:
                    doc = json.loads(recorded)
                    entries = {ch: Entry.from_json(d) for ch, d in doc["choices"].items()}
                except (ValueError, KeyError, TypeError, IndexError):
                    entries = {}  # an unreadable record: measured again
            self._sessions[key] = entries
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(key)
        return entries

    def decide(self, key: str, recorded: str | None, src: FrameSource, origin: str) -> Decision:
        ch = character(src)
        with self._lock:
            entries = self._entries(key, recorded)
            entry = entries.get(ch)
            cause = ""
            if entry is None:
                cause = "session start" if not entries else f"new data character ({ch})"
            elif entry.stale:
                cause = "ratio drift"
            elif entry.choice.label is None:  # incompressible so far: does this file compress now?
                best = max(entry.choice.trials, key=lambda t: t.ratio, default=None)
                probe = next((c for c in self.policy.candidates if best and codec_label(c) == best.label), None)
                if probe is not None and measure(self._sample(src), [probe], self.layout)[0].ratio >= MIN_RATIO:
                    cause = "ratio drift (compressible again)"
            if not cause:
                assert entry is not None
                return Decision(entry, ch, False, None)
            trials = self._measure(self._sample(src))
            choice = choose_codec(trials, self.policy.budget_ns, self.policy.budget_why, self.policy.allow_copy)
            entry = Entry(choice, origin, cause)
            entries[ch] = entry
            doc = {"layout": self.layout, "choices": {c: e.as_json() for c, e in sorted(entries.items())}}
            return Decision(entry, ch, True, json.dumps(doc, sort_keys=True))

    def _measure(self, frames: list[np.ndarray]) -> list[Trial]:
        """The candidates on the sample, each timed no further than the choice needs (a sample's timing
        varies by COST_TIE, not by CUTOFF times):
        - one costing more than CUTOFF x the budget on its first frames cannot be chosen while another
          that compresses is within the budget: it is left there;
        - when none is within the budget, the choice is among those within COST_TIE of the cheapest
          that compresses: the cheapest is measured in full, and so is every one left that costs less
          than CUTOFF x that (the others cannot be among the cheapest);
        - when nothing compresses on what was measured, every candidate is measured in full."""
        budget = self.policy.budget_ns
        cands = self.policy.candidates
        trials = measure(frames, cands, self.layout, self.threads, CUTOFF * budget)
        nbytes = sum(f.nbytes for f in frames)

        def done(t: Trial) -> bool:
            return t.source_bytes == nbytes

        def finish(which: list[int]) -> None:
            for i, t in zip(which, measure(frames, [cands[i] for i in which], self.layout, self.threads), strict=True):
                trials[i] = t

        if any(done(t) and t.ratio >= MIN_RATIO and t.ns_per_byte <= budget * (1 + COST_TIE) for t in trials):
            return trials
        while not all(done(t) for t in trials):
            compressing = [i for i, t in enumerate(trials) if t.ratio >= MIN_RATIO]
            if not compressing:
                finish([i for i, t in enumerate(trials) if not done(t)])
                break
            cheapest = min(compressing, key=lambda i: trials[i].ns_per_byte)
            if not done(trials[cheapest]):
                finish([cheapest])
                continue
            bound = CUTOFF * (1 + COST_TIE) * trials[cheapest].ns_per_byte
            near = [i for i, t in enumerate(trials) if not done(t) and t.ns_per_byte <= bound]
            if not near:
                break
            finish(near)
        return trials

    def _sample(self, src: FrameSource) -> list[np.ndarray]:
        return with_header(sample(src, self.policy.sample_bytes), src, self.layout, self.policy.sample_bytes)

    def observe(self, key: str, ch: str, ratio: float) -> None:
        """A whole file's ratio with the session's codec: far from the sample's, measure again."""
        with self._lock:
            entry = self._sessions.get(key, {}).get(ch)
            if entry is not None and entry.choice.label is not None and drifted(entry.choice.ratio, ratio):
                entry.stale = True
