"""`pattern_matching`: normalised cross-correlation (TM_CCOEFF_NORMED) of a template over the ROI. Wide
searches run on OpenCV's matchTemplate (DFT: ~9x faster than a direct NCC over a whole ROI), the few
positions of each refinement on numba's exact `ncc_peak`; keep the search ROI tight. value = best
score; x, y = top-left of the best match and cx, cy its centre, in frame coordinates. Passes when
score >= min_score (and any pass_fail limits). A circle or ellipse ROI searches its bounding box.

`pyramid: auto` (default) searches coarse-to-fine when the template is at least 24 px a side and the
search area leaves room: the whole ROI at half resolution (1/16 of the work, OpenCV), then full
resolution within +-3 px of the coarse peak (7x7 positions, exact integer sums in numba: ~4x cheaper
there than OpenCV's DFT set-up). Templates of 64 px a side or more (16 px or more at a quarter)
start at quarter resolution (1/256 of the work) and are refined at half resolution (+-3 px), then at
full resolution (+-2 px around the refined peak). The score and position are those of the full
resolution correlation at the refined peak. `pyramid: off` searches every position at full
resolution (exhaustive: the global maximum even for templates whose reduced images are ambiguous,
e.g. fine periodic textures)."""

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

    REFINE = 3  # px around the peak of the level below searched at the next resolution
    MIN_SIDE = 24  # px: smaller templates are searched exhaustively
    QUARTER_SIDE = 64  # px: larger templates start at quarter resolution (still >= 16 px there)

    def __init__(self, cfg: PatternTool) -> None:
        super().__init__(cfg)
        self.template = load_template(cfg.params.template, cfg.params.region)
        side = min(self.template.shape)
        # the template at full, half and quarter resolution, as far as the pyramid goes
        self.levels: list[np.ndarray] = [self.template]
        if cfg.params.pyramid == "auto":
            for least in (self.MIN_SIDE, self.QUARTER_SIDE):
                if side >= least:
                    self.levels.append(cv2.pyrDown(self.levels[-1]))
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
        top = len(self.levels) - 1
        while top and min(sh - th, sw - tw) < (4 * self.REFINE) << (top - 1):  # too little room to travel
            top -= 1
        if top:
            searches = [search]
            for _ in range(top):
                searches.append(cv2.pyrDown(searches[-1]))
            _, lx, ly = self._match(searches[top], self.levels[top])
            for level in range(top - 1, -1, -1):
                r = self.REFINE if level == top - 1 else self.REFINE - 1  # a refined peak is closer
                (sh, sw), (th, tw) = searches[level].shape, self.levels[level].shape
                x0, y0 = min(max(2 * lx - r, 0), sw - tw), min(max(2 * ly - r, 0), sh - th)
                x1, y1 = min(2 * lx + r, sw - tw), min(2 * ly + r, sh - th)
                window = searches[level][y0 : y1 + th, x0 : x1 + tw]
                score, lx, ly = ncc_peak(window, self.levels[level])
                lx, ly = lx + x0, ly + y0
        else:
            score, lx, ly = self._match(search, self.template)
        if not math.isfinite(score):  # a flat search region has no correlation
            score = 0.0
        x, y = region.x0 + lx, region.y0 + ly
        score = round(float(score), 6)
        measures = {"score": score, "x": x, "y": y, "cx": x + (tw - 1) / 2, "cy": y + (th - 1) / 2}
        return Measurement(score, measures, passed=score >= self.cfg.params.min_score)
