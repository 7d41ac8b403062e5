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
)
CAM = {name: i for i, name in enumerate(CAMERA_FIELDS)}
# Run-wide. Writer: dispatcher, except `restarts` (supervisor).
RUN_FIELDS = (
    "results",  # result ids handed out (the next result_id is results + 1)
    "bus_sent",  # messages published on the results bus
    "bus_dropped",  # messages not delivered to an external subscriber at its high-water mark
    "restarts",  # child processes restarted after a crash   (supervisor)
    "worker_lost_jobs",  # jobs lost with a crashed worker, answered with an error result
    "sources_done",  # 1 once every (finite) source has ended and every frame is answered
)
RUN = {name: i for i, name in enumerate(RUN_FIELDS)}
MAX_CAMERAS = 16
_ROW = 16  # ints reserved per camera row


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
