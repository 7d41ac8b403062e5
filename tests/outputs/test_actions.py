"""Result actions with real parts: pseudo-terminals as reject gates, an HTTP server on loopback,
mosquitto for MQTT actions."""

from __future__ import annotations

import http.server
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter

from lens.config.outputs import ActionConfig, MqttOutput
from lens.outputs.actions import ActionRunner
from lens.outputs.mqtt import MqttSink
from tests.outputs.conftest import Broker, Subscriber, free_port, wait_until

ACTION = TypeAdapter(ActionConfig)
Events = list[tuple[str, dict[str, Any]]]


def action(**fields: Any) -> Any:
    """One action as the pipeline YAML would give it."""
    return ACTION.validate_python(fields)


def result(rid: int, outcome: str, camera: str = "cam0") -> dict[str, Any]:
    env: dict[str, Any] = {
        "type": "inspection.result", "machine_id": "m1", "camera": camera, "result_id": rid,
        "frame_id": 1000 + rid, "trigger": "continuous", "mode": "RUN", "pass": outcome == "pass",
        "captured_at": 1763760000.0 + rid, "finished_at": 1763760000.5 + rid, "inspection_version": 1,
        "tools": {"t": {"type": "grayscale", "value": 1.5, "pass": outcome == "pass", "elapsed_us": 3.0}},
    }  # fmt: skip
    if outcome == "error":
        env["error"] = {"code": "LENS_TIMEOUT", "message": "inspection took longer than 50 ms"}
        env["tools"] = {}
    return env


@pytest.fixture
def runners() -> Iterator[Callable[..., ActionRunner]]:
    """runners(actions, mqtt=None, on_event=None) -> a started runner for machine m1, stopped after."""
    made: list[ActionRunner] = []

    def make(actions: list[Any], mqtt: MqttSink | None = None, on_event: Any = None) -> ActionRunner:
        runner = ActionRunner(actions, "m1", mqtt, on_event)
        made.append(runner)
        runner.start()
        return runner

    yield make
    for runner in made:
        runner.stop()


@pytest.fixture
def pty() -> Iterator[Callable[[], tuple[int, str]]]:
    """pty() -> (master fd, slave device path): the test reads, on the master, what a gate would."""
    fds: list[int] = []

    def make() -> tuple[int, str]:
        master, slave = os.openpty()
        fds.extend((master, slave))
        os.set_blocking(master, False)
        return master, os.ttyname(slave)

    yield make
    for fd in fds:
        os.close(fd)


def read_lines(master: int, n: int, timeout: float = 10.0) -> list[str]:
    """The first `n` lines written to the pseudo-terminal (fails after `timeout`)."""
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(b"\n") < n:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{len(data.splitlines())} of {n} lines after {timeout} s: {data!r}")
        if select.select([master], [], [], left)[0]:
            data += os.read(master, 65536)
    lines = data.split(b"\n")
    assert lines[n:] == [b""], f"more than {n} lines: {data!r}"
    return [line.decode() for line in lines[:n]]


def read_rest(master: int) -> bytes:
    try:
        return os.read(master, 65536)
    except BlockingIOError:
        return b""


def recorder() -> tuple[Events, Callable[[str, dict[str, Any]], None]]:
    events: Events = []
    return events, lambda kind, fields: events.append((kind, fields))


def test_reject_gate_gets_exactly_one_line_per_failed_result(
    pty: Callable[[], tuple[int, str]], runners: Callable[..., ActionRunner]
) -> None:
    master, port = pty()
    events, hook = recorder()
    runner = runners([action(type="serial", when=["fail"], port=port, baud=115200)], on_event=hook)
    outcomes = ["pass", "fail", "error", "fail", "fail", "pass", "error", "pass", "fail"] * 20
    for rid, outcome in enumerate(outcomes, 1):
        runner.handle(result(rid, outcome))
    failed = [rid for rid, outcome in enumerate(outcomes, 1) if outcome == "fail"]
    assert read_lines(master, len(failed)) == [f"REJECT;{rid}" for rid in failed]
    runner.stop()
    assert read_rest(master) == b""  # nothing for passes and errors
    assert runner.stats() == [
        {"index": 0, "type": "serial", "target": port, "fired": len(failed), "failed": 0, "dropped": 0,
         "queued": 0, "last_error": None}
    ]  # fmt: skip
    assert events == []


def test_camera_filter_and_template_fields(
    pty: Callable[[], tuple[int, str]], runners: Callable[..., ActionRunner]
) -> None:
    (m_cam1, cam1_port), (m_pass, pass_port) = pty(), pty()
    line = "{machine_id};{camera};{result_id};{frame_id};{pass};{outcome};{finished_at}|{{literal}}"
    runner = runners(
        [
            action(type="serial", when=["fail", "error"], camera="cam1", port=cam1_port, line=line),
            action(type="serial", when=["pass"], port=pass_port, line="OK;{camera};{result_id:>04}"),
        ]
    )
    for env in (
        result(1, "fail"), result(2, "fail", "cam1"), result(3, "pass", "cam1"),
        result(4, "error", "cam1"), result(5, "pass"), result(6, "pass", "cam2"),
    ):  # fmt: skip
        runner.handle(env)
    assert read_lines(m_cam1, 2) == [
        "m1;cam1;2;1002;false;fail;1763760002.5|{literal}",
        "m1;cam1;4;1004;false;error;1763760004.5|{literal}",
    ]
    assert read_lines(m_pass, 3) == ["OK;cam1;0003", "OK;cam0;0005", "OK;cam2;0006"]
    runner.stop()
    assert (read_rest(m_cam1), read_rest(m_pass)) == (b"", b"")
    assert [(s["fired"], s["failed"], s["dropped"]) for s in runner.stats()] == [(2, 0, 0), (3, 0, 0)]


def test_missing_serial_port_counts_failures_and_reopens_later(
    tmp_path: Path, pty: Callable[[], tuple[int, str]], runners: Callable[..., ActionRunner]
) -> None:
    port = str(tmp_path / "ttyGATE")  # does not exist (yet)
    events, hook = recorder()
    runner = runners([action(type="serial", when=["fail"], port=port)], on_event=hook)
    for rid in (1, 2, 3):
        runner.handle(result(rid, "fail"))
    wait_until(lambda: runner.stats()[0]["failed"] == 3, "3 failed writes")
    assert len(events) == 1  # at most one event per 10 s
    kind, fields = events[0]
    assert (kind, fields["index"], fields["type"]) == ("action", 0, "serial")
    assert fields["error"].startswith(f"cannot open {port}: ")

    # the gate appears: a later line opens it (at most one attempt per second) and gets through
    master, device = pty()
    os.symlink(device, port)
    rid = 3
    deadline = time.monotonic() + 10
    while not select.select([master], [], [], 0.1)[0]:
        assert time.monotonic() < deadline, "the port was never reopened"
        rid += 1
        runner.handle(result(rid, "fail"))
    runner.stop()
    data = b""
    while chunk := read_rest(master):
        data += chunk
    lines = data.decode().splitlines()
    first_ok = int(lines[0].split(";")[1])
    assert lines == [f"REJECT;{i}" for i in range(first_ok, rid + 1)]
    stats = runner.stats()[0]
    assert (stats["fired"], stats["failed"], stats["dropped"]) == (len(lines), first_ok - 1, 0)


def test_handle_never_blocks_on_a_dead_port(tmp_path: Path, runners: Callable[..., ActionRunner]) -> None:
    runner = runners([action(type="serial", when=["fail", "pass"], port=str(tmp_path / "nothing"))])
    n = 3000  # more than the action's queue holds
    for rid in range(1, n + 1):
        runner.handle(result(rid, "fail" if rid % 2 else "pass"))
    runner.stop()
    stats = runner.stats()[0]
    assert stats["fired"] == 0
    assert stats["failed"] >= 1
    assert stats["failed"] + stats["dropped"] == n  # every result accounted for


class Hook:
    """An HTTP server on 127.0.0.1 that records requests; paths under /fail answer 500."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                hook.requests.append(
                    (self.command, self.path, self.headers["content-type"], orjson.loads(body))
                )
                self.send_response(500 if self.path.startswith("/fail") else 204)
                self.end_headers()

            do_POST = do_PUT = do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close() joins the request threads
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="hook")
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def test_url_action_sends_the_envelope(hook: Hook, runners: Callable[..., ActionRunner]) -> None:
    events, on_event = recorder()
    runner = runners(
        [
            action(type="url", when=["fail", "error"], url=hook.url + "/hook/{camera}/{result_id}"),
            action(type="url", when=["pass"], method="PUT", url=hook.url + "/fail/{outcome}"),
        ],
        on_event=on_event,
    )
    envs = [result(1, "fail"), result(2, "pass"), result(3, "error", "cam1")]
    for env in envs:
        runner.handle(env)
    wait_until(lambda: len(hook.requests) == 3, "3 requests")
    runner.stop()
    assert sorted(hook.requests, key=lambda r: r[1]) == [
        ("PUT", "/fail/pass", "application/json", envs[1]),
        ("POST", "/hook/cam0/1", "application/json", envs[0]),
        ("POST", "/hook/cam1/3", "application/json", envs[2]),
    ]
    ok, failing = runner.stats()
    assert (ok["fired"], ok["failed"], ok["last_error"]) == (2, 0, None)
    error = f"PUT {hook.url}/fail/pass: HTTP 500"
    assert (failing["fired"], failing["failed"], failing["last_error"]) == (0, 1, error)
    assert events == [("action", {"index": 1, "type": "url", "error": error})]


def test_url_action_to_a_closed_port_counts_failures(runners: Callable[..., ActionRunner]) -> None:
    url = f"http://127.0.0.1:{free_port()}/reject"  # nothing listens there
    events, on_event = recorder()
    runner = runners([action(type="url", when=["fail"], url=url, timeout_s=2)], on_event=on_event)
    for rid in (1, 2, 3):
        runner.handle(result(rid, "fail"))
    wait_until(lambda: runner.stats()[0]["failed"] == 3, "3 failed requests")
    runner.stop()
    stats = runner.stats()[0]
    assert (stats["fired"], stats["failed"], stats["dropped"]) == (0, 3, 0)
    assert stats["last_error"].startswith(f"POST {url}: ConnectError")
    assert [(k, f["index"], f["type"]) for k, f in events] == [("action", 0, "url")]
    runner.handle(result(4, "fail"))  # after stop: counted, not run
    stats = runner.stats()[0]
    assert (stats["failed"], stats["dropped"]) == (3, 1)
    assert stats["last_error"] == "runner is stopped: result 4 not run"


def test_mqtt_action_reaches_a_subscriber(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], runners: Callable[..., ActionRunner]
) -> None:
    sub = subscriber(mosquitto, ["plant/#"])
    sink = MqttSink(MqttOutput(host=mosquitto.host, port=mosquitto.port), "m1")
    sink.start()
    try:
        runner = runners(
            [action(type="mqtt", when=["fail", "error"], topic="plant/{machine_id}/reject/{camera}")],
            mqtt=sink,
        )
        for env in (
            result(1, "fail"),
            result(2, "pass"),
            result(3, "error", "cam1"),
            result(4, "fail", "c+"),
        ):
            runner.handle(env)
        got = sub.wait_for(2)
        runner.stop()
    finally:
        sink.stop()
    assert [(m.topic, m.payload) for m in got] == [
        ("plant/m1/reject/cam0", b"fail;1"),
        ("plant/m1/reject/cam1", b"error;3"),
    ]
    stats = runner.stats()[0]
    assert (stats["fired"], stats["failed"]) == (2, 1)
    assert stats["last_error"] == "topic 'plant/m1/reject/c+' has a wildcard (+ or #) or a NUL"


def test_mqtt_action_without_a_broker_is_refused() -> None:
    actions = [
        action(type="serial", when=["fail"], port="/dev/null"),
        action(type="mqtt", when=["fail"], topic="t"),
    ]
    with pytest.raises(ValueError, match=r"^outputs\.actions\[1\]: an mqtt action needs outputs\.mqtt"):
        ActionRunner(actions, "m1", None)
