"""Acquisition comes first, the pure part (acqd.pace): back-off decisions, the free-space override,
bandwidth schedules and the token bucket, from tables and with hypothesis (a fake clock throughout)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acqd.config import Backoff, TierConfig
from acqd.pace import (
    BackoffRule,
    Bucket,
    DiskLoad,
    DiskStat,
    Lanes,
    Pace,
    Window,
    combine,
    limit_at,
    load_between,
    next_pace,
    parse_days,
    parse_hours,
    parse_rate,
    ship_slots,
    take,
)
from acqd.pacing import TierPacer, disks, free_fraction, read_stat, stat_file

RULE = BackoffRule(latency_above=0.050, latency_below=0.020, free_below=0.15, slots=1)
BUSY = BackoffRule(latency_above=0.050, latency_below=0.020, busy_above=0.9, busy_below=0.5, slots=0)


def load(ms: float | None, busy: float = 0.1) -> DiskLoad:
    return DiskLoad(write_latency=None if ms is None else ms / 1000, busy=busy)


# -- the disk's counters ------------------------------------------------------------------------

# a real /sys/block/vda/stat line: reads, merges, sectors, ms; writes, merges, sectors, ms; in flight,
# io ms, weighted ms; discards (4); flushes (2)
LINE = " 1141469 101185 28341130 5016745 6816537 2390354 223841496 2538516 0 1286152 8488375 0 0 0 0 0 0\n"


def test_parse_reads_the_write_and_busy_fields() -> None:
    s = DiskStat.parse(LINE, at=7.0)
    assert (s.at, s.writes, s.write_ms, s.io_ms) == (7.0, 6816537, 2538516, 1286152)
    with pytest.raises(ValueError):
        DiskStat.parse("1 2 3", at=0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # 100 writes took 5000 ms in all over 2 s, the device busy 1 s of them
        (DiskStat(10, 1000, 100, 50), DiskStat(12, 1100, 5100, 1050), DiskLoad(0.050, 0.5)),
        # no write completed: latency unknown, not zero; busy capped at 1
        (DiskStat(10, 1000, 100, 50), DiskStat(11, 1000, 100, 1500), DiskLoad(None, 1.0)),
        # counters went backwards (device replaced) or no time passed: no load
        (DiskStat(10, 1000, 100, 50), DiskStat(11, 900, 100, 60), None),
        (DiskStat(10, 1000, 100, 50), DiskStat(10, 1100, 200, 60), None),
    ],
)
def test_load_between(a: DiskStat, b: DiskStat, expected: DiskLoad | None) -> None:
    assert load_between(a, b) == expected


# -- back-off and the free-space override -------------------------------------------------------


@pytest.mark.parametrize(
    ("prev", "ld", "free", "rule", "mode"),
    [
        ("normal", load(5), 0.5, RULE, "normal"),
        ("normal", load(51), 0.5, RULE, "backoff"),  # above the enter threshold
        ("normal", load(50), 0.5, RULE, "normal"),  # at it: not above
        ("normal", load(30), 0.5, RULE, "normal"),  # between the thresholds: stays normal
        ("backoff", load(30), 0.5, RULE, "backoff"),  # between the thresholds: stays backing off
        ("backoff", load(20), 0.5, RULE, "normal"),  # at the leave threshold: leaves
        ("backoff", load(None), 0.5, RULE, "normal"),  # no writes at all: the camera is idle
        ("backoff", None, 0.5, RULE, "backoff"),  # no reading: a back-off is kept
        ("normal", None, 0.5, RULE, "normal"),  # no reading (no block device): never backs off
        ("normal", None, None, RULE, "normal"),
        # free space first: below free_below full speed, whatever the latency or the previous mode
        ("normal", load(500), 0.10, RULE, "filling"),
        ("backoff", load(500), 0.149, RULE, "filling"),
        ("filling", load(500), 0.15, RULE, "backoff"),  # back at the threshold: the latency decides again
        ("filling", load(5), 0.20, RULE, "normal"),
        ("filling", None, 0.01, RULE, "filling"),
        # the optional busy ratio, with its own leave threshold
        ("normal", load(None, busy=0.95), 0.5, BUSY, "backoff"),
        ("normal", load(None, busy=0.95), 0.5, RULE, "normal"),  # not configured: ignored
        ("backoff", load(5, busy=0.7), 0.5, BUSY, "backoff"),
        ("backoff", load(5, busy=0.5), 0.5, BUSY, "normal"),
        ("backoff", load(30, busy=0.1), 0.5, BUSY, "backoff"),  # both must be calm
    ],
)
def test_next_pace(prev: str, ld: DiskLoad | None, free: float | None, rule: BackoffRule, mode: str) -> None:
    p = next_pace(prev, ld, free, rule)  # type: ignore[arg-type]
    assert p.mode == mode
    assert bool(p.why) == (mode != "normal")


def test_reasons_name_the_figures() -> None:
    assert next_pace("normal", load(83), 0.5, RULE).why == "write latency 83 ms > 50 ms"
    assert next_pace("normal", load(83), 0.08, RULE).why == "free space 8.0% < 15%: shipping at full speed"
    # said as it is: a share a hair under the threshold is not "15.0% < 15%"
    assert next_pace("normal", None, 0.14996, RULE).why == "free space 14.9% < 15%: shipping at full speed"


latencies = st.one_of(st.none(), st.floats(0, 2.0))
frees = st.one_of(st.none(), st.floats(0, 1.0))
modes = st.sampled_from(["normal", "backoff", "filling"])


@given(modes, latencies, st.floats(0, 1), frees)
def test_low_free_space_always_overrides_the_backoff(
    prev: str, lat: float | None, busy: float, free: float | None
) -> None:
    p = next_pace(prev, DiskLoad(lat, busy), free, BUSY)  # type: ignore[arg-type]
    assert (p.mode == "filling") == (free is not None and free < BUSY.free_below)
    assert ship_slots(p.mode, 4, BUSY) == (0 if p.mode == "backoff" else 4)


@given(modes, st.lists(st.tuples(latencies, st.floats(0, 1)), min_size=1, max_size=30))
def test_hysteresis_no_flapping_between_the_thresholds(first: str, seq: list[tuple[float | None, float]]) -> None:
    """A latency strictly between the thresholds never changes normal <-> backoff."""
    prev = next_pace(first, None, 0.5, RULE).mode  # type: ignore[arg-type]
    for lat, busy in seq:
        mid = None if lat is None else RULE.latency_below + (RULE.latency_above - RULE.latency_below) * min(lat, 0.99)
        if mid is None or mid <= RULE.latency_below:
            continue
        p = next_pace(prev, DiskLoad(mid, busy), 0.5, RULE)
        assert p.mode == prev
        prev = p.mode


def test_combine_the_strongest_claim_wins() -> None:
    n, b, f = Pace("normal", ""), Pace("backoff", "slow"), Pace("filling", "full")
    assert combine([n, b, n]) == b
    assert combine([b, f, n]) == f
    assert combine([]) == n


@pytest.mark.parametrize(("mode", "slots"), [("normal", 4), ("filling", 4), ("backoff", 1)])
def test_ship_slots(mode: str, slots: int) -> None:
    assert ship_slots(mode, 4, RULE) == slots  # type: ignore[arg-type]
    assert ship_slots(mode, 1, BackoffRule(0.05, 0.02, slots=3)) == 1  # never more than concurrent_files


def test_backoff_config() -> None:
    r = Backoff.model_validate({"write_latency_above": "80ms", "free_below_percent": 10}).rule()
    assert (r.latency_above, r.latency_below, r.free_below, r.slots) == (0.08, pytest.approx(0.032), 0.1, 1)
    for bad, why in [
        ({"write_latency_above": "10ms", "write_latency_below": "20ms"}, "must not exceed"),
        ({"busy_below": 0.5}, "needs busy_above"),
        ({"interval": "10ms"}, "interval"),
        ({"free_below_percent": 120}, "less than or equal to 100"),
    ]:
        with pytest.raises(ValueError, match=why):
            Backoff.model_validate(bad)


# -- bandwidth schedules ------------------------------------------------------------------------

MON, FRI, SAT, SUN = 0, 4, 5, 6


def hm(h: int, m: int = 0) -> int:
    return h * 60 + m


@pytest.mark.parametrize(
    ("text", "expected"),
    [("08-18", (480, 1080)), ("08:30-17:45", (510, 1065)), ("22-06", (1320, 360)), ("0-24", (0, 1440))],
)
def test_parse_hours(text: str, expected: tuple[int, int]) -> None:
    assert parse_hours(text) == expected


@pytest.mark.parametrize("text", ["8", "08-08", "25-03", "08:61-09", "24:30-1", "eight-six", "08-24:30"])
def test_parse_hours_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="hours"):
        parse_hours(text)


@pytest.mark.parametrize(
    ("text", "days"),
    [("mon-fri", {0, 1, 2, 3, 4}), ("sat,sun", {5, 6}), ("fri-mon", {4, 5, 6, 0}), ("Wed", {2})],
)
def test_parse_days(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("200MB/s", 200_000_000),
        ("1GiB/s", 2**30),
        ("800Mbit/s", 100_000_000),
        ("1.5Gbit/s", 187_500_000),
        ("500kB/s", 500_000),
        (1000, 1000),
        ("unlimited", None),
        (" Unlimited ", None),
    ],
)
def test_parse_rate(text: str | int, rate: int | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "why"),
    [("100Mb/s", "ambiguous"), ("fast", "not a rate"), (0, "positive"), ("100iB/s", "not a rate"), ("10MB", "rate")],
)
def test_parse_rate_refuses(text: str | int, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_rate(text)


OFFICE = (
    Window(limit=200_000_000, hours=parse_hours("08-18"), days=parse_days("mon-fri")),
    Window(limit=50_000_000, hours=parse_hours("22-06")),
    Window(limit=None),
)


@pytest.mark.parametrize(
    ("weekday", "minute", "limit"),
    [
        (MON, hm(8), 200_000_000),  # the start is inside
        (MON, hm(7, 59), None),
        (FRI, hm(17, 59), 200_000_000),
        (FRI, hm(18), None),  # the end is outside
        (SAT, hm(12), None),  # office hours are weekdays only
        (SAT, hm(23), 50_000_000),  # past midnight
        (SUN, hm(5, 59), 50_000_000),
        (SUN, hm(6), None),
    ],
)
def test_limit_at(weekday: int, minute: int, limit: int | None) -> None:
    assert limit_at(OFFICE, weekday, minute) == limit


def test_night_window_on_some_days_belongs_to_its_start_day() -> None:
    fri_night = (Window(limit=1, hours=parse_hours("22-06"), days=parse_days("fri")),)
    assert limit_at(fri_night, FRI, hm(23)) == 1
    assert limit_at(fri_night, SAT, hm(3)) == 1  # Friday's night, on Saturday morning
    assert limit_at(fri_night, FRI, hm(3)) is None  # Thursday's night: not in the schedule
    assert limit_at((), MON, 0) is None


@given(st.integers(0, 6), st.integers(0, 1439))
def test_first_covering_window_decides(weekday: int, minute: int) -> None:
    got = limit_at(OFFICE, weekday, minute)
    covering = [w for w in OFFICE if w.covers(weekday, minute)]
    assert covering  # the catch-all covers every minute
    assert got == covering[0].limit


def test_tier_schedule_config() -> None:
    t = TierConfig.model_validate(
        {
            "url": "file:///x",
            "bandwidth": [{"hours": "08-18", "days": "mon-fri", "limit": "200MB/s"}, {"limit": "unlimited"}],
        }
    )
    assert t.schedule() == (
        Window(limit=200_000_000, hours=(480, 1080), days=frozenset(range(5))),
        Window(limit=None),
    )
    for bandwidth, why in [
        ([{"limit": "1MB/s"}, {"hours": "08-18", "limit": "2MB/s"}], "entry 1 is never used"),
        ([{"hours": "8-8", "limit": "1MB/s"}], "empty"),
        ([{"days": "weekdays", "limit": "1MB/s"}], "day names"),
        ([{"limit": "100Mb/s"}], "ambiguous"),
        ([{"hours": "08-18"}], "limit"),
    ]:
        with pytest.raises(ValueError, match=why):
            TierConfig.model_validate({"url": "file:///x", "bandwidth": bandwidth})


# -- the token bucket ---------------------------------------------------------------------------


def test_take_waits_off_the_debt() -> None:
    b, wait = take(Bucket(), now=0.0, rate=1000, n=500)  # no credit at the start
    assert wait == pytest.approx(0.5)
    b, wait = take(b, now=0.5, rate=1000, n=1000)  # the first block waited off; this one in turn
    assert wait == pytest.approx(1.0)
    b, wait = take(b, now=10.0, rate=1000, n=300)  # idle: credit refilled, but only to one second's worth
    assert wait == 0.0 and b.tokens == pytest.approx(700)


@given(st.integers(1, 10**9), st.lists(st.tuples(st.floats(0, 5), st.integers(0, 10**8)), min_size=1, max_size=40))
def test_bucket_never_exceeds_the_rate(rate: int, steps: list[tuple[float, int]]) -> None:
    """Bytes sent by time T (each block sent once its wait is over) never exceed rate * T + one
    second's burst, whatever the pattern of writes (a fake clock: writers arrive at `now`)."""
    b, now, sent_by = Bucket(), 0.0, 0.0
    total = 0
    for gap, n in steps:
        now += gap
        b, wait = take(b, now, rate, n)
        total += n
        sent_by = max(sent_by, now + wait)  # when this block may go
        assert total <= rate * sent_by + rate + 1e-6 * total


# -- the kernel side (acqd.pacing) on this machine's real files ---------------------------------


def test_the_disk_of_a_folder_is_found_in_sysfs(tmp_path: Path) -> None:
    f = stat_file(str(tmp_path))
    if f is None:  # the test folder on tmpfs, overlay or btrfs: no single block device
        assert os.major(os.stat(tmp_path).st_dev) == 0 or not os.path.exists("/sys/dev/block")
        pytest.skip("the test folder is on no single block device")
    st = os.stat(tmp_path).st_dev
    assert f == f"/sys/dev/block/{os.major(st)}:{os.minor(st)}/stat"
    first = read_stat(f, at=0.0)
    assert first is not None and first.writes >= 0
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    found = disks([("one", str(tmp_path / "a")), ("two", str(tmp_path / "b")), ("gone", str(tmp_path / "nope"))])
    assert [(d.name, d.stat) for d in found] == [("one", f), ("gone", None)]  # one disk, once
    assert [(d.name, d.stat) for d in disks([("x", str(tmp_path))], override="/elsewhere/stat")] == [
        ("x", "/elsewhere/stat")
    ]
    assert read_stat(str(tmp_path / "nope"), at=0.0) is None
    free = free_fraction(str(tmp_path))
    assert free is not None and 0.0 <= free <= 1.0


def test_tier_pacer_follows_the_schedule_with_a_fake_clock() -> None:
    # Monday 2026-11-30 09:00 local time, then 19:00
    nine = time.mktime((2026, 11, 30, 9, 0, 0, 0, 0, -1))
    wall = [nine]
    mono = [100.0]
    schedule = (Window(limit=1_000_000, hours=parse_hours("08-18")), Window(limit=None))
    p = TierPacer(schedule, clock=lambda: wall[0], mono=lambda: mono[0])
    assert p.limit() == 1_000_000
    assert p.reserve(500_000) == pytest.approx(0.5)
    assert p.reserve(500_000) == pytest.approx(1.0)  # behind the first block
    mono[0] += 10.0
    assert p.reserve(200_000) == 0.0  # credit refilled while idle
    wall[0] = nine + 10 * 3600  # 19:00: unlimited
    assert p.limit() is None and p.reserve(10**9) == 0.0
    wall[0] = nine + 24 * 3600  # Tuesday 09:00: limited again, from a fresh bucket
    assert p.reserve(1_000_000) == pytest.approx(1.0)
    assert p.waited == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("usual", "pause"),
    [
        ([], 2.0),  # nothing measured yet
        ([0.01, 0.02, 0.01], 2.0),  # small manifests: every 2 s
        ([1.0, 1.2, 0.8], 9.0),  # a big session: nine times a usual flush
        ([0.05] * 8 + [45.0], 2.0),  # one flush hung 45 s (a server stopped): the next is not 6.5 min away
        ([60.0] * 9, 30.0),  # however slow they have become: 30 s at most
    ],
)
def test_manifest_pause(usual: list[float], pause: float) -> None:
    from acqd.pace import manifest_pause

    assert manifest_pause(usual) == pytest.approx(pause)


def test_one_tier_takes_every_worker_and_with_more_tiers_one_is_left_for_the_others() -> None:
    alone: Lanes[str] = Lanes(4, 1)
    assert all(alone.admit("central", f"f{i}", False) for i in range(4))
    shared: Lanes[str] = Lanes(4, 2)
    assert [shared.admit("central", f"f{i}", False) for i in range(4)] == [True, True, True, False]
    assert shared.admit("nas", "n0", False)  # the worker left: another tier's file is taken
    assert shared.admit(None, "x", False)  # a file whose tier is not known is never parked
    assert shared.unpark(frozenset()) is None  # central is full
    shared.land("central")
    assert shared.unpark(frozenset()) == ("central", "f3") and shared.unpark(frozenset()) is None
    one: Lanes[str] = Lanes(1, 2)
    assert one.admit("central", "a", False) and not one.admit("central", "b", False)


def test_a_tier_in_trouble_has_one_file_in_flight_until_one_ships() -> None:
    lanes: Lanes[str] = Lanes(4, 2)
    lanes.failed("sftp")
    assert lanes.admit("sftp", "a", False) and not lanes.admit("sftp", "b", False)
    assert lanes.admit("s3", "c", True) and not lanes.admit("s3", "d", True)  # a call on it stalled
    lanes.land("sftp")
    assert lanes.unpark(frozenset({"s3"})) == ("sftp", "b")  # parked in order; s3 still stalled: d stays
    assert lanes.unpark(frozenset({"s3"})) is None
    lanes.worked("sftp")
    assert lanes.admit("sftp", "e", False) and lanes.admit("sftp", "f", False)
    assert lanes.unpark(frozenset()) == ("s3", "d")  # s3 answers again
    assert lanes.drop() == [] and lanes.flights == {"sftp": 3, "s3": 2}
    assert not lanes.admit("s3", "g", True)
    assert lanes.drop() == ["g"] and lanes.unpark(frozenset()) is None
