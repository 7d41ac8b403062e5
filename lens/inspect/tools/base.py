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
    otherwise a worker-local scratch buffer, allocated once per frame shape. Filters write their
    ROI of that buffer in place (`filter_roi`), so the tools after them see the result.
    """

    def __init__(self) -> None:
        self.frame: np.ndarray = np.zeros((1, 1), np.uint8)
        self.shift: tuple[int, int] = (0, 0)  # set by a caliper with shift_rois, for later tools
        self._scratch: np.ndarray | None = None
        self._tmp: np.ndarray | None = None
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

    def _buffer(self, name: str) -> np.ndarray:
        shape = self.frame.shape[:2]
        buf = getattr(self, name)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, np.uint8)
            setattr(self, name, buf)
        return buf

    def gray(self) -> np.ndarray:
        if self._gray is None:  # BGR frame: luminance (BT.601) once per frame, into scratch
            self._gray = cv2.cvtColor(self.frame, cv2.COLOR_BGR2GRAY, dst=self._buffer("_scratch"))
        return self._gray

    def writable_gray(self) -> np.ndarray:
        """The gray image as a buffer filters may write (copies the frame once if it is the frame)."""
        gray = self.gray()
        if gray is self.frame:
            scratch = self._buffer("_scratch")
            np.copyto(scratch, gray)
            self._gray = gray = scratch
        return gray

    def image(self) -> np.ndarray:
        """The current working image: the frame (gray or BGR) until a filter ran, then the gray one."""
        return self.gray() if (self.filtered or self.frame.ndim == 2) else self.frame

    def filter_roi(self, region: Region, fn: Callable[[np.ndarray, np.ndarray], object]) -> np.ndarray:
        """Apply `fn(src, dst)` to the region of the gray image, in place; with a mask only the pixels
        inside the ROI change. Returns the filtered region (a view)."""
        gray = self.writable_gray()
        view = region.of(gray)
        if region.mask is None:
            fn(view, view)
        else:
            tmp = region.of(self._buffer("_tmp"))
            fn(view, tmp)
            cv2.copyTo(tmp, region.mask, view)
        self.filtered = True
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
