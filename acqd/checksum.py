"""The content checksum acqd records and verifies: xxh3-128 of the decoded content."""

from __future__ import annotations

import xxhash

ALGO = "xxh3-128"


class Hasher:
    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return f"{ALGO}:{self._h.hexdigest()}"
