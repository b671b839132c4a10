"""Every Prometheus instrument acqd exports, in one place. One registry, passed in; no globals.

Names: prefix `acqd_`, base units (bytes, seconds), `_total` for counters. Labels stay
low-cardinality: instrument, detector, tier, stage, outcome, watch (a configured name); never a path
or a user.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from acqd import __version__
from acqd.errors import ConfigError
from acqd.values import Outcome, Snapshot

# complete -> verified, and per stage: from a 1 MB file on a fast disk to a multi-GB movie on a slow link
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
OUTCOMES = (
    "seen",
    "complete",
    "verified",
    "released",
    "quarantined",
    "vanished",
    "conflict",
    "held",
    "release_failed",
    "copy_lost",
    "profile-mismatch",
    "streamed",
    "stream_fallback",
)
STAGES = ("read", "encode", "write", "verify")
ERROR_STAGES = ("read", "write", "verify", "internal", "conflict", "placement")
SCAN_ERRORS = ("name_too_long", "io_error", "not_connected", "permission", "other", "left_aside", "tier_inside")


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        instrument: str,
        detectors: Iterable[str] = (),
        tiers: Iterable[str] = (),
        watches: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self.instrument = instrument
        self._codec_seen: dict[tuple[str, str, str], Any] = {}
        self._children: dict[tuple[Any, ...], Any] = {}  # (metric, *labels) -> its series
        r, i = registry, ("instrument",)
        self.files = Counter("acqd_files", "Files reaching each outcome", (*i, "detector", "outcome"), registry=r)
        self.file_bytes = Counter(
            "acqd_file_bytes",
            "Source bytes of the files reaching each outcome",
            (*i, "detector", "outcome"),
            registry=r,
        )
        self.read_bytes = Counter(
            "acqd_read_bytes", "Source bytes read and shipped (verified)", (*i, "detector"), registry=r
        )
        self.written_bytes = Counter(
            "acqd_written_bytes", "Bytes stored on a tier (verified copies)", (*i, "tier"), registry=r
        )
        self.ship_seconds = Histogram(
            "acqd_ship_seconds",
            "Time from complete to verified, per file",
            (*i, "detector"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "acqd_stage_seconds", "Time per stage per file", (*i, "stage"), buckets=LATENCY_BUCKETS, registry=r
        )
        self.retries = Counter("acqd_retries", "Files retried, by the stage that failed", (*i, "stage"), registry=r)
        self.errors = Counter("acqd_errors", "Errors, by stage", (*i, "stage"), registry=r)
        self.halted = Gauge(
            "acqd_halted",
            "1 when the daemon stopped shipping to stay safe (reason: claim = the destination is claimed by"
            " another daemon or journal, journal = its journal was deleted or replaced, or is older than the"
            " destination)",
            (*i, "reason"),
            registry=r,
        )
        self.started = Gauge(
            "acqd_start_time_seconds",
            "When this acqd process started (Unix time): a value that keeps changing is a daemon restarting",
            i,
            registry=r,
        )
        self.started.labels(instrument).set(time.time())
        self.backlog_files = Gauge("acqd_backlog_files", "Files found and not yet verified", i, registry=r)
        self.stalled_calls = Gauge(
            "acqd_storage_stalled_calls",
            "Storage calls under way for more than 2 minutes (a slow or stalled server), by tier",
            (*i, "tier"),
            registry=r,
        )
        # not set to 0 at start: the first count of the journal is its first value, so a restart with
        # files still quarantined is no rise (AcqdQuarantines alerts on a rise)
        self.quarantined_files = Gauge(
            "acqd_quarantined_files",
            "Files quarantined now, as the journal counts them (also those `acqd verify` quarantined)",
            i,
            registry=r,
        )
        self.backlog_bytes = Gauge("acqd_backlog_bytes", "Bytes of files found and not yet verified", i, registry=r)
        self.backlog_ready = Gauge(
            "acqd_backlog_ready_files",
            "Files complete and not yet verified (being shipped or waiting for a retry; not those still written)",
            i,
            registry=r,
        )
        self.oldest_pending = Gauge(
            "acqd_oldest_pending_age_seconds", "Age of the oldest file not yet verified (0 if none)", i, registry=r
        )
        self.release_waiting = Gauge(
            "acqd_release_waiting_files",
            "Verified files whose source is to be removed and is not yet (waiting for the session manifest's"
            " write, a writer to close, or a re-check of the copy)",
            i,
            registry=r,
        )
        self.release_waiting_age = Gauge(
            "acqd_release_waiting_age_seconds", "How long the longest-waiting release has waited", i, registry=r
        )
        self.inflight_bytes = Gauge("acqd_inflight_bytes", "File data held in memory now", i, registry=r)
        self.inflight_limit = Gauge("acqd_inflight_limit_bytes", "Configured cap on file data in memory", i, registry=r)
        self.watch_free = Gauge(
            "acqd_watch_free_bytes", "Free bytes on the filesystem of a watch root", (*i, "watch"), registry=r
        )
        self.watch_root_up = Gauge(
            "acqd_watch_root_up",
            "1 while the watch root is there, 0 while it is missing (a late mount)",
            (*i, "watch"),
            registry=r,
        )
        self.scan_errors = Counter(
            "acqd_scan_errors",
            "Paths under a watch root that could not be listed or looked at (each counted once), by error",
            (*i, "reason"),
            registry=r,
        )
        self.watch_size = Gauge(
            "acqd_watch_size_bytes", "Size of the filesystem of a watch root", (*i, "watch"), registry=r
        )
        self.mqtt_published = Counter(
            "acqd_mqtt_events_published", "MQTT events delivered to the broker", i, registry=r
        )
        self.mqtt_dropped = Counter(
            "acqd_mqtt_events_dropped", "MQTT events dropped because the outbox was full", i, registry=r
        )
        self.mqtt_connected = Gauge("acqd_mqtt_connected", "1 while connected to the MQTT broker", i, registry=r)
        # the facility catalog (only with `catalog:` in acqd.yaml; registered on first use)
        self._catalog: dict[str, Any] = {}
        self.reloads = Counter("acqd_reloads", "Configuration reloads (SIGHUP), by result", (*i, "result"), registry=r)
        self.retention = Counter("acqd_retention_actions", "Retention actions carried out", (*i, "action"), registry=r)
        self.retention_bytes = Counter("acqd_retention_purged_bytes", "Bytes purged by retention", i, registry=r)
        self.retention_failures = Counter(
            "acqd_retention_failures",
            "Retention actions that failed, per file (action: warn = its warning was not delivered, so its"
            " purge waits; transition; purge), and whole sweeps that failed (action: sweep); each is retried at"
            " the next sweep",
            (*i, "action"),
            registry=r,
        )
        self.clock_suspended = Gauge(
            "acqd_retention_clock_suspended",
            "1 while the retention clock guard judges purges by the trusted clock (a wall-clock jump)",
            i,
            registry=r,
        )
        self.codec_choice = Gauge(
            "acqd_codec_choice",
            "1 for the codec a detector's latest session chose from measurement ('copy': byte-exact)",
            (*i, "detector", "codec"),
            registry=r,
        )
        self.codec_ratio = Gauge(
            "acqd_codec_ratio",
            "Ratio of the chosen codec on the sample frames it was chosen on",
            (*i, "detector"),
            registry=r,
        )
        self.codec_choices = Counter(
            "acqd_codec_choices",
            "Codec choices made, by cause (start: a session began; character: dtype/shape changed; drift)",
            (*i, "detector", "cause"),
            registry=r,
        )
        self.backoff = Gauge(
            "acqd_backoff",
            "1 while acqd backs off for the camera (the acquisition disk's writes are slow)",
            i,
            registry=r,
        )
        self.free_space_override = Gauge(
            "acqd_free_space_override",
            "1 while the acquisition disk is nearly full and acqd ships at full speed whatever its latency",
            i,
            registry=r,
        )
        self.ship_slots = Gauge("acqd_ship_slots", "Files acqd may ship at once now", i, registry=r)
        self.ship_waiting = Gauge(
            "acqd_ship_waiting", "Files ready to ship and held back while acqd backs off", i, registry=r
        )
        self.disk_write_latency = Gauge(
            "acqd_acquisition_disk_write_latency_seconds",
            "Mean write latency of a watch root's block device over the last reading interval",
            (*i, "watch"),
            registry=r,
        )
        self.disk_busy = Gauge(
            "acqd_acquisition_disk_busy_ratio",
            "Fraction of the last reading interval a watch root's block device had I/O in flight",
            (*i, "watch"),
            registry=r,
        )
        self.tier_limit = Gauge(
            "acqd_tier_bandwidth_limit_bytes",
            "Bytes per second the tier's bandwidth schedule allows now (0: unlimited)",
            (*i, "tier"),
            registry=r,
        )
        self.tier_paced = Counter(
            "acqd_tier_paced_seconds",
            "Seconds writes to the tier waited for its bandwidth schedule",
            (*i, "tier"),
            registry=r,
        )
        self._paced_seen: dict[str, float] = {}
        self.build = Info("acqd_build", "acqd version", (*i,), registry=r)
        self.build.labels(instrument).info({"version": __version__, "python": platform.python_version()})
        # every series that alerts compare against exists from the start (at 0)
        for d in detectors:
            for o in OUTCOMES:
                self.files.labels(instrument, d, o)
                self.file_bytes.labels(instrument, d, o)
            self.read_bytes.labels(instrument, d)
        for t in tiers:
            self.written_bytes.labels(instrument, t)
            self.tier_limit.labels(instrument, t).set(0)
            self.tier_paced.labels(instrument, t)
        for s in ERROR_STAGES:
            self.retries.labels(instrument, s)
            self.errors.labels(instrument, s)
        self.errors.labels(instrument, "journal")  # journal writes that failed (the state disk full)
        for e in SCAN_ERRORS:
            self.scan_errors.labels(instrument, e)
        for w in watches:
            self.watch_root_up.labels(instrument, w)
            self.watch_free.labels(instrument, w)
            self.watch_size.labels(instrument, w)
        for res in ("ok", "failed"):
            self.reloads.labels(instrument, res)
        for act in (
            "warned",
            "transitioned",
            "purged",
            "clock_suspended",
            "clock_lifted",
            "clock_acknowledged",
            "hold_restored",
        ):
            self.retention.labels(instrument, act)
        self.retention_bytes.labels(instrument)
        for act in ("warn", "transition", "purge", "sweep"):
            self.retention_failures.labels(instrument, act)
        for reason in ("claim", "journal"):  # 0 from the start: an alert on it needs the series there
            self.halted.labels(instrument, reason)
        for g in (
            self.backlog_files,
            self.backlog_bytes,
            self.backlog_ready,
            self.oldest_pending,
            self.release_waiting,
            self.release_waiting_age,
            self.inflight_bytes,
            self.inflight_limit,
            self.mqtt_connected,
            self.clock_suspended,
            self.backoff,
            self.free_space_override,
            self.ship_slots,
            self.ship_waiting,
        ):
            g.labels(instrument).set(0)
        self.mqtt_published.labels(instrument)
        self.mqtt_dropped.labels(instrument)

    # -- the pipeline's outcomes (a Reporter) ------------------------------------------------
    def outcome(self, o: Outcome) -> None:
        inst = self.instrument
        if o.kind == "retry":
            self.retries.labels(inst, o.stage or "internal").inc()
            self.errors.labels(inst, o.stage or "internal").inc()
            return
        if o.kind == "halted":
            self.halted.labels(inst, o.stage or "claim").set(1)
            return
        if o.kind == "unreadable":
            self.scan_errors.labels(inst, o.stage if o.stage in SCAN_ERRORS else "other").inc()
            return
        if o.kind == "left_aside":  # a file under a release's hidden name that nothing accounts for
            self.scan_errors.labels(inst, "left_aside").inc()
            return
        if o.kind == "retention.failed":
            self.retention_failures.labels(inst, o.stage).inc()
            return
        if o.kind.startswith("retention."):
            self.retention.labels(inst, o.kind.partition(".")[2]).inc()
            if o.kind == "retention.purged":
                self.retention_bytes.labels(inst).inc(o.source_bytes)
            elif o.kind in ("retention.clock_suspended", "retention.clock_lifted"):
                self.clock_suspended.labels(inst).set(1 if o.kind == "retention.clock_suspended" else 0)
            return
        if o.kind == "codec-choice":
            for (_, det, codec), g in list(self._codec_seen.items()):
                if det == o.detector and codec != o.codec:
                    g.set(0)
            g = self.codec_choice.labels(inst, o.detector, o.codec)
            self._codec_seen[(inst, o.detector, o.codec)] = g
            g.set(1)
            self.codec_ratio.labels(inst, o.detector).set(o.source_bytes / max(1, o.stored_bytes))
            self.codec_choices.labels(inst, o.detector, o.stage or "start").inc()
            return
        if o.kind not in OUTCOMES:
            return
        child = self._child
        child(self.files, o.detector, o.kind).inc()
        child(self.file_bytes, o.detector, o.kind).inc(o.source_bytes)
        if o.kind == "verified":
            child(self.read_bytes, o.detector).inc(o.source_bytes)
            child(self.written_bytes, o.tier).inc(o.stored_bytes)
            child(self.ship_seconds, o.detector).observe(o.seconds)
            for stage, seconds in o.stages:
                child(self.stage_seconds, stage).observe(seconds)

    def batch_outcomes(self, batch: Sequence[Outcome]) -> None:
        """`outcome` of each, the counters of a batch's files (hundreds of small files of one kind)
        added once per series; each file still one observation in the histograms."""
        sums: dict[tuple[str, str, str], list[int]] = {}  # (kind, detector, tier) -> files, bytes, stored
        for o in batch:
            if o.kind not in OUTCOMES:
                self.outcome(o)
                continue
            n = sums.setdefault((o.kind, o.detector, o.tier if o.kind == "verified" else ""), [0, 0, 0])
            n[0] += 1
            n[1] += o.source_bytes
            n[2] += o.stored_bytes
            if o.kind == "verified":
                self._child(self.ship_seconds, o.detector).observe(o.seconds)
                for stage, seconds in o.stages:
                    self._child(self.stage_seconds, stage).observe(seconds)
        child = self._child
        for (kind, detector, tier), (files, source, stored) in sums.items():
            child(self.files, detector, kind).inc(files)
            child(self.file_bytes, detector, kind).inc(source)
            if kind == "verified":
                child(self.read_bytes, detector).inc(source)
                child(self.written_bytes, tier).inc(stored)

    def _child(self, metric: Any, *labels: str) -> Any:
        """The series of `metric` for (instrument, *labels), looked up once (a file's outcome updates
        six of them; `labels()` checks and locks on every call). As bounded as the labels are."""
        key = (id(metric), *labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(self.instrument, *labels)
        return c

    # -- gauges, sampled by the daemon --------------------------------------------------------
    def sample(self, snap: Snapshot, disks: dict[str, tuple[int, int]]) -> None:
        inst = self.instrument
        self.backlog_files.labels(inst).set(snap.backlog_files)
        self.backlog_bytes.labels(inst).set(snap.backlog_bytes)
        self.backlog_ready.labels(inst).set(snap.ready_files)
        self.oldest_pending.labels(inst).set(snap.oldest_pending_seconds)
        self.inflight_bytes.labels(inst).set(snap.inflight_bytes)
        self.release_waiting.labels(inst).set(snap.release_waiting)
        self.release_waiting_age.labels(inst).set(snap.release_waiting_seconds)
        for watch, (free, size) in disks.items():
            self.watch_free.labels(inst, watch).set(free)
            self.watch_size.labels(inst, watch).set(size)

    def quarantined(self, n: int) -> None:
        self.quarantined_files.labels(self.instrument).set(n)

    def pace(self, mode: str, slots: int, waiting: int, loads: dict[str, tuple[float | None, float]]) -> None:
        """The pacer's state: its mode (normal, backoff, filling), the ship slots, the files waiting
        for one, and per watch root (the first of those on one disk) the write latency (None: no
        write completed) and busy ratio."""
        inst = self.instrument
        self.backoff.labels(inst).set(int(mode == "backoff"))
        self.free_space_override.labels(inst).set(int(mode == "filling"))
        self.ship_slots.labels(inst).set(slots)
        self.ship_waiting.labels(inst).set(waiting)
        for watch, (latency, busy) in loads.items():
            self.disk_write_latency.labels(inst, watch).set(latency or 0.0)
            self.disk_busy.labels(inst, watch).set(busy)

    def tier_pace(self, tier: str, limit: int | None, waited: float) -> None:
        """A tier's current bandwidth limit (None: unlimited) and its total seconds waited so far."""
        self.tier_limit.labels(self.instrument, tier).set(limit or 0)
        delta = waited - self._paced_seen.get(tier, 0.0)
        if delta > 0:
            self.tier_paced.labels(self.instrument, tier).inc(delta)
            self._paced_seen[tier] = waited

    def mqtt(self, event: str, value: float = 1) -> None:
        if event == "published":
            self.mqtt_published.labels(self.instrument).inc(value)
        elif event == "dropped":
            self.mqtt_dropped.labels(self.instrument).inc(value)
        elif event == "connected":
            self.mqtt_connected.labels(self.instrument).set(value)

    def catalog(self, event: str, value: float = 1) -> None:
        """The catalog publisher's figures: outbox depth and fullness, published records, errors, resyncs."""
        c, r, i = self._catalog, self.registry, ("instrument",)
        if not c:
            c["depth"] = Gauge(
                "acqd_catalog_outbox_records", "Journal changes waiting in the outbox for the catalog", i, registry=r
            )
            c["full"] = Gauge(
                "acqd_catalog_outbox_full",
                "1 while the outbox is at its cap (changes are then resynchronised from the journal later)",
                i,
                registry=r,
            )
            c["connected"] = Gauge("acqd_catalog_connected", "1 while connected to the catalog", i, registry=r)
            c["published"] = Counter(
                "acqd_catalog_published_records", "Journal rows written to the catalog", i, registry=r
            )
            c["error"] = Counter(
                "acqd_catalog_errors", "Failed connections or transactions with the catalog", i, registry=r
            )
            c["resync"] = Counter(
                "acqd_catalog_resyncs", "Full resynchronisations of the catalog from the journal", i, registry=r
            )
            c["hub"] = Counter(
                "acqd_catalog_hub_actions",
                "Copies the facility hub purged or moved, read back from the catalog into the journal",
                i,
                registry=r,
            )
            for k in c:
                c[k].labels(self.instrument)
        m = c[event].labels(self.instrument)
        if event in ("depth", "full", "connected"):
            m.set(value)
        else:
            m.inc(value)

    def value(self, name: str, **labels: str) -> float | None:
        """Read a sample back (tests, the demo, the STATUS line)."""
        return self.registry.get_sample_value(name, {"instrument": self.instrument, **labels})


class Exporter:
    """The HTTP endpoint Prometheus scrapes (a thread of prometheus_client's). OSError if it cannot
    listen (the port taken): the daemon ships all the same and tries again (`Daemon._listen_later`)."""

    def __init__(self, registry: CollectorRegistry, bind: str) -> None:
        host, sep, port = bind.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"metrics.bind: expected HOST:PORT, got {bind!r}")
        host = host.strip("[]") or "127.0.0.1"
        server, thread = start_http_server(int(port), addr=host, registry=registry)
        self._server: Any = server
        self._thread: threading.Thread = thread
        self.port = int(server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class HubMetrics:
    """The facility hub's instruments (`acqd hub`, its own port). Labels: the hub's lease name."""

    def __init__(self, registry: CollectorRegistry, hub: str) -> None:
        self.registry, self.hub = registry, hub
        r, h = registry, ("hub",)
        self.sweep_seconds = Histogram(
            "acqd_hub_sweep_duration_seconds", "Duration of the hub's retention sweeps", h, registry=r,
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
        )  # fmt: skip
        self.sweeps = Counter(
            "acqd_hub_sweeps", "Retention sweeps by outcome (done, failed, stopped)", (*h, "outcome"), registry=r
        )
        self.purges = Counter("acqd_hub_purges", "Stored copies purged by the hub", h, registry=r)
        self.purged_bytes = Counter("acqd_hub_purged_bytes", "Stored bytes purged by the hub", h, registry=r)
        self.transitions = Counter(
            "acqd_hub_transitions", "Stored copies moved to another tier by the hub", h, registry=r
        )
        self.warnings = Counter("acqd_hub_warnings_sent", "Warning digests the mail server accepted", h, registry=r)
        self.blocked = Gauge(
            "acqd_hub_blocked_actions", "Purges and transitions blocked at the last sweep", h, registry=r
        )
        self.failed = Counter("acqd_hub_failed_actions", "Retention actions that failed (retried)", h, registry=r)
        self.lease = Gauge(
            "acqd_hub_lease_held", "1 while this replica holds the hub's lease (it alone acts)", h, registry=r
        )
        self.items = Gauge("acqd_hub_items", "Stored copies the hub manages", h, registry=r)
        self.foreign = Gauge(
            "acqd_hub_unmanaged_copies", "Verified catalogued copies on tiers (or URLs) the hub does not manage", h,
            registry=r,
        )  # fmt: skip
        self.last_sweep = Gauge(
            "acqd_hub_last_sweep_timestamp_seconds", "End of the last completed sweep", h, registry=r
        )
        self.started = Gauge(
            "acqd_hub_start_time_seconds",
            "When this hub process started (Unix time): a value that keeps changing is a hub restarting",
            h,
            registry=r,
        )
        self.started.labels(hub).set(time.time())
        for m in (self.purges, self.purged_bytes, self.transitions, self.warnings, self.failed):
            m.labels(hub)
        for o in ("done", "failed", "stopped"):
            self.sweeps.labels(hub, o)
        self.lease.labels(hub).set(0)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"hub": self.hub, **labels})
