"""Serial triggers: trigger-to-result latency on a running engine, and whether every trigger is answered.

An in-process engine (`Supervisor`): one synthetic 640x480 gray camera (the demo scene, seed 7)
with a serial trigger on a real pseudo-terminal (`^TRIG;(\\w+)$`, timeout_ms 2000), the tool chain
of pipelines/demo.yaml (grayscale brightness, blob parts, math ratio), 2 workers, and the results
bus on a free loopback port. Once the engine answers a probe trigger, WARMUP triggers are sent and
answered (not timed); then, for each rate in RATES, a writer thread writes `TRIG;<id>\\n` lines to
the pty master on a perf_counter schedule for `seconds`, stamping each line with time.time() just
before its write, while the main thread reads the bus and stamps each result on arrival. After the
last write the suite waits up to timeout_ms + 1 s for the stragglers.

Per rate: triggers sent (and the rate achieved), answered (a result or an error result, matched by
`trigger_id`), unanswered, error results by code, and p50/p99/max in ms of

* write→bus:        result received on the bus - line written (what a PLC waiting for it sees);
* triggered→finished: `finished_at - triggered_at` of the envelope (inside the engine);
* write→triggered:   `triggered_at - write` (the serial process's stamp: reading the port).

Latencies are over every answer, error results included (a timeout is an answer, and a slow one).
The target: p99 write→bus under 5 ms at 100 triggers/s, and no trigger unanswered at any rate.

    python -m bench.triggers [--quick] [--json bench/out/triggers.json]
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import serial
import zmq

from bench.runner import cpu_model
from lens.config.load import load_pipeline, validate_data
from lens.config.models import PipelineConfig
from lens.engine.bus import unpack
from lens.engine.stats import CAM, RUN
from lens.engine.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))  # the one kernel cache

RATES = (10, 100, 500)  # triggers per second
TIMEOUT_MS = 2000  # the trigger's timeout_ms: no frame or no worker by then = an error result
MATCH = r"^TRIG;(\w+)$"
WORKERS = 2
STRAGGLERS_S = TIMEOUT_MS / 1000 + 1.0  # after the last write, every answer is due by then
STARTUP_S = 60.0  # the engine must answer a probe trigger (without error) within this
PROBE_EVERY_S = 0.25
TICK_EVERY_S = 0.2  # Supervisor.tick: restart crashed children


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: str, bus: str, command: str) -> PipelineConfig:
    """The demo pipeline's tool chain and workers, behind a serial-triggered synthetic camera."""
    demo = load_pipeline(ROOT / "pipelines" / "demo.yaml")
    data = {
        "machine": {"id": "bench_triggers"},
        "cameras": [
            {
                "id": "cam0",
                "source": {"type": "synthetic", "width": 640, "height": 480, "seed": 7},
                "capture": {"format": "gray"},
                "trigger": {"type": "serial", "port": port, "match": MATCH, "timeout_ms": TIMEOUT_MS},
                "ring": {"slots": 16},
            }
        ],
        "inspection": {**demo.inspection.model_dump(mode="json"), "workers": WORKERS},
        "outputs": {"zmq": {"bind": bus, "command": command}},
        "control": {"enabled": False},
    }
    cfg: PipelineConfig = validate_data(data, PipelineConfig, "bench.triggers")
    return cfg


class _Engine:
    """The engine under test, the pty it listens on, and a subscriber on its results bus."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self.sub: zmq.Socket[bytes] | None = None
        self.sup: Supervisor | None = None
        self.answers: dict[str, tuple[float, dict[str, Any]]] = {}  # trigger_id -> (received, envelope)
        self.duplicates = 0
        self.next_tick = 0.0
        try:
            bus = f"tcp://127.0.0.1:{_free_port()}"
            cfg = _config(os.ttyname(self.slave), bus, f"tcp://127.0.0.1:{_free_port()}")
            self.ctx = zmq.Context()
            self.sub = self.ctx.socket(zmq.SUB)
            self.sub.linger = 0
            self.sub.rcvhwm = 0  # never drop a result on our side
            self.sub.setsockopt(zmq.SUBSCRIBE, b"result.")
            self.sub.connect(bus)  # before the bind: zmq connects as soon as the bus is up
            self.sup = Supervisor(cfg, log_level=logging.WARNING)
            self.sup.start()
        except BaseException:
            self.close()
            raise

    def write(self, trigger_id: str) -> float:
        """Write one trigger line; returns the epoch time stamped just before the write."""
        line = f"TRIG;{trigger_id}\n".encode()
        t = time.time()
        if os.write(self.master, line) != len(line):
            raise RuntimeError(f"short write of trigger {trigger_id} to the pty")
        return t

    def pump(self, timeout_ms: int) -> None:
        """Collect every result that arrives within timeout_ms (stamped on arrival); tick the supervisor."""
        assert self.sub is not None and self.sup is not None
        if self.sub.poll(timeout_ms):
            while True:
                try:
                    _topic, payload = self.sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received = time.time()
                env = unpack(payload)
                tid = str(env.get("trigger_id", ""))
                if tid in self.answers:
                    self.duplicates += 1
                else:
                    self.answers[tid] = (received, env)
        now = time.monotonic()
        if now >= self.next_tick:
            self.sup.tick()
            self.next_tick = now + TICK_EVERY_S

    def until(self, done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.pump(10)
        return True

    def counters(self) -> dict[str, int]:
        assert self.sup is not None and self.sup.stats is not None
        run, cam = self.sup.stats.run, self.sup.stats.camera(0)
        return {
            "restarts": int(run[RUN["restarts"]]),
            "bus_dropped": int(run[RUN["bus_dropped"]]),
            "worker_lost_jobs": int(run[RUN["worker_lost_jobs"]]),
            "triggers": int(cam[CAM["triggers"]]),
            "trigger_noise": int(cam[CAM["trigger_noise"]]),
        }

    def close(self) -> None:
        if self.sup is not None:
            self.sup.stop()
            self.sup = None
        if self.sub is not None:
            self.sub.close(linger=0)
            self.sub = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None
        for fd in (self.master, self.slave):
            os.close(fd)
        self.master = self.slave = -1


def _start(engine: _Engine, warmup: int) -> dict[str, Any]:
    """Wait until a probe trigger is answered without error (port open, capture and workers up), then
    send `warmup` triggers at 100/s and wait for all their answers. Lines written before the serial
    process opened the port are flushed by the open: those probes are simply never answered."""
    t0 = time.monotonic()
    probes: list[str] = []

    def served() -> bool:
        return any(p in engine.answers and "error" not in engine.answers[p][1] for p in probes)

    while not served():
        if time.monotonic() - t0 > STARTUP_S:
            raise RuntimeError(f"no probe trigger answered without error in {STARTUP_S:.0f} s")
        probes.append(f"probe{len(probes)}")
        engine.write(probes[-1])
        engine.until(lambda: False, PROBE_EVERY_S)
    ids = [f"warm{i}" for i in range(warmup)]
    for tid in ids:
        engine.write(tid)
        engine.until(lambda: False, 0.01)
    if not engine.until(lambda: all(t in engine.answers for t in ids), STRAGGLERS_S):
        missing = [t for t in ids if t not in engine.answers]
        raise RuntimeError(f"warm-up: {len(missing)} of {warmup} triggers unanswered: {missing[:5]}")
    codes = Counter(engine.answers[t][1]["error"]["code"] for t in ids if "error" in engine.answers[t][1])
    return {"startup_s": time.monotonic() - t0, "probes": len(probes), "warmup_errors": dict(codes)}


def _writer(engine: _Engine, prefix: str, rate: int, seconds: float, sent: dict[str, float],
            failed: list[BaseException]) -> None:  # fmt: skip
    """Write `rate` lines a second for `seconds`, on an absolute schedule (late lines do not shift it)."""
    try:
        period = 1.0 / rate
        start = time.perf_counter()
        for k in range(round(rate * seconds)):
            delay = start + k * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            tid = f"{prefix}_{k}"
            sent[tid] = engine.write(tid)  # stamped before the write; stored before any answer is read
    except BaseException as e:
        failed.append(e)


def _ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64) * 1e3
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def _phase(engine: _Engine, rate: int, seconds: float) -> dict[str, Any]:
    """One rate: write for `seconds` while collecting results, then wait for the stragglers."""
    sent: dict[str, float] = {}
    failed: list[BaseException] = []
    before = engine.counters()
    writer = threading.Thread(
        target=_writer, args=(engine, f"r{rate}", rate, seconds, sent, failed), name="trigger-writer"
    )
    writer.start()
    try:
        while writer.is_alive():
            engine.pump(10)
    finally:
        writer.join()
    if failed:
        raise RuntimeError(f"the writer failed at {rate}/s") from failed[0]
    engine.until(lambda: all(t in engine.answers for t in sent), STRAGGLERS_S)
    after = engine.counters()
    writes = sorted(sent.values())
    answered = {t: engine.answers[t] for t in sent if t in engine.answers}
    if not answered:
        raise RuntimeError(f"{rate}/s: none of {len(sent)} triggers answered")
    bus = [received - sent[t] for t, (received, _) in answered.items()]
    engine_s = [env["finished_at"] - env["triggered_at"] for _, env in answered.values()]
    serial_s = [env["triggered_at"] - sent[t] for t, (_, env) in answered.items()]
    errors = Counter(env["error"]["code"] for _, env in answered.values() if "error" in env)
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": len(sent),
        "rate_achieved": (len(writes) - 1) / (writes[-1] - writes[0]) if len(writes) > 1 else 0.0,
        "answered": len(answered),
        "unanswered": len(sent) - len(answered),
        "errors": dict(sorted(errors.items())),
        "passed": sum(1 for _, env in answered.values() if env["pass"]),
        "bus_ms": _ms(bus),
        "engine_ms": _ms(engine_s),
        "serial_ms": _ms(serial_s),
        **{f"{k}_delta": after[k] - before[k] for k in ("restarts", "bus_dropped", "worker_lost_jobs")},
    }


def _machine() -> dict[str, Any]:
    cpu = cpu_model()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "pyserial": serial.__version__,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Start the engine, warm it up, then measure each rate in RATES in turn."""
    seconds, warmup = (0.5, 20) if quick else (5.0, 50)
    engine = _Engine()
    try:
        start = _start(engine, warmup)
        rows = [_phase(engine, rate, seconds) for rate in RATES]
        known = {f"r{r}_" for r in RATES} | {"warm", "probe"}
        unexpected = sum(1 for t in engine.answers if not any(t.startswith(p) for p in known))
        counters = engine.counters()
        duplicates = engine.duplicates
    finally:
        engine.close()
    return {
        "suite": "triggers",
        "machine": _machine(),
        "quick": quick,
        "seconds_per_rate": seconds,
        "warmup": warmup,
        "timeout_ms": TIMEOUT_MS,
        "workers": WORKERS,
        "frame": "640x480 gray",
        **start,
        "duplicates": duplicates,
        "unexpected": unexpected,
        "counters": counters,
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    """Aligned plain-text rendering of `run()`'s result."""
    m = result["machine"]
    lines = [
        f"triggers: {m['cpu']}, {m['cores']} cores, Python {m['python']}, pyzmq {m['pyzmq']}, "
        f"pyserial {m['pyserial']}; demo chain at {result['frame']}, {result['workers']} workers, "
        f"{result['seconds_per_rate']:g} s per rate",
        f"{'rate/s':>7}{'sent':>7}{'answered':>10}{'errors':>18}"
        f"{'write→bus ms p50/p99/max':>27}{'trig→fin ms p50/p99/max':>26}{'write→trig ms p50/p99/max':>28}",
    ]

    def lat(d: dict[str, float]) -> str:
        return f"{d['p50']:.2f}/{d['p99']:.2f}/{d['max']:.2f}"

    for r in result["rows"]:
        errors = ", ".join(f"{code.removeprefix('LENS_')} {n}" for code, n in r["errors"].items()) or "0"
        lines.append(
            f"{r['rate']:>7d}{r['sent']:>7d}{r['answered']:>10d}{errors:>18}"
            f"{lat(r['bus_ms']):>27}{lat(r['engine_ms']):>26}{lat(r['serial_ms']):>28}"
        )
    lines.append(
        "write→bus: line written to the pty → result on the bus; trig→fin: finished_at - triggered_at; "
        "write→trig: triggered_at - write (serial read)"
    )
    lines.append("latencies over every answer, error results included")
    c = result["counters"]
    lines.append(
        f"start-up {result['startup_s']:.1f} s ({result['probes']} probes), warm-up {result['warmup']} "
        f"(errors {result['warmup_errors'] or 0}); restarts {c['restarts']}, bus dropped {c['bus_dropped']}, "
        f"duplicates {result['duplicates']}, unexpected {result['unexpected']}"
    )
    hundred = [r for r in result["rows"] if r["rate"] == 100]
    if hundred:
        h = hundred[0]
        unanswered = sum(r["unanswered"] for r in result["rows"])
        verdict = "held" if h["bus_ms"]["p99"] < 5.0 and unanswered == 0 else "MISSED"
        lines.append(
            f"target (p99 write→bus < 5 ms at 100/s, none unanswered): {verdict} "
            f"(p99 {h['bus_ms']['p99']:.2f} ms, {unanswered} unanswered)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.runner import suite_main

    suite_main("triggers", __doc__ or "triggers", run, table)
