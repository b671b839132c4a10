"""Detector profiles: one YAML file per detector model in `detectors/`. Pure."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from acqd.codec import (
    DEFAULT_CANDIDATES,
    LAYOUT_CODECS,
    FrameCodec,
    codec_from,
    codec_label,
    cpu_budget,
    fits_layout,
    frame_codec,
    unfit_codec,
)
from acqd.errors import ConfigError
from acqd.shipped import ETC, shipped
from acqd.units import OwnerPattern, SettleWindow, Size, owner_from
from acqd.yamlfile import load_model

DEFAULT_IGNORE = (".*", "*.tmp", "*.part", "~*", "*.crdownload", "*.swp")


class SettleRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: SettleWindow = Field(5.0, description="size and mtime still for this long (monotonic clock)")
    format: Literal["none", "mrc", "tiff"] = Field(
        "none", description="complete as soon as the format proves it (MRC: header size; TIFF: IFD chain)"
    )
    marker: str | None = Field(
        None, description="complete when this file appears next to it, e.g. '{name}.done' or '{stem}.xml'"
    )


DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float16", "float32")


def _check_dtype(v: str | None) -> str | None:
    if v is not None and v not in DTYPES:
        raise ValueError(f"unsupported dtype {v!r} (known: {', '.join(DTYPES)})")
    return v


class ModeSpec(BaseModel):
    """One way the detector writes its files (e.g. counting, super-resolution, linear)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, description="e.g. counting, super-resolution, linear")
    dtype: str | None = Field(None, description="uint8, uint16, float32, ...; absent: any")
    frame_shape: tuple[int, int] | None = Field(None, description="[height, width] of one frame; absent: any")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str | None) -> str | None:
        return _check_dtype(v)


class ExpectSpec(BaseModel):
    """What the detector writes. A valid file that fits none of it is still stored faithfully, with
    a profile-mismatch event, metric and manifest note; only unreadable files are quarantined."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: str | None = Field(None, description="e.g. uint8, uint16 (one mode; or list `modes`)")
    frame_shape: tuple[int, int] | None = Field(None, description="[height, width] of one frame")
    modes: tuple[ModeSpec, ...] = Field((), description="the modes the detector really writes")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str | None) -> str | None:
        return _check_dtype(v)

    @model_validator(mode="after")
    def _one_way(self) -> ExpectSpec:
        if self.modes and (self.dtype is not None or self.frame_shape is not None):
            raise ValueError("give either `modes` or `dtype`/`frame_shape`, not both")
        return self

    def mode_list(self) -> list[tuple[str, str | None, tuple[int, int] | None]]:
        """(name, dtype, frame shape) of every mode; the unnamed one for `dtype`/`frame_shape`."""
        if self.modes:
            return [(m.name, m.dtype, m.frame_shape) for m in self.modes]
        if self.dtype is None and self.frame_shape is None:
            return []
        return [("", self.dtype, self.frame_shape)]


class RawGeometry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: tuple[int, int]
    dtype: str = "<u2"
    header_bytes: int = Field(0, ge=0)
    axis0: Literal["z", "t"] = "z"


class DetectorProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    apiVersion: Literal["acqd/v1"]
    kind: Literal["DetectorProfile"]
    name: str
    description: str = ""
    data_class: str = "generic"
    files: tuple[str, ...] = Field(("*",), min_length=1, description="file name globs this detector writes")
    ignore: tuple[str, ...] = Field(DEFAULT_IGNORE, description="name globs never shipped (temporary names)")
    reader: str = Field("bytes", description="bytes, tiff, mrc, mib, raw, or a plug-in (entry point acqd.readers)")
    layout: Literal["copy", "zarr", "tiff"] = Field("copy", description="layout of the frame files")
    codec: dict[str, Any] | None = Field(
        None, description="e.g. {id: blosc, cname: lz4, clevel: 1, shuffle: bitshuffle}"
    )
    expect: ExpectSpec = ExpectSpec()
    raw: RawGeometry | None = None
    axis0: Literal["z", "t"] = Field("t", description="what the first axis of a stack is: t (movie) or z")
    shard_bytes: Size = Field(64 * 2**20, description="target size of one Zarr shard / one read block")
    other_files: Literal["copy", "ignore"] = Field(
        "copy", description="files that match none of `files` (sidecars, gain references): copy them, or leave them"
    )
    owner_pattern: OwnerPattern = Field(
        None, description="regex on the path relative to the watch root with a group (?P<owner>...)"
    )
    settle: SettleRule = SettleRule()
    stream: bool = Field(
        True,
        description="encode a movie's frames into the copy's temporary while the camera writes it (tail-follow; "
        "today MRC movies to the TIFF layout on a local tier), then compare with the complete file before the commit",
    )
    peak_rate: Size | None = Field(
        None, description="bytes per second the camera writes at most (what `acqd bench` sizes a PC for)"
    )
    codec_candidates: tuple[str | dict[str, Any], ...] | None = Field(
        None,
        description="codecs tried on a session's sample frames besides `codec` (labels such as "
        "blosc-lz4-1-shuffle, or specs); default: a small set per layout; []: always `codec`",
    )
    never_larger: bool = Field(
        True,
        description="a file whose frame-layout copy would be larger than the source (incompressible) is "
        "stored byte-exact by the copy layout; false: kept in the frame layout all the same",
    )
    compressed_tiff: Literal["byte-exact", "frames"] = Field(
        "byte-exact",
        description="a TIFF whose strips the detector compressed (LZW, deflate, ...): stored byte-exact, so that "
        "a restore gives back its very bytes; frames: read as frames and compressed again by acqd (a restore "
        "gives back its pixels and every tag, not its bytes)",
    )
    codec_budget: float | None = Field(
        None, gt=0, description="CPU nanoseconds per source byte a codec may spend; default: from peak_rate and cores"
    )

    @field_validator("codec_candidates")
    @classmethod
    def _candidates(cls, v: tuple[str | dict[str, Any], ...] | None) -> tuple[str | dict[str, Any], ...] | None:
        for c in v or ():
            codec_from(c)
        return v

    def codec_choice(
        self,
        layout: str,
        codec: dict[str, Any] | None = None,
        candidates: tuple[str | dict[str, Any], ...] | None = None,
        budget_ns: float | None = None,
        cores: int = 1,
    ) -> tuple[tuple[FrameCodec, ...], float, str]:
        """What a frame layout chooses from (the fixed codec first) and its CPU budget, with where the
        budget comes from. `codec`/`candidates`/`budget_ns` from a policy or placement win over the
        profile's; an explicit `codec` with no candidates is fixed (nothing to choose)."""
        spec = codec if codec is not None else self.layout_codec(layout)
        first = frame_codec(spec)
        if candidates is None:
            candidates = () if codec is not None else self.codec_candidates
        if candidates is None:
            candidates = DEFAULT_CANDIDATES.get(layout, ())
        out = [first]
        for c in map(codec_from, candidates):
            if fits_layout(c, layout) and codec_label(c) not in {codec_label(o) for o in out}:
                out.append(c)
        budget, why = cpu_budget(budget_ns if budget_ns is not None else self.codec_budget, self.peak_rate, cores)
        return tuple(out), budget, why

    def layout_codec(self, layout: str) -> dict[str, Any] | None:
        """The profile's codec where `layout` can store with it, else the layout's default (a placement
        that stores a profile's frames in the other frame layout: Blosc does not go into a TIFF, nor
        LZW into Zarr)."""
        if self.codec is not None and unfit_codec(self.codec, layout) is None:
            return self.codec
        return LAYOUT_CODECS.get(layout)

    @field_validator("reader")
    @classmethod
    def _reader(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", v):
            raise ValueError("a reader name is lower-case letters, digits, '-' and '_'")
        return v

    @field_validator("codec")
    @classmethod
    def _codec(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            frame_codec(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DetectorProfile:
        if self.reader == "bytes" and self.layout != "copy":
            raise ValueError(f"layout {self.layout} needs a frame reader (tiff, mrc, mib, raw), not 'bytes'")
        if self.reader == "raw" and self.raw is None:
            raise ValueError("reader raw needs a `raw:` geometry (shape, dtype, header_bytes)")
        return self

    def owner_of(self, relpath: str) -> str | None:
        return owner_from(self.owner_pattern, relpath)

    def is_frames(self, name: str) -> bool:
        """Does this file go through the frame reader and layout (else: copy or ignore)?"""
        return self.reader != "bytes" and self.matches(name)

    def reader_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"axis0": self.axis0, "compressed_tiff": self.compressed_tiff}
        if self.raw is not None:
            opts.update(self.raw.model_dump())
        return opts

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("a profile name is a plain file stem like 'gatan-k3'")
        return v

    def ignores(self, name: str, extra: Iterable[str] = ()) -> bool:
        return any(fnmatch.fnmatchcase(name, pat) for pat in (*self.ignore, *extra))

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pat) for pat in self.files)


def search_path(extra: Path | None = None) -> list[Path]:
    """Where profiles are looked up, first match wins: the config's detectors_dir, $ACQD_DETECTORS,
    /etc/acqd/detectors, then the ones shipped with acqd."""
    dirs = []
    if extra is not None:
        dirs.append(extra)
    env = os.environ.get("ACQD_DETECTORS")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.append(ETC / "detectors")
    dirs.append(shipped("detectors"))
    return dirs


def available(dirs: list[Path]) -> list[str]:
    names = {p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def load_profile(name: str, dirs: list[Path]) -> DetectorProfile:
    for d in dirs:
        path = d / f"{name}.yaml"
        if path.is_file():
            profile = load_model(path, DetectorProfile)
            if profile.name != name:
                raise ConfigError(f"{path}:1: name: the profile is named {profile.name!r} but the file {name!r}")
            return profile
    known = ", ".join(available(dirs)) or "none found"
    raise ConfigError(f"unknown detector profile {name!r} (known: {known}; searched {', '.join(map(str, dirs))})")
