"""The old machine's commands (`POST /api/control`, SPEC §4b): change_mode, start_inspection,
stop_inspection, trigger, update_inspection_config, config_tool, delete_tool, clear_logs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from lens.control.legacy.errors import LegacyHttpError, engine_call
from lens.control.legacy.toollist import ToolListError, parse_id, remove_tool, upsert_tool

if TYPE_CHECKING:
    from lens.control.legacy.machine import LegacyMachine

MODES_TO_LEGACY = {"RUN": "RUN", "TEST": "TESTE"}
MODES_FROM_LEGACY = {"RUN": "RUN", "TESTE": "TEST", "PRODUCAO": "RUN", "PRODUÇÃO": "RUN", "TEST": "TEST"}


class Commands:
    def __init__(self, machine: LegacyMachine) -> None:
        self.m = machine

    async def run(self, command: Any, params: Any) -> dict[str, Any]:
        """One command: `{"success": true, ...}`, or LegacyHttpError with the old machine's code."""
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
        previous = self.m.svc.mode
        await engine_call(self.m.svc.engine.control(mode=mode, state="stopped"))
        self.m.error_msg = ""
        self.m.reset_counters()
        self.m.audit("mode", previous=previous, mode=mode)
        return {"new_mode": MODES_TO_LEGACY[mode]}

    async def start_inspection(self, params: dict[str, Any]) -> dict[str, Any]:
        status, error = self.m.status_word()
        if self.m.error_msg:
            raise LegacyHttpError(
                400,
                f"cannot start inspection while an error is active: {error} (clear it: DELETE /api/error)",
            )
        if status in ("running", "error"):  # error here: running with a camera or process down
            return {"message": "inspection already running"}
        previous = self.m.svc.state
        await engine_call(self.m.svc.engine.control(state="running"))
        self.m.reset_counters()
        self.m.audit("state", command="start_inspection", previous=previous)
        return {}

    async def stop_inspection(self, params: dict[str, Any]) -> dict[str, Any]:
        previous = self.m.svc.state
        if previous != "stopped":
            await engine_call(self.m.svc.engine.control(state="stopped"))
            self.m.audit("state", command="stop_inspection", previous=previous)
        return {}

    async def trigger(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.m.svc.config.cameras[0].trigger.type != "manual":
            raise LegacyHttpError(
                400, "the trigger command is valid only when trigger_config.type is 'trigger'"
            )
        if self.m.status_word()[0] != "running":
            raise LegacyHttpError(400, "the trigger command is valid only while inspection is running")
        tid = self.m.svc.next_trigger_id()
        rid = await engine_call(self.m.svc.engine.trigger(self.m.camera, tid))
        return {"message": "Trigger solicitado", "result_id": rid, "trigger_id": tid}

    async def update_inspection_config(self, params: dict[str, Any]) -> dict[str, Any]:
        config = params.get("config")
        if not isinstance(config, dict):
            raise LegacyHttpError(400, "params.config must be an object with the tools")
        await self.m.put_inspection({**self.m.inspection_config(), **config})
        return {}

    async def config_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params:
            raise LegacyHttpError(400, "params must hold the tool (with id and name)")
        config = self.m.inspection_config()
        try:
            tools, tool, action = upsert_tool(list(config.get("tools") or []), params)
        except ToolListError as e:
            raise LegacyHttpError(500, f"cannot configure the tool: {e}") from None
        await self.m.put_inspection({**config, "tools": tools})
        return {"tool_id": tool["id"], "tool_name": tool["name"], "action": action, "total_tools": len(tools)}

    async def delete_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        if "id" not in params:
            raise LegacyHttpError(400, "params.id is missing")
        try:
            tool_id = parse_id(params["id"])
        except ToolListError:
            raise LegacyHttpError(400, f"params.id: {params['id']!r} is not an integer") from None
        config = self.m.inspection_config()
        try:
            tools, removed = remove_tool(list(config.get("tools") or []), tool_id)
        except ToolListError as e:
            raise LegacyHttpError(500, f"cannot remove the tool: {e}") from None
        await self.m.put_inspection({**config, "tools": tools})
        return {
            "tool_id": tool_id,
            "tool_name": removed.get("name"),
            "action": "deleted",
            "total_tools": len(tools),
        }

    async def clear_logs(self, params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await asyncio.to_thread(self.m.book.clear)
        return result
