"""Webhooks end to end: a real `lens run`, a real receiver on loopback that is down, then failing,
then up — and a `lens run` killed with SIGKILL and started again in between. Nothing is lost,
everything arrives in order, signed, with delivery ids stable across retries."""

from __future__ import annotations

import base64
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.control.receiver import Delivery, Receiver
from tests.lensrun import LensRun, free_port, write_pipeline

KEY, SECRET = "e2e-key", b"e2e-secret"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LENS_E2E_KEY", KEY)
    monkeypatch.setenv("LENS_E2E_SECRET", SECRET.decode())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    try:
        yield r
    finally:
        r.down()


def pipeline(tmp_path: Path) -> tuple[Path, str, int]:
    bus, port = free_port(), free_port()
    cfg = {
        "machine": {"id": "vm_hooks"},
        "cameras": [{"id": "cam0", "source": {"type": "synthetic", "width": 160, "height": 120, "fps": 40,
                                              "seed": 3, "parts": 2, "defect_rate": 0.3}}],
        "inspection": {"workers": 1, "tools": [{"name": "brightness", "type": "grayscale",
                                                "pass_fail": {"min": 20, "max": 200}}]},
        "outputs": {"zmq": {"bind": f"tcp://127.0.0.1:{bus}", "command": f"tcp://127.0.0.1:{free_port()}"}},
        "control": {"port": port, "db": str(tmp_path / "control.sqlite"), "api_key_env": "LENS_E2E_KEY",
                    "webhook_secret_env": "LENS_E2E_SECRET", "summary_interval_s": 0.3, "test_rate_hz": 10,
                    "webhooks": {"retry_min_s": 0.05, "retry_max_s": 0.3, "breaker_open_s": 0.3}},
    }  # fmt: skip
    return write_pipeline(tmp_path / "hooks.yaml", cfg), f"tcp://127.0.0.1:{bus}", port


def wait(cond: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def api(port: int, run: LensRun) -> httpx.Client:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10)

    def up() -> bool:
        run.poll(0)
        try:
            return client.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    wait(up, 60, f"the control service on port {port}\n{run.output()}")
    return client


def open_session(client: httpx.Client, callback: str) -> dict[str, str]:
    r = client.post("/session", json={"orchestrator_id": "orc-e2e", "callback_url": callback},
                    headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['session_token']}"}


def in_test_mode(port: int, run: LensRun, receiver: Receiver) -> tuple[httpx.Client, dict[str, str], str]:
    """A client, a session whose callback is the receiver, and the machine switched to TEST."""
    client = api(port, run)
    auth = open_session(client, receiver.url)
    session_id = client.get("/status", headers=auth).json()["session"]["session_id"]
    assert client.put("/mode", json={"mode": "TEST"}, headers=auth).status_code == 200
    return client, auth, session_id


def depth(client: httpx.Client, auth: dict[str, str]) -> int:
    return int(client.get("/status", headers=auth).json()["webhooks"]["depth"])


def check_stream(deliveries: list[Delivery], session_id: str) -> list[dict[str, Any]]:
    """The session's messages, deduplicated by `X-Lens-Delivery` as a receiver must (delivery is at
    least once: an answer lost on a loaded machine means the message comes again, identical): seq
    1..N without a gap, in arrival order, each signed; returns their envelopes."""
    first: dict[str, Delivery] = {}
    mine = []
    for d in deliveries:
        if d.envelope["session_id"] != session_id:
            continue
        seen = first.get(d.headers["x-lens-delivery"])
        if seen is not None:
            assert seen.body == d.body  # a redelivery is byte for byte the same message
            continue
        first[d.headers["x-lens-delivery"]] = d
        mine.append(d)
    envs = [d.envelope for d in mine]
    assert [e["seq"] for e in envs] == list(range(1, len(envs) + 1))
    assert all(d.signed_by(SECRET) for d in mine)
    assert all(d.headers["x-lens-event"] == e["type"] for d, e in zip(mine, envs, strict=True))
    assert all(e["machine_id"] == "vm_hooks" for e in envs)
    return envs


def test_outage_then_failures_then_up_every_message_in_order_signed(
    tmp_path: Path, env: None, receiver: Receiver
) -> None:
    path, bus, port = pipeline(tmp_path)
    with LensRun(path, bus) as run:
        client, auth, session_id = in_test_mode(port, run, receiver)
        wait(lambda: depth(client, auth) >= 8, 30, "TEST results queued while the receiver is down")
        assert client.put("/mode", json={"mode": "RUN"}, headers=auth).status_code == 200
        wait(lambda: depth(client, auth) >= 12, 30, "summaries queued")
        receiver.failures = 3  # up, but the first three attempts get a 500
        receiver.up()
        wait(lambda: depth(client, auth) == 0, 30, "the spool to drain")
        envs = check_stream(receiver.snapshot(), session_id)
        client.close()
        assert run.stop() == 0
    types = [e["type"] for e in envs]
    assert {"inspection.result", "inspection.summary", "machine.event"} <= set(types)
    # the retried messages came back with the same delivery ids and bodies
    assert len(receiver.rejected) == 3
    delivered = {d.headers["x-lens-delivery"]: d.body for d in receiver.snapshot()}
    for attempt in receiver.rejected:
        assert delivered[attempt.headers["x-lens-delivery"]] == attempt.body
    # TEST mode: one message per result, each with its JPEG
    results = [e["payload"] for e in envs if e["type"] == "inspection.result"]
    ids = [p["result"]["result_id"] for p in results]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(p["result"]["mode"] == "TEST" for p in results)
    assert [p["result"]["result_id"] for p in results if p["image"] is None] == []
    jpeg = base64.b64decode(results[0]["image"]["jpeg_base64"])
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape[:2] == (120, 160)
    events = [e["payload"] for e in envs if e["type"] == "machine.event"]
    modes = [p["mode"] for p in events if p["kind"] == "mode"]
    assert modes == ["TEST", "RUN"]
    summaries = [e["payload"] for e in envs if e["type"] == "inspection.summary"]
    assert all(s["mode"] == "RUN" and s["counts"]["inspected"] >= 0 for s in summaries)
    assert sum(s["counts"]["inspected"] for s in summaries) > 0


def test_sigkill_and_restart_lose_nothing(tmp_path: Path, env: None, receiver: Receiver) -> None:
    path, bus, port = pipeline(tmp_path)
    with LensRun(path, bus) as run:
        client, auth, session_id = in_test_mode(port, run, receiver)
        wait(lambda: depth(client, auth) >= 10, 30, "messages queued while the receiver is down")
        queued = depth(client, auth)
        client.close()
        run.stop(signal.SIGKILL)
    with LensRun(path, bus) as run:
        client = api(port, run)
        receiver.up()
        def arrived() -> int:
            mine = [d for d in receiver.snapshot() if d.envelope["session_id"] == session_id]
            return len({d.headers["x-lens-delivery"] for d in mine})

        wait(lambda: arrived() >= queued, 30, f"the {queued} messages queued before the kill")
        envs = check_stream(receiver.snapshot(), session_id)
        client.close()
        run.stop()
    assert len(envs) >= queued
    assert envs[0]["type"] == "machine.event" and envs[0]["payload"]["kind"] == "mode"
