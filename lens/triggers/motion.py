"""Motion trigger: fires when enough of the picture changed since the previous frame.

The dispatcher runs it on each announced frame, reading the ring slot in place: the frame is
downscaled by `downscale` (block means) and compared with the previous one (numba `motion_area`,
one pass); a frame fires when the changed area reaches `min_area` pixels and `cooldown_ms` has
passed since the last firing. Frames that do not fire are `skipped_by_trigger`.
"""

from __future__ import annotations

import cv2
import numpy as np

from lens.config.models import MotionTrigger
from native_tools import motion_area, motion_state


class MotionDetector:
    def __init__(self, cfg: MotionTrigger) -> None:
        self.cfg = cfg
        self.prev: np.ndarray | None = None
        self.gray: np.ndarray | None = None
        self.last_fire = float("-inf")

    def area(self, frame: np.ndarray) -> int | None:
        """Changed area against the previous frame, in pixels; None for the first frame (no reference)."""
        if frame.ndim == 3:
            if self.gray is None or self.gray.shape != frame.shape[:2]:
                self.gray = np.empty(frame.shape[:2], np.uint8)
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self.gray)
        f = self.cfg.downscale
        first = self.prev is None or self.prev.shape != (frame.shape[0] // f, frame.shape[1] // f)
        if first:
            self.prev = motion_state(frame.shape, f)
        assert self.prev is not None
        area = motion_area(frame, self.prev, f, self.cfg.threshold)
        return None if first else area

    def fires(self, area: int | None, at: float) -> bool:
        if area is None or area < self.cfg.min_area:
            return False
        if (at - self.last_fire) * 1000.0 < self.cfg.cooldown_ms:
            return False
        self.last_fire = at
        return True
