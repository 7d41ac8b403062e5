"""Control service: heartbeat and status latency with the pipeline idle and at full speed, and what a
client following the log stream costs the inspection throughput.

An in-process engine (`Supervisor`) runs the demo pipeline (synthetic 640x480 gray camera at fps 0,
the tool chain of pipelines/demo.yaml, 2 workers, results bus on free loopback ports) with the
control service on a free port (its SQLite db in a temporary folder, the API key in an environment
variable set before the start so every child sees it). The bench opens the orchestrator session
with httpx and then:

* Latency, in two phases: *idle* (POST /api/v1/run/stop: state `stopped`, nothing is inspected)
  and *load* (POST /api/v1/run/start: inspecting as fast as the machine can). Per phase, WARMUP
  rounds untimed, then N rounds of GET /api/v1/heartbeat and GET /api/v1/status, sequential on one
  keep-alive connection, each timed from the call to the whole body read (perf_counter). Reported
  in ms: p50, p99, max, mean; also the heartbeat's `status` as seen, and inspected/s meanwhile.
  GET /api/v1/health is timed alongside as the floor: the HTTP stack and this client (httpx costs
  some 0.5 ms a request of its own) around a handler that does nothing.
* Throughput, at full load: inspected frames/s (the engine's shared-memory counters) over windows
  of `window_s` without and with a second client following GET /api/v1/logs/stream?follow=true
  (a thread reading as fast as it can, counting NDJSON lines). Windows alternate off/on, `pairs`
  times, each after `settle_s` (so the follower's backlog of up to control.log.max_entries lines is
  read before the window opens) and after a session renewal. Reported per window: inspected/s,
  lines/s received, CPU % of the control process and of this process (the follower's client side:
  on a 2-core box it competes with the pipeline, as a remote orchestrator would not); then the
  medians and the cost, 1 - median(with) / median(without), and the same per off/on pair.

Targets: heartbeat p99 under 5 ms under full load; following the log costs under 5 % throughput.
The machine is shared and noisy: compare numbers of the same run, not across runs.

    python -m bench.control [--quick] [--json bench/out/control.json]
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import starlette
import uvicorn

from bench.runner import cpu_model
from lens.config.load import load_pipeline, validate_data
from lens.config.models import PipelineConfig
from lens.engine.stats import CAM, RUN
from lens.engine.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))  # the one kernel cache

WORKERS = 2
API_KEY_ENV = "LENS_BENCH_API_KEY"
# health: the floor (HTTP stack and client, a trivial handler); heartbeat and status: the measured ones
ENDPOINTS = {"health": "/api/v1/health", "heartbeat": "/api/v1/heartbeat", "status": "/api/v1/status"}
HEARTBEAT_P99_TARGET_MS = 5.0
FOLLOW_COST_TARGET_PCT = 5.0
STARTUP_S = 120.0  # the control service answers and the pipeline inspects within this
TICK_EVERY_S = 0.1  # Supervisor.tick: restart crashed children, answer the control service
STOP_SETTLE_S = 0.5  # after run/stop, in-flight inspections finish


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config(
    machine_id: str, db: Path, control: dict[str, Any], outputs: dict[str, Any]
) -> PipelineConfig:
    """The demo pipeline (camera, tools, 2 workers) with its results bus on free ports, the control
    service's db at `db`, and the given extra `control` and `outputs` sections."""
    demo = load_pipeline(ROOT / "pipelines" / "demo.yaml")
    data = demo.model_dump(mode="json", include={"cameras", "inspection"})
    data["inspection"]["workers"] = WORKERS
    data["machine"] = {"id": machine_id}
    bus = {"bind": f"tcp://127.0.0.1:{free_port()}", "command": f"tcp://127.0.0.1:{free_port()}"}
    data["outputs"] = {"zmq": bus, **outputs}
    data["control"] = {"db": str(db), **control}
    cfg: PipelineConfig = validate_data(data, PipelineConfig, f"bench.{machine_id}")
    return cfg


class Machine:
    """An engine with its control service, an httpx client holding the orchestrator session, and the
    supervisor ticked from whichever loop is waiting."""

    def __init__(self, config: PipelineConfig, env: dict[str, str]) -> None:
        self.config = config
        self.base_url = f"http://{config.control.host}:{config.control.port}"
        self.saved_env = {k: os.environ.get(k) for k in env}
        self.sup: Supervisor | None = None
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0)
        self.auth: dict[str, str] = {}
        self.next_tick = 0.0
        self.started_s = 0.0
        t0 = time.monotonic()
        try:
            os.environ.update(env)  # before the start: the children inherit it
            self.sup = Supervisor(config, log_level=logging.WARNING)
            self.sup.start()
            self._wait_control(t0 + STARTUP_S)
        except BaseException:
            self.close()
            raise
        self.started_s = time.monotonic() - t0

    def _wait_control(self, deadline: float) -> None:
        while True:
            try:
                if self.client.get("/api/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the control service did not answer at {self.base_url} in {STARTUP_S} s")
            self.pump(0.1)

    def open_session(self, api_key: str, callback_url: str | None = None) -> None:
        body: dict[str, Any] = {"orchestrator_id": "bench"}
        if callback_url is not None:
            body["callback_url"] = callback_url
        r = self.client.post("/api/v1/session", json=body, headers={"Authorization": f"Bearer {api_key}"})
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/v1/session: {r.status_code} {r.text[:300]}")
        self.auth = {"Authorization": f"Bearer {r.json()['session_token']}"}

    def call(self, method: str, path: str, expect: int = 200) -> dict[str, Any]:
        """A session request; anything but `expect` is an error naming the answer."""
        r = self.client.request(method, path, headers=self.auth)
        if r.status_code != expect:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        answer: dict[str, Any] = r.json()
        return answer

    def counter(self, name: str) -> int:
        """A camera counter summed over the cameras (CAMERA_FIELDS)."""
        assert self.sup is not None and self.sup.stats is not None
        stats = self.sup.stats
        return sum(int(stats.camera(i)[CAM[name]]) for i in range(len(self.config.cameras)))

    def run_counters(self) -> dict[str, int]:
        assert self.sup is not None and self.sup.stats is not None
        run = self.sup.stats.run
        return {k: int(run[RUN[k]]) for k in ("restarts", "bus_dropped", "worker_lost_jobs")}

    def pid(self, name: str) -> int | None:
        assert self.sup is not None
        return self.sup.pids().get(name)

    def tick_if_due(self) -> None:
        now = time.monotonic()
        if self.sup is not None and now >= self.next_tick:
            self.sup.tick()
            self.next_tick = now + TICK_EVERY_S

    def pump(self, seconds: float) -> None:
        """Wait `seconds`, ticking the supervisor."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.tick_if_due()
            time.sleep(min(left, TICK_EVERY_S / 2))

    def wait_inspecting(self, seconds: float = STARTUP_S) -> None:
        start = self.counter("inspected")
        deadline = time.monotonic() + seconds
        while self.counter("inspected") <= start:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing inspected within {seconds:.0f} s")
            self.pump(0.05)

    def close(self) -> None:
        self.client.close()
        if self.sup is not None:
            self.sup.stop()
            self.sup = None
        for k, v in self.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Follower:
    """A client following GET /api/v1/logs/stream?follow=true in a thread, counting lines as it reads."""

    def __init__(self, base_url: str, auth: dict[str, str]) -> None:
        self.base_url = base_url
        self.auth = auth
        self.lines = 0
        self.bytes = 0
        self.error: str | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-follower")

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self.connected.wait(timeout) or self.error:
            self.stop()
            raise RuntimeError(f"log follower: {self.error or f'no answer within {timeout} s'}")

    def _run(self) -> None:
        tail = b""
        try:
            with (
                httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(10.0, read=2.0)) as client,
                client.stream(
                    "GET", "/api/v1/logs/stream", params={"follow": "true"}, headers=self.auth
                ) as r,
            ):
                if r.status_code != 200:
                    self.error = f"HTTP {r.status_code}: {r.read()[:300]!r}"
                    return
                self.connected.set()
                for chunk in r.iter_raw():
                    self.lines += chunk.count(b"\n")
                    self.bytes += len(chunk)
                    tail = chunk[-400:]
                    if self._stop.is_set():
                        return
                if not self._stop.is_set():
                    self.error = f"the stream ended; last bytes {tail[-300:]!r}"
        except httpx.HTTPError as e:
            if not self._stop.is_set():
                self.error = f"{type(e).__name__}: {e}"
        except BaseException as e:  # noted, never lost: the caller raises it after the join
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.connected.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(15.0)
            if self._thread.is_alive():
                raise RuntimeError("log follower thread did not end within 15 s")


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds, np.float64) * 1e3
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def _latency(m: Machine, n: int, warmup: int) -> dict[str, Any]:
    """`warmup` untimed rounds, then `n` timed rounds of every endpoint in ENDPOINTS, in turn."""
    samples: dict[str, list[float]] = {ep: [] for ep in ENDPOINTS}
    states: Counter[str] = Counter()
    inspected0, t0 = m.counter("inspected"), time.monotonic()
    for i in range(warmup + n):
        if i == warmup:
            inspected0, t0 = m.counter("inspected"), time.monotonic()
        for ep, path in ENDPOINTS.items():
            headers = m.auth if ep == "status" else None  # health and heartbeat are open: no session
            start = time.perf_counter()
            r = m.client.get(path, headers=headers)
            elapsed = time.perf_counter() - start
            if r.status_code != 200:
                raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
            if i >= warmup:
                samples[ep].append(elapsed)
                if ep == "heartbeat":
                    states[str(r.json()["status"])] += 1
        m.tick_if_due()
    seconds = time.monotonic() - t0
    return {
        "inspected_per_s": (m.counter("inspected") - inspected0) / seconds,
        "states_seen": dict(states),
        **{ep: percentiles_ms(s) for ep, s in samples.items()},
    }


def _cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def _window(m: Machine, seconds: float, follower: Follower | None) -> dict[str, Any]:
    control = m.pid("control")
    me = os.getpid()
    c0, l0, t0 = m.counter("inspected"), follower.lines if follower else 0, time.monotonic()
    cpu0 = (_cpu_s(control), _cpu_s(me))
    m.pump(seconds)
    c1, l1, t1 = m.counter("inspected"), follower.lines if follower else 0, time.monotonic()
    cpu1 = (_cpu_s(control), _cpu_s(me))
    dt = t1 - t0
    return {
        "follow": follower is not None,
        "seconds": dt,
        "inspected": c1 - c0,
        "inspected_per_s": (c1 - c0) / dt,
        "lines_per_s": (l1 - l0) / dt,
        "control_cpu_pct": 100 * (cpu1[0] - cpu0[0]) / dt,
        "bench_cpu_pct": 100 * (cpu1[1] - cpu0[1]) / dt,
    }


def _throughput(m: Machine, pairs: int, window_s: float, settle_s: float) -> dict[str, Any]:
    """Windows without and with a log follower, alternated `pairs` times."""
    windows: list[dict[str, Any]] = []
    lines = nbytes = 0
    for _ in range(pairs):
        for follow in (False, True):
            m.call("POST", "/api/v1/session/heartbeat")  # the lease outlives every window
            follower = Follower(m.base_url, m.auth) if follow else None
            if follower is not None:
                follower.start()
            try:
                m.pump(settle_s)
                windows.append(_window(m, window_s, follower))
            finally:
                if follower is not None:
                    follower.stop()
            if follower is not None:
                if follower.error:
                    raise RuntimeError(f"log follower: {follower.error}")
                lines += follower.lines
                nbytes += follower.bytes
    off = [w["inspected_per_s"] for w in windows if not w["follow"]]
    on = [w["inspected_per_s"] for w in windows if w["follow"]]
    without, with_ = statistics.median(off), statistics.median(on)
    return {
        "pairs": pairs,
        "window_s": window_s,
        "settle_s": settle_s,
        "windows": windows,
        "median_without": without,
        "median_with": with_,
        "cost_pct": 100 * (1 - with_ / without) if without > 0 else float("nan"),
        "pair_costs_pct": [
            100 * (1 - b / a) if a > 0 else float("nan") for a, b in zip(off, on, strict=True)
        ],
        "median_lines_per_s": statistics.median(w["lines_per_s"] for w in windows if w["follow"]),
        "follower_lines": lines,
        "follower_bytes": nbytes,
    }


def _machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "httpx": httpx.__version__,
        "uvicorn": uvicorn.__version__,
        "starlette": starlette.__version__,
        "load_1m": os.getloadavg()[0],
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Start the engine and its control service, measure latency idle then loaded, then throughput."""
    n, warmup, load_warm_s = (50, 10, 1.0) if quick else (2000, 200, 3.0)
    pairs, window_s, settle_s = (2, 1.0, 0.3) if quick else (4, 5.0, 1.0)
    api_key = secrets.token_urlsafe(24)
    machine = _machine()  # the load average before our engine adds to it
    with tempfile.TemporaryDirectory(prefix="lens-bench-control-") as tmp:
        cfg = demo_config(
            "bench_control", Path(tmp) / "control.db", {"port": free_port(), "api_key_env": API_KEY_ENV}, {}
        )
        m = Machine(cfg, {API_KEY_ENV: api_key})
        try:
            m.open_session(api_key)
            m.wait_inspecting()
            stopped = m.call("POST", "/api/v1/run/stop")["state"]
            m.pump(STOP_SETTLE_S)
            idle = {"state": stopped, **_latency(m, n, warmup)}
            started = m.call("POST", "/api/v1/run/start")["state"]
            m.wait_inspecting()
            m.pump(load_warm_s)
            load = {"state": started, **_latency(m, n, warmup)}
            throughput = _throughput(m, pairs, window_s, settle_s)
            counters = m.run_counters()
            startup_s = m.started_s
        finally:
            m.close()
    heartbeat_p99 = load["heartbeat"]["p99"]
    cost = throughput["cost_pct"]
    return {
        "suite": "control",
        "machine": machine,
        "quick": quick,
        "frame": "640x480 gray",
        "workers": WORKERS,
        "startup_s": startup_s,
        "latency": {"requests": n, "warmup": warmup, "phases": {"idle": idle, "load": load}},
        "throughput": throughput,
        "counters": counters,
        "targets": {
            "heartbeat_p99_ms": {
                "target": HEARTBEAT_P99_TARGET_MS,
                "measured": heartbeat_p99,
                "pass": heartbeat_p99 < HEARTBEAT_P99_TARGET_MS,
            },
            "follow_cost_pct": {
                "target": FOLLOW_COST_TARGET_PCT,
                "measured": cost,
                "pass": cost < FOLLOW_COST_TARGET_PCT,
            },
        },
    }


def table(result: dict[str, Any]) -> str:
    """Aligned plain-text rendering of `run()`'s result."""
    m, lat, tp = result["machine"], result["latency"], result["throughput"]
    lines = [
        f"control: {m['cpu']}, {m['cores']} cores, Python {m['python']}, uvicorn {m['uvicorn']}, "
        f"starlette {m['starlette']}, httpx {m['httpx']}; demo chain at {result['frame']}, "
        f"{result['workers']} workers; start-up {result['startup_s']:.1f} s",
        f"latency: {lat['requests']} sequential requests per endpoint and phase (after {lat['warmup']} "
        "untimed), one keep-alive connection",
        f"{'phase':<7}{'state':<10}{'inspected/s':>12}"
        + "".join(f"{ep + ' ms p50/p99/max':>28}" for ep in ENDPOINTS),
    ]

    def ms(d: dict[str, float]) -> str:
        return f"{d['p50']:.2f}/{d['p99']:.2f}/{d['max']:.2f}"

    for name, p in lat["phases"].items():
        lines.append(
            f"{name:<7}{p['state']:<10}{p['inspected_per_s']:>12.1f}"
            + "".join(f"{ms(p[ep]):>28}" for ep in ENDPOINTS)
        )
    lines += [
        "",
        f"throughput at full load: {tp['pairs']} off/on pairs of {tp['window_s']:g} s windows "
        f"(each after {tp['settle_s']:g} s settling); on = a client following /api/v1/logs/stream",
        f"{'window':>6}{'follower':>10}{'inspected/s':>13}{'lines/s':>10}"
        f"{'control CPU %':>15}{'bench CPU %':>13}",
    ]
    for i, w in enumerate(tp["windows"], 1):
        lines.append(
            f"{i:>6}{'on' if w['follow'] else 'off':>10}{w['inspected_per_s']:>13.1f}"
            f"{w['lines_per_s']:>10.1f}{w['control_cpu_pct']:>15.1f}{w['bench_cpu_pct']:>13.1f}"
        )
    pair_costs = ", ".join(f"{c:+.1f}" for c in tp["pair_costs_pct"])
    lines.append(
        f"median inspected/s without {tp['median_without']:.1f}, with {tp['median_with']:.1f}: "
        f"cost {tp['cost_pct']:+.1f} % (per pair {pair_costs} %); follower received "
        f"{tp['median_lines_per_s']:.1f} lines/s (median), {tp['follower_lines']} lines, "
        f"{tp['follower_bytes'] / 1e6:.1f} MB in all"
    )
    c = result["counters"]
    lines.append(
        f"restarts {c['restarts']}, bus dropped {c['bus_dropped']}, lost jobs {c['worker_lost_jobs']}; "
        f"load average at start {result['machine']['load_1m']:.2f}"
    )
    t = result["targets"]
    hb, fc = t["heartbeat_p99_ms"], t["follow_cost_pct"]
    lines.append(
        f"target heartbeat p99 under load < {hb['target']:g} ms: {'held' if hb['pass'] else 'MISSED'} "
        f"({hb['measured']:.2f} ms); log following cost < {fc['target']:g} %: "
        f"{'held' if fc['pass'] else 'MISSED'} ({fc['measured']:+.1f} %)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.runner import suite_main

    suite_main("control", __doc__ or "control", run, table)
