"""The Flask machine's HTTP routes (SPEC §4b) on the control service's port: same paths, methods,
fields and status codes, `{"success": ...}` bodies. No auth, as the old machine
(`control.legacy_api: false` turns them off); the IP allowlist applies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lens.control.legacy.alog import sync
from lens.control.legacy.machine import LegacyHttpError, LegacyMachine

log = logging.getLogger("lens.control.legacy")

SYNC_BUDGET_S = 45.0  # the orchestrator waits 60 s for /api/logs/sync: no new upload starts after this
Handler = Callable[[Request], Awaitable[Any]]


def answer(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def failure(status: int, message: str) -> Response:
    return answer({"success": False, "error": message}, status)


def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The old machine's error shapes: LegacyHttpError with its code, anything unexpected 500."""

    async def run(request: Request) -> Response:
        try:
            return answer(await handler(request))
        except LegacyHttpError as e:
            return failure(e.status, e.message)
        except Exception as e:
            log.exception("legacy %s %s failed", request.method, request.url.path)
            return failure(500, f"{type(e).__name__}: {e}")

    return run


class LegacyApi:
    def __init__(self, machine: LegacyMachine, limit: int) -> None:
        self.m = machine
        self.limit = limit

    async def body(self, request: Request, required: bool = True) -> dict[str, Any]:
        """The JSON object sent (any content type, as Flask's get_json(force) would); 400 otherwise."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limit:
                raise LegacyHttpError(413, f"body over {self.limit} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            if required:
                raise LegacyHttpError(400, "a JSON body is required")
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise LegacyHttpError(400, f"the body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise LegacyHttpError(400, f"the body must be a JSON object, not {type(data).__name__}")
        return data

    async def status(self, request: Request) -> dict[str, Any]:
        return self.m.status()

    async def control(self, request: Request) -> dict[str, Any]:
        body = await self.body(request)
        if "command" not in body:
            raise LegacyHttpError(400, "command is missing")
        return await self.m.command(body["command"], body.get("params") or {})

    async def source_config(self, request: Request) -> dict[str, Any]:
        if request.method == "PUT":
            await self.m.put_source(await self.body(request))
            return {"success": True}
        return self.m.source_config()

    async def trigger_config(self, request: Request) -> dict[str, Any]:
        if request.method == "PUT":
            await self.m.put_trigger(await self.body(request))
            return {"success": True}
        return self.m.trigger_config()

    async def inspection_config(self, request: Request) -> dict[str, Any]:
        if request.method == "PUT":
            body = await self.body(request)
            await self.m.put_inspection({**self.m.inspection_config(), **body})
            return {"success": True}
        return self.m.inspection_config()

    async def logging_config(self, request: Request) -> dict[str, Any]:
        if request.method == "PUT":
            await self.m.put_logging(await self.body(request))
            return {"success": True}
        return self.m.logging_view()

    async def error(self, request: Request) -> dict[str, Any]:
        if request.method == "POST":
            message = (await self.body(request, required=False)).get("error_msg")
            if not isinstance(message, str) or not message.strip():
                raise LegacyHttpError(400, "error_msg is missing")
            self.m.set_error(message.strip())
            return {"success": True, "message": "error set"}
        if request.method == "DELETE":
            if not self.m.clear_error():
                raise LegacyHttpError(404, "no error to clear")
            return {"success": True, "message": "error cleared"}
        status, message = self.m.status_word()
        return {"status": status, "error_msg": message}

    async def logs_sync(self, request: Request) -> dict[str, Any]:
        body = await self.body(request, required=False)
        url = body.get("django_url") or self.m.state.get("django_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise LegacyHttpError(400, f"django_url is not configured (got {url!r}): send it in the body")
        if url != self.m.state.get("django_url"):
            self.m.state.put("django_url", url)
        started = datetime.now()
        counts = await sync(self.m.book, url, self.m.svc.machine_id, budget_s=SYNC_BUDGET_S)
        self.m._audit("logs.sync", django_url=url, started=started.isoformat(), **counts)
        return {"success": True, **counts}


def legacy_routes(machine: LegacyMachine, limit: int) -> list[Route]:
    api = LegacyApi(machine, limit)
    table: list[tuple[str, list[str], Handler]] = [
        ("/api/status", ["GET"], api.status),
        ("/api/control", ["POST"], api.control),
        ("/api/source_config", ["GET", "PUT"], api.source_config),
        ("/api/trigger_config", ["GET", "PUT"], api.trigger_config),
        ("/api/inspection_config", ["GET", "PUT"], api.inspection_config),
        ("/api/logging_config", ["GET", "PUT"], api.logging_config),
        ("/api/error", ["GET", "POST", "DELETE"], api.error),
        ("/api/logs/sync", ["POST"], api.logs_sync),
    ]
    return [Route(path, guarded(handler), methods=methods) for path, methods, handler in table]


LEGACY_PATHS = ("/api/status", "/api/control", "/api/source_config", "/api/trigger_config",
                "/api/inspection_config", "/api/logging_config", "/api/error", "/api/logs/sync")  # fmt: skip
