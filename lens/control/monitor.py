"""Host telemetry (SPEC §5): CPU, memory, disk, temperature, and CPU/RSS of each lens process.

`HostMonitor.sample()` runs on a timer in the control service. It reads psutil directly and costs
about a millisecond with ten processes; nothing in it sleeps. Samples are kept in a bounded
history, paged by id like the result history.

CPU percentages are rates, so they need two readings: the system figure is computed from
`psutil.cpu_times()` deltas kept by this monitor (not from `psutil.cpu_percent`, whose baseline
is shared by every caller in the process), and each process keeps one cached `psutil.Process` per
pid. The first sample, and the first sample after a process (re)starts with a new pid, report
`None` for those rates. A process CPU percentage is relative to one core, as in `top`: a process
busy on two cores reports 200.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import time
from collections import deque
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import psutil

log = logging.getLogger(__name__)

MIB = 1 << 20
GIB = 1 << 30
HISTORY_LIMIT = 1000  # most samples one `history()` call returns


class _Counter(NamedTuple):
    value: int
    at: float


def _cpu_total(t: Any) -> float:
    # On Linux guest time is already counted in user/nice; do not count it twice.
    return sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _cpu_busy_pct(before: Any, after: Any) -> float | None:
    """System CPU busy percentage between two `psutil.cpu_times()` readings (iowait counts as idle)."""
    total = _cpu_total(after) - _cpu_total(before)
    if total <= 0:
        return None
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0))
    return round(100.0 * min(1.0, max(0.0, (total - idle) / total)), 1)


def _hottest(readings: Mapping[str, list[Any]]) -> float | None:
    """The highest finite `current` reading of `psutil.sensors_temperatures()`, or None without any."""
    values = [
        float(r.current)
        for entries in readings.values()
        for r in entries
        if isinstance(r.current, int | float) and math.isfinite(r.current)
    ]
    return round(max(values), 1) if values else None


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing ancestor (a data folder not created yet lives on that disk)."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return path


def _as_int(value: object) -> int | None:
    """`value` as an int if it is an integer (numpy ones included) and not a bool, else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _check_pid(name: str, pid: object) -> int | None:
    if pid is None:
        return None
    n = _as_int(pid)
    if n is None or n <= 0:
        raise ValueError(f"processes[{name!r}]: pid must be a positive int or None, got {pid!r}")
    return n


def _check_count(cam: str, captured: object) -> int:
    n = _as_int(captured)
    if n is None or n < 0:
        raise ValueError(f"cameras[{cam!r}]: captured must be a non-negative int, got {captured!r}")
    return n


def _reading(pid: int | None) -> dict[str, Any]:
    """A process reading with nothing known: not running (or not readable) yet."""
    return {"pid": pid, "cpu_pct": None, "rss_mb": None, "threads": None, "alive": False}


class HostMonitor:
    """Samples the host and the lens processes; keeps the last `keep` samples.

    `sample()` may run in a worker thread while `latest()` / `history()` are read from another.
    """

    def __init__(self, disk_path: str, keep: int) -> None:
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"keep: must be a positive int (samples kept), got {keep!r}")
        if not disk_path:
            raise ValueError("disk_path: must name a file or folder on the disk to watch")
        self.disk_path = str(disk_path)
        self.keep = keep
        self._samples: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()  # guards the history
        self._sampling = threading.Lock()  # one sample at a time (baselines are per monitor)
        self._next_id = 1
        self._cpu_times: Any = None
        self._procs: dict[int, psutil.Process] = {}
        self._dead: set[int] = set()  # pids seen gone while still listed
        self._counters: dict[str, _Counter] = {}
        self._errors: dict[str, int] = {"cpu": 0, "memory": 0, "disk": 0, "temperature": 0, "process": 0}
        self._last_error: str | None = None
        self._cost_ms = 0.0
        self._max_cost_ms = 0.0
        self._has_sensors = hasattr(psutil, "sensors_temperatures")
        self._cpu_count = psutil.cpu_count() or 1

    # -- sampling --------------------------------------------------------------------------------

    def sample(
        self, processes: Mapping[str, int | None], cameras: Mapping[str, int], now: float | None = None
    ) -> dict[str, Any]:
        """Take one sample, keep it in the history and return it.

        `processes` maps lens process names to pids (None: not running); `cameras` maps camera ids
        to their cumulative `captured` counter. `now` (epoch seconds) defaults to the clock.
        Raises ValueError only for a malformed argument (a pid or counter that is not a proper int);
        a process that died or cannot be read, or a missing disk or sensor, is reported, not raised.
        """
        pids = {name: _check_pid(name, pid) for name, pid in processes.items()}
        counts = {cam: _check_count(cam, n) for cam, n in cameras.items()}
        with self._sampling:
            return self._sample(pids, counts, now)

    def _sample(
        self, pids: Mapping[str, int | None], counts: Mapping[str, int], now: float | None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        at = time.time() if now is None else float(now)
        snap: dict[str, Any] = {
            "id": 0,  # numbered when kept, below
            "at": at,
            "cpu_pct": self._cpu(),
            "cpu_count": self._cpu_count,
            "load_1m": round(psutil.getloadavg()[0], 2),
            "memory": self._memory(),
            "disk": self._disk(),
            "temperature_c": self._temperature(),
            "processes": self._processes(pids),
            "cameras": self._fps(counts, at),
        }
        with self._lock:
            snap["id"] = self._next_id
            self._next_id += 1
            self._samples.append(snap)
            self._cost_ms = (time.perf_counter() - started) * 1000.0
            self._max_cost_ms = max(self._max_cost_ms, self._cost_ms)
        return snap

    def _error(self, kind: str, message: str) -> None:
        self._errors[kind] += 1
        self._last_error = f"{kind}: {message}"
        # warn once per kind, then quietly: a sensor that is broken stays broken every 5 s
        (log.warning if self._errors[kind] == 1 else log.debug)("host monitor: %s: %s", kind, message)

    def _cpu(self) -> float | None:
        try:
            now = psutil.cpu_times()
        except (OSError, psutil.Error) as e:
            self._error("cpu", f"cpu_times failed: {e}")
            return None
        before, self._cpu_times = self._cpu_times, now
        return None if before is None else _cpu_busy_pct(before, now)

    def _memory(self) -> dict[str, Any] | None:
        try:
            vm = psutil.virtual_memory()
        except (OSError, psutil.Error) as e:
            self._error("memory", f"virtual_memory failed: {e}")
            return None
        used = vm.total - vm.available
        return {
            "total_mb": round(vm.total / MIB, 1),
            "used_mb": round(used / MIB, 1),
            "pct": round(100.0 * used / vm.total, 1) if vm.total else None,
        }

    def _disk(self) -> dict[str, Any] | None:
        try:
            du = psutil.disk_usage(str(_existing(Path(self.disk_path))))
        except (OSError, psutil.Error) as e:
            self._error("disk", f"disk_usage({self.disk_path!r}) failed: {e}")
            return None
        return {
            "path": self.disk_path,
            "total_gb": round(du.total / GIB, 2),
            "used_gb": round(du.used / GIB, 2),
            "pct": round(du.percent, 1),
        }

    def _temperature(self) -> float | None:
        if not self._has_sensors:
            return None
        try:
            return _hottest(psutil.sensors_temperatures())
        except (OSError, psutil.Error, AttributeError, ValueError) as e:
            self._error("temperature", f"sensors_temperatures failed: {e}")
            return None

    def _processes(self, pids: Mapping[str, int | None]) -> dict[str, dict[str, Any]]:
        wanted = {pid for pid in pids.values() if pid is not None}
        for pid in set(self._procs) - wanted:
            del self._procs[pid]  # no longer ours: forget its baseline
        self._dead &= wanted
        readings = {pid: self._process(pid) for pid in wanted}  # one reading per pid, even if shared
        return {name: _reading(pid) if pid is None else dict(readings[pid]) for name, pid in pids.items()}

    def _process(self, pid: int) -> dict[str, Any]:
        out = _reading(pid)
        if pid in self._dead:
            return out  # seen gone: a later process that reuses the pid is not this one
        proc = self._procs.get(pid)
        first = proc is None
        try:
            if proc is None:
                proc = psutil.Process(pid)
                self._procs[pid] = proc
            elif not proc.is_running():  # gone, or its pid now belongs to another process
                raise psutil.NoSuchProcess(pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.NoSuchProcess(pid)  # exited, not reaped yet by its parent
                cpu = proc.cpu_percent(interval=None)
                rss = proc.memory_info().rss
                threads = proc.num_threads()
        except psutil.NoSuchProcess:
            self._procs.pop(pid, None)
            self._dead.add(pid)
            return out
        except psutil.AccessDenied as e:
            self._procs.pop(pid, None)  # its CPU baseline may be unset: start over next time
            out["alive"] = True
            self._error("process", f"pid {pid}: access denied ({e.msg or 'no detail'})")
            return out
        except OSError as e:
            self._error("process", f"pid {pid}: {e}")
            return out
        out.update(
            cpu_pct=None if first else round(cpu, 1), rss_mb=round(rss / MIB, 1), threads=threads, alive=True
        )
        return out

    def _fps(self, counts: Mapping[str, int], at: float) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for cam, value in counts.items():
            prev = self._counters.get(cam)
            fps = None
            # a counter that went back (the run restarted) or a clock that did not advance: no rate
            if prev is not None and at > prev.at and value >= prev.value:
                fps = round((value - prev.value) / (at - prev.at), 2)
            self._counters[cam] = _Counter(value, at)
            out[cam] = {"fps": fps}
        for cam in set(self._counters) - set(counts):
            del self._counters[cam]
        return out

    # -- reading ---------------------------------------------------------------------------------

    def latest(self) -> dict[str, Any] | None:
        """The newest sample, or None before the first. Samples are shared: do not mutate them."""
        with self._lock:
            return self._samples[-1] if self._samples else None

    def history(self, since: int = 0, limit: int = 100) -> dict[str, Any]:
        """Samples with id > `since`, oldest first, at most `limit` (clamped to 1..1000).

        `next_since` is the last id returned (or `since` when none); `more` tells whether newer
        samples remain. A `since` older than the oldest kept sample starts at the oldest.
        """
        limit = max(1, min(HISTORY_LIMIT, int(limit)))
        since = int(since)
        with self._lock:
            if not self._samples:
                return {"samples": [], "next_since": since, "more": False}
            first = self._samples[0]["id"]  # ids in the deque are consecutive
            start = max(0, since - first + 1)
            stop = min(len(self._samples), start + limit)
            page = list(islice(self._samples, start, stop))
            more = stop < len(self._samples)
        return {"samples": page, "next_since": page[-1]["id"] if page else since, "more": more}

    def stats(self) -> dict[str, Any]:
        """Health of the monitor itself: samples taken and kept, read errors by kind, sample cost."""
        with self._lock:
            return {
                "samples": self._next_id - 1,
                "kept": len(self._samples),
                "errors": dict(self._errors),
                "last_error": self._last_error,
                "last_sample_ms": round(self._cost_ms, 3),
                "max_sample_ms": round(self._max_cost_ms, 3),
            }
