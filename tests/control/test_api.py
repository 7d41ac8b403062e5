"""The control API end to end (SPEC §4): a real `lens run` (a continuous camera and a manual one),
real HTTP on loopback. Bodies, modes, states, hot reload, triggers, results, images, snapshots,
telemetry and metrics, each checked against what the machine really does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.control.harness import (
    API_KEY,
    JSON,
    TOOLS,
    Lens,
    assert_error,
    camera,
    no_leaks_but_shared,  # noqa: F401 - replaces the suite's leak check in this module
    running,
    shared,
)

W, H = 160, 120
FAILING = {"type": "synthetic", "width": W, "height": H, "fps": 30, "seed": 3, "defect_rate": 0.9}
PASSING = {"type": "synthetic", "width": W, "height": H, "fps": 30, "seed": 5, "defect_rate": 0.0}
MAX_BODY_KB = 4
ORCH = "orch-api"


@pytest.fixture(scope="module")
def lens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lens]:
    tmp = tmp_path_factory.mktemp("api")
    cams = [camera("cam0", FAILING), camera("cam1", PASSING, trigger={"type": "manual"})]
    control = {"max_body_kb": MAX_BODY_KB, "telemetry_interval_s": 0.5, "lease_s": 120}
    with shared(lambda: Lens(tmp, cams, control)) as lens:
        yield lens


@pytest.fixture
def token(lens: Lens) -> str:
    """This module's session (re-opening replaces the previous test's), the machine running in RUN
    mode with cam0 inspected, whatever the previous test left."""
    tok = lens.open_session(ORCH)
    st = lens.status(tok)
    if st["state"] in ("stopped", "maintenance"):  # else running, or `error` while sources open
        lens.ok("POST", "/api/v1/run/start", tok)
    if st["mode"] != "RUN":
        lens.ok("PUT", "/api/v1/mode", tok, json={"mode": "RUN"})
    lens.wait_inspecting(tok)
    return tok


def inspection(lens: Lens, token: str) -> dict[str, Any]:
    data: dict[str, Any] = lens.ok("GET", "/api/v1/inspection", token)
    return data


def latest(lens: Lens, token: str, cam: str) -> dict[str, Any] | None:
    """The camera's newest result, None while it has none."""
    r = lens.get(f"/api/v1/results/latest?camera={cam}", token)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    env: dict[str, Any] = r.json()
    return env


def grows(lens: Lens, token: str, cam: str = "cam0", by: int = 3) -> None:
    start = lens.inspected(token, cam)
    lens.wait(lambda: lens.inspected(token, cam) >= start + by, 30, f"{cam}'s inspected count to grow")


def settled(lens: Lens, token: str) -> int:
    """The inspected count once it stopped changing (jobs in flight at a stop still finish)."""
    last = [-1]

    def same() -> bool:
        now = lens.inspected(token)
        done = now == last[0]
        last[0] = now
        time.sleep(0.3)
        return done

    lens.wait(same, 30, "the inspected count to settle")
    return last[0]


# -- bodies ------------------------------------------------------------------------------------------------

# (method, path, a valid body, a body with a wrongly typed field, the issue path of that field)
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any] | None, str]] = {
    "session": (
        "POST",
        "/api/v1/session",
        {"orchestrator_id": ORCH},
        {"orchestrator_id": 7},
        "orchestrator_id",
    ),
    "mode": ("PUT", "/api/v1/mode", {"mode": "RUN"}, {"mode": ["RUN"]}, "mode"),
    "inspection": ("PUT", "/api/v1/inspection", {"tools": TOOLS}, {"tools": {"a": 1}}, "tools"),
    "trigger": ("POST", "/api/v1/trigger", {"camera": "cam1"}, {"camera": 1.5}, "camera"),
    "heartbeat": ("POST", "/api/v1/session/heartbeat", {}, None, ""),
}
BAD_BODIES = [
    "invalid-json",
    "not-an-object",
    "text-plain",
    "no-content-type",
    "too-large",
    "too-large-chunked",
    "unknown-field",
    "wrong-type",
]


def marks(endpoint: str, bad: str) -> list[pytest.MarkDecorator]:
    return []


CASES = [
    pytest.param(ep, bad, id=f"{ep}-{bad}", marks=marks(ep, bad))
    for ep in ENDPOINTS
    for bad in BAD_BODIES
    if not (ep == "heartbeat" and bad == "wrong-type")  # it has no field to mistype
]


def send_bad(lens: Lens, token: str, endpoint: str, bad: str) -> None:
    """Send the bad body and check the answer: its status, code and, for 422, every issue path."""
    method, path, valid, mistyped, field = ENDPOINTS[endpoint]
    auth = API_KEY if endpoint == "session" else token
    big = b'{"pad": "' + b"x" * (MAX_BODY_KB * 1024) + b'"}'
    paths: list[str] | None = None
    if bad == "invalid-json":
        r = lens.request(method, path, auth, content=b'{"mode": ', headers=JSON)
        status, code = 400, "LENS_BAD_REQUEST"
    elif bad == "not-an-object":
        r = lens.request(method, path, auth, json=[valid])
        status, code = 400, "LENS_BAD_REQUEST"
    elif bad == "text-plain":
        r = lens.request(method, path, auth, content=b"{}", headers={"content-type": "text/plain"})
        status, code = 415, "LENS_UNSUPPORTED_MEDIA_TYPE"
    elif bad == "no-content-type":
        r = lens.request(method, path, auth, content=b'{"a": 1}')
        status, code = 415, "LENS_UNSUPPORTED_MEDIA_TYPE"
    elif bad == "too-large":
        r = lens.request(method, path, auth, content=big, headers=JSON)
        status, code = 413, "LENS_PAYLOAD_TOO_LARGE"
    elif bad == "too-large-chunked":  # no Content-Length: the limit holds while the body streams in
        r = lens.request(method, path, auth, content=iter([big[:3000], big[3000:]]), headers=JSON)
        status, code = 413, "LENS_PAYLOAD_TOO_LARGE"
    elif bad == "unknown-field":
        r = lens.request(method, path, auth, json={**valid, "colour": "red"})
        status, code, paths = 422, "LENS_INVALID_CONFIG", ["colour"]
    else:
        r = lens.request(method, path, auth, json=mistyped)
        status, code, paths = 422, "LENS_INVALID_CONFIG", [field]
    details = assert_error(r, status, code)
    if paths is None:
        assert details == {}
    else:
        assert [i["path"] for i in details["issues"]] == paths
        assert all(i["message"] for i in details["issues"])


@pytest.mark.parametrize(("endpoint", "bad"), CASES)
def test_bad_bodies_are_refused_and_change_nothing(lens: Lens, token: str, endpoint: str, bad: str) -> None:
    before_inspection = inspection(lens, token)
    before_config = lens.ok("GET", "/api/v1/config", token)
    before = lens.status(token)
    send_bad(lens, token, endpoint, bad)
    assert inspection(lens, token) == before_inspection  # same version, same tools
    assert lens.ok("GET", "/api/v1/config", token) == before_config
    after = lens.status(token)  # the session token still works: nothing replaced it
    assert (after["mode"], after["state"]) == (before["mode"], before["state"])
    assert after["session"]["session_id"] == before["session"]["session_id"]
    assert after["cameras"]["cam1"]["triggers"] == before["cameras"]["cam1"]["triggers"]


def test_bad_query_parameters_are_400(lens: Lens, token: str) -> None:
    for path in (
        "/api/v1/results?limit=0",
        "/api/v1/results?limit=abc",
        "/api/v1/results?since_id=-1",
        "/api/v1/results?pass=maybe",
        "/api/v1/telemetry?limit=100000",
        "/api/v1/audit?since_id=x",
        "/api/v1/logs/stream?follow=sometimes",
        "/api/v1/images/abc",
    ):
        details = assert_error(lens.get(path, token), 400, "LENS_BAD_REQUEST")
        assert details == {}, path


def test_unknown_routes_and_methods(lens: Lens, token: str) -> None:
    assert_error(lens.get("/api/v1/nothing-here", token), 404, "LENS_NOT_FOUND")
    assert_error(lens.request("POST", "/api/v1/run/explode", token), 404, "LENS_NOT_FOUND")
    assert_error(lens.request("DELETE", "/api/v1/status", token), 405, "LENS_METHOD_NOT_ALLOWED")
    assert_error(lens.request("GET", "/api/v1/mode", token), 405, "LENS_METHOD_NOT_ALLOWED")


# -- modes and states --------------------------------------------------------------------------------------


def test_modes_and_their_seed_aliases(lens: Lens, token: str) -> None:
    previous = "RUN"
    for asked, mode in [
        ("TEST", "TEST"),
        ("PRODUCAO", "RUN"),
        ("TESTE", "TEST"),
        ("RUN", "RUN"),
        ("teste", "TEST"),
    ]:
        answer = lens.ok("PUT", "/api/v1/mode", token, json={"mode": asked})
        assert answer == {"mode": mode, "previous": previous}, asked
        assert lens.status(token)["mode"] == mode
        assert lens.ok("GET", "/api/v1/heartbeat")["mode"] == mode
        previous = mode
    # results made from now on carry the mode (TEST: paced, still inspecting)
    grows(lens, token, by=2)
    latest = lens.ok("GET", "/api/v1/results/latest?camera=cam0", token)
    assert latest["mode"] == "TEST"
    details = assert_error(
        lens.request("PUT", "/api/v1/mode", token, json={"mode": "FAST"}), 422, "LENS_INVALID_CONFIG"
    )
    assert [i["path"] for i in details["issues"]] == ["mode"]
    assert lens.status(token)["mode"] == "TEST"
    modes = lens.ok("GET", "/api/v1/audit?action=mode&limit=1000", token)["entries"][-5:]
    assert [(e["detail"]["previous"], e["detail"]["mode"]) for e in modes] == [
        ("RUN", "TEST"),
        ("TEST", "RUN"),
        ("RUN", "TEST"),
        ("TEST", "RUN"),
        ("RUN", "TEST"),
    ]
    assert {e["orchestrator_id"] for e in modes} == {ORCH}


def test_stop_halts_inspection_and_start_resumes_it(lens: Lens, token: str) -> None:
    answer = lens.ok("POST", "/api/v1/run/stop", token)
    assert answer == {"state": "stopped", "previous": "running"}
    assert lens.status(token)["state"] == "stopped"
    assert lens.ok("GET", "/api/v1/heartbeat")["status"] == "stopped"
    count = settled(lens, token)
    time.sleep(1.0)
    assert lens.inspected(token) == count  # nothing inspected while stopped
    details = assert_error(lens.request("POST", "/api/v1/run/stop", token), 409, "LENS_INVALID_STATE")
    assert details == {"state": "stopped", "allowed_from": ["running", "error", "maintenance"]}

    answer = lens.ok("POST", "/api/v1/run/start", token)
    assert answer == {"state": "running", "previous": "stopped"}
    lens.wait(lambda: lens.inspected(token) > count, 30, "inspection to resume")
    details = assert_error(lens.request("POST", "/api/v1/run/start", token), 409, "LENS_INVALID_STATE")
    assert details == {"state": "running", "allowed_from": ["stopped", "maintenance"]}
    states = lens.ok("GET", "/api/v1/audit?action=state&limit=1000", token)["entries"][-2:]
    assert [e["detail"] for e in states] == [
        {"command": "stop", "previous": "running"},
        {"command": "start", "previous": "stopped"},
    ]


def test_maintenance_is_a_stopped_state_left_by_start(lens: Lens, token: str) -> None:
    assert lens.ok("POST", "/api/v1/run/maintenance", token) == {
        "state": "maintenance",
        "previous": "running",
    }
    assert lens.status(token)["state"] == "maintenance"
    assert_error(
        lens.request("POST", "/api/v1/trigger", token, json={"camera": "cam1"}), 409, "LENS_INVALID_STATE"
    )
    assert lens.ok("POST", "/api/v1/run/start", token) == {"state": "running", "previous": "maintenance"}
    grows(lens, token)


def test_restart_restarts_the_captures(lens: Lens, token: str) -> None:
    procs = lens.status(token)["processes"]
    old = {name: procs[name]["pid"] for name in ("capture-cam0", "capture-cam1")}
    answer = lens.ok("POST", "/api/v1/run/restart", token)
    assert answer["state"] == "running" and answer["previous"] == "running"
    assert sorted(answer["restarted"]) == ["capture-cam0", "capture-cam1"]

    def new_pids() -> bool:
        procs = lens.status(token)["processes"]
        return all(procs[n]["alive"] and procs[n]["pid"] not in (None, old[n]) for n in old)

    lens.wait(new_pids, 30, "the captures' new pids in status")
    assert lens.status(token)["state"] == "running"
    grows(lens, token)


# -- hot reload ----------------------------------------------------------------------------------------------


def test_a_valid_inspection_is_hot_reloaded_with_a_new_version(lens: Lens, token: str) -> None:
    current = inspection(lens, token)
    version = current["version"]
    tools = [dict(t) for t in TOOLS]
    tools[0]["pass_fail"] = {"min": 1, "max": 250}
    answer = lens.ok("PUT", "/api/v1/inspection", token, json={"workers": 1, "tools": tools})
    assert answer["version"] == version + 1
    now = inspection(lens, token)
    assert now["version"] == version + 1
    assert now["inspection"]["tools"][0]["pass_fail"] == {"min": 1.0, "max": 250.0, "measures": {}}
    assert now["inspection"]["tools"][1] == current["inspection"]["tools"][1]
    assert lens.ok("GET", "/api/v1/config", token)["inspection"] == now["inspection"]
    assert lens.status(token)["run"]["inspection_version"] == version + 1

    def new_result() -> bool:
        latest = lens.ok("GET", "/api/v1/results/latest?camera=cam0", token)
        return bool(latest["inspection_version"] == version + 1)

    lens.wait(new_result, 30, "a result made with the new version")
    entry = lens.ok("GET", "/api/v1/audit?action=config.inspection&limit=1000", token)["entries"][-1]
    assert entry["detail"] == {
        "previous_version": version,
        "version": version + 1,
        "tools": ["brightness", "parts"],
    }


@pytest.mark.parametrize(
    ("tools", "paths"),
    [
        ([{"name": "b", "type": "grayscale", "pass_fail": {"min": "x"}}], ["tools[0].pass_fail.min"]),
        ([{"name": "b", "type": "grayscale", "pass_fail": {"min": 5, "max": 1}}], ["tools[0].pass_fail"]),
        (
            [{"name": "b", "type": "grayscale"}, {"name": "p", "type": "blob", "params": {"th_min": -3}}],
            ["tools[1].params.th_min"],
        ),
        ([{"name": "b", "type": "nope"}], ["tools[0]"]),
        ([{"name": "m", "type": "math", "expr": "zz.value * 2"}], ["tools[0].expr"]),
    ],
    ids=["mistyped-limit", "min-over-max", "negative-param", "unknown-type", "unknown-name-in-expr"],
)
def test_an_invalid_inspection_is_422_with_every_path(
    lens: Lens, token: str, tools: list[dict[str, Any]], paths: list[str]
) -> None:
    before = inspection(lens, token)
    r = lens.request("PUT", "/api/v1/inspection", token, json={"tools": tools})
    details = assert_error(r, 422, "LENS_INVALID_CONFIG")
    assert [i["path"] for i in details["issues"]] == paths
    assert all(i["message"] for i in details["issues"])
    assert inspection(lens, token) == before


def test_the_reload_answer_is_the_config_in_force(lens: Lens, token: str) -> None:
    answer = lens.ok("PUT", "/api/v1/inspection", token, json={"tools": TOOLS})
    assert answer == inspection(lens, token)


# -- triggers ------------------------------------------------------------------------------------------------


def test_a_manual_trigger_in_test_mode_answers_with_its_result(lens: Lens, token: str) -> None:
    lens.ok("PUT", "/api/v1/mode", token, json={"mode": "TEST"})
    answer = lens.ok("POST", "/api/v1/trigger", token, json={"camera": "cam1", "id": "lot-7"})
    assert sorted(answer) == ["mode", "result", "result_id", "trigger_id"]
    assert (answer["trigger_id"], answer["mode"]) == ("lot-7", "TEST")
    env = answer["result"]
    assert env["type"] == "inspection.result" and env["machine_id"] == "vm_ctl"
    assert (env["camera"], env["result_id"], env["trigger_id"]) == ("cam1", answer["result_id"], "lot-7")
    assert (env["trigger"], env["mode"], env["pass"]) == ("manual", "TEST", True)
    assert sorted(env["tools"]) == ["brightness", "parts"] and "error" not in env
    assert env["tools"]["parts"]["value"] == 4
    # by index, and with an id made by the machine
    second = lens.ok("POST", "/api/v1/trigger", token, json={"camera": 1})
    assert second["result"]["camera"] == "cam1" and second["result_id"] > answer["result_id"]
    assert second["trigger_id"].startswith("api-") and second["result"]["trigger_id"] == second["trigger_id"]
    assert lens.status(token)["cameras"]["cam1"]["triggers"] >= 2


def test_a_manual_trigger_in_run_mode_is_accepted_and_answered_on_the_bus(lens: Lens, token: str) -> None:
    answer = lens.ok("POST", "/api/v1/trigger", token, 202, json={"camera": "cam1"})
    assert sorted(answer) == ["mode", "result_id", "trigger_id"] and answer["mode"] == "RUN"
    rid = answer["result_id"]

    def on_bus() -> list[dict[str, Any]]:
        lens.run.poll(100)
        return [r for r in lens.run.results if r["result_id"] == rid]

    (env,) = lens.wait(on_bus, 30, f"result {rid} on the bus")
    assert (env["camera"], env["trigger_id"], env["mode"], env["trigger"]) == (
        "cam1",
        answer["trigger_id"],
        "RUN",
        "manual",
    )
    latest = lens.wait(
        lambda: (r := lens.ok("GET", "/api/v1/results/latest?camera=cam1", token))["result_id"] == rid and r,
        30,
        "the result as the latest of cam1",
    )
    assert latest == env


def test_triggers_that_cannot_fire_are_refused(lens: Lens, token: str) -> None:
    details = assert_error(
        lens.request("POST", "/api/v1/trigger", token, json={"camera": "cam0"}), 409, "LENS_INVALID_STATE"
    )
    assert details == {}
    assert_error(
        lens.request("POST", "/api/v1/trigger", token, json={}), 409, "LENS_INVALID_STATE"
    )  # cam0 too
    for cam in ("cam9", 7, -1):
        r = lens.request("POST", "/api/v1/trigger", token, json={"camera": cam})
        assert_error(r, 404, "LENS_NOT_FOUND")
    lens.ok("POST", "/api/v1/run/stop", token)
    before = lens.status(token)["cameras"]["cam1"]["triggers"]
    r = lens.request("POST", "/api/v1/trigger", token, json={"camera": "cam1"})
    assert_error(r, 409, "LENS_INVALID_STATE")
    assert lens.status(token)["cameras"]["cam1"]["triggers"] == before


def test_a_trigger_refused_while_stopped_says_why_and_is_counted(lens: Lens, token: str) -> None:
    lens.ok("POST", "/api/v1/run/stop", token)
    before = lens.status(token)["cameras"]["cam1"]["skipped_stopped"]
    r = lens.request("POST", "/api/v1/trigger", token, json={"camera": "cam1"})
    assert_error(r, 409, "LENS_INVALID_STATE")
    assert "stopped" in r.json()["error"]["message"], r.text
    assert lens.status(token)["cameras"]["cam1"]["skipped_stopped"] == before + 1


def test_a_passed_result_in_test_mode_has_its_jpeg(lens: Lens, token: str) -> None:
    lens.ok("PUT", "/api/v1/mode", token, json={"mode": "TEST"})
    answer = lens.ok("POST", "/api/v1/trigger", token, json={"camera": "cam1"})
    assert answer["result"]["pass"] is True
    r = lens.wait(
        lambda: (r := lens.get(f"/api/v1/images/{answer['result_id']}", token)).status_code == 200 and r,
        3,
        "the image of the TEST result",
    )
    assert r.content[:2] == b"\xff\xd8"


def test_a_chunked_trigger_body_is_read(lens: Lens, token: str) -> None:
    lens.ok("PUT", "/api/v1/mode", token, json={"mode": "TEST"})
    body = iter([b'{"camera": ', b'"cam1"}'])  # sent with Transfer-Encoding: chunked
    answer = lens.ok("POST", "/api/v1/trigger", token, content=body, headers=JSON)
    assert answer["result"]["camera"] == "cam1"


def test_a_trigger_not_answered_in_time_is_504(tmp_path: Path) -> None:
    cams = [camera("cam0", PASSING, trigger={"type": "manual"})]
    with running(tmp_path, cams, control={"trigger_wait_s": 0.001}) as lens:
        token = lens.open_session(ORCH)
        lens.wait(lambda: lens.status(token)["cameras"]["cam0"]["captured"] > 0, 60, "cam0 to capture")
        lens.ok("PUT", "/api/v1/mode", token, json={"mode": "TEST"})
        r = lens.request("POST", "/api/v1/trigger", token, json={"id": "slow-1"})
        details = assert_error(r, 504, "LENS_TIMEOUT")
        assert details["trigger_id"] == "slow-1" and details["result_id"] >= 1
        assert "slow-1" in r.json()["error"]["message"]
        # the trigger still yields its one result
        lens.wait(lambda: (latest(lens, token, "cam0") or {}).get("trigger_id") == "slow-1", 30, "the result")
        rows = lens.ok("GET", "/api/v1/results?limit=1000", token)["results"]
        assert [r["result"]["result_id"] for r in rows if r["result"]["trigger_id"] == "slow-1"] == [
            details["result_id"]
        ]


# -- results, images, snapshots, telemetry, metrics ---------------------------------------------------------


def test_results_latest_and_paging(lens: Lens, token: str) -> None:
    grows(lens, token, by=10)
    latest = lens.ok("GET", "/api/v1/results/latest", token)
    assert latest["type"] == "inspection.result" and latest["machine_id"] == "vm_ctl"
    assert {"result_id", "frame_id", "camera", "pass", "tools", "inspection_version"} <= set(latest)
    assert lens.ok("GET", "/api/v1/results/latest?camera=cam0", token)["camera"] == "cam0"
    assert_error(lens.get("/api/v1/results/latest?camera=cam9", token), 404, "LENS_NOT_FOUND")

    page = lens.ok("GET", "/api/v1/results?since_id=0&limit=5", token)
    assert page["source"] == "memory" and len(page["results"]) == 5
    ids = [row["id"] for row in page["results"]]
    assert ids == sorted(set(ids)) and page["next_since_id"] == ids[-1]
    assert all(row["result"]["type"] == "inspection.result" for row in page["results"])
    following = lens.ok("GET", f"/api/v1/results?since_id={ids[-1]}&limit=5", token)
    assert len(following["results"]) == 5 and following["results"][0]["id"] > ids[-1]
    rids = [row["result"]["result_id"] for row in page["results"] + following["results"]]
    assert len(set(rids)) == 10  # no result twice across pages

    failed = lens.ok("GET", "/api/v1/results?pass=false&limit=20", token)["results"]
    assert failed and all(row["result"]["pass"] is False for row in failed)
    cam1 = lens.ok("GET", "/api/v1/results?camera=cam1&limit=1000", token)["results"]
    assert all(row["result"]["camera"] == "cam1" for row in cam1)
    empty = lens.ok("GET", "/api/v1/results?since_id=999999999", token)
    assert empty == {"results": [], "next_since_id": 999999999, "source": "memory"}


def test_the_image_of_a_failed_result_is_its_jpeg(lens: Lens, token: str) -> None:
    def failed() -> dict[str, Any] | None:
        env: dict[str, Any] = lens.ok("GET", "/api/v1/results/latest?camera=cam0", token)
        return env if env["pass"] is False else None

    env = lens.wait(failed, 30, "a failed result")
    r = lens.get(f"/api/v1/images/{env['result_id']}", token)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and r.headers["x-lens-camera"] == "cam0"
    assert r.content[:2] == b"\xff\xd8"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (H, W)
    details = assert_error(lens.get("/api/v1/images/999999999", token), 404, "LENS_NOT_FOUND")
    assert details == {}


def test_snapshot_is_the_newest_frame_as_jpeg(lens: Lens, token: str) -> None:
    for query, cam in (("", "cam0"), ("?camera=cam1", "cam1")):
        r = lens.get(f"/api/v1/snapshot{query}", token)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.headers["x-lens-camera"] == cam
        assert int(r.headers["x-lens-frame-id"]) >= 0 and float(r.headers["x-lens-captured-at"]) > 0
        img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == (H, W)
    assert_error(lens.get("/api/v1/snapshot?camera=cam9", token), 404, "LENS_NOT_FOUND")


def test_telemetry_pages_by_sample_id(lens: Lens, token: str) -> None:
    lens.wait(
        lambda: len(lens.ok("GET", "/api/v1/telemetry?limit=1000", token)["samples"]) >= 4, 30, "4 samples"
    )
    first = lens.ok("GET", "/api/v1/telemetry?limit=1", token)["samples"][0]["id"]  # the oldest kept
    page = lens.ok("GET", f"/api/v1/telemetry?since={first - 1}&limit=2", token)
    assert [s["id"] for s in page["samples"]] == [first, first + 1]
    assert page["next_since"] == first + 1 and page["more"] is True
    sample = page["samples"][1]
    assert {"at", "cpu_pct", "memory", "disk", "cameras", "processes"} <= set(sample)
    assert sample["memory"]["total_mb"] > 0 and sorted(sample["cameras"]) == ["cam0", "cam1"]
    rest = lens.ok("GET", f"/api/v1/telemetry?since={first + 1}&limit=1000", token)
    ids = [s["id"] for s in rest["samples"]]
    assert ids == list(range(first + 2, first + 2 + len(ids))) and len(ids) >= 2 and rest["more"] is False
    assert rest["next_since"] == ids[-1]


def test_metrics_agree_with_status(lens: Lens, token: str) -> None:
    grows(lens, token)
    st = lens.status(token)
    r = lens.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    for cam in ("cam0", "cam1"):
        labels = (("camera", cam), ("machine", "vm_ctl"))
        inspected = samples[("lens_frames_inspected_total", labels)]
        assert inspected >= st["cameras"][cam]["inspected"]  # read after status: it can only have grown
        assert samples[("lens_frames_captured_total", labels)] >= st["cameras"][cam]["captured"]
    assert samples[("lens_state", (("machine", "vm_ctl"), ("state", "running")))] == 1
    assert samples[("lens_mode", (("machine", "vm_ctl"), ("mode", "RUN")))] == 1
    assert samples[("lens_session_held", (("machine", "vm_ctl"),))] == 1
