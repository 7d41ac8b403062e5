"""Frame transport between processes: multiprocessing.Queue vs ZeroMQ vs the lens shared-memory ring.

One writer process hands frames to one reader process, for three frame sizes, all contenders in
the same run (interleaved, so the machine's noise falls on every contender alike):

* queue: `multiprocessing.Queue` (spawn context, maxsize DEPTH) carrying pickled arrays;
* zmq:   PUSH/PULL over ipc://, a header part plus the frame sent with `copy=False` (HWM 2);
* ring:  the writer copies the frame into a ring slot and sends a tiny notice (slot, seq, ...)
         over ZeroMQ PUSH/PULL; the reader uses the slot in place (checking `valid` before and
         after) and acknowledges, so the writer never has more than DEPTH = slots - 2 frames
         unacknowledged (lossless: an overwritten frame is counted as an overrun, i.e. an error).

Every contender starts a frame the same way: the writer stamps `perf_counter_ns()`, copies the
pre-generated frame into a buffer (a pooled array, or the ring slot: a camera decoding into it)
and writes the frame id into its first and last 8 bytes; the reader checks both marks. Pooled
arrays are reused only once the transport is done with them (queue: DEPTH + 2 buffers, as `put`
admits at most DEPTH unread items; zmq: a MessageTracker per buffer).

Each writer/reader pair runs two phases: saturated (warm-up frames, then flat out for `seconds`:
frames/s and the latency under full load, which is mostly time spent queued), then paced (one
frame every 8 ns per byte, at least 2 ms: below every contender's capacity, so the latency of
the transport itself, reported as lat_p50_us / lat_p99_us). The parent also times one
`np.copyto` of each frame size into fresh (cold, untouched) and reused (warm) memory: the floor
for moving a frame at all.

    python -m bench.transport [--quick] [--json bench/out/transport.json]
"""

from __future__ import annotations

import gc
import mmap
import multiprocessing
import os
import platform
import shutil
import statistics
import struct
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from bench.runner import cpu_model
from lens.engine.ring import Ring, RingGeometry
from lens.engine.shm import new_run_prefix

CONTENDERS = ("queue", "zmq", "ring")
SIZES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("640x480 gray", (480, 640)),
    ("1920x1080 gray", (1080, 1920)),
    ("1920x1080 BGR", (1080, 1920, 3)),
)
DEPTH = 4  # frames in flight: queue maxsize, ring window (slots - 2); zmq has HWM 2 on each side
ZMQ_HWM = 2
ZMQ_POOL = 8
PACED_WARMUP = 5
TIMEOUT_S = 30.0
HEAD = struct.Struct("<qqq")  # frame_id, phase, t_sent_ns                     (zmq, first part)
NOTICE = struct.Struct("<qqqqq")  # slot, seq, frame_id, phase, t_sent_ns      (ring notice)
ACK = struct.Struct("<q")  # frames the reader is done with (cumulative)      (ring ack)
WARM, SATURATED, PACED, STOP = 0, 1, 2, -1


@dataclass(frozen=True)
class Job:
    contender: str
    shape: tuple[int, ...]
    warmup: int  # frames before the saturated phase is timed
    seconds: float  # saturated phase
    paced_frames: int
    period_ns: int
    endpoint: str  # ipc:// frames (zmq) or notices (ring)
    ack_endpoint: str  # ipc:// ring acks
    ring_name: str


# -- frames ---------------------------------------------------------------------------------------


def _marks(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 views of a frame's first and last 8 bytes."""
    flat = frame.reshape(-1)
    return flat[:8].view(np.int64), flat[-8:].view(np.int64)


def _produce(dst: np.ndarray, base: np.ndarray, frame_id: int) -> None:
    np.copyto(dst, base)
    head, tail = _marks(dst)
    head[0] = tail[0] = frame_id


def _intact(frame: np.ndarray, frame_id: int) -> bool:
    head, tail = _marks(frame)
    return int(head[0]) == frame_id and int(tail[0]) == frame_id


def _schedule(job: Job) -> Iterator[tuple[int, int]]:
    """(frame_id, phase) for the writer: warm-up, saturated for job.seconds, then paced."""
    fid = 0
    for _ in range(job.warmup):
        yield fid, WARM
        fid += 1
    deadline = time.perf_counter_ns() + int(job.seconds * 1e9)
    while time.perf_counter_ns() < deadline:
        yield fid, SATURATED
        fid += 1
    time.sleep(0.05)  # let the backlog drain before timing latency alone
    tick = time.perf_counter_ns()
    for k in range(PACED_WARMUP + job.paced_frames):
        tick += job.period_ns
        time.sleep(max(0.0, (tick - time.perf_counter_ns()) / 1e9))
        yield fid, (WARM if k < PACED_WARMUP else PACED)
        fid += 1


class _Tally:
    """Reader-side counts and timestamps."""

    def __init__(self) -> None:
        self.lat: dict[int, list[int]] = {SATURATED: [], PACED: []}
        self.first = self.last = 0
        self.mismatches = self.overruns = 0

    def add(self, phase: int, t_sent: int, t_recv: int) -> None:
        if phase in self.lat:
            self.lat[phase].append(t_recv - t_sent)
        if phase == SATURATED:
            self.first = self.first or t_recv
            self.last = t_recv

    def result(self) -> dict[str, Any]:
        sat, paced = (np.asarray(self.lat[p], np.float64) / 1e3 for p in (SATURATED, PACED))
        if sat.size < 2 or paced.size < 1:
            raise RuntimeError(f"too few frames timed: {sat.size} saturated, {paced.size} paced")
        return {
            "fps": (sat.size - 1) / ((self.last - self.first) / 1e9),
            "frames": int(sat.size),
            "paced": int(paced.size),
            "lat_p50_us": float(np.percentile(paced, 50)),
            "lat_p99_us": float(np.percentile(paced, 99)),
            "sat_lat_p50_us": float(np.percentile(sat, 50)),
            "sat_lat_p99_us": float(np.percentile(sat, 99)),
            "mismatches": self.mismatches,
            "overruns": self.overruns,
        }


# -- child processes ------------------------------------------------------------------------------


def _child(
    role: Callable[[Job, Queue[Any] | None, Connection], dict[str, Any]],
    job: Job,
    queue: Queue[Any] | None,
    conn: Connection,
) -> None:
    try:
        conn.send(("result", role(job, queue, conn)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise
    finally:
        conn.close()


def _sockets(ctx: zmq.Context[zmq.Socket[bytes]], *kinds: int) -> list[zmq.Socket[bytes]]:
    out = []
    for kind in kinds:
        sock = ctx.socket(kind)
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = ZMQ_HWM
        sock.rcvtimeo = sock.sndtimeo = int(TIMEOUT_S * 1000)
        out.append(sock)
    return out


def _writer(job: Job, queue: Queue[Any] | None, conn: Connection) -> dict[str, Any]:
    base = np.random.default_rng(7).integers(0, 256, job.shape, dtype=np.uint8)
    now = time.perf_counter_ns
    if job.contender == "queue":
        assert queue is not None
        pool = [np.zeros(job.shape, np.uint8) for _ in range(DEPTH + 2)]
        for fid, phase in _schedule(job):
            t = now()
            buf = pool[fid % len(pool)]
            _produce(buf, base, fid)
            queue.put((fid, phase, t, buf), timeout=TIMEOUT_S)
        queue.put((-1, STOP, 0, None), timeout=TIMEOUT_S)
        queue.close()
        queue.join_thread()
        conn.recv()  # the reader is done
        return {}
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        if job.contender == "zmq":
            (push,) = _sockets(ctx, zmq.PUSH)
            push.connect(job.endpoint)
            pool = [np.zeros(job.shape, np.uint8) for _ in range(ZMQ_POOL)]
            trackers: list[zmq.MessageTracker | None] = [None] * ZMQ_POOL
            for fid, phase in _schedule(job):
                t = now()
                k = fid % ZMQ_POOL
                tracker = trackers[k]
                if tracker is not None:
                    tracker.wait(TIMEOUT_S)  # zmq still owns this buffer until then
                _produce(pool[k], base, fid)
                push.send(HEAD.pack(fid, phase, t), zmq.SNDMORE)
                trackers[k] = push.send(pool[k], copy=False, track=True)
            push.send_multipart([HEAD.pack(-1, STOP, 0), b""])
            conn.recv()
            return {}
        ring = Ring.attach(job.ring_name)
        try:
            push, acks = _sockets(ctx, zmq.PUSH, zmq.PULL)
            push.connect(job.endpoint)
            acks.connect(job.ack_endpoint)
            window = ring.geometry.slots - 2
            done = 0
            for fid, phase in _schedule(job):
                t = now()
                while fid - done >= window:
                    done = ACK.unpack(acks.recv())[0]
                claim = ring.begin_write()
                if claim is None:
                    raise RuntimeError(f"frame {fid}: begin_write found every slot pinned, but nothing pins")
                slot, view = claim
                _produce(view, base, fid)
                seq = ring.commit(slot, fid, t / 1e9)
                push.send(NOTICE.pack(slot, seq, fid, phase, t))
            push.send(NOTICE.pack(-1, 0, -1, STOP, 0))
            conn.recv()
            return {}
        finally:
            ring.close()
    finally:
        ctx.destroy(linger=0)


def _reader(job: Job, queue: Queue[Any] | None, conn: Connection) -> dict[str, Any]:
    tally = _Tally()
    now = time.perf_counter_ns
    if job.contender == "queue":
        assert queue is not None
        conn.send(("ready", None))
        while True:
            fid, phase, t, frame = queue.get(timeout=TIMEOUT_S)
            if phase == STOP:
                return tally.result()
            tally.add(phase, t, now())
            tally.mismatches += not _intact(frame, fid)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        if job.contender == "zmq":
            (pull,) = _sockets(ctx, zmq.PULL)
            pull.bind(job.endpoint)
            conn.send(("ready", None))
            while True:
                head, body = pull.recv_multipart(copy=False)
                fid, phase, t = HEAD.unpack(head.buffer)
                if phase == STOP:
                    return tally.result()
                frame = np.frombuffer(body.buffer, np.uint8).reshape(job.shape)
                tally.add(phase, t, now())
                tally.mismatches += not _intact(frame, fid)
                del frame, body  # let zmq free the message
        ring = Ring.attach(job.ring_name)
        try:
            pull, acks = _sockets(ctx, zmq.PULL, zmq.PUSH)
            pull.bind(job.endpoint)
            acks.bind(job.ack_endpoint)
            conn.send(("ready", None))
            _read_ring(ring, pull, acks, tally)
            return tally.result()
        finally:
            ring.close()
    finally:
        ctx.destroy(linger=0)


def _read_ring(ring: Ring, pull: zmq.Socket[bytes], acks: zmq.Socket[bytes], tally: _Tally) -> None:
    """Use each announced frame in place, then acknowledge it (its views die with this frame)."""
    now = time.perf_counter_ns
    while True:
        slot, seq, fid, phase, t = NOTICE.unpack(pull.recv())
        if phase == STOP:
            return
        if ring.valid(slot, seq):
            frame = ring.view(slot)
            tally.add(phase, t, now())
            tally.mismatches += not _intact(frame, fid)
            tally.overruns += not ring.valid(slot, seq)
        else:
            tally.overruns += 1
        acks.send(ACK.pack(fid + 1))


# -- parent ---------------------------------------------------------------------------------------


def _expect(
    tag: str, conn: Connection, proc: BaseProcess, peer: tuple[Connection, BaseProcess] | None = None
) -> Any:
    """The payload of `proc`'s next message, which must be `tag`. Fails fast if `proc` dies, or if its
    `peer` (which must stay silent meanwhile) reports an error or dies."""
    pairs = [(conn, proc)] + ([peer] if peer else [])
    if not conn.poll(0):
        wait([c for c, _ in pairs] + [p.sentinel for _, p in pairs], TIMEOUT_S)
    for c, p in reversed(pairs):
        if c.poll(0):
            got, payload = c.recv()
            if got != tag or p is not proc:
                raise RuntimeError(f"{p.name} failed:\n{payload}")
            return payload
    for _, p in pairs:
        p.join(1.0)  # it died, or hangs: give the exit code a moment
    dead = [f"{p.name} exited with {p.exitcode}" for _, p in pairs if not p.is_alive()]
    raise RuntimeError(f"{proc.name}: no {tag!r}: " + ("; ".join(dead) or f"timed out after {TIMEOUT_S} s"))


def _session(mp: SpawnContext, job: Job) -> dict[str, Any]:
    """One writer/reader pair for one contender and one frame size; returns the reader's numbers."""
    ring = None
    if job.contender == "ring":
        ring = Ring.create(
            job.ring_name,
            RingGeometry(DEPTH + 2, job.shape[0], job.shape[1], job.shape[2] if len(job.shape) == 3 else 1),
        )
    queue: Queue[Any] | None = mp.Queue(DEPTH) if job.contender == "queue" else None
    (r_conn, r_child), (w_conn, w_child) = mp.Pipe(), mp.Pipe()
    procs = []
    try:
        reader = mp.Process(
            target=_child, args=(_reader, job, queue, r_child), name=f"{job.contender} reader"
        )
        reader.start()
        procs.append(reader)
        _expect("ready", r_conn, reader)
        writer = mp.Process(
            target=_child, args=(_writer, job, queue, w_child), name=f"{job.contender} writer"
        )
        writer.start()
        procs.append(writer)
        res: dict[str, Any] = _expect("result", r_conn, reader, (w_conn, writer))
        w_conn.send("exit")
        res.update(_expect("result", w_conn, writer))
        for p in procs:
            p.join(TIMEOUT_S)
            if p.exitcode != 0:
                raise RuntimeError(f"{p.name} exited with {p.exitcode}")
        return res
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
            p.close()
        for c in (r_conn, r_child, w_conn, w_child):
            c.close()
        if queue is not None:
            queue.close()
            del queue
        if ring is not None:
            ring.close()
            ring.unlink()
        for path in (job.endpoint, job.ack_endpoint):
            Path(path.removeprefix("ipc://")).unlink(missing_ok=True)


def _memcpy(shape: tuple[int, ...], reps: int) -> dict[str, float]:
    """Median µs of one np.copyto into untouched (fresh anonymous mmap) and into reused memory."""
    src = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    nbytes = src.nbytes
    cold, warm = [], []
    for _ in range(reps):
        with mmap.mmap(-1, nbytes) as mem:
            dst = np.frombuffer(mem, np.uint8, nbytes).reshape(shape)
            t = time.perf_counter_ns()
            np.copyto(dst, src)
            cold.append(time.perf_counter_ns() - t)
            del dst
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch it: not timed
    for _ in range(reps):
        t = time.perf_counter_ns()
        np.copyto(dst, src)
        warm.append(time.perf_counter_ns() - t)
    return {"cold_us": statistics.median(cold) / 1e3, "warm_us": statistics.median(warm) / 1e3}


def _machine() -> dict[str, Any]:
    cpu = cpu_model()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every contender on every frame size; medians over `repeats` interleaved runs."""
    warmup, seconds, repeats = (10, 0.3, 1) if quick else (50, 2.0, 3)
    mp = multiprocessing.get_context("spawn")
    tracker_was_running = resource_tracker._resource_tracker._fd is not None
    prefix = new_run_prefix()
    folder = Path(tempfile.mkdtemp(prefix="bench_transport_"))  # ipc:// sockets
    rows, copies, ratios = [], [], []
    try:
        for size, shape in SIZES:
            nbytes = int(np.prod(shape))
            period_ns = max(2_000_000, nbytes * 8)  # 8 ns/byte: well below every contender's capacity
            paced = 20 if quick else min(100, max(30, 2_000_000_000 // period_ns))
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
            for _ in range(repeats):
                for contender in CONTENDERS:
                    job = Job(
                        contender,
                        shape,
                        warmup,
                        seconds,
                        paced,
                        period_ns,
                        f"ipc://{folder}/frames",
                        f"ipc://{folder}/acks",
                        f"{prefix}_bench_ring",
                    )
                    runs[contender].append(_session(mp, job))
            fps: dict[str, float] = {}
            for contender, results in runs.items():
                row: dict[str, Any] = {"size": size, "contender": contender}
                for key in ("fps", "lat_p50_us", "lat_p99_us", "sat_lat_p50_us", "sat_lat_p99_us"):
                    row[key] = statistics.median(r[key] for r in results)
                row["errors"] = sum(r["mismatches"] + r["overruns"] for r in results)
                row["frames"] = sum(r["frames"] for r in results)
                row["fps_runs"] = [r["fps"] for r in results]
                row["paced_period_ms"] = period_ns / 1e6
                row["paced_frames"] = sum(r["paced"] for r in results)
                fps[contender] = row["fps"]
                rows.append(row)
            copies.append({"size": size, **_memcpy(shape, 15 if quick else 50)})
            ratios.append(
                {
                    "size": size,
                    "ring_over_queue": fps["ring"] / fps["queue"],
                    "ring_over_zmq": fps["ring"] / fps["zmq"],
                }
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        gc.collect()  # queue semaphores unregister from the resource tracker when collected
        if not tracker_was_running:
            resource_tracker._resource_tracker._stop()  # spawn started it: it must not outlive run()
    return {
        "suite": "transport",
        "machine": _machine(),
        "quick": quick,
        "repeats": repeats,
        "seconds_per_run": seconds,
        "depth": DEPTH,
        "rows": rows,
        "memcpy": copies,
        "ratios": ratios,
    }


def table(result: dict[str, Any]) -> str:
    """Aligned plain-text rendering of `run()`'s result."""
    m = result["machine"]
    lines = [
        f"transport: {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy {m['numpy']}, "
        f"pyzmq {m['pyzmq']} (median of {result['repeats']})",
        f"{'size':<16}{'contender':<10}{'frames/s':>10}{'p50 us':>10}{'p99 us':>10}"
        f"{'sat p50':>10}{'sat p99':>10}{'errors':>8}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['size']:<16}{r['contender']:<10}{r['fps']:>10.0f}{r['lat_p50_us']:>10.0f}"
            f"{r['lat_p99_us']:>10.0f}{r['sat_lat_p50_us']:>10.0f}{r['sat_lat_p99_us']:>10.0f}"
            f"{r['errors']:>8d}"
        )
    lines.append("p50/p99: paced latency (no queueing); sat: latency at full throughput (mostly queued)")
    lines.append("")
    lines.append(
        f"{'size':<16}{'memcpy cold us':>16}{'memcpy warm us':>16}{'ring/queue':>12}{'ring/zmq':>10}"
    )
    for c, q in zip(result["memcpy"], result["ratios"], strict=True):
        lines.append(
            f"{c['size']:<16}{c['cold_us']:>16.0f}{c['warm_us']:>16.0f}"
            f"{q['ring_over_queue']:>11.1f}x{q['ring_over_zmq']:>9.1f}x"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.runner import suite_main

    suite_main("transport", __doc__ or "transport", run, table)
