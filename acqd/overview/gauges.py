"""The facility's gauges for the hub's metrics port: usage (per owner, group, instrument, tier and
data class; due purges and transitions per week; quarantines) and fleet health (last contact,
backlog, oldest waiting file per instrument).

Mount with `register_facility_collector(registry, source)`. The fleet figures are queried on each
scrape (one small query under the statement timeout); the usage figures come from a streamed pass
over every catalogued copy, too long for a scrape at 10^7 copies, so they are refreshed on a timer
(`collector.start(interval)`, a named thread, or the hub calls `refresh_usage` in an executor) and a
scrape serves the last refresh with its age. A catalog that fails: `acqd_facility_catalog_up 0`, the
last usage figures kept, the error counted and logged once per distinct error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from acqd.errors import CatalogError
from acqd.overview.forecast import Tally
from acqd.overview.health import merge
from acqd.overview.usage import fleet
from acqd.overview.views import Source, usage_report

log = logging.getLogger("acqd.hub.gauges")


class FacilityCollector(Collector):
    def __init__(
        self,
        source: Source,
        status: Callable[[], Mapping[str, Mapping[str, Any]]] = dict,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source, self.status, self.clock = source, status, clock
        self.tally: Tally | None = None
        self.refreshed: float | None = None
        self.refresh_seconds = 0.0
        self.errors = 0
        self._logged: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _failed(self, exc: CatalogError) -> None:
        self.errors += 1
        if str(exc) != self._logged:
            log.warning("facility gauges: the catalog query failed: %s", exc)
            self._logged = str(exc)

    def refresh_usage(self) -> bool:
        """One streamed usage pass; True if it succeeded (the figures are then the new ones)."""
        t0 = time.monotonic()
        try:
            t = usage_report(self.source, now=self.clock())
        except CatalogError as exc:
            self._failed(exc)
            return False
        with self._lock:
            self.tally, self.refreshed, self.refresh_seconds = t, self.clock(), time.monotonic() - t0
        self._logged = None
        return True

    def start(self, interval: float) -> None:
        """Refresh the usage figures now and every `interval` seconds, in a named thread, until `stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                self.refresh_usage()
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="facility-usage", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        up = 1
        contacts = None
        try:
            conn = self.source.connect()
            try:
                contacts = fleet(conn)
            finally:
                conn.close()
        except CatalogError as exc:
            self._failed(exc)
            up = 0
        yield GaugeMetricFamily("acqd_facility_catalog_up", "1 if the catalog answered this scrape's query", up)
        yield CounterMetricFamily(
            "acqd_facility_catalog_errors", "catalog queries of the facility gauges that failed", self.errors
        )
        if contacts is not None:
            yield from _fleet(merge(contacts, self.status()), now)
        with self._lock:
            t, refreshed, took = self.tally, self.refreshed, self.refresh_seconds
        if t is not None and refreshed is not None:
            yield GaugeMetricFamily(
                "acqd_facility_usage_age_seconds", "seconds since the usage figures were computed", now - refreshed
            )
            yield GaugeMetricFamily(
                "acqd_facility_usage_refresh_seconds", "how long the last usage pass over the catalog took", took
            )
            yield from _usage(t)


def _fleet(health: list[Any], now: float) -> Iterator[Metric]:
    last = GaugeMetricFamily(
        "acqd_fleet_last_contact_seconds",
        "seconds since the instrument was last heard of (catalog publisher or MQTT status)",
        labels=["instrument"],
    )
    backlog = GaugeMetricFamily("acqd_fleet_backlog_files", "files waiting to be shipped", labels=["instrument"])
    oldest = GaugeMetricFamily(
        "acqd_fleet_oldest_pending_seconds",
        "age of the oldest file waiting to be shipped (0: none waits)",
        labels=["instrument"],
    )
    online = GaugeMetricFamily(
        "acqd_fleet_online", "the instrument's retained MQTT status: 1 online, 0 offline", labels=["instrument"]
    )
    for h in health:
        if h.last_contact is not None:
            last.add_metric([h.instrument], max(0.0, now - h.last_contact))
        backlog.add_metric([h.instrument], h.backlog_files)
        oldest.add_metric([h.instrument], 0.0 if h.oldest_pending is None else max(0.0, now - h.oldest_pending))
        if h.online is not None:
            online.add_metric([h.instrument], int(h.online))
    yield from (last, backlog, oldest, online)


def _usage(t: Tally) -> Iterator[Metric]:
    def pair(name: str, what: str, labels: list[str], table: Mapping[Any, Any]) -> Iterator[Metric]:
        b = GaugeMetricFamily(f"{name}_bytes", f"bytes stored {what}", labels=labels)
        f = GaugeMetricFamily(f"{name}_files", f"files stored {what}", labels=labels)
        for key, fig in table.items():
            values = [str(k) for k in (key if isinstance(key, tuple) else (key,))]
            b.add_metric(values, fig.bytes)
            f.add_metric(values, fig.files)
        yield from (b, f)

    yield from pair(
        "acqd_facility_stored",
        "per instrument, tier and data class (verified copies)",
        ["instrument", "tier", "data_class"],
        t.by_place,
    )
    yield from pair("acqd_facility_owner", "per owner (with the owner's group)", ["owner", "group"], t.by_owner)
    yield from pair("acqd_facility_group", "per group", ["group"], t.by_group)
    yield from pair(
        "acqd_facility_due_purge", "that the policy purges in the week ahead (week 0: due now)", ["week"], t.purges
    )
    yield from pair(
        "acqd_facility_due_transition",
        "that the policy moves to a tier in the week ahead (week 0: due now)",
        ["week", "tier"],
        t.transitions,
    )
    yield from pair(
        "acqd_facility_quarantined", "per instrument: quarantined files (source bytes)", ["instrument"], t.quarantined
    )


def register_facility_collector(
    registry: CollectorRegistry,
    source: Source,
    status: Callable[[], Mapping[str, Mapping[str, Any]]] = dict,
) -> FacilityCollector:
    """Mount the facility gauges on the hub's `registry`; `status`: the MQTT status per instrument
    (e.g. a running `acqd.overview.fleet.StatusListener`'s `lambda: listener.status`)."""
    c = FacilityCollector(source, status)
    registry.register(c)
    return c
