"""`morphology`: open, close, erode or dilate the ROI (usually after `threshold`), for the tools after
it. OpenCV's morphology is already optimal (van Herk for rectangles). value = nonzero pixels after."""

from __future__ import annotations

import cv2

from lens.config.tools import MorphologyTool
from lens.inspect.tools.base import Canvas, Measurement, Tool

_SHAPES = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}
_OPS = {
    "open": cv2.MORPH_OPEN,
    "close": cv2.MORPH_CLOSE,
    "erode": cv2.MORPH_ERODE,
    "dilate": cv2.MORPH_DILATE,
}


class Morphology(Tool):
    cfg: MorphologyTool

    def __init__(self, cfg: MorphologyTool) -> None:
        super().__init__(cfg)
        k = cfg.params.ksize
        self.kernel = cv2.getStructuringElement(_SHAPES[cfg.params.shape], (k, k))
        self.op = _OPS[cfg.method]

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        region = self.region(canvas)
        it = self.cfg.params.iterations
        out = canvas.filter_roi(region, lambda s, d: cv2.morphologyEx(s, self.op, self.kernel, dst=d,
                                                                         iterations=it))  # fmt: skip
        inside = out if region.mask is None else cv2.bitwise_and(out, region.mask)
        count = cv2.countNonZero(inside)
        return Measurement(count, {"count": count})
