"""Smoke test of the outputs benchmark: a real engine runs once with no output and once with every
output on (SQLite store, image log, MQTT to a real mosquitto, an MQTT action, webhooks to a real
HTTP receiver), and the ON run's outputs really did their work. Everything is torn down without
leaks (the autouse fixture checks child processes, /dev/shm segments, listening sockets and zmq
contexts; the receiver and subscriber threads are joined). No timing or ratio asserts."""

from __future__ import annotations

import math

import pytest

from bench.outputs import MOSQUITTO, run, table


@pytest.mark.timeout(150)
def test_quick_run_compares_off_and_on_and_every_output_did_its_work() -> None:
    result = run(quick=True)

    assert result["suite"] == "outputs" and result["quick"] is True
    rows = result["rows"]
    assert [r["outputs"] for r in rows] == ["off", "on"] * result["pairs"]
    assert [r["run"] for r in rows] == list(range(1, len(rows) + 1))
    for r in rows:
        assert r["inspected"] > 0 and r["inspected_per_s"] > 0, r
        assert r["control_cpu_pct"] > 0, r
    for r in rows:
        if r["outputs"] == "off":
            assert "did" not in r and r["outputs_cpu_pct"] == 0.0 and r["broker_cpu_pct"] == 0.0, r
            continue
        assert r["outputs_cpu_pct"] > 0, r
        did = r["did"]
        assert did["rows"] >= r["inspected"] > 0, did  # the store holds the whole run, window included
        assert did["fail_rows"] > 0 and did["fail_rows"] + did["error_rows"] < did["rows"], did
        assert 0 < did["images"] <= did["fail_rows"] + did["error_rows"], did
        hooks = did["webhooks"]
        assert hooks.get("inspection.summary", 0) > 0 and "bad_signature" not in hooks, hooks
        if MOSQUITTO is not None:
            mqtt = did["mqtt"]
            assert mqtt["result"] > 0 and mqtt["status"] > 0 and mqtt["other"] == 0, mqtt
            assert 0 < mqtt["action"] <= did["fail_rows"], (mqtt, did)
            assert did["mqtt_sink"]["published"] > 0 and did["mqtt_sink"]["dropped"] == 0, did
    assert result["median_off"] > 0 and result["median_on"] > 0 and math.isfinite(result["loss_pct"])
    assert len(result["pair_loss_pct"]) == result["pairs"]
    assert isinstance(result["target"]["pass"], bool)
    assert (result["mqtt"] == "on") == (MOSQUITTO is not None)

    text = table(result)
    for header in ("inspected/s", "outputs CPU %", "stored", "images", "mqtt results", "webhooks", "target"):
        assert header in text, header
    assert "inspection.summary" in text
