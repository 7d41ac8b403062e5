"""The control service's HTTP API (SPEC §4, protocol 2.1.0), prefix /api/v1; `/metrics` beside it.

Every route is in `ROUTES` with its access level; the OpenAPI document (`lens.control.openapi`)
is built from the same table, so the two cannot drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lens.capture.sources.urls import mask_url
from lens.config.load import ConfigError, validate_data
from lens.config.models import InspectionConfig
from lens.control import metrics
from lens.control.engine import EngineError
from lens.control.errors import ApiError, error_response, json_response
from lens.control.service import PROTOCOL_VERSION, ControlService
from lens.control.session import Session

log = logging.getLogger("lens.control")

MODE_ALIASES = {"RUN": "RUN", "TEST": "TEST", "PRODUCAO": "RUN", "PRODUÇÃO": "RUN", "TESTE": "TEST"}
SECRET_KEYS = ("password", "secret", "token", "api_key")
Handler = Callable[[Request], Awaitable[Response]]


# -- request helpers ---------------------------------------------------------------------------------


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object: 415 if not JSON, 413 if over `limit` bytes, 400 if malformed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(
            "LENS_UNSUPPORTED_MEDIA_TYPE", f"the body must be application/json, not {ctype or 'none'!r}"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError("LENS_PAYLOAD_TOO_LARGE", f"body of {declared} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError("LENS_PAYLOAD_TOO_LARGE", f"body over {limit} bytes")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as e:
        raise ApiError("LENS_BAD_REQUEST", f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError("LENS_BAD_REQUEST", f"the body must be a JSON object, not {type(body).__name__}")
    return body


def fields(
    body: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], required: tuple[str, ...] = ()
) -> None:
    """Unknown keys, missing required keys and wrong types are 422 with one issue per field."""
    issues = [{"path": k, "message": "unknown key"} for k in body if k not in allowed]
    issues += [{"path": k, "message": "required"} for k in required if k not in body]
    for k, t in allowed.items():
        v = body.get(k)
        if v is not None and (not isinstance(v, t) or (isinstance(v, bool) and bool not in _types(t))):
            names = "/".join(x.__name__ for x in _types(t))
            issues.append({"path": k, "message": f"must be {names}, not {type(v).__name__}"})
    if issues:
        raise ApiError(
            "LENS_INVALID_CONFIG", "; ".join(f"{i['path']}: {i['message']}" for i in issues), issues=issues
        )


def _types(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def has_body(request: Request) -> bool:
    """A body was sent (a non-zero Content-Length, or a chunked one)."""
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


def query_int(request: Request, name: str, default: int, lo: int = 0, hi: int = 2**62) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError("LENS_BAD_REQUEST", f"query parameter {name}={raw!r} is not an integer") from None
    if not lo <= v <= hi:
        raise ApiError("LENS_BAD_REQUEST", f"query parameter {name}={v} is out of range {lo}..{hi}")
    return v


def query_bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiError("LENS_BAD_REQUEST", f"query parameter {name}={raw!r} is not true or false")


def masked(obj: Any) -> Any:
    """The config with secrets masked: passwords in URLs, values of secret-named keys."""
    if isinstance(obj, dict):
        return {
            k: ("***" if any(s in k for s in SECRET_KEYS) and not k.endswith("_env") and v else masked(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [masked(v) for v in obj]
    if isinstance(obj, str) and "://" in obj:
        return mask_url(obj)
    return obj


# -- the API -------------------------------------------------------------------------------------------


class ControlApi:
    def __init__(self, svc: ControlService) -> None:
        self.svc = svc
        self.limit = svc.config.control.max_body_kb * 1024

    def session(self, request: Request) -> Session:
        return self.svc.sessions.authenticate(bearer(request))

    def _audit(self, what: str, s: Session, request: Request, **detail: Any) -> None:
        self.svc.audit.record(what, s.orchestrator_id, client_ip(request), s.session_id, **detail)

    # open endpoints

    async def health(self, request: Request) -> Response:
        return json_response(
            {
                "status": "ok",
                "machine_id": self.svc.machine_id,
                "uptime_s": round(time.time() - self.svc.started_at, 3),
            }
        )

    async def heartbeat(self, request: Request) -> Response:
        svc = self.svc
        held = svc.sessions.holder()
        host = svc.monitor.latest() or {}
        return json_response(
            {
                "machine_id": svc.machine_id,
                "name": svc.config.machine.name,
                "protocol_version": PROTOCOL_VERSION,
                "status": svc.state,
                "mode": svc.mode,
                "connection": "busy" if held is not None else "free",
                "orchestrator_id": held.orchestrator_id if held else None,
                "timestamp": time.time(),
                "host": {k: host.get(k) for k in ("cpu_pct", "memory", "disk", "temperature_c", "load_1m")},
            }
        )

    async def prometheus(self, request: Request) -> Response:
        text = metrics.render(self.svc.status())
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(self, request: Request) -> Response:
        from lens.control.openapi import document

        return json_response(document())

    # the session

    async def session_open(self, request: Request) -> Response:
        body = await read_json(request, self.limit)
        fields(body, {"orchestrator_id": str, "callback_url": str}, required=("orchestrator_id",))
        oid = body["orchestrator_id"].strip()
        if not oid or len(oid) > 200:
            raise ApiError(
                "LENS_INVALID_CONFIG",
                "orchestrator_id: must be 1..200 characters",
                issues=[{"path": "orchestrator_id", "message": "must be 1..200 characters"}],
            )
        url = body.get("callback_url")
        if url is not None and not url.startswith(("http://", "https://")):
            raise ApiError(
                "LENS_INVALID_CONFIG",
                f"callback_url: {url!r} is not an http(s) URL",
                issues=[{"path": "callback_url", "message": "not an http:// or https:// URL"}],
            )
        ctl = self.svc.config.control
        s, token = self.svc.sessions.open(bearer(request), oid, url, client_ip(request))
        return json_response(
            {
                "session_token": token,
                "session_id": s.session_id,
                "lease_s": ctl.lease_s,
                "heartbeat_interval_s": ctl.heartbeat_s,
                "machine_id": self.svc.machine_id,
                "protocol_version": PROTOCOL_VERSION,
            },
            201,
        )

    async def session_heartbeat(self, request: Request) -> Response:
        s = self.session(request)
        if has_body(request):  # none is needed; one that is sent must still be well-formed
            fields(await read_json(request, self.limit), {})
        return json_response(
            {"session_id": s.session_id, "lease_s": s.lease_s, "expires_in_s": round(s.expires_in(), 3)}
        )

    async def session_close(self, request: Request) -> Response:
        s = self.session(request)
        self.svc.sessions.release(s)
        return json_response({"released": True, "session_id": s.session_id})

    # session-only

    async def status(self, request: Request) -> Response:
        self.session(request)
        return json_response(self.svc.status())

    async def set_mode(self, request: Request) -> Response:
        s = self.session(request)
        body = await read_json(request, self.limit)
        fields(body, {"mode": str}, required=("mode",))
        mode = MODE_ALIASES.get(body["mode"].upper())
        if mode is None:
            raise ApiError(
                "LENS_INVALID_CONFIG",
                f"mode: {body['mode']!r} is not RUN, TEST, PRODUCAO or TESTE",
                issues=[{"path": "mode", "message": "must be RUN or TEST (PRODUCAO, TESTE)"}],
            )
        previous = self.svc.mode
        answer = await self._engine(self.svc.engine.control(mode=mode))
        if previous != mode:
            self._audit("mode", s, request, previous=previous, mode=mode)
        return json_response({"mode": answer["mode"], "previous": previous})

    async def run_action(self, request: Request) -> Response:
        s = self.session(request)
        action = request.path_params["action"]
        state = self.svc.state
        allowed = {
            "start": ("stopped", "maintenance"),
            "stop": ("running", "error", "maintenance"),
            "restart": ("running", "error", "stopped"),
            "maintenance": ("running", "error", "stopped"),
        }
        if action not in allowed:
            raise ApiError("LENS_NOT_FOUND", f"no run action {action!r} (start, stop, restart, maintenance)")
        if state not in allowed[action]:
            hint = " (fix the cause or use run/restart)" if state == "error" else ""
            raise ApiError(
                "LENS_INVALID_STATE",
                f"cannot {action} while {state}{hint}",
                state=state,
                allowed_from=list(allowed[action]),
            )
        engine = self.svc.engine
        if action == "start":
            await self._engine(engine.control(state="running"))
        elif action in ("stop", "maintenance"):
            await self._engine(engine.control(state="stopped" if action == "stop" else "maintenance"))
        else:
            await self._engine(engine.control(state="stopped"))
            restarted = (await self._engine(engine.supervisor("restart", timeout_s=30.0, group="capture")))[
                "restarted"
            ]
            await self._engine(engine.control(state="running"))
            self._audit("state", s, request, command=action, previous=state, restarted=restarted)
            return json_response({"state": self.svc.state, "previous": state, "restarted": restarted})
        self._audit("state", s, request, command=action, previous=state)
        return json_response({"state": self.svc.state, "previous": state})

    async def get_config(self, request: Request) -> Response:
        self.session(request)
        data = self.svc.config.model_dump(mode="json")
        data["inspection"] = self.svc.current_inspection()[1]
        return json_response(masked(data))

    async def get_inspection(self, request: Request) -> Response:
        self.session(request)
        version, inspection = self.svc.current_inspection()
        return json_response({"version": version, "inspection": inspection})

    async def put_inspection(self, request: Request) -> Response:
        s = self.session(request)
        body = await read_json(request, self.limit)
        base = self.svc.ctx.extra.get("base_dir")
        try:
            cfg = validate_data(body, InspectionConfig, "inspection", base_dir=base)
        except ConfigError as e:
            issues = [{"path": i.path, "message": i.message} for i in e.issues]
            raise ApiError(
                "LENS_INVALID_CONFIG",
                "; ".join(f"{i['path']}: {i['message']}" for i in issues),
                issues=issues,
            ) from None
        previous, _ = self.svc.current_inspection()
        version = await self._engine(self.svc.engine.reload(cfg))
        self._audit(
            "config.inspection",
            s,
            request,
            previous_version=previous,
            version=version,
            tools=[t.name for t in cfg.tools],
        )
        # as the engine keeps it: `workers` changes only with a restart
        in_force, inspection = self.svc.current_inspection()
        return json_response({"version": in_force, "inspection": inspection})

    async def trigger(self, request: Request) -> Response:
        self.session(request)
        body = await read_json(request, self.limit) if has_body(request) else {}
        fields(body, {"camera": (str, int), "id": str})
        svc = self.svc
        camera = body.get("camera", svc.ctx.cameras[0])
        if camera not in svc.ctx.cameras and not (
            isinstance(camera, int) and 0 <= camera < len(svc.ctx.cameras)
        ):
            raise ApiError("LENS_NOT_FOUND", f"no camera {camera!r} (cameras: {', '.join(svc.ctx.cameras)})")
        tid = body.get("id") or svc.next_trigger_id()
        rid = await self._engine(svc.engine.trigger(camera, tid))
        if svc.mode != "TEST":
            return json_response({"result_id": rid, "trigger_id": tid, "mode": svc.mode}, 202)
        fut = svc.wait_result(rid)
        early = svc.memlog.find_result(rid)
        if early is not None and not fut.done():
            fut.set_result(early)
        wait = svc.config.control.trigger_wait_s
        try:
            env = await asyncio.wait_for(fut, wait)
        except TimeoutError:
            raise ApiError(
                "LENS_TIMEOUT",
                f"no result for trigger {tid} (result {rid}) within {wait:g} s",
                result_id=rid,
                trigger_id=tid,
            ) from None
        finally:
            svc.waiters.pop(rid, None)
        return json_response({"result_id": rid, "trigger_id": tid, "mode": "TEST", "result": env})

    async def results_latest(self, request: Request) -> Response:
        self.session(request)
        camera = request.query_params.get("camera") or None
        env = self.svc.memlog.latest_result(camera)
        if env is None:
            raise ApiError("LENS_NOT_FOUND", "no result yet" + (f" for camera {camera}" if camera else ""))
        return json_response(env)

    async def results(self, request: Request) -> Response:
        self.session(request)
        since = query_int(request, "since_id", 0)
        limit = query_int(request, "limit", 100, 1, 1000)
        passed = query_bool(request, "pass")
        camera = request.query_params.get("camera") or None
        rows = await asyncio.to_thread(self.svc.query_results, since, limit, passed, camera)
        return json_response(
            {
                "results": rows,
                "next_since_id": rows[-1]["id"] if rows else since,
                "source": "store" if self.svc.config.outputs.store else "memory",
            }
        )

    async def logs_stream(self, request: Request) -> Response:
        self.session(request)
        since = query_int(request, "since", 0)
        follow = bool(query_bool(request, "follow"))
        limit = query_int(request, "limit", 0, 0, 10_000_000) or None
        return StreamingResponse(
            self.svc.memlog.stream(since, follow, limit), media_type="application/x-ndjson"
        )

    async def image(self, request: Request) -> Response:
        self.session(request)
        try:
            rid = int(request.path_params["result_id"])
        except ValueError:
            raise ApiError("LENS_BAD_REQUEST", "result_id must be an integer") from None
        img = self.svc.memlog.image(rid)
        if img is None:
            raise ApiError(
                "LENS_NOT_FOUND",
                f"no image of result {rid} in the log (policy "
                f"{self.svc.config.control.log.images!r}, or evicted)",
            )
        return Response(img.jpeg, media_type="image/jpeg", headers={"X-Lens-Camera": img.camera})

    async def snapshot(self, request: Request) -> Response:
        self.session(request)
        svc = self.svc
        camera = request.query_params.get("camera") or svc.ctx.cameras[0]
        if camera not in svc.ctx.cameras:
            raise ApiError("LENS_NOT_FOUND", f"no camera {camera!r} (cameras: {', '.join(svc.ctx.cameras)})")
        rings = (await self._engine(svc.engine.control())).get("rings", {})
        if camera not in rings:
            raise ApiError(
                "LENS_SOURCE_UNAVAILABLE", f"camera {camera} has no ring yet (its source is not open)"
            )
        quality = next(c.capture.jpeg_quality for c in svc.config.cameras if c.id == camera)
        shot = await asyncio.to_thread(svc.engine.snapshot, rings[camera], quality)
        if shot is None:
            raise ApiError("LENS_SOURCE_UNAVAILABLE", f"camera {camera} has not produced a frame yet")
        jpeg, frame_id, captured_at = shot
        headers = {
            "X-Lens-Camera": camera,
            "X-Lens-Frame-Id": str(frame_id),
            "X-Lens-Captured-At": f"{captured_at:.6f}",
        }
        return Response(jpeg, media_type="image/jpeg", headers=headers)

    async def telemetry(self, request: Request) -> Response:
        self.session(request)
        return json_response(
            self.svc.monitor.history(
                query_int(request, "since", 0), query_int(request, "limit", 100, 1, 1000)
            )
        )

    async def audit(self, request: Request) -> Response:
        self.session(request)
        since = query_int(request, "since_id", 0)
        rows = self.svc.audit.query(
            since, query_int(request, "limit", 100, 1, 1000), request.query_params.get("action")
        )
        return json_response({"entries": rows, "next_since_id": rows[-1]["id"] if rows else since})

    async def _engine(self, coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except EngineError as e:
            if e.issues:
                raise ApiError(
                    "LENS_INVALID_CONFIG", str(e), issues=[{"path": "", "message": i} for i in e.issues]
                ) from None
            raise ApiError(e.code or "LENS_INVALID_STATE", str(e)) from None


# (method, path, handler name, access, summary) — the OpenAPI document is built from this table
ROUTES: list[tuple[str, str, str, str, str]] = [
    ("GET", "/api/v1/health", "health", "open", "Liveness of the control service"),
    ("GET", "/api/v1/heartbeat", "heartbeat", "open", "Machine id, protocol, status, mode, connection, host"),
    ("GET", "/metrics", "prometheus", "open", "Prometheus text exposition"),
    ("GET", "/api/v1/openapi.json", "openapi", "open", "This API as OpenAPI 3"),
    ("POST", "/api/v1/session", "session_open", "api_key", "Open the orchestrator session"),
    ("POST", "/api/v1/session/heartbeat", "session_heartbeat", "session", "Renew the session lease"),
    ("DELETE", "/api/v1/session", "session_close", "session", "Release the session"),
    ("GET", "/api/v1/status", "status", "session", "State, mode, counters, processes, host, outputs"),
    ("PUT", "/api/v1/mode", "set_mode", "session", "Set the mode: RUN or TEST (PRODUCAO, TESTE)"),
    ("POST", "/api/v1/run/{action}", "run_action", "session", "start, stop, restart, maintenance"),
    ("GET", "/api/v1/config", "get_config", "session", "The effective config, secrets masked"),
    ("GET", "/api/v1/inspection", "get_inspection", "session", "The inspection config in force"),
    ("PUT", "/api/v1/inspection", "put_inspection", "session", "Replace the tools (validated, hot-reloaded)"),
    ("POST", "/api/v1/trigger", "trigger", "session", "Manual trigger; in TEST mode answers with the result"),
    ("GET", "/api/v1/results/latest", "results_latest", "session", "The newest result"),
    ("GET", "/api/v1/results", "results", "session", "Result history, paged by id"),
    ("GET", "/api/v1/logs/stream", "logs_stream", "session", "NDJSON of the in-memory log, optionally live"),
    ("GET", "/api/v1/images/{result_id}", "image", "session", "JPEG of a logged result"),
    ("GET", "/api/v1/snapshot", "snapshot", "session", "The camera's newest frame as JPEG"),
    ("GET", "/api/v1/telemetry", "telemetry", "session", "Host monitor history, paged"),
    ("GET", "/api/v1/audit", "audit", "session", "Audit log, paged"),
]


class Allowlist:
    """ASGI middleware: clients outside `control.allow` get 403 LENS_FORBIDDEN, whatever the path (a
    WebSocket is closed before it is accepted, which the server answers with 403)."""

    def __init__(self, app: ASGIApp, cidrs: list[str]) -> None:
        self.app = app
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = (scope.get("client") or ("", 0))[0]
            try:
                addr = ipaddress.ip_address(host)
                ok = any(addr in n for n in self.networks)
            except ValueError:
                ok = False
            if not ok and scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            if not ok:
                message = f"client {host or '?'} is not in control.allow"
                path = scope.get("path", "")
                if path.startswith("/api/") and not path.startswith("/api/v1"):  # the old machine's shape
                    response: Response = Response(
                        orjson.dumps({"success": False, "error": message}), 403, media_type="application/json"
                    )
                else:
                    response = error_response("LENS_FORBIDDEN", message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(svc: ControlService) -> ASGIApp:
    """The ASGI app: /api/v1 and /metrics; with `control.legacy_api`, the old machine's /api/...
    routes and its Socket.IO live view too; all behind the allowlist."""
    api = ControlApi(svc)
    routes = [Route(path, getattr(api, name), methods=[method]) for method, path, name, _, _ in ROUTES]
    if svc.legacy is not None:
        from lens.control.legacy.routes import legacy_routes

        routes += legacy_routes(svc.legacy, api.limit)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.code, exc.message, exc.details)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return error_response(
                "LENS_METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.url.path}"
            )
        return error_response("LENS_NOT_FOUND", f"no endpoint {request.method} {request.url.path}")

    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response("LENS_INTERNAL", f"{type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app: ASGIApp = Starlette(
        routes=routes,
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal},
        lifespan=lifespan,
    )
    if svc.legacy is not None:
        from lens.control.legacy.live import with_live_view

        app = with_live_view(app, svc.legacy)
    return Allowlist(app, svc.config.control.allow)
