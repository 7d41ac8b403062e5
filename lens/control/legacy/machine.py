"""The old machine as the orchestrator sees it: status, config sections, error state and log sync,
all on top of the control service (no engine of its own). Its commands are in `commands`; each
result goes to the inspection log and the live view through `feed`.

Status: lens `running` is `running`; `stopped` and `maintenance` are `idle`; `error` is a legacy
error (a source that failed to open, `POST /api/error`, a saved change that could not be applied)
or the engine's own (a camera offline, a process down while running). Counters (`aprovados`,
`reprovados`, `frame`) come from the engine's shared counters of the first camera and restart from 0
when inspection starts or the mode changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lens.capture.sources.urls import mask_url
from lens.config.load import ConfigError, validate_data
from lens.config.models import InspectionConfig
from lens.control.engine import EngineError
from lens.control.errors import ApiError
from lens.control.legacy.alog import LoggingConfig
from lens.control.legacy.commands import MODES_TO_LEGACY, Commands
from lens.control.legacy.errors import LegacyHttpError, error_message
from lens.control.legacy.feed import ResultFeed
from lens.control.legacy.logbook import LogBook
from lens.control.legacy.model import LegacyToolError
from lens.control.legacy.state import (
    DEFAULT_SOURCE,
    DEFAULT_TRIGGER,
    LegacyConfigError,
    LegacyState,
    source_to_legacy,
    source_to_native,
    trigger_to_legacy,
    trigger_to_native,
)
from lens.control.legacy.tools import translate
from lens.control.legacy.upload import sync, upload_url
from lens.control.legacy.view import native_to_legacy
from lens.engine.stats import CAM, HEALTH

if TYPE_CHECKING:
    from lens.control.service import ControlService

log = logging.getLogger("lens.control.legacy")

SOURCE_WAIT_S = 5.0  # PUT /api/source_config waits this long for the camera to come online
SYNC_BUDGET_S = 45.0  # the orchestrator waits 60 s for /api/logs/sync: no new upload starts after this
IMAGE_POLICY = {"ALL": "all", "APPROVED": "all", "REJECTED": "failed"}


def utc_timestamp() -> str:
    """Now as the old machine's status stamps: UTC ISO 8601 without offset."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


class LegacyMachine:
    def __init__(self, svc: ControlService) -> None:
        self.svc = svc
        ctl = svc.config.control
        self.state = LegacyState(ctl.legacy_state)
        problems = list(svc.ctx.extra.get("legacy_problems") or [])
        try:
            self.logging = LoggingConfig.merged(LoggingConfig(), self.state.get("logging_config") or {})
        except ValueError as e:
            problems.append(f"{self.state.path}: logging_config not applied: {e}")
            log.error("%s", problems[-1])
            self.logging = LoggingConfig()
        self.error_msg = "; ".join(problems)  # a saved change that could not be applied at start
        self.camera = svc.config.cameras[0].id
        self.base: dict[str, int] = {"passed": 0, "failed": 0, "inspected": 0}
        self.book = LogBook(ctl.db, self.logging)
        self.view: tuple[int, dict[str, Any]] | None = None  # (version, legacy inspection config)
        self.feed = ResultFeed(self)
        self.commands = Commands(self)
        self.lock = asyncio.Lock()  # one config change at a time
        self.tasks: list[asyncio.Task[None]] = []

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.reset_counters()
        await self._push_image_policy()
        self.tasks.append(asyncio.create_task(self.feed.flush_logs()))
        self.tasks.append(asyncio.create_task(self.feed.send_live()))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        try:
            await asyncio.to_thread(self.book.flush)
        except Exception:
            log.exception("inspection log not flushed at exit")
        self.book.close()

    def on_result(self, camera: str, raw: bytes) -> None:
        """Every result of the run (called by the bus consumer); never raises."""
        self.feed.on_result(camera, raw)

    # -- status --------------------------------------------------------------------------------------------

    @property
    def legacy_mode(self) -> str:
        return MODES_TO_LEGACY.get(self.svc.mode, "RUN")

    def status_word(self) -> tuple[str, str]:
        """(`idle|running|error`, error message)."""
        if self.error_msg:
            return "error", self.error_msg
        state = self.svc.state
        if state == "error":
            return "error", "; ".join(p["message"] for p in self.svc.problems())
        return ("running" if state == "running" else "idle"), ""

    def _saved_or(
        self, section: str, from_camera: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """The legacy section as saved, else derived from the first camera's native config."""
        saved = self.state.get(section)
        if saved is not None:
            return dict(saved)
        return from_camera(self.svc.config.cameras[0].model_dump(mode="json"))

    def source_config(self) -> dict[str, Any]:
        """The legacy source config in force (as saved: with its password, for merging)."""
        return self._saved_or("source_config", source_to_legacy)

    def source_view(self) -> dict[str, Any]:
        """`source_config()` as shown (GET answers, status): a password in `rtsp_url` masked."""
        src = self.source_config()
        if isinstance(src.get("rtsp_url"), str):
            src["rtsp_url"] = mask_url(src["rtsp_url"])
        return src

    def trigger_config(self) -> dict[str, Any]:
        return self._saved_or("trigger_config", trigger_to_legacy)

    def health(self) -> str:
        index = self.svc.ctx.cameras.index(self.camera)
        h = int(self.svc.stats.camera(index)[CAM["health"]])
        return HEALTH[h] if 0 <= h < len(HEALTH) else "unknown"

    def counters(self) -> dict[str, int]:
        row = self.svc.counters()[self.camera]
        passed = row["passed"] - self.base["passed"]
        failed = row["failed"] + row["errors"] - self.base["failed"]
        return {"aprovados": passed, "reprovados": failed, "frame": passed + failed}

    def reset_counters(self) -> None:
        row = self.svc.counters()[self.camera]
        self.base = {
            "passed": row["passed"],
            "failed": row["failed"] + row["errors"],
            "inspected": row["inspected"],
        }

    def status(self) -> dict[str, Any]:
        """`GET /api/status`: from memory and shared counters only (the orchestrator's heartbeat)."""
        status, error = self.status_word()
        trigger = self.trigger_config()
        return {
            "machine_id": self.svc.machine_id,
            "status": status,
            "mode": self.legacy_mode,
            "connection_status": "connected" if self.feed.clients else "disconnected",
            "error_msg": error,
            "timestamp": utc_timestamp(),
            "source_config": self.source_view(),
            "trigger_config": trigger,
            "logging_config": self.logging.to_dict(),
            "logging_buffer_size": self.book.buffer_size,
            "logs_count": self.book.count(),
            "trigger_info": {
                "type": trigger.get("type", DEFAULT_TRIGGER["type"]),
                "interval_ms": trigger.get("interval_ms", DEFAULT_TRIGGER["interval_ms"]),
                "waiting_for_trigger": trigger.get("type") == "trigger" and status == "running",
            },
            "source_available": self.health() == "online",
            # lens additions (the old machine had none of these)
            "state": self.svc.state,
            "camera": self.camera,
            **self.counters(),
        }

    # -- config sections --------------------------------------------------------------------------------

    async def put_source(self, patch: dict[str, Any]) -> None:
        """Merge, map to the native source, reopen the camera and wait for it; a source that cannot
        be applied or does not come up puts the machine in error (500)."""
        merged = {**DEFAULT_SOURCE, **self.source_config(), **patch}
        async with self.lock:
            try:
                native = source_to_native(merged)
                await self.svc.reconfigure_cameras({self.camera: {"source": native}})
            except (LegacyConfigError, ConfigError, EngineError, ApiError) as e:
                self.error_msg = f"cannot configure the source: {error_message(e)}"
                raise LegacyHttpError(500, self.error_msg) from None
            self._persist("source_config", merged)
            self.audit("config.source", type=merged.get("type"), native=native["type"])
            health = await self._wait_online()
            if health != "online":
                why = self.svc.camera_errors.get(self.camera) or f"health {health}"
                self.error_msg = f"the source did not open within {SOURCE_WAIT_S:g} s: {why}"
                raise LegacyHttpError(500, self.error_msg)
            self.error_msg = ""  # a good source config clears the error, as on the old machine

    async def _wait_online(self) -> str:
        deadline = time.monotonic() + SOURCE_WAIT_S
        await asyncio.sleep(0.05)
        while True:
            health = self.health()
            if health == "online" or time.monotonic() > deadline:
                return health
            await asyncio.sleep(0.05)

    async def put_trigger(self, patch: dict[str, Any]) -> None:
        if "type" not in patch:
            raise LegacyHttpError(500, "cannot update the trigger: type is missing (continuous or trigger)")
        merged = {**self.trigger_config(), **patch}
        if (
            merged["type"] == "continuous"
            and "interval_ms" not in patch
            and merged.get("interval_ms") is None
        ):
            merged["interval_ms"] = DEFAULT_TRIGGER["interval_ms"]
        async with self.lock:
            try:
                native = trigger_to_native(merged)
                await self.svc.reconfigure_cameras({self.camera: {"trigger": native}})
            except (LegacyConfigError, ConfigError, EngineError, ApiError) as e:
                raise LegacyHttpError(500, f"cannot update the trigger: {error_message(e)}") from None
            if native["type"] == "continuous":  # stored as the number it is ("200" -> 200)
                merged["interval_ms"] = trigger_to_legacy({"trigger": native})["interval_ms"]
            self._persist("trigger_config", merged)
            self.audit("config.trigger", **merged)

    def inspection_config(self) -> dict[str, Any]:
        """The tools in force: as the orchestrator last sent them, or, when they were changed since
        through /api/v1, the native tools seen as legacy ones."""
        version, native = self.svc.current_inspection()
        if self.view is None or self.view[0] != version:
            saved = self.state.get("inspection_config")
            in_force = saved is not None and self._saved_in_force(saved, native)
            self.view = (version, dict(saved) if in_force else {"tools": native_to_legacy(native)})
        return dict(self.view[1])

    def _saved_in_force(self, saved: dict[str, Any], native: dict[str, Any]) -> bool:
        """Whether the saved tools are those in force (sent here, or applied over the pipeline by
        the supervisor at start)."""
        try:
            ours = translate(saved.get("tools") or []).native["tools"]
            ok = validate_data({"tools": ours}, InspectionConfig, "inspection").model_dump(mode="json")
        except (LegacyToolError, ConfigError):
            return False
        return bool(ok["tools"] == native.get("tools"))

    async def put_inspection(self, config: dict[str, Any]) -> None:
        tools = config.get("tools")
        if tools is None:
            tools = []
        if not isinstance(tools, list):
            raise LegacyHttpError(500, f"tools must be a list, not {type(tools).__name__}")
        async with self.lock:
            try:
                translation = translate(tools)
                workers = self.svc.config.inspection.workers
                cfg = validate_data(
                    {**translation.native, "workers": workers},
                    InspectionConfig,
                    "inspection",
                    base_dir=self.svc.ctx.extra.get("base_dir"),
                )
                version = await self.svc.engine.reload(cfg)
            except (LegacyToolError, ConfigError, EngineError, ApiError) as e:
                raise LegacyHttpError(
                    500, f"cannot apply the inspection config: {error_message(e)}"
                ) from None
            saved = {**config, "tools": tools}
            self.view = (version, saved)
            self.feed.use(translation, version)
            self._persist("inspection_config", saved)
            self.audit("config.inspection", version=version, tools=[t.get("name") for t in tools])

    async def put_logging(self, patch: dict[str, Any]) -> None:
        try:
            cfg = LoggingConfig.merged(self.logging, patch)
        except ValueError as e:
            raise LegacyHttpError(500, f"cannot update the logging config: {e}") from None
        self.logging = cfg
        self.book.configure(cfg)
        self._persist("logging_config", cfg.to_dict())
        await self._push_image_policy()
        self.audit("config.logging", **cfg.to_dict())

    async def _push_image_policy(self) -> None:
        """The engine encodes the JPEGs the inspection log needs (beyond the pipeline's own policy)."""
        images = IMAGE_POLICY.get(self.logging.policy, "all") if self.logging.enabled else "none"
        try:
            await self.svc.engine.control(images=images)
        except Exception as e:  # logged: the log then keeps results without images until the next change
            log.error("image policy %r not set in the engine: %s", images, e)

    def logging_view(self) -> dict[str, Any]:
        return {**self.logging.to_dict(), "buffer_size": self.book.buffer_size}

    # -- error state and log sync -----------------------------------------------------------------------

    def set_error(self, message: str) -> None:
        self.error_msg = message
        self.audit("error.set", message=message)

    def clear_error(self) -> bool:
        if not self.error_msg:
            return False
        self.error_msg = ""
        self.audit("error.cleared")
        return True

    async def sync_logs(self, django_url: Any) -> dict[str, int]:
        """Upload the logs to `django_url` (else the one saved by the last sync); it is saved."""
        url = django_url or self.state.get("django_url")
        try:
            upload_url(url if isinstance(url, str) else "")
        except ValueError:
            raise LegacyHttpError(
                400, f"django_url is not configured (got {url!r}): send it in the body"
            ) from None
        if url != self.state.get("django_url"):
            self._persist("django_url", url)
        started = datetime.now()
        try:
            counts = await sync(self.book, url, self.svc.machine_id, budget_s=SYNC_BUDGET_S)
        except sqlite3.Error as e:
            raise LegacyHttpError(500, f"cannot read the inspection log: {e}") from None
        self.audit("logs.sync", django_url=url, started=started.isoformat(), **counts)
        return counts

    # -- helpers -----------------------------------------------------------------------------------------

    def _persist(self, section: str, value: Any) -> None:
        """Save a change (applied already); a file that cannot be written is a 500 saying so."""
        try:
            self.state.put(section, value)
        except OSError as e:
            raise LegacyHttpError(500, f"applied, but not saved to {self.state.path}: {e}") from None

    def audit(self, what: str, **detail: Any) -> None:
        self.svc.audit.record(what, "legacy", None, None, **detail)
