"""`pattern_matching`: normalised cross-correlation (TM_CCOEFF_NORMED) of a template over the ROI.
OpenCV's matchTemplate (FFT/SIMD) is ~10x faster than a numba NCC, so it stays on OpenCV; keep the
search ROI tight. value = best score; x, y = top-left of the best match and cx, cy its centre, in
frame coordinates. Passes when score >= min_score (and any pass_fail limits). A circle or ellipse
ROI searches its bounding box."""

from __future__ import annotations

import math

import cv2
import numpy as np

from lens.config.tools import PatternTool
from lens.inspect.template import load_template
from lens.inspect.tools.base import Canvas, Measurement, Tool, ToolError


class PatternMatching(Tool):
    cfg: PatternTool

    def __init__(self, cfg: PatternTool) -> None:
        super().__init__(cfg)
        self.template = load_template(cfg.params.template, cfg.params.region)
        self._result: np.ndarray | None = None

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        region = self.region(canvas)
        search = region.of(canvas.gray())
        th, tw = self.template.shape
        sh, sw = search.shape
        if th > sh or tw > sw:
            raise ToolError(f"tool '{self.name}': the {tw}x{th} template is larger than the {sw}x{sh} "
                            "search region")  # fmt: skip
        shape = (sh - th + 1, sw - tw + 1)
        if self._result is None or self._result.shape != shape:
            self._result = np.empty(shape, np.float32)
        cv2.matchTemplate(search, self.template, cv2.TM_CCOEFF_NORMED, result=self._result)
        _, score, _, (lx, ly) = cv2.minMaxLoc(self._result)
        if not math.isfinite(score):  # a flat search region has no correlation
            score = 0.0
        x, y = region.x0 + lx, region.y0 + ly
        score = round(float(score), 6)
        measures = {"score": score, "x": x, "y": y, "cx": x + (tw - 1) / 2, "cy": y + (th - 1) / 2}
        return Measurement(score, measures, passed=score >= self.cfg.params.min_score)
