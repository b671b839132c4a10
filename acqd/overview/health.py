"""Fleet health: each instrument's last contact, backlog and oldest waiting file, from what the
catalog holds of it and from its retained MQTT status. Pure.

Sources, and which wins:
- last contact: the later of the catalog's (a daemon's publisher touches its journal's row at
  every batch and, while idle, at least every `acqd.catalog.HEARTBEAT` seconds) and the time in
  the daemon's retained MQTT status (refreshed every 10 s while it runs; its last will's time is
  the time it connected: never later than the truth);
- backlog: the MQTT status's `backlog_files` if that status is online and newer than the
  catalog's contact (the daemon's own count), else the catalog's count of files waiting (seen,
  complete or stored) in the instrument's latest journal;
- oldest pending: the first sighting of the oldest of those files (catalog only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class CatalogContact:
    instrument: str
    last_contact: float  # epoch seconds
    backlog_files: int
    oldest_pending: float | None  # epoch seconds of the oldest waiting file's first sighting


@dataclass(frozen=True)
class Health:
    instrument: str
    last_contact: float | None  # epoch seconds; None: never heard of in any source
    via: str  # "catalog" or "mqtt": where the last contact comes from
    backlog_files: int
    oldest_pending: float | None
    online: bool | None  # the MQTT status's state; None: no status seen

    def silent(self, now: float, after: float) -> bool:
        """Not heard from for longer than `after` while files wait: what AcqdInstrumentSilent alerts on."""
        return self.backlog_files > 0 and (self.last_contact is None or now - self.last_contact > after)

    def as_dict(self, now: float, after: float) -> dict[str, Any]:
        return {
            "instrument": self.instrument,
            "last_contact": self.last_contact,
            "last_contact_age_seconds": None if self.last_contact is None else round(now - self.last_contact, 3),
            "via": self.via,
            "backlog_files": self.backlog_files,
            "oldest_pending": self.oldest_pending,
            "oldest_pending_age_seconds": None
            if self.oldest_pending is None
            else round(max(0.0, now - self.oldest_pending), 3),
            "online": self.online,
            "silent": self.silent(now, after),
        }


def status_time(doc: Mapping[str, Any]) -> float | None:
    """The time in an acqd status document (ISO 8601, `Z`); None if it has none or it is not one."""
    t = doc.get("time")
    if not isinstance(t, str):
        return None
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def merge(catalog: Iterable[CatalogContact], status: Mapping[str, Mapping[str, Any]]) -> list[Health]:
    """One `Health` per instrument known to the catalog or to MQTT, by instrument name."""
    known = {c.instrument: c for c in catalog}
    out = []
    for name in sorted(set(known) | set(status)):
        c, s = known.get(name), status.get(name)
        st = status_time(s) if s is not None else None
        online = None if s is None else s.get("state") == "online"
        last, via = (c.last_contact, "catalog") if c is not None else (None, "catalog")
        if st is not None and (last is None or st > last):
            last, via = st, "mqtt"
        backlog = c.backlog_files if c is not None else 0
        mqtt_backlog = s.get("backlog_files") if s is not None else None
        if online and via == "mqtt" and isinstance(mqtt_backlog, int) and not isinstance(mqtt_backlog, bool):
            backlog = mqtt_backlog
        out.append(Health(name, last, via, backlog, c.oldest_pending if c is not None else None, online))
    return out
