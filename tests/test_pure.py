"""Pure decisions tested from tables: the journal state machine, observation reconcile, settle."""

from __future__ import annotations

import struct

import pytest

from acqd.settle import (
    UNWRITTEN_TAIL,
    Verdict,
    decide,
    marker_name,
    mrc_expected_size,
    tail_unwritten,
    tiff_chain_complete,
)
from acqd.states import TRANSITIONS, IllegalTransition, Observed, on_observed, transition
from acqd.units import human_age, parse_duration, parse_size
from acqd.values import Identity, State

S = State
ALL = list(State)
LEGAL = {
    (S.SEEN, S.COMPLETE),
    (S.SEEN, S.QUARANTINED),
    (S.SEEN, S.VANISHED),
    (S.SEEN, S.SEEN),
    (S.COMPLETE, S.STORED),
    (S.COMPLETE, S.COMPLETE),
    (S.COMPLETE, S.QUARANTINED),
    (S.COMPLETE, S.VANISHED),
    (S.COMPLETE, S.SEEN),
    (S.STORED, S.VERIFIED),
    (S.STORED, S.COMPLETE),
    (S.STORED, S.QUARANTINED),
    (S.STORED, S.VANISHED),
    (S.STORED, S.SEEN),
    (S.VERIFIED, S.RELEASED),
    (S.VERIFIED, S.SEEN),  # the stored copy was found gone before the release: shipped again
    (S.VERIFIED, S.QUARANTINED),  # ... and the source is gone too: said, for a person (acqd verify)
    (S.RELEASED, S.QUARANTINED),  # its copy found bad after the release (acqd verify): said, for a person
    (S.QUARANTINED, S.SEEN),
    (S.VANISHED, S.SEEN),
}


@pytest.mark.parametrize("old", ALL)
@pytest.mark.parametrize("new", ALL)
def test_transition_table(old: State, new: State) -> None:
    if (old, new) in LEGAL:
        assert transition(old, new) is new
    else:
        with pytest.raises(IllegalTransition):
            transition(old, new)


def test_no_way_back_from_verified_except_release_or_a_lost_copy() -> None:
    assert TRANSITIONS[S.VERIFIED] == {S.RELEASED, S.SEEN, S.QUARANTINED}
    assert TRANSITIONS[S.RELEASED] == {S.QUARANTINED}  # only a copy found bad: never shipped or released again


A = Identity(100, 1_000, 7, 5)
A_CHMOD = Identity(100, 1_000, 7, 9)
A_DEV = Identity(100, 1_000, 7, 5, device=64)
A_DEV2 = Identity(100, 1_000, 7, 5, device=65)
B = Identity(120, 2_000, 7, 9)


@pytest.mark.parametrize(
    ("state", "known", "now", "release", "expected"),
    [
        (None, None, A, False, Observed.NEW),
        (S.SEEN, A, A, False, Observed.TRACK),
        (S.COMPLETE, A, A, False, Observed.TRACK),
        (S.STORED, A, A, False, Observed.TRACK),
        (S.STORED, A, B, False, Observed.RESET),
        (S.VERIFIED, A, A, False, Observed.SKIP),
        (S.VERIFIED, A, A, True, Observed.RELEASE),
        # ctime alone moved (a chmod, a new link; or a rewrite that put size and mtime back): compared
        (S.VERIFIED, A, A_CHMOD, True, Observed.RECHECK),
        (S.VERIFIED, A, A_CHMOD, False, Observed.RECHECK),
        (S.VERIFIED, A_DEV, Identity(100, 1_000, 7, 9, device=65), True, Observed.NEW_VERSION),  # and its disk
        (S.RELEASED, A, A_CHMOD, True, Observed.NEW_VERSION),  # its source was deleted: another file
        (S.VERIFIED, A_DEV, A_DEV2, True, Observed.NEW_VERSION),  # another filesystem: not what was shipped
        (S.VERIFIED, A_DEV, A_DEV2, False, Observed.SKIP),  # kept anyway: a renumbered disk re-ships nothing
        (S.VERIFIED, A, A_DEV, True, Observed.RELEASE),  # a journal row from before devices were recorded
        (S.VERIFIED, A, B, True, Observed.NEW_VERSION),
        (S.RELEASED, A, B, True, Observed.NEW_VERSION),
        (S.RELEASED, A, A, True, Observed.SKIP),
        (S.QUARANTINED, A, A, False, Observed.SKIP),
        (S.QUARANTINED, A, A_CHMOD, False, Observed.RESET),
        (S.QUARANTINED, A, B, False, Observed.RESET),
        (S.VANISHED, A, A, False, Observed.RESET),
    ],
)
def test_on_observed(
    state: State | None, known: Identity | None, now: Identity, release: bool, expected: Observed
) -> None:
    assert on_observed(state, known, now, release) is expected


@pytest.mark.parametrize(
    ("stable", "since", "current", "now", "kw", "verdict"),
    [
        (A, 0.0, None, 10.0, {}, Verdict.GONE),
        (A, 0.0, A, 1.0, {}, Verdict.WAIT),
        (A, 0.0, A, 3.0, {}, Verdict.COMPLETE),
        (A, 0.0, B, 3.0, {}, Verdict.CHANGED),
        (B, 0.0, A, 3.0, {}, Verdict.CHANGED),  # shrank
        (A, 0.0, A, 0.1, {"format_complete": True}, Verdict.COMPLETE),
        (A, 0.0, B, 0.1, {"marker_present": True}, Verdict.COMPLETE),
        (Identity(0, 1, 1), 0.0, Identity(0, 1, 1), 0.1, {"format_complete": True}, Verdict.WAIT),
    ],
)
def test_settle_decide(
    stable: Identity, since: float, current: Identity | None, now: float, kw: dict[str, bool], verdict: Verdict
) -> None:
    d = decide(3.0, stable, since, current, now, **kw)
    assert d.verdict is verdict
    if verdict in (Verdict.WAIT, Verdict.CHANGED):
        assert d.check_at > now


def test_changed_restarts_the_window() -> None:
    d = decide(3.0, A, 0.0, B, 2.5)
    assert d.verdict is Verdict.CHANGED and d.check_at == pytest.approx(5.5)


def _mrc_header(nx: int, ny: int, nz: int, mode: int, nsymbt: int = 0, big: bool = False) -> bytes:
    bo = ">" if big else "<"
    h = bytearray(1024)
    struct.pack_into(bo + "4i", h, 0, nx, ny, nz, mode)
    struct.pack_into(bo + "i", h, 92, nsymbt)
    h[212:214] = b"\x11\x11" if big else b"\x44\x44"
    return bytes(h)


@pytest.mark.parametrize(
    ("args", "size"),
    [
        ((16, 16, 348, 6), 1024 + 16 * 16 * 348 * 2),
        ((4096, 4096, 1, 6, 131072), 1024 + 131072 + 4096 * 4096 * 2),
        ((5760, 4092, 40, 0), 1024 + 5760 * 4092 * 40),
        ((10, 10, 3, 2, 0, True), 1024 + 10 * 10 * 3 * 4),
        ((11, 10, 1, 101), 1024 + 55),
    ],
)
def test_mrc_expected_size(args: tuple[int, ...], size: int) -> None:
    assert mrc_expected_size(_mrc_header(*args)) == size


def test_mrc_rejects_garbage() -> None:
    assert mrc_expected_size(b"\x00" * 1024) is None
    assert mrc_expected_size(b"short") is None
    assert mrc_expected_size(_mrc_header(10, 10, 1, 77)) is None


@pytest.mark.parametrize(
    ("body", "unwritten"),
    [
        (b"\0" * 50_000, True),  # pre-allocated, nothing written yet
        (b"\1" * 40_000 + b"\0" * 10_000, True),  # filled up to its last frame
        (b"\0" * 49_999 + b"\1", False),  # its last byte written
        (b"\0" * (50_000 - UNWRITTEN_TAIL) + b"\1" + b"\0" * (UNWRITTEN_TAIL - 1), False),
        (b"\1" * (50_000 - UNWRITTEN_TAIL - 1) + b"\0" * (UNWRITTEN_TAIL + 1), True),
        (b"\0" * 100, True),  # a movie smaller than the tail looked at: all of it after the header
        (b"", False),  # nothing after the header: nothing to tell
    ],
)
def test_a_pre_allocated_movies_unwritten_tail(body: bytes, unwritten: bool) -> None:
    data = b"H" * 1024 + body
    assert tail_unwritten(lambda off, n: data[off : off + n], len(data)) is unwritten


def test_a_tail_no_longer_there_is_unwritten() -> None:
    """The file shrank between its stat and the read: not proved complete."""
    data = b"H" * 1024 + b"\1" * 10_000
    assert tail_unwritten(lambda off, n: data[off : off + n], len(data) + 100) is True


def _tiff(n_ifds: int, next_last: int = 0) -> bytes:
    data = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for i in range(n_ifds):
        off = len(data)
        nxt = off + 2 + 12 + 4 if i < n_ifds - 1 else next_last
        data += struct.pack("<H", 1) + struct.pack("<HHII", 256, 4, 1, 16) + struct.pack("<I", nxt)
    return bytes(data)


def _reader(data: bytes):  # type: ignore[no-untyped-def]
    return lambda off, n: data[off : off + n]


def test_tiff_chain() -> None:
    good = _tiff(5)
    assert tiff_chain_complete(_reader(good), len(good))
    truncated = good[:-10]
    assert not tiff_chain_complete(_reader(truncated), len(truncated))
    dangling = _tiff(2, next_last=10_000)
    assert not tiff_chain_complete(_reader(dangling), len(dangling))
    loop = _tiff(1, next_last=8)
    assert not tiff_chain_complete(_reader(loop), len(loop))
    assert not tiff_chain_complete(_reader(b"GIF89a.."), 8)


def test_tiff_chain_from_tifffile(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import tifffile

    p = tmp_path / "s.tif"
    tifffile.imwrite(p, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    data = p.read_bytes()
    assert tiff_chain_complete(_reader(data), len(data))
    assert not tiff_chain_complete(_reader(data[: len(data) // 2]), len(data) // 2)


def test_marker_name() -> None:
    assert marker_name("{name}.done", "a.mrc") == "a.mrc.done"
    assert marker_name("{stem}.xml", "FoilHole_1.mrc") == "FoilHole_1.xml"


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("2s", 2), ("5m", 300), ("14d", 14 * 86400), (3, 3)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (90, "90s"),
        (60, "60s"),  # not "1m", which a policy refuses as minutes-or-months
        (1800, "1800s"),
        (3600, "1h"),
        (36 * 3600, "36h"),
        (14 * 86400, "14d"),
        (60 * 86400, "60d"),
        (1.2345 * 86400, "1.23d"),
    ],
)
def test_ages_are_said_as_written(seconds: float, text: str) -> None:
    # a policy of 90 s (a test facility's) was said as "older than 0.00104167d"
    assert human_age(seconds) == text and ((text.endswith("d") and "." in text) or parse_duration(text) == seconds)


@pytest.mark.parametrize("bad", ["-1s", "fast", "1y", "", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "n"), [("512MiB", 512 << 20), ("2GB", 2_000_000_000), (4096, 4096), ("1 KiB", 1024)])
def test_sizes(text: str | int, n: int) -> None:
    assert parse_size(text) == n


def test_a_session_manifest_is_json_with_one_line_per_file_and_every_field() -> None:
    """The manifest is written by json's C encoder, one file per line (indent= takes its pure-Python
    encoder, ten times the CPU for a manifest written again as files are verified): it must still
    parse to the whole document, names with quotes, backslashes, newlines and non-ASCII included."""
    import json

    from acqd.manifest import SCHEMA, ManifestEntry, build

    names = ["s/plain.raw", 's/quo"te\\back.raw', "s/new\nline.tif", "s/Å ñ 漢.mrc"]
    entries = [
        ManifestEntry(
            n,
            i + 1,
            f"scope/{n}",
            "central",
            "copy",
            "none",
            10 + i,
            5 + i,
            f"xxh3:{i}",
            1_700_000_000_123_456_789,
            1.7e9 + i,
            "verified",
            "generic",
            profile_mismatch="odd" if i == 1 else None,
            codec_why="measured" if i == 2 else None,
        )
        for i, n in enumerate(names)
    ]
    other = {"source": "s/old.raw", "watch_root": "/old", "source_bytes": 7, "stored_bytes": 3}
    text = build("scope", "s", "/data", entries, 1.7e9, [other]).decode("utf-8")
    doc = json.loads(text)
    assert list(doc) == ["schema", "instrument", "session", "watch_root", "updated", "files", "totals"]
    assert doc["schema"] == SCHEMA and doc["session"] == "s" and doc["watch_root"] == "/data"
    assert [f["source"] for f in doc["files"]] == [*names, "s/old.raw"]
    assert doc["files"][1]["profile_mismatch"] == "odd" and "profile_mismatch" not in doc["files"][0]
    assert doc["files"][2]["codec_why"] == "measured"
    assert doc["files"][3]["source_mtime_ns"] == 1_700_000_000_123_456_789
    assert doc["files"][0]["source_mtime"] == "2023-11-14T22:13:20.123Z"
    assert doc["totals"] == {"files": 5, "source_bytes": 10 + 11 + 12 + 13 + 7, "stored_bytes": 5 + 6 + 7 + 8 + 3}
    assert len(text.splitlines()) == 1 + 5 + 1 + 5 + 1 + 1 + 1, text  # {, head, "files": [, a line a file, ], totals, }
    assert json.loads(build("scope", "s", "/data", [], 1.7e9))["files"] == []


def test_a_batch_record_is_a_line_per_file_and_a_traceback_keeps_its_lines() -> None:
    """The log as the daemon sets it up (`queued_handler`): a batch's verified files, written as one
    record, read as one line each with its time and level; a traceback logged through the same queue
    keeps its lines as they are (one exception is one entry, its traceback below it)."""
    import io
    import logging
    import re

    from acqd.logs import LogReporter, queued_handler
    from acqd.values import Outcome

    out = io.StringIO()
    handler, listener = queued_handler(out, journald=False)
    log = logging.getLogger("acqd")
    saved = (log.handlers[:], log.propagate, log.level)
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.INFO)
    listener.start()
    try:
        names = ["s/a.raw", "s/b\nc.raw", "s/100% %s.raw"]
        LogReporter().batch_outcomes(
            [
                Outcome("verified", n, "s", "generic", dest=f"file:///d/{n}", source_bytes=2, stored_bytes=2)
                for n in names
            ]
        )
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("reporter failed")
    finally:
        listener.stop()
        log.handlers[:], log.propagate = saved[0], saved[1]
        log.setLevel(saved[2])
    lines = out.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    verified = [ln for ln in lines if re.match(stamp + "INFO verified ", ln)]
    assert [ln.split(" ")[4] for ln in verified] == ["'s/a.raw'", "'s/b\\nc.raw'", "'s/100%"], lines
    assert lines[:3] == verified, lines
    error = lines.index("Traceback (most recent call last):")
    assert error == 4 and re.match(stamp + "ERROR reporter failed$", lines[3]), lines
    assert lines[-1] == "ValueError: boom" and not any(re.match(stamp, ln) for ln in lines[error:]), lines
