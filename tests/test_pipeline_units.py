"""Async units of the pipeline: the byte budget that bounds memory, waits that never lose a cancel,
and version naming."""

from __future__ import annotations

import asyncio
import random

import pytest

from acqd.aio import wait_set, within
from acqd.naming import stored_component
from acqd.pipeline import ByteBudget


async def test_byte_budget_never_exceeds_its_limit() -> None:
    budget = ByteBudget(1000)
    peak = 0
    rng = random.Random(3)

    async def user(n: int) -> None:
        nonlocal peak
        got = await budget.acquire(n)
        peak = max(peak, budget.used)
        assert budget.used <= budget.limit
        await asyncio.sleep(rng.random() / 1000)
        await budget.release(got)

    await asyncio.gather(*(user(rng.randint(1, 1500)) for _ in range(300)))
    assert budget.used == 0
    assert 0 < peak <= 1000


async def test_byte_budget_blocks_until_released() -> None:
    budget = ByteBudget(100)
    first = await budget.acquire(80)
    waiter = asyncio.create_task(budget.acquire(50))
    await asyncio.sleep(0)
    assert not waiter.done()
    await budget.release(first)
    assert await asyncio.wait_for(waiter, 1) == 50


@pytest.mark.parametrize("turns", range(6))
async def test_a_cancel_as_the_wait_ends_stops_the_task(turns: int) -> None:
    """A task napping on an event (a stream between frames, the tracker, the scanner) is cancelled
    just as the event fires, `turns` loop turns after it: the cancel stops it. (Python 3.11's
    asyncio.wait_for returned the event's result instead and the task ran on: a movie's ship waited
    for its stream to stop, forever.)"""
    wake = asyncio.Event()
    rounds = 0

    async def napper() -> None:
        nonlocal rounds
        while True:
            await wait_set(wake, 30)
            wake.clear()
            rounds += 1

    task = asyncio.create_task(napper())
    await asyncio.sleep(0.01)
    wake.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled(), f"the cancel was lost ({rounds} round(s) after it)"


async def test_within_and_wait_set_keep_their_deadlines() -> None:
    wake = asyncio.Event()
    assert await wait_set(wake, 0.01) is False
    wake.set()
    assert await wait_set(wake, 0.01) is True
    assert await within(asyncio.sleep(0, "x"), 1) == "x"
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(5), 0.01)


@pytest.mark.parametrize(
    ("rel", "version", "expected"),
    [
        ("frame_001.tif", 1, "frame_001.tif"),
        ("frame_001.tif", 2, "frame_001~v2.tif"),
        ("movie.mrc.xml", 3, "movie~v3.mrc.xml"),
        ("noext", 2, "noext~v2"),
        (".hidden", 2, ".hidden~v2"),
        ("a~b.tif", 2, "a~~b~v2.tif"),
    ],
)
def test_version_name(rel: str, version: int, expected: str) -> None:
    assert stored_component(rel, version) == expected
