"""Waiting with a deadline, without losing a cancel.

On Python 3.11, `asyncio.wait_for` swallows a cancel that arrives while the thing it waits for has
just completed: it returns the result and the cancelled task runs on. A task that was told to stop
(a file's stream taken over by its ship, a stage at shutdown) then never stops, and whoever waits
for it waits forever: seen in CI as a streamed movie never shipped. These helpers wait through
`asyncio.timeout` instead, which lets every cancel through (3.12 rebuilt `wait_for` the same way).
`asyncio.wait_for` is banned in the package (ruff TID251)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], seconds: float) -> T:
    """Await `aw` for at most `seconds`: its result, or TimeoutError (and `aw` cancelled)."""
    async with asyncio.timeout(seconds):
        return await aw


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` for at most `seconds`: whether it is set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
