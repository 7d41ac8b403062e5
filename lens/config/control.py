"""The `control` section (SPEC §4): the control service, its session lock, modes, log and webhooks."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from lens.config.base import Section
from lens.config.outputs import ImagePolicy
from lens.config.paths import resolve_path


class ControlLog(Section):
    max_entries: Annotated[
        int, Field(ge=10, le=1_000_000, description="Recent results and events kept in memory")
    ] = 2000
    max_mb: Annotated[
        float, Field(gt=0, le=65536, description="Memory cap of the log, images included (MiB)")
    ] = 64
    images: Annotated[ImagePolicy, Field(description="Which results keep their JPEG in the log")] = "failed"


class WebhookConfig(Section):
    timeout_s: Annotated[float, Field(gt=0, le=120, description="One delivery attempt's timeout")] = 5
    retry_min_s: Annotated[
        float, Field(gt=0, le=3600, description="First retry delay (doubles, with jitter)")
    ] = 0.5
    retry_max_s: Annotated[float, Field(gt=0, le=86400, description="Longest retry delay")] = 30
    breaker_failures: Annotated[
        int, Field(ge=1, le=1000, description="Consecutive failures that open the callback's circuit")
    ] = 5
    breaker_open_s: Annotated[float, Field(gt=0, le=86400, description="How long an open circuit waits")] = 15
    spool_max_mb: Annotated[
        float,
        Field(
            gt=0, le=1_000_000, description="Undelivered messages kept on disk; beyond, summaries coalesce"
        ),
    ] = 256
    spool_max_messages: Annotated[
        int, Field(ge=10, le=10_000_000, description="Undelivered messages kept at most")
    ] = 100_000


class ControlConfig(Section):
    enabled: Annotated[bool, Field(description="Run the control service (REST API)")] = True
    host: Annotated[str, Field(min_length=1, description="Address the control service listens on")] = (
        "127.0.0.1"
    )
    port: Annotated[int, Field(ge=1, le=65535, description="Port of the control service")] = 8710
    api_key_env: Annotated[
        str, Field(min_length=1, description="Environment variable holding the machine API key")
    ] = "LENS_API_KEY"
    webhook_secret_env: Annotated[
        str, Field(min_length=1, description="Environment variable holding the webhook HMAC secret")
    ] = "LENS_WEBHOOK_SECRET"
    allow: Annotated[list[str], Field(description="Client addresses allowed (CIDRs)")] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"]
    )
    lease_s: Annotated[
        float, Field(ge=1, le=86400, description="A session lapses this long after its last request")
    ] = 30
    heartbeat_interval_s: Annotated[
        float | None,
        Field(gt=0, le=86400, description="Heartbeat interval told to orchestrators; null = lease_s / 3"),
    ] = None
    autostart: Annotated[
        bool, Field(description="Start inspecting at once (false: stopped until started)")
    ] = True
    summary_interval_s: Annotated[
        float, Field(ge=0.1, le=3600, description="RUN mode: one inspection.summary webhook this often")
    ] = 2
    test_rate_hz: Annotated[
        float,
        Field(gt=0, le=1000, description="TEST mode: at most this many inspections per second per camera"),
    ] = 5
    test_heartbeat_s: Annotated[
        float,
        Field(gt=0, le=3600, description="TEST mode: a heartbeat webhook when nothing was sent this long"),
    ] = 2
    trigger_wait_s: Annotated[
        float, Field(gt=0, le=600, description="POST /trigger in TEST mode waits this long for the result")
    ] = 2
    max_body_kb: Annotated[int, Field(ge=1, le=65536, description="Largest request body accepted (KiB)")] = (
        256
    )
    telemetry_interval_s: Annotated[
        float, Field(ge=0.1, le=3600, description="Host monitor sampling period")
    ] = 5
    telemetry_keep: Annotated[
        int, Field(ge=1, le=1_000_000, description="Telemetry samples kept in memory")
    ] = 720
    db: Annotated[
        str, Field(min_length=1, description="SQLite file of the audit log and the webhook spool")
    ] = "var/control.sqlite"
    legacy_api: Annotated[
        bool,
        Field(
            description="Serve the AnalyticLens Flask machine's routes (/api/..., Socket.IO) beside "
            "/api/v1: no auth, as the old machine; the allowlist applies"
        ),
    ] = True
    legacy_state: Annotated[
        str,
        Field(
            min_length=1,
            description="JSON file of the changes made through the legacy routes (source, trigger, "
            "tools, logging), applied over the pipeline at every start",
        ),
    ] = "var/legacy.json"
    log: Annotated[ControlLog, Field(description="In-memory log of recent results")] = Field(
        default_factory=ControlLog
    )
    webhooks: Annotated[WebhookConfig, Field(description="Webhook delivery")] = Field(
        default_factory=WebhookConfig
    )

    _db = field_validator("db", "legacy_state")(resolve_path)

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        bad = []
        for i, cidr in enumerate(v):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                bad.append(f"[{i}]: {cidr!r} is not an address or CIDR (10.0.0.0/8, 192.168.1.20)")
        if bad:
            raise ValueError("\n".join(bad))
        return v

    @model_validator(mode="after")
    def _heartbeat(self) -> ControlConfig:
        if self.heartbeat_interval_s is not None and self.heartbeat_interval_s >= self.lease_s:
            raise ValueError(
                f"heartbeat_interval_s: {self.heartbeat_interval_s} s must be shorter than "
                f"lease_s ({self.lease_s} s)"
            )
        return self

    @property
    def heartbeat_s(self) -> float:
        return self.heartbeat_interval_s if self.heartbeat_interval_s is not None else self.lease_s / 3
