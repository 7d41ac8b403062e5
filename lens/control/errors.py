"""The control service's error catalog (SPEC §4): every error body is
`{"error": {"code": "LENS_…", "message": "…", "details": {…}}}` with a fixed status per code."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

# code -> (HTTP status, when it is answered). The README's error catalog is generated from this.
CATALOG: dict[str, tuple[int, str]] = {
    "LENS_BAD_REQUEST": (400, "The body is not valid JSON, or a query parameter is malformed"),
    "LENS_UNAUTHORIZED": (401, "No, or a wrong, API key or session token"),
    "LENS_SESSION_EXPIRED": (401, "The session token's lease lapsed (or another session replaced it)"),
    "LENS_FORBIDDEN": (403, "The client address is outside `control.allow`"),
    "LENS_NOT_FOUND": (404, "No such endpoint, camera, result or image"),
    "LENS_METHOD_NOT_ALLOWED": (405, "The endpoint exists, not with this method"),
    "LENS_INVALID_STATE": (409, "Impossible now (start while running, trigger when stopped)"),
    "LENS_PAYLOAD_TOO_LARGE": (413, "The body is larger than `control.max_body_kb`"),
    "LENS_UNSUPPORTED_MEDIA_TYPE": (415, "A body that is not `application/json`"),
    "LENS_INVALID_CONFIG": (422, "The body does not validate; `details.issues` lists every field path"),
    "LENS_BUSY": (423, "Another orchestrator holds the session; `details` names it"),
    "LENS_INTERNAL": (500, "A bug: the message says what failed; the service keeps running"),
    "LENS_SOURCE_UNAVAILABLE": (503, "The camera has no frame to give (offline, not started)"),
    "LENS_ENGINE_UNAVAILABLE": (503, "The engine (dispatcher) did not answer"),
    "LENS_TIMEOUT": (504, "No result within the wait (manual trigger in TEST mode)"),
}


class ApiError(Exception):
    """Raised by a handler; turned into the error body by the app's exception handler."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.status = CATALOG[code][0]
        self.message = message
        self.details = details


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """orjson, numpy-aware; non-string dict keys allowed."""
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return Response(body, status, headers=headers, media_type="application/json")


def error_response(code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    status = CATALOG[code][0]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return json_response(body, status, headers)


def catalog_markdown() -> str:
    lines = ["| code | HTTP | when |", "|---|---|---|"]
    lines += [f"| `{code}` | {status} | {when} |" for code, (status, when) in CATALOG.items()]
    return "\n".join(lines)
