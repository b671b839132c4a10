"""Make the small real-data excerpts under tests/data/ from the full files (run by hand, not by tests).

    python tests/data/make_excerpts.py [SOURCE]      # SOURCE defaults to ../shared/data

Small files are copied whole. Large ones are cut so that what remains is still a valid file of the
same format, with every byte that is kept taken from the original (what changed is listed per file
here and in tests/data/README.md):

- Medipix .mib: the first FRAMES whole frames (each carries its own 768-byte header, so a prefix of
  whole frames is a valid .mib); the .hdr's "Frames in Acquisition (Number)" value 9 becomes FRAMES
  (one digit for one digit: the .hdr keeps its 2048 bytes).
- light-sheet TIFF: the first PLANES pages. The original lays out each page's bytes (private tag,
  strip, IFD) one after the other, so the excerpt is the file's prefix up to the end of the last kept
  page's bytes, with that page's next-IFD offset set to 0 (4 bytes changed).
- Falcon MRC: the 1024-byte header and the FEI2 extended header kept byte for byte except nx/ny, mx/my
  and cella x/y (so the pixel size cella/mx stays that of the original) and dmin/dmax/dmean (the
  crop's own); the image is the CROP x CROP centre of the 4096 x 4096 micrograph.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FRAMES = 2
PLANES = 4
CROP = 256

WHOLE = [
    "de-celeritas/ROI_Random_Scan_movie.mrc",
    "de-celeritas/ROI_Random_Scan_info.txt",
    "velox/HAADFscan.mrc",
    "tvips/TVIPS_bin4.tif",
]
LICENCES = {
    "falcon/LICENSE.mrcfile": "LICENSE.mrcfile",
    "lightsheet/LICENSE.pycudadecon": "LICENSE.pycudadecon",
    "COPYING.rosettasciio.txt": "COPYING.rosettasciio.txt",
}


def medipix(src: Path, out: Path) -> None:
    stem = "Quad_9_Frame_CounterDepth_12_Rows_256"
    raw = (src / "medipix" / f"{stem}.mib").read_bytes()
    head = raw[:768].split(b",")
    assert head[0] == b"MQ1", head[0]
    header_bytes, nx, ny, ptype = int(head[2]), int(head[4]), int(head[5]), head[6].decode()
    frame = header_bytes + nx * ny * int(ptype[1:]) // 8
    assert len(raw) % frame == 0, "not whole frames"
    (out / "medipix" / f"{stem}.mib").write_bytes(raw[: FRAMES * frame])
    hdr = (src / "medipix" / f"{stem}.hdr").read_bytes()
    key = b"Frames in Acquisition (Number):\t9\r\n"
    assert hdr.count(key) == 1, "the .hdr does not state 9 frames as expected"
    new = hdr.replace(key, key.replace(b"\t9\r", f"\t{FRAMES}\r".encode()))
    assert len(new) == len(hdr)
    (out / "medipix" / f"{stem}.hdr").write_bytes(new)


TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}


def tiff_prefix(raw: bytes, pages: int) -> bytes:
    """The first `pages` pages of a little-endian classic TIFF whose pages are laid out in order."""
    assert raw[:4] == b"II*\x00", "a little-endian classic TIFF"
    (ifd,) = struct.unpack_from("<I", raw, 4)
    end = 8
    last_next = 0
    for _ in range(pages):
        assert ifd, "fewer pages than asked for"
        (n,) = struct.unpack_from("<H", raw, ifd)
        end = max(end, ifd + 2 + 12 * n + 4)
        values: dict[int, tuple[int, int, int]] = {}
        for k in range(n):
            tag, typ, count, value = struct.unpack_from("<HHII", raw, ifd + 2 + 12 * k)
            size = TYPE_SIZE[typ] * count
            if size > 4:
                end = max(end, value + size)
            values[tag] = (typ, count, ifd + 2 + 12 * k + 8 if size <= 4 else value)
        strips = []
        for tag in (273, 279):  # StripOffsets, StripByteCounts
            typ, count, at = values[tag]
            fmt = "<" + ("H" if typ == 3 else "I") * count
            strips.append(struct.unpack_from(fmt, raw, at))
        for off, nbytes in zip(*strips, strict=True):
            end = max(end, off + nbytes)
        last_next = ifd + 2 + 12 * n
        (ifd,) = struct.unpack_from("<I", raw, last_next)
        assert ifd == 0 or ifd > last_next, "pages not laid out in order: a prefix would not hold them"
    out = bytearray(raw[:end])
    struct.pack_into("<I", out, last_next, 0)
    return bytes(out)


def lightsheet(src: Path, out: Path) -> None:
    raw = (src / "lightsheet" / "im_raw.tif").read_bytes()
    (out / "lightsheet" / "im_raw.tif").write_bytes(tiff_prefix(raw, PLANES))


def falcon(src: Path, out: Path) -> None:
    raw = (src / "falcon" / "epu2.9_example.mrc").read_bytes()
    nx, ny, nz, mode = struct.unpack_from("<4i", raw, 0)
    mx, my, _ = struct.unpack_from("<3i", raw, 28)
    ax, ay = struct.unpack_from("<2f", raw, 40)
    (next_,) = struct.unpack_from("<i", raw, 92)
    assert (nz, mode, raw[104:108]) == (1, 6, b"FEI2"), "a single uint16 image with an FEI2 header"
    start = 1024 + next_
    img = np.frombuffer(raw, "<u2", nx * ny, start).reshape(ny, nx)
    y0, x0 = (ny - CROP) // 2, (nx - CROP) // 2
    crop = np.ascontiguousarray(img[y0 : y0 + CROP, x0 : x0 + CROP])
    head = bytearray(raw[:start])
    struct.pack_into("<2i", head, 0, CROP, CROP)
    struct.pack_into("<2i", head, 28, CROP, CROP)
    # the pixel size (cella / mx) stays the original's, to float32 precision
    struct.pack_into("<2f", head, 40, ax / mx * CROP, ay / my * CROP)
    struct.pack_into("<3f", head, 76, crop.min(), crop.max(), crop.mean(dtype=np.float64))
    (out / "falcon" / "epu2.9_example.mrc").write_bytes(bytes(head) + crop.tobytes())


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data").resolve()
    for sub in ("medipix", "lightsheet", "falcon", "de-celeritas", "velox", "tvips"):
        (HERE / sub).mkdir(exist_ok=True)
    for rel in WHOLE:
        shutil.copyfile(src / rel, HERE / rel)
    for rel, name in LICENCES.items():
        shutil.copyfile(src / rel, HERE / name)
    medipix(src, HERE)
    lightsheet(src, HERE)
    falcon(src, HERE)
    files = sorted(p for p in HERE.rglob("*") if p.is_file() and p.parent != HERE)
    with (HERE / "SHA256SUMS").open("w") as fh:
        for p in files:
            fh.write(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(HERE)}\n")
    total = sum(p.stat().st_size for p in files)
    print(f"{len(files)} data files, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
