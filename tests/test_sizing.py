"""`acqd bench`: the sizing tool users run on a fresh install."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from acqd.simulate import SimSpec, simulate
from acqd.sizing import bench, parse_codec, parse_link
from tests.conftest import run_acqd


def test_bench_json_for_a_detector() -> None:
    r = run_acqd(
        "bench", "--detector", "merlin-medipix", "--frames", "2", "--codecs", "blosc-lz4-1", "--codecs", "none",
        "--threads", "2", "--link", "1GbE", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["frame_shape"] == [512, 512] and doc["dtype"] == "uint16" and doc["link_bytes_per_s"] == 0.125e9
    by = {(x["codec"], x["threads"]): x for x in doc["results"]}
    assert set(by) == {("blosc-lz4-1", 1), ("blosc-lz4-1", 2), ("none", 1), ("none", 2)}
    assert by[("none", 1)]["ratio"] == 1.0
    blosc = by[("blosc-lz4-1", 1)]
    assert blosc["ratio"] > 2  # sparse 12-bit counts
    assert blosc["effective_gb_s"] == pytest.approx(min(blosc["encode_gb_s"], blosc["link_gb_s"]), abs=0.002)
    assert blosc["link_gb_s"] == pytest.approx(blosc["ratio"] * 0.125, rel=0.01)
    assert doc["peak_rate_bytes_per_s"] == 630e6 and blosc["cores_for_peak"] >= 1


def test_bench_on_the_users_own_file(tmp_path: Path) -> None:
    [movie] = simulate("direct-electron", tmp_path, SimSpec(files=1, frames=3, height=256, width=256))
    r = run_acqd("bench", "--data", str(movie), "--codecs", "zstd-1", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "3 frames 256x256 uint16" in r.stdout and "zstd-1" in r.stdout and "best sustained rate" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--codecs", "lzma-9"], "not a codec: 'lzma-9'"),
        (["--codecs", "blosc-lz5-1"], "blosc cname 'lz5' unknown"),
        (["--link", "carrier pigeon"], "not a link"),
        (["--detector", "nope"], "no simulated frames for 'nope'"),
        (["--data", "/nonexistent"], "no such file or folder"),
    ],
)
def test_bench_bad_input_is_a_clear_error(args: list[str], message: str) -> None:
    r = run_acqd("bench", *args)
    assert r.returncode == 2 and message in r.stderr, (r.returncode, r.stderr)  # a bad option (README: exit codes)
    assert "Traceback" not in r.stderr


def test_codec_names_and_links() -> None:
    assert parse_codec("blosc-zstd-3-shuffle").spec == "blosc(cname=zstd,clevel=3,shuffle=shuffle)"
    assert parse_codec("deflate-1").spec == "deflate(level=1)"
    assert parse_link("800MB/s") == 800e6 and parse_link("25GbE") == 3.125e9
    # bits are bits: '10Gb/s' was read as 10 GB/s, a link 8 times faster than it is (a review)
    assert parse_link("10Gbit/s") == parse_link("10GbE") == 1.25e9
    for ambiguous in ("10Gb/s", "10 Gb/s"):
        with pytest.raises(ValueError, match="'10Gbit/s' or bytes as '10GB/s'"):
            parse_link(ambiguous)
    with pytest.raises(ValueError, match="not a link"):
        parse_link("unlimited")


def test_every_codec_round_trips_and_lossless_means_lossless() -> None:
    rng = np.random.default_rng(1)
    frames = rng.poisson(0.8, size=(3, 64, 64)).astype(np.uint16)
    codecs = [parse_codec(c) for c in ("none", "blosc-lz4-1", "blosc-zstd-3", "zstd-1", "deflate-1", "lzw")]
    results = bench(frames, codecs, [1], 1.25e9, min_seconds=0.01)
    assert [r.codec for r in results] == ["none", "blosc-lz4-1", "blosc-zstd-3", "zstd-1", "deflate-1", "lzw"]
    assert all(r.ratio > 1.5 for r in results[1:])  # Poisson(0.8) in 16 bits compresses well
