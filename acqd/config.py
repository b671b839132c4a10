"""The daemon's configuration (acqd.yaml): validated once with pydantic, then frozen. Pure."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from acqd.codec import unfit_codec
from acqd.errors import EX_CONFIG as EX_CONFIG  # re-exported
from acqd.errors import ConfigError
from acqd.pace import BackoffRule, Window, parse_days, parse_hours, parse_rate, unreachable
from acqd.units import Duration, SettleWindow, Size
from acqd.yamlfile import load_model


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Placement(Frozen):
    """Where and how files from one watch root are stored (until a policy file overrides it)."""

    tier: str | None = Field(None, description="named tier; default: the first tier")
    layout: Literal["profile", "copy", "zarr", "tiff"] = Field(
        "profile", description="frame files: the detector profile's layout, or copy/zarr/tiff"
    )
    codec: dict[str, Any] | None = Field(None, description="frame codec; default: the detector profile's")
    compress: Literal["none", "zstd"] = Field("none", description="copy layout: a standard .zst frame")
    zstd_level: int = Field(3, ge=1, le=19)
    release_local: Literal["never", "after_verify"] = Field(
        "never", description="delete the acquisition-disk copy once the central copy is verified"
    )

    @model_validator(mode="after")
    def _codec_fits(self) -> Placement:
        if self.codec is not None and (why := unfit_codec(self.codec, self.layout)) is not None:
            raise ValueError(why)
        return self


class WatchRoot(Frozen):
    path: Path
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="metrics label; default watch<N>")
    prefix: str = Field(
        "",
        pattern=r"^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$",
        description="folder under <tier>/<instrument>/ for this root; with several roots each needs its own, "
        "neither inside another",
    )
    detector: str = "generic"
    mode: Literal["auto", "events", "poll"] = Field(
        "auto",
        description="events: inotify hints; poll: scans only (SMB/NFS); auto: events unless a network fs",
    )
    scan_interval: Duration | None = Field(
        None, description="full rescan period; default 60s with events, 5s when polling"
    )
    settle: SettleWindow | None = Field(None, description="override the detector profile's settle window")
    ignore: tuple[str, ...] = Field((), description="extra name globs to ignore, on top of the profile's")
    placement: Placement = Placement()
    stream: bool | None = Field(
        None, description="encode a movie's frames while the camera writes it (override the profile's `stream`)"
    )

    @field_validator("prefix", mode="after")
    @classmethod
    def _no_dot_folders(cls, v: str) -> str:
        if any(part in (".", "..") for part in v.split("/")):
            raise ValueError(f"{v!r}: '.' and '..' are not folder names here (the prefix must stay below the tier)")
        return v

    @field_validator("path", mode="after")
    @classmethod
    def _abs(cls, v: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        if not v.is_absolute():
            if base is None:
                raise ValueError("the watch path must be absolute")
            v = Path(base) / v
        return Path(str(v)).resolve() if v.exists() else v


SECRET_OPTIONS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "passphrase",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)


#: where a secret goes instead of a URL, by scheme
SECRET_HOMES = {
    "s3": "use options.credentials_file (an AWS credentials file, e.g. a systemd credential) or the standard "
    "AWS credential chain",
    "sftp": "use options.key_file (an SSH private key; the user name may stay in the URL: sftp://user@host/path)",
    "mqtt": "use mqtt.password_file (the user name may stay in the URL: mqtt://user@host)",
    "postgresql": "use catalog.password_file (the user name may stay in the URL: postgresql://user@host/db)",
}


def _userinfo(url: str) -> tuple[str | None, str | None]:
    """(user, password) of a URL's authority part, without raising on odd URLs."""
    try:
        u = urlsplit(url)
        return u.username, u.password
    except ValueError:  # e.g. a port that is not a number
        head = url.partition("://")[2].partition("/")[0]
        user, at, _ = head.rpartition("@")
        if not at:
            return None, None
        name, colon, pw = user.partition(":")
        return name, (pw if colon else None)


def url_secret_error(url: str, field: str) -> str | None:
    """Why `url` may not be in acqd.yaml (it carries a secret), or None. Never quotes the secret."""
    scheme = url.partition("://")[0].lower()
    user, password = _userinfo(url)
    if password is not None or (scheme == "s3" and user):
        home = SECRET_HOMES.get(scheme, "use the backend's credential file or standard credential chain")
        return (
            f"{field} holds a secret ({'an access key' if scheme == 's3' else 'a password'} in the URL's user part); "
            f"secrets never go in acqd.yaml: {home}"
        )
    return None


def redact_url(url: str) -> str:
    """`url` with any password (or an S3 URL's key) in its user part replaced by '***', for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head, slash, tail = rest.partition("/")
    user, at, host = head.rpartition("@")
    if not at:
        return url
    name, colon, _ = user.partition(":")
    if colon:
        user = f"{name}:***"
    elif scheme.lower() == "s3":
        user = "***"
    return f"{scheme}{sep}{user}@{host}{slash}{tail}"


class BandwidthWindow(Frozen):
    """One entry of a tier's bandwidth schedule; the first entry covering the local time applies."""

    hours: str | None = Field(None, description="'08-18', '08:30-17:45', '22-06' (past midnight); default: all day")
    days: str | None = Field(None, description="'mon-fri', 'sat,sun'; default: every day")
    limit: str | int = Field(description="bytes per second: '200MB/s', '1GiB/s', '800Mbit/s', or 'unlimited'")

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is not None:
            parse_hours(v)
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: str | None) -> str | None:
        if v is not None:
            parse_days(v)
        return v

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: str | int) -> str | int:
        parse_rate(v)
        return v

    def window(self) -> Window:
        return Window(
            limit=parse_rate(self.limit),
            hours=parse_hours(self.hours) if self.hours is not None else None,
            days=parse_days(self.days) if self.days is not None else None,
        )


class TierConfig(Frozen):
    url: str = Field(description="fsspec URL of the tier's root: file:///mnt/nas/acqd, memory://x, s3://bucket/p")
    options: dict[str, Any] = Field(default_factory=dict, description="backend options (no secrets: see the README)")
    bandwidth: tuple[BandwidthWindow, ...] = Field(
        (),
        description="rate limit of writes to this tier by time of day (local time); the first entry that covers "
        "the time applies; none: unlimited",
    )

    @field_validator("bandwidth")
    @classmethod
    def _schedule(cls, v: tuple[BandwidthWindow, ...]) -> tuple[BandwidthWindow, ...]:
        i = unreachable(tuple(w.window() for w in v))
        if i is not None:
            raise ValueError(
                f"entry {i} is never used: entry {i - 1} before it has neither hours nor days, so it covers all "
                "the time (put the catch-all last)"
            )
        return v

    def schedule(self) -> tuple[Window, ...]:
        return tuple(w.window() for w in self.bandwidth)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError("a tier url needs a scheme, e.g. file:///mnt/central or s3://bucket/prefix")
        if v.startswith("file://") and not v.startswith("file:///"):
            raise ValueError("a file:// url must be absolute: file:///path/to/dir")
        secret = url_secret_error(v, "the tier url")
        if secret:
            raise ValueError(secret)
        return v.rstrip("/") if not v.endswith("://") else v

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            if k.lower() in SECRET_OPTIONS:
                raise ValueError(
                    f"{k}: secrets never go in acqd.yaml; use credentials_file (S3) or key_file (SFTP), "
                    "or the backend's standard credential chain"
                )
        return v


class Backoff(Frozen):
    """Back off while the acquisition disk's writes are slow; ship at full speed while it fills up."""

    enabled: bool = True
    write_latency_above: Duration = Field(
        0.05, description="back off when the acquisition disk's mean write latency exceeds this"
    )
    write_latency_below: Duration | None = Field(
        None, description="leave the back-off when it is at or below this; default: 40% of write_latency_above"
    )
    busy_above: float | None = Field(
        None, gt=0, le=1, description="also back off when the disk is busier than this fraction of the time"
    )
    busy_below: float | None = Field(None, ge=0, le=1, description="leave only at or below this; default busy_above")
    free_below_percent: float = Field(
        15.0, ge=0, le=100, description="below this much free space on the acquisition disk, ship at full speed"
    )
    concurrent_files: int = Field(1, ge=0, le=256, description="files shipped at once while backing off (0: pause)")
    interval: Duration = Field(2.0, description="how often the disk's counters are read")
    stat_file: Path | None = Field(
        None,
        description="the acquisition disk's block stat file when acqd cannot find it from the watch roots "
        "(btrfs, md RAID under LVM), e.g. /sys/block/md0/stat; every watch root then uses it",
    )

    @model_validator(mode="after")
    def _order(self) -> Backoff:
        if self.write_latency_below is not None and self.write_latency_below > self.write_latency_above:
            raise ValueError("write_latency_below must not exceed write_latency_above")
        if self.busy_below is not None and (self.busy_above is None or self.busy_below > self.busy_above):
            raise ValueError("busy_below needs busy_above, and must not exceed it")
        if self.stat_file is not None and not self.stat_file.is_absolute():
            raise ValueError("stat_file must be an absolute path, e.g. /sys/block/md0/stat")
        if not 0.1 <= self.interval <= 60:
            raise ValueError("interval must be between 100ms and 60s")
        if self.write_latency_above > 10:  # `50` is 50 s (a bare number is seconds): never reached
            raise ValueError(
                f"write_latency_above is {self.write_latency_above:g} s: a disk's write latency is milliseconds "
                "(a bare number is seconds): write e.g. 50ms"
            )
        return self

    def rule(self) -> BackoffRule:
        above = self.write_latency_above
        below = self.write_latency_below
        return BackoffRule(
            latency_above=above,
            latency_below=0.4 * above if below is None else below,
            busy_above=self.busy_above,
            busy_below=self.busy_below,
            free_below=self.free_below_percent / 100.0,
            slots=self.concurrent_files,
        )


class Limits(Frozen):
    inflight_bytes: Size = Field(512 * 2**20, description="cap on bytes of file data held in memory at once")
    concurrent_files: int = Field(4, ge=1, le=256)
    io_threads: int = Field(4, ge=1, le=256)
    frame_threads: int = Field(
        0, ge=0, le=256, description="threads that encode and verify the frames of one file (0: one per core)"
    )
    chunk_bytes: Size = Field(8 * 2**20, description="read/write unit of the streaming layouts")
    retry_initial: Duration = 1.0
    retry_max: Duration = 300.0
    stalled_after: Duration = Field(
        120.0, description="a storage call under way this long is said (a slow or stalled server), and counted"
    )
    backoff: Backoff = Field(Backoff(), description="acquisition comes first: see the README")
    release_verify: Literal["quick", "full"] = Field(
        "quick",
        description="before a local file is released, re-check its stored copy: quick (present, verified size, "
        "the tier's checksum metadata where it keeps one) or full (read back and verified again)",
    )

    @model_validator(mode="after")
    def _fits(self) -> Limits:
        if self.chunk_bytes < 64 * 1024:
            raise ValueError("chunk_bytes must be at least 64KiB")
        if self.inflight_bytes < 2 * self.chunk_bytes:
            raise ValueError("inflight_bytes must hold at least two chunks (2 x chunk_bytes)")
        if self.retry_initial > self.retry_max:
            raise ValueError("retry_initial must not exceed retry_max (the waits grow from the first to the last)")
        return self


class MetricsConfig(Frozen):
    bind: str = "127.0.0.1:9733"
    enabled: bool = True

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("bind must be host:port, e.g. 127.0.0.1:9733")
        return v


class MqttConfig(Frozen):
    url: str = "mqtt://127.0.0.1:1883"
    enabled: bool = True
    outbox: int = Field(10_000, ge=1, description="events queued while the broker is away; then dropped (counted)")
    password_file: Path | None = Field(
        None, description="password for mqtt://user@host; relative paths resolve in $CREDENTIALS_DIRECTORY"
    )

    @field_validator("url")
    @classmethod
    def _no_secret(cls, v: str) -> str:
        secret = url_secret_error(v, "mqtt.url")
        if secret:
            raise ValueError(secret)
        u = urlsplit(v)
        try:  # a port out of range or not a number raises here: the daemon died of it with a traceback
            port = u.port
        except ValueError:
            port = -1
        if u.scheme not in ("mqtt", "tcp") or not u.hostname or port == -1 or port == 0:
            raise ValueError(
                "expected mqtt://HOST[:PORT] (PORT 1-65535; TLS and websockets are not supported), "
                f"got {redact_url(v)!r}"
            )
        return v


class SmtpConfig(Frozen):
    host: str
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password_file: Path | None = Field(None, description="relative paths resolve in $CREDENTIALS_DIRECTORY")
    sender: str = Field("acqd@localhost", description="From: of owner warnings")
    contact: str = Field("the facility staff", description="who users ask for a hold, named in the warnings")


class OwnerPageConfig(Frozen):
    """The owner page behind the warning digest's signed links (and the facility view)."""

    enabled: bool = False
    bind: str = Field("127.0.0.1:8788", description="host:port; loopback by default (a reverse proxy in front)")
    base_url: str | None = Field(
        None, description="the address owners open, e.g. https://acqd.facility.example (default: http://<bind>)"
    )
    secret_file: Path = Field(
        description="HMAC key of the links (at least 32 bytes); relative paths resolve in $CREDENTIALS_DIRECTORY"
    )
    facility_token_file: Path | None = Field(
        None, description="credential of the facility view (/facility); without it the view is off"
    )
    link_days: int = Field(30, ge=1, le=365, description="how long a link in a digest stays valid")
    facility_email: str | None = Field(
        None, description="where extension requests go (default: the policy's owners.fallback)"
    )

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bind must be host:port, e.g. 127.0.0.1:8788")
        return v

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError("base_url must be an http(s) URL, e.g. https://acqd.facility.example/owners")
        return v.rstrip("/") if v else v

    def url(self) -> str:
        return self.base_url or f"http://{self.bind}"


class CatalogConfig(Frozen):
    """The facility catalog: what this daemon's journal learns, published to a shared PostgreSQL."""

    url: str = Field(description="postgresql://user@host:port/database (no password: see password_file)")
    password_file: Path | None = Field(
        None, description="the PostgreSQL password; relative paths resolve in $CREDENTIALS_DIRECTORY"
    )
    outbox_cap: int = Field(
        1_000_000,
        ge=100,
        description="records the journal's outbox holds while PostgreSQL is away; beyond it the outbox stops "
        "growing and the catalog is resynchronised from the journal when the server is back",
    )
    batch: int = Field(500, ge=1, le=10_000, description="records per PostgreSQL transaction")
    connect_timeout: Duration = Field(10.0, description="connecting to PostgreSQL")
    retry_max: Duration = Field(60.0, description="longest wait between reconnection attempts")
    readback: Duration = Field(
        60.0,
        description="how often the daemon reads back what the facility hub purged or moved of its copies "
        "and records it in the journal",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        scheme = v.partition("://")[0].lower()
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("catalog.url must be postgresql://user@host:port/database")
        _, password = _userinfo(v)
        if password is not None:
            raise ValueError(
                "catalog.url holds a password; secrets never go in acqd.yaml: use catalog.password_file "
                "(the user name may stay in the URL: postgresql://user@host/db)"
            )
        if "password=" in unquote(v.partition("?")[2]).lower():  # libpq decodes %-escapes in names too
            raise ValueError("catalog.url holds a password parameter; use catalog.password_file")
        host = v.partition("://")[2].partition("/")[0].rpartition("@")[2]
        if not host or not v.partition("://")[2].partition("/")[2].partition("?")[0]:
            raise ValueError("catalog.url needs a host and a database: postgresql://user@host:5432/acqd")
        return v


class RetentionConfig(Frozen):
    owner: Literal["daemon", "hub"] = Field(
        "daemon",
        description="who runs retention over this daemon's stored copies: the daemon itself (the policy's sweeps), "
        "or the facility hub (`acqd hub`, over the catalog): the daemon then never sweeps",
    )


class Config(Frozen):
    instrument: str = Field(description="instrument name: first folder level at the destination")
    state_dir: Path = Field(description="journal and state (systemd: StateDirectory=acqd)")
    watch: tuple[WatchRoot, ...] = Field(min_length=1)
    tiers: dict[str, TierConfig] = Field(min_length=1)
    detectors_dir: Path | None = Field(None, description="extra folder of detector profile YAML files")
    metrics: MetricsConfig | None = None
    mqtt: MqttConfig | None = None
    limits: Limits = Limits()
    policy: Path | None = Field(None, description="retention policy YAML (tiers, transitions, purges, warnings)")
    smtp: SmtpConfig | None = Field(None, description="owner warnings; without it they go to state_dir/mailbox")
    owner_page: OwnerPageConfig | None = Field(None, description="signed links in the digests to the owner page")
    catalog: CatalogConfig | None = Field(
        None, description="publish the journal to a facility PostgreSQL catalog; without it: the journal only"
    )
    retention: RetentionConfig = Field(RetentionConfig(), description="who runs retention (see the README)")

    @field_validator("instrument")
    @classmethod
    def _instrument(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v):
            raise ValueError("use letters, digits, '.', '_' and '-' (it becomes a folder name)")
        return v

    @field_validator("state_dir", "detectors_dir", "policy", mode="after")
    @classmethod
    def _rel(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if v is not None and not v.is_absolute() and base is not None:
            v = Path(base) / v
        return v

    @model_validator(mode="after")
    def _cross(self) -> Config:
        paths = [w.path for w in self.watch]
        for i, a in enumerate(paths):
            for b in paths[i + 1 :]:
                if a == b or a in b.parents or b in a.parents:
                    raise ValueError(f"watch roots overlap: {a} and {b}")
        named: dict[str, int] = {}
        for i, w in enumerate(self.watch):  # its metrics' `watch` label: two roots of one name are one series
            label = w.name or f"watch{i}"
            if label in named:
                raise ValueError(
                    f"@watch.{i}.name: {label!r} names watch root {named[label]} ({self.watch[named[label]].path}) "
                    "too: each root needs its own name (it labels the root's metrics: its disk, its backlog)"
                )
            named[label] = i
        for i, wa in enumerate(self.watch):
            for wb in self.watch[i + 1 :]:
                if prefixes_nest(wa.prefix, wb.prefix):
                    shown = " and ".join(repr(p) if p else "'' (none)" for p in (wa.prefix, wb.prefix))
                    raise ValueError(
                        f"watch roots {wa.path} and {wb.path}: their prefixes {shown} nest, so files of both "
                        "could get one name at the destination; give each root its own `prefix`, neither "
                        "inside the other (e.g. k3 and lightsheet)"
                    )
        folders: dict[str, str] = {}
        for name, t in self.tiers.items():  # one folder, two tiers: a move between them is no move
            where = local_url_path(t.url)
            if where is not None:
                key = os.path.normpath(str(where))
                if key in folders:
                    raise ValueError(
                        f"@tiers.{name}.url: tiers {folders[key]} and {name} are one folder ({key}): give each tier "
                        "a location of its own (a move from one to the other would copy a file onto itself)"
                    )
                folders[key] = name
        for w in self.watch:
            for name, t in self.tiers.items():
                where = local_url_path(t.url)
                if where is not None and (_lexically_inside(where, w.path) or _lexically_inside(w.path, where)):
                    raise ValueError(apart_error(f"tiers.{name} ({where})", w.path))
            for what, own in self.own_paths():
                if _lexically_inside(own, w.path):
                    raise ValueError(own_apart_error(what, own, w.path))
        if self.retention.owner == "hub" and self.catalog is None:
            raise ValueError(
                "retention.owner: hub needs a `catalog:` section: the hub sees this daemon's copies in the catalog"
            )
        for i, w in enumerate(self.watch):
            if w.placement.tier is not None and w.placement.tier not in self.tiers:
                raise ValueError(
                    f"@watch.{i}.placement.tier: {w.placement.tier!r} is not a configured tier"
                    f" (tiers: {', '.join(self.tiers)})"
                )
        return self

    def own_paths(self) -> list[tuple[str, Path]]:
        """acqd's own files and folders, which must not be in a watch root (shipped, then released)."""
        own = [("state_dir", self.state_dir)]
        own += [("detectors_dir", self.detectors_dir)] if self.detectors_dir is not None else []
        own += [("policy", self.policy)] if self.policy is not None else []
        return own

    def tier_for(self, watch: WatchRoot) -> str:
        return watch.placement.tier or next(iter(self.tiers))


def local_url_path(url: str) -> Path | None:
    """The folder of a file:// tier url (None for any other scheme)."""
    if not url.startswith("file://"):
        return None
    return Path(unquote(urlsplit(url).path) or "/")


def _lexically_inside(inner: Path, outer: Path) -> bool:
    """`inner` is `outer` or below it, by their names (`..` resolved, symlinks not)."""
    a, b = Path(os.path.normpath(inner)), Path(os.path.normpath(outer))
    return a == b or b in a.parents


def apart_error(tier: str, root: Path) -> str:
    return (
        f"{tier} and the watch root {root} overlap (one is, or is inside, the other): acqd would find its own "
        "copies as new files and ship them again, and a release could delete a file whose only copy is "
        "itself. Central storage must be outside every watch root, and no watch root inside it"
    )


def own_apart_error(what: str, own: Path, root: Path) -> str:
    where = {
        "state_dir": "acqd would ship its own journal. Put the state folder outside every watch root "
        "(systemd: StateDirectory=acqd, /var/lib/acqd)",
        "detectors_dir": "acqd would ship its detector profiles and could release them. Keep them outside "
        "every watch root (e.g. /etc/acqd/detectors)",
        "policy": "acqd would ship its retention policy and could release it. Keep it outside every watch root "
        "(e.g. /etc/acqd/policy.yaml)",
    }[what]
    return f"{what} {own} is, or is inside, the watch root {root}: {where}"


def prefixes_nest(a: str, b: str) -> bool:
    """Two watch roots' destination prefixes overlap: equal, or one a folder of the other
    (no prefix contains every other one). Any tier: a policy may place a file on any of them."""
    pa, pb = [p for p in a.split("/") if p], [p for p in b.split("/") if p]
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


def load_config(path: Path) -> Config:
    """Validate acqd.yaml; raise ConfigError naming file, line and field."""
    return load_model(path, Config, context={"base_dir": str(path.resolve().parent)})


def make_quick_dest(dest: str) -> Path | None:
    """The folder a quick form's `--dest` names, made when it is not there, inside one that exists (as
    a configured tier's: acqd.claims.unmade_parent; a mistyped path is not built on the local disk).
    The folder made (the caller removes it, if still empty, when the run is refused), or None."""
    if "://" in dest:
        return None
    try:
        Path(dest).mkdir()
    except FileExistsError:
        return None
    except FileNotFoundError:
        parent = Path(dest).resolve().parent
        raise ConfigError(
            f"--dest {dest}: the folder it would be made in ({parent}) does not exist: a mistyped path, or a "
            f"share not mounted? If this is the place, make it first (mkdir -p {dest})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"--dest {dest}: cannot make the folder: {exc.strerror}") from None
    return Path(dest)


def quick_config(
    watch: Path,
    dest: str,
    detector: str,
    state_dir: Path,
    instrument: str = "acqd",
    release: bool = False,
    compress: str = "none",
) -> Config:
    """The configuration behind `acqd run --watch DIR --dest URL` (its folder made: `make_quick_dest`)."""
    url = dest if "://" in dest else "file://" + str(Path(dest).resolve())
    secret = url_secret_error(url, "--dest")
    if secret:  # before pydantic, whose errors quote the input
        raise ConfigError(secret)
    return _quick_config(url, watch, detector, state_dir, instrument, release, compress)


def _quick_config(
    url: str, watch: Path, detector: str, state_dir: Path, instrument: str, release: bool, compress: str
) -> Config:
    return Config.model_validate(
        {
            "instrument": instrument,
            "state_dir": str(state_dir.resolve()),
            "watch": [
                {
                    "path": str(watch.resolve()),
                    "detector": detector,
                    "placement": {
                        "release_local": "after_verify" if release else "never",
                        "compress": compress,
                    },
                }
            ],
            "tiers": {"central": {"url": url}},
        }
    )


def optional_credential(path: Path | None, setting: str) -> str | None:
    """`read_credential` for a setting that may be left out (None)."""
    return None if path is None else read_credential(path, setting)


def read_credential(path: Path, setting: str) -> str:
    """A secret from a credential file: relative paths resolve in $CREDENTIALS_DIRECTORY (systemd's
    LoadCredential=); ConfigError naming the setting if it cannot be read."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    given = path
    if not path.is_absolute() and creds:
        path = Path(creds) / path
    try:
        return path.read_text().strip()
    except OSError as exc:
        hint = ""
        if not given.is_absolute() and not creds:  # outside systemd (acqd check by hand)
            hint = (
                f" (a relative password_file is looked for in $CREDENTIALS_DIRECTORY, which systemd sets for the "
                f"service; by hand: CREDENTIALS_DIRECTORY=/etc/acqd acqd ..., or give {setting} an absolute path)"
            )
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}{hint}") from None


# -- the facility hub (hub.yaml, `acqd hub`) ---------------------------------------------------
class LeaseConfig(Frozen):
    """One hub replica acts at a time: a lease row in the catalog, renewed while it runs."""

    name: str = Field("retention", description="the lease's name: replicas of one hub share it")
    ttl: Duration = Field(60.0, description="how long the lease lasts unless renewed (renewed every ttl/6)")

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, v: float) -> float:
        if not 1.0 <= v <= 3600.0:
            raise ValueError("ttl must be between 1s and 1h")
        return v


class UsageSettings(Frozen):
    weeks: int = Field(8, ge=1, le=104, description="weeks ahead that due purges and transitions are counted for")
    statement_timeout: Duration = Field(
        60.0, description="the longest a usage or fleet query may run (a scrape that takes longer reports an error)"
    )
    refresh: Duration = Field(
        300.0, description="`acqd hub` recomputes the usage gauges this often (one streamed pass over the catalog)"
    )


class FleetSettings(Frozen):
    silent_after: Duration = Field(
        900.0, description="`acqd hub fleet` flags an instrument not heard from for this long while files wait"
    )
    mqtt_wait: Duration = Field(2.0, description="how long `acqd hub fleet` collects the retained MQTT status")


class HubConfig(Frozen):
    facility: str = Field("facility", description="the facility's name, in the digests' subject")
    state_dir: Path = Field(description="the hub's own state (the mailbox when no SMTP is configured)")
    catalog: CatalogConfig = Field(description="the facility catalog the daemons publish to")
    tiers: dict[str, TierConfig] = Field(
        min_length=1,
        description="central storage as the hub reaches it: the same names and URLs as in the daemons' acqd.yaml",
    )
    policy: Path = Field(description="the facility's retention policy YAML (the daemons' format)")
    smtp: SmtpConfig | None = Field(None, description="owner warnings; without it they go to state_dir/mailbox")
    metrics: MetricsConfig = Field(MetricsConfig(bind="127.0.0.1:9735"), description="Prometheus exporter")
    interval: Duration | None = Field(None, description="time between sweeps; default: the policy's spec.interval")
    lease: LeaseConfig = LeaseConfig()
    # read by `acqd hub usage|fleet` and the facility gauges (acqd.overview)
    groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="group -> its owners (as the policy's owners.pattern names them)"
    )
    mqtt: MqttConfig | None = Field(None, description="the daemons' broker: their retained status for fleet health")
    usage: UsageSettings = UsageSettings()
    fleet: FleetSettings = FleetSettings()

    @field_validator("facility")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}", v):
            raise ValueError("use letters, digits, spaces, '.', '_' and '-'")
        return v

    @field_validator("state_dir", "policy", mode="after")
    @classmethod
    def _rel(cls, v: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        if not v.is_absolute() and base is not None:
            v = Path(base) / v
        return v

    @model_validator(mode="after")
    def _interval(self) -> HubConfig:
        if self.interval is not None and self.interval < 0.1:
            raise ValueError("interval must be at least 100ms")
        return self


def load_hub_config(path: Path) -> HubConfig:
    """Validate hub.yaml; raise ConfigError naming file, line and field."""
    return load_model(path, HubConfig, context={"base_dir": str(path.resolve().parent)})
