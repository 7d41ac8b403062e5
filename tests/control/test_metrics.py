"""Prometheus text from a status dict, read back with prometheus_client's own parser."""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import numpy as np
import pytest

from lens.control import metrics
from lens.control.metrics import CONTENT_TYPE, TOOL_STATS, format_value, render

parser = pytest.importorskip("prometheus_client.parser")

HOST = {
    "id": 7,
    "at": 1763760000.5,
    "cpu_pct": 37.5,
    "cpu_count": 4,
    "load_1m": 1.25,
    "memory": {"total_mb": 1024.0, "used_mb": 256.5, "pct": 25.0},
    "disk": {"path": "/var/lens", "total_gb": 100.0, "used_gb": 12.25, "pct": 12.3},
    "temperature_c": 61.5,
    "processes": {
        "dispatcher": {"pid": 101, "cpu_pct": 12.5, "rss_mb": 64.0, "threads": 5, "alive": True},
        "worker-0": {"pid": None, "cpu_pct": None, "rss_mb": None, "threads": None, "alive": False},
    },
    "cameras": {"cam0": {"fps": 24.5}, "cam1": {"fps": 3.0}},
}
STATUS: dict[str, Any] = {
    "machine_id": "vm_001",
    "state": "running",
    "mode": "RUN",
    "uptime_s": 12.3,
    "cameras": {
        "cam0": {
            "captured": 10,
            "inspected": 9,
            "passed": 8,
            "failed": 1,
            "errors": 0,
            "skipped_by_trigger": 2,
            "skipped_stopped": 3,
            "dropped_busy": 1,
            "dropped_ring_full": 4,
            "overrun": 5,
            "source_errors": 6,
            "reconnects": 7,
            "triggers": 8,
            "trigger_noise": 9,
            "superseded": 11,
            "resized": 12,
            "health": "online",
            "fps": 25.0,
        },
        "cam1": {"captured": 3, "health": 2},  # health as the shared counter's index: reconnecting
    },
    "run": {
        "results": 9,
        "bus_sent": 12,
        "bus_dropped": 0,
        "restarts": 2,
        "worker_lost_jobs": 1,
        "inspection_version": 1,
    },
    "inspection": {
        "version": 3,
        "tools": {"brightness": {"count": 9, "min_us": 1.0, "avg_us": 2.5, "max_us": 30.25}},
    },
    "host": HOST,
    "webhooks": {
        "depth": 4,
        "oldest_age_s": None,
        "delivered": 5,
        "failed_attempts": 1,
        "coalesced": 2,
        "dropped": 0,
        "dead": 3,
    },
    "outputs": {
        "store": {"written": 5, "pending": 2, "write_errors": 1},
        "image_log": {"written": 1, "skipped_guard": 6, "errors": 0, "paused": False},
        "mqtt": {"published": 3, "dropped": 0, "buffered": 7, "connected": True},
        "actions": [
            {"index": 0, "type": "serial", "fired": 1, "failed": 0, "dropped": 0},
            {"index": 1, "type": "http", "fired": 4, "failed": 2, "dropped": 1},
        ],
    },
    "session": {"held": True},
}
M = {"machine": "vm_001"}
CAMERA_COUNTERS = {
    "captured": "lens_frames_captured_total",
    "inspected": "lens_frames_inspected_total",
    "passed": "lens_frames_passed_total",
    "failed": "lens_frames_failed_total",
    "errors": "lens_inspection_errors_total",
    "source_errors": "lens_source_errors_total",
    "reconnects": "lens_source_reconnects_total",
    "triggers": "lens_triggers_total",
    "trigger_noise": "lens_trigger_noise_total",
    "resized": "lens_frames_resized_total",
}
MIB, GIB = 1 << 20, 1 << 30


def _parse(text: str) -> tuple[dict[str, tuple[str, str]], dict[tuple[str, frozenset], float]]:
    """(family -> (type, help), (sample name, labels) -> value), checking each sample is unique."""
    families: dict[str, tuple[str, str]] = {}
    samples: dict[tuple[str, frozenset], float] = {}
    for fam in parser.text_string_to_metric_families(text):
        name = fam.name + "_total" if fam.type == "counter" else fam.name  # the parser drops _total
        assert name not in families, f"family {name} appears twice"
        families[name] = (fam.type, fam.documentation)
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"sample {key} appears twice"
            samples[key] = s.value
    return families, samples


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset({**M, **labels}.items()))]


def _families_in_text(text: str) -> list[str]:
    return re.findall(r"^# TYPE (\S+) ", text, re.M)


def test_full_status_round_trips_exactly() -> None:
    text = render(STATUS)
    assert text.endswith("\n") and CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    families, samples = _parse(text)
    # HELP and TYPE once per family, and each family's samples in one group right after them
    names = _families_in_text(text)
    assert len(names) == len(set(names)) == len(families)
    assert re.findall(r"^# HELP (\S+) ", text, re.M) == names
    current = None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            current = line.split()[2]
        elif not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] == current, line
    for name, (kind, help_) in families.items():
        assert name.startswith("lens_") and help_
        assert kind == ("counter" if name.endswith("_total") else "gauge"), name

    assert _value(samples, "lens_uptime_seconds") == 12.3
    states = ("stopped", "running", "error", "maintenance")
    assert [_value(samples, "lens_state", state=s) for s in states] == [0, 1, 0, 0]
    assert _value(samples, "lens_mode", mode="RUN") == 1 and _value(samples, "lens_mode", mode="TEST") == 0
    assert _value(samples, "lens_session_held") == 1

    cam0 = STATUS["cameras"]["cam0"]
    for key, name in CAMERA_COUNTERS.items():
        assert _value(samples, name, camera="cam0") == cam0[key], name
    reasons = [
        "skipped_by_trigger",
        "skipped_stopped",
        "dropped_busy",
        "dropped_ring_full",
        "overrun",
        "superseded",
    ]
    for reason in reasons:
        assert (
            _value(samples, "lens_frames_not_inspected_total", camera="cam0", reason=reason) == cam0[reason]
        )
    assert [k for k in samples if k[0] == "lens_frames_not_inspected_total"] == [
        ("lens_frames_not_inspected_total", frozenset({**M, "camera": "cam0", "reason": r}.items()))
        for r in reasons
    ]  # cam1 has none of these: none are made up
    assert _value(samples, "lens_frames_captured_total", camera="cam1") == 3
    assert ("lens_frames_inspected_total", frozenset({**M, "camera": "cam1"}.items())) not in samples
    assert _value(samples, "lens_camera_frames_per_second", camera="cam0") == 25.0  # the status's own
    assert _value(samples, "lens_camera_frames_per_second", camera="cam1") == 3.0  # from the host sample
    health = {
        (c, s): _value(samples, "lens_camera_health", camera=c, state=s)
        for c in ("cam0", "cam1")
        for s in ("offline", "online", "reconnecting", "ended")
    }
    assert [k for k, v in health.items() if v == 1] == [("cam0", "online"), ("cam1", "reconnecting")]
    assert sum(health.values()) == 2

    assert _value(samples, "lens_results_total") == 9
    assert _value(samples, "lens_bus_sent_total") == 12
    assert _value(samples, "lens_bus_dropped_total") == 0
    assert _value(samples, "lens_process_restarts_total") == 2
    assert _value(samples, "lens_worker_lost_jobs_total") == 1
    assert _value(samples, "lens_inspection_version") == 3  # inspection.version wins over run's
    assert _value(samples, "lens_tool_runs_total", tool="brightness") == 9
    timing = [
        _value(samples, "lens_tool_elapsed_microseconds", tool="brightness", stat=s) for s in TOOL_STATS
    ]
    assert timing == [1.0, 2.5, 30.25]

    assert _value(samples, "lens_host_sample_timestamp_seconds") == 1763760000.5
    assert _value(samples, "lens_host_cpu_percent") == 37.5
    assert _value(samples, "lens_host_cpus") == 4
    assert _value(samples, "lens_host_load1") == 1.25
    assert _value(samples, "lens_host_memory_total_bytes") == 1024 * MIB
    assert _value(samples, "lens_host_memory_used_bytes") == 256.5 * MIB
    assert _value(samples, "lens_host_memory_used_percent") == 25.0
    assert _value(samples, "lens_host_disk_total_bytes", path="/var/lens") == 100 * GIB
    assert _value(samples, "lens_host_disk_used_bytes", path="/var/lens") == 12.25 * GIB
    assert _value(samples, "lens_host_disk_used_percent", path="/var/lens") == 12.3
    assert _value(samples, "lens_host_temperature_celsius") == 61.5
    assert _value(samples, "lens_process_up", process="dispatcher") == 1
    assert _value(samples, "lens_process_up", process="worker-0") == 0
    assert _value(samples, "lens_process_cpu_percent", process="dispatcher") == 12.5
    assert _value(samples, "lens_process_resident_bytes", process="dispatcher") == 64 * MIB
    assert _value(samples, "lens_process_threads", process="dispatcher") == 5
    for name in ("lens_process_cpu_percent", "lens_process_resident_bytes", "lens_process_threads"):
        assert (name, frozenset({**M, "process": "worker-0"}.items())) not in samples  # None: left out

    assert _value(samples, "lens_webhook_queue_depth") == 4
    assert "lens_webhook_oldest_age_seconds" not in families  # null age: no sample, no family
    assert _value(samples, "lens_webhook_delivered_total") == 5
    assert _value(samples, "lens_webhook_failed_attempts_total") == 1
    assert _value(samples, "lens_webhook_coalesced_total") == 2
    assert _value(samples, "lens_webhook_dropped_total") == 0
    assert _value(samples, "lens_webhook_dead_total") == 3
    assert _value(samples, "lens_store_written_total") == 5
    assert _value(samples, "lens_store_pending") == 2
    assert _value(samples, "lens_store_write_errors_total") == 1
    assert _value(samples, "lens_image_log_written_total") == 1
    assert _value(samples, "lens_image_log_skipped_guard_total") == 6
    assert _value(samples, "lens_image_log_errors_total") == 0
    assert _value(samples, "lens_image_log_paused") == 0
    assert _value(samples, "lens_mqtt_published_total") == 3
    assert _value(samples, "lens_mqtt_dropped_total") == 0
    assert _value(samples, "lens_mqtt_buffered") == 7
    assert _value(samples, "lens_mqtt_connected") == 1
    assert _value(samples, "lens_action_fired_total", action="1", type="http") == 4
    assert _value(samples, "lens_action_failed_total", action="1", type="http") == 2
    assert _value(samples, "lens_action_dropped_total", action="1", type="http") == 1
    assert _value(samples, "lens_action_fired_total", action="0", type="serial") == 1
    assert _value(samples, "lens_exposition_invalid_values") == 0
    assert all(dict(labels)["machine"] == "vm_001" for _, labels in samples)
    assert len(samples) == 87  # 2 cameras x 5 health states among them


def test_missing_sections_are_skipped() -> None:
    assert render({}) == (
        "# HELP lens_exposition_invalid_values Status values left out of this page: not numbers\n"
        "# TYPE lens_exposition_invalid_values gauge\n"
        "lens_exposition_invalid_values 0\n"
    )
    status = {
        "machine_id": "m1",
        "cameras": {"cam0": {"captured": 3, "fps": None}},
        "outputs": {"mqtt": {"connected": False}},
        "host": {"disk": None, "temperature_c": None},
    }
    text = render(status)
    families, samples = _parse(text)
    assert sorted(families) == [
        "lens_exposition_invalid_values",
        "lens_frames_captured_total",
        "lens_mqtt_connected",
    ]
    assert samples == {
        ("lens_frames_captured_total", frozenset({"machine": "m1", "camera": "cam0"}.items())): 3.0,
        ("lens_mqtt_connected", frozenset({"machine": "m1"}.items())): 0.0,
        ("lens_exposition_invalid_values", frozenset({"machine": "m1"}.items())): 0.0,
    }


def test_label_values_are_escaped() -> None:
    machine = 'line "one"\\two\nthree'
    camera = 'c"\\\n'
    text = render({"machine_id": machine, "state": 'odd "state"', "cameras": {camera: {"captured": 1}}})
    assert 'machine="line \\"one\\"\\\\two\\nthree"' in text
    _, samples = _parse(text)
    assert (
        samples[("lens_frames_captured_total", frozenset({"machine": machine, "camera": camera}.items()))]
        == 1
    )
    # an unknown state is still shown, beside the known ones
    assert samples[("lens_state", frozenset({"machine": machine, "state": 'odd "state"'}.items()))] == 1
    assert samples[("lens_state", frozenset({"machine": machine, "state": "running"}.items()))] == 0
    # the newlines in the labels were escaped: one line per sample, none broken
    assert len([line for line in text.splitlines() if not line.startswith("#")]) == len(samples)


def test_malformed_values_are_counted_not_raised(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_last_invalid", "")  # logged once per change: start afresh
    status = {
        "machine_id": "m1",
        "uptime_s": "12",  # a string, not a number
        "state": 3,
        "cameras": {"cam0": ["not", "a", "mapping"], "cam1": {"captured": 4, "health": 9}},
        "host": {"memory": 5, "processes": {"dispatcher": {"alive": True, "rss_mb": {}}}},
        "outputs": {"actions": "serial"},
    }
    before = copy.deepcopy(status)
    text = render(status)
    assert status == before  # the status is only read
    _, samples = _parse(text)
    m = {"machine": "m1"}
    assert samples[("lens_exposition_invalid_values", frozenset(m.items()))] == 7
    assert samples[("lens_frames_captured_total", frozenset({**m, "camera": "cam1"}.items()))] == 4
    assert samples[("lens_process_up", frozenset({**m, "process": "dispatcher"}.items()))] == 1
    assert not any(k[0] in ("lens_uptime_seconds", "lens_state", "lens_camera_health") for k in samples)
    assert "metrics: 7 status value(s) left out" in caplog.text
    assert render([1, 2]).endswith("lens_exposition_invalid_values 1\n")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        -3,
        7,
        0.1,
        1 / 3,
        1e-9,
        123456.789,
        1e300,
        -2.5,
        math.inf,
        -math.inf,
        np.int64(5),
        np.float32(0.1),
    ],
)
def test_numbers_round_trip(value: Any) -> None:
    _, samples = _parse(render({"uptime_s": value}))
    assert samples[("lens_uptime_seconds", frozenset())] == float(value)


def test_number_text() -> None:
    assert format_value(2**53 + 1) == "9007199254740993"  # integers keep every digit
    assert format_value(True) == "1" and format_value(False) == "0"
    assert format_value(0.1) == "0.1"
    assert format_value(math.nan) == "NaN"
    assert format_value(1.5, 1 << 20) == "1572864"
    assert format_value(3, 1 << 30) == "3221225472"
    assert format_value("3") is None and format_value(None) is None
    _, samples = _parse(render({"uptime_s": math.nan}))
    assert math.isnan(samples[("lens_uptime_seconds", frozenset())])
