"""What `acqd hub usage` and `acqd hub fleet` (and the facility gauges) read of hub.yaml. Pure.

hub.yaml is the hub's configuration; these are the keys the usage and fleet views need. Other keys
belong to the hub (retention, lease, digests) and are validated by it: this view ignores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from acqd.config import CatalogConfig, FleetSettings, MqttConfig, UsageSettings
from acqd.yamlfile import load_model


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
