"""Codecs chosen from measurement, and no file stored larger than its source.

The decision is pure and tested from tables; the daemon tests ship generated data of the real
light-sheet stack's character (uint16, camera offset ~100 ADU, a few ADU of noise) and
incompressible data, and read what landed: the layout, the manifest's per-file reason, the journal's
session record, the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from acqd.codec import MIN_RATIO, Trial, choose_codec, codec_label, cpu_budget, drifted
from acqd.config import Config
from acqd.daemon import Daemon, journal_path
from acqd.journal import Journal
from acqd.layouts.choose import character, measure, sample
from acqd.profiles import DetectorProfile
from acqd.readers.base import FrameSource
from tests.conftest import run_acqd
from tests.test_frames import PROFILES, restore, ship

# --- the decision, from tables -----------------------------------------------------------------


def t(label: str, ratio: float, ns: float, n: int = 1_000_000) -> Trial:
    return Trial(label, n, round(n / ratio), ns * n / 1e9)


@pytest.mark.parametrize(
    ("trials", "budget", "chosen", "how"),
    [
        # the light-sheet figures: LZ4 + bit-shuffle 1.01x, LZ4 + byte-shuffle 1.63x, Zstd-1 1.66x
        ([t("blosc-lz4-1", 1.01, 0.5), t("blosc-lz4-1-shuffle", 1.63, 0.5), t("blosc-zstd-1", 1.66, 2.0)], 5.0,
         "blosc-zstd-1", "the best ratio within the budget"),
        # Zstd over the budget: the best of what is within it
        ([t("blosc-lz4-1", 1.01, 0.5), t("blosc-lz4-1-shuffle", 1.63, 0.5), t("blosc-zstd-1", 1.66, 2.0)], 1.0,
         "blosc-lz4-1-shuffle", "the best ratio within the budget"),
        # within 1 % of the best: the cheaper one
        ([t("a", 2.000, 3.0), t("b", 1.995, 1.0)], 5.0, "b", "within 1 % of the best ratio, cheaper"),
        # nothing within the budget: the cheapest that compresses (not the one that does not)
        ([t("slow", 3.0, 9.0), t("slower", 3.5, 20.0), t("fast-useless", 1.0, 0.1)], 1.0, "slow",
         "none within the budget"),
        # timing noise: a cost at most 15 % over the budget counts as within it, so LZ4 with
        # bit-shuffle (3.2x, measured 1.15 ns/B against a 1.06 budget) is not dropped for byte-shuffle
        ([t("blosc-lz4-1", 3.2, 1.15), t("blosc-lz4-1-shuffle", 2.3, 1.05), t("zstd-1", 3.3, 3.0)], 1.06,
         "blosc-lz4-1", "the best ratio within the budget (its cost within the 15% a timing varies by)"),
        # ... but 16 % over is over
        ([t("blosc-lz4-1", 3.2, 1.25), t("blosc-lz4-1-shuffle", 2.3, 1.05)], 1.07, "blosc-lz4-1-shuffle",
         "the best ratio within the budget"),
        # none within the budget: costs within 15 % of the cheapest are one figure, the best ratio of them
        ([t("slow", 3.0, 9.0), t("slow-better", 3.4, 10.0), t("slower", 3.5, 20.0)], 1.0, "slow-better",
         "within 15% of the cheapest's cost"),
        # nothing compresses by MIN_RATIO: byte-exact
        ([t("a", 1.01, 0.5), t("b", 0.97, 0.3)], 5.0, None, "incompressible"),
        # ties in ratio and cost: the order given (the profile's own codec first)
        ([t("first", 2.0, 1.0), t("second", 2.0, 1.0)], 5.0, "first", "the best ratio within the budget"),
    ],
)  # fmt: skip
def test_choice_from_measurements(trials: list[Trial], budget: float, chosen: str | None, how: str) -> None:
    c = choose_codec(trials, budget)
    assert c.label == chosen
    assert how in c.why
    # a cost over the budget is said as such, also when it counts as within it (a review)
    over = c.label is not None and c.ns_per_byte > budget and "none within the budget" not in c.why
    assert ("a timing varies by" in c.why) == over
    assert all(x.label in c.why for x in trials)  # the figures behind it are stated
    assert choose_codec(list(trials), budget) == c  # deterministic for the same measurements


def test_incompressible_keeps_the_best_when_never_larger_is_off() -> None:
    c = choose_codec([t("a", 1.01, 0.5), t("b", 0.97, 0.3)], 5.0, allow_copy=False)
    assert c.label == "a"


@pytest.mark.parametrize(
    ("explicit", "peak", "cores", "ns", "says"),
    [
        (2.5, 3.6e9, 16, 2.5, "stated"),
        (None, 1e9, 2, 1.0, "50% of 2 core(s)"),  # half of 2 cores at 1 GB/s: 1 ns per byte
        (None, 3.6e9, 16, 16 * 0.5 / 3.6, "peak 3.60 GB/s"),
        (None, None, 8, 10.0, "default"),
    ],
)
def test_cpu_budget(explicit: float | None, peak: float | None, cores: int, ns: float, says: str) -> None:
    got, why = cpu_budget(explicit, peak, cores)
    assert got == pytest.approx(ns) and says in why


def test_drift() -> None:
    assert not drifted(2.0, 1.8) and not drifted(2.0, 2.9)
    assert drifted(2.0, 1.2) and drifted(2.0, 3.1)


def profile(**kw: Any) -> DetectorProfile:
    return DetectorProfile.model_validate(
        {"apiVersion": "acqd/v1", "kind": "DetectorProfile", "name": "p", "reader": "tiff", "layout": "zarr", **kw}
    )


def test_candidates_from_profile_and_policy() -> None:
    p = profile(codec={"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "bitshuffle"}, peak_rate="1GB")
    tried, budget, _ = p.codec_choice("zarr", cores=4)
    labels = [codec_label(c) for c in tried]
    assert labels[0] == "blosc-lz4-1" and "blosc-lz4-1-shuffle" in labels and len(labels) == len(set(labels))
    assert budget == pytest.approx(2.0)
    # a policy's explicit codec without candidates is fixed; with candidates, those (that fit the layout)
    fixed, _, _ = p.codec_choice("zarr", codec={"id": "zstd", "level": 3})
    assert [codec_label(c) for c in fixed] == ["zstd-3"]
    some, b2, _ = p.codec_choice("zarr", candidates=("blosc-zstd-1", "lzw"), budget_ns=7.0)
    assert [codec_label(c) for c in some] == ["blosc-lz4-1", "blosc-zstd-1"] and b2 == 7.0
    tiff, _, _ = profile(codec={"id": "lzw"}, layout="tiff", reader="mrc").codec_choice("tiff")
    assert [codec_label(c) for c in tiff] == ["lzw", "deflate-1", "deflate-6"]
    with pytest.raises(ValueError, match="cname 'lz5' unknown"):
        profile(codec_candidates=["blosc-lz5-1"])


def test_measurement_is_what_the_layout_stores() -> None:
    rng = np.random.default_rng(0)
    stack = (100 + rng.normal(0, 4, size=(40, 64, 48))).astype("<u2")
    src = FrameSource("t", stack.shape, stack.dtype, {}, lambda a, b: stack[a:b])
    frames = sample(src)
    assert len(frames) == 40  # small frames: every one of them
    assert character(src) == "uint16 64x48"
    small = sample(src, target=3 * 64 * 48 * 2)  # a tighter budget: 3 frames spread, first and last among them
    assert len(small) == 3 and np.array_equal(small[0], stack[0]) and np.array_equal(small[-1], stack[-1])
    import numcodecs

    from acqd.codec import parse_label

    trials = measure(frames, [parse_label("blosc-lz4-1"), parse_label("zstd-1")], "zarr")
    assert trials[0].stored_bytes == sum(
        len(numcodecs.Blosc(cname="lz4", clevel=1, shuffle=2).encode(f)) for f in frames
    )
    assert trials[0].source_bytes == stack.nbytes and trials[0].cpu_seconds > 0
    # measured on two threads at once: the same figures (but the clocks), in the candidates' order
    many = [parse_label(x) for x in ("zstd-1", "blosc-lz4-1", "blosc-zstd-1-shuffle")]
    one, two = measure(frames, many, "zarr"), measure(frames, many, "zarr", threads=2)
    assert [(t.label, t.stored_bytes) for t in two] == [(t.label, t.stored_bytes) for t in one]
    assert [t.label for t in two] == ["zstd-1", "blosc-lz4-1", "blosc-zstd-1-shuffle"]
    assert all(t.cpu_seconds > 0 for t in two)


def test_a_costly_candidate_is_timed_no_further_than_the_choice_needs() -> None:
    """The session's files wait for its codec trial. A candidate far over the CPU budget on its first
    sample frames is left there while another that compresses is within the budget; when none is,
    the choice is among the cheapest, and only those that might be among them are measured in full;
    when nothing compresses, every candidate is."""
    from acqd.codec import parse_label
    from acqd.layouts.choose import ChoosePolicy, Chooser

    rng = np.random.default_rng(1)
    stack = (100 + rng.poisson(20, size=(12, 256, 256))).astype("<u2")
    src = FrameSource("t", stack.shape, stack.dtype, {}, lambda a, b: stack[a:b])
    whole = sum(f.nbytes for f in sample(src))
    lz4, shuffled, zstd19 = (parse_label(x) for x in ("blosc-lz4-1", "blosc-lz4-1-shuffle", "zstd-19"))

    def trial(budget: float, cands: tuple[Any, ...], source: FrameSource = src) -> Any:
        return Chooser(ChoosePolicy(cands, budget_ns=budget, budget_why="test"), "zarr").decide("k", None, source, "a")

    d = trial(10.0, (lz4, zstd19))  # LZ4 ~1 ns/B fits; zstd-19 costs hundreds
    fast, slow = d.entry.choice.trials
    assert d.entry.choice.label == "blosc-lz4-1" and fast.source_bytes == whole
    assert 0 < slow.source_bytes < whole and slow.ns_per_byte > 20  # left after its first frames

    d = trial(1e-4, (lz4, shuffled, zstd19))  # nothing fits: the cheapest, and those near it, in full
    trials = d.entry.choice.trials
    full = [t for t in trials if t.source_bytes == whole]
    cheapest = min(full, key=lambda t: t.ns_per_byte)
    assert cheapest.ns_per_byte <= min(t.ns_per_byte for t in trials), trials
    assert all(t.ns_per_byte > 2 * 1.15 * cheapest.ns_per_byte for t in trials if t not in full), trials
    assert trials[2].source_bytes < whole and "none within" in d.entry.choice.why
    assert d.entry.choice.label == cheapest.label or d.entry.choice.label in {t.label for t in full}

    noise = rng.integers(0, 2**16, size=(12, 256, 256), dtype="<u2")  # nothing compresses: all in full
    d = trial(1e-4, (lz4, zstd19), FrameSource("t", noise.shape, noise.dtype, {}, lambda a, b: noise[a:b]))
    assert [t.source_bytes for t in d.entry.choice.trials] == [whole, whole] and d.entry.choice.label is None


# --- the daemon: generated data of the real stack's character -----------------------------------

LIGHTSHEET = (
    "reader: tiff\nlayout: zarr\naxis0: z\nfiles: ['*.tif']\n"
    # the profile's guess, as the ORCA profile had it; a budget the best ratio fits in
    "codec: {id: blosc, cname: lz4, clevel: 1, shuffle: bitshuffle}\ncodec_budget: 1000\nnever_larger: true\n"
)


def stack(seed: int, n: int = 12, dtype: str = "uint16") -> np.ndarray:
    """Noisy frames with a camera offset: ~100 ADU, a few ADU of noise, a little signal."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:160]
    signal = 60 * np.exp(-((yy - 64) ** 2 + (xx - 80) ** 2) / 800.0)
    frames = 100 + signal + rng.normal(0, 4, size=(n, 128, 160))
    if dtype == "uint8":
        frames = frames / 2
    return np.clip(frames, 0, None).astype(dtype)


def tif(frames: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, frames, photometric="minisblack")
    return buf.getvalue()


def manifest(dest: Path, session: str) -> dict[str, dict[str, Any]]:
    doc = json.loads((dest / session / "~acqd-manifest.json").read_text())
    return {f["source"]: f for f in doc["files"]}


def zarr_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def test_choice_beats_the_profiles_fixed_codec_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PROFILES, "t-ls", LIGHTSHEET + "codec_candidates: null\n")
    monkeypatch.setitem(PROFILES, "t-ls-fixed", LIGHTSHEET + "codec_candidates: []\n")
    files = {f"s1/{i}.tif": tif(stack(i)) for i in range(3)}
    files["s1/small8.tif"] = tif(stack(9, dtype="uint8"))  # another data character in the same session
    files["s2/0.tif"] = tif(stack(7))  # another session
    daemon: list[Daemon] = []
    _, dest, state = await ship(tmp_path / "chosen", "t-ls", files, daemon)
    _, fixed, _ = await ship(tmp_path / "fixed", "t-ls-fixed", files)

    for rel in ("s1/0.tif", "s1/1.tif", "s1/2.tif", "s2/0.tif"):
        chosen_size, fixed_size = zarr_bytes(dest / f"{rel}~.zarr"), zarr_bytes(fixed / f"{rel}~.zarr")
        assert chosen_size < 0.9 * fixed_size, (rel, chosen_size, fixed_size)  # data-aware: clearly smaller
    s1 = manifest(dest, "s1")
    codec = s1["s1/0.tif"]["codec"]
    assert codec != "blosc(cname=lz4,clevel=1,shuffle=bitshuffle)"
    assert {s1[f"s1/{i}.tif"]["codec"] for i in range(3)} == {codec}  # one choice for the session
    whys = [s1[f"s1/{i}.tif"]["codec_why"] for i in range(3)]
    # measured once per data character: at the session's start, and when the other dtype came
    assert sum(w.startswith(("session start", "new data character")) for w in whys) == 1
    assert all("uint16 128x160" in w or w.startswith("session start") for w in whys)
    assert sum(f["codec_why"].startswith("session start") for f in s1.values()) == 1
    assert sum(f["codec_why"].startswith("new data character") for f in s1.values()) == 1
    # the uint8 file names its data character, unless it came first (files ship in any order) and its
    # measurement started the session: one of the uint16 files is then the new character (checked above)
    why8 = s1["s1/small8.tif"]["codec_why"]
    assert "uint8 128x160" in why8 or why8.startswith("session start"), why8
    assert "session start" in manifest(dest, "s2")["s2/0.tif"]["codec_why"]
    # the session's choice is in the journal, so a restart keeps it
    j = Journal(journal_path(state), readonly=True)
    try:
        keys = [k for (k,) in j._db.execute("SELECT key FROM meta WHERE key LIKE 'codec-choice/%'")]
        assert len(keys) == 2
        rec = json.loads(j.get_meta(next(k for k in keys if k.endswith("/s1"))) or "{}")
        rec2 = json.loads(j.get_meta(next(k for k in keys if k.endswith("/s2"))) or "{}")
    finally:
        j.close()
    assert set(rec["choices"]) == {"uint16 128x160", "uint8 128x160"}
    assert rec["choices"]["uint16 128x160"]["codec"] in s1["s1/0.tif"]["codec_why"]
    m = daemon[0].metrics
    # the detector's latest choice is 1, the others 0
    shown = {c["codec"] for r in (rec, rec2) for c in r["choices"].values()}
    assert sum(m.value("acqd_codec_choice", detector="t-ls", codec=c) or 0 for c in shown) == 1
    assert m.value("acqd_codec_choices_total", detector="t-ls", cause="start") == 2
    assert m.value("acqd_codec_choices_total", detector="t-ls", cause="character") == 1
    assert (m.value("acqd_codec_ratio", detector="t-ls") or 0) > 1.5
    # restore and verify read each file's codec from the stored object
    assert restore(state, dest, "s1/1.tif", tmp_path / "r.tif") == files["s1/1.tif"]
    r = run_acqd("verify", "--state-dir", str(state), "--dest", str(dest.parent))
    assert r.returncode == 0 and "5 copies OK" in r.stdout, r.stdout + r.stderr


async def test_incompressible_files_are_stored_byte_exact_and_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PROFILES, "t-ls", LIGHTSHEET + "codec_candidates: null\n")
    noise = np.random.default_rng(1).integers(0, 65536, size=(6, 128, 160), dtype=np.uint16)
    raw = tif(noise)
    more = tif(np.random.default_rng(5).integers(0, 65536, size=(6, 128, 160), dtype=np.uint16))
    watch, dest, state = await ship_releasing(
        tmp_path, "t-ls", {"n/noise.tif": raw, "n/more.tif": more, "f/fine.tif": tif(stack(3))}
    )
    assert not (watch / "n" / "noise.tif").exists()  # released: its byte-exact copy re-checked as a copy
    assert not (watch / "f" / "fine.tif").exists()
    assert (dest / "n" / "noise.tif").read_bytes() == raw  # the copy layout's name: no ~.zarr
    assert (dest / "n" / "more.tif").read_bytes() == more
    assert not (dest / "n" / "noise.tif~.zarr").exists()
    assert (dest / "f" / "fine.tif~.zarr").is_dir()
    files = manifest(dest, "n")
    for rel, data in (("n/noise.tif", raw), ("n/more.tif", more)):
        assert files[rel]["layout"] == "copy" and files[rel]["stored_bytes"] == len(data)
        assert "incompressible" in files[rel]["codec_why"]  # decided from the sample, before the name
    assert restore(state, dest, "n/noise.tif", tmp_path / "r.tif") == raw


async def test_fixed_codec_larger_than_the_source_falls_back_before_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No choice to make (one codec), and the Zarr copy would be larger: nothing is published under
    the Zarr name; the file is stored byte-exact under the copy layout's name, and released."""
    monkeypatch.setitem(PROFILES, "t-fixed", LIGHTSHEET + "codec_candidates: []\n")
    noise = np.random.default_rng(2).integers(0, 65536, size=(4, 128, 160), dtype=np.uint16)
    raw = tif(noise)
    watch, dest, state = await ship_releasing(tmp_path, "t-fixed", {"s/n.tif": raw})
    assert (dest / "s" / "n.tif").read_bytes() == raw
    assert sorted(p.name for p in (dest / "s").iterdir()) == ["n.tif", "~acqd-manifest.json"]  # no .zarr
    assert not (watch / "s" / "n.tif").exists()
    entry = manifest(dest, "s")["s/n.tif"]
    assert entry["layout"] == "copy" and "more than the source's" in entry["codec_why"]
    r = run_acqd("verify", "--state-dir", str(state), "--dest", str(dest.parent))
    assert r.returncode == 0 and "1 copy OK" in r.stdout, r.stdout + r.stderr


async def test_the_bytes_kept_beside_the_frames_are_not_bit_shuffled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TIFF's non-pixel bytes (its tags and descriptions, kept for a byte-exact restore) are text and
    structs: bit-shuffled as the frames are, the real lattice light-sheet stack's 1.5 MB of them
    stored as 1.2 MB, against 0.2 MB unshuffled. They are stored with the frames' Blosc and no
    shuffle, and the codec trial measures them so."""
    import numcodecs
    import zarr

    from acqd.codec import parse_label
    from acqd.layouts.choose import HeaderBytes, with_header

    monkeypatch.setitem(PROFILES, "t-fixed", LIGHTSHEET + "codec_candidates: []\n")
    frames = stack(5, n=6)
    notes = "".join(
        f"<Plane TheZ='{i}' DeltaT='{i * 0.0123:.4f}' ExposureTime='5.0' PositionX='{i * 1.7:.2f}'/>\n"
        for i in range(3000)
    )
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, frames, photometric="minisblack", description=notes)
    raw = buf.getvalue()
    _watch, dest, state = await ship_releasing(tmp_path, "t-fixed", {"s/d.tif": raw})
    group = zarr.open_group(dest / "s" / "d.tif~.zarr", mode="r")
    kept = group["acqd-restore"]
    blosc = [c for c in kept.metadata.to_dict()["codecs"] if c["name"] == "blosc"]
    assert blosc and blosc[0]["configuration"]["shuffle"] == "noshuffle", kept.metadata.to_dict()
    assert group["0"].metadata.to_dict()["codecs"][0]["configuration"]["codecs"][1]["configuration"]["shuffle"] == (
        "bitshuffle"
    )  # the frames as the profile says
    blob = np.asarray(kept[:]).tobytes()
    stored = (dest / "s" / "d.tif~.zarr" / "acqd-restore" / "c" / "0").stat().st_size
    shuffled = len(numcodecs.Blosc(cname="lz4", clevel=1, shuffle=2).encode(np.frombuffer(blob, dtype=np.uint8)))
    assert stored * 1.25 < shuffled, (stored, shuffled)
    assert restore(state, dest, "s/d.tif", tmp_path / "r.tif") == raw
    # the trial measures the header bytes as they are stored
    src = FrameSource("t", frames.shape, frames.dtype, {}, lambda a, b: frames[a:b], restore=blob)
    sampled = with_header(sample(src), src, "zarr")
    assert isinstance(sampled[-1], HeaderBytes)
    [t] = measure(sampled, [parse_label("blosc-lz4-1")], "zarr")
    bit = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=2)
    plain = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=0)
    assert t.stored_bytes == sum(len(bit.encode(f)) for f in sampled[:-1]) + len(plain.encode(sampled[-1].data))


async def ship_releasing(tmp_path: Path, detector: str, files: dict[str, bytes]) -> tuple[Path, Path, Path]:
    """Like tests.test_frames.ship, with release after verification (the copy is re-checked first)."""
    from tests.test_frames import write_profiles

    watch, dest, state = tmp_path / "acq", tmp_path / "central", tmp_path / "state"
    for rel, data in files.items():
        (watch / rel).parent.mkdir(parents=True, exist_ok=True)
        (watch / rel).write_bytes(data)
    dest.mkdir(exist_ok=True)
    cfg = Config.model_validate(
        {
            "instrument": "scope",
            "state_dir": str(state),
            "detectors_dir": str(write_profiles(tmp_path / "det")),
            "watch": [
                {
                    "path": str(watch),
                    "detector": detector,
                    "settle": "0.2s",
                    "placement": {"release_local": "after_verify"},
                }
            ],
            "tiers": {"central": {"url": f"file://{dest}"}},
            "limits": {"retry_initial": "50ms", "retry_max": "100ms"},
        }
    )
    result = await Daemon(cfg, once=True, retry_for=120).run(install_signals=False)
    assert result.pending == 0
    return watch, dest / "scope", state


def test_min_ratio_is_a_margin_not_a_loss() -> None:
    assert 1.0 < MIN_RATIO < 1.1
