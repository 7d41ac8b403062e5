"""`pattern_matching`: normalised cross-correlation (TM_CCOEFF_NORMED) of a template over the ROI.
OpenCV's matchTemplate (FFT/SIMD) is ~10x faster than a numba NCC, so it stays on OpenCV; keep the
search ROI tight. value = best score; x, y = top-left of the best match and cx, cy its centre, in
frame coordinates. Passes when score >= min_score (and any pass_fail limits). A circle or ellipse
ROI searches its bounding box.

`pyramid: auto` (default) searches coarse-to-fine when the template is at least 24 px a side and
the search area leaves room: the whole ROI at half resolution (1/16 of the work, OpenCV), then full
resolution within +-3 px of the coarse peak (7x7 positions, exact integer sums in numba: ~4x
cheaper there than OpenCV's DFT set-up). The score and position are those of the full resolution
correlation at the refined peak. `pyramid: off` searches every position at full
resolution (exhaustive: the global maximum even for templates whose half-resolution image is
ambiguous, e.g. fine periodic textures)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from lens.config.tools import PatternTool
from lens.inspect.template import load_template
from lens.inspect.tools.base import Canvas, Measurement, Tool, ToolError
from native_tools import ncc_peak


class PatternMatching(Tool):
    cfg: PatternTool

    REFINE = 3  # px around the coarse peak searched at full resolution
    MIN_SIDE = 24  # px: smaller templates are searched exhaustively

    def __init__(self, cfg: PatternTool) -> None:
        super().__init__(cfg)
        self.template = load_template(cfg.params.template, cfg.params.region)
        th, tw = self.template.shape
        self.coarse = cfg.params.pyramid == "auto" and min(th, tw) >= self.MIN_SIDE
        self.half = cv2.pyrDown(self.template) if self.coarse else None
        self._results: dict[tuple[int, int], np.ndarray] = {}

    def _match(self, search: np.ndarray, template: np.ndarray) -> tuple[float, int, int]:
        sh, sw = search.shape
        th, tw = template.shape
        shape = (sh - th + 1, sw - tw + 1)
        result = self._results.get(shape)
        if result is None:
            result = self._results[shape] = np.empty(shape, np.float32)
        cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED, result=result)
        _, score, _, (lx, ly) = cv2.minMaxLoc(result)
        return score, lx, ly

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        region = self.region(canvas)
        search = region.of(canvas.gray())
        th, tw = self.template.shape
        sh, sw = search.shape
        if th > sh or tw > sw:
            raise ToolError(f"tool '{self.name}': the {tw}x{th} template is larger than the {sw}x{sh} "
                            "search region")  # fmt: skip
        if self.coarse and sh - th >= 4 * self.REFINE and sw - tw >= 4 * self.REFINE:
            assert self.half is not None
            _, cx, cy = self._match(cv2.pyrDown(search), self.half)
            r = self.REFINE
            x0, y0 = min(max(2 * cx - r, 0), sw - tw), min(max(2 * cy - r, 0), sh - th)
            x1, y1 = min(2 * cx + r, sw - tw), min(2 * cy + r, sh - th)
            score, lx, ly = ncc_peak(search[y0 : y1 + th, x0 : x1 + tw], self.template)
            lx, ly = lx + x0, ly + y0
        else:
            score, lx, ly = self._match(search, self.template)
        if not math.isfinite(score):  # a flat search region has no correlation
            score = 0.0
        x, y = region.x0 + lx, region.y0 + ly
        score = round(float(score), 6)
        measures = {"score": score, "x": x, "y": y, "cx": x + (tw - 1) / 2, "cy": y + (th - 1) / 2}
        return Measurement(score, measures, passed=score >= self.cfg.params.min_score)
