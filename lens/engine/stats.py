"""Run counters in one shared-memory segment: written lock-free, read by anyone.

Every counter has exactly one writer process (the capture process of its camera, the dispatcher,
or the supervisor), so plain int64 increments are safe; readers (the status line, the control
service) read aligned int64s, which are never torn on 64-bit machines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lens.engine.shm import Segment

# Per camera. Writer: capture process (capture side) or dispatcher (inspection side).
CAMERA_FIELDS = (
    "captured",  # frames written into the ring               (capture)
    "source_errors",  # failed reads / reopen attempts        (capture)
    "dropped_ring_full",  # captured while every slot was pinned (capture)
    "resized",  # frames resized to the ring geometry          (capture)
    "inspected",  # results produced (pass, fail or error)    (dispatcher)
    "passed",  # (dispatcher)
    "failed",  # inspected and not passing, errors excluded    (dispatcher)
    "errors",  # error results                                 (dispatcher)
    "skipped_by_trigger",  # the trigger did not want it       (dispatcher)
    "dropped_busy",  # superseded while all workers were busy  (dispatcher)
    "overrun",  # overwritten before or while inspected        (dispatcher)
    "health",  # gauge: 0 starting, 1 online, 2 reconnecting, 3 ended, 4 offline (capture)
    "reconnects",  # times the source was reopened after a loss     (capture)
    "triggers",  # event triggers fired (manual, cron, serial)   (dispatcher)
    "trigger_noise",  # serial lines that were not a trigger        (serial trigger process)
    "superseded",  # live frames replaced by a newer one before capture took them (capture)
    "skipped_stopped",  # arrived (or triggered) while the run was stopped      (dispatcher)
)
HEALTH = ("starting", "online", "reconnecting", "ended", "offline")  # 0 until the capture opens its source
CAM = {name: i for i, name in enumerate(CAMERA_FIELDS)}
# Run-wide. Writer: dispatcher, except `restarts` (supervisor).
RUN_FIELDS = (
    "results",  # result ids handed out (the next result_id is results + 1)
    "bus_sent",  # messages published on the results bus
    "bus_dropped",  # messages not delivered to an external subscriber at its high-water mark
    "restarts",  # child processes restarted after a crash   (supervisor)
    "worker_lost_jobs",  # jobs lost with a crashed worker, answered with an error result
    "sources_done",  # 1 once every (finite) source has ended and every frame is answered
    "inspection_version",  # version of the inspection config in force (hot reload increments it)
    "state",  # gauge: 1 + index in STATES; 0 = not set yet (the dispatcher sets it at start)
    "mode",  # gauge: 1 + index in MODES; 0 = not set yet
    "images",  # gauge: 1 + index in envelope.IMAGE_POLICIES asked at run time (control); 0 = not set
)
STATES = ("stopped", "running", "maintenance")  # the engine's; `error` is derived by the control service
MODES = ("RUN", "TEST")
RUN = {name: i for i, name in enumerate(RUN_FIELDS)}
MAX_CAMERAS = 16
_ROW = 32  # ints reserved per camera row


class Stats:
    """Counters of one run. `Stats.create` (supervisor) or `Stats.attach` (children)."""

    SIZE = (1 + MAX_CAMERAS) * _ROW * 8

    def __init__(self, segment: Segment, cameras: list[str]) -> None:
        self.segment = segment
        self.cameras = cameras
        self._all = np.ndarray(((1 + MAX_CAMERAS), _ROW), np.int64, segment.buf, 0)
        self.run = self._all[0]

    @classmethod
    def create(cls, name: str, cameras: list[str]) -> Stats:
        if len(cameras) > MAX_CAMERAS:
            raise ValueError(f"at most {MAX_CAMERAS} cameras")
        return cls(Segment(name, cls.SIZE, create=True), cameras)

    @classmethod
    def attach(cls, name: str, cameras: list[str]) -> Stats:
        return cls(Segment(name), cameras)

    def camera(self, index: int) -> np.ndarray:
        """The counter row of camera `index` (index into CAMERA_FIELDS with CAM[name])."""
        return self._all[1 + index]

    def snapshot(self) -> dict[str, Any]:
        """A consistent-enough copy of every counter, by name."""
        data = self._all.copy()
        return {
            "run": {name: int(data[0, i]) for name, i in RUN.items()},
            "cameras": {
                cam: {name: int(data[1 + c, i]) for name, i in CAM.items()}
                for c, cam in enumerate(self.cameras)
            },
        }

    def close(self) -> None:
        del self.run, self._all
        self.segment.close()

    def unlink(self) -> None:
        self.segment.unlink()


MAX_TOOLS = 64
_NAME_BYTES = 64
TOOL_FIELDS = ("count", "sum_us", "min_us", "max_us")


class ToolStats:
    """Per-tool timing of the inspection config in force: count, sum, min, max of elapsed_us.
    Written only by the dispatcher (reset when the config changes), read by status."""

    SIZE = 16 + MAX_TOOLS * (len(TOOL_FIELDS) * 8 + _NAME_BYTES)

    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        self._head = np.ndarray((2,), np.int64, segment.buf, 0)  # version, number of tools
        self._rows = np.ndarray((MAX_TOOLS, len(TOOL_FIELDS)), np.float64, segment.buf, 16)
        self._names = np.ndarray((MAX_TOOLS, _NAME_BYTES), np.uint8, segment.buf, 16 + self._rows.nbytes)

    @classmethod
    def create(cls, name: str) -> ToolStats:
        return cls(Segment(name, cls.SIZE, create=True))

    @classmethod
    def attach(cls, name: str) -> ToolStats:
        return cls(Segment(name))

    def reset(self, version: int, names: list[str]) -> None:
        names = names[:MAX_TOOLS]
        self._head[1] = 0
        self._rows[:] = 0
        self._names[:] = 0
        for i, n in enumerate(names):
            raw = n.encode()[:_NAME_BYTES]
            self._names[i, : len(raw)] = np.frombuffer(raw, np.uint8)
        self._head[0] = version
        self._head[1] = len(names)

    def add(self, version: int, elapsed_us: list[float]) -> None:
        if version != self._head[0] or len(elapsed_us) != self._head[1]:
            return  # a result of the previous config, still in flight at a reload
        rows = self._rows
        for i, us in enumerate(elapsed_us):
            row = rows[i]
            if row[0] == 0 or us < row[2]:
                row[2] = us
            if us > row[3]:
                row[3] = us
            row[1] += us
            row[0] += 1

    def snapshot(self) -> dict[str, Any]:
        n = int(self._head[1])
        rows = self._rows[:n].copy()
        out: dict[str, Any] = {}
        for i in range(n):
            name = bytes(self._names[i]).rstrip(b"\0").decode()
            count = int(rows[i, 0])
            out[name] = {"count": count, "min_us": round(float(rows[i, 2]), 1),
                         "avg_us": round(float(rows[i, 1]) / count, 1) if count else 0.0,
                         "max_us": round(float(rows[i, 3]), 1)}  # fmt: skip
        return {"version": int(self._head[0]), "tools": out}

    def close(self) -> None:
        del self._head, self._rows, self._names
        self.segment.close()
