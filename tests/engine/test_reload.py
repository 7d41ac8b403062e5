"""Hot reload of the inspection config on a running engine (real processes, real bus)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
import zmq

from lens.config.load import ConfigError, load_pipeline_text
from lens.engine.bus import unpack
from lens.engine.client import EngineClient
from lens.engine.stats import RUN
from lens.engine.supervisor import Supervisor
from tests.lensrun import free_port

BRIGHTNESS = {"name": "brightness", "type": "grayscale"}
PARTS = {"name": "parts", "type": "blob", "params": {"th_min": 128, "area_min": 50}}


class Bus:
    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.RECONNECT_IVL, 20)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"result.")
        self.sub.connect(endpoint)
        self.results: list[dict[str, Any]] = []

    def until(self, cond: Callable[[], bool], sup: Supervisor, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out; status {sup.status()}"
            sup.tick()
            if self.sub.poll(50):
                while True:
                    try:
                        _, payload = self.sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.results.append(unpack(payload))

    def close(self) -> None:
        self.sub.close(linger=0)
        self.ctx.term()


@pytest.fixture
def running() -> Iterator[tuple[Supervisor, Bus]]:
    port = free_port()
    cfg = load_pipeline_text(
        f"""
machine: {{id: vm_reload}}
cameras: [{{id: cam0, source: {{type: synthetic, seed: 2}}}}]
inspection: {{workers: 2, tools: [{{name: brightness, type: grayscale}}]}}
outputs: {{zmq: {{bind: "tcp://127.0.0.1:{port}", command: "tcp://127.0.0.1:{free_port()}"}}}}
control: {{enabled: false}}
"""
    )
    bus = Bus(f"tcp://127.0.0.1:{port}")
    sup = Supervisor(cfg)
    try:
        sup.start()
        yield sup, bus
    finally:
        sup.stop()
        bus.close()


def test_reload_switches_every_later_frame_without_losing_any(running: tuple[Supervisor, Bus]) -> None:
    sup, bus = running
    bus.until(lambda: len(bus.results) >= 50, sup)
    workers_before = {n: p for n, p in sup.pids().items() if n.startswith("worker")}
    with EngineClient(sup.ctx.hub_endpoint) as client:
        assert client.reload_inspection({"tools": [BRIGHTNESS, PARTS]}) == 2
        assert sup.stats is not None
        # result ids handed out so far: every job after the ACK is dispatched under version 2
        dispatched = int(sup.stats.run[RUN["results"]])
        bus.until(lambda: sum(r["inspection_version"] == 2 for r in bus.results) >= 200, sup)
        # a bad config is refused with its path, and changes nothing
        bad = {"tools": [{**PARTS, "params": {"th_min": 200, "th_max": 100}}]}
        with pytest.raises(ConfigError, match=r"tools\[0\]\.params: th_min \(200\) is greater than th_max"):
            client.reload_inspection(bad)
        n = len(bus.results)
        bus.until(lambda: len(bus.results) >= n + 50, sup)

    tools_of = {1: {"brightness"}, 2: {"brightness", "parts"}}
    for r in bus.results:  # no frame mixes versions: each result has exactly its version's tools
        assert set(r["tools"]) == tools_of[r["inspection_version"]], r["result_id"]
    by_id = sorted(bus.results, key=lambda r: r["result_id"])
    versions = [r["inspection_version"] for r in by_id]
    assert versions == sorted(versions)  # frames dispatched after the reload all use version 2
    ids = [r["result_id"] for r in by_id]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing lost across the reload
    assert all(r["inspection_version"] == 2 for r in by_id if r["result_id"] > dispatched)
    assert any(r["inspection_version"] == 1 for r in by_id)
    assert {n: p for n, p in sup.pids().items() if n.startswith("worker")} == workers_before  # no restart
    status = sup.status()
    assert status["run"]["restarts"] == 0 and status["run"]["inspection_version"] == 2
    timing = status["inspection"]
    assert timing["version"] == 2 and list(timing["tools"]) == ["brightness", "parts"]
    for name, t in timing["tools"].items():
        assert t["count"] > 0, name
        assert 0 < t["min_us"] <= t["avg_us"] <= t["max_us"], (name, t)


def test_a_worker_restarted_after_a_reload_uses_the_new_config(running: tuple[Supervisor, Bus]) -> None:
    sup, bus = running
    bus.until(lambda: len(bus.results) >= 20, sup)
    with EngineClient(sup.ctx.hub_endpoint) as client:
        assert client.reload_inspection({"tools": [PARTS]}) == 2
    bus.until(lambda: sum(r["inspection_version"] == 2 for r in bus.results) >= 20, sup)
    victim = sup.pids()["worker-0"]
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    bus.until(lambda: sup.pids()["worker-0"] != victim, sup)
    new = psutil.Process(sup.pids()["worker-0"])
    n = len(bus.results)
    bus.until(lambda: len(bus.results) >= n + 200 and new.is_running(), sup)
    later = bus.results[n + 50 :]
    assert later and all(r["inspection_version"] == 2 and set(r["tools"]) == {"parts"} for r in later
                         if "error" not in r)  # fmt: skip
    assert sup.status()["run"]["restarts"] == 1
