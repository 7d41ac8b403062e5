"""`grayscale`: converts the ROI to gray for the tools after it and measures it (seed 001's
luminance check): value = mean, plus min, max, std.

Methods (for BGR frames; a gray frame is already gray): `luminance` = ITU-R BT.601 (OpenCV's
BGR2GRAY), `weighted` = ITU-R BT.709, `average` = (B + G + R) / 3. `params.normalize` equalises
the ROI's histogram for later tools (the measures are taken before it).
"""

from __future__ import annotations

import cv2
import numpy as np

from lens.config.models import GrayscaleTool
from lens.inspect.tools.base import Canvas, Measurement, Tool
from native_tools import roi_stats

_BT709 = np.array([0.0722, 0.7152, 0.2126], np.float32)  # B, G, R
_AVERAGE = np.array([1 / 3, 1 / 3, 1 / 3], np.float32)


class Grayscale(Tool):
    cfg: GrayscaleTool

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        x0, y0, x1, y1 = self.roi.rect(canvas.height, canvas.width)
        if canvas.frame.ndim == 3 and self.cfg.method != "luminance":
            weights = _BT709 if self.cfg.method == "weighted" else _AVERAGE
            gray = canvas.writable_gray()
            roi_bgr = canvas.frame[y0:y1, x0:x1]
            mixed = cv2.transform(roi_bgr, weights.reshape(1, 3))
            gray[y0:y1, x0:x1] = mixed.reshape(y1 - y0, x1 - x0)
        else:
            gray = canvas.gray()
        view = gray[y0:y1, x0:x1]
        mean, lo, hi, std = roi_stats(view)
        if self.cfg.params.normalize:
            gray = canvas.writable_gray()
            gray[y0:y1, x0:x1] = cv2.equalizeHist(np.ascontiguousarray(gray[y0:y1, x0:x1]))
        return Measurement(mean, {"mean": mean, "min": lo, "max": hi, "std": std})
