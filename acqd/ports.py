"""The interfaces the parts meet at. Layouts write through a `TierPort`, never a concrete filesystem."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO, Protocol

from acqd.values import Outcome, WriteResult


class TierPort(Protocol):
    """A storage tier as the layouts see it. Paths are relative to the tier root, '/'-separated."""

    name: str

    def write_atomic(self, rel: str, chunks: Iterable[bytes]) -> int:
        """Write `chunks` to a temporary name, make it durable, rename it to `rel`. Bytes written."""
        ...

    def open_read(self, rel: str) -> BinaryIO: ...

    def size(self, rel: str) -> int | None: ...

    def remove(self, rel: str) -> None: ...

    def remove_temp(self, rel: str) -> bool:
        """Remove a leftover temporary of `rel` if there is one."""
        ...

    def url(self, rel: str) -> str: ...


class Layout(Protocol):
    """How a source file sits at rest. Methods are blocking and run in the I/O executor."""

    name: str

    def dest_name(self, rel: str) -> str:
        """The object name for a source at `rel` (adds the layout's suffix)."""
        ...

    def write(self, source: BinaryIO, size: int, tier: TierPort, dest: str) -> WriteResult: ...

    def verify(self, tier: TierPort, dest: str, expected: WriteResult) -> None:
        """Decode what is stored at `dest` and compare with `expected`; raise VerifyError."""
        ...

    def restore(self, tier: TierPort, dest: str, out: BinaryIO) -> str:
        """Write the source form of `dest` to `out`; return the checksum of what was written."""
        ...


class Reporter(Protocol):
    """Where outcomes go besides the journal: logs, metrics, MQTT events. Must not block."""

    def outcome(self, o: Outcome) -> None: ...
