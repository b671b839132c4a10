"""A simulated detector: writes files the way acquisition software does, paced, seeded."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SimSpec:
    files: int = 8
    frames: int = 32
    height: int = 512
    width: int = 512
    sessions: int = 1
    rate_mb_s: float = 0.0  # 0: as fast as the disk takes it
    seed: int = 0
    temp_rename: bool = True  # write under a temporary name, then rename (like EPU)


def scmos_frames(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """sCMOS-like uint16 frames: camera offset ~100 ADU, read noise ~2 ADU, sparse bright structure
    with shot noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    signal = np.zeros((h, w), dtype=np.float32)
    for _ in range(12):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(4, 20)
        signal += rng.uniform(50, 400) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    out = np.empty((n, h, w), dtype=np.uint16)
    for i in range(n):
        frame = rng.poisson(signal).astype(np.float32) + 100.0 + rng.normal(0, 2.0, size=(h, w))
        out[i] = np.clip(frame, 0, 65535).astype(np.uint16)
    return out


def simulate_raw(
    out: Path,
    spec: SimSpec,
    progress: Callable[[Path], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Path]:
    """Write `spec.files` stacks of uint16 frames as raw files, frame by frame, paced to the rate."""
    rng = np.random.default_rng(spec.seed)
    written: list[Path] = []
    t0 = time.monotonic()
    total = 0
    for i in range(spec.files):
        if should_stop():
            break
        session = out / f"session_{i % spec.sessions:03d}"
        session.mkdir(parents=True, exist_ok=True)
        final = session / f"stack_{i:05d}.raw"
        tmp = session / f".{final.name}.part" if spec.temp_rename else final
        frames = scmos_frames(rng, spec.frames, spec.height, spec.width)
        with open(tmp, "wb") as f:
            for frame in frames:
                f.write(frame.tobytes())
                f.flush()
                total += frame.nbytes
                if spec.rate_mb_s > 0:
                    ahead = total / (spec.rate_mb_s * 1e6) - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            os.fsync(f.fileno())
        if tmp != final:
            os.rename(tmp, final)
        written.append(final)
        if progress is not None:
            progress(final)
    return written
