"""End to end: lens as users run it vs a single-process OpenCV loop vs a multiprocessing.Queue pipeline.

The job is the 5-tool chain of bench.tools (grayscale, threshold at 128, blob with area >= 50,
Sobel edges > 100, pattern matching of a 64x64 template in a 160x160 ROI, on the binary image) on
synthetic frames at 640x480 gray, 1280x720 gray and 1920x1080 BGR (the grayscale tool converts BGR
to gray; the OpenCV contenders call cv2.cvtColor). Every contender reads its frames from the same
synthetic camera lens uses (lens.capture.sources.synthetic, seed 7, one memcpy a frame), so every
contender pays the same capture cost. Contenders, all in the same run, interleaved (the order turns
round every repeat), each measured as the median of `repeats` runs:

* single: one process that captures and inspects in a loop with plain OpenCV/NumPy, OpenCV with its
  default threads (the shape of today's Flask machines);
* queue:  a capture process and WORKERS worker processes fed by a `multiprocessing.Queue` (spawn,
  maxsize WORKERS + 1, the same frames-ahead window lens grants a paced camera) of pickled frames,
  results back to this process on another Queue; OpenCV on one thread per worker;
* lens:   `python -m lens.cli.main run` (what `lens run` is) on a generated pipeline in a temporary
  folder: the synthetic camera at fps 0, continuous trigger, WORKERS workers, the 5 tools, control
  disabled, results bus on a free loopback port. This process counts results on the bus (a SUB
  socket); counters (drops by reason) come from the run's shared-memory Stats, attached by name
  (lens_<pid of lens run>_<token>_stats); SIGINT stops it and its exit is checked (code 0, its
  "lens: stopped." line, no segment left in /dev/shm).

The OpenCV contenders use the fastest connected-components algorithm and edge way (timed on the
first frame, in each process), into preallocated buffers: their strongest form. A contender's run:
start, first result, `warm_s` discarded, then inspections counted over `window_s`.

Figures per contender and size: inspections/s; capture->result latency p50/p99/max in ms (result
received by this process, or computed by the single loop, minus the capture time stamp; for lens
also finished_at - captured_at, inside the engine); frames dropped by reason (lens's counters; the
OpenCV contenders are lossless by construction); CPU % (all of the contender's processes, from
their CPU times over the window; 100 % = one core; this process's own, which collects the queue's
results and lens's from the bus, apart) and peak RSS and PSS summed over its processes (psutil,
sampled every SAMPLE_S); ratios lens/single and lens/queue. Lens results are checked
against the OpenCV chain on the same frames (the scene is deterministic by frame id).

Also: lens at 640x480 with the camera at 100 frames/s, every frame inspected: the latency target;
scaling at 640x480 with 1, 2, 4 workers (1 camera) and 1, 2, 4 cameras (2 workers); cost per
megapixel (worker CPU us per inspection and per MP, MP/s) over gray frame sizes; the folder job
(50 PNGs 640x480 from the same scene, grayscale + blob + math of pipelines/demo.yaml): a single
process decoding each image with cv2.imread every time vs lens with a looping folder source;
and with --soak SECONDS the demo pipeline (pipelines/demo.yaml, control enabled as there) at full
speed, RSS and open fds of every process sampled each second: growth from the first minute after
warm-up to the last one.

Charts (bench/charts.py) go to bench/out/: e2e_throughput.png, e2e_latency.png, e2e_scaling.png and
e2e_soak_rss.png (after a soak). The machine is shared and noisy: compare numbers of one run.

    python -m bench.e2e [--quick] [--soak SECONDS] [--json bench/out/e2e.json]
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from queue import Empty
from typing import Any

import cv2
import numpy as np
import psutil
import yaml
import zmq

from bench.control import free_port
from bench.runner import cpu_model
from bench.tools import (
    BAND,
    CCL,
    EDGE_T,
    SEARCH,
    TEMPLATE,
    Frames,
    _bind,
    _cv_blob_rows,
    _cv_match,
    _cv_stats,
    _edge_ways,
    _fastest,
    _frames,
    _template,
)
from lens.capture.sources.synthetic import SyntheticScene, SyntheticSource
from lens.engine.bus import unpack
from lens.engine.stats import CAM, Stats, ToolStats

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
SHM = Path("/dev/shm")
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))  # the one kernel cache

Size = tuple[str, int, int, str]  # label, width, height, capture format
SIZES: tuple[Size, ...] = (
    ("640x480 gray", 640, 480, "gray"),
    ("1280x720 gray", 1280, 720, "gray"),
    ("1920x1080 BGR", 1920, 1080, "bgr"),
)
#: gray sizes of the cost-per-megapixel sweep besides the main rows' (640x480, 1280x720)
SWEEP_EXTRA: tuple[Size, ...] = (("320x240 gray", 320, 240, "gray"), ("1920x1080 gray", 1920, 1080, "gray"))
CONTENDERS = ("single", "queue", "lens")
WORKERS = 2
SEED, DEFECT_RATE, PARTS = 7, 0.1, 4  # the demo scene
AREA_MIN = 50
SLOTS = 16
FOLDER_IMAGES = 50
RATE_HZ = 100  # the latency target's rate
SAMPLE_S = 0.5  # RSS/PSS sampling period
START_TIMEOUT_S = 180.0  # first result of a contender (a cold numba cache compiles for minutes)
TIMEOUT_S = 30.0  # anything else: a stop, a silent contender
CHECK_RESULTS = 20  # lens results checked against the OpenCV chain on the same frames
BLOB_KEYS = ("area", "x", "y", "w", "h", "cx", "cy")
LENS_RUN = [sys.executable, "-m", "lens.cli.main", "run"]
DROP_REASONS = ("skipped_by_trigger", "dropped_busy", "dropped_ring_full", "overrun", "superseded",
                "skipped_stopped", "errors")  # fmt: skip
NUMERIC = ("per_s", "p50_ms", "p99_ms", "max_ms", "cpu_pct", "peak_rss_mb", "peak_pss_mb", "bench_cpu_pct")
#: name -> (target, higher is better)
TARGETS: dict[str, tuple[float, bool]] = {
    "lens_over_single_1080p": (1.8, True),
    "lens_over_queue_1080p": (3.0, True),
    "lens_640_per_s": (2000.0, True),
    "p99_ms_at_100hz": (5.0, False),
    "folder_ratio": (10.0, True),
    "soak_rss_growth_pct": (1.0, False),
}


@dataclass(frozen=True)
class Params:
    repeats: int
    warm_s: float
    window_s: float
    rate_window_s: float  # the 100 Hz latency run
    sizes: tuple[Size, ...]
    sweep_extra: tuple[Size, ...]
    scale_workers: tuple[int, ...]
    scale_cameras: tuple[int, ...]
    folder_repeats: int


FULL = Params(3, 1.0, 3.0, 8.0, SIZES, SWEEP_EXTRA, (1, 2, 4), (1, 2, 4), 2)
QUICK = Params(1, 0.5, 1.0, 1.5, SIZES[:1], (), (1, 2), (1, 2), 1)


@dataclass(frozen=True)
class Job:
    """The 5-tool chain at one frame size (picklable: handed to the contenders' processes)."""

    label: str
    w: int
    h: int
    fmt: str
    template: str  # 64x64 crop of the binary image on the first cap's rim (PNG)
    roi: dict[str, int]  # the pattern matching's 160x160 search window

    @property
    def channels(self) -> int:
        return 3 if self.fmt == "bgr" else 1

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.h, self.w, 3) if self.fmt == "bgr" else (self.h, self.w)

    @property
    def mp(self) -> float:
        return self.w * self.h / 1e6


def _job(size: Size, folder: Path) -> Job:
    label, w, h, fmt = size
    f = _frames(w, h)
    path, roi = _template(f.binary, f.part, folder, f"binary_{w}x{h}")
    return Job(label, w, h, fmt, str(path), roi)


def _source(job: Job) -> SyntheticSource:
    src = SyntheticSource(job.w, job.h, job.channels, SEED, DEFECT_RATE, PARTS)
    src.open()
    return src


def _say(text: str) -> None:
    print(f"  e2e: {text}", file=sys.stderr, flush=True)


# -- the OpenCV contenders' tools ---------------------------------------------------------------------


class CvChain:
    """The five tools with plain OpenCV/NumPy into buffers allocated once; the fastest CCL algorithm
    and edge way are picked on the first frame. Returns a result dict much like lens's."""

    def __init__(self, job: Job, first: np.ndarray, probe: int = 5) -> None:
        h, w = job.h, job.w
        self.gray, self.binary = np.empty((h, w), np.uint8), np.empty((h, w), np.uint8)
        self.labels = np.empty((h, w), np.int32)
        self.result = np.empty((SEARCH - TEMPLATE + 1,) * 2, np.float32)
        templ = cv2.imread(job.template, cv2.IMREAD_GRAYSCALE)
        if templ is None:
            raise RuntimeError(f"cannot read the template {job.template}")
        self.templ = templ
        r = job.roi
        self.origin = (r["x"], r["y"])
        self.search = self.binary[r["y"] : r["y"] + r["h"], r["x"] : r["x"] + r["w"]]
        none = np.empty(0, np.uint8)
        ways = _edge_ways(Frames(w, h, none, none, none, none))
        cv2.inRange(self._gray(first), BAND[0], 255, dst=self.binary)

        def ccl(algo: int) -> object:
            return cv2.connectedComponentsWithStatsWithAlgorithm(self.binary, 8, cv2.CV_32S, algo,
                                                                 labels=self.labels)  # fmt: skip

        best_ccl = _fastest({a: _bind(ccl, getattr(cv2, a)) for a in CCL}, probe)
        best_edge = _fastest({k: _bind(fn, self.binary) for k, fn in ways.items()}, probe)
        self.algo, self.edges = getattr(cv2, best_ccl), ways[best_edge]
        self.variant = f"{best_ccl}, {best_edge}"

    def _gray(self, frame: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self.gray) if frame.ndim == 3 else frame

    def __call__(self, frame: np.ndarray) -> dict[str, Any]:
        gray = self._gray(frame)
        mean, lo, hi, std = _cv_stats(gray)
        count = cv2.countNonZero(cv2.inRange(gray, BAND[0], 255, dst=self.binary))
        _, _, st, cen = cv2.connectedComponentsWithStatsWithAlgorithm(self.binary, 8, cv2.CV_32S, self.algo,
                                                                       labels=self.labels)  # fmt: skip
        blobs = [dict(zip(BLOB_KEYS, row, strict=True)) for row in _cv_blob_rows(st, cen, AREA_MIN).tolist()]
        edges = self.edges(self.binary)
        score, (x, y) = _cv_match(self.search, self.templ, self.result)
        return {"brightness": {"mean": mean, "min": lo, "max": hi, "std": std}, "binarize": count,
                "parts": {"count": len(blobs), "blobs": blobs}, "edges": edges,
                "cap": {"score": score, "x": self.origin[0] + x, "y": self.origin[1] + y}}  # fmt: skip


class CvDemo:
    """pipelines/demo.yaml's tools (grayscale, blob 128..255 area >= 50, math parts / 4) with OpenCV."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.binary, self.labels = np.empty(shape, np.uint8), np.empty(shape, np.int32)

    def __call__(self, gray: np.ndarray) -> dict[str, Any]:
        mean, lo, hi, std = _cv_stats(gray)
        cv2.inRange(gray, 128, 255, dst=self.binary)
        _, _, st, cen = cv2.connectedComponentsWithStats(self.binary, labels=self.labels, connectivity=8,
                                                         ltype=cv2.CV_32S)  # fmt: skip
        blobs = [dict(zip(BLOB_KEYS, row, strict=True)) for row in _cv_blob_rows(st, cen, AREA_MIN).tolist()]
        ratio = len(blobs) / 4
        return {"brightness": {"mean": mean, "min": lo, "max": hi, "std": std, "pass": 40 <= mean <= 220},
                "parts": {"count": len(blobs), "blobs": blobs, "pass": len(blobs) == 4},
                "ok_ratio": {"value": ratio, "pass": ratio == 1}}  # fmt: skip


# -- a contender's processes: CPU and memory ------------------------------------------------------------


class Tree:
    """The processes of one contender (roots and their descendants): CPU seconds, and RSS/PSS sampled
    every SAMPLE_S in a thread between start() and stop()."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self._procs: dict[int, psutil.Process] = {}
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def procs(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for pid in self.roots:
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                kids = root.children(recursive=True)
            except psutil.Error:
                continue
            found += [self._procs.setdefault(p.pid, p) for p in [root, *kids]]
        return found

    def cpu(self) -> dict[int, tuple[str, float]]:
        """pid -> (name, CPU seconds) of every live process."""
        out: dict[int, tuple[str, float]] = {}
        for p in self.procs():
            with suppress(psutil.Error):
                t = p.cpu_times()
                out[p.pid] = (p.name(), float(t.user + t.system))
        return out

    def _watch(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            rss = pss = 0
            for p in self.procs():
                with suppress(psutil.Error):
                    m = p.memory_full_info()
                    rss, pss = rss + m.rss, pss + getattr(m, "pss", m.rss)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="e2e-sampler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def memory(self) -> dict[str, float]:
        return {"peak_rss_mb": self.peak_rss / 2**20, "peak_pss_mb": self.peak_pss / 2**20}

    def left(self) -> list[psutil.Process]:
        """Every process seen in the tree that is still running (not a zombie)."""
        out = []
        for p in self._procs.values():
            with suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
        return out

    def kill(self) -> None:
        """Kill every process of the tree still running (children first)."""
        self.procs()
        for p in reversed(self.left()):
            with suppress(psutil.Error):
                p.kill()


def _cpu_delta(
    a: dict[int, tuple[str, float]], b: dict[int, tuple[str, float]]
) -> dict[int, tuple[str, float]]:
    return {pid: (name, t - a[pid][1] if pid in a else t) for pid, (name, t) in b.items()}


def _cpu_pct(a: dict[int, tuple[str, float]], b: dict[int, tuple[str, float]], dt: float) -> float:
    return 100 * sum(t for _, t in _cpu_delta(a, b).values()) / dt


def _self_cpu() -> float:
    """CPU seconds of this process (the OpenCV contenders' parent, the queue's collector, lens's SUB)."""
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def _role(name: str, pid: int, root: int) -> str:
    """A lens process's role from its title (lens-worker-0, lens-capture-cam0, ...)."""
    if pid == root:
        return "supervisor"
    for prefix, role in (("lens-worker", "workers"), ("lens-capture", "captures"),
                         ("lens-dispatche", "dispatcher"), ("lens-control", "control"),
                         ("lens-outputs", "outputs")):  # fmt: skip
        if name.startswith(prefix):
            return role
    return "other"


def _lat(values_s: list[float] | np.ndarray) -> dict[str, Any]:
    """p50/p99/max (ms) and 101 quantiles (for the CDF chart) of latencies in seconds."""
    a = np.asarray(values_s, np.float64) * 1e3
    if a.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "n": 0,
                "quantiles_ms": []}  # fmt: skip
    q = np.percentile(a, np.arange(101))
    return {"p50_ms": float(q[50]), "p99_ms": float(q[99]), "max_ms": float(a.max()), "n": int(a.size),
            "quantiles_ms": [round(float(v), 4) for v in q]}  # fmt: skip


# -- contender (a): one process ---------------------------------------------------------------------------


def _single_child(kind: str, job: Job | None, folder: str, conn: Connection) -> None:
    """Capture + inspect in one loop until told to stop; counts and times the measured window."""
    try:
        if kind == "folder":
            files = sorted(str(p) for p in Path(folder).glob("*.png"))
            demo = CvDemo((480, 640))
            k = itertools.count()

            def step() -> float:
                img = cv2.imread(files[next(k) % len(files)], cv2.IMREAD_GRAYSCALE)  # decoded every time
                captured = time.time()
                demo(img)
                return captured

            variant = "cv2.imread each time"
        else:
            assert job is not None
            src = _source(job)
            frame = np.empty(job.shape, np.uint8)
            src.read_into(frame)
            chain = CvChain(job, frame)

            def step() -> float:
                src.read_into(frame)
                captured = time.time()
                chain(frame)
                return captured

            variant = chain.variant
        step()
        conn.send(("ready", {"opencv_variant": variant, "opencv_threads": cv2.getNumThreads()}))
        measuring, lat, t0 = False, [], 0.0
        while True:
            if conn.poll():
                if conn.recv() != "measure":
                    break
                measuring, t0 = True, time.perf_counter()
            captured = step()
            if measuring:
                lat.append(time.time() - captured)
        conn.send(("result", {"count": len(lat), "seconds": time.perf_counter() - t0, "lat": lat}))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _expect(conn: Connection, proc: BaseProcess, tag: str, timeout: float) -> Any:
    try:
        if not conn.poll(timeout):
            raise RuntimeError(f"{proc.name}: no {tag!r} within {timeout:.0f} s (alive: {proc.is_alive()})")
        got, payload = conn.recv()
    except EOFError:
        proc.join(1.0)
        raise RuntimeError(f"{proc.name} exited with {proc.exitcode} before sending {tag!r}") from None
    if got != tag:
        raise RuntimeError(f"{proc.name} failed:\n{payload}")
    return payload


def run_single(kind: str, job: Job | None, folder: Path, warm_s: float, window_s: float) -> dict[str, Any]:
    """Contender (a): `kind` "chain" (the 5 tools on `job`) or "folder" (the demo tools on PNGs)."""
    mp = multiprocessing.get_context("spawn")
    parent, child = mp.Pipe()
    proc = mp.Process(target=_single_child, args=(kind, job, str(folder), child), name=f"single-{kind}")
    proc.start()
    child.close()
    tree = Tree([proc.pid])  # type: ignore[list-item]
    try:
        info = _expect(parent, proc, "ready", START_TIMEOUT_S)
        time.sleep(warm_s)
        tree.start()
        cpu0, me0, t0 = tree.cpu(), _self_cpu(), time.monotonic()
        parent.send("measure")
        time.sleep(window_s)
        parent.send("stop")
        cpu1, me1, t1 = tree.cpu(), _self_cpu(), time.monotonic()
        tree.stop()
        res = _expect(parent, proc, "result", TIMEOUT_S)
        proc.join(TIMEOUT_S)
        if proc.exitcode != 0:
            raise RuntimeError(f"{proc.name} exited with {proc.exitcode}")
    finally:
        tree.stop()
        if proc.is_alive():
            proc.kill()
        proc.join()
        proc.close()
        parent.close()
    return {"contender": "single", "inspected": res["count"], "seconds": res["seconds"],
            "per_s": res["count"] / res["seconds"], **_lat(res["lat"]),
            "cpu_pct": _cpu_pct(cpu0, cpu1, t1 - t0), "bench_cpu_pct": 100 * (me1 - me0) / (t1 - t0),
            **tree.memory(), "dropped": {}, **info}  # fmt: skip


# -- contender (b): a capture process and workers on multiprocessing.Queue ------------------------------


def _queue_capture(job: Job, jobs: Queue[Any], results: Queue[Any], stop: Event) -> None:
    try:
        src = _source(job)
        for fid in itertools.count():
            if stop.is_set():
                break
            frame = np.empty(job.shape, np.uint8)  # a new array: the queue pickles it later, in a thread
            src.read_into(frame)
            jobs.put((fid, time.time(), frame))  # blocks while WORKERS + 1 wait: backpressure
    except BaseException:
        results.put(("error", "capture", traceback.format_exc()))
    finally:
        for _ in range(WORKERS):
            jobs.put(None)


def _queue_worker(index: int, job: Job, jobs: Queue[Any], results: Queue[Any]) -> None:
    cv2.setNumThreads(1)  # WORKERS processes share the cores already
    chain: CvChain | None = None
    try:
        while (item := jobs.get()) is not None:
            fid, captured, frame = item
            if chain is None:
                chain = CvChain(job, frame)
                results.put(("variant", index, chain.variant))
            out = chain(frame)
            results.put(("result", fid, captured, time.time(), out))
        results.put(("done", index, None))
    except BaseException:
        results.put(("error", f"worker {index}", traceback.format_exc()))


class _QueueCollector:
    """This process's end of contender (b): takes results off the queue, counting while measuring."""

    def __init__(self, results: Queue[Any]) -> None:
        self.results = results
        self.measuring = False
        self.lat: list[float] = []
        self.variants: set[str] = set()
        self.results_seen = self.done = 0

    def take(self, timeout: float) -> None:
        """One message (raises queue.Empty after `timeout`)."""
        msg = self.results.get(timeout=timeout)
        if msg[0] == "result":
            self.results_seen += 1
            if self.measuring:
                self.lat.append(time.time() - msg[2])
        elif msg[0] == "variant":
            self.variants.add(msg[2])
        elif msg[0] == "done":
            self.done += 1
        else:
            raise RuntimeError(f"queue contender, {msg[1]} failed:\n{msg[2]}")

    def pump(self, until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            with suppress(Empty):
                self.take(min(left, 0.1))


def run_queue(job: Job, warm_s: float, window_s: float) -> dict[str, Any]:
    """Contender (b) on `job`."""
    mp = multiprocessing.get_context("spawn")
    jobs: Queue[Any] = mp.Queue(WORKERS + 1)
    results: Queue[Any] = mp.Queue()
    stop = mp.Event()
    procs: list[BaseProcess] = [mp.Process(target=_queue_capture, args=(job, jobs, results, stop),
                                           name="queue-capture")]  # fmt: skip
    procs += [mp.Process(target=_queue_worker, args=(i, job, jobs, results), name=f"queue-worker-{i}")
              for i in range(WORKERS)]  # fmt: skip
    tree, got = Tree([]), _QueueCollector(results)
    try:
        for p in procs:
            p.start()
        tree.roots = [p.pid for p in procs]  # type: ignore[misc]
        deadline = time.monotonic() + START_TIMEOUT_S
        while not got.results_seen:
            with suppress(Empty):
                got.take(0.5)
            dead = [p.name for p in procs if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"queue contender: no result (exited: {dead})")
        got.pump(time.monotonic() + warm_s)
        tree.start()
        cpu0, me0, t0 = tree.cpu(), _self_cpu(), time.monotonic()
        got.measuring = True
        got.pump(t0 + window_s)
        got.measuring = False
        cpu1, me1, t1 = tree.cpu(), _self_cpu(), time.monotonic()
        tree.stop()
        stop.set()
        deadline = time.monotonic() + TIMEOUT_S
        while got.done < WORKERS:  # every result taken off the queue, or the workers cannot exit
            if time.monotonic() > deadline:
                raise RuntimeError(f"queue contender: {WORKERS - got.done} worker(s) did not finish")
            with suppress(Empty):
                got.take(0.1)
        for p in procs:
            p.join(TIMEOUT_S)
            if p.exitcode != 0:
                raise RuntimeError(f"{p.name} exited with {p.exitcode}")
    finally:
        tree.stop()
        stop.set()
        for p in procs:
            if p.is_alive():
                p.kill()
            if p.pid is not None:
                p.join()
                p.close()
        for q in (jobs, results):
            q.cancel_join_thread()
            q.close()
    dt = t1 - t0
    return {"contender": "queue", "inspected": len(got.lat), "seconds": dt, "per_s": len(got.lat) / dt,
            **_lat(got.lat), "cpu_pct": _cpu_pct(cpu0, cpu1, dt), "bench_cpu_pct": 100 * (me1 - me0) / dt,
            **tree.memory(), "dropped": {},
            "opencv_variant": "; ".join(sorted(got.variants)), "opencv_threads": 1}  # fmt: skip


# -- contender (c): lens run -----------------------------------------------------------------------------


@dataclass
class Received:
    """What the SUB socket saw, in arrival order."""

    ids: list[int] = field(default_factory=list)
    recv_at: list[float] = field(default_factory=list)
    captured_at: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)
    in_window: list[bool] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)  # the first CHECK_RESULTS envelopes


class LensRun:
    """`lens run` on a pipeline written to `folder`, a SUB socket on its results bus, its counters."""

    def __init__(
        self, cfg: dict[str, Any], folder: Path, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.name, self.path = name, folder / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.cameras = [c["id"] for c in cfg["cameras"]]
        self.got, self.window = Received(), False
        self.stats: Stats | None = None
        self.toolstats: ToolStats | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.tree = Tree([])
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.linger = 0
        self.sub.rcvhwm = 0  # never drop on our side: what is missing, lens lost (bus_dropped)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"result.")
        self.sub.connect(cfg["outputs"]["zmq"]["bind"])  # before the bind: connected as soon as it is up
        self.log_path = folder / f"{name}.log"
        self.log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                [*LENS_RUN, str(self.path)], stdin=subprocess.DEVNULL, stdout=self.log,
                stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})},
            )  # fmt: skip
            self.tree.roots = [self.proc.pid]
            self.started_s = self._wait_started()
        except BaseException:
            self.close()
            raise

    def log_tail(self, n: int = 3000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name}: lens run exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def _wait_started(self) -> float:
        """Until the first result arrives; then attach the run's counters. Returns the seconds it took."""
        assert self.proc is not None
        t0 = time.monotonic()
        while not self.got.ids:
            self.alive()
            if time.monotonic() > t0 + START_TIMEOUT_S:
                raise RuntimeError(
                    f"{self.name}: no result within {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
                )
            self.pump(time.monotonic() + 0.1)
        stats = sorted(SHM.glob(f"lens_{self.proc.pid}_*_stats"))
        tools = sorted(SHM.glob(f"lens_{self.proc.pid}_*_toolstats"))
        if len(stats) != 1 or len(tools) != 1:
            raise RuntimeError(
                f"{self.name}: want one stats and one toolstats segment, found {stats + tools}"
            )
        self.stats = Stats.attach(stats[0].name, self.cameras)
        self.toolstats = ToolStats.attach(tools[0].name)
        return time.monotonic() - t0

    def pump(self, until: float) -> None:
        """Receive results until `until` (monotonic)."""
        got, sub = self.got, self.sub
        while (left := until - time.monotonic()) > 0:
            if not sub.poll(max(1, int(left * 1000))):
                continue
            while True:
                try:
                    _topic, payload = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                t = time.time()
                env = unpack(payload)
                got.ids.append(env["result_id"])
                got.recv_at.append(t)
                got.captured_at.append(env["captured_at"] or float("nan"))
                got.finished_at.append(env["finished_at"])
                got.in_window.append(self.window)
                if "error" in env:
                    got.errors[env["error"]["code"]] += 1
                elif len(got.samples) < CHECK_RESULTS:
                    got.samples.append(env)

    def counters(self) -> dict[str, int]:
        """Camera counters summed over the cameras, and the run's."""
        assert self.stats is not None
        snap = self.stats.snapshot()
        total = {k: sum(c[k] for c in snap["cameras"].values()) for k in CAM}
        return {**total, **{k: snap["run"][k] for k in ("results", "bus_dropped", "restarts")}}

    def measure(self, warm_s: float, window_s: float) -> dict[str, Any]:
        """Discard `warm_s`, then count over `window_s`: throughput, latency, drops, CPU, memory."""
        assert self.proc is not None and self.toolstats is not None
        self.pump(time.monotonic() + warm_s)
        self.alive()
        self.tree.start()
        c0, cpu0, me0, t0 = self.counters(), self.tree.cpu(), _self_cpu(), time.monotonic()
        self.window = True
        self.pump(t0 + window_s)
        self.window = False
        c1, cpu1, me1, t1 = self.counters(), self.tree.cpu(), _self_cpu(), time.monotonic()
        self.tree.stop()
        tools = self.toolstats.snapshot()["tools"]
        dt, got = t1 - t0, self.got
        w = np.asarray(got.in_window)
        recv, cap, fin = (
            np.asarray(a, np.float64)[w] for a in (got.recv_at, got.captured_at, got.finished_at)
        )
        delta = {k: c1[k] - c0[k] for k in c1}
        roles: Counter[str] = Counter()
        for pid, (name, t) in _cpu_delta(cpu0, cpu1).items():
            roles[_role(name, pid, self.proc.pid)] += t
        n, inspected = int(w.sum()), delta["inspected"]
        return {"contender": "lens", "inspected": n, "seconds": dt, "per_s": n / dt,
                "counted_inspected_per_s": inspected / dt, **_lat(recv - cap),
                "engine": {k: v for k, v in _lat(fin - cap).items() if k != "quantiles_ms"},
                "cpu_pct": 100 * sum(roles.values()) / dt, "bench_cpu_pct": 100 * (me1 - me0) / dt,
                "cpu_pct_by_role": {k: 100 * v / dt for k, v in sorted(roles.items())},
                "worker_cpu_us_per_inspection": 1e6 * roles["workers"] / max(1, inspected),
                **self.tree.memory(), "dropped": {k: delta[k] for k in (*DROP_REASONS, "bus_dropped")},
                "captured": delta["captured"], "tool_avg_us": {k: v["avg_us"] for k, v in tools.items()},
                "startup_s": self.started_s}  # fmt: skip

    def _detach(self) -> None:
        for seg in (self.stats, self.toolstats):
            if seg is not None:
                seg.close()
        self.stats = self.toolstats = None

    def stop(self) -> dict[str, Any]:
        """SIGINT, receive until it exits, then check its exit: code 0, its last words, nothing left."""
        assert self.proc is not None
        final = self.counters()
        self._detach()
        pid, t0 = self.proc.pid, time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        while self.proc.poll() is None and time.monotonic() - t0 < TIMEOUT_S:
            self.pump(time.monotonic() + 0.05)
        code, stop_s = self.proc.poll(), time.monotonic() - t0
        self.pump(time.monotonic() + 0.05)
        left = sorted(p.name for p in SHM.glob(f"lens_{pid}_*"))
        for name in left:  # its own (its pid): reported, never left on the machine
            (SHM / name).unlink(missing_ok=True)
        deadline = time.monotonic() + 3.0  # a helper (e.g. multiprocessing's resource tracker) exits
        while [p for p in self.tree.left() if p.pid != pid] and time.monotonic() < deadline:  # on EOF
            time.sleep(0.05)
        stayed = []
        for p in self.tree.left():
            with suppress(psutil.Error):
                if p.pid != pid:
                    stayed.append(f"{p.pid} {p.name()}")  # named, so a report says what stayed
        said = "lens: stopped." in self.log_tail(20000)
        return {"exit_code": code, "stop_s": stop_s, "said_stopped": said, "shm_left": left,
                "procs_left": stayed, "clean": code == 0 and said and not left and not stayed,
                "final": final}  # fmt: skip

    def checks(self, final: dict[str, int]) -> dict[str, Any]:
        """Result ids: unique, and none missing between the first and the last received but jobs in
        flight at the stop (at most one a worker) and what lens itself could not deliver (bus_dropped)."""
        ids = self.got.ids
        unique = len(set(ids))
        return {"received": len(ids), "unique_ids": unique, "duplicates": len(ids) - unique,
                "missing_ids": max(ids) - min(ids) + 1 - unique if ids else 0,
                "out_of_order": sum(1 for a, b in itertools.pairwise(ids) if b < a),
                "error_results": dict(self.got.errors), "results_dispatched": final["results"],
                "bus_dropped": final["bus_dropped"], "restarts": final["restarts"]}  # fmt: skip

    def close(self) -> None:
        """Stop it if it still runs (SIGINT, then kill), and close everything of ours."""
        self.tree.stop()
        self._detach()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.tree.kill()
                self.proc.wait(5)
        self.tree.kill()  # whatever of it outlived it
        self.sub.close(linger=0)
        self.ctx.term()
        self.log.close()


def _bus() -> dict[str, str]:
    return {"bind": f"tcp://127.0.0.1:{free_port()}", "command": f"tcp://127.0.0.1:{free_port()}"}


def lens_config(job: Job, workers: int = WORKERS, cameras: int = 1, fps: float = 0) -> dict[str, Any]:
    """The pipeline of contender (c): `cameras` synthetic cameras, the 5 tools, control disabled."""
    tools = [
        {"name": "brightness", "type": "grayscale"},
        {"name": "binarize", "type": "threshold", "method": "binary", "params": {"th_min": BAND[0]}},
        {"name": "parts", "type": "blob", "params": {"th_min": BAND[0], "area_min": AREA_MIN}},
        {"name": "edges", "type": "edge_detection", "params": {"threshold": EDGE_T}},
        {"name": "cap", "type": "pattern_matching", "roi": job.roi, "params": {"template": job.template}},
    ]
    source = {"type": "synthetic", "width": job.w, "height": job.h, "fps": fps, "seed": SEED,
              "defect_rate": DEFECT_RATE, "parts": PARTS}  # fmt: skip
    cams = [{"id": f"cam{i}", "source": source, "capture": {"format": job.fmt},
             "trigger": {"type": "continuous", "interval_ms": 0}, "ring": {"slots": SLOTS}}
            for i in range(cameras)]  # fmt: skip
    return {"machine": {"id": "bench_e2e"}, "cameras": cams,
            "inspection": {"workers": workers, "tools": tools},
            "outputs": {"zmq": _bus()}, "control": {"enabled": False}}  # fmt: skip


def _same_as_opencv(job: Job, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Lens's results vs the OpenCV chain on the same frames (rendered again from the frame id)."""
    scene = SyntheticScene(job.w, job.h, job.channels, SEED, DEFECT_RATE, PARTS)
    chain: CvChain | None = None
    bad: list[str] = []
    for env in samples:
        frame = scene.frame(env["frame_id"])
        chain = chain or CvChain(job, frame, probe=1)
        want, got = chain(frame), env["tools"]
        cap = got["cap"]["measures"]
        pairs = (("binarize", got["binarize"]["value"], want["binarize"]),
                 ("parts", len(got["parts"]["blobs"]), want["parts"]["count"]),
                 ("edges", got["edges"]["value"], want["edges"]),
                 ("cap", (cap["x"], cap["y"]), (want["cap"]["x"], want["cap"]["y"])))  # fmt: skip
        bad += [f"frame {env['frame_id']} {what}: lens {a} != OpenCV {b}" for what, a, b in pairs if a != b]
    return {"checked": len(samples), "mismatches": bad}


def run_lens(cfg: dict[str, Any], folder: Path, name: str, warm_s: float, window_s: float,
             job: Job | None = None) -> dict[str, Any]:  # fmt: skip
    """Contender (c): one `lens run` of `cfg`, measured, stopped, checked (against OpenCV with `job`)."""
    run = LensRun(cfg, folder, name)
    try:
        row = run.measure(warm_s, window_s)
        row["exit"] = run.stop()
        row["checks"] = run.checks(row["exit"].pop("final"))
        if job is not None:
            row["same_as_opencv"] = _same_as_opencv(job, run.got.samples)
    finally:
        run.close()
    return {**row, "workers": cfg["inspection"]["workers"], "cameras": len(cfg["cameras"])}


# -- the parts of the suite --------------------------------------------------------------------------


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs' figures (latency quantiles element-wise); drops summed; each run's rate kept."""
    first = runs[0]
    row: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in NUMERIC}
    row.update(contender=first["contender"], runs_per_s=[r["per_s"] for r in runs],
               inspected=sum(r["inspected"] for r in runs))  # fmt: skip
    dropped: Counter[str] = Counter()
    for r in runs:
        dropped.update(r["dropped"])
    row["dropped"] = dict(dropped)
    q = [r["quantiles_ms"] for r in runs if r["quantiles_ms"]]
    row["quantiles_ms"] = [float(v) for v in np.median(np.asarray(q), axis=0)] if q else []
    row.update({k: first[k] for k in ("opencv_variant", "opencv_threads") if k in first})
    if first["contender"] == "lens":
        row["engine"] = {
            k: statistics.median(r["engine"][k] for r in runs) for k in ("p50_ms", "p99_ms", "max_ms")
        }
        row["worker_cpu_us_per_inspection"] = statistics.median(
            r["worker_cpu_us_per_inspection"] for r in runs
        )
        for key in ("cpu_pct_by_role", "tool_avg_us"):
            row[key] = {k: statistics.median(r[key].get(k, 0.0) for r in runs) for k in first[key]}
        row.update(clean_exit=all(r["exit"]["clean"] for r in runs), checks=[r["checks"] for r in runs],
                   exits=[r["exit"] for r in runs])  # fmt: skip
    if "same_as_opencv" in first:
        same = [r["same_as_opencv"] for r in runs]
        row["same_as_opencv"] = {"checked": sum(s["checked"] for s in same),
                                 "mismatches": [m for s in same for m in s["mismatches"]]}  # fmt: skip
    return row


def _main_rows(p: Params, jobs: dict[str, Job], folder: Path) -> list[dict[str, Any]]:
    """Every contender at every size, `repeats` times, interleaved (the order turns round each repeat)."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rep in range(p.repeats):
        for label, job in jobs.items():
            for contender in CONTENDERS if rep % 2 == 0 else CONTENDERS[::-1]:
                _say(f"{label} {contender} (repeat {rep + 1}/{p.repeats})")
                if contender == "single":
                    r = run_single("chain", job, folder, p.warm_s, p.window_s)
                elif contender == "queue":
                    r = run_queue(job, p.warm_s, p.window_s)
                else:
                    r = run_lens(
                        lens_config(job), folder, f"lens_{job.w}x{job.h}_{rep}", p.warm_s, p.window_s, job
                    )
                runs.setdefault((label, contender), []).append(r)
    return [{"size": label, "mp": job.mp, **_median_row(runs[(label, c)])}
            for label, job in jobs.items() for c in CONTENDERS]  # fmt: skip


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for size in dict.fromkeys(r["size"] for r in rows):
        by = {r["contender"]: r["per_s"] for r in rows if r["size"] == size}
        out.append({"size": size, **{f"{c}_per_s": by[c] for c in CONTENDERS},
                    "lens_over_single": by["lens"] / by["single"],
                    "lens_over_queue": by["lens"] / by["queue"]})  # fmt: skip
    return out


def _rate(p: Params, job: Job, folder: Path) -> dict[str, Any]:
    """lens with the camera at RATE_HZ frames/s, every frame inspected: latency when nothing queues."""
    _say(f"lens at {RATE_HZ} Hz")
    r = run_lens(lens_config(job, fps=RATE_HZ), folder, "lens_rate", p.warm_s, p.rate_window_s, job)
    return {"size": job.label, "trigger": f"camera at {RATE_HZ} fps, continuous, every frame", **r}


def _scaling(p: Params, job: Job, base: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """lens at 640x480: workers (1 camera) and cameras (2 workers); (2 workers, 1 camera) is `base`."""
    rows = []
    points = [("workers", w, w, 1) for w in p.scale_workers] + [
        ("cameras", c, WORKERS, c) for c in p.scale_cameras
    ]
    for axis, n, workers, cameras in points:
        if (workers, cameras) == (WORKERS, 1):
            r = base
        else:
            _say(f"scaling: {workers} workers, {cameras} cameras")
            r = run_lens(
                lens_config(job, workers, cameras),
                folder,
                f"lens_w{workers}_c{cameras}",
                p.warm_s,
                p.window_s,
            )
        clean = r["clean_exit"] if "clean_exit" in r else r["exit"]["clean"]
        rows.append({"axis": axis, "n": n, "workers": workers, "cameras": cameras, "dropped": r["dropped"],
                     **{k: r[k] for k in (*NUMERIC, "worker_cpu_us_per_inspection")},
                     "clean_exit": clean})  # fmt: skip
    return rows


def _sweep(p: Params, rows: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Throughput, latency and cost per megapixel of lens over gray frame sizes."""
    points = [
        (r["size"], r["mp"], r) for r in rows if r["contender"] == "lens" and r["size"].endswith("gray")
    ]
    for size in p.sweep_extra:
        _say(f"sweep {size[0]}")
        job = _job(size, folder)
        points.append((job.label, job.mp, run_lens(lens_config(job), folder, f"lens_{job.w}x{job.h}_sweep",
                                                   p.warm_s, p.window_s)))  # fmt: skip
    out = []
    for label, mp, r in sorted(points, key=lambda x: x[1]):
        us = r["worker_cpu_us_per_inspection"]
        out.append({"size": label, "mp": mp, "per_s": r["per_s"], "mp_per_s": r["per_s"] * mp,
                    "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "worker_us_per_inspection": us,
                    "worker_us_per_mp": us / mp,
                    "cpu_pct": r["cpu_pct"]})  # fmt: skip
    return out


def _fit(sweep: list[dict[str, Any]]) -> dict[str, float] | None:
    """Worker CPU us per inspection = fixed + per_mp * MP, least squares over the sweep (2+ sizes)."""
    if len({s["mp"] for s in sweep}) < 2:
        return None
    per_mp, fixed = np.polyfit([s["mp"] for s in sweep], [s["worker_us_per_inspection"] for s in sweep], 1)
    return {"fixed_us": float(fixed), "us_per_mp": float(per_mp)}


def _folder_job(p: Params, folder: Path) -> dict[str, Any]:
    """FOLDER_IMAGES PNGs 640x480 of the scene; single decodes each every time, lens loops a folder source."""
    images = folder / "pngs"
    images.mkdir()
    scene = SyntheticScene(640, 480, 1, SEED, DEFECT_RATE, PARTS)
    for n in range(FOLDER_IMAGES):
        if not cv2.imwrite(str(images / f"img_{n:03d}.png"), scene.frame(n)):
            raise RuntimeError(f"cannot write {images}")
    t = time.perf_counter()
    for path in sorted(images.glob("*.png")):
        cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    decode_ms = (time.perf_counter() - t) * 1e3 / FOLDER_IMAGES
    tools = yaml.safe_load((ROOT / "pipelines" / "demo.yaml").read_text())["inspection"]["tools"]
    cam = {
        "id": "cam0",
        "source": {"type": "folder", "path": str(images), "loop": True},
        "capture": {"format": "gray"},
        "trigger": {"type": "continuous", "interval_ms": 0},
        "ring": {"slots": SLOTS},
    }
    cfg = {"machine": {"id": "bench_e2e_folder"}, "cameras": [cam],
           "inspection": {"workers": WORKERS, "tools": tools},
           "outputs": {"zmq": _bus()}, "control": {"enabled": False}}  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {"single": [], "lens": []}
    for rep in range(p.folder_repeats):
        for contender in ("single", "lens") if rep % 2 == 0 else ("lens", "single"):
            _say(f"folder job {contender} (repeat {rep + 1}/{p.folder_repeats})")
            if contender == "single":
                runs["single"].append(run_single("folder", None, images, p.warm_s, p.window_s))
            else:
                runs["lens"].append(run_lens(cfg, folder, f"lens_folder_{rep}", p.warm_s, p.window_s))
    single, lens = _median_row(runs["single"]), _median_row(runs["lens"])
    return {"images": FOLDER_IMAGES, "size": "640x480 gray PNG", "png_decode_ms": decode_ms,
            "tools": [t["type"] for t in tools], "rows": [single, lens],
            "ratio": lens["per_s"] / single["per_s"]}  # fmt: skip


# -- soak ---------------------------------------------------------------------------------------------------


def _spans(series: list[float], times: list[float], start: float, span: float, end: float) -> dict[str, Any]:
    """Mean over [start, start + span) (first), over (end - span, end] (last), and the % change."""
    a, t = np.asarray(series, np.float64), np.asarray(times, np.float64)
    first, last = a[(t >= start) & (t < start + span)], a[(t > end - span) & (t <= end)]
    if first.size == 0 or last.size == 0 or first.mean() == 0:
        return {"first": float("nan"), "last": float("nan"), "growth_pct": float("nan")}
    f, lst = float(first.mean()), float(last.mean())
    return {"first": f, "last": lst, "growth_pct": 100 * (lst - f) / f}


class _Samples:
    """RSS and open fds of every process of a run, by name, each second."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.rss: list[float] = []
        self.fds: list[int] = []
        self.inspected: list[int] = []
        self.per: dict[str, dict[str, list[float]]] = {}

    def take(self, run: LensRun, t: float) -> None:
        assert run.proc is not None
        rss_sum = fds_sum = 0
        for p in run.tree.procs():
            try:
                name = "supervisor" if p.pid == run.proc.pid else p.name()
                rss, fds = p.memory_info().rss, p.num_fds()
            except psutil.Error:
                continue
            d = self.per.setdefault(name, {"t": [], "rss": [], "fds": []})
            d["t"].append(t)
            d["rss"].append(rss)
            d["fds"].append(fds)
            rss_sum, fds_sum = rss_sum + rss, fds_sum + fds
        self.t.append(t)
        self.rss.append(rss_sum)
        self.fds.append(fds_sum)
        self.inspected.append(run.counters()["inspected"])


def soak(seconds: float, folder: Path) -> dict[str, Any]:
    """pipelines/demo.yaml (its camera, tools, workers and control service) at full speed for `seconds`,
    its bus and control service on free ports; RSS and open fds of every process each second."""
    demo = yaml.safe_load((ROOT / "pipelines" / "demo.yaml").read_text())
    demo["outputs"]["zmq"] = _bus()
    demo["control"].update(port=free_port(), db=str(folder / "soak_control.db"))
    env = {demo["control"][k]: secrets.token_urlsafe(24) for k in ("api_key_env", "webhook_secret_env")}
    _say(f"soak, {seconds:g} s")
    s = _Samples()
    run = LensRun(demo, folder, "lens_soak", env)
    try:
        t0 = nxt = time.monotonic()
        while (now := time.monotonic()) < t0 + seconds:
            if now >= nxt:
                run.alive()
                s.take(run, now - t0)
                nxt += 1.0
            run.pump(min(nxt, t0 + seconds))
        exit_ = run.stop()
        checks = run.checks(exit_.pop("final"))
    finally:
        run.close()
    warm = min(30.0, 0.2 * seconds)
    span, end = min(60.0, (seconds - warm) / 3), s.t[-1]
    procs = {}
    for name, d in sorted(s.per.items()):
        rss, fds = _spans(d["rss"], d["t"], warm, span, end), _spans(d["fds"], d["t"], warm, span, end)
        procs[name] = {"rss_first_mb": rss["first"] / 2**20, "rss_last_mb": rss["last"] / 2**20,
                       "rss_growth_pct": rss["growth_pct"], "fds_first": fds["first"],
                       "fds_last": fds["last"]}  # fmt: skip
    total, fds = _spans(s.rss, s.t, warm, span, end), _spans(s.fds, s.t, warm, span, end)
    rate = (s.inspected[-1] - s.inspected[0]) / (s.t[-1] - s.t[0]) if len(s.t) > 1 else float("nan")
    series = {"t": [round(t, 2) for t in s.t], "total_rss_mb": [v / 2**20 for v in s.rss], "total_fds": s.fds,
              "rss_mb": {n: [v / 2**20 for v in d["rss"]] for n, d in s.per.items()},
              "t_by_process": {n: [round(t, 2) for t in d["t"]] for n, d in s.per.items()}}  # fmt: skip
    note = "the target is stated for a 10-minute soak" if seconds < 600 else ""
    return {"seconds": seconds, "warm_s": warm, "span_s": span, "inspected_per_s": rate,
            "rss_first_mb": total["first"] / 2**20, "rss_last_mb": total["last"] / 2**20,
            "rss_growth_pct": total["growth_pct"], "fds_first": fds["first"], "fds_last": fds["last"],
            "processes": procs, "exit": exit_, "checks": checks, "series": series, "note": note}  # fmt: skip


# -- run -------------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__, "pyzmq": zmq.__version__,
            "load_1m": os.getloadavg()[0]}  # fmt: skip


def _targets(result: dict[str, Any]) -> dict[str, Any]:
    """Each target of the issue this run measured: target, measured, target_met."""
    measured: dict[str, float] = {}
    big = next((q for q in result["ratios"] if q["size"] == "1920x1080 BGR"), None)
    if big is not None:
        measured["lens_over_single_1080p"] = big["lens_over_single"]
        measured["lens_over_queue_1080p"] = big["lens_over_queue"]
    small = next((q for q in result["ratios"] if q["size"] == "640x480 gray"), None)
    if small is not None:
        measured["lens_640_per_s"] = small["lens_per_s"]
    measured["p99_ms_at_100hz"] = result["rate"]["p99_ms"]
    measured["folder_ratio"] = result["folder"]["ratio"]
    if result["soak"] is not None:
        measured["soak_rss_growth_pct"] = result["soak"]["rss_growth_pct"]
    out = {}
    for name, value in measured.items():
        target, higher = TARGETS[name]
        out[name] = {
            "target": target,
            "measured": value,
            "target_met": bool(value >= target if higher else value < target),
        }
    return out


@contextmanager
def _tracker_restored() -> Iterator[None]:
    """spawn starts multiprocessing's resource tracker; it must not outlive run() if it was not running."""
    was_running = resource_tracker._resource_tracker._fd is not None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        gc.collect()  # queue semaphores unregister from the tracker when collected
        if not was_running:
            resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


def run(quick: bool = False, soak_s: float | None = None, out_dir: Path | None = None) -> dict[str, Any]:
    """Every part of the suite (the soak only with `soak_s`); charts written to `out_dir` (bench/out)."""
    from bench.charts import write_charts

    p = QUICK if quick else FULL
    params = {k: getattr(p, k) for k in ("repeats", "warm_s", "window_s", "rate_window_s", "folder_repeats")}
    result: dict[str, Any] = {"suite": "e2e", "machine": _machine(), "quick": quick, "workers": WORKERS,
                              "params": params}  # fmt: skip
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lens-bench-e2e-") as tmp, _tracker_restored():
        folder = Path(tmp)
        jobs = {size[0]: _job(size, folder) for size in p.sizes}
        rows = result["rows"] = _main_rows(p, jobs, folder)
        result["ratios"] = _ratios(rows)
        job640 = jobs["640x480 gray"]
        base = next(r for r in rows if r["size"] == job640.label and r["contender"] == "lens")
        result["rate"] = _rate(p, job640, folder)
        result["scaling"] = _scaling(p, job640, base, folder)
        result["sweep"] = _sweep(p, rows, folder)
        result["sweep_fit"] = _fit(result["sweep"])
        result["folder"] = _folder_job(p, folder)
        result["soak"] = soak(soak_s, folder) if soak_s else None
    result["targets"] = _targets(result)
    result["elapsed_s"] = time.monotonic() - started
    result["charts"] = write_charts(result, out_dir or OUT)
    return result


# -- table -----------------------------------------------------------------------------------------------


def _drops(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items() if v) or "0"


def _main_table(result: dict[str, Any]) -> list[str]:
    lines = [f"{'size':<15}{'contender':<10}{'insp/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'CPU %':>7}"
             f"{'RSS MB':>8}{'PSS MB':>8}  dropped; notes"]  # fmt: skip
    for r in result["rows"]:
        if r["contender"] == "lens":
            e = r["engine"]
            note = f"engine p50/p99 {e['p50_ms']:.2f}/{e['p99_ms']:.2f} ms; clean exit {r['clean_exit']}; "
        else:
            note = f"{r['opencv_variant']}; {r['opencv_threads']} cv thread(s); "
        note += f"this process {r['bench_cpu_pct']:.0f} % CPU"
        lines.append(f"{r['size']:<15}{r['contender']:<10}{r['per_s']:>8.0f}{r['p50_ms']:>9.2f}"
                     f"{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}{r['cpu_pct']:>7.0f}{r['peak_rss_mb']:>8.0f}"
                     f"{r['peak_pss_mb']:>8.0f}  {_drops(r['dropped'])}; {note}")  # fmt: skip
    lines += ["", f"{'size':<15}{'lens/single':>12}{'lens/queue':>12}"]
    lines += [
        f"{q['size']:<15}{q['lens_over_single']:>11.2f}x{q['lens_over_queue']:>11.2f}x"
        for q in result["ratios"]
    ]
    lines += ["", "lens: CPU % by process role; worker CPU us per inspection; tools' average us:"]
    for r in (r for r in result["rows"] if r["contender"] == "lens"):
        roles = ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_pct_by_role"].items() if v >= 0.5)
        tools = ", ".join(f"{k} {v:.0f}" for k, v in r["tool_avg_us"].items())
        lines.append(f"  {r['size']:<15}{roles}; worker {r['worker_cpu_us_per_inspection']:.0f} us; {tools}")
    rt = result["rate"]
    lines += ["", f"lens, {rt['size']}, {rt['trigger']}: {rt['per_s']:.1f} insp/s, latency p50 "
                  f"{rt['p50_ms']:.2f} / p99 {rt['p99_ms']:.2f} / max {rt['max_ms']:.2f} ms (engine p99 "
                  f"{rt['engine']['p99_ms']:.2f} ms), CPU {rt['cpu_pct']:.0f} %, dropped "
                  f"{_drops(rt['dropped'])}"]  # fmt: skip
    return lines


def _scaling_table(result: dict[str, Any]) -> list[str]:
    lines = ["", "scaling, lens at 640x480 gray:",
             f"{'axis':<9}{'n':>3}{'workers':>8}{'cameras':>8}{'insp/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'CPU %':>7}{'worker us':>10}  dropped"]  # fmt: skip
    for s in result["scaling"]:
        lines.append(f"{s['axis']:<9}{s['n']:>3}{s['workers']:>8}{s['cameras']:>8}{s['per_s']:>9.0f}"
                     f"{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['cpu_pct']:>7.0f}"
                     f"{s['worker_cpu_us_per_inspection']:>10.0f}  {_drops(s['dropped'])}")  # fmt: skip
    lines += ["", f"pixels per frame, lens ({result['workers']} workers, gray):",
              f"{'size':<16}{'MP':>6}{'insp/s':>9}{'MP/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'worker us/insp':>16}"
              f"{'worker us/MP':>14}"]  # fmt: skip
    for s in result["sweep"]:
        lines.append(f"{s['size']:<16}{s['mp']:>6.2f}{s['per_s']:>9.0f}{s['mp_per_s']:>8.0f}"
                     f"{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['worker_us_per_inspection']:>16.0f}"
                     f"{s['worker_us_per_mp']:>14.0f}")  # fmt: skip
    if (fit := result["sweep_fit"]) is not None:
        lines.append(f"worker CPU per inspection ~ {fit['fixed_us']:.0f} us a frame + "
                     f"{fit['us_per_mp']:.0f} us per MP (least squares over the sizes)")  # fmt: skip
    return lines


def _folder_soak_table(result: dict[str, Any]) -> list[str]:
    f = result["folder"]
    lines = ["", f"folder job: {f['images']} x {f['size']} ({f['png_decode_ms']:.2f} ms to decode one), "
                 f"{', '.join(f['tools'])}; lens/single {f['ratio']:.1f}x"]  # fmt: skip
    for r in f["rows"]:
        note = r.get("opencv_variant") or f"clean exit {r.get('clean_exit')}"
        lines.append(f"  {r['contender']:<9}{r['per_s']:>7.0f} insp/s, p50 {r['p50_ms']:.2f} / p99 "
                     f"{r['p99_ms']:.2f} ms, CPU {r['cpu_pct']:.0f} %, RSS {r['peak_rss_mb']:.0f} MB; "
                     f"{note}")  # fmt: skip
    s = result["soak"]
    if s is None:
        return [*lines, "", "soak: not run (lens bench e2e --soak SECONDS)"]
    lines += ["", f"soak: {s['seconds']:g} s of pipelines/demo.yaml at {s['inspected_per_s']:.0f} insp/s; "
                  f"RSS {s['rss_first_mb']:.1f} -> {s['rss_last_mb']:.1f} MB, {s['rss_growth_pct']:+.2f} % "
                  f"(mean of {s['span_s']:.0f} s after {s['warm_s']:.0f} s warm-up vs the last "
                  f"{s['span_s']:.0f} s); fds {s['fds_first']:.0f} -> {s['fds_last']:.0f}; "
                  f"clean exit {s['exit']['clean']}. {s['note']}"]  # fmt: skip
    for name, d in s["processes"].items():
        lines.append(f"  {name:<18}RSS {d['rss_first_mb']:7.1f} -> {d['rss_last_mb']:7.1f} MB "
                     f"({d['rss_growth_pct']:+.2f} %), fds {d['fds_first']:.0f} -> "
                     f"{d['fds_last']:.0f}")  # fmt: skip
    return lines


def table(result: dict[str, Any]) -> str:
    """Aligned plain-text rendering of `run()`'s result."""
    m, par = result["machine"], result["params"]
    lines = [f"e2e: {m['cpu']}, {m['cores']} cores, Python {m['python']}, OpenCV {m['opencv']}, numpy "
             f"{m['numpy']}; load at start {m['load_1m']:.2f}; medians of {par['repeats']} runs of "
             f"{par['warm_s']:g} s warm-up + {par['window_s']:g} s; {result['workers']} workers",
             "job: grayscale, threshold, blob, edge_detection, pattern_matching on the synthetic camera; "
             "latency = result received - captured_at; CPU % of all the contender's processes "
             "(100 = 1 core)"]  # fmt: skip
    lines += _main_table(result) + _scaling_table(result) + _folder_soak_table(result) + ["", "targets:"]
    for name, t in result["targets"].items():
        verdict = "met" if t["target_met"] else "NOT met"
        lines.append(f"  {name:<24}target {t['target']:g}, measured {t['measured']:.2f}: {verdict}")
    if result.get("charts"):
        lines += ["", "charts: " + ", ".join(result["charts"].values())]
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.runner import suite_main

    suite_main("e2e", __doc__ or "e2e", run, table, soak=True)
