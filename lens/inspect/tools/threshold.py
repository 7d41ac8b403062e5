"""`threshold`: binarises the ROI (255 foreground, 0 background) for the tools after it, and counts
the foreground in the same pass (numba `band_threshold`: one pass instead of inRange + countNonZero).

binary: v >= th_min; range: th_min <= v <= th_max; otsu: v > Otsu's level of the ROI. `invert`
swaps foreground and background. value = foreground pixels; ratio = value / ROI pixels.
"""

from __future__ import annotations

import numpy as np

from lens.config.tools import ThresholdTool
from lens.inspect.tools.base import Canvas, Measurement, Tool
from native_tools import band_threshold, otsu_level


class Threshold(Tool):
    cfg: ThresholdTool

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        p = self.cfg.params
        region = self.region(canvas)
        level = -1
        if self.cfg.method == "binary":
            lo, hi = p.th_min, 255
        elif self.cfg.method == "range":
            lo, hi = p.th_min, p.th_max
        else:
            level = otsu_level(region.of(canvas.gray()), region.mask)
            lo, hi = level + 1, 255
        counted = [0]

        def apply(src: np.ndarray, dst: np.ndarray) -> None:
            if lo > hi:  # Otsu's level 255: nothing is above it
                dst[...] = 0
                counted[0] = 0
            else:
                counted[0] = band_threshold(src, lo, hi, dst, region.mask)
            if p.invert:
                np.bitwise_not(dst, out=dst)
                counted[0] = region.pixels - counted[0]

        canvas.filter_roi(region, apply)
        count = counted[0]
        return Measurement(count, {"count": count, "ratio": count / region.pixels, "level": level})
