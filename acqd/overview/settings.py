"""What `acqd hub usage` and `acqd hub fleet` (and the facility gauges) read of hub.yaml. Pure.

hub.yaml is the hub's configuration; these are the keys the usage and fleet views need. Other keys
belong to the hub (retention, lease, digests) and are validated by it: this view ignores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from acqd.config import CatalogConfig, MqttConfig
from acqd.units import Duration
from acqd.yamlfile import load_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UsageSettings(_Strict):
    weeks: int = Field(8, ge=1, le=104, description="weeks ahead that due purges and transitions are counted for")
    statement_timeout: Duration = Field(
        60.0, description="the longest a usage or fleet query may run (a scrape that takes longer reports an error)"
    )


class FleetSettings(_Strict):
    silent_after: Duration = Field(
        900.0, description="`acqd hub fleet` flags an instrument not heard from for this long while files wait"
    )
    mqtt_wait: Duration = Field(2.0, description="how long `acqd hub fleet` collects the retained MQTT status")


class FacilityView(BaseModel):
    """The keys of hub.yaml that the usage and fleet views read (the others are the hub's)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    catalog: CatalogConfig
    policy: Path | None = Field(None, description="the facility's retention policy YAML")
    groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="group -> its owners (as the policy's owners.pattern names them)"
    )
    mqtt: MqttConfig | None = None
    usage: UsageSettings = UsageSettings()
    fleet: FleetSettings = FleetSettings()

    @field_validator("policy", mode="after")
    @classmethod
    def _rel(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if v is not None and not v.is_absolute() and base is not None:
            v = Path(base) / v
        return v


def load_view(path: Path) -> FacilityView:
    ctx: dict[str, Any] = {"base_dir": path.parent}
    return load_model(path, FacilityView, context=ctx)
