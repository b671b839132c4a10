"""The `copy` layout: the source bytes, byte for byte, optionally inside one standard zstd frame."""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterator
from typing import BinaryIO

from acqd.checksum import Hasher
from acqd.codec import StreamCodec
from acqd.crash import crash_point
from acqd.errors import NameTakenError, SourceChangedError, VerifyError
from acqd.ports import TierPort
from acqd.values import WriteResult


class CopyLayout:
    name = "copy"

    def __init__(self, codec: StreamCodec, chunk: int, why: str | None = None, mismatch: str | None = None) -> None:
        self.codec = codec
        self.chunk = chunk
        self.why = why  # a frame layout's fallback: why this file is stored byte-exact
        self.mismatch = mismatch  # ... and, for a valid file it cannot represent, what the file is

    @property
    def suffix(self) -> str:
        """What the stored name adds after a `~` (acqd.naming): `.zst` for a zstd frame."""
        return self.codec.suffix

    def source_checksum(self, source: BinaryIO, size: int) -> str | None:
        """The checksum `write` records: the source's bytes as they are."""
        hasher = Hasher()
        n = 0
        while block := source.read(self.chunk):
            hasher.update(block)
            n += len(block)
            if n > size:
                return None
        return hasher.hexdigest() if n == size else None

    def write(self, source: BinaryIO, size: int, tier: TierPort, dest: str) -> WriteResult:
        hasher = Hasher()
        nread = 0
        t_read = t_encode = 0.0
        clock = time.perf_counter

        def blocks() -> Iterator[bytes]:
            nonlocal nread, t_read, t_encode
            enc = self.codec.encoder(size)
            while True:
                t0 = clock()
                block = source.read(self.chunk)
                if block:
                    hasher.update(block)
                t1 = clock()
                t_read += t1 - t0
                if not block:
                    break
                nread += len(block)
                if nread > size:
                    raise SourceChangedError(f"grew while being read (more than {size} bytes)")
                out = enc.compress(block)
                t_encode += clock() - t1
                yield out
            if nread != size:
                raise SourceChangedError(f"shrank while being read ({nread} of {size} bytes)")
            last = enc.flush()
            crash_point("after_encode")
            yield last

        start = clock()
        try:
            stored = tier.write_atomic(dest, blocks())
        except NameTakenError as exc:  # the caller verifies what is in the way against this result
            exc.result = WriteResult(
                hasher.hexdigest(), nread, 0, self.codec.spec, mismatch=self.mismatch, codec_why=self.why
            )
            raise
        total = clock() - start
        stages = (("read", t_read), ("encode", t_encode), ("write", max(0.0, total - t_read - t_encode)))
        return WriteResult(hasher.hexdigest(), nread, stored, self.codec.spec, stages, self.mismatch, self.why)

    def encode_whole(self, data: bytes) -> tuple[bytes, WriteResult]:
        """A small file's whole content encoded at once (batched shipping): what to store, and the
        result `write` would give (checksum of the source content, sizes, codec)."""
        t0 = time.perf_counter()
        hasher = Hasher()
        hasher.update(data)
        enc = self.codec.encoder(len(data))
        stored = enc.compress(data) + enc.flush()
        crash_point("after_encode")
        res = WriteResult(hasher.hexdigest(), len(data), len(stored), self.codec.spec)
        return stored, dataclasses.replace(res, stages=(("encode", time.perf_counter() - t0),))

    def verify_whole(self, tier: TierPort, dest: str, stored: bytes, expected: WriteResult) -> None:
        """`verify` on the bytes read back from `dest` (batched shipping reads many at once)."""
        if len(stored) != expected.stored_bytes:
            raise VerifyError(f"{tier.url(dest)}: stored size {len(stored)} != written {expected.stored_bytes}")
        hasher = Hasher()
        n = 0
        try:
            for block in self.codec.decode_stream(io.BytesIO(stored), self.chunk):
                hasher.update(block)
                n += len(block)
        except ValueError as exc:
            raise VerifyError(f"{tier.url(dest)}: {exc}") from None
        checksum = hasher.hexdigest()
        if n != expected.source_bytes or checksum != expected.source_checksum:
            raise VerifyError(
                f"{tier.url(dest)}: decoded {n} bytes {checksum}, expected "
                f"{expected.source_bytes} bytes {expected.source_checksum}"
            )

    def _decoded(self, tier: TierPort, dest: str) -> tuple[str, int]:
        hasher = Hasher()
        n = 0
        with tier.open_read(dest) as f:
            try:
                for block in self.codec.decode_stream(f, self.chunk):
                    hasher.update(block)
                    n += len(block)
            except ValueError as exc:
                raise VerifyError(f"{tier.url(dest)}: {exc}") from None
        return hasher.hexdigest(), n

    def verify(self, tier: TierPort, dest: str, expected: WriteResult) -> None:
        stored = tier.size(dest)
        if stored is None:
            raise VerifyError(f"{tier.url(dest)}: missing")
        if stored != expected.stored_bytes:
            raise VerifyError(f"{tier.url(dest)}: stored size {stored} != written {expected.stored_bytes}")
        checksum, n = self._decoded(tier, dest)
        if n != expected.source_bytes or checksum != expected.source_checksum:
            raise VerifyError(
                f"{tier.url(dest)}: decoded {n} bytes {checksum}, expected "
                f"{expected.source_bytes} bytes {expected.source_checksum}"
            )

    def restore(self, tier: TierPort, dest: str, out: BinaryIO) -> str:
        hasher = Hasher()
        with tier.open_read(dest) as f:
            try:
                for block in self.codec.decode_stream(f, self.chunk):
                    hasher.update(block)
                    out.write(block)
            except ValueError as exc:
                raise VerifyError(f"{tier.url(dest)}: {exc}") from None
        return hasher.hexdigest()
