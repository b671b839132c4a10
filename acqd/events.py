"""MQTT events for downstream pipelines (aiomqtt). The event format is defined here, once.

Topics:
  acqd/<instrument>/status          retained JSON: online/offline, version, backlog (the last will
                                     sets it offline when acqd dies without saying goodbye)
  acqd/<instrument>/events/<type>   QoS 1 JSON with a schema version: file.verified,
                                     file.quarantined, file.released, file.release_held (a process
                                     still writes it), file.copy_lost (shipped again),
                                     file.conflict (its name holds another object), path.unreadable
                                     (a folder or entry that cannot be listed, once each),
                                     path.left_aside (a file under a release's hidden name that
                                     no release accounts for, once each),
                                     daemon.halted (claim or journal lost)

A bounded outbox feeds a single sender task that reconnects with jittered exponential backoff. A
broker that is down never slows the pipeline: `emit` never waits, and a full outbox drops the event
(counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from acqd import __version__
from acqd.aio import within
from acqd.config import redact_url
from acqd.errors import ConfigError
from acqd.values import Outcome

log = logging.getLogger("acqd.events")

SCHEMA = "acqd.event/1"
EVENT_KINDS = {
    "verified": "file.verified",
    "quarantined": "file.quarantined",
    "released": "file.released",
    "conflict": "file.conflict",
    "profile-mismatch": "file.profile-mismatch",
    "stream_fallback": "file.stream_fallback",
    "halted": "daemon.halted",
    "unreadable": "path.unreadable",
    "left_aside": "path.left_aside",
    "held": "file.release_held",
    "release_failed": "file.release_failed",
    "copy_lost": "file.copy_lost",
    "retention.warned": "retention.warned",
    "retention.transitioned": "retention.transitioned",
    "retention.purged": "retention.purged",
    "retention.failed": "retention.failed",
    "retention.clock_suspended": "retention.clock.suspended",
    "retention.clock_lifted": "retention.clock.lifted",
    "retention.clock_acknowledged": "retention.clock.acknowledged",
    "retention.hold_restored": "retention.hold.restored",
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_payload(instrument: str, o: Outcome) -> dict[str, Any]:
    """The JSON body of a file event (or of a retention clock-guard or hold event, which has no file)."""
    if o.kind.startswith(("retention.clock_", "retention.hold_")):
        fileless: dict[str, Any] = {
            "schema": SCHEMA,
            "id": str(uuid.uuid4()),
            "type": EVENT_KINDS[o.kind],
            "time": _now_iso(),
            "instrument": instrument,
            "reason": o.reason,
        }
        if o.kind == "retention.hold_restored":
            fileless["hold"] = {"target": o.relpath, "root": o.dest}
        return fileless
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "id": str(uuid.uuid4()),
        "type": EVENT_KINDS[o.kind],
        "time": _now_iso(),
        "instrument": instrument,
        "file": {
            "source": o.relpath,
            "root": o.root or None,
            "tier": o.tier or None,
            "session": o.session,
            "version": o.version,
            "detector": o.detector,
            "bytes": o.source_bytes,
        },
    }
    if o.kind == "halted":
        del body["file"]
    if o.path:  # released: where the removed file was on the acquisition disk
        body["file"]["path"] = o.path
    if o.kind == "verified":
        body["copy"] = {
            "tier": o.tier,
            "url": o.dest,
            "layout": o.layout,
            "codec": o.codec,
            "stored_bytes": o.stored_bytes,
            "checksum": o.checksum,
        }
        body["seconds"] = round(o.seconds, 6)
    if o.kind == "profile-mismatch":  # stored all the same: where
        body["copy"] = {"tier": o.tier, "url": o.dest}
    if o.reason:
        body["reason"] = o.reason
    if o.kind == "unreadable":
        body["error"] = o.stage  # name_too_long, io_error, not_connected, permission, other
    if o.kind == "retention.failed":
        body["action"] = o.stage  # warn, transition, purge: retried at the next sweep
    return body


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    username: str | None = None

    @staticmethod
    def parse(url: str) -> Broker:
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "tcp") or not u.hostname:
            raise ConfigError(f"mqtt.url: expected mqtt://HOST[:PORT], got {redact_url(url)!r}")
        return Broker(u.hostname, u.port or 1883, u.username)


class EventPublisher:
    def __init__(
        self,
        url: str,
        instrument: str,
        *,
        outbox: int = 10_000,
        password: str | None = None,
        on_metric: Callable[[str, float], None] = lambda e, v: None,
        status_extra: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.broker = Broker.parse(url)
        self.instrument = instrument
        self.password = password
        self.status_topic = f"acqd/{instrument}/status"
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=outbox)
        self._metric = on_metric
        self._status_extra = status_extra
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.dropped = 0
        #: the event the sender took off the outbox and has not seen the broker take yet (counted at the stop)
        self._pending: tuple[str, bytes] | None = None

    # -- producer side (never blocks) ---------------------------------------------------------
    def outcome(self, o: Outcome) -> None:
        if o.kind in EVENT_KINDS:
            self.emit(EVENT_KINDS[o.kind], event_payload(self.instrument, o))

    def emit(self, event_type: str, body: dict[str, Any]) -> None:
        topic = f"acqd/{self.instrument}/events/{event_type}"
        try:
            self._outbox.put_nowait((topic, json.dumps(body, sort_keys=True).encode()))
        except asyncio.QueueFull:
            self.dropped += 1
            self._metric("dropped", 1)

    def _status(self, state: str) -> bytes:
        doc = {
            "schema": SCHEMA,
            "state": state,
            "version": __version__,
            "instrument": self.instrument,
            "time": _now_iso(),
            **(self._status_extra() if state == "online" else {}),
        }
        return json.dumps(doc, sort_keys=True).encode()

    # -- the single sender task ---------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.5
        down_since: float | None = None  # logged once when the broker goes (or is away at start)
        while True:
            will = aiomqtt.Will(self.status_topic, self._status("offline"), qos=1, retain=True)
            client = aiomqtt.Client(
                self.broker.host,
                self.broker.port,
                identifier=f"acqd-{self.instrument}-{uuid.uuid4().hex[:8]}",
                username=self.broker.username,
                password=self.password,
                will=will,
                keepalive=15,
                timeout=10,
            )
            try:
                async with client:
                    self._client = client
                    await client.publish(self.status_topic, self._status("online"), qos=1, retain=True, timeout=10)
                    self.connected.set()
                    self._metric("connected", 1)
                    if down_since is None:
                        log.info("MQTT connected to %s:%d", self.broker.host, self.broker.port)
                    else:
                        log.warning(
                            "MQTT broker %s:%d reachable again after %.0fs; sending the queued events",
                            self.broker.host,
                            self.broker.port,
                            time.monotonic() - down_since,
                        )
                    down_since = None
                    backoff = 0.5
                    next_status = time.monotonic() + 10
                    while True:
                        if self._pending is None:
                            try:
                                self._pending = await within(
                                    self._outbox.get(), max(0.1, next_status - time.monotonic())
                                )
                            except TimeoutError:
                                self._pending = None
                        if self._pending is not None:
                            await client.publish(self._pending[0], self._pending[1], qos=1, timeout=10)
                            self._pending = None
                            self._metric("published", 1)
                        if time.monotonic() >= next_status:
                            await client.publish(
                                self.status_topic, self._status("online"), qos=1, retain=True, timeout=10
                            )
                            next_status = time.monotonic() + 10
            except aiomqtt.MqttError as exc:
                self._client = None
                if down_since is None:  # once per outage, whether it began at start or later
                    down_since = time.monotonic()
                    log.warning(
                        "MQTT broker %s:%d %s: %s (events are queued, then dropped when the outbox is full; "
                        "logged again when it is back)",
                        self.broker.host,
                        self.broker.port,
                        "connection lost" if self.connected.is_set() else "unreachable",
                        exc,
                    )
                self.connected.clear()
                self._metric("connected", 0)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 30.0)

    async def close(self, deadline: float = 5.0) -> None:
        """Flush what is queued (within a deadline) and say goodbye: status offline, retained."""
        client = self._client
        try:
            if client is None:
                return
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(deadline):
                    if self._pending is not None:
                        await client.publish(self._pending[0], self._pending[1], qos=1, timeout=deadline)
                        self._pending = None
                        self._metric("published", 1)
                    while not self._outbox.empty():
                        topic, payload = self._outbox.get_nowait()
                        await client.publish(topic, payload, qos=1, timeout=deadline)
                        self._metric("published", 1)
                    await client.publish(
                        self.status_topic, self._status("offline"), qos=1, retain=True, timeout=deadline
                    )
        finally:
            # events still queued (the broker away, or too slow for the deadline) go with the process:
            # counted and said, never lost without a trace
            left = self._outbox.qsize() + (self._pending is not None)
            if left:
                self.dropped += left
                self._metric("dropped", left)
                log.warning(
                    "MQTT: %d event(s) not sent at the stop (the broker did not take them): lost (the outbox is in "
                    "memory; the journal and the session manifests have every outcome)",
                    left,
                )
