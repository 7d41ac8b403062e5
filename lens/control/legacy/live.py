"""The old machine's live view: a Socket.IO server (protocol v5, path /socket.io/, namespace /) on
the control service's port, beside Starlette.

Events: on connect the client gets `connected {machine_id, status, mode}`; `request_status` is
answered with `status_update {machine_id, status, mode, timestamp}`; `test_result` carries every
inspection of the first camera in TESTE mode, at most one a second in RUN (and every manual
trigger's result), with its JPEG as base64 (see ResultFeed.test_result).
"""

from __future__ import annotations

from typing import Any

import socketio
from starlette.types import ASGIApp

from lens.control.legacy.machine import LegacyMachine, utc_timestamp


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

    feed = machine.feed

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await sio.emit("connected", hello(), to=sid)
        feed.clients += 1  # counted once connected (a refused connection has no disconnect)

    @sio.event
    async def disconnect(sid: str, *reason: Any) -> None:
        feed.clients = max(0, feed.clients - 1)

    @sio.on("request_status")
    async def request_status(sid: str, *data: Any) -> None:
        await sio.emit("status_update", {**hello(), "timestamp": utc_timestamp()}, to=sid)

    async def emit(event: str, msg: dict[str, Any]) -> None:
        await sio.emit(event, msg)

    feed.emit = emit
    return socketio.ASGIApp(sio, other_asgi_app=app, socketio_path="socket.io")
