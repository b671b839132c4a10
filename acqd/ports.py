"""The interfaces the parts meet at. Layouts write through a `TierPort`, never a concrete filesystem."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, BinaryIO, Protocol, runtime_checkable

from acqd.values import Outcome, WriteResult


class TierPort(Protocol):
    """A storage tier as the layouts see it. Paths are relative to the tier root, '/'-separated."""

    name: str
    local: bool  # a folder on this machine (file://, a NAS mount): objects written in place, by path

    def write_atomic(self, rel: str, chunks: Iterable[bytes], *, replace: bool = False) -> int:
        """Write `chunks` to a temporary name, make it durable, rename it to `rel`. Bytes written.
        Raises NameTakenError if `rel` exists (unless `replace`: acqd's reserved names only)."""
        ...

    def open_read(self, rel: str) -> BinaryIO: ...

    def size(self, rel: str) -> int | None: ...

    def remove(self, rel: str) -> None: ...

    def remove_temp(self, rel: str) -> bool:
        """Remove a leftover temporary of `rel` if there is one."""
        ...

    def url(self, rel: str) -> str: ...

    def path(self, rel: str) -> str:
        """The filesystem path of `rel` on the tier's filesystem."""
        ...

    def put_in_temp_tree(self, rel: str, key: str, data: bytes | Sequence[bytes]) -> None: ...

    def temp_tree(self, rel: str) -> str:
        """Path of the hidden temporary folder a multi-object layout writes `rel` into."""
        ...

    def commit_tree(self, rel: str) -> None:
        """Give the temporary folder of `rel` its final name; NameTakenError if `rel` exists."""
        ...

    def tree_size(self, path: str, only: Callable[[str], bool] | None = None) -> int: ...

    def find(self, rel: str = "") -> list[str]:
        """Every object below `rel`, relative to the tier root."""
        ...

    def atomic_file(self, rel: str) -> Any:
        """A seekable file written in place and published by `commit()` (local tiers), or None."""
        ...

    def zarr_store(self, path: str) -> Any:
        """A zarr-python store rooted at `path` on the tier's filesystem."""
        ...


class Layout(Protocol):
    """How a source file sits at rest. Methods are blocking and run in the I/O executor."""

    name: str

    @property
    def suffix(self) -> str:
        """What a stored name gets after its `~` marker (acqd.naming): "", ".tif", ".zarr", ".zst"."""
        ...

    def write(self, source: BinaryIO, size: int, tier: TierPort, dest: str) -> WriteResult: ...

    def verify(self, tier: TierPort, dest: str, expected: WriteResult) -> None:
        """Decode what is stored at `dest` and compare with `expected`; raise VerifyError."""
        ...

    def restore(self, tier: TierPort, dest: str, out: BinaryIO) -> str:
        """Write the source form of `dest` to `out`; return the checksum of what was written."""
        ...

    def source_checksum(self, source: BinaryIO, size: int) -> str | None:
        """The checksum `write` would record for `source`, without writing anything; None where it
        would not tell the file's bytes apart (a frame layout's source rebuilt from its tags)."""
        ...


class Reporter(Protocol):
    """Where outcomes go besides the journal: logs, metrics, MQTT events. Must not block."""

    def outcome(self, o: Outcome) -> None: ...


@runtime_checkable
class BatchReporter(Reporter, Protocol):
    """A reporter that takes a batch's outcomes (small files shipped or released together) in one
    call, in order, for less work per file; others get them one by one."""

    def batch_outcomes(self, batch: Sequence[Outcome]) -> None: ...
