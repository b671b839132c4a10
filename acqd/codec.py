"""Codec specs and the encoders built from them. The only place that knows compression libraries.

The `copy` layout streams bytes through a standard zstd frame (python-zstandard: a streaming
compressor whose output `zstd -d` restores, with bounded memory for files of any size).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import zstandard


class StreamEncoder(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class StreamCodec:
    """A byte-stream codec: `none` or `zstd` (one standard frame, with its own content checksum)."""

    name: str
    level: int = 3

    @property
    def spec(self) -> str:
        return "none" if self.name == "none" else f"zstd(level={self.level})"

    @property
    def suffix(self) -> str:
        return ".zst" if self.name == "zstd" else ""

    def encoder(self, size_hint: int = -1) -> StreamEncoder:
        if self.name == "none":
            return _Identity()
        cctx = zstandard.ZstdCompressor(level=self.level, write_checksum=True, write_content_size=True)
        return _ZstdEncoder(cctx.compressobj(size=size_hint))

    def decode_stream(self, stored: BinaryIO, chunk: int) -> Iterator[bytes]:
        """Decoded content of a stored stream, at most `chunk` bytes at a time."""
        if self.name == "none":
            while block := stored.read(chunk):
                yield block
            return
        reader = zstandard.ZstdDecompressor().stream_reader(stored, read_size=chunk, read_across_frames=True)
        try:
            while block := reader.read(chunk):
                yield block
        except zstandard.ZstdError as exc:
            raise ValueError(f"stored zstd stream is corrupt: {exc}") from None


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _ZstdEncoder:
    def __init__(self, obj: zstandard.ZstdCompressionObj) -> None:
        self._obj = obj

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._obj.compress(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._obj.flush()
        return out


def stream_codec(name: str, level: int = 3) -> StreamCodec:
    if name not in ("none", "zstd"):
        raise ValueError(f"unknown stream codec {name!r} (use 'none' or 'zstd')")
    return StreamCodec(name, level)


# --- frame codecs: numcodecs chains for typed frames ------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameCodec:
    """A lossless codec for typed frames, from a profile or policy spec.

    `blosc` (cname lz4|zstd|lz4hc|zlib, clevel 0-9, shuffle bitshuffle|shuffle|noshuffle) and
    `zstd` (level) become Zarr v3 codecs (which run numcodecs); `deflate`, `lzw` and `zstd` are the
    TIFF compressions RELION, cryoSPARC and MotionCor read.
    """

    id: str = "blosc"
    cname: str = "lz4"
    clevel: int = 1
    shuffle: str = "bitshuffle"
    level: int = 3

    @property
    def spec(self) -> str:
        if self.id == "blosc":
            return f"blosc(cname={self.cname},clevel={self.clevel},shuffle={self.shuffle})"
        if self.id in ("zstd", "deflate"):
            return f"{self.id}(level={self.level})"
        return self.id

    def numcodecs(self) -> Any:
        """The numcodecs codec (used by `acqd bench` and for encoding outside Zarr)."""
        import numcodecs

        if self.id == "blosc":
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[self.shuffle]
            return numcodecs.Blosc(cname=self.cname, clevel=self.clevel, shuffle=shuffle)
        if self.id == "zstd":
            return numcodecs.Zstd(level=self.level)
        if self.id == "deflate":
            return numcodecs.Zlib(level=self.level)
        raise ValueError(f"codec {self.id!r} has no numcodecs equivalent")

    def zarr_compressors(self, itemsize: int) -> tuple[Any, ...]:
        from zarr.codecs import BloscCodec, ZstdCodec

        if self.id == "blosc":
            opts: dict[str, Any] = {"cname": self.cname, "shuffle": self.shuffle}
            return (BloscCodec(clevel=self.clevel, typesize=itemsize, **opts),)
        if self.id == "zstd":
            return (ZstdCodec(level=self.level),)
        if self.id == "none":
            return ()
        raise ValueError(f"codec {self.id!r} cannot be used in a Zarr layout (use blosc or zstd)")

    def tiff_compression(self) -> tuple[str | None, int | None]:
        if self.id == "deflate":
            return "zlib", self.level
        if self.id == "zstd":
            return "zstd", self.level
        if self.id == "lzw":
            return "lzw", None
        if self.id == "none":
            return None, None
        raise ValueError(f"codec {self.id!r} cannot be used in a TIFF layout (use deflate, lzw or zstd)")


def frame_codec(spec: dict[str, Any] | None) -> FrameCodec:
    spec = dict(spec or {})
    cid = spec.pop("id", "blosc")
    allowed = {
        "blosc": {"cname", "clevel", "shuffle"},
        "zstd": {"level"},
        "deflate": {"level"},
        "lzw": set(),
        "none": set(),
    }
    if cid not in allowed:
        raise ValueError(f"unknown codec {cid!r} (blosc, zstd, deflate, lzw, none)")
    extra = set(spec) - allowed[cid]
    if extra:
        raise ValueError(f"codec {cid}: unknown option(s) {sorted(extra)}")
    if cid == "blosc":
        if spec.get("cname", "lz4") not in ("lz4", "lz4hc", "zstd", "zlib", "blosclz"):
            raise ValueError(f"blosc cname {spec['cname']!r} unknown")
        if spec.get("shuffle", "bitshuffle") not in ("bitshuffle", "shuffle", "noshuffle"):
            raise ValueError(f"blosc shuffle {spec['shuffle']!r} unknown")
        if not 0 <= int(spec.get("clevel", 1)) <= 9:
            raise ValueError("blosc clevel is 0-9")
    if "level" in spec and not 1 <= int(spec["level"]) <= 22:
        raise ValueError("level is 1-22")
    return FrameCodec(id=cid, **spec)
