"""The control service's links to the engine: the dispatcher (state, mode, reload, triggers) over
the run's hub, the supervisor (process table, planned restarts), and the rings (snapshots)."""

from __future__ import annotations

import asyncio
from typing import Any

import cv2
import numpy as np
import zmq
import zmq.asyncio

from lens.config.models import InspectionConfig
from lens.control.errors import ApiError
from lens.engine import msgs
from lens.engine.bus import pack, unpack
from lens.engine.process import RunContext
from lens.engine.ring import Ring

TIMEOUT_S = 5.0


class EngineError(RuntimeError):
    """The dispatcher refused a request (NACK); `code` is a LENS_ code when it gave one."""

    def __init__(self, message: str, code: str = "", issues: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.issues = issues or []


class _Requester:
    """One request at a time on a DEALER; a socket that timed out is replaced (a late answer must
    not be taken for the next request's)."""

    def __init__(self, zctx: zmq.asyncio.Context, endpoint: str, framed: bool) -> None:
        self.zctx, self.endpoint, self.framed = zctx, endpoint, framed
        self.lock = asyncio.Lock()
        self.sock: zmq.asyncio.Socket | None = None

    async def ask(self, parts: tuple[bytes, ...], timeout_s: float) -> list[bytes]:
        async with self.lock:
            if self.sock is None:
                self.sock = self.zctx.socket(zmq.DEALER)
                self.sock.setsockopt(zmq.LINGER, 0)
                self.sock.connect(self.endpoint)
            await self.sock.send_multipart(parts)
            if not await self.sock.poll(int(timeout_s * 1000)):
                self.sock.close(linger=0)
                self.sock = None
                raise ApiError("LENS_ENGINE_UNAVAILABLE", f"the engine did not answer in {timeout_s:.0f} s")
            return list(await self.sock.recv_multipart())

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None


class EngineLink:
    def __init__(self, ctx: RunContext, zctx: zmq.asyncio.Context) -> None:
        self.ctx = ctx
        self.hub = _Requester(zctx, ctx.hub_endpoint, framed=True)
        self.sup = _Requester(zctx, ctx.supervisor_endpoint, framed=False)
        self.rings: dict[str, Ring] = {}

    async def _hub(self, kind: bytes, body: bytes, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
        answer_kind, payload = (await self.hub.ask((kind, body), timeout_s))[:2]
        answer: dict[str, Any] = unpack(payload)
        if answer_kind == msgs.NACK:
            raise EngineError(
                str(answer.get("error", "refused")), str(answer.get("code", "")), answer.get("issues")
            )
        return answer

    async def control(self, **fields: Any) -> dict[str, Any]:
        """Set (or, with no field, query) the engine's `state`, `mode`, `images` and `cameras`."""
        return await self._hub(msgs.CONTROL, pack({k: v for k, v in fields.items() if v is not None}))

    async def reload(self, inspection: InspectionConfig) -> int:
        answer = await self._hub(msgs.RELOAD, inspection.model_dump_json().encode())
        return int(answer["version"])

    async def trigger(self, camera: str | int, trigger_id: str) -> int:
        body = pack({"camera": camera, "id": trigger_id, "source": "manual"})
        return int((await self._hub(msgs.TRIGGER, body))["result_id"])

    async def supervisor(self, cmd: str, timeout_s: float = TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        (payload,) = (await self.sup.ask((pack({"cmd": cmd, **fields}),), timeout_s))[:1]
        answer: dict[str, Any] = unpack(payload)
        if "error" in answer:
            raise EngineError(str(answer["error"]))
        return answer

    def snapshot(self, ring_name: str, quality: int) -> tuple[bytes, int, float] | None:
        """JPEG of the newest complete frame in a ring: (jpeg, frame_id, captured_at), or None if the
        ring has no frame yet. The frame is copied out under its sequence number (never torn)."""
        ring = self.rings.get(ring_name)
        if ring is None:
            for name in [n for n in self.rings if n.rsplit("_g", 1)[0] == ring_name.rsplit("_g", 1)[0]]:
                self.rings.pop(name).close()  # an older generation of the same camera's ring
            ring = self.rings[ring_name] = Ring.attach(ring_name)
        for _ in range(5):
            latest = ring.latest()
            if latest is None:
                return None
            slot, seq = latest
            frame = np.array(ring.view(slot), copy=True)
            frame_id, captured_at = ring.frame_info(slot)
            if ring.valid(slot, seq):
                ok, buf = cv2.imencode(".jpg", frame, (cv2.IMWRITE_JPEG_QUALITY, quality))
                return (buf.tobytes(), frame_id, captured_at) if ok else None
        return None

    def close(self) -> None:
        self.hub.close()
        self.sup.close()
        for ring in self.rings.values():
            ring.close()
        self.rings.clear()
