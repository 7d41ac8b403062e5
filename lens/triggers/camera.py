"""The dispatcher's view of one camera: its ring, its pacing, its trigger's state."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lens.config.models import CameraConfig
from lens.engine.ring import Ring
from lens.triggers.events import EventTriggers, Frame

Pending = Frame  # a frame announced by a capture, waiting for a worker
EVENT_TRIGGERS = ("manual", "cron", "serial")


@dataclass
class CameraState:
    index: int
    config: CameraConfig
    row: object  # the camera's counter row (numpy int64 view)
    identity: bytes = b""
    ring: Ring | None = None
    paced: bool = False
    window: int = 1  # paced: frames the capture may produce ahead
    granted: int = 0  # paced: credits given and not yet turned into frames
    owed: int = 0  # paced, continuous: frames dealt with whose credit is not sent yet (sent in batches)
    pending: deque[Pending] = field(default_factory=deque)
    last_accept: float = 0.0
    eos: bool = False
    events: EventTriggers | None = None  # manual, cron, serial: one result per trigger
    cron: Any = None  # croniter of a cron trigger
    next_fire: float = float("inf")  # epoch s of the next cron tick
    motion: Any = None  # MotionDetector of a motion trigger
    pace_s: float = 0.0  # TEST mode: least time between two inspections (1 / control.test_rate_hz)
    image_due: float = 0.0  # monotonic time the next periodic JPEG sample is due

    @property
    def interval_s(self) -> float:
        """Least time between two inspections: the trigger's interval, or TEST mode's pace if longer."""
        return max(getattr(self.config.trigger, "interval_ms", 0.0) / 1000.0, self.pace_s)
