"""Retention policy YAML: tiers, data classes, ordered rules with a default, owners, caps. Pure.

Vocabulary borrowed from S3 lifecycle rules (transitions, expiration) inside an apiVersion/kind
envelope. Validated once with pydantic (`extra="forbid"`); errors name file, line and field.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from acqd.codec import codec_from, frame_codec, unfit_codec
from acqd.errors import ConfigError
from acqd.shipped import policy_names, policy_path
from acqd.units import Age, Duration, OwnerPattern, ProjectPattern, Size, human_age, owner_from, project_from
from acqd.yamlfile import AT, load_model

DAY = 86400.0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataClass(Strict):
    detectors: tuple[str, ...] = Field((), description="detector profiles whose files are of this class")
    globs: tuple[str, ...] = Field((), description="file name globs (any matches)")

    def matches(self, relpath: str, detector: str) -> bool:
        name = relpath.rpartition("/")[2]
        if self.detectors and detector not in self.detectors:
            return False
        return not self.globs or any(fnmatch.fnmatchcase(name, g) for g in self.globs)


class Match(Strict):
    dataClass: str | None = None
    detector: str | None = None
    glob: str | None = Field(None, description="glob on the path relative to the watch root")
    owner: str | None = None


class Transition(Strict):
    after: Age = Field(description="age (since verified) at which the copy moves, e.g. 30d")
    tier: str


class Expiration(Strict):
    after: Age = Field(description="age (since verified) at which the copy is purged, e.g. 180d")


class RulePlacement(Strict):
    """Where and how matching files are stored; unset fields fall back to the watch root's placement."""

    tier: str | None = None
    layout: Literal["profile", "copy", "zarr", "tiff"] | None = None
    codec: dict[str, Any] | None = None
    codec_candidates: tuple[str | dict[str, Any], ...] | None = Field(
        None, description="codecs tried per session besides `codec` (see the detector profile's); []: fixed"
    )
    codec_budget: float | None = Field(None, gt=0, description="CPU nanoseconds per source byte a codec may spend")
    compress: Literal["none", "zstd"] | None = None
    release_local: Literal["never", "after_verify"] | None = None


class Rule(Strict):
    name: str
    match: Match = Match()
    placement: RulePlacement | None = None
    transitions: tuple[Transition, ...] = ()
    expiration: Expiration | None = None
    warn: Age = Field(14 * DAY, description="warn owners this long before a purge, e.g. 14d")
    notify: tuple[str, ...] = Field(("owner",), description="'owner', 'fallback', or e-mail addresses")

    @field_validator("notify")
    @classmethod
    def _recipients(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for n in v:
            if n not in ("owner", "fallback") and not is_address(n):
                raise ValueError(
                    f"notify: {n!r} is neither 'owner', 'fallback' nor an e-mail address: a purge would follow "
                    "a warning nobody got"
                )
        return v

    @model_validator(mode="after")
    def _sane(self) -> Rule:
        if self.expiration is not None:
            if self.expiration.after <= 0:
                raise ValueError(f"rule {self.name}: expiration.after must be positive")
            if self.warn <= 0:
                raise ValueError(
                    f"rule {self.name}: warn must be positive where a rule purges (e.g. warn: 14d): with warn 0 the "
                    "purge follows its warning at once, and nobody can keep the data"
                )
            if not self.notify:
                raise ValueError(
                    f"rule {self.name}: it purges, and its notify is empty: nobody would be warned, so its purges "
                    "would wait for ever; list 'owner', 'fallback' or e-mail addresses"
                )
            if self.expiration.after < self.warn:
                raise ValueError(
                    f"rule {self.name}: expiration.after ({human_age(self.expiration.after)}) is shorter than its "
                    f"warning period warn ({human_age(self.warn)}): owners could not be warned in time"
                )
        ages = [t.after for t in self.transitions]
        if ages != sorted(ages):
            raise ValueError(f"rule {self.name}: transitions must be in order of age")
        if self.expiration is not None and any(a >= self.expiration.after for a in ages):
            raise ValueError(f"rule {self.name}: a transition after the expiration makes no sense")
        return self


def is_address(text: str) -> bool:
    """An e-mail address as far as a policy can tell: one @, something either side, no spaces, and
    none of the characters that make a list or a display name of it (`alice,bob@lab.org` reached bob
    only, and counted as alice's warning delivered: a stranger's review)."""
    return re.fullmatch(r'[^@\s,;<>()\[\]"]+@[^@\s,;<>()\[\]"]+', text) is not None


#: domains reserved for examples and tests (RFC 2606, RFC 6761): no mail reaches them
RESERVED_DOMAINS = ("example", "example.com", "example.net", "example.org", "invalid", "test", "localhost")


def reserved_domain(address: str) -> bool:
    domain = address.rpartition("@")[2].lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in RESERVED_DOMAINS)


class Owners(Strict):
    pattern: OwnerPattern = Field(None, description="regex with (?P<owner>...) on the path relative to the watch root")
    emails: dict[str, str] = Field(default_factory=dict, description="owner -> e-mail address")
    fallback: str | None = Field(None, description="address for data without a known owner")
    project: ProjectPattern = Field(
        None,
        description="regex with (?P<project>...) on the path relative to the watch root: the project a session "
        "belongs to (e.g. session folders <user>_<project>_<date>); owners can then keep a whole project",
    )
    maxHold: Duration = Field(
        180 * DAY, description="the longest hold an owner may set from the owner page (from today); longer: ask"
    )

    @field_validator("emails")
    @classmethod
    def _emails(cls, v: dict[str, str]) -> dict[str, str]:
        for owner, address in v.items():
            if not is_address(address):
                raise ValueError(
                    f"emails: {owner}: {address!r} is not an e-mail address: a purge would follow a warning nobody got"
                )
        return v

    @field_validator("fallback")
    @classmethod
    def _fallback(cls, v: str | None) -> str | None:
        if v is not None and not is_address(v):
            raise ValueError(f"fallback: {v!r} is not an e-mail address: a purge would follow a warning nobody got")
        return v

    def owner_of(self, relpath: str) -> str | None:
        return owner_from(self.pattern, relpath)

    def project_of(self, relpath: str) -> str | None:
        return project_from(self.project, relpath)


class Caps(Strict):
    maxItemsPerSweep: int = Field(1000, ge=0)
    maxBytesPerSweep: Size = Field(100 * 2**40)
    maxShareOfData: float = Field(0.5, gt=0, le=1, description="`acqd check` warns above this share at once")


class Guards(Strict):
    maxClockJumpForward: Duration = Field(
        2 * DAY,
        description="suspend purges when the wall clock runs ahead of the trusted clock by more than this",
    )
    maxClockJumpBackward: Duration = Field(
        600.0, description="suspend purges when the wall clock falls behind the trusted clock by more than this"
    )
    suspendErrorRatio: float = Field(0.2, gt=0, le=1, description="stop a sweep when this share of actions fails")


class Spec(Strict):
    tiers: tuple[str, ...] = Field(min_length=1)
    dataClasses: dict[str, DataClass] = Field(default_factory=dict)
    owners: Owners = Owners()
    rules: tuple[Rule, ...] = ()
    default: Rule = Rule(name="default")
    caps: Caps = Caps()
    guards: Guards = Guards()
    interval: Duration = Field(
        3600.0, ge=0.1, description="how often the retention runner sweeps (each sweep reads every copy: hours)"
    )

    @model_validator(mode="after")
    def _refs(self) -> Spec:
        names = [r.name for r in (*self.rules, self.default)]
        for i, name in enumerate(names):
            if name in names[:i]:
                where = f"rules.{i}" if i < len(self.rules) else "default"
                raise ValueError(f"{AT}{where}.name: rule names must be unique: {name!r} is used twice")
        for i, r in enumerate((*self.rules, self.default)):
            at = f"{AT}rules.{i}" if i < len(self.rules) else f"{AT}default"
            if r.match.dataClass is not None and r.match.dataClass not in self.dataClasses:
                raise ValueError(f"{at}.match.dataClass: rule {r.name}: unknown dataClass {r.match.dataClass!r}")
            if r.placement is not None and r.placement.tier is not None and r.placement.tier not in self.tiers:
                raise ValueError(f"{at}.placement.tier: rule {r.name}: placement on unknown tier {r.placement.tier!r}")
            if r.placement is not None and r.placement.codec is not None:
                frame_codec(r.placement.codec)
                if (why := unfit_codec(r.placement.codec, r.placement.layout or "")) is not None:
                    raise ValueError(f"{at}.placement.codec: rule {r.name}: {why}")
            for c in (r.placement.codec_candidates or ()) if r.placement is not None else ():
                codec_from(c)
            for k, t in enumerate(r.transitions):
                if t.tier not in self.tiers:
                    raise ValueError(f"{at}.transitions.{k}.tier: rule {r.name}: transition to unknown tier {t.tier!r}")
        return self


class Metadata(Strict):
    name: str
    description: str = ""


class Policy(Strict):
    apiVersion: Literal["acqd/v1"]
    kind: Literal["RetentionPolicy"]
    metadata: Metadata
    spec: Spec

    def data_class(self, relpath: str, detector: str) -> str | None:
        for name, dc in self.spec.dataClasses.items():
            if dc.matches(relpath, detector):
                return name
        return None

    def rule_for(self, relpath: str, detector: str, owner: str | None) -> Rule:
        dc = self.data_class(relpath, detector)
        for r in self.spec.rules:
            m = r.match
            if m.dataClass is not None and m.dataClass != dc:
                continue
            if m.detector is not None and m.detector != detector:
                continue
            if m.glob is not None and not fnmatch.fnmatchcase(relpath, m.glob):
                continue
            if m.owner is not None and m.owner != owner:
                continue
            return r
        return self.spec.default


def load_policy(path: Path) -> Policy:
    return load_model(path, Policy)


def policy_file(p: Path) -> Path:
    """A `policy:` setting (acqd.yaml's or hub.yaml's) as a file (`acqd.shipped.policy_path`);
    ConfigError for a name no policy has."""
    found = policy_path(p)
    if found is None:
        raise ConfigError(
            f"policy: {p} does not exist, and no policy is named {p.name!r} (shipped: {', '.join(policy_names())})"
        )
    return found
