"""`blur`: Gaussian or median smoothing of the ROI, for the tools after it (OpenCV: already optimal,
SIMD and separable). value = mean of the smoothed ROI."""

from __future__ import annotations

import cv2

from lens.config.tools import BlurTool
from lens.inspect.tools.base import Canvas, Measurement, Tool
from native_tools import roi_stats


class Blur(Tool):
    cfg: BlurTool

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        region = self.region(canvas)
        k, sigma = self.cfg.params.ksize, self.cfg.params.sigma
        if self.cfg.method == "gaussian":
            out = canvas.filter_roi(region, lambda s, d: cv2.GaussianBlur(s, (k, k), sigma, dst=d))
        else:
            out = canvas.filter_roi(region, lambda s, d: cv2.medianBlur(s, k, dst=d))
        mean = roi_stats(out, region.mask)[0]
        return Measurement(mean, {"mean": mean})
