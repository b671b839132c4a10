"""Every core on one movie (issue 15): the frames of one file encoded and verified on a pool of threads.

The parallel paths must give exactly what the one-thread paths give (the same bytes written, the same
frames read back, in order), and verification on them stays as strong: a part that decodes short, a
shard index that does not match its checksum, a chunk that does not decode, all fail, even where a
reused buffer happens to hold the right pixels from the frame before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from acqd.errors import FormatError, VerifyError
from acqd.layouts import build_layout
from acqd.layouts.framepool import FramePlan, Part, decoded, zarr_frames
from acqd.readers import Expect
from acqd.simulate import SimSpec, simulate
from acqd.storage import open_tier
from tests.test_fidelity import libtiff_pages


class _Src:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.file = open(path, "rb")  # noqa: SIM115 (closed by the test)

    def check(self) -> None:
        pass


def _ship(movie: Path, dest: Path, codec: dict[str, Any], threads: int, layout: str = "tiff") -> tuple[Any, Any]:
    lay: Any = build_layout(
        layout, codec=codec, reader="mrc", expect=Expect(), shard_bytes=3 * 64 * 56, threads=threads
    )
    lay.never_larger = False
    tier = open_tier("t", f"file://{dest}")
    src = _Src(movie)
    try:
        res = lay.write(src, movie.stat().st_size, tier, "m" + lay.suffix)
    finally:
        src.file.close()
    lay.verify(tier, "m" + lay.suffix, res)
    return lay, res


@pytest.mark.parametrize("codec", [{"id": "lzw"}, {"id": "deflate", "level": 1}, {"id": "zstd", "level": 1}])
def test_tiff_written_on_threads_is_the_file_one_thread_writes(tmp_path: Path, codec: dict[str, Any]) -> None:
    """Pages encoded on 3 threads, several at once, land in order: the file is byte for byte the one
    a single thread writes, and its pages are the movie's frames (rows flipped, as for RELION), as
    tifffile and libtiff read them."""
    [movie] = simulate("gatan-k3", tmp_path / "src", SimSpec(files=1, frames=7, height=64, width=56, seed=3))
    digests = []
    for threads in (1, 3):
        dest = tmp_path / f"out{threads}"
        dest.mkdir()
        _ship(movie, dest, codec, threads)
        digests.append(hashlib.sha256((dest / "m.tif").read_bytes()).hexdigest())
        with tifffile.TiffFile(dest / "m.tif") as tif:
            pages = np.stack([p.asarray() for p in tif.pages])
    assert digests[0] == digests[1]
    import mrcfile

    with mrcfile.open(movie) as m:
        frames = np.asarray(m.data)[:, ::-1]
    assert np.array_equal(pages, frames)
    # and libtiff, what RELION reads through, decodes it to the same pixels (deflate 1-3: ISA-L's streams)
    assert np.array_equal(libtiff_pages(tmp_path / "out3" / "m.tif", tmp_path, frames.dtype), frames)


def test_a_part_that_decodes_short_fails_even_when_the_reused_buffer_holds_the_right_pixels() -> None:
    """Two equal frames: the second's part decodes to fewer bytes than the frame holds. Its buffer is
    the first frame's (reused), which already holds the right pixels: verification must still fail."""
    frame = np.arange(64, dtype=np.uint8).reshape(8, 8)

    def good(data: Any, out: memoryview) -> int:
        out[:] = bytes(data)
        return len(out)

    def short(data: Any, out: memoryview) -> int:
        out[: len(out) // 2] = bytes(data)[: len(out) // 2]
        return len(out) // 2

    def plans(second: Any) -> list[FramePlan]:
        raw = frame.tobytes()
        return [
            FramePlan((8, 8), np.dtype(np.uint8), [Part(raw, 0, 64, good, "frame 0")]),
            FramePlan((8, 8), np.dtype(np.uint8), [Part(raw, 0, 64, second, "frame 1")]),
        ]

    for threads in (1, 2):
        assert [f.copy() for f in decoded(plans(good), threads)][1].tobytes() == frame.tobytes()
        with pytest.raises(VerifyError, match="frame 1 decodes to 32 bytes, not the 64"):
            for f in decoded(plans(short), threads):
                assert f.tobytes() == frame.tobytes()


def _array(path: Path, shape: tuple[int, ...], shards: tuple[int, ...], compressors: Any) -> tuple[Any, np.ndarray]:
    data = np.random.default_rng(1).integers(0, 1000, shape).astype("<u2")
    a = zarr.create_array(
        store=str(path),
        shape=shape,
        dtype="<u2",
        chunks=(1,) * (len(shape) - 2) + shape[-2:],
        shards=shards,
        compressors=compressors,
        fill_value=0,
        config={"write_empty_chunks": True},
    )
    a[...] = data
    return a, data


def _reader(path: Path) -> Any:
    def read(key: str) -> bytes | None:
        p = path / key
        return p.read_bytes() if p.exists() else None

    return read


LZ4 = (BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle", typesize=2),)


@pytest.mark.parametrize(
    ("shape", "shards", "compressors"),
    [
        ((5, 16, 12), (2, 16, 12), LZ4),  # a movie, the last shard partly filled
        ((5, 16, 12), (5, 16, 12), (ZstdCodec(level=3),)),
        ((5, 16, 12), (3, 16, 12), ()),
        ((3, 5, 16, 12), (2, 5, 16, 12), LZ4),  # a 4D-STEM scan, whole scan rows per shard
        ((3, 5, 16, 12), (1, 2, 16, 12), LZ4),  # part of a scan row per shard
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_shards_read_by_their_index_give_what_zarr_gives(
    tmp_path: Path, shape: tuple[int, ...], shards: tuple[int, ...], compressors: Any, threads: int
) -> None:
    a, data = _array(tmp_path, shape, shards, compressors)
    frames = zarr_frames(a, _reader(tmp_path), threads)
    assert frames is not None
    got = np.stack([f.copy() for f in frames])
    assert np.array_equal(got, data.reshape(-1, *shape[-2:]))
    assert np.array_equal(got, np.asarray(a[...]).reshape(-1, *shape[-2:]))


def test_shards_out_of_frame_order_are_left_to_zarr(tmp_path: Path) -> None:
    a, _ = _array(tmp_path, (3, 5, 16, 12), (2, 2, 16, 12), LZ4)
    assert zarr_frames(a, _reader(tmp_path), 2) is None


def test_a_shard_index_or_chunk_that_changed_fails_and_a_missing_shard_reads_as_zarr_reads_it(tmp_path: Path) -> None:
    a, data = _array(tmp_path, (5, 16, 12), (2, 16, 12), LZ4)
    shard = tmp_path / "c" / "1" / "0" / "0"
    good = shard.read_bytes()

    def read_all() -> np.ndarray:
        frames = zarr_frames(a, _reader(tmp_path), 2)
        assert frames is not None
        return np.stack([f.copy() for f in frames])

    bad = bytearray(good)
    bad[-30] ^= 0xFF  # in the index
    shard.write_bytes(bad)
    with pytest.raises(VerifyError, match="shard c/1/0/0: the shard index's checksum does not match"):
        read_all()
    bad = bytearray(good)
    bad[20] ^= 0xFF  # in the first chunk's Blosc stream
    shard.write_bytes(bad)
    with pytest.raises(VerifyError, match=r"shard c/1/0/0, chunk \(0,\) does not decode"):
        read_all()
    shard.unlink()  # not stored: zarr reads the fill value
    got = read_all()
    assert np.array_equal(got, np.asarray(a[...]))
    assert (got[2:4] == 0).all() and np.array_equal(got[[0, 1, 4]], data[[0, 1, 4]])


@pytest.mark.parametrize("codec", [{"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "bitshuffle"}])
def test_zarr_movie_written_by_shards_and_verified_on_threads(tmp_path: Path, codec: dict[str, Any]) -> None:
    """The zarr layout writes a K3-like movie (uint8, 7 frames, 3 per shard: the last one partly
    filled) shard by shard, which zarr reads as the movie; it verifies it by the shard index on 1 and
    2 threads, and the same copy with one pixel changed fails on both."""
    [movie] = simulate("gatan-k3", tmp_path / "src", SimSpec(files=1, frames=7, height=64, width=56, seed=3))
    dest = tmp_path / "out"
    dest.mkdir()
    lay, res = _ship(movie, dest, codec, 2, layout="zarr")
    tier = open_tier("t", f"file://{dest}")
    arr = zarr.open_array(str(dest / "m.zarr" / "0"), mode="r+")
    import mrcfile

    with mrcfile.open(movie) as m:  # the shards acqd wrote itself read back through zarr as the movie
        assert np.array_equal(np.asarray(arr[...]), np.asarray(m.data))
    assert sorted(p.name for p in (dest / "m.zarr" / "0" / "c").iterdir()) == ["0", "1", "2"]
    assert zarr_frames(arr, _reader(dest / "m.zarr" / "0"), 2) is not None  # the fast path, not zarr's
    frame = np.asarray(arr[6])
    frame[0, 0] ^= 1
    arr[6] = frame
    for threads in (1, 2):
        lay.threads = threads
        with pytest.raises(VerifyError, match="checksum"):
            lay.verify(tier, "m.zarr", res)


@pytest.mark.parametrize("layout", ["zarr", "tiff"])
def test_a_shard_read_in_pieces_is_stored_as_when_read_whole(
    tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Source frames are read in pieces of at most READ_PIECE bytes (below the allocator's mmap
    threshold), a shard's frames gathered from several pieces: the copy is byte for byte the one a
    shard read whole gives, and reads back as the movie. Pieces of 2 frames across shards of 3 (one
    piece ends inside a shard, the next spans two) and of 1 frame."""
    import mrcfile

    import acqd.layouts.frames as frames_mod

    [movie] = simulate("gatan-k3", tmp_path / "src", SimSpec(files=1, frames=7, height=64, width=56, seed=3))
    codec = {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "bitshuffle"} if layout == "zarr" else {"id": "lzw"}
    stored = {}
    for frames in (1000, 2, 1):
        monkeypatch.setattr(frames_mod, "READ_PIECE", frames * 64 * 56)
        dest = tmp_path / f"out{frames}"
        dest.mkdir()
        _ship(movie, dest, codec, 2, layout=layout)
        stored[frames] = {
            str(p.relative_to(dest)): hashlib.sha256(p.read_bytes()).hexdigest() for p in dest.rglob("*") if p.is_file()
        }
    assert stored[2] == stored[1000] and stored[1] == stored[1000] and len(stored[1000]) >= 1
    with mrcfile.open(movie) as m:
        want = np.asarray(m.data)
    if layout == "zarr":
        assert np.array_equal(np.asarray(zarr.open_array(str(tmp_path / "out2" / "m.zarr" / "0"), mode="r")[...]), want)
    else:
        with tifffile.TiffFile(tmp_path / "out2" / "m.tif") as tif:
            assert np.array_equal(np.stack([p.asarray() for p in tif.pages]), want[:, ::-1])


# --- blocks read straight into arrays, hashing without whole-frame copies, strips in one read ---


def test_blocks_read_straight_into_arrays_are_the_files_frames(tmp_path: Path) -> None:
    """The MRC reader reads blocks straight into arrays (no bytes object in between): each block is
    the file's bytes, and holding one does not change as later ones are read."""
    import mrcfile

    from acqd.readers import open_frames

    data = np.random.default_rng(5).integers(0, 255, size=(12, 16, 20), dtype=np.uint8)
    path = tmp_path / "m.mrc"
    with mrcfile.new(str(path)) as m:
        m.set_data(data)
    with open(path, "rb") as f:
        src = open_frames("mrc", f, path.stat().st_size, Expect(), {})
        held = [src.read(i, i + 2) for i in range(0, 12, 2)]  # all alive at once
        for i, block in enumerate(held):
            assert (block == data[2 * i : 2 * i + 2]).all()
        del held, block
        again = [src.read(i, i + 3).copy() for i in range(0, 12, 3)]  # each freed before the next
        with pytest.raises(FormatError, match="truncated"):
            src.read(11, 13)
    assert (np.concatenate(again) == data).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[::-1],  # rows flipped (MRC to TIFF)
        lambda a: a.astype(">u2"),  # big-endian pixels
        lambda a: a.astype(">u2")[:, ::-1],
        lambda a: np.stack([a, a + 1])[:, ::-1, ::2],  # a 3-D block, strided
        lambda a: a.astype(np.float32).T,
        lambda a: a[:0],
    ],
)
def test_hashing_in_pieces_is_the_checksum_of_the_canonical_copy(make: Any, monkeypatch: Any) -> None:
    from acqd.checksum import Hasher
    from acqd.layouts import frames

    monkeypatch.setattr(frames, "HASH_PIECE", 100)  # several pieces per frame
    block = make(np.random.default_rng(1).integers(0, 4000, size=(37, 23)).astype(np.uint16))
    want, got = Hasher(), Hasher()
    want.update(frames.canonical(block).data)
    frames.hash_canonical(got, block)
    assert got.hexdigest() == want.hexdigest()


def test_strips_are_read_in_one_go_when_they_follow_each_other_and_one_by_one_otherwise() -> None:
    import io

    from acqd.layouts.framepool import _strips

    blob = bytes(range(256)) * 40
    f = io.BytesIO(blob)
    for offsets, counts in [
        ([100, 200, 301], [100, 101, 50]),  # one after another, a pad byte apart
        ([3000, 100, 5000], [10, 20, 30]),  # scattered
    ]:
        parts = _strips(f, offsets, counts)
        assert [bytes(p) for p in parts] == [blob[o : o + c] for o, c in zip(offsets, counts, strict=True)]
    # a strip the file ends inside comes back short, and one past its end empty: the caller says which
    parts = _strips(f, [len(blob) - 50, len(blob) - 10, len(blob)], [40, 30, 5])
    assert [len(p) for p in parts] == [40, 10, 0]


_IMPORT_RACE = """
import sys, threading
import acqd.daemon  # what the daemon has imported before it ships anything
if sys.argv[1] == "warm":
    from acqd.memory import warm_imports
    warm_imports()
errors = []
def use(fn):
    try:
        fn()
    except Exception as exc:
        errors.append(repr(exc))
def codecs():
    from zarr.codecs import BytesCodec  # noqa: F401
def api():
    import zarr
    zarr.api.asynchronous.open_group
def buffer():
    from zarr.core.buffer import default_buffer_prototype  # noqa: F401
threads = [threading.Thread(target=use, args=(f,)) for f in (codecs, api, buffer, api)]
for t in threads:
    t.start()
for t in threads:
    t.join()
use(api)
print(errors)
sys.exit(1 if errors else 0)
"""


def test_the_daemon_imports_numpy_only_with_the_frame_libraries_and_those_import_all_of_them() -> None:
    """numpy, tifffile and mrcfile are imported where first used (acqd.lazy): importing the CLI and the
    daemon does not import them (0.1 s of every start), and `warm_imports`, which the daemon runs
    beside its first scan and whose failure stops it (a broken installation), imports every one of
    them, so that no I/O thread imports one first and a broken one is found at start (a review found
    a broken mrcfile quarantining each movie after five attempts instead)."""
    lazy = ("numpy", "tifffile", "mrcfile.utils", "mrcfile.dtypes", "zarr", "imagecodecs")
    steps = ("import acqd.cli, acqd.daemon, acqd.memory\n", "acqd.memory.warm_imports()\n")
    assert _modules_after(steps, lazy, absent=(False, True)) == ["[]", "[]"]


def _modules_after(steps: tuple[str, ...], names: tuple[str, ...], absent: tuple[bool, ...]) -> list[str]:
    """In a fresh interpreter, after each of `steps` (Python source): which of `names` are imported
    (or, where `absent`, not imported), one printed list per step."""
    import subprocess
    import sys

    code = "import sys\n" + "".join(
        step + f"print(sorted(m for m in {names!r} if (m {'not ' if out else ''}in sys.modules)))\n"
        for step, out in zip(steps, absent, strict=True)
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()[-len(steps) :]


@pytest.mark.parametrize("root", ["generic", "gatan-k3, layout copy"])
def test_a_daemon_that_only_copies_imports_none_of_the_frame_libraries(tmp_path: Path, root: str) -> None:
    """`acqd run` of a watch root whose files are all copied byte for byte (the generic profile:
    sidecars, EPU XML and JPEG, small files by the thousand; or a camera's profile placed with the
    copy layout) ships them without importing numpy, zarr, tifffile or the codecs: 0.3-0.5 s of CPU
    at every start, taken from the first files' shipping (BENCHMARKS.md, twenty-fifth session)."""
    watch, dest = tmp_path / "acq", tmp_path / "central"
    (watch / "s").mkdir(parents=True)
    for i in range(20):
        (watch / "s" / f"FoilHole_{i}_Data.xml").write_bytes(b"<x/>" * (i + 1))
    extra = ""
    if root != "generic":
        simulate("gatan-k3", watch / "movies", SimSpec(files=2, frames=2, height=64, width=64))
        extra = ", detector: gatan-k3, placement: {layout: copy, compress: zstd}"
    dest.mkdir()
    conf = tmp_path / "acqd.yaml"
    conf.write_text(
        f"instrument: scope\nstate_dir: {tmp_path / 'state'}\n"
        f"watch:\n  - {{path: {watch}, settle: 0.1s, mode: poll{extra}}}\ntiers:\n  central: {{url: 'file://{dest}'}}\n"
    )
    lazy = ("numpy", "tifffile", "mrcfile", "zarr", "imagecodecs", "numcodecs")
    run = (
        f"import acqd.cli\nsys.argv = ['acqd', 'run', '--once', '--config', {str(conf)!r}]\n"
        "try:\n    acqd.cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    )
    assert _modules_after((run,), lazy, absent=(False,)) == ["[]"]
    assert len(list(dest.rglob("FoilHole_*"))) == 20
    movies = [p.name for p in dest.rglob("movie_*")]
    assert len(movies) == (0 if root == "generic" else 2) and all(m.endswith("~.zst") for m in movies), movies


def test_the_frame_libraries_are_imported_before_io_threads_race_to_import_them() -> None:
    """zarr's first import is not thread-safe: I/O threads that reach it at once can be handed a
    half-initialised module, and the process keeps a broken `zarr` from then on (every Zarr ship
    failed and was quarantined). The daemon and the hub import the frame libraries in one thread
    first (`warm_imports`): after it, threads using zarr at once never fail. Without it the same race
    failed 6 runs of 6 here (`python -c "$_IMPORT_RACE" cold`)."""
    import subprocess
    import sys

    for _ in range(4):
        r = subprocess.run([sys.executable, "-c", _IMPORT_RACE, "warm"], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
