"""The old machine's live view: a Socket.IO server (protocol v5, path /socket.io/, namespace /) on
the control service's port, beside Starlette.

Events: on connect the client gets `connected {machine_id, status, mode}`; `request_status` is
answered with `status_update {machine_id, status, mode, timestamp}`; `test_result` carries every
inspection of the first camera in TESTE mode, at most one a second in RUN (and every manual
trigger's result), with its JPEG as base64 (see LegacyMachine.test_result).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import socketio
from starlette.types import ASGIApp

from lens.control.legacy.machine import LegacyMachine


def with_live_view(app: ASGIApp, machine: LegacyMachine) -> ASGIApp:
    """`app` with the Socket.IO server in front of it (other paths pass through to `app`)."""
    sio = socketio.AsyncServer(
        async_mode="asgi", cors_allowed_origins="*", logger=False, engineio_logger=False
    )

    def hello() -> dict[str, Any]:
        return {
            "machine_id": machine.svc.machine_id,
            "status": machine.status_word()[0],
            "mode": machine.legacy_mode,
        }

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        machine.live_clients += 1
        await sio.emit("connected", hello(), to=sid)

    @sio.event
    async def disconnect(sid: str, *reason: Any) -> None:
        machine.live_clients = max(0, machine.live_clients - 1)

    @sio.on("request_status")
    async def request_status(sid: str, *data: Any) -> None:
        await sio.emit("status_update", {**hello(), "timestamp": datetime.utcnow().isoformat()}, to=sid)

    async def emit(event: str, msg: dict[str, Any]) -> None:
        await sio.emit(event, msg)

    machine.emit = emit
    return socketio.ASGIApp(sio, other_asgi_app=app, socketio_path="socket.io")
