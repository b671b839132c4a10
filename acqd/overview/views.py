"""`acqd hub usage` and `acqd hub fleet`: the facility's storage usage and its fleet's health,
from the catalog (and the MQTT status topics), as plain documents (the CLI prints them as tables or
JSON; the gauges export the same figures)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acqd.config import CatalogConfig, optional_credential
from acqd.overview import usage
from acqd.overview.fleet import read_status
from acqd.overview.forecast import Tally, groups_of
from acqd.overview.health import Health, merge
from acqd.overview.settings import FacilityView
from acqd.policy.model import Policy, load_policy

credential = optional_credential  # a secret file; relative paths resolve in $CREDENTIALS_DIRECTORY


@dataclass(frozen=True)
class Source:
    """Where the facility views read from: the catalog (with its password), the policy, the groups."""

    view: FacilityView
    password: str | None
    policy: Policy | None

    @staticmethod
    def of(view: FacilityView, password_file: Path | None = None) -> Source:
        pw = credential(password_file or view.catalog.password_file, "catalog.password_file")
        policy = load_policy(view.policy) if view.policy is not None else None
        return Source(view, pw, policy)

    @staticmethod
    def from_url(url: str, password_file: Path | None, policy: Path | None = None) -> Source:
        view = FacilityView(catalog=CatalogConfig(url=url), policy=policy)
        return Source.of(view, password_file)

    def connect(self) -> Any:
        c = self.view.catalog
        return usage.open_catalog(c.url, self.password, c.connect_timeout, self.view.usage.statement_timeout)


def usage_report(src: Source, now: float | None = None, conn: Any = None) -> Tally:
    """Every live copy and quarantine in the catalog, tallied (one streamed pass)."""
    t = Tally(src.policy, time.time() if now is None else now, groups_of(src.view.groups), src.view.usage.weeks)
    own = conn is None
    conn = src.connect() if own else conn
    try:
        return usage.tally(conn, t)
    finally:
        if own:
            conn.close()


def fleet_report(src: Source, conn: Any = None, status: dict[str, dict[str, Any]] | None = None) -> list[Health]:
    """Each instrument's health from the catalog and (if `mqtt:` is set and `status` not given) the
    retained MQTT status, collected for `fleet.mqtt_wait` seconds."""
    if status is None:
        status = {}
        m = src.view.mqtt
        if m is not None and m.enabled:
            pw = credential(m.password_file, "mqtt.password_file")
            status = asyncio.run(read_status(m.url, pw, src.view.fleet.mqtt_wait))
    own = conn is None
    conn = src.connect() if own else conn
    try:
        contacts = usage.fleet(conn)
    finally:
        if own:
            conn.close()
    return merge(contacts, status)
