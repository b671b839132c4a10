"""The `copy` layout: the source bytes, byte for byte, optionally inside one standard zstd frame."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from acqd.checksum import Hasher
from acqd.codec import StreamCodec
from acqd.errors import SourceChangedError, VerifyError
from acqd.ports import TierPort
from acqd.values import WriteResult


class CopyLayout:
    name = "copy"

    def __init__(self, codec: StreamCodec, chunk: int) -> None:
        self.codec = codec
        self.chunk = chunk

    def dest_name(self, rel: str) -> str:
        return rel + self.codec.suffix

    def write(self, source: BinaryIO, size: int, tier: TierPort, dest: str) -> WriteResult:
        hasher = Hasher()
        nread = 0

        def blocks() -> Iterator[bytes]:
            nonlocal nread
            enc = self.codec.encoder(size)
            while block := source.read(self.chunk):
                nread += len(block)
                if nread > size:
                    raise SourceChangedError(f"grew while being read (more than {size} bytes)")
                hasher.update(block)
                yield enc.compress(block)
            if nread != size:
                raise SourceChangedError(f"shrank while being read ({nread} of {size} bytes)")
            yield enc.flush()

        stored = tier.write_atomic(dest, blocks())
        return WriteResult(hasher.hexdigest(), nread, stored, self.codec.spec)

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
