"""Outputs: inspection throughput with every output on vs every output off, in the same run.

Two pipelines that differ only in their outputs, both the demo (synthetic 640x480 gray camera at
fps 0, the tool chain of pipelines/demo.yaml, 2 workers) with the control service enabled:

* OFF: no output section, and no session (so no webhooks): results go to the bus and the control
  service's in-memory log only.
* ON: the result store (SQLite, WAL) and the image log (JPEGs of failed inspections), both in a
  temporary folder; the MQTT sink (QoS 1: results, events, status) to a mosquitto the bench starts
  on a free port; a result action publishing `{outcome};{result_id}` to MQTT on every fail; and an
  orchestrator session whose callback_url is a local threaded HTTP receiver (answers 200, checks
  the HMAC signature, counts by `X-Lens-Event`), so RUN-mode `inspection.summary` webhooks flow
  every control.summary_interval_s (2 s).

Runs alternate OFF, ON, OFF, ON...; each is a fresh engine (`Supervisor`) in this process: once it
inspects, `warm_s` seconds are discarded, then inspected frames/s are counted over `window_s`
seconds (the engine's shared-memory counters), with the CPU % of the outputs and control processes,
of the broker and of this process (the MQTT subscriber and the webhook receiver; on a 2-core box
everything shares the same cores). Loss = 1 - median(ON) / median(OFF), and the same per OFF/ON pair.

What the outputs did in each ON run, counted after the engine stopped (so the outputs' final
flush is included): rows in the store (and how many are fails and errors), JPEG files written, MQTT
messages a paho subscriber received (results, events, status, actions), the sink's own counters at
the end of the window (published, dropped, buffered), webhooks received. Every result should reach
the store and MQTT; every failed one the image log; every fail the action.

Target: under 10 % throughput loss with every output on. Without mosquitto the MQTT outputs are
left out of ON (noted in the result). The machine is shared and noisy: compare within one run.

    python -m bench.outputs [--quick] [--json bench/out/outputs.json]
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import os
import platform
import pwd
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt as paho_mqtt
import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.control import API_KEY_ENV, Machine, demo_config, free_port
from bench.runner import cpu_model

SECRET_ENV = "LENS_BENCH_WEBHOOK_SECRET"
LOSS_TARGET_PCT = 10.0
ACTION_TOPIC = "bench/{machine_id}/reject"
MACHINE_ID = "bench_outputs"
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
)
SETTLE_S = 0.5  # after the stop, MQTT counts unchanged this long = everything arrived
SETTLE_MAX_S = 10.0


class Broker:
    """mosquitto on 127.0.0.1 and a free port, configured in `workdir`, persistence off."""

    def __init__(self, exe: str, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "mosquitto.log"
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        )
        version = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=10).stdout
        self.version = version.splitlines()[0].removeprefix("mosquitto version ") if version else "?"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [exe, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto not listening on {self.port} after 10 s: {e}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class MqttCounter:
    """A paho subscriber to `lens/#` and `bench/#` counting messages by kind: result, event, status,
    action (the result action's topic), other. Subscribed at QoS 0: the cheapest receiver (no PUBACKs),
    as it shares the machine with the pipeline."""

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe([("lens/#", 0), ("bench/#", 0)])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError(f"MQTT subscriber: no SUBACK from 127.0.0.1:{port} within 10 s")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if topic.startswith("bench/"):
            kind = "action"
        elif topic.endswith("/result"):
            kind = "result"
        elif "/event/" in topic:
            kind = "event"
        elif topic.endswith("/status"):
            kind = "status"
        else:
            kind = "other"
        with self._lock:
            self._counts[kind] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1 answering every POST 200, counting by `X-Lens-Event` and
    checking `X-Lens-Signature` against `secret`."""

    def __init__(self, secret: bytes) -> None:
        counts: Counter[str] = Counter()
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                good = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Lens-Signature", ""), good)
                with lock:
                    counts[self.headers.get("X-Lens-Event", "?")] += 1
                    counts["bad_signature"] += 0 if signed else 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per request
                pass

        self.counts, self._lock = counts, lock
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close() joins the request threads
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lens-hook"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver")
        self._thread.start()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def close(self) -> None:
        self.server.shutdown()
        self._thread.join()
        self.server.server_close()


def _cpu_s(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def _procs(m: Machine, broker: Broker | None) -> dict[str, psutil.Process | None]:
    def proc(pid: int | None) -> psutil.Process | None:
        try:
            return psutil.Process(pid) if pid is not None else None
        except psutil.Error:
            return None

    return {
        "outputs": proc(m.pid("outputs")),
        "control": proc(m.pid("control")),
        "broker": proc(broker.proc.pid if broker is not None else None),
        "bench": psutil.Process(),
    }


def _outputs_config(run_dir: Path, broker: Broker | None) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "store": {"path": str(run_dir / "results.sqlite")},
        "image_log": {"dir": str(run_dir / "images"), "keep": "failed"},
    }
    if broker is not None:
        outputs["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
        outputs["actions"] = [{"type": "mqtt", "when": ["fail"], "topic": ACTION_TOPIC}]
    return outputs


def _store_rows(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        rows, fails, errors = db.execute(
            "SELECT count(*), coalesce(sum(pass = 0 AND error_code IS NULL), 0),"
            " coalesce(sum(error_code IS NOT NULL), 0) FROM results"
        ).fetchone()
    finally:
        db.close()
    return {"rows": int(rows), "fail_rows": int(fails), "error_rows": int(errors)}


def _settle(mqtt: MqttCounter | None) -> None:
    """Wait until the MQTT counts stop changing (the sink's last messages arrive after the stop)."""
    if mqtt is None:
        return
    deadline = time.monotonic() + SETTLE_MAX_S
    last = mqtt.snapshot()
    while time.monotonic() < deadline:
        time.sleep(SETTLE_S)
        now = mqtt.snapshot()
        if now == last:
            return
        last = now


class Bench:
    """The broker, the MQTT subscriber and the webhook receiver, shared by every run."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.api_key = secrets.token_urlsafe(24)
        self.secret = secrets.token_urlsafe(24)
        self.broker: Broker | None = None
        self.mqtt: MqttCounter | None = None
        self.hooks: WebhookReceiver | None = None
        try:
            if MOSQUITTO is not None:
                (tmp / "mosquitto").mkdir()
                self.broker = Broker(MOSQUITTO, tmp / "mosquitto")
                self.mqtt = MqttCounter(self.broker.port)
            self.hooks = WebhookReceiver(self.secret.encode())
        except BaseException:
            self.close()
            raise

    def run(self, index: int, on: bool, warm_s: float, window_s: float) -> dict[str, Any]:
        """One fresh engine, OFF or ON: its throughput over the window and, ON, what its outputs did."""
        assert self.hooks is not None
        run_dir = self.tmp / f"run{index}-{'on' if on else 'off'}"
        run_dir.mkdir()
        control = {"port": free_port(), "api_key_env": API_KEY_ENV, "webhook_secret_env": SECRET_ENV}
        outputs = _outputs_config(run_dir, self.broker) if on else {}
        cfg = demo_config(MACHINE_ID, run_dir / "control.db", control, outputs)
        mqtt0 = self.mqtt.snapshot() if self.mqtt is not None else Counter()
        hooks0 = self.hooks.snapshot()
        m = Machine(cfg, {API_KEY_ENV: self.api_key, SECRET_ENV: self.secret})
        try:
            if on:
                m.open_session(self.api_key, self.hooks.url)
            m.wait_inspecting()
            m.pump(warm_s)
            if on:
                m.call("POST", "/api/v1/session/heartbeat")  # the lease outlives the window
            procs = _procs(m, self.broker if on else None)
            c0, t0 = m.counter("inspected"), time.monotonic()
            cpu0 = {k: _cpu_s(p) for k, p in procs.items()}
            m.pump(window_s)
            c1, t1 = m.counter("inspected"), time.monotonic()
            cpu1 = {k: _cpu_s(p) for k, p in procs.items()}
            sink = m.call("GET", "/api/v1/status")["outputs"] if on else {}
            startup_s = m.started_s
        finally:
            m.close()
        dt = t1 - t0
        row: dict[str, Any] = {
            "run": index,
            "outputs": "on" if on else "off",
            "startup_s": startup_s,
            "seconds": dt,
            "inspected": c1 - c0,
            "inspected_per_s": (c1 - c0) / dt,
            **{f"{k}_cpu_pct": 100 * (cpu1[k] - cpu0[k]) / dt for k in procs},
        }
        if on:
            _settle(self.mqtt)
            mqtt = (self.mqtt.snapshot() - mqtt0) if self.mqtt is not None else Counter()
            hooks = self.hooks.snapshot() - hooks0
            row["did"] = {
                **_store_rows(run_dir / "results.sqlite"),
                "images": sum(1 for _ in (run_dir / "images").rglob("*.jpg")),
                "mqtt": {k: mqtt[k] for k in ("result", "event", "status", "action", "other")},
                "mqtt_sink": {k: sink.get("mqtt", {}).get(k) for k in ("published", "dropped", "buffered")},
                "actions": sink.get("actions", {}),
                "webhooks": dict(sorted(hooks.items())),
            }
        return row

    def close(self) -> None:
        if self.hooks is not None:
            self.hooks.close()
            self.hooks = None
        if self.mqtt is not None:
            self.mqtt.close()
            self.mqtt = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


def run(quick: bool = False) -> dict[str, Any]:
    """Alternate OFF and ON engines, `pairs` times; every one warmed up, then measured."""
    pairs, warm_s, window_s = (1, 1.0, 3.0) if quick else (3, 3.0, 10.0)
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "paho_mqtt": paho_mqtt.__version__,
        "load_1m": os.getloadavg()[0],  # before our engines add to it
    }
    with tempfile.TemporaryDirectory(prefix="lens-bench-outputs-") as tmp:
        bench = Bench(Path(tmp))
        try:
            machine["mosquitto"] = bench.broker.version if bench.broker is not None else None
            rows = [bench.run(i + 1, i % 2 == 1, warm_s, window_s) for i in range(2 * pairs)]
        finally:
            bench.close()
    off = [r["inspected_per_s"] for r in rows if r["outputs"] == "off"]
    on = [r["inspected_per_s"] for r in rows if r["outputs"] == "on"]
    median_off, median_on = statistics.median(off), statistics.median(on)
    loss = 100 * (1 - median_on / median_off) if median_off > 0 else float("nan")
    return {
        "suite": "outputs",
        "machine": machine,
        "quick": quick,
        "frame": "640x480 gray",
        "workers": 2,
        "pairs": pairs,
        "warm_s": warm_s,
        "window_s": window_s,
        "mqtt": "on" if machine["mosquitto"] else "skipped: mosquitto is not installed",
        "rows": rows,
        "median_off": median_off,
        "median_on": median_on,
        "loss_pct": loss,
        "pair_loss_pct": [100 * (1 - b / a) if a > 0 else float("nan") for a, b in zip(off, on, strict=True)],
        "target": {"loss_pct": LOSS_TARGET_PCT, "pass": loss < LOSS_TARGET_PCT},
    }


def table(result: dict[str, Any]) -> str:
    """Aligned plain-text rendering of `run()`'s result."""
    m = result["machine"]
    mqtt = f"mosquitto {m['mosquitto']}" if m["mosquitto"] else "MQTT skipped (no mosquitto)"
    lines = [
        f"outputs: {m['cpu']}, {m['cores']} cores, Python {m['python']}, paho-mqtt {m['paho_mqtt']}, {mqtt}; "
        f"demo chain at {result['frame']}, {result['workers']} workers; per run {result['warm_s']:g} s "
        f"warm-up, then {result['window_s']:g} s measured; load average at start {m['load_1m']:.2f}",
        "on = store (SQLite) + image log (failed) + MQTT sink (QoS 1) + MQTT action on fail + webhooks "
        "(session, RUN summaries); off = none of them (control service up, no session)",
        f"{'run':>4}{'outputs':>9}{'inspected/s':>13}{'outputs CPU %':>15}{'control CPU %':>15}"
        f"{'broker CPU %':>14}{'bench CPU %':>13}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['run']:>4}{r['outputs']:>9}{r['inspected_per_s']:>13.1f}{r['outputs_cpu_pct']:>15.1f}"
            f"{r['control_cpu_pct']:>15.1f}{r['broker_cpu_pct']:>14.1f}{r['bench_cpu_pct']:>13.1f}"
        )
    pair = ", ".join(f"{x:+.1f}" for x in result["pair_loss_pct"])
    lines += [
        f"median inspected/s off {result['median_off']:.1f}, on {result['median_on']:.1f}: "
        f"loss {result['loss_pct']:+.1f} % (per pair {pair} %)",
        "",
        "what the outputs did (ON runs, whole run incl. warm-up and the final flush):",
        f"{'run':>4}{'stored':>8}{'fail':>6}{'error':>7}{'images':>8}{'mqtt results':>14}{'events':>8}"
        f"{'status':>8}{'actions':>9}{'sink dropped':>14}  webhooks",
    ]
    for r in result["rows"]:
        if "did" not in r:
            continue
        d, q, s = r["did"], r["did"]["mqtt"], r["did"]["mqtt_sink"]
        hooks = ", ".join(f"{k} {v}" for k, v in d["webhooks"].items() if v) or "0"
        lines.append(
            f"{r['run']:>4}{d['rows']:>8}{d['fail_rows']:>6}{d['error_rows']:>7}{d['images']:>8}"
            f"{q['result']:>14}{q['event']:>8}{q['status']:>8}{q['action']:>9}"
            f"{s['dropped']!s:>14}  {hooks}"
        )
    verdict = "held" if result["target"]["pass"] else "MISSED"
    lines.append(f"target loss < {result['target']['loss_pct']:g} %: {verdict} ({result['loss_pct']:+.1f} %)")
    if not m["mosquitto"]:
        lines.append(f"note: {result['mqtt']}")
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.runner import suite_main

    suite_main("outputs", __doc__ or "outputs", run, table)
