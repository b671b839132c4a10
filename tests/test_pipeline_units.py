"""Async units of the pipeline: the byte budget that bounds memory, and version naming."""

from __future__ import annotations

import asyncio
import random

import pytest

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
