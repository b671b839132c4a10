"""Codec specs and the encoders built from them. The only place that knows compression libraries.

The `copy` layout streams bytes through a standard zstd frame (python-zstandard: a streaming
compressor whose output `zstd -d` restores, with bounded memory for files of any size).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

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
