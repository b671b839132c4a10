"""Simulated detectors: write files the way each camera's software does, with realistic pixels.

- gatan-k3 / gatan-k2: an MRC movie whose header is written first and whose frames are appended over
  time (uint8 electron counts, Poisson at ~0.8 e/pixel/frame).
- falcon: EPU style: the MRC (FEI2 extended header) is written under a temporary name, renamed, and an
  XML sidecar follows the movie.
- direct-electron: MRC movies, uint16 counts.
- hamamatsu-orca / generic: light-sheet TIFF stacks written plane by plane at a frame rate (uint16:
  camera offset ~100 ADU, read noise ~2 ADU, shot noise on sparse bright structure).
- merlin-medipix: .mib frames, each behind its 768-byte header, sparse 12-bit counts.

Seeded and deterministic: the same seed gives the same pixels.
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acqd.errors import AcqdError

SIMULATED = ("gatan-k3", "gatan-k2", "falcon", "direct-electron", "hamamatsu-orca", "merlin-medipix", "generic")
FRAME_SHAPES = {
    "gatan-k3": (4092, 5760),
    "gatan-k2": (3710, 3838),
    "falcon": (4096, 4096),
    "direct-electron": (1024, 1024),
    "hamamatsu-orca": (1024, 1024),
    "generic": (512, 512),
    "merlin-medipix": (512, 512),
}


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
    dose: float = 0.8  # electrons per pixel per frame (counting detectors)
    scan_x: int = 0  # merlin-medipix: probe positions per scan line of a 4D-STEM scan (0: a frame series)


# --- pixels ------------------------------------------------------------------------------------


def poisson_frames(rng: np.random.Generator, n: int, h: int, w: int, lam: float, dtype: str = "uint8") -> np.ndarray:
    """Electron counts: Poisson(lam) per pixel, by inverse-CDF sampling of uniform numbers (exact up
    to a truncation at 12 counts, whose tail probability at lam=0.8 is below 1e-11)."""
    kmax = 12
    cdf = np.cumsum([math.exp(-lam) * lam**k / math.factorial(k) for k in range(kmax)]).astype(np.float32)
    out = np.empty((n, h, w), dtype=dtype)
    for i in range(n):
        u = rng.random((h, w), dtype=np.float32)
        counts = np.zeros((h, w), dtype=np.uint8)
        for c in cdf:
            counts += u > c
        out[i] = counts
    return out


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


def sparse_counts(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Medipix-like 12-bit counting frames, ~96 % zeros."""
    out = np.zeros((n, h, w), dtype=">u2")
    for i in range(n):
        mask = rng.random((h, w)) < 0.04
        out[i][mask] = rng.integers(1, 4096, size=int(mask.sum()))
    return out


# --- file formats ------------------------------------------------------------------------------


def mrc_header(
    nz: int, ny: int, nx: int, mode: int, ext: bytes = b"", exttyp: bytes = b"", apix: float = 0.83
) -> bytes:
    """An MRC2014 header (little-endian) for a (nz, ny, nx) stack; `ext` is the extended header."""
    h = bytearray(1024)
    struct.pack_into("<10i", h, 0, nx, ny, nz, mode, 0, 0, 0, nx, ny, nz)
    struct.pack_into("<3f", h, 40, nx * apix, ny * apix, nz * apix)  # cella (Angstrom)
    struct.pack_into("<3f", h, 52, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", h, 64, 1, 2, 3)
    struct.pack_into("<3f", h, 76, 0.0, -1.0, -2.0)  # dmin > dmax, dmean < dmin: statistics not computed
    struct.pack_into("<i", h, 88, 0)  # ispg 0: an image stack (a movie)
    struct.pack_into("<i", h, 92, len(ext))
    h[104:108] = exttyp.ljust(4, b"\0")[:4]
    struct.pack_into("<i", h, 108, 20140)
    if mode == 0:  # IMOD stamp, flags bit 0 clear: the bytes are unsigned (as SerialEM writes K3 movies)
        struct.pack_into("<2i", h, 152, 1146047817, 0)
    h[208:212] = b"MAP "
    h[212:216] = b"\x44\x44\x00\x00"
    struct.pack_into("<f", h, 216, -1.0)  # rms < 0: not computed
    struct.pack_into("<i", h, 220, 1)
    h[224:304] = b"acqd simulate".ljust(80)
    return bytes(h) + ext


# the DAC settings of one Medipix3RX chip as a Merlin quad header lists them (four times)
_DACS = (
    "3RX,011,511,000,000,000,000,000,000,175,010,200,125,100,100,093,100,099,030,128,004,255,140,128,191,179,511,511"
)


def merlin_frame_header(k: int, ny: int, nx: int, exposure_ns: int = 1_000_000) -> bytes:
    """A Merlin quad frame header (768 bytes) as Merlin software 0.77 writes it: the MQ1 fields,
    thresholds, each chip's DACs, then the MQ1A extension (UTC timestamp, exposure in ns, counter
    depth) that rosettasciio reads from the end."""
    stamp = f"2026-11-22 00:00:{k // 1000:02d}.{k % 1000:03d}000"
    iso = f"2026-11-22T00:00:{k // 1000:02d}.{k % 1000:03d}000000Z"
    thresholds = ",".join(["2.000000E+0", "5.110000E+2", *["0.000000E+0"] * 6])
    fields = [
        "MQ1",
        f"{k + 1:06d}",
        "00768",
        "04",
        f"{nx:04d}",
        f"{ny:04d}",
        "U16",
        "   2x2",
        "0F",
        stamp,
        f"{exposure_ns / 1e9:.6f}",
        "0",
        "0",
        "0",
        thresholds,
        ",".join([_DACS] * 4),
        "MQ1A",
        iso,
        f"{exposure_ns}ns",
        "12",
        "",
    ]
    return ",".join(fields).encode().ljust(768, b"\0")


def merlin_hdr(frames: int, per_trigger: int) -> bytes:
    """The acquisition's .hdr text (tab-separated, CRLF, as Merlin writes it); a 4D-STEM scan has
    one trigger per scan line: 'Frames per Trigger' is the scan's width."""
    lines = [
        "HDR,\t",
        "Time and Date Stamp (day, mnth, yr, hr, min, s):\t22/11/2026 00:00:00",
        "Chip Type (Medipix 3.0, Medipix 3.1, Medipix 3RX):\tMedipix 3RX",
        "Assembly Size (NX1, 2X2):\t   2x2",
        "Chip Mode  (SPM, CSM, CM, CSCM):\tSPM",
        "Counter Depth (number):\t12",
        "Acquisition Type (Normal, Th_scan, Config):\tNormal",
        f"Frames in Acquisition (Number):\t{frames}",
        f"Frames per Trigger (Number):\t{per_trigger}",
        "Trigger Start (Positive, Negative, Internal):\t" + ("Positive" if per_trigger > 1 else "Internal"),
        "Readout System:\tMerlin Quad",
        "Software Version:\t0.77",
        "End\t",
    ]
    return "\r\n".join(lines).encode()


def _pace(t0: float, written: int, rate_mb_s: float) -> None:
    if rate_mb_s > 0:
        ahead = written / (rate_mb_s * 1e6) - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)


class _Writer:
    def __init__(self, spec: SimSpec, out: Path) -> None:
        self.spec = spec
        self.out = out
        self.rng = np.random.default_rng(spec.seed)
        self.t0 = time.monotonic()
        self.total = 0

    def wrote(self, n: int) -> None:
        self.total += n
        _pace(self.t0, self.total, self.spec.rate_mb_s)

    def session(self, i: int) -> Path:
        d = self.out / f"session_{i % self.spec.sessions:03d}"
        d.mkdir(parents=True, exist_ok=True)
        return d


def _mrc_movie(
    w: _Writer,
    path: Path,
    frames: Iterator[np.ndarray],
    n: int,
    shape: tuple[int, int],
    mode: int,
    ext: bytes = b"",
    exttyp: bytes = b"",
) -> None:
    with open(path, "wb") as f:
        f.write(mrc_header(n, shape[0], shape[1], mode, ext, exttyp))
        f.flush()
        for frame in frames:
            f.write(frame.tobytes())
            f.flush()
            w.wrote(frame.nbytes)
        os.fsync(f.fileno())


def _never_over(folder: Path, *names: str) -> None:
    """A simulated camera pointed at a folder holding real data must not overwrite it."""
    for name in names:
        if os.path.lexists(folder / name):
            raise AcqdError(
                f"{folder / name} exists: acqd simulate never overwrites a file; give it an empty --out folder"
            )


def simulate(
    detector: str,
    out: Path,
    spec: SimSpec,
    progress: Callable[[Path], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Path]:
    """Write `spec.files` files as `detector`'s acquisition software would; return their paths."""
    if detector not in SIMULATED:
        raise ValueError(f"no simulator for {detector!r} (have: {', '.join(SIMULATED)})")
    w = _Writer(spec, out)
    ny, nx = spec.height, spec.width
    written: list[Path] = []
    for i in range(spec.files):
        if should_stop():
            break
        d = w.session(i)
        n = spec.frames
        _never_over(
            d,
            f"movie_{i:05d}.mrc",
            f"FoilHole_{1000 + i}_Data_fractions.mrc",
            f"FoilHole_{1000 + i}_Data.xml",
            f"scan_{i:05d}.mib",
            f"scan_{i:05d}.hdr",
            f"stack_{i:05d}.tif",
        )
        if detector in ("gatan-k3", "gatan-k2", "direct-electron"):
            path = d / f"movie_{i:05d}.mrc"
            dtype, mode = ("uint16", 6) if detector == "direct-electron" else ("uint8", 0)
            frames = (poisson_frames(w.rng, 1, ny, nx, spec.dose, dtype)[0] for _ in range(n))
            _mrc_movie(w, path, frames, n, (ny, nx), mode)
        elif detector == "falcon":
            path = d / f"FoilHole_{1000 + i}_Data_fractions.mrc"
            tmp = d / (path.name + ".tmp")
            ext = bytes(768 * n)  # an FEI2 extended header: one 768-byte block per frame
            frames = (poisson_frames(w.rng, 1, ny, nx, spec.dose, "uint16")[0] for _ in range(n))
            _mrc_movie(w, tmp, frames, n, (ny, nx), 6, ext, b"FEI2")
            os.rename(tmp, path)
            xml = d / f"FoilHole_{1000 + i}_Data.xml"
            xml.write_text(
                f'<?xml version="1.0"?>\n<MicroscopeImage><frames>{n}</frames>'
                f"<dose>{spec.dose}</dose></MicroscopeImage>\n"
            )
        elif detector == "merlin-medipix":
            path = d / f"scan_{i:05d}.mib"
            data = sparse_counts(w.rng, n, ny, nx)
            per_line = spec.scan_x if spec.scan_x > 1 and n % spec.scan_x == 0 else 1
            path.with_suffix(".hdr").write_bytes(merlin_hdr(n, per_line))  # Merlin writes it first
            with open(path, "wb") as f:
                for k, frame in enumerate(data):
                    f.write(merlin_frame_header(k, ny, nx) + frame.tobytes())
                    w.wrote(768 + frame.nbytes)
        else:  # light-sheet sCMOS: TIFF planes written one by one
            import tifffile

            path = d / f"stack_{i:05d}.tif"
            tmp = d / f".{path.name}.part" if spec.temp_rename else path
            data = scmos_frames(w.rng, n, ny, nx)
            with tifffile.TiffWriter(tmp) as tw:
                for plane in data:
                    tw.write(
                        plane,
                        photometric="minisblack",
                        contiguous=False,
                        software="acqd simulate",
                        resolution=(1 / 0.104e-4, 1 / 0.104e-4),
                        resolutionunit=3,
                        metadata=None,
                    )
                    w.wrote(plane.nbytes)
            if tmp != path:
                os.rename(tmp, path)
        written.append(path)
        if progress is not None:
            progress(path)
    return written


def simulate_raw(
    out: Path,
    spec: SimSpec,
    progress: Callable[[Path], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Path]:
    """Raw uint16 stacks (no header), frame by frame (kept for the generic profile)."""
    w = _Writer(spec, out)
    written: list[Path] = []
    for i in range(spec.files):
        if should_stop():
            break
        final = w.session(i) / f"stack_{i:05d}.raw"
        tmp = final.with_name(f".{final.name}.part") if spec.temp_rename else final
        with open(tmp, "wb") as f:
            for frame in scmos_frames(w.rng, spec.frames, spec.height, spec.width):
                f.write(frame.tobytes())
                f.flush()
                w.wrote(frame.nbytes)
            os.fsync(f.fileno())
        if tmp != final:
            os.rename(tmp, final)
        written.append(final)
        if progress is not None:
            progress(final)
    return written
