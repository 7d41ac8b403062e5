"""The AnalyticLens Flask machine's contract (SPEC §4b) served by a real `lens run`: every legacy
route and command with its exact fields and codes, the Socket.IO live view with a python-socketio
client, `.alog` upload to a loopback orchestrator, and legacy changes surviving a restart."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import socketio

from tests.control.harness import Lens, camera, no_leaks_but_shared, running, shared
from tests.control.test_legacy_alog import Orchestrator
from tests.lensrun import free_port

no_leaks = no_leaks_but_shared  # the module's shared run is checked when it ends

STATUS_KEYS = {
    "machine_id", "status", "mode", "connection_status", "error_msg", "timestamp", "source_config",
    "trigger_config", "logging_config", "logging_buffer_size", "logs_count", "trigger_info",
    "source_available",
}  # fmt: skip
# tools as the orchestrator's online editor sends them: no `id`, order_index, floats, UI defaults
LEGACY_TOOLS: list[dict[str, Any]] = [
    {"name": "Filtro Grayscale", "type": "grayscale", "order_index": 0, "method": "luminance",
     "normalize": False, "inspec_pass_fail": False, "ROI": {"x": 0, "y": 0, "w": 160, "h": 120}},
    {"name": "Contagem de tampas", "type": "blob", "order_index": 1, "inspec_pass_fail": True,
     "ROI": {"shape": "rect", "rect": {"x": 0.0, "y": 0.0, "w": 160.0, "h": 120.0}},
     "th_min": 127, "th_max": 255, "area_min": 5, "area_max": 1e12,
     "blob_count_test": True, "test_blob_count_min": 4, "test_blob_count_max": 4,
     "total_area_test": False, "test_total_area_min": 0, "test_total_area_max": 1e12},
]  # fmt: skip


@pytest.fixture(scope="module")
def lens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lens]:
    tmp = tmp_path_factory.mktemp("legacy")
    with shared(lambda: Lens(tmp, [camera("cam0")], {"test_rate_hz": 20})) as run:
        yield run


def control(lens: Lens, command: str, status: int = 200, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = lens.ok(
        "POST", "/api/control", json={"command": command, "params": params}, status=status
    )
    return body


def legacy(lens: Lens) -> dict[str, Any]:
    body: dict[str, Any] = lens.ok("GET", "/api/status")
    return body


def failed(lens: Lens, method: str, path: str, status: int, **kw: Any) -> str:
    """The old machine's error shape, exactly {"success": false, "error": "..."}; returns the message."""
    r = lens.request(method, path, **kw)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    body = r.json()
    assert set(body) == {"success", "error"} and body["success"] is False, body
    assert isinstance(body["error"], str) and body["error"]
    message: str = body["error"]
    return message


def wait_status(lens: Lens, status: str) -> dict[str, Any]:
    return lens.wait(lambda: (s := legacy(lens))["status"] == status and s, 30.0, f"status {status}")


def test_status_has_every_field_the_orchestrator_reads(lens: Lens) -> None:
    wait_status(lens, "running")
    s = lens.wait(lambda: (x := legacy(lens))["source_available"] and x["frame"] >= 1 and x, 30, "frames")
    assert set(s) >= STATUS_KEYS, STATUS_KEYS - set(s)
    assert s["machine_id"] == "vm_ctl" and s["mode"] == "RUN" and s["error_msg"] == ""
    assert s["logging_config"] == {
        "enabled": False, "mode": "keep_last", "max_logs": 1000, "policy": "ALL", "batch_size": 20,
        "batch_ms": 500,
    }  # fmt: skip
    assert isinstance(s["logging_buffer_size"], int) and isinstance(s["logs_count"], int)
    assert s["trigger_config"] == {"type": "continuous", "interval_ms": 0}
    assert s["trigger_info"] == {"type": "continuous", "interval_ms": 0, "waiting_for_trigger": False}
    assert s["source_config"]["type"] == "synthetic" and s["source_config"]["resolution"] == [160, 120]
    assert s["source_available"] is True
    assert s["frame"] >= 1 and s["aprovados"] + s["reprovados"] == s["frame"]


def test_commands_state_machine_and_codes(lens: Lens) -> None:
    assert "unknown command 'fly'" in failed(
        lens, "POST", "/api/control", 400, json={"command": "fly", "params": {}}
    )
    assert "not valid JSON" in failed(lens, "POST", "/api/control", 400, content=b"{nope")
    assert control(lens, "change_mode", mode="TESTE") == {"success": True, "new_mode": "TESTE"}
    assert wait_status(lens, "idle")["mode"] == "TESTE"
    assert "TESTE or RUN" in failed(
        lens, "POST", "/api/control", 400, json={"command": "change_mode", "params": {"mode": "FAST"}}
    )
    assert control(lens, "start_inspection") == {"success": True}
    wait_status(lens, "running")
    assert control(lens, "start_inspection") == {"success": True, "message": "inspection already running"}
    assert "only when trigger_config.type is 'trigger'" in failed(
        lens, "POST", "/api/control", 400, json={"command": "trigger", "params": {}}
    )
    assert control(lens, "stop_inspection") == {"success": True}
    wait_status(lens, "idle")
    assert control(lens, "change_mode", mode="RUN") == {"success": True, "new_mode": "RUN"}
    assert control(lens, "start_inspection") == {"success": True}
    wait_status(lens, "running")


def test_error_route_blocks_start_until_cleared(lens: Lens) -> None:
    assert lens.ok("GET", "/api/error") == {"status": "running", "error_msg": ""}
    assert "error_msg is missing" in failed(lens, "POST", "/api/error", 400, json={})
    assert lens.ok("POST", "/api/error", json={"error_msg": "lamp broken"}) == {
        "success": True, "message": "error set",
    }  # fmt: skip
    assert lens.ok("GET", "/api/error") == {"status": "error", "error_msg": "lamp broken"}
    assert legacy(lens)["status"] == "error"
    control(lens, "stop_inspection")
    assert "lamp broken" in failed(
        lens, "POST", "/api/control", 400, json={"command": "start_inspection", "params": {}}
    )
    assert lens.ok("DELETE", "/api/error") == {"success": True, "message": "error cleared"}
    assert "no error to clear" in failed(lens, "DELETE", "/api/error", 404)
    control(lens, "start_inspection")
    wait_status(lens, "running")


def test_trigger_config_and_the_trigger_command(lens: Lens) -> None:
    assert "too short" in failed(
        lens, "PUT", "/api/trigger_config", 500, json={"type": "continuous", "interval_ms": 50}
    )
    assert "type is missing" in failed(lens, "PUT", "/api/trigger_config", 500, json={"interval_ms": 500})
    assert "not a trigger type" in failed(lens, "PUT", "/api/trigger_config", 500, json={"type": "cron"})
    assert lens.ok("PUT", "/api/trigger_config", json={"type": "trigger"}) == {"success": True}
    assert lens.ok("GET", "/api/trigger_config")["type"] == "trigger"
    wait_status(lens, "running")
    assert legacy(lens)["trigger_info"]["waiting_for_trigger"] is True
    answer = control(lens, "trigger")
    assert answer["success"] is True and answer["message"] == "Trigger solicitado"
    rid = answer["result_id"]
    lens.run.wait_for(lambda: any(r["result_id"] == rid for r in lens.run.results), 30, f"result {rid}")
    result = next(r for r in lens.run.results if r["result_id"] == rid)
    assert result["trigger"] == "manual" and "error" not in result
    assert lens.ok("PUT", "/api/trigger_config", json={"type": "continuous", "interval_ms": 100}) == {
        "success": True
    }
    assert lens.ok("GET", "/api/trigger_config") == {"type": "continuous", "interval_ms": 100}


def test_inspection_config_tools_as_the_orchestrator_sends_them(lens: Lens) -> None:
    assert lens.ok("PUT", "/api/inspection_config", json={"tools": LEGACY_TOOLS}) == {"success": True}
    assert lens.ok("GET", "/api/inspection_config")["tools"] == LEGACY_TOOLS
    token = lens.open_session("orch-legacy")
    try:
        native = lens.ok("GET", "/api/v1/config", token)["inspection"]["tools"]
        assert [t["type"] for t in native] == ["grayscale", "blob"]
        blob = native[1]
        version = lens.ok("GET", "/api/v1/inspection", token)["version"]
    finally:
        lens.ok("DELETE", "/api/v1/session", token)
    # results under the new version: pass exactly when the legacy blob test (4 blobs) passes
    start = len(lens.run.results)
    lens.run.wait_for(
        lambda: sum(r["inspection_version"] == version for r in lens.run.results[start:]) >= 5, 30, "results"
    )
    for r in [r for r in lens.run.results[start:] if r["inspection_version"] == version]:
        count = r["tools"][blob["name"]]["measures"]["count"]
        assert r["pass"] is (count == 4), r
    assert "cannot apply the inspection config" in failed(
        lens, "PUT", "/api/inspection_config", 500, json={"tools": [{"name": "x", "type": "laser"}]}
    )
    assert lens.ok("GET", "/api/inspection_config")["tools"] == LEGACY_TOOLS  # unchanged


def test_config_tool_and_delete_tool(lens: Lens) -> None:
    lens.ok("PUT", "/api/inspection_config", json={"tools": [{**LEGACY_TOOLS[0], "id": 1}]})
    added = control(lens, "config_tool", **{**LEGACY_TOOLS[1], "id": 2})
    assert added == {"success": True, "tool_id": 2, "tool_name": "Contagem de tampas", "action": "added",
                     "total_tools": 2}  # fmt: skip
    updated = control(lens, "config_tool", **{**LEGACY_TOOLS[1], "id": 2, "area_min": 10})
    assert updated["action"] == "updated" and updated["total_tools"] == 2
    assert lens.ok("GET", "/api/inspection_config")["tools"][1]["area_min"] == 10
    clash = control(lens, "config_tool", **{**LEGACY_TOOLS[0], "id": 2, "name": "Outro"})
    assert clash["tool_id"] == 3 and clash["action"] == "added"  # id 2 is another tool's
    assert "name is missing" in failed(
        lens, "POST", "/api/control", 500, json={"command": "config_tool", "params": {"id": 9}}
    )
    assert control(lens, "delete_tool", id=3) == {
        "success": True, "tool_id": 3, "tool_name": "Outro", "action": "deleted", "total_tools": 2,
    }  # fmt: skip
    assert "no tool with id 42" in failed(
        lens, "POST", "/api/control", 500, json={"command": "delete_tool", "params": {"id": 42}}
    )
    assert "params.id is missing" in failed(
        lens, "POST", "/api/control", 400, json={"command": "delete_tool", "params": {}}
    )
    assert "not an integer" in failed(
        lens, "POST", "/api/control", 400, json={"command": "delete_tool", "params": {"id": "two"}}
    )


def test_tools_changed_through_api_v1_show_as_native_tools(lens: Lens) -> None:
    """Once the tools change through /api/v1, the legacy view shows them (not the last legacy PUT),
    also after results of the new version went through the inspection log."""
    lens.ok("PUT", "/api/inspection_config", json={"tools": LEGACY_TOOLS})
    lens.ok("PUT", "/api/logging_config", json={"enabled": True, "policy": "ALL", "batch_size": 1})
    token = lens.open_session("orch-legacy")
    try:
        native = [{"name": "only_blob", "type": "blob", "params": {"th_min": 128}}]
        version = lens.ok("PUT", "/api/v1/inspection", token, json={"tools": native})["version"]
    finally:
        lens.ok("DELETE", "/api/v1/session", token)
    start = len(lens.run.results)
    lens.run.wait_for(
        lambda: any(r["inspection_version"] == version for r in lens.run.results[start:]), 30, "new version"
    )
    logged = legacy(lens)["logs_count"]
    lens.wait(lambda: legacy(lens)["logs_count"] >= logged + 5, 30, "results of the new version logged")
    try:
        tools = lens.ok("GET", "/api/inspection_config")["tools"]
        assert [(t["id"], t["name"], t["type"], len(t["native"])) for t in tools] == [
            (0, "only_blob", "blob", 1)
        ]
    finally:
        lens.ok("PUT", "/api/logging_config", json={"enabled": False})
        control(lens, "clear_logs")
        lens.ok("PUT", "/api/inspection_config", json={"tools": LEGACY_TOOLS})


def test_logging_policy_logs_sync_and_clear(lens: Lens) -> None:
    assert "logging_config" in failed(lens, "PUT", "/api/logging_config", 500, json={"policy": "SOME"})
    patch = {
        "enabled": True,
        "policy": "ALL",
        "max_logs": 5,
        "mode": "keep_last",
        "batch_size": 2,
        "batch_ms": 50,
    }
    assert lens.ok("PUT", "/api/logging_config", json=patch) == {"success": True}
    view = lens.ok("GET", "/api/logging_config")
    assert {k: view[k] for k in patch} == patch and isinstance(view["buffer_size"], int)
    lens.wait(lambda: legacy(lens)["logs_count"] == 5, 30, "5 logs kept (keep_last, max_logs 5)")
    lens.ok("PUT", "/api/logging_config", json={"enabled": False})
    assert "django_url is not configured" in failed(lens, "POST", "/api/logs/sync", 400, json={})
    bad = failed(lens, "POST", "/api/logs/sync", 400, json={"django_url": "http://"})
    assert bad == "django_url is not configured (got 'http://'): send it in the body"
    assert "django_url is not configured" in failed(lens, "POST", "/api/logs/sync", 400, json={})  # not saved
    orch = Orchestrator(free_port())
    orch.up()
    try:
        answer = lens.ok("POST", "/api/logs/sync", json={"django_url": orch.url})
        assert answer == {"success": True, "uploaded": 5, "failed": 0, "remaining": 0, "before": 5}
    finally:
        orch.down()
    assert len(orch.accepted) == 5
    for up in orch.accepted:
        assert up.path == "/api/logs/upload" and up.machine_id == "vm_ctl"
        assert up.filename.endswith(f"_{up.meta['id']}.alog")
        meta, jpeg = up.meta, up.jpeg
        assert set(meta) == {"id", "timestamp", "approved", "width", "height", "result"}
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape[:2] == (meta["height"], meta["width"]) == (120, 160)
        result = meta["result"]
        assert {"inspection_summary", "timestamp", "aprovados", "reprovados", "frame", "time", "tools",
                "result"} <= set(result)  # fmt: skip
        assert meta["approved"] is result["inspection_summary"]["overall_pass"]
    assert legacy(lens)["logs_count"] == 0
    assert control(lens, "clear_logs") == {"success": True, "removed": 0, "errors": 0, "remaining": 0}


class LiveClient:
    """A python-socketio client of the live view that keeps the events it receives."""

    def __init__(self, lens: Lens) -> None:
        self.events: dict[str, list[Any]] = {"connected": [], "status_update": [], "test_result": []}
        self.got = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        for name in self.events:

            def handler(data: Any = None, name: str = name) -> None:
                with self.got:
                    self.events[name].append(data)
                    self.got.notify_all()

            self.client.on(name, handler)
        self.client.connect(lens.url, transports=["websocket"], wait_timeout=20)

    def wait_for(self, name: str, n: int = 1, cond: Any = None) -> list[Any]:
        """The events `name` once there are `n` (satisfying `cond`, if given)."""

        def enough() -> bool:
            return sum(cond is None or cond(e) for e in self.events[name]) >= n

        with self.got:
            assert self.got.wait_for(enough, 30), f"no {n} {name} events: {self.events}"
            return self.events[name]


@contextlib.contextmanager
def live_client(lens: Lens) -> Iterator[LiveClient]:
    live = LiveClient(lens)
    try:
        yield live
    finally:
        live.client.disconnect()


def test_live_view_over_socketio(lens: Lens) -> None:
    control(lens, "change_mode", mode="TESTE")
    control(lens, "start_inspection")
    with live_client(lens) as live:
        hello = live.wait_for("connected")[0]
        assert hello == {"machine_id": "vm_ctl", "status": "running", "mode": "TESTE"}
        live.client.emit("request_status")
        update = live.wait_for("status_update")[0]
        assert {k: update[k] for k in ("machine_id", "status", "mode")} == hello and update["timestamp"]
        results = list(live.wait_for("test_result", 3))
    first = results[0]
    for key in ("aprovados", "reprovados", "frame", "time", "tools", "result", "timestamp", "source_type",
                "mode", "image_base64", "mime", "resolution"):  # fmt: skip
        assert key in first, key
    assert first["mode"] == "TESTE" and first["mime"] == "image/jpeg" and first["resolution"] == [160, 120]
    assert first["time"].endswith("ms")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(first["image_base64"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape[:2] == (120, 160)
    frames = [r["frame"] for r in results]
    assert frames == sorted(frames) and frames[-1] > frames[0]
    assert all(r["aprovados"] + r["reprovados"] == r["frame"] for r in results)
    for r in results:
        assert all({"tool_id", "tool_name", "tool_type", "pass_fail"} <= set(t) for t in r["result"])
    control(lens, "change_mode", mode="RUN")
    control(lens, "start_inspection")


def test_every_trigger_result_reaches_the_live_view_in_run(lens: Lens) -> None:
    """RUN shows at most one result a second, but never hides a manual trigger's."""
    lens.ok("PUT", "/api/trigger_config", json={"type": "trigger"})
    wait_status(lens, "running")
    try:
        with live_client(lens) as live:
            live.wait_for("connected")
            rids = {control(lens, "trigger")["result_id"] for _ in range(3)}
            shown = live.wait_for("test_result", 3, lambda m: m["result_id"] in rids)
        assert {m["mode"] for m in shown if m["result_id"] in rids} == {"RUN"}
    finally:
        lens.ok("PUT", "/api/trigger_config", json={"type": "continuous", "interval_ms": 100})


def test_source_config_reopens_the_camera_and_fails_into_error(lens: Lens, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((60, 80), 50 * (i + 1), np.uint8))
    assert lens.ok("PUT", "/api/source_config", json={"type": "pasta", "folder_path": str(folder)}) == {
        "success": True
    }
    src = lens.ok("GET", "/api/source_config")
    assert src["type"] == "pasta" and src["folder_path"] == str(folder)
    start = len(lens.run.images)
    lens.run.wait_for(
        lambda: any((i["width"], i["height"]) == (80, 60) for i in lens.run.images[start:]),
        30,
        "an image of the folder's size",
    )
    assert "rtsp_url: empty" in failed(lens, "PUT", "/api/source_config", 500, json={"type": "camera_IP"})
    s = legacy(lens)
    assert s["status"] == "error" and "rtsp_url" in s["error_msg"]
    assert lens.ok("GET", "/api/source_config")["type"] == "pasta"  # not applied, not saved
    missing = str(tmp_path / "nowhere")
    assert "did not open" in failed(lens, "PUT", "/api/source_config", 500, json={"folder_path": missing})
    assert legacy(lens)["source_available"] is False
    assert lens.ok("PUT", "/api/source_config", json={"folder_path": str(folder)}) == {"success": True}
    assert legacy(lens)["error_msg"] == ""  # a good source clears the error


def test_changes_survive_a_restart_and_show_in_api_v1(tmp_path: Path) -> None:
    trigger = {"type": "continuous", "interval_ms": 250}
    logging = {"enabled": True, "mode": "keep_first", "max_logs": 7, "policy": "REJECTED", "batch_size": 3,
               "batch_ms": 100}  # fmt: skip
    with running(tmp_path) as lens:
        lens.ok("PUT", "/api/trigger_config", json=trigger)
        lens.ok("PUT", "/api/inspection_config", json={"tools": LEGACY_TOOLS})
        lens.ok("PUT", "/api/logging_config", json=logging)
    assert (tmp_path / "var" / "legacy.json").exists()
    with running(tmp_path) as lens:
        assert lens.ok("GET", "/api/trigger_config") == trigger
        assert lens.ok("GET", "/api/inspection_config")["tools"] == LEGACY_TOOLS
        assert lens.ok("GET", "/api/logging_config")["max_logs"] == 7
        token = lens.open_session()
        cfg = lens.ok("GET", "/api/v1/config", token)
        assert cfg["cameras"][0]["trigger"] == {"type": "continuous", "interval_ms": 250.0}
        assert [t["type"] for t in cfg["inspection"]["tools"]] == ["grayscale", "blob"]


def test_legacy_api_off_and_allowlist(tmp_path: Path) -> None:
    (tmp_path / "off").mkdir()
    (tmp_path / "deny").mkdir()
    with running(tmp_path / "off", control={"legacy_api": False}) as lens:
        r = lens.get("/api/status")
        assert r.status_code == 404
        assert lens.get("/socket.io/?EIO=4&transport=polling").status_code == 404
    with running(tmp_path / "deny", control={"allow": ["10.9.9.0/24"]}) as lens:
        assert "not in control.allow" in failed(lens, "GET", "/api/status", 403)
        assert lens.get("/socket.io/?EIO=4&transport=polling").status_code == 403
        client = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(lens.url, transports=["websocket"], wait_timeout=5)
        client.disconnect()
