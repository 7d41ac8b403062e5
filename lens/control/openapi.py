"""The OpenAPI 3 document of the control API, built from the route table (`lens.control.app.ROUTES`)
plus the request schemas below; the inspection body schema comes from the pipeline models."""

from __future__ import annotations

from functools import cache
from typing import Any

from lens.config.models import InspectionConfig
from lens.control.errors import CATALOG
from lens.control.service import PROTOCOL_VERSION

_JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_PAGE = [_q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "At most this many")]
PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "run_action": [
        {
            "name": "action",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": ["start", "stop", "restart", "maintenance"]},
        }
    ],
    "image": [
        {"name": "result_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
    ],
    "results": [
        _q("since_id", {"type": "integer", "minimum": 0}, "Rows with a larger id"),
        *_PAGE,
        _q("pass", {"type": "boolean"}, "Only passed (true) or failed (false)"),
        _q("camera", {"type": "string"}, "Only this camera"),
    ],
    "results_latest": [_q("camera", {"type": "string"}, "Only this camera")],
    "logs_stream": [
        _q("since", {"type": "integer", "minimum": 0}, "Entries with a larger log id"),
        _q("follow", {"type": "boolean"}, "Stay open and send new entries"),
        _q("limit", {"type": "integer", "minimum": 0}, "Stop after this many entries (0: no limit)"),
    ],
    "snapshot": [_q("camera", {"type": "string"}, "Camera id (default: the first)")],
    "telemetry": [_q("since", {"type": "integer", "minimum": 0}, "Samples with a larger id"), *_PAGE],
    "audit": [
        _q("since_id", {"type": "integer", "minimum": 0}, "Entries with a larger id"),
        *_PAGE,
        _q("action", {"type": "string"}, "Only this action (session.opened, mode, state, ...)"),
    ],
}


def _bodies() -> dict[str, dict[str, Any]]:
    inspection = InspectionConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        "session_open": {
            "type": "object",
            "additionalProperties": False,
            "required": ["orchestrator_id"],
            "properties": {
                "orchestrator_id": {"type": "string", "minLength": 1, "maxLength": 200},
                "callback_url": {"type": "string", "format": "uri", "pattern": "^https?://"},
            },
        },
        "set_mode": {
            "type": "object",
            "additionalProperties": False,
            "required": ["mode"],
            "properties": {"mode": {"type": "string", "enum": ["RUN", "TEST", "PRODUCAO", "TESTE"]}},
        },
        "trigger": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"camera": {"type": "string"}, "id": {"type": "string"}},
        },
        "put_inspection": inspection,
    }


_OK_STATUS = {"session_open": "201", "trigger": "200"}
_EXTRA_OK = {"trigger": {"202": {"description": "RUN mode: accepted; the result comes on the bus"}}}
_MEDIA = {
    "prometheus": "text/plain",
    "image": "image/jpeg",
    "snapshot": "image/jpeg",
    "logs_stream": "application/x-ndjson",
}


@cache
def document() -> dict[str, Any]:
    from lens.control.app import ROUTES

    bodies = _bodies()
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"type": "string", "enum": list(CATALOG)},
                        "message": {"type": "string"},
                        "details": {"type": "object"},
                    },
                }
            },
        }
    }
    inspection = bodies["put_inspection"]
    schemas.update(inspection.pop("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for method, path, name, access, summary in ROUTES:
        ok = _OK_STATUS.get(name, "200")
        media = _MEDIA.get(name, _JSON)
        responses: dict[str, Any] = {ok: {"description": "OK", "content": {media: {"schema": {}}}}}
        responses.update(_EXTRA_OK.get(name, {}))
        for code, (status, when) in CATALOG.items():
            entry = responses.setdefault(
                str(status), {"description": "", "content": {_JSON: {"schema": _ERROR}}}
            )
            entry["description"] = (
                entry["description"] + "; " if entry["description"] else ""
            ) + f"{code}: {when}"
        op: dict[str, Any] = {"operationId": name, "summary": summary, "responses": responses}
        if access == "session":
            op["security"] = [{"session": []}]
        elif access == "api_key":
            op["security"] = [{"api_key": []}]
        else:
            op["security"] = []
        if name in PARAMETERS:
            op["parameters"] = PARAMETERS[name]
        if name in bodies:
            op["requestBody"] = {"required": name != "trigger", "content": {_JSON: {"schema": bodies[name]}}}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "lens control API",
            "version": PROTOCOL_VERSION,
            "description": "Control service of an AnalyticLens vision machine (protocol 2.1.0). "
            "One orchestrator at a time holds the session; errors are {error: {code, message, details}}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "api_key": {"type": "http", "scheme": "bearer", "description": "The machine API key"},
                "session": {"type": "http", "scheme": "bearer", "description": "The session token"},
            },
        },
    }
