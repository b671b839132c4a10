"""Frame-aware layouts: `zarr` (OME-Zarr 0.5 on Zarr v3, sharded) and `tiff` (compressed TIFF).

Both read frames through a reader, take the checksum of the decoded pixels (canonical little-endian
bytes, frame by frame), write to a hidden temporary and commit it under the final name, verify by
decoding what was written, and restore the source format (MRC, MIB and raw byte for byte; TIFF with
its pixels and tags).
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import tempfile
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from acqd.checksum import Hasher
from acqd.codec import FrameCodec
from acqd.crash import crash_point
from acqd.errors import NameTakenError, SourceReadError, VerifyError
from acqd.ports import TierPort
from acqd.readers import Expect, FrameSource, open_frames
from acqd.values import WriteResult

ARRAY = "0"
DESC_PREFIX = "acqd/1 "  # not bare JSON: tifffile would take a JSON description for its own metadata
RESTORE = "acqd-restore"


def canonical(block: np.ndarray) -> np.ndarray:
    """The bytes the pixel checksum is taken over: C order, little-endian."""
    le = block.dtype.newbyteorder("<")
    return np.ascontiguousarray(block.astype(le, copy=False))


class FrameLayout:
    """Shared reading, hashing and timing; subclasses write and read their format."""

    name = "frames"
    suffix = ""

    def __init__(
        self, codec: FrameCodec, reader: str, expect: Expect, options: dict[str, Any], shard_bytes: int = 64 << 20
    ) -> None:
        self.codec = codec
        self.reader = reader
        self.expect = expect
        self.options = options
        self.shard_bytes = shard_bytes

    def frames_per_block(self, src: FrameSource) -> int:
        return max(1, min(src.shape[0], self.shard_bytes // max(1, src.frame_bytes)))

    def _open(self, source: Any, size: int) -> FrameSource:
        try:
            return open_frames(self.reader, source.file, size, self.expect, self.options)
        except OSError as exc:
            raise SourceReadError(f"read error: {exc.strerror or exc}") from None

    def _blocks(
        self, src: FrameSource, k: int, hasher: Hasher, timing: dict[str, float]
    ) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, src.shape[0], k):
            stop = min(src.shape[0], start + k)
            t0 = time.perf_counter()
            try:
                block = src.read(start, stop)
            except OSError as exc:
                raise SourceReadError(f"read error: {exc.strerror or exc}") from None
            hasher.update(canonical(block).data)
            timing["read"] += time.perf_counter() - t0
            yield start, block

    def meta(self, src: FrameSource) -> dict[str, Any]:
        return {
            "format": src.format,
            "dtype": src.dtype.str,
            "shape": list(src.shape),
            "header": src.header,
            "axis0": src.axis0,
            "pixel_size_um": list(src.pixel_size_um) if src.pixel_size_um else None,
        }

    def write(self, source: BinaryIO, size: int, tier: TierPort, dest: str) -> WriteResult:
        src = self._open(source, size)
        hasher = Hasher()
        hasher.update(src.restore or b"")  # header bytes are content too: the checksum covers them
        timing = {"read": 0.0, "encode": 0.0, "write": 0.0}
        t0 = time.perf_counter()
        try:
            stored = self._write(src, hasher, timing, tier, dest, source)
        except NameTakenError as exc:  # the caller verifies what is in the way against this result
            exc.result = WriteResult(hasher.hexdigest(), size, 0, self.codec.spec)
            raise
        total = time.perf_counter() - t0
        timing["write"] = max(0.0, total - timing["read"] - timing["encode"])
        return WriteResult(hasher.hexdigest(), size, stored, self.codec.spec, tuple(timing.items()))

    def _write(
        self, src: FrameSource, hasher: Hasher, timing: dict[str, float], tier: TierPort, dest: str, source: Any
    ) -> int:
        raise NotImplementedError

    @staticmethod
    def _restore_bytes(
        meta: dict[str, Any], blob: bytes, frames: Iterator[np.ndarray], out: BinaryIO, hasher: Hasher
    ) -> None:
        """Write the source file back: header bytes and pixels in the source's own byte order."""
        dtype = np.dtype(meta["dtype"])
        fmt = meta["format"]
        hasher.update(blob)
        if fmt == "mib":
            hb = meta["header"]["header_bytes"]
            for i, frame in enumerate(frames):
                hasher.update(canonical(frame).data)
                out.write(blob[i * hb : (i + 1) * hb])
                out.write(np.ascontiguousarray(frame.astype(dtype, copy=False)).tobytes())
            return
        out.write(blob)
        for frame in frames:
            hasher.update(canonical(frame).data)
            out.write(np.ascontiguousarray(frame.astype(dtype, copy=False)).tobytes())

    @staticmethod
    def _restore_tiff(
        meta: dict[str, Any], frames: Iterator[np.ndarray], out: BinaryIO, hasher: Hasher, blob: bytes = b""
    ) -> None:
        import tifffile

        from acqd.readers.tiff import restore_skeleton

        dtype = np.dtype(meta["dtype"])
        header = meta["header"]
        if blob:  # an uncompressed source: its skeleton and the pixels give it back byte for byte
            hasher.update(blob)

            def hashed() -> Iterator[np.ndarray]:
                for frame in frames:
                    hasher.update(canonical(frame).data)
                    yield frame

            restore_skeleton(blob, hashed(), out, dtype)
            return
        per_page = header.get("page_tags")
        with tifffile.TiffWriter(
            out, byteorder=header.get("byteorder", "<"), bigtiff=header.get("bigtiff", False)
        ) as tw:
            for i, frame in enumerate(frames):
                hasher.update(canonical(frame).data)
                tags = per_page[i] if per_page else header["tags"]
                extratags = []
                res: dict[int, Any] = {}
                for t in tags:
                    value = _tag_value(t, header.get("byteorder", "<"))
                    if t["code"] in (282, 283, 296):  # resolution: tifffile writes these itself
                        res[t["code"]] = value
                        continue
                    extratags.append((t["code"], t["dtype"], t["count"], value, True))
                resolution = (tuple(res[282]), tuple(res[283])) if 282 in res and 283 in res else None
                tw.write(
                    frame.astype(dtype.newbyteorder("="), copy=False),
                    photometric="minisblack",
                    metadata=None,
                    description=None,
                    software=False,
                    extratags=extratags,
                    resolution=resolution,
                    resolutionunit=res.get(296),
                    contiguous=False,
                )


def _tag_value(t: dict[str, Any], byteorder: str) -> Any:
    """A TIFF tag's value, decoded from the raw bytes the reader kept, in the form tifffile writes."""
    import tifffile

    raw = base64.b64decode(t["b64"])
    dtype = int(t["dtype"])
    if dtype == 7:  # UNDEFINED
        return raw
    if dtype == 2:  # ASCII; cameras put 8-bit bytes here too, which go back as they were
        text = raw.rstrip(b"\0")
        return text.decode("ascii") if text.isascii() else raw
    fmt = tifffile.TIFF.DATA_FORMATS[dtype]
    values = struct.unpack(f"{byteorder}{len(raw) // struct.calcsize('<' + fmt[-1])}{fmt[-1]}", raw)
    if dtype in (5, 10):  # rationals: pairs
        pairs = tuple(values)
        return pairs if int(t["count"]) > 1 else pairs[:2]
    return values[0] if int(t["count"]) == 1 else tuple(values)


class ZarrLayout(FrameLayout):
    """OME-Zarr 0.5 on Zarr v3: one array per source file, one chunk per frame, sharded so a file is a
    few objects; each shard is written once (a whole shard's frames at a time)."""

    name = "zarr"
    suffix = ".zarr"

    def _write(
        self, src: FrameSource, hasher: Hasher, timing: dict[str, float], tier: TierPort, dest: str, source: Any
    ) -> int:
        k = self.frames_per_block(src)
        tmp = tier.temp_tree(dest)
        tier.remove_temp(dest)
        try:
            asyncio.run(self._write_async(src, k, hasher, timing, tier, tmp))
            crash_point("after_encode")
            source.check()  # the source is unchanged: only now may the copy get its final name
            stored = tier.tree_size(tmp)
            tier.commit_tree(dest)
        except BaseException:
            tier.remove_temp(dest)
            raise
        return stored

    async def _write_async(
        self, src: FrameSource, k: int, hasher: Hasher, timing: dict[str, float], tier: TierPort, path: str
    ) -> None:
        import zarr

        store = tier.zarr_store(path)
        group = await zarr.api.asynchronous.open_group(
            store=store, mode="w", zarr_format=3, attributes=self.group_attrs(src)
        )
        n, ny, nx = src.shape
        arr = await group.create_array(
            ARRAY,
            shape=(n, ny, nx),
            dtype=src.dtype.newbyteorder("<"),
            chunks=(1, ny, nx),
            shards=(k, ny, nx),
            compressors=self.codec.zarr_compressors(src.dtype.itemsize),
            fill_value=0,
            dimension_names=(src.axis0, "y", "x"),
            # every frame is data: skip zarr's scan of each chunk for "all fill value" (11 % of the
            # CPU time on light-sheet stacks)
            config={"write_empty_chunks": True},
        )
        blob = src.restore or b""
        if blob:
            ra = await group.create_array(
                RESTORE,
                shape=(len(blob),),
                dtype="uint8",
                chunks=(len(blob),),
                compressors=self.codec.zarr_compressors(1) if self.codec.id != "none" else (),
            )
            await ra.setitem(slice(None), np.frombuffer(blob, dtype=np.uint8))
        for start, block in self._blocks(src, k, hasher, timing):
            t0 = time.perf_counter()
            await arr.setitem(
                slice(start, start + block.shape[0]), block.astype(block.dtype.newbyteorder("<"), copy=False)
            )
            timing["encode"] += time.perf_counter() - t0  # encode and write of a whole shard, in zarr's pipeline

    def group_attrs(self, src: FrameSource) -> dict[str, Any]:
        py, px = src.pixel_size_um or (1.0, 1.0)
        unit = "micrometer" if src.pixel_size_um else None
        axes: list[dict[str, Any]] = [
            {"name": src.axis0, "type": "time" if src.axis0 == "t" else "space"},
            {"name": "y", "type": "space"},
            {"name": "x", "type": "space"},
        ]
        if unit:
            axes[1]["unit"] = axes[2]["unit"] = unit
            if src.axis0 == "z":
                axes[0]["unit"] = unit
        return {
            "ome": {
                "version": "0.5",
                "multiscales": [
                    {
                        "name": "frames",
                        "axes": axes,
                        "datasets": [
                            {
                                "path": ARRAY,
                                "coordinateTransformations": [{"type": "scale", "scale": [1.0, float(py), float(px)]}],
                            }
                        ],
                    }
                ],
            },
            "acqd": self.meta(src),
        }

    def _open_read(self, tier: TierPort, dest: str) -> tuple[Any, dict[str, Any], bytes]:
        import zarr

        try:
            group: Any = zarr.open_group(store=tier.zarr_store(tier.path(dest)), mode="r")
            arr = group[ARRAY]
            meta: dict[str, Any] = dict(group.attrs["acqd"])
            blob = bytes(np.asarray(group[RESTORE][:]).tobytes()) if RESTORE in group else b""
        except (KeyError, FileNotFoundError, ValueError) as exc:
            raise VerifyError(f"{tier.url(dest)}: not a readable acqd Zarr: {exc}") from None
        return arr, meta, blob

    def _frames(self, arr: Any, k: int) -> Iterator[np.ndarray]:
        for start in range(0, arr.shape[0], k):
            yield from np.asarray(arr[start : start + k])

    def verify(self, tier: TierPort, dest: str, expected: WriteResult) -> None:
        arr, _, blob = self._open_read(tier, dest)
        k = max(1, self.shard_bytes // max(1, arr.shape[1] * arr.shape[2] * arr.dtype.itemsize))
        h = Hasher()
        h.update(blob)
        for frame in self._frames(arr, k):
            h.update(canonical(frame).data)
        if h.hexdigest() != expected.source_checksum:
            raise VerifyError(f"{tier.url(dest)}: pixel checksum {h.hexdigest()} != source {expected.source_checksum}")

    def restore(self, tier: TierPort, dest: str, out: BinaryIO) -> str:
        arr, meta, blob = self._open_read(tier, dest)
        h = Hasher()
        k = max(1, self.shard_bytes // max(1, arr.shape[1] * arr.shape[2] * arr.dtype.itemsize))
        if meta["format"] == "tiff":
            self._restore_tiff(meta, self._frames(arr, k), out, h, blob)
        else:
            self._restore_bytes(meta, blob, self._frames(arr, k), out, h)
        return h.hexdigest()


class TiffLayout(FrameLayout):
    """Compressed TIFF (deflate, LZW or zstd) that RELION, cryoSPARC and MotionCor read; the source
    header (e.g. the MRC header with its FEI extended header) rides in the first ImageDescription."""

    name = "tiff"
    suffix = ".tif"

    def _write(
        self, src: FrameSource, hasher: Hasher, timing: dict[str, float], tier: TierPort, dest: str, source: Any
    ) -> int:
        import tifffile

        compression, level = self.codec.tiff_compression()
        comp: Any = compression
        comp_args: Any = None if level is None else {"level": level}
        meta = self.meta(src)
        meta["restore_b64"] = base64.b64encode(src.restore or b"").decode()
        description = DESC_PREFIX + json.dumps(meta, separators=(",", ":"))
        k = self.frames_per_block(src)
        bigtiff = src.shape[0] * src.frame_bytes > 2**31
        spool = tempfile.NamedTemporaryFile(prefix="acqd-", suffix=".tif")  # noqa: SIM115 (closed below)
        try:
            with tifffile.TiffWriter(spool, bigtiff=bigtiff) as tw:
                first = True
                for _, block in self._blocks(src, k, hasher, timing):
                    t0 = time.perf_counter()
                    for frame in block:
                        tw.write(
                            frame.astype(frame.dtype.newbyteorder("="), copy=False),
                            photometric="minisblack",
                            compression=comp,
                            compressionargs=comp_args,
                            description=description if first else None,
                            metadata=None,
                            software=False,
                            contiguous=False,
                        )
                        first = False
                    timing["encode"] += time.perf_counter() - t0
            spool.flush()
            crash_point("after_encode")
            source.check()
            spool.seek(0)

            def chunks() -> Iterator[bytes]:
                while block := spool.read(8 << 20):
                    yield block

            return tier.write_atomic(dest, chunks())
        finally:
            spool.close()

    def _read(self, tier: TierPort, dest: str) -> tuple[Any, dict[str, Any], BinaryIO]:
        import tifffile

        f = tier.open_read(dest)
        try:
            tif = tifffile.TiffFile(f, name=dest.rpartition("/")[2])
            desc = tif.pages.first.description
            if not desc.startswith(DESC_PREFIX):
                raise ValueError("no acqd description on the first page")
            meta = json.loads(desc[len(DESC_PREFIX) :])
        except Exception as exc:
            f.close()
            raise VerifyError(f"{tier.url(dest)}: not a readable acqd TIFF: {exc}") from None
        return tif, meta, f

    def verify(self, tier: TierPort, dest: str, expected: WriteResult) -> None:
        tif, meta, f = self._read(tier, dest)
        h = Hasher()
        h.update(base64.b64decode(meta.get("restore_b64", "")))
        try:
            for page in tif.pages:
                h.update(canonical(page.asarray()).data)
        finally:
            tif.close()
            f.close()
        if h.hexdigest() != expected.source_checksum:
            raise VerifyError(f"{tier.url(dest)}: pixel checksum {h.hexdigest()} != source {expected.source_checksum}")

    def restore(self, tier: TierPort, dest: str, out: BinaryIO) -> str:
        tif, meta, f = self._read(tier, dest)
        h = Hasher()
        try:
            frames = (page.asarray() for page in tif.pages)
            if meta["format"] == "tiff":
                self._restore_tiff(meta, frames, out, h, base64.b64decode(meta.pop("restore_b64", "")))
            else:
                self._restore_bytes(meta, base64.b64decode(meta.pop("restore_b64", "")), frames, out, h)
        finally:
            tif.close()
            f.close()
        return h.hexdigest()
