"""Smoke test of the control benchmark: a real engine with its control service answers health,
heartbeat and status while stopped and while inspecting, a real client follows the log stream, and
everything is torn down without leaks (the autouse fixture checks child processes, /dev/shm
segments, listening sockets and zmq contexts; the follower thread is joined). No timing asserts."""

from __future__ import annotations

import math
import os

import pytest

from bench.control import API_KEY_ENV, ENDPOINTS, run, table


@pytest.mark.timeout(120)
def test_quick_run_measures_latency_idle_and_loaded_and_the_cost_of_following() -> None:
    assert API_KEY_ENV not in os.environ
    result = run(quick=True)
    assert API_KEY_ENV not in os.environ  # restored after the run

    assert result["suite"] == "control" and result["quick"] is True
    assert result["machine"]["cores"] == os.cpu_count()
    lat = result["latency"]
    n = lat["requests"]
    assert n > 0 and lat["warmup"] > 0
    idle, load = lat["phases"]["idle"], lat["phases"]["load"]
    assert list(lat["phases"]) == ["idle", "load"]
    assert idle["state"] == "stopped" and idle["states_seen"] == {"stopped": n}
    assert idle["inspected_per_s"] == 0.0
    assert load["state"] == "running" and load["states_seen"] == {"running": n}
    assert load["inspected_per_s"] > 0
    for name, phase in lat["phases"].items():
        for ep in ENDPOINTS:
            ms = phase[ep]
            assert 0 < ms["p50"] <= ms["p99"] <= ms["max"], (name, ep, ms)
            assert 0 < ms["mean"] <= ms["max"], (name, ep, ms)

    tp = result["throughput"]
    windows = tp["windows"]
    assert [w["follow"] for w in windows] == [False, True] * tp["pairs"]
    for w in windows:
        assert w["inspected"] > 0 and w["inspected_per_s"] > 0, w
        assert w["control_cpu_pct"] > 0, w
        if w["follow"]:
            assert w["lines_per_s"] > 0, w
        else:
            assert w["lines_per_s"] == 0.0, w
    assert tp["median_without"] > 0 and tp["median_with"] > 0 and math.isfinite(tp["cost_pct"])
    assert len(tp["pair_costs_pct"]) == tp["pairs"]
    assert tp["follower_lines"] > 0 and tp["follower_bytes"] > tp["follower_lines"]
    assert result["counters"] == {"restarts": 0, "bus_dropped": 0, "worker_lost_jobs": 0}

    targets = result["targets"]
    assert targets["heartbeat_p99_ms"]["measured"] == load["heartbeat"]["p99"]
    assert targets["follow_cost_pct"]["measured"] == tp["cost_pct"]
    assert all(isinstance(t["pass"], bool) for t in targets.values())

    text = table(result)
    for header in ("heartbeat ms p50/p99/max", "status ms p50/p99/max", "inspected/s", "lines/s", "target"):
        assert header in text, header
    assert "\nidle   stopped" in text and "\nload   running" in text
