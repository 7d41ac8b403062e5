"""The Flask machine's HTTP routes (SPEC §4b) on the control service's port: same paths, methods,
fields and status codes, `{"success": ...}` bodies. No auth, as the old machine
(`control.legacy_api: false` turns them off); the IP allowlist applies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lens.control.legacy.errors import LegacyHttpError
from lens.control.legacy.machine import LegacyMachine

log = logging.getLogger("lens.control.legacy")

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

    def section(
        self, get: Callable[[], dict[str, Any]], put: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> Handler:
        """`GET|PUT` of one config section: GET answers `get()`, PUT applies the body, `{success}`."""

        async def handle(request: Request) -> dict[str, Any]:
            if request.method == "PUT":
                await put(await self.body(request))
                return {"success": True}
            return get()

        return handle

    async def status(self, request: Request) -> dict[str, Any]:
        return self.m.status()

    async def control(self, request: Request) -> dict[str, Any]:
        body = await self.body(request)
        if "command" not in body:
            raise LegacyHttpError(400, "command is missing")
        return await self.m.commands.run(body["command"], body.get("params") or {})

    async def put_inspection(self, body: dict[str, Any]) -> None:
        """The body's keys over the inspection config in force (`tools` replaced whole)."""
        await self.m.put_inspection({**self.m.inspection_config(), **body})

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
        return {"success": True, **await self.m.sync_logs(body.get("django_url"))}


def legacy_routes(machine: LegacyMachine, limit: int) -> list[Route]:
    api, m = LegacyApi(machine, limit), machine
    table: list[tuple[str, list[str], Handler]] = [
        ("/api/status", ["GET"], api.status),
        ("/api/control", ["POST"], api.control),
        ("/api/source_config", ["GET", "PUT"], api.section(m.source_view, m.put_source)),
        ("/api/trigger_config", ["GET", "PUT"], api.section(m.trigger_config, m.put_trigger)),
        ("/api/inspection_config", ["GET", "PUT"], api.section(m.inspection_config, api.put_inspection)),
        ("/api/logging_config", ["GET", "PUT"], api.section(m.logging_view, m.put_logging)),
        ("/api/error", ["GET", "POST", "DELETE"], api.error),
        ("/api/logs/sync", ["POST"], api.logs_sync),
    ]
    return [Route(path, guarded(handler), methods=methods) for path, methods, handler in table]
