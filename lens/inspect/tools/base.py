"""What a tool is, and the canvas the chain works on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from lens.config.tools import ToolBase
from lens.inspect.roi import Region, Roi, RoiOutside


class ToolError(RuntimeError):
    """A tool could not run on this frame; the message names the tool and the reason."""


@dataclass
class Measurement:
    value: float | None
    measures: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. blobs, detections
    passed: bool | None = None  # the tool's own verdict: False always fails; True/None defer to pass_fail


class Canvas:
    """The image a chain works on for one frame.

    The frame itself is a read-only view of the ring slot and is never written. `gray()` is the
    current 2-D gray image: the frame itself while it is gray and no filter has run (no copy),
    otherwise one of two worker-local scratch buffers, allocated once per frame shape. A filter
    over the whole frame reads the current image and writes the other buffer (ping-pong: no copy,
    no in-place aliasing); a filter over part of the frame works in place on a writable copy, and
    with a circle/ellipse mask changes only the pixels inside the shape.
    """

    def __init__(self) -> None:
        self.frame: np.ndarray = np.zeros((1, 1), np.uint8)
        self.shift: tuple[int, int] = (0, 0)  # set by a caliper with shift_rois, for later tools
        self._bufs: list[np.ndarray] = []  # two ping-pong scratch images
        self._masked: np.ndarray | None = None  # temporary of masked filters
        self._gray: np.ndarray | None = None
        self.filtered = False

    def reset(self, frame: np.ndarray) -> None:
        self.frame = frame
        self._gray = frame if frame.ndim == 2 else None
        self.shift = (0, 0)
        self.filtered = False

    @property
    def height(self) -> int:
        return int(self.frame.shape[0])

    @property
    def width(self) -> int:
        return int(self.frame.shape[1])

    def _spare(self) -> np.ndarray:
        """A scratch buffer that is not the current gray image."""
        shape = self.frame.shape[:2]
        if not self._bufs or self._bufs[0].shape != shape:
            self._bufs = [np.empty(shape, np.uint8), np.empty(shape, np.uint8)]
            self._masked = np.empty(shape, np.uint8)
        return self._bufs[1] if self._gray is self._bufs[0] else self._bufs[0]

    def gray(self) -> np.ndarray:
        if self._gray is None:  # BGR frame: luminance (BT.601) once per frame, into scratch
            self._gray = cv2.cvtColor(self.frame, cv2.COLOR_BGR2GRAY, dst=self._spare())
        return self._gray

    def writable_gray(self) -> np.ndarray:
        """The gray image as a buffer filters may write (copies the frame once if it is the frame)."""
        gray = self.gray()
        if gray is self.frame:
            scratch = self._spare()
            np.copyto(scratch, gray)
            self._gray = gray = scratch
        return gray

    def image(self) -> np.ndarray:
        """The current working image: the frame (gray or BGR) until a filter ran, then the gray one."""
        return self.gray() if (self.filtered or self.frame.ndim == 2) else self.frame

    def filter_roi(self, region: Region, fn: Callable[[np.ndarray, np.ndarray], object]) -> np.ndarray:
        """Apply `fn(src, dst)` to the region of the gray image; with a mask only the pixels inside the
        ROI change. Returns the filtered region (a view of the new current image)."""
        self.filtered = True
        whole = region.mask is None and region.x0 == 0 and region.y0 == 0 and (
            region.x1 == self.width and region.y1 == self.height)  # fmt: skip
        if whole:
            src = self.gray()
            dst = self._spare()
            fn(src, dst)
            self._gray = dst
            return dst
        gray = self.writable_gray()
        view = region.of(gray)
        if region.mask is None:
            fn(view, view)
        else:
            assert self._masked is not None
            tmp = region.of(self._masked)
            fn(view, tmp)
            cv2.copyTo(tmp, region.mask, view)
        return view


class Tool(ABC):
    """One configured tool. `measure` runs it on the canvas; the chain judges pass/fail and times it."""

    def __init__(self, cfg: ToolBase) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.type: str = getattr(cfg, "type", "")
        self.method: str | None = getattr(cfg, "method", None)
        self.roi = Roi(cfg.roi, cfg.name)

    def region(self, canvas: Canvas) -> Region:
        try:
            return self.roi.resolve(canvas.height, canvas.width, canvas.shift)
        except RoiOutside as e:
            raise ToolError(str(e)) from None

    @abstractmethod
    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement: ...

    def judge(self, m: Measurement) -> bool:
        if m.passed is False:
            return False
        pf = self.cfg.pass_fail
        if pf is None:
            return True
        if m.value is None:
            return False
        ok = pf.check(m.value)
        for key, limits in pf.measures.items():
            v = m.value if key == "value" else m.measures.get(key)
            ok = ok and v is not None and limits.check(v)
        return ok
