"""Tail-follow streaming (acqd.layouts.stream): a movie's frames are encoded into its copy's hidden
temporary while the camera still writes it; at completion the whole file is read again and compared
with what was streamed, and anything unexpected ships the file whole instead.

Each test runs the real daemon on a movie written frame by frame, slowly, by the test itself, and
checks the stored copy against the final bytes of the source (`acqd restore`, and tifffile reading
the stored TIFF against mrcfile reading the source), and the journal's audit for what happened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from acqd.simulate import SimSpec, simulate
from tests.conftest import Background, journal_rows, journal_states, run_acqd, wait_for
from tests.test_safeguards import PROFILES, audit, frames_config, verified_copies

pytestmark = pytest.mark.slow

FRAMES = 8
PAUSE = 0.4  # seconds between frames: the daemon looks every 0.25 s


def movie(tmp_path: Path) -> tuple[bytes, int, int, str]:
    """A K3-style MRC movie (header first): its bytes, header length, frame length, file name."""
    [m] = simulate(
        "gatan-k3",
        tmp_path / "staging",
        SimSpec(files=1, frames=FRAMES, height=256, width=256, temp_rename=False),
    )
    raw = m.read_bytes()
    header = 1024 + int.from_bytes(raw[92:96], "little")
    return raw, header, (len(raw) - header) // FRAMES, m.name


def start(tmp_path: Path, detector: str = "t-movie", settle: str = "60s") -> tuple[Path, Path, Path, Background]:
    watch, dest, state, cfg = frames_config(tmp_path, detector)
    cfg.write_text(cfg.read_text().replace("settle: 0.2s", f"settle: {settle}"))
    (watch / "sess").mkdir()
    d = Background("run", "--config", str(cfg))
    wait_for(lambda: (state / "journal.sqlite").exists(), 30, "the daemon to start")
    return watch, dest, state, d


def streaming_started(state: Path, rel: str) -> Callable[[], bool]:
    """The daemon has a row for the file (it is being followed)."""
    return lambda: rel in journal_states(state)


def write_slowly(
    target: Path, raw: bytes, header: int, frame: int, before_last: Callable[[int], None] | None = None
) -> None:
    """The camera: the header, then one frame every PAUSE seconds; `before_last(fd)` runs just before
    the last frame is written (a rewrite of something already written)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, raw[:header])
        for i in range(FRAMES):
            time.sleep(PAUSE)
            if i == FRAMES - 1 and before_last is not None:
                before_last(fd)
            os.pwrite(fd, raw[header + i * frame : header + (i + 1) * frame], header + i * frame)
    finally:
        os.close(fd)


def finish(d: Background, state: Path, rel: str) -> None:
    try:
        wait_for(lambda: journal_states(state).get(rel) == "verified", 90, "the movie verified", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err


def stored_equals_source(tmp_path: Path, state: Path, dest: Path, rel: str, source: Path) -> None:
    """The stored copy is the final source: restored byte for byte, and its pages (rows flipped back,
    as IMOD and RELION read them) are the source's frames as mrcfile reads them."""
    [(only, name)] = [(k, v) for k, v in verified_copies(state).items() if k[0] == rel]
    out = tmp_path / "restored.mrc"
    cfg = tmp_path / "acqd.yaml"
    r = run_acqd("restore", rel, str(out), "--version", str(only[1]), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == source.read_bytes()
    with mrcfile.open(source, permissive=True) as m:
        frames = np.asarray(m.data)
    stored = tifffile.imread(dest / name)
    # mrcfile reads mode 0 as int8 (IMOD's flag says unsigned, as acqd stores it): compare the bytes
    assert stored.shape == frames.shape and stored.itemsize == frames.itemsize
    assert np.ascontiguousarray(stored[:, ::-1]).tobytes() == np.ascontiguousarray(frames).tobytes()


def test_movie_is_streamed_while_written(tmp_path: Path) -> None:
    """A movie written frame by frame is encoded while it is written (the journal says how many
    frames were encoded before the file completed), and its copy reads back equal."""
    raw, header, frame, name = movie(tmp_path)
    watch, dest, state, d = start(tmp_path)
    target = watch / "sess" / name
    rel = f"sess/{name}"
    try:
        write_slowly(target, raw, header, frame)
    finally:
        finish(d, state, rel)
    assert journal_rows(state) == [(rel, "verified", None, 1)]
    streamed = [x for a, x in audit(state) if a == "streamed"]
    assert len(streamed) == 1, audit(state)
    assert streamed[0]["frames"] == FRAMES
    # frames encoded while the file was short of its size (the last frame completes it)
    assert 1 <= streamed[0]["while_growing"] < FRAMES, streamed
    assert "stream_fallback" not in [a for a, _ in audit(state)]
    stored_equals_source(tmp_path, state, dest, rel, target)
    assert not [p for p in dest.rglob(".*") if p.is_file() and "acqd-tmp" in p.name], "a temporary was left"


def test_stream_can_be_turned_off(tmp_path: Path) -> None:
    """`stream: false` on the watch root: the movie ships the whole-file way once complete."""
    raw, header, frame, name = movie(tmp_path)
    watch, dest, state, cfg = frames_config(tmp_path, "t-movie")
    cfg.write_text(cfg.read_text().replace("settle: 0.2s}", "settle: 60s, stream: false}"))
    (watch / "sess").mkdir()
    d = Background("run", "--config", str(cfg))
    wait_for(lambda: (state / "journal.sqlite").exists(), 30, "the daemon to start")
    rel = f"sess/{name}"
    try:
        write_slowly(watch / "sess" / name, raw, header, frame)
    finally:
        finish(d, state, rel)
    assert "streamed" not in [a for a, _ in audit(state)]
    stored_equals_source(tmp_path, state, dest, rel, watch / "sess" / name)


def fallbacks(state: Path) -> list[str]:
    return [str(x.get("reason", "")) for a, x in audit(state) if a == "stream_fallback"]


def test_header_rewritten_falls_back(tmp_path: Path) -> None:
    """The writer rewrites the header (its statistics) before the last frame: the streamed copy is
    dropped, the file ships whole, and the copy is the final file."""
    raw, header, frame, name = movie(tmp_path)
    watch, dest, state, d = start(tmp_path)
    target, rel = watch / "sess" / name, f"sess/{name}"
    new_header = bytearray(raw[:header])
    new_header[84:88] = np.float32(42.5).tobytes()  # amean (dmean), as IMOD updates it at the end
    try:
        write_slowly(target, raw, header, frame, lambda fd: os.pwrite(fd, bytes(new_header), 0))
    finally:
        finish(d, state, rel)
    assert target.read_bytes()[:header] == bytes(new_header)
    stored_equals_source(tmp_path, state, dest, rel, target)  # the oracle first: the copy is right
    why = fallbacks(state)
    assert why and ("header" in why[0] or "differs" in why[0]), audit(state)
    assert "streamed" not in [a for a, _ in audit(state)]


def test_earlier_frame_rewritten_falls_back(tmp_path: Path) -> None:
    """The writer rewrites frame 0 after it was streamed: the compare at completion finds the
    difference, the file ships whole, and the copy holds the rewritten frame."""
    raw, header, frame, name = movie(tmp_path)
    watch, dest, state, d = start(tmp_path)
    target, rel = watch / "sess" / name, f"sess/{name}"
    other = bytes(255 - b for b in raw[header : header + frame])
    try:
        write_slowly(target, raw, header, frame, lambda fd: os.pwrite(fd, other, header))
    finally:
        finish(d, state, rel)
    assert target.read_bytes()[header : header + frame] == other
    stored_equals_source(tmp_path, state, dest, rel, target)  # the oracle first: the copy is right
    why = fallbacks(state)
    assert why and "differs from the frames streamed" in why[0], audit(state)


def test_truncated_and_rewritten_falls_back(tmp_path: Path) -> None:
    """The writer truncates the movie part way and writes it again with other frames: the stream
    is dropped and the copy is the final file."""
    raw, header, frame, name = movie(tmp_path)
    watch, dest, state, d = start(tmp_path)
    target, rel = watch / "sess" / name, f"sess/{name}"
    second = raw[:header] + bytes(255 - b for b in raw[header:])

    def truncate(fd: int) -> None:
        os.ftruncate(fd, header + frame)
        time.sleep(PAUSE)  # the daemon looks meanwhile
        os.pwrite(fd, second[header + frame : header + (FRAMES - 1) * frame], header + frame)

    try:
        write_slowly(target, raw, header, frame, truncate)  # frames 1-6 streamed, then replaced
    finally:
        finish(d, state, rel)
    rest = slice(header + frame, header + (FRAMES - 1) * frame)
    assert target.read_bytes()[rest] == second[rest] != raw[rest]
    stored_equals_source(tmp_path, state, dest, rel, target)  # the oracle first: the copy is right
    why = fallbacks(state)
    assert why and ("truncated" in why[0] or "differs" in why[0]), audit(state)


def test_preallocated_zeros_fall_back(tmp_path: Path) -> None:
    """A writer that allocates the whole file first (zeros) and fills the frames in later: what the
    stream read (zeros) is not the complete file, so the file ships whole and the copy is right.
    Settled by stillness: the size matches the header from the start."""
    raw, header, frame, name = movie(tmp_path)
    PROFILES["t-movie-still"] = PROFILES["t-movie"].replace("format: mrc", "format: none")
    try:
        watch, dest, state, d = start(tmp_path, "t-movie-still", settle="2s")
    finally:
        del PROFILES["t-movie-still"]
    target, rel = watch / "sess" / name, f"sess/{name}"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, raw[:header])
            os.ftruncate(fd, len(raw))
            for i in range(FRAMES):
                time.sleep(PAUSE)
                os.pwrite(fd, raw[header + i * frame : header + (i + 1) * frame], header + i * frame)
        finally:
            os.close(fd)
    finally:
        finish(d, state, rel)
    stored_equals_source(tmp_path, state, dest, rel, target)  # the oracle first: the copy is right
    why = fallbacks(state)
    assert why and "differs from the frames streamed" in why[0], audit(state)


@pytest.mark.parametrize("point", ["during_stream:2", "after_compare"])
def test_crash_mid_stream_leaves_no_final_object(tmp_path: Path, point: str) -> None:
    """SIGKILL while the movie is being streamed (`during_stream`: the camera still writing), or once
    the complete file matched what was streamed (`after_compare`, not committed): nothing is under a
    final name, only the hidden temporary; the next start removes it and ships the movie correctly."""
    raw, header, frame, name = movie(tmp_path)
    watch, dest, state, cfg = frames_config(tmp_path, "t-movie")
    cfg.write_text(cfg.read_text().replace("settle: 0.2s", "settle: 60s"))
    (watch / "sess").mkdir()
    target, rel = watch / "sess" / name, f"sess/{name}"
    d = Background("run", "--config", str(cfg), env=dict(os.environ, ACQD_CRASH_AT=point))
    wait_for(lambda: (state / "journal.sqlite").exists(), 30, "the daemon to start")
    mid = point.startswith("during_stream")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, raw[:header])
        for i in range(FRAMES):
            time.sleep(PAUSE)
            if i == FRAMES - 1 and mid:  # the last frame only once the daemon is dead
                wait_for(lambda: d.proc.poll() is not None, 60, "the crash mid-stream", d, state)
            os.pwrite(fd, raw[header + i * frame : header + (i + 1) * frame], header + i * frame)
    finally:
        os.close(fd)
    try:
        wait_for(lambda: d.proc.poll() is not None, 60, f"the crash at {point}", d, state)
    finally:
        d.kill()
    assert d.proc.returncode == -9, d.stderr()
    objects = [p for p in dest.rglob("*") if p.is_file()]
    temps = [p for p in objects if p.name.startswith(".") and "acqd-tmp" in p.name]
    assert temps, f"the crash left no temporary: the test would prove nothing ({objects})"
    finals = [p for p in objects if not any(part.startswith((".", "~acqd-")) for part in p.relative_to(dest).parts)]
    assert finals == [], f"an object under a final name after a crash mid-stream: {finals}"
    cfg.write_text(cfg.read_text().replace("settle: 60s", "settle: 0.2s"))  # --once: no window to wait out
    r = run_acqd("run", "--config", str(cfg), "--once")
    assert r.returncode == 0, r.stderr
    assert journal_states(state) == {rel: "verified"}
    stored_equals_source(tmp_path, state, dest, rel, target)
    assert not [p for p in dest.rglob("*") if p.is_file() and "acqd-tmp" in p.name], "a temporary survived"


def test_streamed_movie_is_not_released_while_a_writer_has_it_open(tmp_path: Path) -> None:
    """Release after verify: a streamed movie whose writer keeps it open after its last frame is
    verified and kept (release held) until the writer closes it; then released."""
    raw, header, frame, name = movie(tmp_path)
    watch, _dest, state, cfg = frames_config(tmp_path, "t-movie")
    cfg.write_text(cfg.read_text().replace("settle: 0.2s}", "settle: 2s, placement: {release_local: after_verify}}"))
    (watch / "sess").mkdir()
    target, rel = watch / "sess" / name, f"sess/{name}"
    d = Background("run", "--config", str(cfg))
    try:
        wait_for(lambda: (state / "journal.sqlite").exists(), 30, "the daemon to start")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, raw[:header])
            for i in range(FRAMES):
                time.sleep(PAUSE)
                os.pwrite(fd, raw[header + i * frame : header + (i + 1) * frame], header + i * frame)
            wait_for(lambda: journal_states(state).get(rel) == "verified", 90, "the movie verified", d, state)
            wait_for(lambda: "release-held" in [a for a, _ in audit(state)], 60, "the release held", d, state)
            assert target.read_bytes() == raw, "released (or changed) while a writer had it open"
            assert journal_states(state)[rel] == "verified"
        finally:
            os.close(fd)
        wait_for(lambda: journal_states(state).get(rel) == "released", 90, "the release after the close", d, state)
    finally:
        code, err = d.terminate()
    assert code == 0, err
    assert not target.exists()
    assert "streamed" in [a for a, _ in audit(state)]
    [(only, _stored)] = verified_copies(state).items()
    assert only == (rel, 1)
    out = tmp_path / "restored.mrc"
    r = run_acqd("restore", rel, str(out), "--config", str(tmp_path / "acqd.yaml"))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == raw
