"""The composition root: builds every part from the config and runs them; handles signals."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sqlite3
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from acqd import claims, pacing, publish
from acqd.aio import within
from acqd.codec import unfit_codec
from acqd.config import (
    Config,
    Limits,
    MqttConfig,
    WatchRoot,
    apart_error,
    load_config,
    own_apart_error,
    read_credential,
    redact_url,
)
from acqd.errors import AcqdError, ClaimError, ConfigError, JournalError, PermanentError
from acqd.fsops import same_or_inside
from acqd.journal import (
    INCOMPLETE_META,
    RELEASE_WAITING,
    STALLED_META,
    GroupCommitExecutor,
    Journal,
    configure_outbox,
    journal_path,
    last_sweep_result,
    record_tiers,
    recorded_tiers,
    retention_items,
    without_password,
)
from acqd.journal import JOURNAL_NAME as JOURNAL_NAME  # re-exported
from acqd.journal import summary as summary  # re-exported
from acqd.layouts import ChoosePolicy, build_layout
from acqd.logs import LogReporter, Repeats, one_line
from acqd.memory import tune_allocator, tune_gc, warm_imports
from acqd.metrics import Exporter, Metrics
from acqd.mounts import describe as describe_mount
from acqd.mounts import describe_tier as describe_unmounted
from acqd.mounts import lies_within, unmounted_mount_point, views_below
from acqd.pace import DiskStat, Pace, combine, load_between, next_pace, ship_slots
from acqd.pipeline import Pipeline, Placed, RootCtx, RunStats
from acqd.ports import BatchReporter, Layout, Reporter
from acqd.profiles import DetectorProfile, available, load_profile, search_path
from acqd.readers import Expect, Mode, reader_names
from acqd.rootlock import RootLocks
from acqd.storage import Tier, open_tier, stalled_calls
from acqd.systemd import Notifier, reload_asked_early
from acqd.units import human_age, human_bytes
from acqd.values import Outcome, State
from acqd.watcher import PASSED_MAX, EventSource, is_network_fs

if TYPE_CHECKING:  # imported where used: a daemon without MQTT, a catalog or a policy never loads them
    from acqd.catalog import Publisher
    from acqd.events import EventPublisher
    from acqd.notify import Mailer
    from acqd.policy.model import Policy
    from acqd.retention import RetentionRunner

log = logging.getLogger("acqd")

STATE_DIR_MODE = 0o700  # the state directory: journal, lock, mailbox (see README, "Files and permissions")
DRAIN_SECONDS = 30.0
MANIFEST_STOP_SECONDS = 15.0  # at a stop, after the drain: the last session manifests' writes
IO_EXIT_SECONDS = 15.0  # at a stop, after the drain: storage calls still blocked are left behind
LISTEN_RETRY_SECONDS = 30.0  # a metrics port taken at start: tried again this often
CATALOG_DRAIN_SECONDS = 10.0  # at a stop: the catalog's last records, if it is reachable
QUARANTINE_COUNT_EVERY = 15  # seconds between counts of the quarantined files in the journal (a gauge)


def load_profiles(config: Config) -> dict[str, DetectorProfile]:
    dirs = search_path(config.detectors_dir)
    out: dict[str, DetectorProfile] = {}
    for i, w in enumerate(config.watch):
        if w.detector not in out:
            try:
                out[w.detector] = load_profile(w.detector, dirs)
            except ConfigError as exc:
                if str(exc).startswith("unknown detector profile"):  # named where it is asked for
                    raise ConfigError(f"watch.{i}.detector ({w.path}): {exc}") from None
                raise
    return out


def build_tiers(config: Config) -> dict[str, Tier]:
    tiers = {}
    for name, t in config.tiers.items():
        try:
            tiers[name] = open_tier(name, t.url, t.options)
        except PermanentError as exc:
            raise ConfigError(f"tiers.{name}.url: {exc}") from None
        except OSError as exc:  # a backend that connects as it is made (ftp://, smb://): a host not found
            raise AcqdError(f"tier {name} ({redact_url(t.url)}): cannot be reached: {exc.strerror or exc}") from None
    return tiers


def make_placer(
    config: Config,
    watch: WatchRoot,
    profile: DetectorProfile,
    tiers: dict[str, Tier],
    policy: Policy,
    default_tier: str | None = None,
) -> Callable[[str], Placed]:
    """Per-file placement from the policy's rules, falling back to the watch root's placement (on
    `default_tier`, default its configured tier). A tier that is not running (a reload named a new
    one) is a ConfigError for the file, not a KeyError for the pipeline."""
    base = watch.placement
    fallback = default_tier or config.tier_for(watch)

    def running(name: str) -> Tier:
        tier = tiers.get(name)
        if tier is None:
            raise ConfigError(f"tier {name} is not running (a tier added to the configuration needs a restart)")
        return tier

    cache: dict[tuple[str, str, str], Layout] = {}

    def layout(
        name: str,
        codec: dict[str, Any] | None,
        compress: str,
        candidates: tuple[str | dict[str, Any], ...] | None = None,
        budget: float | None = None,
    ) -> Layout:
        key = (name, json.dumps([codec, candidates, budget], sort_keys=True), compress)
        if key not in cache:
            if name == "copy":
                cache[key] = build_layout("copy", compress, base.zstd_level, config.limits.chunk_bytes)
            else:
                threads = config.limits.frame_threads
                cache[key] = frame_layout(profile, name, codec, candidates, budget, threads) or build_layout(
                    "copy", compress, base.zstd_level, config.limits.chunk_bytes
                )
        return cache[key]

    def placer(rel: str) -> Placed:
        owner = profile.owner_of(rel) or policy.spec.owners.owner_of(rel)
        rule = policy.rule_for(rel, profile.name, owner)
        p = rule.placement
        tier = running(p.tier if p is not None and p.tier else fallback)
        compress = (p.compress if p is not None and p.compress else None) or base.compress
        release = ((p.release_local if p is not None else None) or base.release_local) == "after_verify"
        if profile.is_frames(rel.rpartition("/")[2]):
            name = (p.layout if p is not None and p.layout else None) or base.layout
            codec = (p.codec if p is not None and p.codec else None) or base.codec
            candidates = p.codec_candidates if p is not None else None
            budget = p.codec_budget if p is not None else None
            return Placed(tier, layout(name, codec, compress, candidates, budget), release)
        return Placed(tier, layout("copy", None, compress), release)

    return placer


def rule_layout_warnings(policy: Policy, roots: list[RootCtx]) -> list[str]:
    """`acqd check`: a policy rule whose layout cannot store with its codec for a watch root's detector
    (Blosc in a TIFF, LZW in Zarr). A warning, not an error: its glob or owner may match none of that
    root's files; those it matches would fail."""
    out = []
    for ctx in roots:
        try:
            _rule_layouts(policy, ctx.watch, ctx.profile)
        except ConfigError as exc:
            out.append(f"{exc} (the files of that root the rule matches could not be stored)")
    return out


def _rule_layouts(policy: Policy, w: WatchRoot, profile: DetectorProfile) -> None:
    """The frame layouts the policy's rules would store this root's files with (ConfigError: a rule's
    codec its layout cannot store with)."""
    for r in (*policy.spec.rules, policy.spec.default):
        p, m = r.placement, r.match
        if p is None or (p.layout is None and p.codec is None) or (m.detector not in (None, profile.name)):
            continue
        dc = policy.spec.dataClasses.get(m.dataClass) if m.dataClass is not None else None
        if dc is not None and dc.detectors and profile.name not in dc.detectors:
            continue
        try:
            frame_layout(profile, p.layout or w.placement.layout, p.codec or w.placement.codec)
        except ConfigError as exc:
            raise ConfigError(f"policy rule {r.name}, for watch root {w.path}: {exc}") from None


def build_roots(
    config: Config, profiles: dict[str, DetectorProfile], tiers: dict[str, Tier], policy: Policy | None = None
) -> list[RootCtx]:
    return [
        root_ctx(config, config.limits, i, w, profiles[w.detector], tiers[config.tier_for(w)], tiers, policy)
        for i, w in enumerate(config.watch)
    ]


def root_ctx(
    config: Config,
    limits: Limits,
    index: int,
    w: WatchRoot,
    profile: DetectorProfile,
    tier: Tier,
    tiers: dict[str, Tier],
    policy: Policy | None,
    events: bool | None = None,
) -> RootCtx:
    """One watch root as the pipeline runs it: its placement's layouts (ConfigError: a codec its layout
    cannot store with), its settle window and its policy's placer. `events`: the way it is watched
    (None: from its `mode`; a reload keeps the running one)."""
    p = w.placement
    if events is None:
        events = not is_network_fs(w.path) if w.mode == "auto" else w.mode == "events"
    return RootCtx(
        index=index,
        root=str(w.path).rstrip("/"),
        watch=w,
        profile=profile,
        tier=tier,
        layout=build_layout("copy", p.compress, p.zstd_level, limits.chunk_bytes),
        release=p.release_local == "after_verify",
        window=w.settle if w.settle is not None else profile.settle.window,
        scan_interval=w.scan_interval if w.scan_interval is not None else (60.0 if events else 5.0),
        events=events,
        frames=frame_layout(profile, p.layout, p.codec, threads=limits.frame_threads),
        placer=make_placer(config, w, profile, tiers, policy, tier.name) if policy is not None else None,
        stream=w.stream if w.stream is not None else profile.stream,
    )


def frame_layout(
    profile: DetectorProfile,
    layout: str,
    codec: dict[str, Any] | None,
    candidates: tuple[str | dict[str, Any], ...] | None = None,
    budget_ns: float | None = None,
    threads: int = 0,
) -> Layout | None:
    """The layout of a profile's frame files (None: they are copied), choosing its codec per session
    from the profile's (or the policy's) candidates within the CPU budget."""
    if profile.reader not in reader_names():
        raise ConfigError(f"detector {profile.name}: no reader {profile.reader!r} (known: {', '.join(reader_names())})")
    name = profile.layout if layout == "profile" else layout
    if profile.reader == "bytes" or name == "copy":
        return None
    try:
        if codec is not None and (why_not := unfit_codec(codec, name)) is not None:
            raise ValueError(f"{why_not}; the placement names it")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        tried, budget, why = profile.codec_choice(name, codec, candidates, budget_ns, cores)
        return build_layout(
            name,
            codec=codec if codec is not None else profile.layout_codec(name),
            reader=profile.reader,
            expect=Expect(modes=tuple(Mode(*m) for m in profile.expect.mode_list())),
            options=profile.reader_options(),
            shard_bytes=profile.shard_bytes,
            choose=ChoosePolicy(tried, budget, why),
            never_larger=profile.never_larger,
            threads=threads,
        )
    except ValueError as exc:
        raise ConfigError(f"detector {profile.name}: {exc}") from None


def policy_file(config: Config) -> Path | None:
    """The policy file: `policy:` as a path, or the name of a policy in /etc/acqd/policies or one
    shipped with acqd (`policy: cryoem-facility`)."""
    p = config.policy
    if p is None:
        return None
    from acqd.policy.model import policy_file as policy_file_of

    return policy_file_of(p)


def load_retention(config: Config) -> Policy | None:
    path = policy_file(config)
    if path is None:
        return None
    from acqd.policy.model import load_policy
    from acqd.shipped import policy_names

    if not path.is_file():  # `policy:` names it: said, not only the path
        raise ConfigError(
            f"policy: {path} does not exist (a policy's file, or the name of a shipped one: "
            f"{', '.join(policy_names())})"
        )
    policy = load_policy(path)
    missing = [t for t in policy.spec.tiers if t not in config.tiers]
    if missing:
        raise ConfigError(
            f"{path}: spec.tiers names {missing}, which acqd.yaml does not configure (tiers: {', '.join(config.tiers)})"
        )
    return policy


#: the retention policy the running daemon judges by (`note_running_policy`, read by `acqd plan`)
RUNNING_POLICY = "policy-running.json"


def policy_digest(policy: Policy) -> str:
    """What a policy says, as one digest: the same whatever its file's comments and layout."""
    import hashlib

    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()


def note_running_policy(state_dir: Path, policy: Policy) -> None:
    """Say in the state directory which policy this daemon now sweeps by (at its start and at each
    reload that applies one): `acqd plan` previews the file, and says when the daemon runs another."""
    doc = {"digest": policy_digest(policy), "at": time.time(), "pid": os.getpid()}
    tmp = state_dir / f".{RUNNING_POLICY}.tmp"
    try:
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, state_dir / RUNNING_POLICY)
    except OSError as exc:  # a state directory that cannot take it: the plan cannot compare, no more
        log.warning("cannot note the running policy in %s: %s", state_dir, exc)


def running_policy_differs(state_dir: Path, policy: Policy, pid: int | None) -> str | None:
    """`acqd plan`: why its preview may not be what the running daemon (`pid`) does, or None."""
    if pid is None:
        return None
    try:
        doc = json.loads((state_dir / RUNNING_POLICY).read_text())
    except (OSError, ValueError):
        return None
    if doc.get("pid") != pid or doc.get("digest") == policy_digest(policy):
        return None
    since = datetime.fromtimestamp(float(doc.get("at", 0)), UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"the running daemon (pid {pid}) sweeps by the policy as it was when it loaded it ({since}), not as the "
        "file is now: this plan shows the file; `systemctl reload acqd` (SIGHUP) applies it"
    )


def purge_share_warning(config: Config, policy: Policy) -> list[str]:
    """`acqd check`: warn when the policy would purge more than maxShareOfData of what the journal
    knows within one warning period (e.g. a new policy that suddenly expires everything)."""
    path = journal_path(config.state_dir)
    if not path.exists():
        return []
    horizon = time.time() + max(r.warn for r in (*policy.spec.rules, policy.spec.default))
    from acqd.retention import plan_from_journal

    j = Journal(path, readonly=True)
    try:
        actions, _ = plan_from_journal(j, policy, horizon)
        total = sum(r.copy.stored_bytes for r in retention_items(j))
    finally:
        j.close()
    if not total:
        return []
    doomed = sum(a.item.size for a in actions if a.kind == "warn")
    share = doomed / total
    if share > policy.spec.caps.maxShareOfData:
        return [
            f"within one warning period this policy would purge {share:.0%} of the stored data "
            f"({doomed} of {total} bytes), more than caps.maxShareOfData ({policy.spec.caps.maxShareOfData:.0%})"
        ]
    return []


def unwarned_purge_warning(policy: Policy) -> list[str]:
    """`acqd check`: a rule that purges, whose warnings can reach nobody for some files (no address
    of its own, no owners.fallback): those files are never warned, so their purges stay blocked."""
    if policy.spec.owners.fallback:
        return []
    return [
        f"policy rule {r.name} purges after {human_age(r.expiration.after)}, but a file whose owner has no "
        "address in owners.emails has nobody to be warned (no owners.fallback): its purge stays blocked; "
        "set owners.fallback"
        for r in (*policy.spec.rules, policy.spec.default)
        if r.expiration is not None and not any("@" in n for n in r.notify)
    ]


def undeliverable_warnings(config: Config, policy: Policy) -> list[str]:
    """`acqd check`: where the warnings before a purge would reach nobody: no `smtp:` (they go to the
    local mailbox only), or addresses in domains reserved for examples (a shipped policy's
    placeholders). Without smtp: the purges wait (a mailbox file warns nobody); a reserved domain's
    address: the purges follow all the same, said before they do."""
    purging = [r.name for r in (*policy.spec.rules, policy.spec.default) if r.expiration is not None]
    if not purging:
        return []
    out = []
    if config.smtp is None:
        out.append(
            f"policy rule(s) {', '.join(purging)} purge after a warning, and no `smtp:` is configured: warnings "
            f"go to {config.state_dir / 'mailbox'} and the log only, which tells nobody, so those purges wait; "
            "configure smtp: to warn owners"
        )
    o = policy.spec.owners
    named = [*(f"owners.emails.{k}" for k in o.emails), "owners.fallback"]
    addresses = [*o.emails.values(), o.fallback or ""]
    for r in (*policy.spec.rules, policy.spec.default):
        named += [f"rule {r.name}: notify" for n in r.notify if "@" in n]
        addresses += [n for n in r.notify if "@" in n]
    from acqd.policy.model import reserved_domain

    for where, address in zip(named, addresses, strict=True):
        if address and reserved_domain(address):
            out.append(
                f"policy {where}: {address} is in a domain reserved for examples: no mail reaches it, and the purges "
                "it announces follow; put a real address"
            )
    return out


def build_mailer(config: Config) -> Mailer:
    from acqd.notify import MailboxMailer, SmtpMailer

    s = config.smtp
    if s is None:
        return MailboxMailer(config.state_dir / "mailbox")
    password = None
    if s.password_file is not None:
        path = s.password_file
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not path.is_absolute() and creds:
            path = Path(creds) / path
        try:
            password = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"smtp.password_file: cannot read {path}: {exc.strerror}") from None
    return SmtpMailer(s.host, s.port, s.starttls, s.username, password)


def prepare(config: Config) -> tuple[dict[str, Tier], Policy | None, list[RootCtx]]:
    """What `run` builds from a configuration before it starts, and `check` validates: detector
    profiles, tiers, the retention policy, the secret files and the watch roots (ConfigError if any
    is bad)."""
    profiles = load_profiles(config)
    tiers = build_tiers(config)
    check_apart(config, tiers)
    policy = load_retention(config)
    if config.mqtt is not None and config.mqtt.enabled:
        mqtt_password(config.mqtt)  # a password file that cannot be read
    if config.smtp is not None:
        build_mailer(config)
    if config.owner_page is not None and config.owner_page.enabled:
        if policy is None:
            raise ConfigError("owner_page is enabled but no `policy:` is configured: the page shows the policy's dates")
        from acqd.owners import serve as owner_page  # the web stack: loaded only when the page is on

        owner_page.secrets_of(config.owner_page)  # a secret file that cannot be read, or too short
    return tiers, policy, build_roots(config, profiles, tiers, policy)


def check_apart(config: Config, tiers: dict[str, Tier]) -> None:
    """The configuration checks this by name; here by what the filesystem says, so that a symlink or
    a bind mount does not hide it: no local tier is, or is inside, a watch root (or the other way
    round), and the state folder is not inside one. Roots not there yet are checked by name only; a
    release never counts a copy inside a watch root (`Pipeline`)."""
    for name, tier in tiers.items():
        if tier.local and os.path.lexists(tier.root) and not os.path.isdir(tier.root):
            raise ConfigError(f"tiers.{name}: {tier.root} is a file, not a folder")
    for w in config.watch:
        root = str(w.path)
        for name, tier in tiers.items():
            if tier.local and any(lies_within(a, b) for a, b in ((tier.root, root), (root, tier.root))):
                raise ConfigError(apart_error(f"tiers.{name} ({tier.root})", w.path))
            if tier.local and os.path.isdir(root) and (seen := views_below(root, [tier.root])):
                where = ", ".join(os.path.join(root, v) for v in seen)
                raise ConfigError(apart_error(f"tiers.{name} ({tier.root}, mounted or linked at {where})", w.path))
        for what, own in config.own_paths():
            if same_or_inside(str(own), root):
                raise ConfigError(own_apart_error(what, own, w.path))


def missing_roots(roots: list[RootCtx]) -> list[str]:
    """Watch roots not there: not a folder, or on a disk of fstab that is not mounted (its empty mount
    point: `run` waits for the disk, and takes none of the files it knows from it for gone)."""
    out = []
    for c in roots:
        if not os.path.isdir(c.root):
            out.append(f"watch root {c.root} does not exist or is not a folder")
        elif (point := unmounted_mount_point(c.root)) is not None:
            out.append(f"watch root {c.root} is on a disk not mounted ({describe_mount(point)}): acqd waits for it")
    return out


def probe_tier(tier: Tier, under: str, timeout: float) -> str | None:
    """Write, read back and delete a small object on `tier` (under a temporary name); None if that
    worked, else why not. Bounded: a tier that does not answer within `timeout` fails the probe."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            tier.probe(under)
            outcome.append(None)
        except AcqdError as exc:
            outcome.append(str(exc))
        except Exception as exc:  # a backend error the storage edge did not translate
            outcome.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=attempt, name=f"probe-{tier.name}", daemon=True)
    t.start()
    t.join(timeout)
    if not outcome:
        return f"no answer within {timeout:g}s"
    return outcome[0]


def shared_storage(tiers: dict[str, Tier], under: str, timeout: float) -> list[str]:
    """A warning for each pair of tiers that are one storage (a marker written through one is seen
    through the other): a transition between them would fail. Bounded like the write probe; a tier
    that fails or does not answer is left to the probe's own warning."""
    out: list[str] = []
    names = sorted(tiers)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            seen: list[bool] = []

            def attempt(a: str = a, b: str = b, seen: list[bool] = seen) -> None:
                with contextlib.suppress(Exception):
                    seen.append(tiers[a].shares_storage_with(tiers[b], f"{under}/acqd-check"))

            t = threading.Thread(target=attempt, name=f"alias-{a}-{b}", daemon=True)
            t.start()
            t.join(timeout)
            if seen and seen[0]:
                out.append(
                    f"tiers {a} ({tiers[a].url(under)}) and {b} ({tiers[b].url(under)}) are one storage: "
                    "a retention transition between them fails and the copy stays; give each its own location"
                )
    return out


@dataclass
class CheckReport:
    notes: list[str]
    warnings: list[str]  # what `run` does not refuse but waits on or retries (a missing root, a tier down)


def unknown_detector_warnings(config: Config, policy: Policy) -> list[str]:
    """`acqd check`: detector names a policy matches on that no detector profile has (a typo: its rule
    or data class matches nothing, and the files fall to another rule)."""
    known = set(available(search_path(config.detectors_dir)))
    out = []
    for name, dc in policy.spec.dataClasses.items():
        out += [
            f"policy dataClass {name}: detector {d!r} is no detector profile" for d in dc.detectors if d not in known
        ]
    for r in (*policy.spec.rules, policy.spec.default):
        if r.match.detector is not None and r.match.detector not in known:
            out.append(f"policy rule {r.name}: match.detector {r.match.detector!r} is no detector profile")
    if out:
        out[-1] += f" (profiles: {', '.join(sorted(known))}): it matches no file"
    return out


def _profile_list(config: Config) -> tuple[list[str], list[str]]:
    """Each detector profile `run` could use, with the files it takes as frames (`acqd check`), and
    a warning for each one that `run` could not load (a watch root naming it would be refused)."""
    dirs = search_path(config.detectors_dir)
    out: list[str] = []
    bad: list[str] = []
    if config.detectors_dir is not None and not config.detectors_dir.is_dir():
        bad.append(f"detectors_dir {config.detectors_dir} is not a folder: no profile of yours is found there")
    for name in available(dirs):
        try:
            p = load_profile(name, dirs)
        except ConfigError as exc:
            out.append(f"{name} (unreadable)")
            bad.append(f"detector profile {name}: {exc}")
            continue
        out.append(f"{name} ({' '.join(p.files)})" if p.reader != "bytes" else f"{name} (copies every file)")
    return out, bad


def check(config: Config, *, probe: bool = True, probe_timeout: float = 15.0) -> CheckReport:
    """Everything `run` validates before it starts (ConfigError if it would refuse to start), plus
    what it would wait on: a missing watch root, a tier it cannot write to (a write probe)."""
    tiers, policy, roots = prepare(config)
    problems, waits = claim_problems(config, tiers)
    if problems:
        raise ClaimError(problems[0])
    notes: list[str] = []
    warnings = missing_roots(roots) + list(waits.values())
    for ctx in roots:  # another acqd on this machine watches it (acqd.rootlock): `run` waits for it
        with contextlib.suppress(OSError):
            if os.path.isdir(ctx.root) and (why := RootLocks().blocked(ctx.root)) is not None:
                warnings.append(f"watch root {ctx.root} {why}: `run` waits for it, `run --once` refuses")
    if policy is not None:
        rules = ", ".join(
            f"{r.name}: "
            + "".join(f"move to {t.tier} after {human_age(t.after)}, " for t in r.transitions)
            + (
                f"purge after {human_age(r.expiration.after)}, warn {human_age(r.warn)} before"
                if r.expiration
                else "kept for ever"
            )
            for r in (*policy.spec.rules, policy.spec.default)
        )
        others = [t for t in config.tiers if t not in policy.spec.tiers]
        kept = f"; copies on tier(s) {', '.join(others)} are kept as they are (not in spec.tiers)" if others else ""
        notes.append(
            f"policy {policy.metadata.name} ({policy_file(config)}), on tier(s) {', '.join(policy.spec.tiers)}"
            f"{kept}: {rules}"
        )
        warnings.extend(purge_share_warning(config, policy))
        warnings.extend(unwarned_purge_warning(policy))
        warnings.extend(undeliverable_warnings(config, policy))
        warnings.extend(unknown_detector_warnings(config, policy))
        warnings.extend(rule_layout_warnings(policy, roots))
        if config.retention.owner != "hub":
            from acqd.notify import Digests

            if (broken := Digests().problem(time.time())) is not None:
                warnings.append(f"{broken}: no warning is sent, so no purge is made, until it is mended")
    for ctx in roots:
        asked = ctx.watch.placement.layout
        if asked in ("zarr", "tiff") and ctx.profile.reader == "bytes":
            warnings.append(
                f"watch {ctx.watch.name or f'watch{ctx.index}'}: placement layout {asked} has no effect: detector "
                f"{ctx.profile.name} reads no frames (every file is copied byte for byte); pick the detector "
                "profile of the camera (`acqd check` lists them)"
            )
        exists = "exists" if Path(ctx.root).is_dir() else "MISSING"
        takes = ", ".join(ctx.profile.files) if ctx.profile.reader != "bytes" else "none: every file copied"
        label = ctx.watch.name or f"watch{ctx.index}"
        prefix = f", prefix {ctx.watch.prefix}" if ctx.watch.prefix else ""
        notes.append(
            f"watch {label}: {ctx.root} ({exists}{prefix}): detector {ctx.profile.name} (frames: {takes}),"
            f" {'events' if ctx.events else 'polling'}"
            f" + scan every {ctx.scan_interval:g}s, settle {ctx.window:g}s -> tier {ctx.tier.name}"
            f" ({ctx.tier.url('')}), frames: {ctx.frames.name if ctx.frames else 'copy'}, other files: "
            + (
                "ignored (the profile's other_files)"
                if ctx.profile.other_files == "ignore"
                else f"copy{' + zstd' if ctx.watch.placement.compress == 'zstd' else ''}"
            )
            + ","
            f" release_local {ctx.watch.placement.release_local}"
        )
    listed, unloadable = _profile_list(config)
    notes.append(f"detector profiles: {', '.join(listed)}")
    warnings.extend(unloadable)
    catalog_notes, catalog_warnings = publish.check(config, probe_timeout, probe=probe)
    notes.extend(catalog_notes)
    warnings.extend(catalog_warnings)
    bo = config.limits.backoff
    if bo.enabled:
        named = [(watch_name(config, i), str(w.path)) for i, w in enumerate(config.watch)]
        for d in pacing.disks(named, str(bo.stat_file) if bo.stat_file is not None else None):
            notes.append(
                f"back-off: watch {d.name}: disk counters {d.stat}, back off above {bo.write_latency_above * 1000:g} ms"
                if d.stat
                else f"back-off: watch {d.name}: no block device counters (not one disk, or not there yet): acqd "
                "cannot back off for it; set limits.backoff.stat_file"
            )
    # a look, not a write: said with --no-probe too (an unmounted share is what `check` is run for)
    absent = {n for n, t in tiers.items() if t.local and not os.path.lexists(t.root)}
    for name in sorted(absent):
        warnings.append(
            f"tier {name}: {tiers[name].root} does not exist: `run` makes it at its first use (and never "
            "writes there again once its copies and claim have gone); if it is a network share, mount it first"
        )
    if probe:
        warnings.extend(
            shared_storage(  # its markers are writes too: none onto a folder that is not the tier
                {n: t for n, t in tiers.items() if n not in absent and n not in waits}, config.instrument, probe_timeout
            )
        )
        for name, tier in tiers.items():
            if name in absent or name in waits:  # probed by writing: that would make it, or write onto
                continue  # the empty mount point
            failed = probe_tier(tier, config.instrument, probe_timeout)
            if failed is None:
                notes.append(f"tier {name} ({tier.url(config.instrument)}): write, read back and delete: OK")
            else:
                warnings.append(f"tier {name} ({tier.url(config.instrument)}): write probe failed: {failed}")
            with contextlib.suppress(Exception):
                tier.close()
    return CheckReport(notes, warnings)


#: the keys of acqd.yaml a reload (SIGHUP) does not apply (watch roots, tiers and limits: said apart)
RESTART_ONLY = ("instrument", "state_dir", "metrics", "mqtt", "smtp", "owner_page", "catalog", "retention")


def require_roots(roots: list[RootCtx]) -> None:
    """`--once` needs its roots: a missing one is a one-line error (a daemon waits for it instead)."""
    missing = missing_roots(roots)
    if missing:
        raise ConfigError(missing[0])


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """One daemon per state directory: a second one would corrupt nothing, but would ship twice."""
    try:
        state_dir.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        if state_dir.stat().st_mode & 0o777 & ~STATE_DIR_MODE:
            state_dir.chmod(STATE_DIR_MODE)  # the journal says who owns what data: only acqd's user reads it
        fd = os.open(state_dir / "acqd.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if state_dir.exists() and not state_dir.is_dir():  # a path mistyped: restarting will not fix it
            raise ConfigError(f"state directory {state_dir} is a file, not a folder") from None
        raise JournalError(f"cannot use the state directory {state_dir}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise JournalError(f"another acqd (pid {other}) is running with the state directory {state_dir}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _unreleased(journal: Journal, roots: list[RootCtx]) -> int:
    """Blocking. How many verified files of `roots` that their placement releases are still on the
    acquisition disk (a run stopped before its releases: `--once` says so, not only `0 pending`)."""
    ctx_of = {c.root: c for c in roots}
    rows = journal.verified_in(c.root for c in roots if c.release or c.placer is not None)
    return sum(
        1 for r in rows if ctx_of[r.root].releases(r.relpath) and os.path.lexists(os.path.join(r.root, r.relpath))
    )


def reads_frames(roots: list[RootCtx]) -> bool:
    """Whether a watch root can store its files in a frame layout: its placement names one for its
    detector's frame files (`frames`), or a policy's rules may (its placer) and its detector reads
    frames (a profile with the `bytes` reader copies every file, whatever a placement or rule names)."""
    return any(ctx.frames is not None or (ctx.placer is not None and ctx.profile.reader != "bytes") for ctx in roots)


def import_frame_libraries(pipeline: Pipeline) -> None:
    """Import the frame layouts' libraries (numpy, zarr, tifffile, imagecodecs: 0.3-0.5 s of CPU) on a
    thread of their own, once; the pipeline's I/O other than scans and settle looks waits for it
    (`Pipeline.imports`), and so does a retention sweep. Asked at start when a watch root can store
    frames (`reads_frames`) or the journal holds a copy in a frame layout (a release, a recheck or a
    retention move reads it back). Called on the event loop's thread."""
    if pipeline.imports is not None:
        return
    importer = ThreadPoolExecutor(1, thread_name_prefix="acqd-imports")
    pipeline.imports = asyncio.get_running_loop().run_in_executor(importer, warm_imports)
    pipeline.imports.add_done_callback(partial(_imported, pipeline))
    importer.shutdown(wait=False)  # its one task still runs


def _imported(pipeline: Pipeline, fut: asyncio.Future[None]) -> None:
    """The frame layouts' libraries could not be imported (a broken installation): nothing can be
    stored in a frame layout, so the daemon stops rather than fail every file."""
    if fut.cancelled() or fut.exception() is None:
        return
    exc = fut.exception()
    pipeline.halt(f"cannot import the frame layouts' libraries ({type(exc).__name__}: {exc}): reinstall acqd", "start")


@dataclass
class RunResult:
    code: int
    stats: RunStats
    pending: int


class Fanout:
    """One outcome to every reporter; one failing reporter does not stop the others."""

    def __init__(self, reporters: list[Reporter]) -> None:
        self.reporters = reporters

    def outcome(self, o: Outcome) -> None:
        for r in self.reporters:
            try:
                r.outcome(o)
            except Exception:
                log.exception("reporter %s failed", type(r).__name__)

    def batch_outcomes(self, batch: Sequence[Outcome]) -> None:
        """A batch's outcomes, in order, to every reporter: in one call to a reporter that takes them
        together (a BatchReporter: the log writes them as one record), else one by one."""
        for r in self.reporters:
            if not isinstance(r, BatchReporter):
                for o in batch:
                    try:
                        r.outcome(o)
                    except Exception:
                        log.exception("reporter %s failed", type(r).__name__)
                continue
            try:
                r.batch_outcomes(batch)
            except Exception:
                log.exception("reporter %s failed on %d outcomes", type(r).__name__, len(batch))


def watch_name(config: Config, index: int) -> str:
    return config.watch[index].name or f"watch{index}"


def mqtt_password(m: MqttConfig) -> str | None:
    return read_credential(m.password_file, "mqtt.password_file") if m.password_file is not None else None


def awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: its await chain, outermost first (what Task.print_stack does
    not show: it stops at the task's own coroutine)."""
    lines = []
    for _ in range(64):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            if coro is not None:
                lines.append(f"awaiting {coro!r}"[:300])
            break
        code = frame.f_code
        lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return lines


def dump_state(loop: asyncio.AbstractEventLoop, pipeline: Pipeline | None = None) -> None:
    """SIGUSR1: say in the log what every task and thread is waiting on, and what the pipeline holds
    (for a daemon that seems stuck: `systemctl kill -s USR1 acqd`). Nothing is changed."""
    import io as _io
    import sys
    import traceback

    out = _io.StringIO()
    tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
    out.write(f"state dump: {len(tasks)} task(s), {threading.active_count()} thread(s)\n")
    if pipeline is not None:
        out.write(pipeline.describe() + "\n")
    for t in tasks:
        out.write(f"-- task {t.get_name()}\n")
        out.write("".join(f"  {line}\n" for line in awaiting(t.get_coro())))
    names = {th.ident: th.name for th in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue  # the event loop's own thread: its tasks are above
        out.write(f"-- thread {names.get(ident, ident)}\n")
        out.write("".join(traceback.format_stack(frame, limit=-12)))
    # its line breaks kept (the lines of the format are, an argument's are escaped), each line's
    # control characters escaped (a file name in the pipeline's lines may hold any)
    log.warning("\n".join(one_line(line) for line in out.getvalue().splitlines()).replace("%", "%%"))


class Daemon:
    """Owns the executors, the journal, the pipeline, the watchers and the service plumbing."""

    def __init__(
        self,
        config: Config,
        *,
        once: bool = False,
        retry_for: float | None = None,
        reporter: Reporter | None = None,
        config_path: Path | None = None,
        adopt: bool = False,
    ) -> None:
        self.config = config
        self.adopt = adopt
        self.config_path = config_path
        self.once = once
        self.retry_for = retry_for
        self.reporter = reporter
        self.pipeline: Pipeline | None = None
        self.registry = CollectorRegistry()
        self.metrics = Metrics(
            self.registry,
            config.instrument,
            detectors={w.detector for w in config.watch},
            tiers=config.tiers,
            watches=[watch_name(config, i) for i in range(len(config.watch))],
        )
        self.metrics.inflight_limit.labels(config.instrument).set(config.limits.inflight_bytes)
        self.events: EventPublisher | None = None
        self.retention: RetentionRunner | None = None
        self._tiers: dict[str, Tier] = {}
        self.exporter: Exporter | None = None
        self.notifier = Notifier()
        self.repeats = Repeats(on_error=self._count_error)
        self._events_source: EventSource | None = None
        self._io: ThreadPoolExecutor | None = None
        self.stuck_io = 0  # I/O threads still blocked in a storage call when the daemon stopped
        self._started = False  # every part runs: a reload asked before waits for it (`_on_reload`)
        self._reload_held = False
        # the slow storage calls `acqd status` was last given (`_stall_watch`); None: not yet, so that the
        # first look writes what is so (a run stopped by kill -9 left its stalls there: a review)
        self._stalled_doc: str | None = None
        self.interrupted: signal.Signals | None = None  # a stop signal that came before the pipeline's own end
        self.catalog: Publisher | None = None
        self.pace = Pace("normal", "")  # acquisition comes first: the pacer's current decision
        self._pacers: dict[str, pacing.TierPacer] = {}  # tiers with a bandwidth schedule

    async def _abort_incomplete(self, io: ThreadPoolExecutor, tiers: dict[str, Tier]) -> None:
        """Before any upload starts: abort the unfinished uploads a crash left in this instrument's
        namespace on each tier (object stores keep, and bill, them for ever otherwise)."""
        loop = asyncio.get_running_loop()
        config = self.config
        bases = {f"{config.instrument}/{w.prefix}" if w.prefix else config.instrument for w in config.watch}
        # a tier that does not answer holds the start up at most this long (`--once --retry-for` less)
        wait = 60.0 if self.retry_for is None else max(1.0, min(60.0, self.retry_for))
        for name, tier in tiers.items():
            for base in sorted(bases):
                try:
                    n = await within(loop.run_in_executor(io, tier.abort_incomplete, base), wait)
                except (AcqdError, TimeoutError) as exc:
                    log.warning("tier %s: could not look for unfinished uploads below %s: %s", name, base, exc)
                    break  # its other prefixes too: looked for at the next start
                if n:
                    log.warning("tier %s: aborted %d unfinished upload(s) a previous run left below %s", name, n, base)

    async def run(self, install_signals: bool = True, ready: asyncio.Event | None = None) -> RunResult:
        locks = RootLocks(asyncio.get_running_loop())  # one acqd per watch root (acqd.rootlock)
        stalls = asyncio.create_task(self._stall_watch(), name="stall-watch")  # from the start: the claims too
        try:
            return await self._run(locks, install_signals, ready)
        finally:
            stalls.cancel()
            locks.close()

    async def _stall_watch(self) -> None:
        """Say each storage call that has been under way for `limits.stalled_after` (a server that takes
        connections and never answers: its client retries each call on its own, for many minutes,
        with nothing logged or counted), once, and when it ends; `acqd_storage_stalled_calls` by tier
        and `acqd status` meanwhile."""
        said: dict[object, tuple[str, str, str, float]] = {}
        while True:
            await asyncio.sleep(STALL_CHECK)
            stalled = stalled_calls(self.config.limits.stalled_after)
            now = time.time()
            for token, tier, op, url, secs in stalled:
                if token not in said:
                    said[token] = (tier, op, url, now - secs)
                    log.warning(
                        "tier %s: a %s of %s has been under way for %.0fs (a slow or stalled server: its client "
                        "retries on its own); the files it is for wait",
                        tier,
                        op,
                        url,
                        secs,
                    )
            p = self.pipeline
            if p is not None and stalled:  # a back-off's slots held by a stalled tier's files count no more
                await p.slots.nudge()
            current = {s[0] for s in stalled}
            for token in [t for t in said if t not in current]:
                tier, op, url, since = said.pop(token)
                log.info("tier %s: the %s of %s ended after %.0fs", tier, op, url, now - since)
            for name in {*self._tiers, *(s[1] for s in stalled)}:
                self.metrics.stalled_calls.labels(self.config.instrument, name).set(sum(s[1] == name for s in stalled))
            p = self.pipeline
            doc = json.dumps(sorted(said.values())) if said else ""
            if p is not None and doc != self._stalled_doc:
                try:
                    await p._j(p.journal.set_meta, STALLED_META, doc)
                    self._stalled_doc = doc
                except AcqdError as exc:
                    log.debug("stalled calls not recorded: %s", exc)

    async def _run(self, locks: RootLocks, install_signals: bool, ready: asyncio.Event | None) -> RunResult:
        tune_allocator()
        tune_gc()
        config = self.config
        tiers, _, roots = prepare(config)
        catalog_password = publish.prepare(config)
        self._tiers = tiers
        for name, tc in config.tiers.items():
            if tc.bandwidth:
                self._pacers[name] = pacing.TierPacer(tc.schedule())
                tiers[name].pace = self._pacers[name].reserve
        if self.once:
            require_roots(roots)
        with state_lock(config.state_dir):
            for c in roots if self.once else ():  # a finite run refused at once (a daemon waits for the other)
                if (why := await asyncio.to_thread(locks.take, c.root)) is not None:
                    raise ClaimError(
                        f"watch root {c.root} {why}; stop it (`systemctl stop acqd`), or let it ship these files"
                    )
            # storage calls: `io_threads`, and one more per ship worker, so that the calls a tier that
            # stops answering holds (at most `concurrent_files - 1` files in flight on it: acqd.pace.Lanes,
            # its manifest, a sweep) leave threads to the others; scans and settle looks have their own
            io = ThreadPoolExecutor(
                config.limits.io_threads + config.limits.concurrent_files, thread_name_prefix="acqd-io"
            )
            look = ThreadPoolExecutor(config.limits.io_threads, thread_name_prefix="acqd-look")
            self._io = io
            jexec = GroupCommitExecutor()
            loop = asyncio.get_running_loop()
            try:
                journal = await loop.run_in_executor(jexec, Journal, journal_path(config.state_dir))
            except BaseException:
                jexec.shutdown()
                raise
            jexec.journal = journal
            events: EventSource | None = None
            try:
                claim = claims.ours(config.instrument, journal, config.state_dir)
                if self.adopt:
                    counts = await loop.run_in_executor(jexec, adopt_into, config, tiers, claim, journal)
                    log.info("adopted %(files)d stored file(s) from %(manifests)d manifest(s)", counts)
                refusal = await loop.run_in_executor(jexec, claims.unfinished_adopt, journal)
                if refusal is not None:  # an adopt claimed the prefix and did not import everything
                    raise refusal
                known = {n: await loop.run_in_executor(jexec, journal.has_copies, n) for n in tiers}

                runs = await loop.run_in_executor(jexec, journal.runs)

                def count_run() -> None:  # on the I/O thread: the journal lives on its own
                    jexec.submit(journal.count_run, claim.run, claim.epoch).result()

                notes, unclaimed = await loop.run_in_executor(
                    io, claims.establish, tiers, claim, known, count_run, runs
                )
                for note in notes:
                    log.info("%s", note)
            except BaseException:
                io.shutdown(wait=False, cancel_futures=True)
                look.shutdown(wait=False, cancel_futures=True)
                await loop.run_in_executor(jexec, journal.close)
                jexec.shutdown(wait=True)
                raise
            aux: list[asyncio.Task[None]] = []
            try:
                # where the claimed tiers are (`restore` and `verify` of a quick-form run find them there);
                # not a tier left unclaimed: one that holds nothing of this journal's copies (another
                # `--dest` given by mistake, a share not mounted) would be recorded as where they are, and
                # `restore`, `verify` and `status` looked for them there (a stranger's first try)
                await loop.run_in_executor(
                    jexec,
                    record_tiers,
                    journal,
                    {n: (t.url, dict(t.options)) for n, t in config.tiers.items() if n not in unclaimed},
                )
                # the catalog's outbox: triggers in the journal with a catalog, none without
                cap = config.catalog.outbox_cap if config.catalog is not None else None
                await loop.run_in_executor(jexec, configure_outbox, journal, cap)
                if config.catalog is not None:
                    self.catalog = publish.build_publisher(
                        config, catalog_password, journal, jexec, io, self.metrics.catalog
                    )
                reporters: list[Reporter] = [LogReporter(self.repeats), self.metrics]
                if config.metrics is not None and config.metrics.enabled:
                    bind = config.metrics.bind
                    try:
                        self.exporter = Exporter(self.registry, bind)
                        log.info("metrics on http://%s/metrics", bind)
                    except OSError as exc:  # the port taken at boot: shipping never waits for the metrics
                        log.error(
                            "metrics.bind: cannot listen on %s (%s): no metrics until it can; acqd ships all "
                            "the same and tries again every %g s",
                            bind,
                            exc.strerror,
                            LISTEN_RETRY_SECONDS,
                        )
                        aux.append(asyncio.create_task(self._listen_later(bind), name="metrics-listen"))
                if config.mqtt is not None and config.mqtt.enabled:
                    from acqd.events import EventPublisher

                    self.events = EventPublisher(
                        config.mqtt.url,
                        config.instrument,
                        outbox=config.mqtt.outbox,
                        password=mqtt_password(config.mqtt),
                        on_metric=self.metrics.mqtt,
                        status_extra=self._status_doc,
                    )
                    reporters.append(self.events)
                if self.reporter is not None:
                    reporters.append(self.reporter)

                def claimed_late(tier: Tier) -> None:  # on an I/O thread: the journal lives on its own
                    tc = config.tiers[tier.name]
                    jexec.submit(record_tiers, journal, {tier.name: (tc.url, dict(tc.options))}).result()

                guard = claims.Guard(claim, journal, unclaimed, runs=runs, on_claimed=claimed_late)
                pipeline = Pipeline(
                    instrument=config.instrument,
                    roots=roots,
                    journal=journal,
                    io=io,
                    jexec=jexec,
                    limits=config.limits,
                    reporter=Fanout(reporters),
                    once=self.once,
                    retry_for=self.retry_for,
                    guard=guard,
                    repeats=self.repeats,
                    on_root=self._on_root,
                    tiers=self._tiers,
                    look=look,
                )
                pipeline.root_locks = locks
                self.pipeline = pipeline
                if any(c.events for c in roots):  # each root is watched once the scanner finds it there
                    events = EventSource([], pipeline.hint, pipeline.request_rescan_threadsafe)
                    self._events_source = events
                if install_signals:
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        loop.add_signal_handler(sig, self._on_stop, sig)
                    loop.add_signal_handler(signal.SIGHUP, self._on_reload)
                    loop.add_signal_handler(signal.SIGUSR1, dump_state, loop, pipeline)
                await self._abort_incomplete(io, tiers)
                policy = load_retention(config)
                op = config.owner_page
                page_on = op is not None and op.enabled and policy is not None and not self.once
                links = None
                if op is not None and page_on:
                    from acqd.owners import serve as owner_page  # the web stack: loaded only when the page is on

                    links = owner_page.link_maker(op, owner_page.secrets_of(op)[0])
                hub_owned = config.retention.owner == "hub"
                if policy is not None and hub_owned and not self.once:
                    log.info("retention: owned by the facility hub (retention.owner: hub); this daemon never sweeps")
                if policy is not None and not self.once and not hub_owned:
                    from acqd.notify import Digests
                    from acqd.retention import RetentionRunner

                    for problem in undeliverable_warnings(config, policy):  # `acqd check` says it too
                        log.error("retention: %s", problem)
                    digests = Digests()
                    if (broken := digests.problem(time.time())) is not None:  # `acqd check` says it too
                        log.error("retention: %s: no warning is sent, so no purge is made, until it is mended", broken)
                    mailer = build_mailer(config)
                    self.retention = RetentionRunner(
                        policy=policy,
                        journal=journal,
                        jexec=jexec,
                        io=io,
                        tiers=tiers,
                        mailer=mailer,
                        digests=digests,
                        reporter=Fanout(reporters),
                        instrument=config.instrument,
                        sender=config.smtp.sender if config.smtp else f"acqd@{config.instrument}",
                        contact=config.smtp.contact if config.smtp else "the facility staff",
                        hold_args=(
                            ("--config", str(self.config_path.resolve()))
                            if self.config_path is not None
                            else ("--state-dir", str(config.state_dir.resolve()))
                        ),
                        links=links,
                        guard=guard,
                    )
                    note_running_policy(config.state_dir, policy)
                    await self.retention.report_standing_suspension()
                    first = await loop.run_in_executor(jexec, first_sweep_in, journal, policy.spec.interval)
                    sweeps = self._retention_loop(policy.spec.interval, first)
                    aux.append(asyncio.create_task(sweeps, name="retention"))
                    if op is not None and page_on:
                        runner = self.retention
                        app = owner_page.build(
                            config,
                            journal=journal,
                            jexec=jexec,
                            policy=lambda: runner.policy,
                            mailer=mailer,
                            on_holds_changed=runner.sync_holds,
                        )
                        sock = owner_page.bind(op.bind)
                        aux.append(asyncio.create_task(owner_page.serve(app, sock), name="owner-page"))
                        log.info("owner page on http://%s (links in the digests: %s/o/...)", op.bind, op.url())
                if events is not None:  # started before the first scan: a root's inotify watch is then in
                    # place when `schedule` returns, so a file made between the scan and the watch is not
                    # missed until the next scan (watchdog adds a started observer's watch at once)
                    await loop.run_in_executor(None, events.start)
                # the frame layouts' libraries, imported on a thread of their own while the first scan
                # and the settle windows run (no I/O thread may import them at once: acqd.memory), when
                # this daemon can store or read frames; one that only copies never imports them
                if reads_frames(roots) or await loop.run_in_executor(jexec, journal.has_frame_copies):
                    import_frame_libraries(pipeline)
                task = asyncio.create_task(pipeline.run(), name="pipeline")
                if self.events is not None:
                    aux.append(asyncio.create_task(self.events.run(), name="mqtt"))
                if self.catalog is not None:
                    aux.append(asyncio.create_task(self.catalog.run(), name="catalog"))
                aux.append(asyncio.create_task(self._sampler(look), name="sampler"))  # the acquisition disks
                aux.append(asyncio.create_task(self._pacer(look, pipeline), name="pacer"))
                if self.notifier.watchdog_seconds:
                    aux.append(asyncio.create_task(self._watchdog(), name="watchdog"))
                log.info("acqd started: %d watch root(s), instrument %s", len(roots), config.instrument)
                self._started = True
                # a reload asked while the daemon started (held from the process' first moments by
                # `acqd.systemd.hold_reloads`, or by `_on_reload`): applied now that every part of it runs
                # (its retention runner too: applied before, it said "a policy was added": a review)
                if reload_asked_early() or self._reload_held:
                    log.info("a reload (SIGHUP) was asked while acqd started: applying it now")
                    loop.call_soon(self._on_reload)
                self.notifier.ready(self._status_line())
                if ready is not None:
                    ready.set()
                await self._drain(task, pipeline)
                try:  # each tier's at once; one that does not answer is left (the journal marks its sessions)
                    await within(pipeline.flush_manifests(), MANIFEST_STOP_SECONDS)
                except TimeoutError:
                    log.warning(
                        "stopping: session manifests not all written within %.0fs (a destination not answering: "
                        "see above); they are written at the next start",
                        MANIFEST_STOP_SECONDS,
                    )
                if self.catalog is not None and not await self.catalog.drain(CATALOG_DRAIN_SECONDS):
                    log.info("catalog: %d record(s) wait in the outbox for the next start", self.catalog.depth)
                if self.events is not None:
                    await self.events.close()
                rows = await loop.run_in_executor(jexec, journal.pending)
                watched = {c.root for c in pipeline.roots}
                elsewhere = sorted({r.root for r in rows if r.root not in watched})
                if self.once and elsewhere:
                    # rows of a root this configuration does not watch (removed, or moved: its files
                    # shipped from the new place are new rows) never ship from here: said, not counted
                    log.warning(
                        "%d file(s) recorded under watch root(s) this configuration does not watch (%s) were "
                        "never shipped from there; not counted as pending here",
                        sum(r.root not in watched for r in rows),
                        ", ".join(elsewhere)[:300],
                    )
                pending = sum(r.root in watched for r in rows) if self.once else len(rows)
                code = pipeline.outcome_code
                if self.once and pending and code == 0:
                    code = 1
                if self.once and pipeline.stats.release_failed and code == 0:
                    # verified and safe, but not removed as asked: the disk the release was to free fills
                    refused = await loop.run_in_executor(jexec, journal.release_failed)
                    if refused:
                        log.error(
                            "%d file(s) verified and not released: the acquisition disk refused to remove them "
                            "(%s; first: %s); kept, tried again at the next run (`acqd status` lists them)",
                            len(refused),
                            refused[-1][1],
                            ", ".join(repr(r.relpath) for r, _ in refused[:5]),
                        )
                        code = 1
                held = pipeline.held_for_writers() if self.once else []
                if held:
                    rows = await loop.run_in_executor(jexec, lambda: [journal.get(rid) for _p, rid in held])
                    kept = [p for (p, _rid), r in zip(held, rows, strict=True) if r.state is State.VERIFIED]
                    if kept:  # shipped as they were when read; a process still writes them: not released
                        log.error(
                            "%d file(s) kept on the acquisition disk: a process still has them open for writing "
                            "(%s); their copies hold what they held when read, and the next run ships them again "
                            "if they change and releases them once closed",
                            len(kept),
                            ", ".join(repr(p) for p in kept[:5]),
                        )
                        if code == 0:
                            code = 1
                if self.once and pipeline.kept_damaged and code == 0:
                    log.error(
                        "%d file(s) gone from the acquisition disk whose only copy does not read back as recorded: "
                        "kept as they are (`acqd status` lists them)",
                        pipeline.kept_damaged,
                    )
                    code = 1
                if self.once and pipeline.journal_failing and code == 0:
                    # the run's last journal writes failed (the state disk full): what it did is not all
                    # recorded (a release made and not written down: `status` says verified, the file gone)
                    log.error(
                        "the journal could not record all of this run's work (%s); the next start finishes it",
                        pipeline.stats.last_error or "journal write failed",
                    )
                    code = 1
                if self.once and (passed := {r: p for r, p in pipeline.passed_over.items() if p}):
                    # by design (a camera's temporaries), but a data file with such a name is never backed
                    # up, and the run says it did its job: named, so that someone can look
                    names = [f"{r.rstrip('/')}/{p}" for r, ps in passed.items() for p in ps]
                    globs = sorted({g for c in pipeline.roots if c.root in passed for g in c.ignore_globs})
                    log.warning(
                        "%s%d file(s) or folder(s) not shipped: their names match the ignore globs (%s: temporary "
                        "names), first: %s; if they are data, rename them (or change the detector profile's "
                        "`ignore:`)",
                        "over " if len(names) >= PASSED_MAX else "",
                        len(names),
                        ", ".join(globs),
                        ", ".join(repr(n) for n in names[:5]),
                    )
                if self.once and self.interrupted is not None:
                    # a finite run cut short: its releases (and any scan or retry after the signal) were
                    # not made, so it must not say it has done its job (a script wipes the disk on 0)
                    unreleased = await loop.run_in_executor(jexec, partial(_unreleased, journal, pipeline.roots))
                    log.error(
                        "stopped by %s before the run ended: %d file(s) pending, %d verified and %d released by "
                        "this run, %d verified file(s) not released yet; what was not shipped or released is done "
                        "by the next run",
                        self.interrupted.name,
                        pending,
                        pipeline.stats.verified,
                        pipeline.stats.released,
                        unreleased,
                    )
                    code = code or 1
                if self.once and pipeline.unreadable and code == 0:
                    # what lies in a folder acqd could not list was never seen, let alone shipped: a
                    # run that says 0 would be trusted before the acquisition disk is wiped
                    log.error(
                        "%d path(s) could not be read (%s): what is in them was not shipped",
                        len(pipeline.unreadable),
                        ", ".join(sorted(rel for _, rel in pipeline.unreadable))[:300],
                    )
                    code = 1
                return RunResult(code, pipeline.stats, pending)
            finally:
                for t in aux:
                    t.cancel()
                for t in aux:
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
                if install_signals:
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                        loop.remove_signal_handler(sig)
                if events is not None:
                    events.stop()
                self.repeats.flush()
                if self.exporter is not None:
                    self.exporter.close()
                self.notifier.close()
                self.stuck_io = leave_executor(io, IO_EXIT_SECONDS)
                leave_executor(look, 1.0)  # a scan of the acquisition disk: finishes, or is left (a hung mount)
                if self.stuck_io:
                    log.error(
                        "%d storage call(s) still blocked %.0f s after the drain (a destination that does not "
                        "answer): stopping without them; nothing is lost, their files ship again at the next start",
                        self.stuck_io,
                        IO_EXIT_SECONDS,
                    )
                with contextlib.suppress(AcqdError, sqlite3.Error):  # a stopped daemon holds no release back,
                    # waits for no writer and has no storage call under way
                    for key in (RELEASE_WAITING, INCOMPLETE_META, STALLED_META):
                        await loop.run_in_executor(jexec, journal.set_meta, key, "")
                await loop.run_in_executor(jexec, journal.close)
                jexec.shutdown(wait=True)

    async def _drain(self, task: asyncio.Task[None], pipeline: Pipeline) -> None:
        """Wait for the pipeline; after a stop request give in-flight files a deadline."""
        stop_wait = asyncio.create_task(pipeline.stopping.wait())
        done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            stop_wait.cancel()
            task.result()
            return
        try:
            await within(asyncio.shield(task), DRAIN_SECONDS)
        except TimeoutError:
            log.warning(
                "drain deadline reached: %d file(s) left in flight for the next start",
                len(pipeline.in_flight),
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_stop(self, sig: signal.Signals) -> None:
        log.info("%s: stopping (finishing files in flight, taking no new ones)", sig.name)
        if self.interrupted is None and (self.pipeline is None or not self.pipeline.stopping.is_set()):
            self.interrupted = sig
        self.stop()

    def stop(self) -> None:
        self.notifier.stopping()
        if self.pipeline is not None:
            self.pipeline.stop()

    def _on_reload(self) -> None:
        """SIGHUP: re-read the configuration's detector profiles and settle/ignore rules; keep the old
        ones if the new ones are bad. Work in flight is not dropped."""
        if not self._started:  # applied once it runs (`_run`)
            self._reload_held = True
            return
        self._reload_held = False
        self.notifier.reloading()
        try:
            self.reload()
            self.metrics.reloads.labels(self.config.instrument, "ok").inc()
        except AcqdError as exc:
            self.metrics.reloads.labels(self.config.instrument, "failed").inc()
            log.error("reload failed, keeping the running configuration: %s", exc)
        except Exception as exc:  # a defect: said, counted, and systemd's reload still ends (READY=1)
            self.metrics.reloads.labels(self.config.instrument, "failed").inc()
            log.error(
                "reload failed (%s: %s), keeping the running configuration: please report this with the log",
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        self.notifier.ready(self._status_line())

    def reload(self) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            return
        new = self._as_running(load_config(self.config_path) if self.config_path is not None else self.config)
        if fixed := [k for k in RESTART_ONLY if getattr(new, k) != getattr(self.config, k)]:
            # read once at the start: a reload that says nothing of them would leave an operator sure
            # that warnings now go to the new mail server (a stranger's first try); the running values
            # stay the configuration's (a later reload compares with them; metrics keep their labels)
            log.warning("reload: %s change only with a restart (`systemctl restart acqd`)", ", ".join(fixed))
            new = new.model_copy(update={k: getattr(self.config, k) for k in fixed})
        applied = {"backoff": None, "concurrent_files": 0, "stalled_after": 0.0}
        if new.limits.model_copy(update=applied) != self.config.limits.model_copy(update=applied):
            log.warning(
                "reload: limits other than backoff, concurrent_files and stalled_after change only with a restart"
            )
        profiles = load_profiles(new)
        policy = load_retention(new)  # a broken policy raises here, before anything is changed
        kept = {ctx.watch.path for ctx in pipeline.roots}
        named = {new.tier_for(w) for w in new.watch if w.path in kept}
        if policy is not None:
            rules = (*policy.spec.rules, policy.spec.default)
            named |= set(policy.spec.tiers) | {p.tier for r in rules if (p := r.placement) and p.tier}
        if missing := sorted(named - set(self._tiers)):
            raise ConfigError(
                f"tier(s) {', '.join(missing)} named by a placement or the policy are not running: a new tier "
                "needs a restart"
            )
        fresh: list[tuple[RootCtx, RootCtx]] = []
        for ctx in pipeline.roots:
            w = next((w for w in new.watch if w.path == ctx.watch.path), None)
            if w is not None:  # the root as the new configuration places it, built before anything is
                # changed (a placement's codec its layout cannot store with fails the reload); its tier
                # and the way it is watched change only with a restart, the limits too
                args = (ctx.index, w, profiles[w.detector], ctx.tier, self._tiers, policy)
                fresh.append((ctx, root_ctx(new, self.config.limits, *args, events=ctx.events)))
        if pipeline.imports is None and reads_frames([f for _, f in fresh]):
            # a root that only copied may now store frames: the frame layouts' libraries imported
            # here, before anything is changed; a broken installation fails the reload and the running
            # configuration stays (no I/O thread imports them: none of the running work uses them)
            try:
                warm_imports()
            except Exception as exc:
                needs = sorted({f.profile.name for _, f in fresh if f.profile.reader != "bytes"})
                raise ConfigError(
                    f"cannot import the frame layouts' libraries ({type(exc).__name__}: {exc}) that detector "
                    f"{', '.join(needs)} needs: reinstall acqd"
                ) from None
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            pipeline.imports = done
        for ctx, f in fresh:
            if new.tier_for(f.watch) != ctx.tier.name:  # its mode, name and prefix: `_as_running`
                log.warning("reload: watch root %s: its tier (%s) changes only with a restart", ctx.root, ctx.tier.name)
            ctx.watch, ctx.profile, ctx.window, ctx.scan_interval = f.watch, f.profile, f.window, f.scan_interval
            ctx.layout, ctx.frames, ctx.release, ctx.stream = f.layout, f.frames, f.release, f.stream
            ctx.placer = f.placer  # None: the policy removed, each root's own placement from now on
        if self.retention is not None:
            if policy is None:
                log.warning(
                    "reload: the policy was removed: each watch root's own placement applies from now on; "
                    "retention keeps the old policy until a restart"
                )
            else:
                self.retention.policy = policy
                note_running_policy(new.state_dir, policy)
        elif policy is not None and not self.once and self.config.retention.owner != "hub":
            log.warning("reload: a policy was added: its placements apply now, its retention sweeps after a restart")
        self._reload_bandwidth(new)
        for tier in self._tiers.values():  # a credentials file fixed or refreshed: read again (a review)
            said = tier.reread_secrets()
            if said is not None:
                log.log(logging.WARNING if "stay in use" in said else logging.INFO, "reload: %s", said)
        self.config = new  # the pacer reads its back-off rule and slot count from here each round
        pipeline.relane()  # files parked for their tier: placed again by the new rules
        pipeline.request_rescan()  # what the new rules take in or release now, not at the next scan
        log.info("reloaded configuration, detector profiles%s", " and retention policy" if policy else "")

    def _as_running(self, new: Config) -> Config:
        """`new` with what changes only with a restart kept as it runs, and said: the watch roots (their
        list and order: a root's index names its metrics and its status) with each one's `name` (its
        metrics label), `prefix` (where its files go: its manifests listed copies under another prefix)
        and watch `mode`; the tiers, but for their bandwidth. A tier taken out and put back by two
        reloads made every later reload fail with a KeyError; a root taken out made the scanner fail at
        each look and its gauge name another root (a stranger's review)."""
        old = self.config
        said: list[str] = []
        if [w.path for w in new.watch] != [w.path for w in old.watch]:
            said.append("the list of watch roots")
        by_path = {w.path: w for w in new.watch}
        watch = []
        for w in old.watch:
            n = by_path.get(w.path)
            if n is None:  # still watched and shipped as it was until the restart
                watch.append(w)
                continue
            kept = {k: getattr(w, k) for k in ("name", "prefix", "mode") if getattr(n, k) != getattr(w, k)}
            if kept:
                said.append(f"watch root {w.path}'s {', '.join(kept)}")
            watch.append(n.model_copy(update=kept))
        tiers = {}
        for name, t in old.tiers.items():
            nt = new.tiers.get(name)
            if nt is None or nt.model_copy(update={"bandwidth": ()}) != t.model_copy(update={"bandwidth": ()}):
                said.append(f"tier {name}")
            tiers[name] = t if nt is None else t.model_copy(update={"bandwidth": nt.bandwidth})
        said += [f"tier {name} (new)" for name in new.tiers if name not in old.tiers]
        if [n for n in new.tiers if n in old.tiers] != [n for n in old.tiers if n in new.tiers]:
            said.append("the order of the tiers (the first is where a watch root's files go by default)")
        if said:
            log.warning("reload: %s change only with a restart; applying the rest", ", ".join(said))
        return new.model_copy(update={"watch": tuple(watch), "tiers": tiers})

    def _reload_bandwidth(self, new: Config) -> None:
        """Each known tier's bandwidth schedule from `new` (a tier given one now gets a pacer)."""
        for name, tc in new.tiers.items():
            tier = self._tiers.get(name)
            if tier is None:
                continue
            if name in self._pacers:
                self._pacers[name].schedule = tc.schedule()  # () = unlimited
            elif tc.bandwidth:
                self._pacers[name] = pacing.TierPacer(tc.schedule())
                tier.pace = self._pacers[name].reserve
            if name in self._pacers and self._pacers[name].schedule != self.config.tiers[name].schedule():
                log.info("reload: tier %s bandwidth schedule now %s", name, list(tc.bandwidth) or "unlimited")

    # -- service plumbing ---------------------------------------------------------------------
    def _status_doc(self) -> dict[str, object]:
        p = self.pipeline
        if p is None:
            return {}
        snap = p.snapshot()
        return {
            "backlog_files": snap.backlog_files,
            "backlog_bytes": snap.backlog_bytes,
            "verified": p.stats.verified,
            "pace": self.pace.mode,
        }

    def _count_error(self, site: str) -> None:
        if site == "journal":  # the state disk full or failing: acqd_errors_total{stage="journal"}
            self.metrics.errors.labels(self.config.instrument, "journal").inc()

    async def _on_root(self, ctx: RootCtx, up: bool) -> None:
        """A watch root appeared or went away: its gauge, its inotify watch, the STATUS line."""
        self.metrics.watch_root_up.labels(self.config.instrument, watch_name(self.config, ctx.index)).set(int(up))
        events = self._events_source
        if events is not None and ctx.events:
            loop = asyncio.get_running_loop()
            fn = partial(events.watch, ctx.index, ctx.root) if up else partial(events.unwatch, ctx.index)
            try:
                await loop.run_in_executor(self._io, fn)
            except OSError as exc:  # e.g. out of inotify watches: the periodic scans still find everything
                log.warning(
                    "cannot watch %s for events (scans every %gs instead): %s", ctx.root, ctx.scan_interval, exc
                )
        self.notifier.status(self._status_line())

    def _status_line(self) -> str:
        p = self.pipeline
        if p is None:
            return "starting"
        s, snap = p.stats, p.snapshot()
        ratio = s.bytes_in / s.bytes_out if s.bytes_out else 0.0
        missing = [f"{c.root} ({c.why or 'missing'})" for c in p.roots if c.up is False]
        waiting = f"waiting for watch root(s) {', '.join(missing)}; " if missing else ""
        c = self.catalog
        cat = "" if c is None else f"; catalog {'up' if c.connected else 'DOWN'}, outbox {c.depth}"
        pace = {"backoff": "; backing off for the camera", "filling": "; acquisition disk filling: full speed"}
        return (
            waiting
            + (
                f"verified {s.verified} files ({human_bytes(s.bytes_in)}, ratio {ratio:.2f}); "
                f"backlog {snap.backlog_files} files ({human_bytes(snap.backlog_bytes)}), "
                f"oldest {snap.oldest_pending_seconds:.0f}s; quarantined {s.quarantined}{cat}"
            )
            + (
                f"; {snap.release_waiting} release(s) waiting, the longest {human_age(snap.release_waiting_seconds)}"
                if snap.release_waiting
                else ""
            )
            + pace.get(self.pace.mode, "")
        )

    async def _pacer(self, io: ThreadPoolExecutor, pipeline: Pipeline) -> None:
        """Acquisition comes first (acqd.pace): every `limits.backoff.interval` read each acquisition
        disk's counters and free space; back off (fewer ship slots) while its writes are slow, ship at
        full speed while it fills up; log, record (for `acqd status`) and export each change. Also
        exports each tier's bandwidth limit and the time its writes waited."""
        loop = asyncio.get_running_loop()
        limits, bo = self.config.limits, self.config.limits.backoff
        roots = [(watch_name(self.config, i), str(w.path)) for i, w in enumerate(self.config.watch)]
        override = str(bo.stat_file) if bo.stat_file is not None else None
        found = await loop.run_in_executor(io, pacing.disks, roots, override)

        def read() -> list[tuple[DiskStat | None, float | None]]:
            now = time.monotonic()
            out: list[tuple[DiskStat | None, float | None]] = []
            for d in found:
                if d.stat is None:  # a root not there yet (or not on one block device)
                    d.stat = pacing.stat_file(d.root)
                out.append((pacing.read_stat(d.stat, now) if d.stat else None, pacing.free_fraction(d.root)))
            return out

        if bo.enabled and not any(d.stat for d in found):
            log.warning(
                "no block device counters for the watch roots (%s): acqd cannot back off for the camera; "
                "set limits.backoff.stat_file",
                override or "not on one block device",
            )
        await self._record_pace(pipeline, limits.concurrent_files)
        while not pipeline.stopping.is_set():
            try:
                limits, bo = self.config.limits, self.config.limits.backoff  # a SIGHUP may change them
                rule = bo.rule()
                if (str(bo.stat_file) if bo.stat_file is not None else None) != override:
                    override = str(bo.stat_file) if bo.stat_file is not None else None
                    found = await loop.run_in_executor(io, pacing.disks, roots, override)
                readings = await loop.run_in_executor(io, read)
                paces, loads = [], {}
                for d, (cur, free) in zip(found, readings, strict=True):
                    load = load_between(d.last, cur) if d.last is not None and cur is not None else None
                    d.last = cur
                    if load is not None:
                        loads[d.name] = (load.write_latency, load.busy)
                    p = next_pace(d.mode, load, free, rule)
                    d.mode = p.mode
                    paces.append(Pace(p.mode, f"watch {d.name}: {p.why}" if p.why else ""))
                pace = combine(paces) if bo.enabled else Pace("normal", "")
                slots = ship_slots(pace.mode, limits.concurrent_files, rule)
                if (pace.mode != self.pace.mode or slots != pipeline.slots.limit) and not pipeline.stopping.is_set():
                    self._log_pace(self.pace, pace, slots)
                    self.pace = pace
                    await pipeline.slots.set_limit(slots)
                    await self._record_pace(pipeline, slots)
                    self.notifier.status(self._status_line())
                else:
                    self.pace = pace  # the same mode; its reason may have changed
                self.metrics.pace(self.pace.mode, pipeline.slots.limit, pipeline.slots.waiting, loads)
                for name, tp in self._pacers.items():
                    self.metrics.tier_pace(name, tp.limit(), tp.waited)
            except Exception as exc:  # never let a bad reading stop the daemon: the pace stays as it was
                self.repeats.error("pacer", str(exc), "pacer: %s", exc)
            await asyncio.sleep(bo.interval)

    def _log_pace(self, old: Pace, new: Pace, slots: int) -> None:
        if new.mode == old.mode:
            log.info("shipping at most %d file(s) at once (reloaded limits)", slots)
        elif new.mode == "backoff":
            log.info("backing off for the camera (%s): shipping at most %d file(s) at once", new.why, slots)
        elif new.mode == "filling":
            log.warning("acquisition disk nearly full (%s); back-off overridden", new.why)
        elif old.mode == "backoff":
            log.info("back-off over: the acquisition disk's writes are fast again; shipping %d file(s) at once", slots)
        else:
            log.info("acquisition disk no longer nearly full; shipping %d file(s) at once", slots)

    async def _record_pace(self, pipeline: Pipeline, slots: int) -> None:
        """The pace in the journal's meta table, for `acqd status`."""
        doc = json.dumps({"mode": self.pace.mode, "why": self.pace.why, "since": time.time(), "slots": slots})
        try:
            await pipeline._j(pipeline.journal.set_meta, "pace", doc)
        except AcqdError as exc:
            self.repeats.error("journal", str(exc), "could not record the pace: %s", exc)

    async def _sampler(self, io: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        roots = [(watch_name(self.config, i), str(w.path)) for i, w in enumerate(self.config.watch)]

        def disks() -> dict[str, tuple[int, int]]:
            out = {}
            for name, path in roots:
                try:
                    st = os.statvfs(path)
                except OSError:
                    continue
                out[name] = (st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
            return out

        tick = 0
        incomplete: dict[str, int] | None = None  # the files not complete yet, by why, as last recorded
        waits: dict[str, int] | None = None  # the releases waiting, by why, as this run last recorded them
        # (None: not yet; a crash's leftover in the journal is overwritten at the first sample)
        while True:
            p = self.pipeline
            if p is not None:
                self.metrics.sample(p.snapshot(), await loop.run_in_executor(io, disks))
                if tick % 5 == 0 and (now := p.release_reasons()) != waits:  # for `acqd status`
                    try:
                        await p._j(p.journal.set_meta, RELEASE_WAITING, json.dumps(now) if now else "")
                        waits = now
                    except AcqdError as exc:
                        log.debug("releases waiting not recorded: %s", exc)
                if tick % 5 == 0 and (now := p.incomplete_reasons()) != incomplete:  # for `acqd status` too
                    try:
                        await p._j(p.journal.set_meta, INCOMPLETE_META, json.dumps(now) if now else "")
                        incomplete = now
                    except AcqdError as exc:
                        log.debug("files not complete yet not recorded: %s", exc)
                if tick % 10 == 0:
                    self.notifier.status(self._status_line())
                if tick % 2 == 0:  # also noticed while idle, not only before the next commit
                    why = await loop.run_in_executor(io, p.journal.still_mine)
                    if why is not None:
                        p.halt(f"{why}; restart acqd (it refuses the destination until `acqd adopt`)", "journal")
                if tick % QUARANTINE_COUNT_EVERY == 0:
                    # counted in the journal: quarantines `acqd verify` (another process) records too
                    try:
                        self.metrics.quarantined(await loop.run_in_executor(p.jexec, p.journal.quarantined_count))
                    except (sqlite3.Error, AcqdError) as exc:
                        log.debug("quarantined files not counted: %s", exc)
            if tick % 60 == 59:
                self.repeats.flush()  # errors still repeating: one line a minute with their count
            tick += 1
            await asyncio.sleep(1.0)

    async def _listen_later(self, bind: str) -> None:
        """The metrics endpoint, tried again until its port is free (another program held it at start)."""
        while self.exporter is None:
            await asyncio.sleep(LISTEN_RETRY_SECONDS)
            with contextlib.suppress(OSError):
                self.exporter = Exporter(self.registry, bind)
                log.info("metrics on http://%s/metrics (its port is free now)", bind)

    async def _retention_loop(self, interval: float, first: float) -> None:
        """A sweep `first` seconds after the start (`first_sweep_in`), then one every `interval`."""
        wait = first
        while True:
            await asyncio.sleep(wait)
            wait = interval
            imports = self.pipeline.imports if self.pipeline is not None else None
            if imports is not None:  # a move reads copies through their layouts on the I/O threads
                try:
                    await asyncio.shield(imports)
                except Exception:  # a broken installation: the daemon stops (`_imported`)
                    return
            if self.retention is not None:
                try:
                    await self.retention.sweep()
                except AcqdError as exc:
                    log.error("retention sweep failed (retried at the next one): %s", exc)
                    self.metrics.retention_failures.labels(self.config.instrument, "sweep").inc()
                except Exception as exc:  # never the end of retention for the daemon's life (a silent stop)
                    log.error(
                        "retention sweep failed unexpectedly (retried at the next one): %s: %s",
                        type(exc).__name__,
                        exc,
                        exc_info=True,
                    )
                    self.metrics.retention_failures.labels(self.config.instrument, "sweep").inc()

    async def _watchdog(self) -> None:
        """WATCHDOG=1 from the event loop itself: a stuck loop stops the pings and systemd restarts us."""
        assert self.notifier.watchdog_seconds is not None
        interval = max(0.05, self.notifier.watchdog_seconds / 2)
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)


#: how often the daemon looks for storage calls under way for `limits.stalled_after` (`_stall_watch`)
STALL_CHECK = 5.0

#: the least time from a start to its first retention sweep: the first scan and the frame libraries first
FIRST_SWEEP_AFTER = 30.0


def first_sweep_in(journal: Journal, interval: float) -> float:
    """Blocking: seconds from the start to the first retention sweep: one interval after the journal's
    last sweep (at least FIRST_SWEEP_AFTER from now; at most one interval). It was a whole interval
    after every start: a daemon restarted more often than its interval (an hour by default) never
    swept, and `acqd status` said nothing of retention meanwhile (a stranger's walk through the
    README)."""
    last = last_sweep_result(journal)
    at = last.get("now") if last is not None else None
    due = float(at) + interval - time.time() if isinstance(at, int | float) else 0.0
    return min(interval, max(FIRST_SWEEP_AFTER, due))


def leave_executor(ex: ThreadPoolExecutor, seconds: float) -> int:
    """Shut `ex` down (queued calls cancelled) and wait for its threads at most `seconds`. Returns
    how many are still running: a storage call blocked on a server that stopped answering (an S3
    endpoint frozen mid-upload) must not keep a stopping daemon alive until systemd kills it."""
    ex.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + seconds
    threads = list(getattr(ex, "_threads", ()))
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return sum(1 for t in threads if t.is_alive())


def adopt_into(config: Config, tiers: dict[str, Tier], claim: claims.Claim, journal: Journal) -> dict[str, int]:
    """`acqd adopt` (and `run --adopt`): import what the manifests under the instrument's prefix
    record, then claim it."""
    # a tier this journal has copies on, recorded at another place than the one given now (a mistyped
    # --dest): adopting there would record the copies where they are not
    was = recorded_tiers(journal)
    moved = {
        n: was[n][0]
        for n, t in config.tiers.items()
        if n in was and was[n][0] != without_password(t.url) and journal.has_copies(n)
    }

    def stat(path: str) -> os.stat_result | None:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return st if stat_mod.S_ISREG(st.st_mode) else None

    roots = {str(w.path).rstrip("/"): str(w.path).rstrip("/") for w in config.watch}
    return claims.adopt(tiers, claim, journal, roots, stat, moved)


def adopt_command(config: Config) -> dict[str, int]:
    """`acqd adopt` outside the daemon: the state lock held, the journal opened, manifests imported."""
    tiers = build_tiers(config)
    with state_lock(config.state_dir):
        journal = Journal(journal_path(config.state_dir))
        try:
            claim = claims.ours(config.instrument, journal, config.state_dir)
            counts = adopt_into(config, tiers, claim, journal)
            # where the tiers are, as `run` records it: `restore` and `verify` find the adopted copies
            record_tiers(journal, {n: (t.url, dict(t.options)) for n, t in config.tiers.items()})
            return counts
        finally:
            journal.close()


def claim_problems(config: Config, tiers: dict[str, Tier]) -> tuple[list[str], dict[str, str]]:
    """`acqd check`: would `run` be refused by a claim on the destination (the problems), or wait for
    a tier that holds nothing of the instrument although the journal has copies there, or whose folder
    is below a mount point of fstab with nothing mounted (an empty mount point: the waits)? Read-only."""
    path = journal_path(config.state_dir)
    journal_id = None
    epoch = 0
    pending: ClaimError | None = None
    runs: frozenset[str] = frozenset()
    known: dict[str, bool] = {}
    if path.exists():
        try:
            j = Journal(path, readonly=True)
        except AcqdError:
            j = None
        if j is not None:
            journal_id = j.journal_id
            epoch = j.epoch()
            pending = claims.unfinished_adopt(j)
            runs = j.runs()
            known = {n: j.has_copies(n) for n in tiers}
            j.close()
    problems: list[str] = [str(pending)] if pending is not None else []
    waits: dict[str, str] = {}  # tier name -> why `run` waits for it
    mid = claims.machine_id()
    for name, tier in tiers.items():
        if tier.local and (point := unmounted_mount_point(tier.root)) is not None:
            waits[name] = f"tier {name}: {describe_unmounted(point)}"
            continue
        try:
            there = claims.read_claim(tier, config.instrument)
        except ClaimError as exc:
            problems.append(f"tier {name}: {exc}")
            continue
        except AcqdError:  # the tier cannot be looked at now: `run` claims it before its first write
            continue
        fake = claims.Claim(
            config.instrument, mid, "", journal_id or "(new)", str(config.state_dir), "", epoch=epoch + 1, run="check"
        )
        if there is None:
            if not known.get(name) and (why := claims.unmade_parent(tier)) is not None:
                problems.append(why)  # `run` refuses to build such a path (claims.look)
            elif known.get(name) and (not tier.local or os.path.lexists(tier.root)):
                try:  # what `run` does with it: waits (an empty mount point), or refuses (data it does not know,
                    claims.look(tier, fake, True, runs)  # the instrument renamed)
                except ClaimError as exc:
                    problems.append(str(exc))
                except AcqdError as exc:
                    waits[name] = str(exc)
            continue
        if not there.same_owner(fake) or there.foreign_run(fake, runs):
            problems.append(str(claims.refused(tier, fake, there)))
    return problems, waits
