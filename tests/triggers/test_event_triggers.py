"""Event triggers on a running engine: manual (command socket), cron, serial (a real pseudo-terminal).
Every trigger yields exactly one result or one error result, in trigger order."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from lens.config.load import load_pipeline_text
from lens.engine.bus import unpack
from lens.engine.client import EngineClient
from lens.engine.stats import CAM, HEALTH
from lens.engine.supervisor import Supervisor
from tests.lensrun import free_port

SLOW = (
    "[{{name: s, type: custom, "
    "params: {{function: tests.triggers.test_event_triggers.slow, args: {{ms: {ms}}}}}}}]"
)


def slow(roi: np.ndarray, params: dict[str, Any]) -> dict[str, float]:
    """A custom tool that takes `ms` milliseconds: saturates the workers on purpose."""
    time.sleep(params.get("ms", 20) / 1000.0)
    return {"value": float(roi[0, 0])}


class Engine:
    def __init__(self, trigger: str, tools: str = "[{name: g, type: grayscale}]", workers: int = 2,
                 source: str = "{type: synthetic, seed: 4}", slots: int = 16) -> None:  # fmt: skip
        self.bus = f"tcp://127.0.0.1:{free_port()}"
        self.command = f"tcp://127.0.0.1:{free_port()}"
        cfg = load_pipeline_text(f"""
machine: {{id: vm_trig}}
cameras: [{{id: cam0, source: {source}, trigger: {trigger}, ring: {{slots: {slots}}}}}]
inspection: {{workers: {workers}, tools: {tools}}}
outputs: {{zmq: {{bind: "{self.bus}", command: "{self.command}"}}}}
control: {{enabled: false}}
""")  # fmt: skip
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"result.")
        self.sub.connect(self.bus)
        self.results: list[dict[str, Any]] = []
        self.sup = Supervisor(cfg)
        self.sup.start()

    def wait_online(self) -> None:
        """Until the camera's source is open (triggers before that are answered with errors)."""
        assert self.sup.stats is not None
        row = self.sup.stats.camera(0)
        self.until(lambda: int(row[CAM["health"]]) == HEALTH.index("online"))

    def until(self, cond: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out; {len(self.results)} results; {self.sup.status()}"
            self.sup.tick()
            if self.sub.poll(20):
                while True:
                    try:
                        self.results.append(unpack(self.sub.recv_multipart(zmq.NOBLOCK)[1]))
                    except zmq.Again:
                        break

    def close(self) -> None:
        self.sup.stop()
        self.sub.close(linger=0)
        self.ctx.term()


@pytest.fixture
def engine() -> Iterator[Callable[..., Engine]]:
    made: list[Engine] = []

    def make(*args: Any, **kw: Any) -> Engine:
        e = Engine(*args, **kw)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def assert_one_result_per_trigger(results: list[dict[str, Any]], rids: list[int], ids: list[str]) -> None:
    assert [r["result_id"] for r in results] == rids  # exactly one each, published in trigger order
    assert [r["trigger_id"] for r in results] == ids


def test_manual_triggers_each_get_their_own_frame_in_order(engine: Callable[..., Engine]) -> None:
    e = engine("{type: manual}")
    e.wait_online()
    with EngineClient(e.command) as client:
        rids = [client.trigger("cam0", f"t{i}") for i in range(40)]
    e.until(lambda: len(e.results) >= 40)
    assert_one_result_per_trigger(e.results, rids, [f"t{i}" for i in range(40)])
    for r in e.results:
        assert "error" not in r and r["trigger"] == "manual", r.get("error")
        assert r["captured_at"] >= r["triggered_at"]  # the first frame captured at or after the trigger
    frames = [r["frame_id"] for r in e.results]
    assert frames == sorted(
        frames
    )  # triggers fired before the same frame share it: it is the first after each
    assert int(e.sup.stats.camera(0)[CAM["triggers"]]) == 40  # type: ignore[union-attr]


def test_saturated_workers_answer_every_trigger_with_a_result_or_an_error(
    engine: Callable[..., Engine],
) -> None:
    tools = SLOW.format(ms=30)
    e = engine("{type: manual, timeout_ms: 300}", tools=tools, workers=1, slots=8)
    e.wait_online()
    with EngineClient(e.command) as client:
        rids = [client.trigger(0, f"b{i}") for i in range(60)]  # far faster than one worker at 30 ms
    e.until(lambda: len(e.results) >= 60)
    time.sleep(0.5)
    e.until(lambda: True)
    assert_one_result_per_trigger(e.results, rids, [f"b{i}" for i in range(60)])
    codes = {r["error"]["code"] for r in e.results if "error" in r}
    ok = [r for r in e.results if "error" not in r]
    assert ok and codes and codes <= {"LENS_OVERRUN", "LENS_TIMEOUT"}, codes
    for r in e.results:
        if "error" in r:
            assert r["pass"] is False and r["trigger_id"] in r["error"]["message"], r


def test_a_trigger_on_a_continuous_camera_is_refused(engine: Callable[..., Engine]) -> None:
    e = engine("{type: continuous}")
    with (
        EngineClient(e.command) as client,
        pytest.raises(RuntimeError, match="camera cam0 has a continuous trigger"),
    ):
        client.trigger("cam0")
    with EngineClient(e.command) as client, pytest.raises(RuntimeError, match="no camera 'nope'"):
        client.trigger("nope")


def test_source_unavailable_is_an_error_result(engine: Callable[..., Engine], tmp_path: Any) -> None:
    e = engine("{type: manual, timeout_ms: 200}", source=f"{{type: folder, path: {tmp_path / 'missing'}}}")
    with EngineClient(e.command) as client:
        rids = [client.trigger("cam0", "x1"), client.trigger("cam0", "x2")]
    e.until(lambda: len(e.results) >= 2)
    assert_one_result_per_trigger(e.results, rids, ["x1", "x2"])
    for r in e.results:
        assert (
            r["error"]["code"] == "LENS_SOURCE_UNAVAILABLE" and r["frame_id"] is None and r["pass"] is False
        )


def test_cron_fires_on_the_second(engine: Callable[..., Engine]) -> None:
    e = engine('{type: cron, expr: "* * * * * *"}')
    e.until(lambda: len(e.results) >= 3, timeout=30)
    first = e.results[:3]
    ticks = [r["triggered_at"] for r in first]
    assert all(t == int(t) for t in ticks), ticks  # stamped with its own tick
    assert [b - a for a, b in itertools.pairwise(ticks)] == [1.0, 1.0]
    assert all(
        r["trigger"] == "cron" and "error" not in r and r["captured_at"] >= r["triggered_at"] for r in first
    )


def test_serial_lines_on_a_pty_trigger_exactly_once_each(engine: Callable[..., Engine]) -> None:
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        tools = SLOW.format(ms=5)
        e = engine(f'{{type: serial, port: "{port}", match: "^TRIG;(\\\\w+)$", ack: OK, timeout_ms: 3000}}',
                   tools=tools, workers=1)  # fmt: skip
        time.sleep(1.5)  # the serial process opens the port
        n = 80
        noise = [
            b"garbage\n",
            b"\xff\xfe\x00binary\n",
            b"TRIG;\n",
            b"x" * 300 + b"\n",
            b"TRIG;s99 trailing\n",
        ]
        sent = []
        for i in range(n):
            if i % 7 == 3:  # a trigger line arriving in pieces is still one trigger
                os.write(master, b"TRI")
                os.write(master, f"G;s{i}\n".encode())
            else:
                os.write(master, f"TRIG;s{i}\n".encode())
            sent.append(f"s{i}")
            if i % 16 == 0:
                os.write(master, noise[(i // 16) % len(noise)])
        e.until(lambda: len(e.results) >= n, timeout=90)
        time.sleep(0.3)
        e.until(lambda: True)
        assert [r["trigger_id"] for r in e.results] == sent  # each line once, in order
        rids = [r["result_id"] for r in e.results]
        assert rids == sorted(rids) and len(set(rids)) == n
        assert all(r["trigger"] == "serial" for r in e.results)
        acks = b""
        deadline = time.monotonic() + 5
        while acks.count(b"OK\n") < n and time.monotonic() < deadline:
            import select

            if select.select([master], [], [], 0.1)[0]:
                acks += os.read(master, 65536)
        assert acks.count(b"OK\n") == n
        assert int(e.sup.stats.camera(0)[CAM["trigger_noise"]]) == len(noise)  # type: ignore[union-attr]
    finally:
        os.close(master)
        os.close(slave)
