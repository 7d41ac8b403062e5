"""`GET /metrics`: the control service's status as Prometheus text exposition (format 0.0.4).

`render(status)` reads the status dict the control service builds (every section optional) and
writes one group per metric family, `# HELP` and `# TYPE` once each. Names carry the `lens_`
prefix and their unit (`_seconds`, `_bytes`, `_percent`, `_total` on counters); every sample is
labelled `machine` when the status names it. A None value is left out; a value that is not a
number is left out too and counted in `lens_exposition_invalid_values`, so a malformed status
never breaks a scrape.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lens.engine.stats import HEALTH

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("stopped", "running", "error", "maintenance")
MODES = ("RUN", "TEST")
NOT_INSPECTED = (
    "skipped_by_trigger",
    "skipped_stopped",
    "dropped_busy",
    "dropped_ring_full",
    "overrun",
    "superseded",
)
TOOL_STATS = ("min", "avg", "max")
MIB = 1 << 20
GIB = 1 << 30
_last_invalid = ""  # the last complaint logged, so a bad status is not logged on every scrape

Kind = Literal["counter", "gauge"]
# (key in the status section, metric name, help). A name ending in `_total` is a counter, any other
# a gauge; a key ending in `_mb` / `_gb` holds MiB / GiB, written out in bytes.
Row = tuple[str, str, str]

CAMERA_ROWS: tuple[Row, ...] = (
    ("captured", "lens_frames_captured_total", "Frames written into the camera's ring"),
    ("inspected", "lens_frames_inspected_total", "Results produced (pass, fail or error)"),
    ("passed", "lens_frames_passed_total", "Inspections that passed"),
    ("failed", "lens_frames_failed_total", "Inspections that did not pass, errors excluded"),
    ("errors", "lens_inspection_errors_total", "Inspections answered with an error result"),
    ("source_errors", "lens_source_errors_total", "Failed reads or reopen attempts of the source"),
    ("reconnects", "lens_source_reconnects_total", "Times the source was reopened after a loss"),
    ("triggers", "lens_triggers_total", "Event triggers fired (manual, cron, serial)"),
    ("trigger_noise", "lens_trigger_noise_total", "Serial lines received that were not a trigger"),
    ("resized", "lens_frames_resized_total", "Frames resized to the ring geometry"),
)
RUN_ROWS: tuple[Row, ...] = (
    ("results", "lens_results_total", "Result ids handed out"),
    ("bus_sent", "lens_bus_sent_total", "Messages published on the results bus"),
    ("bus_dropped", "lens_bus_dropped_total", "Bus messages a slow subscriber did not get"),
    ("restarts", "lens_process_restarts_total", "Child processes restarted after a crash"),
    ("worker_lost_jobs", "lens_worker_lost_jobs_total", "Jobs lost with a crashed worker"),
    ("sources_done", "lens_sources_done", "1 once every finite source has ended and been answered"),
)
HOST_ROWS: tuple[Row, ...] = (
    ("at", "lens_host_sample_timestamp_seconds", "When the host sample was taken (epoch)"),
    ("cpu_pct", "lens_host_cpu_percent", "System CPU busy since the previous sample"),
    ("cpu_count", "lens_host_cpus", "Logical CPUs"),
    ("load_1m", "lens_host_load1", "One-minute load average"),
    ("temperature_c", "lens_host_temperature_celsius", "Hottest temperature sensor reading"),
)
MEMORY_ROWS: tuple[Row, ...] = (
    ("total_mb", "lens_host_memory_total_bytes", "Physical memory"),
    ("used_mb", "lens_host_memory_used_bytes", "Memory in use (total minus available)"),
    ("pct", "lens_host_memory_used_percent", "Memory in use"),
)
DISK_ROWS: tuple[Row, ...] = (
    ("total_gb", "lens_host_disk_total_bytes", "Size of the data disk"),
    ("used_gb", "lens_host_disk_used_bytes", "Space used on the data disk"),
    ("pct", "lens_host_disk_used_percent", "Space used on the data disk"),
)
PROCESS_ROWS: tuple[Row, ...] = (
    ("alive", "lens_process_up", "1 while the lens process runs"),
    ("cpu_pct", "lens_process_cpu_percent", "CPU of the process since the previous sample (100 = one core)"),
    ("rss_mb", "lens_process_resident_bytes", "Resident memory of the process"),
    ("threads", "lens_process_threads", "Threads of the process"),
)
WEBHOOK_ROWS: tuple[Row, ...] = (
    ("depth", "lens_webhook_queue_depth", "Webhook messages waiting for delivery"),
    ("oldest_age_s", "lens_webhook_oldest_age_seconds", "Age of the oldest undelivered webhook message"),
    ("delivered", "lens_webhook_delivered_total", "Webhook messages delivered"),
    ("failed_attempts", "lens_webhook_failed_attempts_total", "Webhook delivery attempts that failed"),
    ("coalesced", "lens_webhook_coalesced_total", "Summaries merged while the spool was full"),
    ("dropped", "lens_webhook_dropped_total", "Webhook messages dropped"),
    ("dead", "lens_webhook_dead_total", "Webhook messages given up on"),
)
STORE_ROWS: tuple[Row, ...] = (
    ("written", "lens_store_written_total", "Results written to the result store"),
    ("pending", "lens_store_pending", "Results waiting to be written to the store"),
    ("write_errors", "lens_store_write_errors_total", "Failed writes to the result store"),
)
IMAGE_LOG_ROWS: tuple[Row, ...] = (
    ("written", "lens_image_log_written_total", "Images written to the image log"),
    ("skipped_guard", "lens_image_log_skipped_guard_total", "Images not written: the disk was too full"),
    ("errors", "lens_image_log_errors_total", "Failed image log writes"),
    ("paused", "lens_image_log_paused", "1 while the disk guard pauses the image log"),
)
MQTT_ROWS: tuple[Row, ...] = (
    ("published", "lens_mqtt_published_total", "Messages published to the MQTT broker"),
    ("dropped", "lens_mqtt_dropped_total", "MQTT messages dropped"),
    ("buffered", "lens_mqtt_buffered", "MQTT messages waiting for the broker"),
    ("connected", "lens_mqtt_connected", "1 while connected to the MQTT broker"),
)
ACTION_ROWS: tuple[Row, ...] = (
    ("fired", "lens_action_fired_total", "Result actions fired"),
    ("failed", "lens_action_failed_total", "Result actions that failed"),
    ("dropped", "lens_action_dropped_total", "Result actions dropped"),
)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: Any, scale: int = 1) -> str | None:
    """`value` (times `scale`) as exposition text that parses back to the same number, or None
    when it is not a number. Bools are 1/0, integers stay integers, floats keep every digit
    (`repr`); a scaled float (MiB to bytes) is rounded to a whole unit."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value) * scale)
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "+Inf" if v > 0 else "-Inf"
        return str(round(v * scale)) if scale != 1 else repr(v)
    return None


class _Exposition:
    """Samples grouped by family, in the order families first appear."""

    def __init__(self) -> None:
        self.base: dict[str, str] = {}  # labels on every sample (machine)
        self.families: dict[str, tuple[Kind, str, list[str]]] = {}
        self.invalid: list[str] = []

    def add(
        self,
        name: str,
        help_: str,
        value: Any,
        labels: Mapping[str, Any] | None = None,
        scale: int = 1,
    ) -> None:
        if value is None:
            return
        text = format_value(value, scale)
        if text is None:
            self.invalid.append(f"{name}: {value!r}")
            return
        pairs = {**self.base, **(labels or {})}
        body = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in pairs.items())
        kind: Kind = "counter" if name.endswith("_total") else "gauge"
        family = self.families.setdefault(name, (kind, help_, []))
        family[2].append(f"{name}{{{body}}} {text}" if body else f"{name} {text}")

    def rows(
        self, rows: Sequence[Row], section: Any, where: str, labels: Mapping[str, Any] | None = None
    ) -> None:
        if section is None:
            return
        if not isinstance(section, Mapping):
            self.invalid.append(f"{where}: not a mapping ({type(section).__name__})")
            return
        for key, name, help_ in rows:
            scale = MIB if key.endswith("_mb") else GIB if key.endswith("_gb") else 1
            self.add(name, help_, section.get(key), labels, scale)

    def enum(
        self,
        name: str,
        help_: str,
        value: Any,
        known: Sequence[str],
        label: str,
        labels: Mapping[str, Any] | None = None,
    ) -> None:
        """`name{label="<each known value>"}` 1 for `value`, 0 for the others (an unknown value is added)."""
        if value is None:
            return
        if not isinstance(value, str):
            self.invalid.append(f"{name}: {value!r}")
            return
        for v in (*known, value) if value not in known else known:
            self.add(name, help_, v == value, {**(labels or {}), label: v})

    def text(self) -> str:
        out: list[str] = []
        for name, (kind, help_, lines) in self.families.items():
            out.append(f"# HELP {name} {_escape_help(help_)}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)
        return "\n".join(out) + "\n" if out else ""


def _mapping(value: Any, where: str, exp: _Exposition) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        exp.invalid.append(f"{where}: not a mapping ({type(value).__name__})")
        return {}
    return value


def _health(value: Any) -> Any:
    # the shared counters hold the health as an index into HEALTH; the status may carry either
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= int(value) < len(HEALTH):
        return HEALTH[int(value)]
    return value


def _cameras(exp: _Exposition, status: Mapping[str, Any], host: Mapping[str, Any]) -> None:
    host_cams = _mapping(host.get("cameras"), "host.cameras", exp)
    for cam, counters in _mapping(status.get("cameras"), "cameras", exp).items():
        where = f"cameras.{cam}"
        if not isinstance(counters, Mapping):
            exp.invalid.append(f"{where}: not a mapping ({type(counters).__name__})")
            continue
        labels = {"camera": cam}
        exp.rows(CAMERA_ROWS, counters, where, labels)
        for reason in NOT_INSPECTED:
            exp.add(
                "lens_frames_not_inspected_total",
                "Frames not inspected, by reason",
                counters.get(reason),
                {"camera": cam, "reason": reason},
            )
        fps = counters.get("fps")
        if fps is None and isinstance(host_cams.get(cam), Mapping):
            fps = host_cams[cam].get("fps")
        exp.add("lens_camera_frames_per_second", "Frames captured per second", fps, labels)
        exp.enum(
            "lens_camera_health",
            "Health of the camera source",
            _health(counters.get("health")),
            HEALTH,
            "state",
            labels,
        )


def _inspection(exp: _Exposition, status: Mapping[str, Any]) -> None:
    run = _mapping(status.get("run"), "run", exp)
    exp.rows(RUN_ROWS, run, "run")
    inspection = _mapping(status.get("inspection"), "inspection", exp)
    version = inspection.get("version", run.get("inspection_version"))
    exp.add("lens_inspection_version", "Version of the inspection config in force", version)
    for tool, timing in _mapping(inspection.get("tools"), "inspection.tools", exp).items():
        if not isinstance(timing, Mapping):
            exp.invalid.append(f"inspection.tools.{tool}: not a mapping ({type(timing).__name__})")
            continue
        exp.add(
            "lens_tool_runs_total",
            "Runs of the tool since the config was loaded",
            timing.get("count"),
            {"tool": tool},
        )
        for stat in TOOL_STATS:
            exp.add(
                "lens_tool_elapsed_microseconds",
                "Time one run of the tool took (min, avg, max)",
                timing.get(f"{stat}_us"),
                {"tool": tool, "stat": stat},
            )


def _host(exp: _Exposition, host: Mapping[str, Any]) -> None:
    exp.rows(HOST_ROWS, host, "host")
    exp.rows(MEMORY_ROWS, host.get("memory"), "host.memory")
    disk = host.get("disk")
    if isinstance(disk, Mapping):
        exp.rows(DISK_ROWS, disk, "host.disk", {"path": disk.get("path", "")})
    elif disk is not None:
        exp.invalid.append(f"host.disk: not a mapping ({type(disk).__name__})")
    for name, proc in _mapping(host.get("processes"), "host.processes", exp).items():
        exp.rows(PROCESS_ROWS, proc, f"host.processes.{name}", {"process": name})


def _outputs(exp: _Exposition, status: Mapping[str, Any]) -> None:
    webhooks = status.get("webhooks")
    exp.rows(WEBHOOK_ROWS, webhooks, "webhooks")
    outputs = _mapping(status.get("outputs"), "outputs", exp)
    exp.rows(STORE_ROWS, outputs.get("store"), "outputs.store")
    exp.rows(IMAGE_LOG_ROWS, outputs.get("image_log"), "outputs.image_log")
    exp.rows(MQTT_ROWS, outputs.get("mqtt"), "outputs.mqtt")
    actions = outputs.get("actions")
    if actions is None:
        return
    if not isinstance(actions, Sequence) or isinstance(actions, str):
        exp.invalid.append(f"outputs.actions: not a list ({type(actions).__name__})")
        return
    for i, action in enumerate(actions):
        if not isinstance(action, Mapping):
            exp.invalid.append(f"outputs.actions[{i}]: not a mapping ({type(action).__name__})")
            continue
        labels = {"action": action.get("index", i), "type": action.get("type", "")}
        exp.rows(ACTION_ROWS, action, f"outputs.actions[{i}]", labels)


def render(status: Mapping[str, Any]) -> str:
    """The Prometheus text exposition of `status` (see the module docstring); never raises on a
    malformed status, only leaves out what it cannot read."""
    global _last_invalid
    exp = _Exposition()
    status = _mapping(status, "status", exp)
    if status.get("machine_id") is not None:
        exp.base["machine"] = str(status["machine_id"])
    exp.add("lens_uptime_seconds", "Seconds since the machine started", status.get("uptime_s"))
    exp.enum("lens_state", "Machine state", status.get("state"), STATES, "state")
    exp.enum("lens_mode", "Inspection mode", status.get("mode"), MODES, "mode")
    session = _mapping(status.get("session"), "session", exp)
    exp.add("lens_session_held", "1 while an orchestrator holds the session", session.get("held"))
    host = _mapping(status.get("host"), "host", exp)
    _cameras(exp, status, host)
    _inspection(exp, status)
    _host(exp, host)
    _outputs(exp, status)
    summary = "; ".join(exp.invalid[:5])
    if summary != _last_invalid:  # once per change, not on every scrape
        if summary:
            log.warning("metrics: %d status value(s) left out: %s", len(exp.invalid), summary)
        _last_invalid = summary
    exp.add(
        "lens_exposition_invalid_values",
        "Status values left out of this page: not numbers",
        len(exp.invalid),
    )
    return exp.text()
