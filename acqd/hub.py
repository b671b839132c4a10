"""`acqd hub`: the facility service. One retention for every instrument: the policy's planner and
the retention runner's guards (acqd.retention) over the facility catalog (acqd.facility), on the
hub's own view of central storage; one replica acts at a time (a lease in the catalog, renewed;
every write fenced by it). The composition root of the hub: builds every part from hub.yaml.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from acqd.aio import wait_set
from acqd.config import HubConfig, optional_credential
from acqd.errors import AcqdError, CatalogError, ConfigError, FenceError, PermanentError
from acqd.facility import CatalogStore, HoldTargetError, hold_in_catalog
from acqd.hubdb import HUB_SCHEMA, HubDb
from acqd.memory import warm_imports
from acqd.metrics import Exporter, HubMetrics
from acqd.notify import Digests, MailboxMailer, Mailer, SmtpMailer
from acqd.overview.gauges import FacilityCollector, register_facility_collector
from acqd.overview.settings import FacilityView
from acqd.overview.views import Source
from acqd.policy.clock import ClockState, Reading
from acqd.policy.model import Policy, load_policy, policy_file
from acqd.policy.planner import Action
from acqd.retention import RetentionRunner, SweepResult, plan_from_journal, project_clock, read_clock, simulated
from acqd.storage import Tier, open_tier
from acqd.systemd import Notifier
from acqd.values import Outcome

log = logging.getLogger("acqd.hub")
T = TypeVar("T")

__all__ = ["HoldTargetError", "Hub", "ack_clock", "hold", "open_db", "plan"]


credential = optional_credential  # a secret file; relative paths resolve in $CREDENTIALS_DIRECTORY


def load_hub_policy(config: HubConfig) -> Policy:
    """hub.yaml's `policy:`, a file or the name of one (as acqd.yaml's)."""
    path = policy_file(config.policy)
    policy = load_policy(path)
    missing = [t for t in policy.spec.tiers if t not in config.tiers]
    if missing:
        raise ConfigError(f"policy {config.policy}: tier(s) {', '.join(missing)} not in hub.yaml's tiers")
    return policy


def build_tiers(config: HubConfig) -> dict[str, Tier]:
    out = {}
    for name, t in config.tiers.items():
        try:
            out[name] = open_tier(name, t.url, t.options)
        except PermanentError as exc:
            raise ConfigError(f"tiers.{name}.url: {exc}") from None
    return out


def build_mailer(config: HubConfig) -> Mailer:
    s = config.smtp
    if s is None:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        return MailboxMailer(config.state_dir / "mailbox")
    return SmtpMailer(s.host, s.port, s.starttls, s.username, credential(s.password_file, "smtp.password_file"))


def holder_id() -> str:
    """This replica's name in the lease: host, process, and a nonce (a restarted process is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def open_db(config: HubConfig, holder: str | None = None) -> HubDb:
    c = config.catalog
    return HubDb(
        c.url,
        credential(c.password_file, "catalog.password_file"),
        name=config.lease.name,
        holder=holder or holder_id(),
        ttl=config.lease.ttl,
        connect_timeout=c.connect_timeout,
    )


def require_schema(db: HubDb) -> None:
    have = db.schema_version()
    if have < HUB_SCHEMA:
        raise CatalogError(
            f"the catalog's schema is at version {have}, the hub needs {HUB_SCHEMA}: run `acqd catalog migrate`"
        )


def hold(config: HubConfig, target: str, until: float, reason: str, instrument: str | None, by: str) -> tuple[str, int]:
    """`acqd hold --hub hub.yaml`: a hold in the catalog. Returns (what it covers, its id)."""
    db = open_db(config)
    try:
        require_schema(db)
        res = hold_in_catalog(db, target, until, reason, time.time(), instrument, by)
    finally:
        db.close()
    return res.describe(), res.files


def ack_clock(config: HubConfig, reason: str, who: str) -> str:
    """`acqd hub ack-clock`: an operator vouches for the wall clock; the hub's next sweep applies it.
    Returns the suspension it acknowledges; AcqdError if there is none."""
    policy = load_hub_policy(config)
    db = open_db(config)
    try:
        require_schema(db)
        store = CatalogStore(db, {n: t.url for n, t in config.tiers.items()})
        reading = read_clock()
        doc = store.clock_state()
        kept = ClockState.from_json(doc) if doc is not None else None
        projected = project_clock(store, policy, reading).after
        suspension = (kept.suspension if kept is not None else None) or projected.suspension
        if suspension is None:
            raise AcqdError(
                "nothing to acknowledge: the wall clock agrees with the hub's trusted clock "
                f"(skew {projected.skew:+.0f}s)"
            )
        db.add_clock_ack(reading.wall, reading.boot_id, reading.boottime, reason, who)
    finally:
        db.close()
    log.warning("hub: clock acknowledged by %s: %s", who, reason)
    return suspension.reason


def plan(config: HubConfig, now: float | None) -> tuple[list[Action], float, str]:
    """`acqd hub plan`: what the next sweep would do at `now` (None: the clock, through the clock
    guard's state in the catalog), read only. Returns the actions, the time judged by, a suspension."""
    policy = load_hub_policy(config)
    db = open_db(config)
    try:
        require_schema(db)
        store = CatalogStore(db, {n: t.url for n, t in config.tiers.items()}, preview=True)
        view = project_clock(store, policy, read_clock() if now is None else simulated(now))
        actions, _ = plan_from_journal(store, policy, 0.0, view.after)
    finally:
        db.close()
    s = view.after.suspension
    return actions, view.after.effective, s.reason if s is not None else ""


class _Log:
    """The runner's outcomes: to the log (the hub has no MQTT of its own)."""

    def outcome(self, o: Outcome) -> None:
        log.debug("%s %s %s", o.kind, o.relpath, o.reason or "")


class Hub:
    def __init__(
        self,
        config: HubConfig,
        *,
        config_path: Path | None = None,
        once: bool = False,
        now: float | None = None,
        registry: CollectorRegistry | None = None,
        holder: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.once = once
        self.now = now  # a simulated clock (tests, `--now`): a clock that is right at that time
        self.registry = registry or CollectorRegistry()
        self.metrics = HubMetrics(self.registry, config.lease.name)
        self.holder = holder or holder_id()
        self.held = False
        self._standby_said = False
        self.last: SweepResult | None = None
        self._stop = asyncio.Event()
        self.notifier = Notifier()

    def _clock(self) -> Callable[[], Reading]:
        t = self.now
        return read_clock if t is None else (lambda: simulated(t))

    async def run(self, install_signals: bool = True) -> int:
        """Sweep every interval while this replica holds the lease. With `once`: one attempt; exit 0
        if this replica swept or another replica holds the lease (said on stderr), 1 if the sweep failed."""
        cfg = self.config
        warm_imports()  # a move reads and writes copies through their layouts on 4 I/O threads
        policy = load_hub_policy(cfg)
        tiers = build_tiers(cfg)
        mailer = build_mailer(cfg)
        lease_db = open_db(cfg, self.holder)
        store_db = open_db(cfg, self.holder)
        leasex = ThreadPoolExecutor(1, thread_name_prefix="acqd-hub-lease")
        dbx = ThreadPoolExecutor(1, thread_name_prefix="acqd-hub-catalog")
        io = ThreadPoolExecutor(4, thread_name_prefix="acqd-hub-io")
        loop = asyncio.get_running_loop()
        exporter: Exporter | None = None
        facility: FacilityCollector | None = None
        rc = 0

        async def on(ex: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
            return await loop.run_in_executor(ex, fn, *args)

        try:
            await on(dbx, require_schema, store_db)
            if cfg.metrics.enabled:
                try:
                    exporter = Exporter(self.registry, cfg.metrics.bind)
                except OSError as exc:
                    raise ConfigError(f"metrics.bind: cannot listen on {cfg.metrics.bind}: {exc.strerror}") from None
                facility = self._facility_gauges()
            store = CatalogStore(store_db, {name: t.url for name, t in cfg.tiers.items()})
            runner = RetentionRunner(
                policy=policy,
                store=store,
                jexec=dbx,
                io=io,
                tiers=tiers,
                mailer=mailer,
                digests=Digests(),
                reporter=_Log(),
                instrument=cfg.facility,
                sender=cfg.smtp.sender if cfg.smtp else "acqd-hub@localhost",
                contact=cfg.smtp.contact if cfg.smtp else "the facility staff",
                hold_args=("--hub", str(self.config_path.resolve())) if self.config_path else (),
                clock=self._clock(),
                markers=True,
            )
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._stop.set)
            interval = cfg.interval if cfg.interval is not None else policy.spec.interval
            log.info(
                "acqd hub started: %s, lease %r as %s, tiers %s, sweep every %gs",
                cfg.catalog.url,
                cfg.lease.name,
                self.holder,
                ", ".join(cfg.tiers),
                interval,
            )
            if self.once:
                await self._take(lease_db, store_db, leasex)
                if self.held:
                    # renewed while it sweeps, as the service does: a sweep longer than ttl/2
                    # (thousands of deletes) would otherwise stop at the fence half-way
                    renew = asyncio.create_task(self._keep(lease_db, store_db, leasex), name="hub-lease")
                    try:
                        rc = await self._sweep(runner, store)
                    finally:
                        renew.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await renew
                else:
                    who = await on(leasex, lease_db.lease)
                    log.warning(
                        "another hub replica holds the lease (%s); this one did nothing", who[0] if who else "?"
                    )
                return rc
            self.notifier.ready("waiting for the lease")
            renew = asyncio.create_task(self._keep(lease_db, store_db, leasex), name="hub-lease")
            try:
                while not self._stop.is_set():
                    if self.held:
                        await self._sweep(runner, store)
                        self.notifier.status(self._status())
                    await wait_set(self._stop, interval)
            finally:
                renew.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renew
            return 0
        finally:
            self.notifier.stopping()
            for ex in (io, dbx):
                ex.shutdown(wait=True)  # nothing acts any more ...
            if self.held:  # ... before another replica may take over at once
                with contextlib.suppress(AcqdError):
                    await on(leasex, lease_db.release)
                log.info("hub: lease %r given up", cfg.lease.name)
            self.metrics.lease.labels(cfg.lease.name).set(0)
            await on(leasex, lease_db.close)
            leasex.shutdown(wait=True)
            store_db.close()
            if facility is not None:
                facility.stop()
            if exporter is not None:
                exporter.close()

    def _facility_gauges(self) -> FacilityCollector:
        """Usage and fleet health on the hub's metrics port (acqd.overview): fleet figures queried at
        each scrape, usage recomputed every `usage.refresh` in a thread of its own."""
        cfg = self.config
        view = FacilityView(
            catalog=cfg.catalog, policy=cfg.policy, groups=cfg.groups, mqtt=cfg.mqtt, usage=cfg.usage, fleet=cfg.fleet
        )
        collector = register_facility_collector(self.registry, Source.of(view))
        collector.start(cfg.usage.refresh)
        return collector

    def _status(self) -> str:
        r = self.last
        if r is None:
            return "holding the lease" if self.held else "standby (another replica holds the lease)"
        return f"last sweep: {r.warned} warned, {r.transitioned} moved, {r.purged} purged, {r.blocked} blocked"

    async def _take(self, lease_db: HubDb, store_db: HubDb, leasex: ThreadPoolExecutor) -> None:
        """Take or renew the lease; the store's writes carry its fencing token."""
        loop = asyncio.get_running_loop()
        was = self.held
        try:
            self.held = await loop.run_in_executor(leasex, lease_db.acquire)
        except CatalogError as exc:
            self.held = False
            log.warning("hub: the catalog is unreachable (%s); no sweep until it is back", exc)
        store_db.token = lease_db.token
        self.metrics.lease.labels(self.config.lease.name).set(1 if self.held else 0)
        if self.held and not was:
            log.info(
                "hub: lease %r taken (fencing token %s); this replica acts", self.config.lease.name, lease_db.token
            )
        elif was and not self.held:
            log.error("hub: lease %r lost; this replica stops acting", self.config.lease.name)
        elif not self.held and not self._standby_said and not self.once:
            who = None
            with contextlib.suppress(CatalogError):
                who = await loop.run_in_executor(leasex, lease_db.lease)
            log.info("hub: standby; the lease %r is held by %s", self.config.lease.name, who[0] if who else "nobody")
            self._standby_said = True

    async def _keep(self, lease_db: HubDb, store_db: HubDb, leasex: ThreadPoolExecutor) -> None:
        while True:
            await self._take(lease_db, store_db, leasex)
            # every ttl/6: a fenced step needs ttl/2 left, so a renewal may come ttl/3 late (a busy
            # machine, a catalog slow to answer) before a sweep stops at the fence
            await asyncio.sleep(self.config.lease.ttl / 6)

    async def _sweep(self, runner: RetentionRunner, store: CatalogStore) -> int:
        m, name = self.metrics, self.config.lease.name
        t0 = time.monotonic()
        try:
            res = await runner.sweep()
        except FenceError as exc:
            log.error("hub: %s; sweep stopped", exc)
            m.sweeps.labels(name, "stopped").inc()
            return 1
        except AcqdError as exc:
            log.error("hub: retention sweep failed (retried at the next one): %s", exc)
            m.sweeps.labels(name, "failed").inc()
            return 1
        except Exception as exc:  # never the end of the hub's sweeps while it runs (a silent stop)
            log.error(
                "hub: retention sweep failed unexpectedly (retried at the next one): %s: %s",
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            m.sweeps.labels(name, "failed").inc()
            return 1
        finally:
            m.sweep_seconds.labels(name).observe(time.monotonic() - t0)
        self.last = res
        m.purges.labels(name).inc(res.purged)
        m.purged_bytes.labels(name).inc(res.purged_bytes)
        m.transitions.labels(name).inc(res.transitioned)
        m.warnings.labels(name).inc(res.digests)
        m.failed.labels(name).inc(res.failed)
        m.blocked.labels(name).set(res.blocked)
        m.items.labels(name).set(store.count)
        m.foreign.labels(name).set(store.foreign)
        if store.foreign:
            log.info("hub: %d verified catalogued copies are on tiers or URLs the hub does not manage", store.foreign)
        if res.suspended:
            m.sweeps.labels(name, "stopped").inc()
            return 1
        m.sweeps.labels(name, "done").inc()
        m.last_sweep.labels(name).set(time.time())
        return 0
