"""The single-orchestrator lock end to end (SPEC §4, seed 000): a real `lens run` with a 2 s lease,
real HTTP on loopback. One run serves the module; every test starts with the machine free."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lens.control.app import ROUTES
from tests.control.harness import (
    API_KEY,
    Lens,
    assert_error,
    camera,
    no_leaks_but_shared,  # noqa: F401 - replaces the suite's leak check in this module
    route_example,
    running,
    shared,
)

LEASE_S = 2.0
QUIET = {"type": "synthetic", "width": 160, "height": 120, "fps": 10}
SESSION_ROUTES = [(m, p, name) for m, p, name, access, _ in ROUTES if access == "session"]
# a valid body for each route that takes one: only the missing or stale token may be at fault
BODIES: dict[str, Any] = {
    "set_mode": {"mode": "TEST"},
    "put_inspection": {"tools": [{"name": "g", "type": "grayscale"}]},
    "trigger": {"camera": "cam0"},
}


@pytest.fixture(scope="module")
def lens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lens]:
    tmp = tmp_path_factory.mktemp("session")
    with shared(lambda: Lens(tmp, [camera("cam0", QUIET)], control={"lease_s": LEASE_S})) as lens:
        yield lens


@pytest.fixture(autouse=True)
def free(lens: Lens) -> None:
    """Every test starts with no session held (a previous test's lapses within the lease)."""
    lens.wait(lambda: heartbeat(lens)["connection"] == "free", 3 * LEASE_S, "the machine to be free")


@pytest.fixture(scope="module")
def lapsed_token(lens: Lens) -> str:
    """The token of a session whose lease lapsed."""
    lens.wait(lambda: heartbeat(lens)["connection"] == "free", 3 * LEASE_S, "the machine to be free")
    token = lens.open_session("orch-gone")
    lens.wait(lambda: heartbeat(lens)["connection"] == "free", 3 * LEASE_S, "the lease to lapse")
    return token


def heartbeat(lens: Lens) -> dict[str, Any]:
    data: dict[str, Any] = lens.ok("GET", "/api/v1/heartbeat")
    return data


def open_raw(lens: Lens, orchestrator_id: str, key: str | None = API_KEY) -> Any:
    return lens.request("POST", "/api/v1/session", key, json={"orchestrator_id": orchestrator_id})


def call(lens: Lens, method: str, path: str, name: str, token: str | None) -> Any:
    body = BODIES.get(name)
    return lens.request(method, route_example(path), token, **({"json": body} if body else {}))


def test_open_answers_the_token_lease_and_heartbeat_interval(lens: Lens) -> None:
    r = open_raw(lens, "orch-A")
    assert r.status_code == 201, r.text
    body = r.json()
    assert sorted(body) == [
        "heartbeat_interval_s",
        "lease_s",
        "machine_id",
        "protocol_version",
        "session_id",
        "session_token",
    ]
    assert isinstance(body["session_token"], str) and len(body["session_token"]) >= 40
    assert body["lease_s"] == LEASE_S
    assert body["heartbeat_interval_s"] == pytest.approx(LEASE_S / 3)  # null in config: lease / 3
    assert (body["machine_id"], body["protocol_version"]) == ("vm_ctl", "2.1.0")
    assert len(body["session_id"]) == 32 and int(body["session_id"], 16) >= 0
    st = lens.status(body["session_token"])
    assert st["session"]["held"] is True
    assert st["session"]["orchestrator_id"] == "orch-A"
    assert st["session"]["session_id"] == body["session_id"]
    assert "session_token" not in st["session"] and body["session_token"] not in str(st)
    lens.ok("DELETE", "/api/v1/session", body["session_token"])


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", f"Basic {API_KEY}", "Bearer", API_KEY],
    ids=["missing", "wrong", "basic-scheme", "empty", "no-scheme"],
)
def test_a_wrong_or_missing_api_key_is_unauthorized(lens: Lens, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    r = lens.request("POST", "/api/v1/session", headers=headers, json={"orchestrator_id": "orch-A"})
    details = assert_error(r, 401, "LENS_UNAUTHORIZED")
    assert details == {}
    assert r.headers["www-authenticate"] == "Bearer"
    assert heartbeat(lens)["connection"] == "free"


def test_a_second_orchestrator_is_refused_with_the_holder_named(lens: Lens) -> None:
    token = lens.open_session("orch-A")
    details = assert_error(open_raw(lens, "orch-B"), 423, "LENS_BUSY")
    assert details["holder"] == "orch-A" and details["holder_ip"] == "127.0.0.1"
    assert 0 < details["expires_in_s"] <= LEASE_S
    hb = heartbeat(lens)
    assert (hb["connection"], hb["orchestrator_id"]) == ("busy", "orch-A")
    assert (hb["machine_id"], hb["protocol_version"], hb["name"]) == ("vm_ctl", "2.1.0", "control e2e")
    assert lens.status(token)["session"]["orchestrator_id"] == "orch-A"  # A was not disturbed
    lens.ok("DELETE", "/api/v1/session", token)


def test_a_lapsed_lease_frees_the_machine_and_its_token_is_expired(lens: Lens) -> None:
    token_a = lens.open_session("orch-A")
    assert heartbeat(lens)["connection"] == "busy"
    lens.wait(lambda: heartbeat(lens)["connection"] == "free", 3 * LEASE_S, "A's lease to lapse")
    token_b = lens.open_session("orch-B")
    details = assert_error(lens.get("/api/v1/status", token_a), 401, "LENS_SESSION_EXPIRED")
    assert details == {"reason": "expired"}
    assert lens.status(token_b)["session"]["orchestrator_id"] == "orch-B"
    assert heartbeat(lens)["orchestrator_id"] == "orch-B"
    lens.ok("DELETE", "/api/v1/session", token_b)


def test_heartbeats_keep_the_session_past_its_lease(lens: Lens) -> None:
    token = lens.open_session("orch-A")
    started = time.monotonic()
    beats = 0
    while time.monotonic() - started < 2 * LEASE_S:
        answer = lens.ok("POST", "/api/v1/session/heartbeat", token)
        assert sorted(answer) == ["expires_in_s", "lease_s", "session_id"]
        assert answer["lease_s"] == LEASE_S and 0 < answer["expires_in_s"] <= LEASE_S
        beats += 1
        time.sleep(LEASE_S / 4)
    assert beats >= 5
    assert heartbeat(lens)["orchestrator_id"] == "orch-A"
    assert lens.status(token)["session"]["orchestrator_id"] == "orch-A"
    assert_error(open_raw(lens, "orch-B"), 423, "LENS_BUSY")
    lens.ok("DELETE", "/api/v1/session", token)


def test_the_same_orchestrator_reopening_replaces_its_own_session(lens: Lens) -> None:
    first = lens.ok("POST", "/api/v1/session", API_KEY, 201, json={"orchestrator_id": "orch-A"})
    second = lens.ok("POST", "/api/v1/session", API_KEY, 201, json={"orchestrator_id": "orch-A"})
    assert second["session_id"] != first["session_id"]
    assert second["session_token"] != first["session_token"]
    details = assert_error(lens.get("/api/v1/status", first["session_token"]), 401, "LENS_SESSION_EXPIRED")
    assert details == {"reason": "replaced"}
    st = lens.status(second["session_token"])
    assert st["session"]["session_id"] == second["session_id"]
    lens.ok("DELETE", "/api/v1/session", second["session_token"])


def test_delete_releases_the_machine(lens: Lens) -> None:
    token = lens.open_session("orch-A")
    answer = lens.ok("DELETE", "/api/v1/session", token)
    assert answer["released"] is True and len(answer["session_id"]) == 32
    hb = heartbeat(lens)
    assert (hb["connection"], hb["orchestrator_id"]) == ("free", None)
    details = assert_error(lens.request("DELETE", "/api/v1/session", token), 401, "LENS_SESSION_EXPIRED")
    assert details == {"reason": "released"}
    other = lens.open_session("orch-B")  # at once: nothing to wait for
    lens.ok("DELETE", "/api/v1/session", other)


def test_the_audit_log_records_every_session_change(lens: Lens) -> None:
    reader = lens.open_session("auditor")
    since = lens.ok("GET", "/api/v1/audit?limit=1000", reader)["next_since_id"]
    lens.ok("DELETE", "/api/v1/session", reader)

    a1 = lens.ok("POST", "/api/v1/session", API_KEY, 201, json={"orchestrator_id": "orch-A"})
    assert_error(open_raw(lens, "orch-B"), 423, "LENS_BUSY")
    a2 = lens.ok("POST", "/api/v1/session", API_KEY, 201, json={"orchestrator_id": "orch-A"})
    lens.ok("DELETE", "/api/v1/session", a2["session_token"])
    b = lens.ok("POST", "/api/v1/session", API_KEY, 201, json={"orchestrator_id": "orch-B"})
    lens.wait(lambda: heartbeat(lens)["connection"] == "free", 3 * LEASE_S, "B's lease to lapse")
    reader = lens.open_session("auditor")

    page = lens.ok("GET", f"/api/v1/audit?since_id={since}&limit=1000", reader)
    rows = [(e["action"], e["orchestrator_id"], e["client_ip"], e["session_id"]) for e in page["entries"]]
    assert rows[:8] == [
        ("session.released", "auditor", "127.0.0.1", rows[0][3]),
        ("session.opened", "orch-A", "127.0.0.1", a1["session_id"]),
        ("session.refused", "orch-B", "127.0.0.1", None),
        ("session.replaced", "orch-A", "127.0.0.1", a2["session_id"]),
        ("session.released", "orch-A", "127.0.0.1", a2["session_id"]),
        ("session.opened", "orch-B", "127.0.0.1", b["session_id"]),
        ("session.expired", "orch-B", "127.0.0.1", b["session_id"]),
        ("session.opened", "auditor", "127.0.0.1", rows[7][3]),
    ], page
    entries = page["entries"]
    assert entries[2]["detail"] == {"holder": "orch-A"}
    assert entries[3]["detail"] == {"replaced_session": a1["session_id"]}
    assert entries[6]["detail"]["idle_s"] >= LEASE_S
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids) and ids[0] > since and page["next_since_id"] == ids[-1]
    refused = lens.ok("GET", f"/api/v1/audit?since_id={since}&action=session.refused", reader)["entries"]
    assert [(e["action"], e["orchestrator_id"]) for e in refused] == [("session.refused", "orch-B")]
    lens.ok("DELETE", "/api/v1/session", reader)


@pytest.mark.parametrize(
    ("method", "path", "name"), SESSION_ROUTES, ids=[f"{m} {p}" for m, p, _ in SESSION_ROUTES]
)
def test_session_routes_refuse_a_missing_or_unknown_token(
    lens: Lens, method: str, path: str, name: str
) -> None:
    for token in (None, "not-a-token"):
        r = call(lens, method, path, name, token)
        assert assert_error(r, 401, "LENS_UNAUTHORIZED") == {}
        assert r.headers["www-authenticate"] == "Bearer"
    # the machine's API key is not a session token either
    assert_error(call(lens, method, path, name, API_KEY), 401, "LENS_UNAUTHORIZED")


@pytest.mark.parametrize(
    ("method", "path", "name"), SESSION_ROUTES, ids=[f"{m} {p}" for m, p, _ in SESSION_ROUTES]
)
def test_session_routes_refuse_a_lapsed_token(
    lens: Lens, lapsed_token: str, method: str, path: str, name: str
) -> None:
    r = call(lens, method, path, name, lapsed_token)
    assert assert_error(r, 401, "LENS_SESSION_EXPIRED") == {"reason": "expired"}
    assert r.headers["www-authenticate"] == "Bearer"
    assert heartbeat(lens)["connection"] == "free"


def test_clients_outside_the_allowlist_are_forbidden_everywhere(tmp_path: Path) -> None:
    with running(tmp_path, [camera("cam0", QUIET)], control={"allow": ["10.0.0.0/8"]}) as lens:
        for method, path, name, _access, _ in ROUTES:
            key = API_KEY if name == "session_open" else None
            body = {"orchestrator_id": "orch-A"} if name == "session_open" else BODIES.get(name)
            r = lens.request(method, route_example(path), key, **({"json": body} if body else {}))
            details = assert_error(r, 403, "LENS_FORBIDDEN")
            assert details == {}, (method, path)
            assert "127.0.0.1" in r.json()["error"]["message"]
        assert_error(lens.get("/api/v1/no-such-thing"), 403, "LENS_FORBIDDEN")
        assert_error(lens.request("PATCH", "/api/v1/health"), 403, "LENS_FORBIDDEN")
