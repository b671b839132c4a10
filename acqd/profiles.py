"""Detector profiles: one YAML file per detector model in `detectors/`. Pure."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from acqd.errors import ConfigError
from acqd.units import Duration
from acqd.yamlfile import load_model

DEFAULT_IGNORE = (".*", "*.tmp", "*.part", "~*", "*.crdownload", "*.swp")


class SettleRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Duration = Field(5.0, description="size and mtime still for this long (monotonic clock)")
    format: Literal["none", "mrc", "tiff"] = Field(
        "none", description="complete as soon as the format proves it (MRC: header size; TIFF: IFD chain)"
    )
    marker: str | None = Field(
        None, description="complete when this file appears next to it, e.g. '{name}.done' or '{stem}.xml'"
    )


class DetectorProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    apiVersion: Literal["acqd/v1"]
    kind: Literal["DetectorProfile"]
    name: str
    description: str = ""
    data_class: str = "generic"
    files: tuple[str, ...] = Field(("*",), min_length=1, description="file name globs this detector writes")
    ignore: tuple[str, ...] = Field(DEFAULT_IGNORE, description="name globs never shipped (temporary names)")
    reader: Literal["bytes"] = "bytes"
    layout: Literal["copy"] = "copy"
    settle: SettleRule = SettleRule()

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
    """Where profiles are looked up: the config's detectors_dir, $ACQD_DETECTORS, the shipped ones."""
    dirs = []
    if extra is not None:
        dirs.append(extra)
    env = os.environ.get("ACQD_DETECTORS")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.append(Path(__file__).resolve().parent.parent / "detectors")
    dirs.append(Path("/etc/acqd/detectors"))
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
