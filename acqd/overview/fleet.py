"""The daemons' retained MQTT status (`acqd/<instrument>/status`, see acqd.events), read by the
facility service (aiomqtt). An adapter: it keeps the latest status document per instrument.

`StatusListener.run` is the hub's long-lived task (reconnects with backoff, never raises out);
`read_status` is `acqd hub fleet`'s one look: subscribe, take the retained messages, leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from acqd.aio import within
from acqd.errors import ConfigError

log = logging.getLogger("acqd.fleet")

STATUS_TOPIC = "acqd/+/status"


def _broker(url: str) -> tuple[str, int, str | None]:
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise ConfigError(f"mqtt.url: expected mqtt://HOST[:PORT], got {u.scheme}://{u.hostname or ''}")
    return u.hostname, u.port or 1883, u.username


class StatusListener:
    """The latest retained status of every instrument on the broker (`status`: instrument -> doc)."""

    def __init__(self, url: str, password: str | None = None) -> None:
        self.host, self.port, self.username = _broker(url)
        self.password = password
        self.status: dict[str, dict[str, Any]] = {}
        self.bad = 0  # payloads that were not an acqd status document
        self.subscribed = asyncio.Event()

    def _take(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != "acqd" or parts[2] != "status":
            return
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.bad += 1
            log.warning("fleet: %s is not an acqd status document (%s); ignored", topic, exc)
            return
        doc["received"] = time.time()
        self.status[parts[1]] = doc

    async def _listen(self) -> None:
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"acqd-hub-{uuid.uuid4().hex[:8]}",
            username=self.username,
            password=self.password,
            keepalive=15,
            timeout=10,
        )
        async with client:
            await client.subscribe(STATUS_TOPIC, qos=1)
            self.subscribed.set()
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else str(msg.payload).encode()
                self._take(str(msg.topic), bytes(payload))

    async def run(self) -> None:
        """Listen until cancelled; a broker that goes away: logged once, retried with backoff."""
        delay, logged = 1.0, False
        while True:
            try:
                await self._listen()
            except aiomqtt.MqttError as exc:
                if not logged:
                    log.warning("fleet: MQTT broker %s:%d: %s (retrying)", self.host, self.port, exc)
                    logged = True
            self.subscribed.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def read_status(url: str, password: str | None, wait: float) -> dict[str, dict[str, Any]]:
    """The retained status of every instrument: what arrives within `wait` seconds of subscribing.
    ConfigError for a bad URL; an unreachable broker: {} and a warning (the catalog still answers)."""
    listener = StatusListener(url, password)
    task = asyncio.create_task(listener.run(), name="fleet-status")
    try:
        try:
            await within(listener.subscribed.wait(), max(wait, 5.0))
        except TimeoutError:
            return {}
        await asyncio.sleep(wait)  # retained messages arrive right after the subscription
        return dict(listener.status)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
