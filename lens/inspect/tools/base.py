"""What a tool is, and the canvas the chain works on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from lens.config.models import ToolBase


class ToolError(RuntimeError):
    """A tool could not run on this frame; the message names the tool and the reason."""


@dataclass
class Measurement:
    value: float
    measures: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. blobs, detections
    passed: bool | None = None  # a tool's own verdict when it has no pass_fail (math tests)


class Canvas:
    """The image a chain works on for one frame.

    The frame itself is a read-only view of the ring slot and is never written. `gray()` returns the
    current 2-D gray image: the frame itself when it is gray and nothing has filtered it (no copy),
    otherwise a worker-local scratch buffer allocated once per frame shape.
    """

    def __init__(self) -> None:
        self.frame: np.ndarray = np.zeros((1, 1), np.uint8)
        self._scratch: np.ndarray | None = None
        self._gray: np.ndarray | None = None

    def reset(self, frame: np.ndarray) -> None:
        self.frame = frame
        self._gray = frame if frame.ndim == 2 else None

    @property
    def height(self) -> int:
        return int(self.frame.shape[0])

    @property
    def width(self) -> int:
        return int(self.frame.shape[1])

    def _scratch_for(self) -> np.ndarray:
        shape = self.frame.shape[:2]
        if self._scratch is None or self._scratch.shape != shape:
            self._scratch = np.empty(shape, np.uint8)
        return self._scratch

    def gray(self) -> np.ndarray:
        if self._gray is None:  # BGR frame: luminance once per frame, into scratch
            self._gray = cv2.cvtColor(self.frame, cv2.COLOR_BGR2GRAY, dst=self._scratch_for())
        return self._gray

    def writable_gray(self) -> np.ndarray:
        """The gray image as a buffer filters may write (copies the frame once if it is the frame)."""
        gray = self.gray()
        if gray is self.frame:
            scratch = self._scratch_for()
            np.copyto(scratch, gray)
            self._gray = gray = scratch
        return gray


class Roi:
    """A rectangle resolved against a frame size and clipped to it."""

    def __init__(self, cfg: ToolBase) -> None:
        self.cfg = cfg.roi
        self.tool = cfg.name
        self._cache: tuple[tuple[int, int], tuple[int, int, int, int]] | None = None

    def rect(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) within the frame; ToolError if the ROI lies wholly outside it."""
        if self._cache is not None and self._cache[0] == (height, width):
            return self._cache[1]
        r = self.cfg
        x1 = width if r.w is None else r.x + r.w
        y1 = height if r.h is None else r.y + r.h
        x0, y0, x1, y1 = max(0, r.x), max(0, r.y), min(width, x1), min(height, y1)
        if x1 <= x0 or y1 <= y0:
            raise ToolError(
                f"tool '{self.tool}': roi {{x: {r.x}, y: {r.y}, w: {r.w}, h: {r.h}}} lies outside "
                f"the {width}x{height} frame"
            )
        self._cache = ((height, width), (x0, y0, x1, y1))
        return x0, y0, x1, y1


class Tool(ABC):
    """One configured tool. `measure` runs it on the canvas; the chain judges pass/fail and times it."""

    def __init__(self, cfg: ToolBase) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.type: str = getattr(cfg, "type", "")
        self.method: str | None = getattr(cfg, "method", None)
        self.roi = Roi(cfg)

    @abstractmethod
    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement: ...

    def judge(self, m: Measurement) -> bool:
        pf = self.cfg.pass_fail
        if pf is None:
            return True if m.passed is None else m.passed
        ok = pf.check(m.value)
        for key, limits in pf.measures.items():
            ok = ok and limits.check(m.value if key == "value" else m.measures[key])
        return ok
