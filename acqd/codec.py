"""Codec specs and the encoders built from them. The only place that knows compression libraries.

The `copy` layout streams bytes through a standard zstd frame (python-zstandard: a streaming
compressor whose output `zstd -d` restores, with bounded memory for files of any size).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Protocol

import zstandard


class StreamEncoder(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class StreamCodec:
    """A byte-stream codec: `none` or `zstd` (one standard frame, with its own content checksum)."""

    name: str
    level: int = 3

    @property
    def spec(self) -> str:
        return "none" if self.name == "none" else f"zstd(level={self.level})"

    @property
    def suffix(self) -> str:
        return ".zst" if self.name == "zstd" else ""

    def encoder(self, size_hint: int = -1) -> StreamEncoder:
        if self.name == "none":
            return _Identity()
        cctx = zstandard.ZstdCompressor(level=self.level, write_checksum=True, write_content_size=True)
        return _ZstdEncoder(cctx.compressobj(size=size_hint))

    def decode_stream(self, stored: BinaryIO, chunk: int) -> Iterator[bytes]:
        """Decoded content of a stored stream, at most `chunk` bytes at a time."""
        if self.name == "none":
            while block := stored.read(chunk):
                yield block
            return
        reader = zstandard.ZstdDecompressor().stream_reader(stored, read_size=chunk, read_across_frames=True)
        try:
            while block := reader.read(chunk):
                yield block
        except zstandard.ZstdError as exc:
            raise ValueError(f"stored zstd stream is corrupt: {exc}") from None


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _ZstdEncoder:
    def __init__(self, obj: zstandard.ZstdCompressionObj) -> None:
        self._obj = obj

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._obj.compress(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._obj.flush()
        return out


def stream_codec(name: str, level: int = 3) -> StreamCodec:
    if name not in ("none", "zstd"):
        raise ValueError(f"unknown stream codec {name!r} (use 'none' or 'zstd')")
    return StreamCodec(name, level)


# --- frame codecs: numcodecs chains for typed frames ------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameCodec:
    """A lossless codec for typed frames, from a profile or policy spec.

    `blosc` (cname lz4|zstd|lz4hc|zlib, clevel 0-9, shuffle bitshuffle|shuffle|noshuffle) and
    `zstd` (level) become Zarr v3 codecs (which run numcodecs); `deflate`, `lzw` and `zstd` are the
    TIFF compressions RELION, cryoSPARC and MotionCor read.
    """

    id: str = "blosc"
    cname: str = "lz4"
    clevel: int = 1
    shuffle: str = "bitshuffle"
    level: int = 3

    @property
    def spec(self) -> str:
        if self.id == "blosc":
            return f"blosc(cname={self.cname},clevel={self.clevel},shuffle={self.shuffle})"
        if self.id in ("zstd", "deflate"):
            return f"{self.id}(level={self.level})"
        return self.id

    def for_bytes(self) -> FrameCodec:
        """The codec for bytes stored beside the frames (the source's header, its bytes kept for the
        restore): text and packed structs, which a bit-shuffle (each byte's bits regrouped, what
        suits counts) makes barely compressible (a TIFF's 1.5 MB of tags: 0.2 MB unshuffled, 1.2 MB
        bit-shuffled). Blosc without a shuffle; any other codec as it is."""
        return replace(self, shuffle="noshuffle") if self.id == "blosc" else self

    def numcodecs(self) -> Any:
        """The numcodecs codec (used by `acqd bench` and for encoding outside Zarr)."""
        import numcodecs

        if self.id == "blosc":
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[self.shuffle]
            return numcodecs.Blosc(cname=self.cname, clevel=self.clevel, shuffle=shuffle)
        if self.id == "zstd":
            return numcodecs.Zstd(level=self.level)
        if self.id == "deflate":
            return numcodecs.Zlib(level=self.level)
        raise ValueError(f"codec {self.id!r} has no numcodecs equivalent")

    def zarr_compressors(self, itemsize: int) -> tuple[Any, ...]:
        from zarr.codecs import BloscCodec, ZstdCodec

        if self.id == "blosc":
            opts: dict[str, Any] = {"cname": self.cname, "shuffle": self.shuffle}
            return (BloscCodec(clevel=self.clevel, typesize=itemsize, **opts),)
        if self.id == "zstd":
            return (ZstdCodec(level=self.level),)
        if self.id == "none":
            return ()
        raise ValueError(f"codec {self.id!r} cannot be used in a Zarr layout (use blosc or zstd)")

    def tiff_compression(self) -> tuple[str | None, int | None]:
        if self.id == "deflate":
            return "zlib", self.level
        if self.id == "zstd":
            return "zstd", self.level
        if self.id == "lzw":
            return "lzw", None
        if self.id == "none":
            return None, None
        raise ValueError(f"codec {self.id!r} cannot be used in a TIFF layout (use deflate, lzw or zstd)")


#: deflate levels encoded with ISA-L (igzip) where it is installed: on counting frames it stores what
#: libdeflate's level 1 stores (3.34x vs 3.41x on K3 frames, 1.22x on the real Falcon movie) for about
#: half (K3) to a third (Falcon) of the CPU; the stream is plain zlib, which every libtiff decodes
ISAL_DEFLATE_LEVELS = (1, 2, 3)


def deflate_encoder(level: int | None) -> Callable[[Any], bytes] | None:
    """The zlib-format deflate encoder of a TIFF strip at `level` when ISA-L does that level and is
    installed; None: libdeflate (through tifffile/imagecodecs) encodes it."""
    if level not in ISAL_DEFLATE_LEVELS:
        return None
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel
        return None

    def encode(data: Any) -> bytes:
        out: bytes = isal_zlib.compress(data, level)
        return out

    return encode


def frame_codec(spec: dict[str, Any] | None) -> FrameCodec:
    spec = dict(spec or {})
    cid = spec.pop("id", "blosc")
    allowed = {
        "blosc": {"cname", "clevel", "shuffle"},
        "zstd": {"level"},
        "deflate": {"level"},
        "lzw": set(),
        "none": set(),
    }
    if cid not in allowed:
        raise ValueError(f"unknown codec {cid!r} (blosc, zstd, deflate, lzw, none)")
    extra = set(spec) - allowed[cid]
    if extra:
        raise ValueError(f"codec {cid}: unknown option(s) {sorted(extra)}")
    if cid == "blosc":
        if spec.get("cname", "lz4") not in ("lz4", "lz4hc", "zstd", "zlib", "blosclz"):
            raise ValueError(f"blosc cname {spec['cname']!r} unknown")
        if spec.get("shuffle", "bitshuffle") not in ("bitshuffle", "shuffle", "noshuffle"):
            raise ValueError(f"blosc shuffle {spec['shuffle']!r} unknown")
        if "clevel" in spec:
            spec["clevel"] = _whole(f"codec {cid}: clevel", spec["clevel"], 0, 9)
    if "level" in spec:  # deflate (libdeflate) stops at 12: a higher level was stored as 12, unsaid
        spec["level"] = _whole(f"codec {cid}: level", spec["level"], 1, 12 if cid == "deflate" else 22)
    return FrameCodec(id=cid, **spec)


def _whole(what: str, v: Any, lo: int, hi: int) -> int:
    """A codec level as a profile or policy gives it: a whole number from lo to hi."""
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f"{what} is a whole number from {lo} to {hi}, not {v!r}")
    try:
        n = int(v)
    except ValueError:
        raise ValueError(f"{what} is a whole number from {lo} to {hi}, not {v!r}") from None
    if not lo <= n <= hi:
        raise ValueError(f"{what} is {lo}-{hi}, not {n}")
    return n


def codec_label(c: FrameCodec) -> str:
    """The short name `acqd bench` and metrics use: blosc-lz4-1 (bit-shuffle), blosc-lz4-1-shuffle, zstd-3, lzw."""
    if c.id == "blosc":
        return f"blosc-{c.cname}-{c.clevel}" + ("" if c.shuffle == "bitshuffle" else f"-{c.shuffle}")
    if c.id in ("zstd", "deflate"):
        return f"{c.id}-{c.level}"
    return c.id


def parse_label(text: str) -> FrameCodec:
    """'blosc-lz4-1' (shuffle: bitshuffle), 'blosc-zstd-3-shuffle', 'zstd-3', 'deflate-1', 'lzw', 'none'."""
    parts = text.strip().lower().split("-")
    try:
        if parts[0] == "blosc" and len(parts) in (3, 4):
            spec: dict[str, Any] = {"id": "blosc", "cname": parts[1], "clevel": int(parts[2])}
            if len(parts) == 4:
                spec["shuffle"] = parts[3]
            return frame_codec(spec)
        if parts[0] in ("zstd", "deflate") and len(parts) == 2:
            return frame_codec({"id": parts[0], "level": int(parts[1])})
        if parts[0] in ("lzw", "none") and len(parts) == 1:
            return frame_codec({"id": parts[0]})
    except ValueError as exc:
        raise ValueError(f"codec {text!r}: {exc}") from None
    raise ValueError(f"not a codec: {text!r} (e.g. blosc-lz4-1, blosc-zstd-3-shuffle, zstd-3, deflate-1, lzw, none)")


def codec_from(spec: str | dict[str, Any]) -> FrameCodec:
    """A candidate as a profile or policy lists it: a label ('blosc-lz4-1-shuffle') or a spec dict."""
    return parse_label(spec) if isinstance(spec, str) else frame_codec(spec)


def codec_spec(c: FrameCodec) -> dict[str, Any]:
    """The spec dict `frame_codec` takes back (what the journal records of a choice)."""
    if c.id == "blosc":
        return {"id": "blosc", "cname": c.cname, "clevel": c.clevel, "shuffle": c.shuffle}
    if c.id in ("zstd", "deflate"):
        return {"id": c.id, "level": c.level}
    return {"id": c.id}


# --- choosing a codec from measurement (pure: measurements and a budget in, a choice out) -------

#: the candidates tried when a profile or policy lists none, per frame layout (besides the profile's
#: own codec): what Zarr readers and the cryo-EM tools reading TIFF (libtiff: LZW, deflate) all decode
DEFAULT_CANDIDATES: dict[str, tuple[str, ...]] = {
    "zarr": ("blosc-lz4-1", "blosc-lz4-1-shuffle", "blosc-zstd-1", "blosc-zstd-1-shuffle", "zstd-1"),
    "tiff": ("lzw", "deflate-1", "deflate-6"),
}
#: a frame layout's codec when neither the profile nor the placement names one
LAYOUT_CODECS: dict[str, dict[str, Any]] = {
    "zarr": {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": "bitshuffle"},
    "tiff": {"id": "deflate", "level": 1},
}


LAYOUT_CODEC_IDS: dict[str, tuple[str, ...]] = {
    "zarr": ("blosc", "zstd", "none"),
    "tiff": ("lzw", "deflate", "zstd", "none"),
}


def fits_layout(c: FrameCodec, layout: str) -> bool:
    """Can `layout` store with codec `c` (Zarr: Blosc, Zstd; TIFF: LZW, deflate, zstd)?"""
    return c.id in LAYOUT_CODEC_IDS.get(layout, ())


def unfit_codec(spec: dict[str, Any], layout: str) -> str | None:
    """Why a frame layout cannot store with the codec `spec` (None: it can), in words for a config error."""
    c = frame_codec(spec)
    if layout not in LAYOUT_CODEC_IDS or fits_layout(c, layout):
        return None
    ids = ", ".join(i for i in LAYOUT_CODEC_IDS[layout] if i != "none")
    return f"codec {c.id!r} cannot be used in the {layout} layout (it takes {ids})"


#: below this ratio on the sample frames a file is stored byte-exact (the copy layout): a frame
#: layout's own metadata would make the copy larger than the source for nothing
MIN_RATIO = 1.02
#: ratios this close count as equal: the cheaper candidate is taken
RATIO_TIE = 0.01
#: CPU costs this close count as equal: one timing of an 8 MiB sample varies by this much from run
#: to run (more on a busy PC), and that noise must not decide between codecs whose stored sizes
#: differ by 40 % (seen: LZ4 with bit-shuffle 3.2x and with byte-shuffle 2.3x, 0.82-1.15 ns/B and
#: 1.06-1.08 ns/B against a 1.06 ns/B budget, chosen in turn from one run to the next)
COST_TIE = 0.15
#: with no `codec_budget` and no `peak_rate`: 10 ns of CPU per byte (100 MB/s per core)
DEFAULT_BUDGET_NS = 10.0
#: the share of the PC's cores that encoding may take at the camera's peak rate (the rest reads,
#: verifies by decoding, writes, and runs the acquisition software)
ENCODE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Trial:
    """One candidate measured on a session's sample frames."""

    label: str
    source_bytes: int
    stored_bytes: int
    cpu_seconds: float

    @property
    def ratio(self) -> float:
        return self.source_bytes / max(1, self.stored_bytes)

    @property
    def ns_per_byte(self) -> float:
        return self.cpu_seconds * 1e9 / max(1, self.source_bytes)

    def brief(self) -> str:
        return f"{self.label} {self.ratio:.2f}x {self.ns_per_byte:.2f} ns/B"


@dataclass(frozen=True, slots=True)
class Choice:
    """What a session stores its frames with. `label` None: byte-exact (nothing makes them smaller)."""

    label: str | None
    ratio: float
    ns_per_byte: float
    budget_ns: float
    why: str
    trials: tuple[Trial, ...] = ()

    @property
    def shown(self) -> str:
        return self.label if self.label is not None else "copy"


def cpu_budget(explicit_ns: float | None, peak_rate: float | None, cores: int) -> tuple[float, str]:
    """CPU nanoseconds per source byte a codec may spend, and where the figure comes from."""
    if explicit_ns is not None:
        return explicit_ns, f"budget {explicit_ns:.2f} ns/B (stated)"
    if peak_rate:
        ns = ENCODE_SHARE * max(1, cores) * 1e9 / peak_rate
        return ns, (
            f"budget {ns:.2f} ns/B ({ENCODE_SHARE:.0%} of {cores} core(s) at the camera's peak "
            f"{peak_rate / 1e9:.2f} GB/s)"
        )
    return DEFAULT_BUDGET_NS, f"budget {DEFAULT_BUDGET_NS:.2f} ns/B (default: no peak_rate)"


def choose_codec(trials: Sequence[Trial], budget_ns: float, budget_why: str = "", allow_copy: bool = True) -> Choice:
    """The best ratio among the candidates within the CPU budget (ratios within RATIO_TIE: the
    cheaper; then the order given); none within it: the best ratio among the cheapest (those within
    COST_TIE of the cheapest's cost); none compresses by MIN_RATIO: byte-exact (unless `allow_copy`
    is off: then the best ratio). A cost within COST_TIE over the budget counts as within it: a
    timing's noise does not move a codec across the line. Deterministic for the same measurements."""
    if not trials:
        raise ValueError("no candidates measured")
    order = {t.label: i for i, t in enumerate(trials)}
    shown = "; ".join(t.brief() for t in trials)
    best_any = max(trials, key=lambda t: (t.ratio, -order[t.label]))
    budget_note = f"{budget_why or f'budget {budget_ns:.2f} ns/B'}; measured: {shown}"
    if best_any.ratio < MIN_RATIO and not allow_copy:
        return Choice(
            best_any.label,
            best_any.ratio,
            best_any.ns_per_byte,
            budget_ns,
            f"{best_any.label} {best_any.ratio:.3f}x: nothing compresses, the best ratio kept (never_larger off; "
            f"{budget_note})",
            tuple(trials),
        )
    if best_any.ratio < MIN_RATIO:
        return Choice(
            None,
            1.0,
            0.0,
            budget_ns,
            f"incompressible: the best candidate, {best_any.label}, stores {best_any.ratio:.3f}x; "
            f"stored byte-exact ({budget_note})",
            tuple(trials),
        )
    compressing = [t for t in trials if t.ratio >= MIN_RATIO]
    within = [t for t in compressing if t.ns_per_byte <= budget_ns * (1 + COST_TIE)]
    if within:
        top = max(t.ratio for t in within)
        tied = [t for t in within if t.ratio >= top * (1 - RATIO_TIE)]
        pick = min(tied, key=lambda t: (t.ns_per_byte, order[t.label]))
        how = "the best ratio within the budget" if pick.ratio >= top else "within 1 % of the best ratio, cheaper"
        if pick.ns_per_byte > budget_ns:  # over it by less than the timing's noise: said, not hidden
            how += f" (its cost within the {COST_TIE:.0%} a timing varies by)"
    else:
        cheapest = min(t.ns_per_byte for t in compressing)
        cheap = [t for t in compressing if t.ns_per_byte <= cheapest * (1 + COST_TIE)]
        pick = max(cheap, key=lambda t: (t.ratio, -t.ns_per_byte, -order[t.label]))
        how = (
            "none within the budget: the cheapest that compresses"
            if pick.ns_per_byte <= cheapest
            else f"none within the budget: the best ratio of those within {COST_TIE:.0%} of the cheapest's cost"
        )
    return Choice(
        pick.label,
        pick.ratio,
        pick.ns_per_byte,
        budget_ns,
        f"{pick.label} {pick.ratio:.2f}x at {pick.ns_per_byte:.2f} ns/B: {how} ({budget_note})",
        tuple(trials),
    )


def drifted(expected_ratio: float, seen_ratio: float, factor: float = 1.5) -> bool:
    """Has the chosen codec's ratio on a whole file moved far from what the sample promised?"""
    if expected_ratio <= 0 or seen_ratio <= 0:
        return False
    return max(expected_ratio / seen_ratio, seen_ratio / expected_ratio) > factor
