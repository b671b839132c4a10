"""Async units of the pipeline: the byte budget that bounds memory, waits that never lose a cancel,
and version naming."""

from __future__ import annotations

import asyncio
import random

import pytest

from acqd.aio import wait_set, within
from acqd.naming import stored_component
from acqd.pipeline import ByteBudget, Slots


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


async def test_one_tiers_flights_never_hold_the_whole_budget() -> None:
    """A frozen tier's flights hold their bytes for as long as it does not answer: they held all of it
    and a healthy tier's files waited (the budget, and the frame layouts' slots counted the same way)."""
    budget = ByteBudget(100, 75)
    assert await budget.acquire(500, "s3x") == 75  # a file larger than the share: capped at it
    await budget.release(75, "s3x")
    frozen = await budget.acquire(60, "s3")
    more = asyncio.create_task(budget.acquire(20, "s3"))  # 80 on one tier: over its share, waits
    await asyncio.sleep(0)
    assert not more.done()
    assert await asyncio.wait_for(budget.acquire(40, "nas"), 1) == 40  # another tier: the rest is its
    await budget.release(frozen, "s3")
    assert await asyncio.wait_for(more, 1) == 20
    assert budget.by_tier == {"s3": 20, "s3x": 0, "nas": 40} and budget.used == 60
    slots = ByteBudget(3, 2)  # two frame slots for one tier, and one more left for the others
    await slots.acquire(1, "s3")
    await slots.acquire(1, "s3")
    third = asyncio.create_task(slots.acquire(1, "s3"))
    await asyncio.sleep(0)
    assert not third.done()
    assert await asyncio.wait_for(slots.acquire(1, "nas"), 1) == 1
    third.cancel()


async def test_a_backoffs_slots_held_by_a_stalled_tiers_files_count_no_more() -> None:
    """Found by a stranger's review (thirty-fourth session): backing off for the camera (one slot),
    with a frozen tier's flights holding slots, no other tier's file shipped for the whole back-off.
    Once the tier has not answered for `stalled_after`, its files' slots count no more."""
    stalled: set[str] = set()
    slots = Slots(3, lambda: frozenset(stalled))
    stop = asyncio.Event()
    for _ in range(3):
        assert await slots.acquire(stop, "s3")
    await slots.set_limit(1)  # backing off
    nas = asyncio.create_task(slots.acquire(stop, "nas"))
    await asyncio.sleep(0)
    assert not nas.done()
    stalled.add("s3")
    await slots.nudge()
    assert await asyncio.wait_for(nas, 1)
    second = asyncio.create_task(slots.acquire(stop, "nas"))  # the back-off's one slot is taken
    await asyncio.sleep(0)
    assert not second.done()
    await slots.release("nas")
    assert await asyncio.wait_for(second, 1)
    assert slots.by_tier == {"s3": 3, "nas": 1}


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


def test_files_wait_longer_the_longer_the_journal_cannot_be_written() -> None:
    """While the journal takes no writes (the state disk full), a file is tried again after 5 s, then
    after half as long as the journal has failed, up to a minute: a long outage of a journal with many
    files waiting is not thousands of failures a minute. A write that works starts over at 5 s."""
    import types

    from acqd.errors import JournalError
    from acqd.logs import Repeats
    from acqd.pipeline import JOURNAL_RETRY, JOURNAL_RETRY_MAX, Pipeline

    now = [1000.0]
    p = types.SimpleNamespace(
        mono=lambda: now[0], _journal_down_since=None, repeats=Repeats(), stats=types.SimpleNamespace(last_error="")
    )
    exc = JournalError("database or disk is full")

    def delay_at(t: float) -> float:
        now[0] = 1000.0 + t
        return Pipeline._journal_down(p, exc)  # type: ignore[arg-type]

    assert 0.8 * JOURNAL_RETRY <= delay_at(0) <= 1.2 * JOURNAL_RETRY
    assert 0.8 * 20 <= delay_at(40) <= 1.2 * 20  # down 40 s: 20 s
    assert 0.8 * JOURNAL_RETRY_MAX <= delay_at(600) <= 1.2 * JOURNAL_RETRY_MAX  # ten minutes: a minute
    assert "journal cannot be written" in p.stats.last_error
    Pipeline._journal_up(p)  # type: ignore[arg-type]
    assert 0.8 * JOURNAL_RETRY <= delay_at(700) <= 1.2 * JOURNAL_RETRY


def test_a_held_release_keeps_its_age_across_its_re_looks() -> None:
    """Found by an adversarial review (thirty-first session): a release held for a writer is looked at
    again every second or so; between the timer and the look the file is in the hint queue, neither
    held nor a candidate, and a snapshot taken then forgot when it was first held: the age went back
    to 0 again and again and AcqdReleaseWaiting (30 minutes) never fired. The age now runs on across
    re-looks (forgotten only once the file has not been held for RELEASE_WAIT_GRACE)."""
    from types import SimpleNamespace

    from acqd.pipeline import RELEASE_WAIT_GRACE, Pipeline

    t = [1000.0]
    key = (0, "s/open.raw")
    p = Pipeline.__new__(Pipeline)
    p.candidates, p.in_flight, p._after_manifest, p._release_waiting = {}, {}, {}, {}
    p._release_later = {key: None}  # type: ignore[dict-item]
    p.budget = SimpleNamespace(used=0)  # type: ignore[assignment]
    p.mono = lambda: t[0]  # type: ignore[method-assign]
    assert p.snapshot().release_waiting_seconds == 0
    for _ in range(30):  # a re-look a second: out of `_release_later` for a moment, then held again
        t[0] += 0.5
        del p._release_later[key]
        assert p.snapshot().release_waiting == 0
        t[0] += 0.5
        p._release_later[key] = None  # type: ignore[assignment]
    assert p.snapshot().release_waiting_seconds == 30
    del p._release_later[key]  # released: forgotten after the grace
    t[0] += RELEASE_WAIT_GRACE + 1
    assert p.snapshot().release_waiting_seconds == 0 and not p._release_waiting


def test_the_ready_backlog_leaves_out_files_still_being_written() -> None:
    """Found by an adversarial review (thirty-first session): AcqdStalled (critical) fired for a file
    simply still being written (a stack written for 20 minutes, a log appended to for ever): the
    backlog counts it, and nothing was verified meanwhile. The alert watches the files complete and
    not yet verified (`acqd_backlog_ready_files`): in flight, or settled and waiting for a retry."""
    from types import SimpleNamespace

    from acqd.pipeline import Pipeline

    def cand(rel: str, settled: bool, release_only: bool = False) -> SimpleNamespace:
        return SimpleNamespace(
            key=(0, rel), settled=settled, release_only=release_only, born=0.0, stable=SimpleNamespace(size=1)
        )

    p = Pipeline.__new__(Pipeline)
    p.candidates = {  # type: ignore[assignment]
        c.key: c
        for c in (
            cand("written.tif", False),  # still being written or settling
            cand("retry.raw", True),  # complete, waiting for a retry
            cand("verified.raw", True, release_only=True),  # verified: its release waits (no backlog)
        )
    }
    p.in_flight = {(0, "shipping.mrc"): cand("shipping.mrc", True)}  # type: ignore[dict-item]
    p._after_manifest, p._release_waiting, p._release_later = {}, {}, {}
    p.budget = SimpleNamespace(used=0)  # type: ignore[assignment]
    p.mono = lambda: 1.0  # type: ignore[method-assign]
    snap = p.snapshot()
    assert snap.backlog_files == 3 and snap.ready_files == 2, snap


def test_a_release_looked_at_again_is_no_backlog_and_keeps_its_wait() -> None:
    """Found by an adversarial review (thirty-second session): a verified file whose release waited
    for its copy's re-check (a server that did not answer it) was, while each re-check ran (in flight,
    release only), counted as backlog ready to ship, and its release's wait as over: the wait's age
    was 0 in 35 of 40 samples (AcqdReleaseWaiting never fires) while AcqdStalled would. It stays a
    release waiting, with its age, and no backlog."""
    from types import SimpleNamespace

    from acqd.pipeline import Pipeline

    key = (0, "s2/y000.dat")
    rechecked = SimpleNamespace(key=key, settled=True, release_only=True, born=0.0, stable=SimpleNamespace(size=1))
    p = Pipeline.__new__(Pipeline)
    p.candidates = {}
    p.in_flight = {key: rechecked}  # type: ignore[dict-item]
    p._after_manifest, p._release_later = {}, {}
    p._release_waiting = {key: [10.0, 100.0]}  # held since t=10, last seen held at t=100
    p.budget = SimpleNamespace(used=0)  # type: ignore[assignment]
    p.mono = lambda: 130.0  # type: ignore[method-assign]
    snap = p.snapshot()
    assert (snap.backlog_files, snap.ready_files, snap.oldest_pending_seconds) == (0, 0, 0.0), snap
    assert snap.release_waiting == 1 and snap.release_waiting_seconds == 120.0, snap
