"""Parsing of human durations ("90s", "14d"), sizes ("512MiB") and "keep until" days."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DUR_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number (seconds) or a string like "500ms", "2s", "5m", "14d"."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s', '14d'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"not a duration: {value!r} (use e.g. '500ms', '30s', '5m', '2h', '14d')")
        seconds = float(m.group(1)) * _DUR_FACTOR[m.group(2) or "s"]
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes from an integer or a string like "512MiB", "2GB"."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '512MiB'")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f"not a size: {value!r} (use e.g. '64MiB', '2GiB', '500MB')")
        unit = m.group(2) or ""
        if unit[-1:] == "b" and unit != "b":  # '512Mb': megabits, or a typo for megabytes?
            said = f"{m.group(1)}{unit[0].upper()}{'i' if len(unit) == 3 else ''}B"
            raise ValueError(f"size {value!r} is ambiguous: a lowercase b means bits; write bytes as '{said}'")
        n = int(float(m.group(1)) * _SIZE_FACTOR[(m.group(2) or "B").lower()])
    if n < 0:
        raise ValueError(f"a size cannot be negative: {value!r}")
    return n


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_age(seconds: float) -> str:
    """A policy's age as its author would write it: "60d", "2w" stays "14d", "36h", "90s" (not
    "0.00104167d"): the largest unit it is a whole number of, else days to two decimals. Never
    minutes: a policy refuses "1m" (minutes or months?), so 60 s is said "60s"."""
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("s", 1.0)):
        n = seconds / factor
        if n >= 1 and abs(n - round(n)) < 1e-9 * max(1.0, n):
            return f"{round(n)}{unit}"
    return f"{seconds / 86400:.2f}d" if seconds >= 86400 else f"{seconds:g}s"


# pydantic field types for durations and sizes in YAML
from typing import Annotated  # noqa: E402

from pydantic import AfterValidator, BeforeValidator  # noqa: E402

Duration = Annotated[float, BeforeValidator(parse_duration)]

SETTLE_MIN = 0.1  # seconds: the shortest settle window acqd takes


def check_settle(seconds: float) -> float:
    """A settle window: a file is complete once its size and time have stood still this long. 0 (or
    a few milliseconds) takes a file as complete at its first look, while its writer may still be
    writing it: refused, with what to write instead."""
    if seconds < SETTLE_MIN:
        raise ValueError(
            f"a settle window of {seconds:g}s is too short: a file is complete once its size and time have not "
            f"changed for this long, and a shorter one ships files while they are written; give at least "
            f"{SETTLE_MIN:g}s (the detector profiles' windows are 2s-5s)"
        )
    return seconds


SettleWindow = Annotated[float, BeforeValidator(parse_duration), AfterValidator(check_settle)]


def parse_age(value: str | int | float) -> float:
    """A retention age (how old a copy gets before it moves or is purged, how long before a purge
    its owners are warned): a duration with its unit spelt out. A bare number (seconds, when the
    writer meant days) and `m` (minutes, when the writer meant months: `6m` purged after six
    minutes) are refused with what to write instead."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r}: a retention age needs its unit, e.g. '{value:g}d' for days")
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and m.group(2) is None:
            raise ValueError(f"{value!r}: a retention age needs its unit, e.g. '{m.group(1)}d' for days")
        if m and m.group(2) == "m":
            n = float(m.group(1))
            raise ValueError(
                f"{value!r}: 'm' is minutes here; write months as days ('{n * 30:g}d' for {n:g} months), "
                "and a rehearsal's minutes as seconds or hours"
            )
        if m and m.group(2) == "ms":
            raise ValueError(f"{value!r}: milliseconds are no retention age (write e.g. '30s', '36h', '14d', '2w')")
        if not m:
            raise ValueError(f"not a retention age: {value!r} (write e.g. '36h', '14d', '2w', '180d')")
    return parse_duration(value)


Age = Annotated[float, BeforeValidator(parse_age)]
Size = Annotated[int, BeforeValidator(parse_size)]


def owner_pattern(v: str | None) -> str | None:
    """Validate a regex that names the data's owner with a group (?P<owner>...)."""
    if v is not None:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "owner" not in rx.groupindex:
            raise ValueError("the pattern needs a named group (?P<owner>...)")
    return v


def owner_from(pattern: str | None, relpath: str) -> str | None:
    if pattern is None:
        return None
    m = re.search(pattern, relpath)
    return m.group("owner") if m else None


OwnerPattern = Annotated[str | None, AfterValidator(owner_pattern)]


def project_pattern(v: str | None) -> str | None:
    """Validate a regex that names a project with a group (?P<project>...)."""
    if v is not None:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "project" not in rx.groupindex:
            raise ValueError("the pattern needs a named group (?P<project>...)")
    return v


def project_from(pattern: str | None, relpath: str) -> str | None:
    if pattern is None:
        return None
    m = re.search(pattern, relpath)
    return (m.group("project") or None) if m else None


ProjectPattern = Annotated[str | None, AfterValidator(project_pattern)]


LAST_ZONE = timedelta(hours=12)  # UTC-12, where a day ends last ("anywhere on Earth")
_DAY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")


def is_day(text: str) -> bool:
    """'YYYY-MM-DD' alone (no time of day)."""
    return bool(_DAY.match(text))


def day_end(text: str) -> float:
    """'YYYY-MM-DD' as the end of that day in every time zone (12:00 UTC the next day): data kept
    "until D" is there all of D wherever its owner is (UTC+13 or UTC-10 alike). ValueError for a
    day the calendar does not have (2026-02-30) or whose next day it cannot count (9999-12-31)."""
    d = datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    try:
        return (d + timedelta(days=1) + LAST_ZONE).timestamp()
    except OverflowError:
        raise ValueError(f"{text.strip()} has no next day") from None
