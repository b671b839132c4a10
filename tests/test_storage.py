"""The storage contract: one set of tests run against every tier backend."""

from __future__ import annotations

import errno
import os
import posixpath
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acqd.checksum import Hasher
from acqd.codec import stream_codec
from acqd.errors import NameTakenError, PermanentError, SourceChangedError, TransientError, VerifyError
from acqd.layouts import build_layout
from acqd.naming import stored_name
from acqd.storage import DestinationError, Tier, open_tier, temp_name, translate
from acqd.values import WriteResult
from tests.conftest import digest, need
from tests.servers import SeaweedS3, Sshd


@pytest.fixture(params=["file", "memory", "s3", "sftp"])
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tier]:
    if request.param == "file":
        yield open_tier("central", f"file://{tmp_path}/central")
    elif request.param == "memory":
        t = open_tier("central", f"memory://acqd-test-{uuid.uuid4().hex}")
        yield t
        t.fs.rm(t.root, recursive=True)
    elif request.param == "s3":
        s3: SeaweedS3 = request.getfixturevalue("s3_server")
        bucket = s3.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
        # a small part size so the contract's larger writes take the multipart path
        t = open_tier("central", f"s3://{bucket}/central", s3.options(part_size="5MiB"))
        yield t
        t.close()
    else:
        sshd: Sshd = request.getfixturevalue("sshd_server")
        t = open_tier("central", sshd.url(tmp_path / "central"), sshd.options())
        yield t
        t.close()


class Boom(Exception):
    pass


def test_atomic_write_is_invisible_until_committed(tier: Tier) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a" * 1000
        visible = [p for p in tier.find() if not p.rpartition("/")[2].startswith(".")]
        assert visible == [], "something is visible under a final name before the commit"
        yield b"b" * 1000

    assert tier.write_atomic("inst/s/f.raw", chunks()) == 2000
    assert tier.find() == ["inst/s/f.raw"]
    with tier.open_read("inst/s/f.raw") as f:
        assert f.read() == b"a" * 1000 + b"b" * 1000


def test_failed_write_leaves_nothing(tier: Tier) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 100
        raise Boom()

    with pytest.raises(Boom):
        tier.write_atomic("inst/s/f.raw", chunks())
    assert [p for p in tier.find() if not p.endswith("/")] == []


def test_overwrite_replaces_whole(tier: Tier) -> None:
    tier.write_atomic("a/f", [b"old content that is longer"], replace=True)
    tier.write_atomic("a/f", [b"new"], replace=True)
    with tier.open_read("a/f") as f:
        assert f.read() == b"new"
    assert tier.size("a/f") == 3
    assert tier.size("a/missing") is None


def test_stale_temporary_is_found_and_removed(tier: Tier) -> None:
    tier.fs.makedirs(tier.path("a"), exist_ok=True)
    with tier.fs.open(tier.path(temp_name("a/f.raw")), "wb") as f:
        f.write(b"half")
    assert tier.remove_temp("a/f.raw") is True
    assert tier.remove_temp("a/f.raw") is False
    assert tier.find() == []


def test_delete(tier: Tier) -> None:
    tier.write_atomic("a/f", [b"1"])
    tier.remove("a/f")
    assert not tier.exists("a/f")


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (PermissionError(errno.EACCES, "denied"), DestinationError),
        (OSError(errno.EROFS, "ro"), DestinationError),
        (OSError(errno.ENOSPC, "full"), TransientError),
        (ConnectionResetError(errno.ECONNRESET, "reset"), TransientError),
        (TimeoutError("slow"), TransientError),
        (RuntimeError("odd"), TransientError),
    ],
)
def test_error_table(exc: BaseException, cls: type) -> None:
    mapped = translate("central", "write", "a/f", exc)
    assert type(mapped) is cls
    assert "tier central: write a/f" in str(mapped)
    assert isinstance(mapped, TransientError | PermanentError)


def test_an_sftp_failure_without_a_reason_names_what_it_usually_is() -> None:
    """OpenSSH answers a write to a full disk with a bare SSH_FX_FAILURE: the message says where to look."""
    import asyncssh

    mapped = translate("central", "write", "a/f", asyncssh.SFTPFailure("Failure"))
    assert type(mapped) is TransientError and "full disk" in str(mapped) and "free space" in str(mapped)


# --- the copy layout through each tier -------------------------------------------------------


class _Src:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        b = self.data[self.pos : self.pos + n]
        self.pos += len(b)
        return b


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_copy_layout_roundtrip(tier: Tier, compress: str, tmp_path: Path) -> None:
    data = os.urandom(300_000) + bytes(700_000)
    layout = build_layout("copy", compress, chunk=64 * 1024)
    dest = stored_name("inst", "s/f.raw", 1, layout.suffix)
    res = layout.write(_Src(data), len(data), tier, dest)  # type: ignore[arg-type]
    h = Hasher()
    h.update(data)
    assert res.source_checksum == h.hexdigest() and res.source_bytes == len(data)
    if compress == "zstd":
        assert dest.endswith(".zst") and res.stored_bytes < len(data)
    layout.verify(tier, dest, res)
    out = tmp_path / "restored"
    with open(out, "wb") as f:
        assert layout.restore(tier, dest, f) == res.source_checksum
    assert out.read_bytes() == data


def test_verify_catches_a_corrupt_copy(tier: Tier) -> None:
    data = os.urandom(50_000)
    layout = build_layout("copy", "none", chunk=64 * 1024)
    res = layout.write(_Src(data), len(data), tier, "a/f")  # type: ignore[arg-type]
    tier.write_atomic("a/f", [data[:-1] + bytes([data[-1] ^ 1])], replace=True)  # bit rot
    with pytest.raises(VerifyError):
        layout.verify(tier, "a/f", res)
    with pytest.raises(VerifyError, match="stored size"):
        layout.verify(tier, "a/f", WriteResult(res.source_checksum, res.source_bytes, 1, "none"))


def test_the_check_probe_writes_reads_back_and_deletes_leaving_nothing(tier: Tier) -> None:
    """`acqd check`'s write probe on every backend: under a temporary name, and gone afterwards."""
    tier.write_atomic("scope/data.bin", [b"data"])
    tier.probe("scope")
    assert tier.find("") == ["scope/data.bin"]


def test_source_that_shrinks_mid_copy_is_not_committed(tier: Tier) -> None:
    layout = build_layout("copy", "zstd", chunk=64 * 1024)
    with pytest.raises(SourceChangedError):
        layout.write(_Src(b"x" * 1000), 5000, tier, "a/f.zst")  # type: ignore[arg-type]
    assert tier.find() == []


def test_zstd_copy_is_a_standard_frame(tmp_path: Path) -> None:
    zstd = need("zstd", "checks that `zstd -d` restores the .zst files acqd writes")
    t = open_tier("central", f"file://{tmp_path}/c")
    data = bytes(range(256)) * 5000
    layout = build_layout("copy", "zstd", chunk=64 * 1024)
    layout.write(_Src(data), len(data), t, "f.raw.zst")  # type: ignore[arg-type]
    subprocess.run([zstd, "-d", "-q", str(tmp_path / "c" / "f.raw.zst"), "-o", str(tmp_path / "f.raw")], check=True)
    assert (tmp_path / "f.raw").read_bytes() == data


def test_stream_codec_names() -> None:
    assert stream_codec("zstd", 5).spec == "zstd(level=5)"
    with pytest.raises(ValueError):
        stream_codec("lzma")


# --- large objects: the multipart path on S3, the same contract everywhere ----------------------

MiB = 2**20


def test_large_write_is_atomic_whole_and_leaves_no_temporaries(tier: Tier) -> None:
    parts = [os.urandom(MiB) for _ in range(12)]

    def chunks() -> Iterator[bytes]:
        for i, p in enumerate(parts):
            if i == 7:  # past the first parts (S3: a multipart upload is under way)
                assert "big/f.raw" not in tier.find(), "visible under its final name before the commit"
            yield p

    assert tier.write_atomic("big/f.raw", chunks()) == 12 * MiB
    assert tier.find() == ["big/f.raw"]
    with tier.open_read("big/f.raw") as f:
        assert digest(f.read()) == digest(b"".join(parts))


def test_large_write_that_fails_leaves_nothing(tier: Tier) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield os.urandom(MiB)
        raise Boom()

    with pytest.raises(Boom):
        tier.write_atomic("big/f.raw", chunks())
    assert tier.find() == []


def test_commit_tree_never_replaces_an_existing_tree(tier: Tier) -> None:
    for version in (b"old", b"new"):
        tmp = tier.temp_tree("a/s~.zarr")
        for name in ("zarr.json", "c/0/0", "c/0/1"):
            tier.fs.makedirs(posixpath.dirname(f"{tmp}/{name}"), exist_ok=True)
            with tier.fs.open(f"{tmp}/{name}", "wb") as f:
                f.write(version + name.encode())
        if version == b"old":
            tier.commit_tree("a/s~.zarr")
        else:
            with pytest.raises(NameTakenError):
                tier.commit_tree("a/s~.zarr")
            tier.remove_temp("a/s~.zarr")
    assert tier.find() == ["a/s~.zarr/c/0/0", "a/s~.zarr/c/0/1", "a/s~.zarr/zarr.json"]
    for name in ("zarr.json", "c/0/0", "c/0/1"):
        with tier.open_read(f"a/s~.zarr/{name}") as f:
            assert f.read() == b"old" + name.encode()


def test_write_atomic_never_replaces_unless_asked(tier: Tier) -> None:
    tier.write_atomic("s/f.raw", [b"first"])
    with pytest.raises(NameTakenError):
        tier.write_atomic("s/f.raw", [b"second"])
    with tier.open_read("s/f.raw") as f:
        assert f.read() == b"first"
    assert tier.find() == ["s/f.raw"]  # no temporary left behind
    tier.write_atomic("s/~acqd-manifest.json", [b"1"], replace=True)
    tier.write_atomic("s/~acqd-manifest.json", [b"2"], replace=True)  # acqd's own reserved names only
    with tier.open_read("s/~acqd-manifest.json") as f:
        assert f.read() == b"2"


def test_write_all_writes_every_piece_in_order_past_the_systems_pieces_per_call(tmp_path: Path) -> None:
    """A shard is written in its pieces (chunks, then index) with writev: more pieces than one call
    takes, empty pieces and a pipe's short writes must still give every byte, in order."""
    import threading

    from acqd.storage.base import _IOV_MAX, write_all

    rng = np.random.default_rng(3)
    parts = [rng.bytes(int(n)) for n in rng.integers(0, 300, size=_IOV_MAX * 2 + 5)]
    path = tmp_path / "shard"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        write_all(fd, parts)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(parts)
    # a pipe takes at most its buffer a call: writev returns short, write_all goes on where it stopped
    big = [rng.bytes(100_000) for _ in range(12)]
    r, w = os.pipe()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(iter(lambda: os.read(r, 65536), b"")))
    reader.start()
    try:
        write_all(w, big)
    finally:
        os.close(w)
    reader.join()
    os.close(r)
    assert b"".join(got) == b"".join(big)


@pytest.mark.parametrize("odd", ["stack?.tif", "stack*.tif", "stack[A].tif"])
def test_a_name_with_glob_characters_touches_exactly_its_own_objects(tier: Tier, odd: str) -> None:
    """fsspec's rm(recursive), copy and mv take a path for a glob pattern. A stored name is a
    source's name and may hold `?`, `*` or `[..]`: its commit, its temporary's removal and its
    deletion must act on that name alone, never on `stackA.tif~.zarr` beside it (found by a review
    of the remote tiers: on S3 the first stack's only copy was deleted, and the second never shipped)."""

    def put_tree(rel: str, body: bytes) -> None:
        tmp = tier.temp_tree(rel)
        for name in ("c/0/0", "zarr.json"):
            tier.fs.makedirs(posixpath.dirname(f"{tmp}/{name}"), exist_ok=True)
            with tier.fs.open(f"{tmp}/{name}", "wb") as f:
                f.write(body + name.encode())
        tier.commit_tree(rel)

    mine, theirs = f"s/{odd}~.zarr", "s/stackA.tif~.zarr"
    put_tree(theirs, b"A ")
    tier.write_atomic("s/stackA.tif", [b"a file"])
    put_tree(mine, b"odd ")
    assert sorted(tier.find("s")) == sorted(
        [f"{theirs}/c/0/0", f"{theirs}/zarr.json", "s/stackA.tif", f"{mine}/c/0/0", f"{mine}/zarr.json"]
    )
    with tier.open_read(f"{mine}/zarr.json") as f:
        assert f.read() == b"odd zarr.json"
    # a leftover temporary of the odd name, as a crash leaves it, then the copy itself
    tmp = tier.temp_tree(mine)
    tier.fs.makedirs(f"{tmp}/c", exist_ok=True)
    with tier.fs.open(f"{tmp}/c/x", "wb") as f:
        f.write(b"left by a crash")
    assert tier.remove_temp(mine)
    tier.remove_any(mine, tree=True)
    assert sorted(tier.find("s")) == sorted([f"{theirs}/c/0/0", f"{theirs}/zarr.json", "s/stackA.tif"])
    with tier.open_read(f"{theirs}/c/0/0") as f:
        assert f.read() == b"A c/0/0"


def test_an_s3_zarr_commit_copies_every_shard_before_any_metadata_and_the_root_last(
    s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an adversarial review (thirty-second session): a commit to S3 that a failing server
    cut part way left arrays whose zarr.json was copied before all their shards: array `0` opened from
    the final prefix with shards missing. The shards go first, then the arrays' metadata (deepest
    first), the root's last: a partial prefix holds no array that opens before its data is there."""
    bucket = s3_server.bucket(f"acqd-{uuid.uuid4().hex[:12]}")
    t = open_tier("central", f"s3://{bucket}/central", s3_server.options())
    try:
        rel = "a/s~.zarr"
        tmp = t.temp_tree(rel)
        names = ["zarr.json", "0/zarr.json", "0/c/0/0/0", "0/c/1/0/0", "acqd-restore/zarr.json", "acqd-restore/c/0"]
        for name in names:
            with t.fs.open(f"{tmp}/{name}", "wb") as f:
                f.write(name.encode())
        copied: list[str] = []
        real = t._call

        def call(method: str, **kwargs: Any) -> Any:
            if method == "copy_object":
                copied.append(kwargs["Key"].split(f"{rel}/", 1)[1])
            return real(method, **kwargs)

        monkeypatch.setattr(t, "_call", call)
        t.commit_tree(rel)
        assert sorted(copied) == sorted(names), copied
        metadata = [i for i, k in enumerate(copied) if k.endswith("zarr.json")]
        assert metadata == list(range(len(names) - 3, len(names))) and copied[-1] == "zarr.json", copied
        assert sorted(t.find()) == sorted(f"{rel}/{n}" for n in names)
    finally:
        t.close()
