"""The old machine as the orchestrator sees it: status, commands, config sections, error state,
inspection log and live results, all on top of the control service (no engine of its own).

Status: lens `running` is `running`; `stopped` and `maintenance` are `idle`; `error` is a legacy
error (a source that failed to open, `POST /api/error`, a saved change that could not be applied)
or the engine's own (a camera offline, a process down while running). Counters (`aprovados`,
`reprovados`, `frame`) come from the engine's shared counters of the first camera and restart from 0
when inspection starts or the mode changes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lens.config.load import ConfigError, validate_data
from lens.config.models import InspectionConfig
from lens.control.engine import EngineError
from lens.control.errors import ApiError
from lens.control.legacy.alog import LogBook, LogEntry, LoggingConfig
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
from lens.control.legacy.tools import (
    LegacyToolError,
    Translation,
    legacy_results,
    native_to_legacy,
    translate,
)
from lens.control.memlog import Image
from lens.engine.bus import unpack
from lens.engine.stats import CAM, HEALTH

if TYPE_CHECKING:
    from lens.control.service import ControlService

log = logging.getLogger("lens.control.legacy")

MODES_TO_LEGACY = {"RUN": "RUN", "TEST": "TESTE"}
MODES_FROM_LEGACY = {"RUN": "RUN", "TESTE": "TEST", "PRODUCAO": "RUN", "PRODUÇÃO": "RUN", "TEST": "TEST"}
SOURCE_WAIT_S = 5.0  # PUT /api/source_config waits this long for the camera to come online
RUN_LIVE_EVERY_S = 1.0  # RUN mode: at most one live `test_result` a second (as the old machine)
LIVE_QUEUE = 32  # live messages waiting for the Socket.IO emitter; older ones are dropped (counted)
IMAGE_POLICY = {"ALL": "all", "APPROVED": "all", "REJECTED": "failed"}


class LegacyHttpError(Exception):
    """Answered as `{"success": false, "error": message}` with `status` (the old machine's codes)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def local_time(epoch: float) -> str:
    """The old machine's inspection timestamps: local time, `YYYY-MM-DD HH:MM:SS`."""
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


class LegacyMachine:
    def __init__(self, svc: ControlService) -> None:
        self.svc = svc
        ctl = svc.config.control
        self.state = LegacyState(ctl.legacy_state)
        problems = list(svc.ctx.extra.get("legacy_problems") or [])
        self.error_msg = "; ".join(problems)  # a saved change that could not be applied at start
        self.camera = svc.config.cameras[0].id
        self.base: dict[str, int] = {"passed": 0, "failed": 0, "inspected": 0}
        self.logging = LoggingConfig.merged(LoggingConfig(), self.state.get("logging_config") or {})
        self.book = LogBook(ctl.db, self.logging)
        self.translation: Translation | None = None
        self.translation_version = -1
        self.live: asyncio.Queue[dict[str, Any]] = asyncio.Queue(LIVE_QUEUE)
        self.live_clients = 0
        self.live_dropped = 0
        self.last_live = 0.0
        self.book_errors = 0
        self.logged_without_image = 0
        self.lock = asyncio.Lock()  # one config change at a time
        self.tasks: list[asyncio.Task[None]] = []
        self.emit: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None  # set by the live view

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.reset_counters()
        await self._push_image_policy()
        self.tasks.append(asyncio.create_task(self._flush_logs()))
        self.tasks.append(asyncio.create_task(self._send_live()))

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

    def camera_config(self) -> dict[str, Any]:
        cam = self.svc.config.cameras[0]
        data: dict[str, Any] = cam.model_dump(mode="json")
        return data

    def source_config(self) -> dict[str, Any]:
        saved = self.state.get("source_config")
        return dict(saved) if saved is not None else source_to_legacy(self.camera_config())

    def trigger_config(self) -> dict[str, Any]:
        saved = self.state.get("trigger_config")
        return dict(saved) if saved is not None else trigger_to_legacy(self.camera_config())

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
        status, error = self.status_word()
        trigger = self.trigger_config()
        return {
            "machine_id": self.svc.machine_id,
            "status": status,
            "mode": self.legacy_mode,
            "connection_status": "connected" if self.live_clients else "disconnected",
            "error_msg": error,
            "timestamp": datetime.utcnow().isoformat(),
            "source_config": self.source_config(),
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

    # -- commands --------------------------------------------------------------------------------------

    async def command(self, command: Any, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise LegacyHttpError(400, f"params must be an object, not {type(params).__name__}")
        handler = {
            "change_mode": self.change_mode,
            "start_inspection": self.start_inspection,
            "stop_inspection": self.stop_inspection,
            "trigger": self.trigger,
            "update_inspection_config": self.update_inspection_config,
            "config_tool": self.config_tool,
            "delete_tool": self.delete_tool,
            "clear_logs": self.clear_logs,
        }.get(command if isinstance(command, str) else "")
        if handler is None:
            raise LegacyHttpError(
                400,
                f"unknown command {command!r} (change_mode, start_inspection, stop_inspection, trigger, "
                "update_inspection_config, config_tool, delete_tool, clear_logs)",
            )
        return {"success": True, **await handler(params)}

    async def change_mode(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = params.get("mode")
        mode = MODES_FROM_LEGACY.get(raw.upper()) if isinstance(raw, str) else None
        if mode is None:
            raise LegacyHttpError(400, f"mode: {raw!r} is not TESTE or RUN")
        previous = self.svc.mode
        await self._engine(self.svc.engine.control(mode=mode, state="stopped"))
        self.error_msg = ""
        self.reset_counters()
        self._audit("mode", previous=previous, mode=mode)
        return {"new_mode": MODES_TO_LEGACY[mode]}

    async def start_inspection(self, params: dict[str, Any]) -> dict[str, Any]:
        status, error = self.status_word()
        if self.error_msg:
            raise LegacyHttpError(
                400,
                f"cannot start inspection while an error is active: {error} (clear it: DELETE /api/error)",
            )
        if status in ("running", "error"):  # error here: running with a camera or process down
            return {"message": "inspection already running"}
        previous = self.svc.state
        await self._engine(self.svc.engine.control(state="running"))
        self.reset_counters()
        self._audit("state", command="start_inspection", previous=previous)
        return {}

    async def stop_inspection(self, params: dict[str, Any]) -> dict[str, Any]:
        previous = self.svc.state
        if previous != "stopped":
            await self._engine(self.svc.engine.control(state="stopped"))
            self._audit("state", command="stop_inspection", previous=previous)
        return {}

    async def trigger(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.svc.config.cameras[0].trigger.type != "manual":
            raise LegacyHttpError(
                400, "the trigger command is valid only when trigger_config.type is 'trigger'"
            )
        if self.status_word()[0] != "running":
            raise LegacyHttpError(400, "the trigger command is valid only while inspection is running")
        tid = self.svc.next_trigger_id()
        rid = await self._engine(self.svc.engine.trigger(self.camera, tid))
        return {"message": "Trigger solicitado", "result_id": rid, "trigger_id": tid}

    async def update_inspection_config(self, params: dict[str, Any]) -> dict[str, Any]:
        config = params.get("config")
        if not isinstance(config, dict):
            raise LegacyHttpError(400, "params.config must be an object with the tools")
        await self.put_inspection({**self.inspection_config(), **config})
        return {}

    async def config_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params:
            raise LegacyHttpError(400, "params must hold the tool (with id and name)")
        for key in ("id", "name"):
            if key not in params:
                raise LegacyHttpError(500, f"cannot configure the tool: {key} is missing")
        tool_id = _tool_id(params["id"])
        tools = list(self.inspection_config().get("tools") or [])
        at = next(
            (i for i, t in enumerate(tools) if _same_id(t, tool_id) and t.get("name") == params["name"]), None
        )
        tool = {**params, "id": tool_id}
        if at is not None:
            tools[at] = tool
            action = "updated"
        else:
            if any(_same_id(t, tool_id) for t in tools):  # the id is another tool's: the next free one
                tool["id"] = 1 + max(_tool_id(t.get("id", i)) for i, t in enumerate(tools))
            tools.append(tool)
            action = "added"
        await self.put_inspection({**self.inspection_config(), "tools": tools})
        return {"tool_id": tool["id"], "tool_name": tool["name"], "action": action, "total_tools": len(tools)}

    async def delete_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        if "id" not in params:
            raise LegacyHttpError(400, "params.id is missing")
        try:
            tool_id = _tool_id(params["id"])
        except LegacyHttpError:
            raise LegacyHttpError(400, f"params.id: {params['id']!r} is not an integer") from None
        tools = list(self.inspection_config().get("tools") or [])
        at = next((i for i, t in enumerate(tools) if _same_id(t, tool_id, i)), None)
        if at is None:
            raise LegacyHttpError(500, f"cannot remove the tool: no tool with id {tool_id}")
        removed = tools.pop(at)
        await self.put_inspection({**self.inspection_config(), "tools": tools})
        return {
            "tool_id": tool_id,
            "tool_name": removed.get("name"),
            "action": "deleted",
            "total_tools": len(tools),
        }

    async def clear_logs(self, params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await asyncio.to_thread(self.book.clear)
        return result

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
                self.error_msg = f"cannot configure the source: {_message(e)}"
                raise LegacyHttpError(500, self.error_msg) from None
            self.state.put("source_config", merged)
            self._audit("config.source", type=merged.get("type"), native=native["type"])
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
                raise LegacyHttpError(500, f"cannot update the trigger: {_message(e)}") from None
            self.state.put("trigger_config", merged)
            self._audit("config.trigger", **merged)

    def inspection_config(self) -> dict[str, Any]:
        """The tools as the orchestrator last sent them; if they were changed since through /api/v1,
        the native tools seen as legacy ones."""
        saved = self.state.get("inspection_config")
        version, native = self.svc.current_inspection()
        if saved is not None and version == self.translation_version:
            return dict(saved)
        if saved is not None and self.translation_version == -1 and self._saved_in_force(saved, native):
            return dict(saved)
        return {"tools": native_to_legacy(native)}

    def _saved_in_force(self, saved: dict[str, Any], native: dict[str, Any]) -> bool:
        """At start: the saved tools are those in force (applied over the pipeline by the supervisor)."""
        try:
            ours = translate(saved.get("tools") or []).native["tools"]
        except LegacyToolError:
            return False
        ok = validate_data({"tools": ours}, InspectionConfig, "inspection").model_dump(mode="json")["tools"]
        return bool(ok == native.get("tools"))

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
                raise LegacyHttpError(500, f"cannot apply the inspection config: {_message(e)}") from None
            self.translation, self.translation_version = translation, version
            self.state.put("inspection_config", {**config, "tools": tools})
            self._audit("config.inspection", version=version, tools=[t.get("name") for t in tools])

    async def put_logging(self, patch: dict[str, Any]) -> None:
        try:
            cfg = LoggingConfig.merged(self.logging, patch)
        except ValueError as e:
            raise LegacyHttpError(500, f"cannot update the logging config: {e}") from None
        self.logging = cfg
        self.book.configure(cfg)
        self.state.put("logging_config", cfg.to_dict())
        await self._push_image_policy()
        self._audit("config.logging", **cfg.to_dict())

    async def _push_image_policy(self) -> None:
        """The engine encodes the JPEGs the inspection log needs (beyond the pipeline's own policy)."""
        images = IMAGE_POLICY.get(self.logging.policy, "all") if self.logging.enabled else "none"
        try:
            await self.svc.engine.control(images=images)
        except Exception as e:  # logged: the log then keeps results without images until the next change
            log.error("image policy %r not set in the engine: %s", images, e)

    def logging_view(self) -> dict[str, Any]:
        return {**self.logging.to_dict(), "buffer_size": self.book.buffer_size}

    # -- error state -------------------------------------------------------------------------------------

    def set_error(self, message: str) -> None:
        self.error_msg = message
        self._audit("error.set", message=message)

    def clear_error(self) -> bool:
        if not self.error_msg:
            return False
        self.error_msg = ""
        self._audit("error.cleared")
        return True

    # -- results -----------------------------------------------------------------------------------------

    def on_result(self, camera: str, raw: bytes) -> None:
        """Every result of the run (called by the bus consumer, before nothing else waits on it):
        the inspection log and the live view, each only when it wants this result."""
        if camera != self.camera:
            return
        mode = self.svc.mode
        now = time.monotonic()
        live_due = self.live_clients > 0 and (mode == "TEST" or now - self.last_live >= RUN_LIVE_EVERY_S)
        if not (self.logging.enabled or live_due):
            return
        env = unpack(raw)
        image = self.svc.memlog.image(int(env.get("result_id", 0)))
        approved = bool(env.get("pass"))
        manual = env.get("trigger") == "manual"
        live_due = live_due or (self.live_clients > 0 and manual)  # a trigger's result is always shown
        logged = self.book.wants(approved)
        if not (logged or live_due):
            return
        result = self.legacy_result(env, (image.width, image.height) if image else None)
        if logged:
            if image is None:
                self.logged_without_image += 1  # the engine was not asked for its JPEG yet
            self.book.offer(
                LogEntry(
                    id=str(uuid.uuid4()),
                    timestamp=result["timestamp"],
                    approved=approved,
                    width=image.width if image else 0,
                    height=image.height if image else 0,
                    result=result,
                    jpeg=image.jpeg if image else b"",
                )
            )
        if live_due:
            self.last_live = now
            self._queue_live(self.test_result(env, result, image))

    def legacy_result(self, env: dict[str, Any], frame_size: tuple[int, int] | None) -> dict[str, Any]:
        """The old machine's inspection result of one envelope (the `.alog` JSON's `result`)."""
        translation = self._translation(int(env.get("inspection_version", 0)))
        tool_results, summary = legacy_results(translation, env, frame_size=frame_size)
        ms = summary.get("total_processing_time_ms", 0.0)
        return {
            "inspection_summary": summary,
            "timestamp": local_time(float(env.get("captured_at") or time.time())),
            **self.counters(),
            "time": f"{ms:.2f}ms",
            "tools": self.inspection_config().get("tools", []),
            "result": tool_results,
            # lens additions
            "result_id": env.get("result_id"),
            "camera": env.get("camera"),
            "pass": env.get("pass"),
        }

    def test_result(self, env: dict[str, Any], result: dict[str, Any], image: Image | None) -> dict[str, Any]:
        msg = {
            **{
                k: result[k]
                for k in ("aprovados", "reprovados", "frame", "time", "tools", "result", "timestamp")
            },
            "source_type": self.source_config().get("type", "none"),
            "mode": MODES_TO_LEGACY.get(str(env.get("mode")), self.legacy_mode),
            "result_id": env.get("result_id"),
            "pass": env.get("pass"),
            "inspection_summary": result["inspection_summary"],
        }
        if image is not None:
            msg["image_base64"] = base64.b64encode(image.jpeg).decode("ascii")
            msg["mime"] = "image/jpeg"
            msg["resolution"] = [image.width, image.height]
        return msg

    def _translation(self, version: int) -> Translation:
        if self.translation is None or version != self.translation_version:
            saved = self.state.get("inspection_config")
            _, native = self.svc.current_inspection()
            tools = saved.get("tools") if saved is not None and self._saved_in_force(saved, native) else None
            self.translation = translate(tools if tools is not None else native_to_legacy(native))
            self.translation_version = version
        return self.translation

    # -- background ------------------------------------------------------------------------------------

    def _queue_live(self, msg: dict[str, Any]) -> None:
        if self.live.full():
            self.live.get_nowait()
            self.live_dropped += 1
        self.live.put_nowait(msg)

    async def _send_live(self) -> None:
        while True:
            msg = await self.live.get()
            if self.emit is None:
                continue
            try:
                await self.emit("test_result", msg)
            except Exception:
                log.exception("live result not sent")

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(min(0.1, max(0.02, self.logging.batch_ms / 1000.0)))
            if self.book.buffer_size and self.book.flush_due():
                try:
                    await asyncio.to_thread(self.book.flush)
                except Exception:
                    self.book_errors += 1
                    log.exception("inspection log flush failed")

    # -- helpers -----------------------------------------------------------------------------------------

    def _audit(self, what: str, **detail: Any) -> None:
        self.svc.audit.record(what, "legacy", None, None, **detail)

    async def _engine(self, coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except (EngineError, ApiError) as e:
            raise LegacyHttpError(400, _message(e)) from None


def _message(e: Exception) -> str:
    if isinstance(e, ConfigError):
        return "; ".join(f"{i.path}: {i.message}" if i.path else i.message for i in e.issues)
    if isinstance(e, ApiError):
        return e.message
    return str(e)


def _tool_id(v: Any) -> int:
    try:
        if isinstance(v, bool):
            raise ValueError
        return int(v)
    except (TypeError, ValueError):
        raise LegacyHttpError(500, f"tool id {v!r} is not an integer") from None


def _same_id(tool: dict[str, Any], tool_id: int, index: int | None = None) -> bool:
    """A tool has this id (its `id`, or its list index when it has none, as on the old machine)."""
    own = tool.get("id", index)
    try:
        return own is not None and not isinstance(own, bool) and int(own) == tool_id
    except (TypeError, ValueError):
        return False
