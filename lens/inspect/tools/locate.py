"""`locate` (caliper): the intensity profile along the line p0 -> p1 (bilinear samples, numba),
smoothed, and the edges on it (derivative extrema of the wanted polarity above `threshold`).

value = position of the selected edge along the line (px from p0); measures found, position, x, y
(the edge point in frame coordinates), offset (position - reference), strength (signed gray
levels per px), edges (how many were found). No edge is a failed inspection, not an error. With
`shift_rois`, the ROIs of the tools after it move by the offset along the line.
"""

from __future__ import annotations

import math

from lens.config.tools import LocateTool
from lens.inspect.tools.base import Canvas, Measurement, Tool
from native_tools import find_edges, profile


class Locate(Tool):
    cfg: LocateTool

    def __init__(self, cfg: LocateTool) -> None:
        super().__init__(cfg)
        p = cfg.params
        self.length = math.hypot(p.p1[0] - p.p0[0], p.p1[1] - p.p0[1])
        self.ux, self.uy = (p.p1[0] - p.p0[0]) / self.length, (p.p1[1] - p.p0[1]) / self.length

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        p = self.cfg.params
        dx, dy = canvas.shift
        x0, y0, x1, y1 = p.p0[0] + dx, p.p0[1] + dy, p.p1[0] + dx, p.p1[1] + dy
        prof = profile(canvas.gray(), x0, y0, x1, y1)
        edges = find_edges(prof, p.sigma, p.threshold, p.polarity)
        if len(edges) == 0:
            return Measurement(None, {"found": 0, "edges": 0}, passed=False)
        if p.select == "first":
            pos, strength = edges[0]
        elif p.select == "last":
            pos, strength = edges[-1]
        else:
            pos, strength = edges[int(abs(edges[:, 1]).argmax())]
        step = self.length / (len(prof) - 1) if len(prof) > 1 else 0.0
        position = float(pos) * step
        offset = position - p.reference if p.reference is not None else 0.0
        if p.shift_rois:
            canvas.shift = (dx + round(offset * self.ux), dy + round(offset * self.uy))
        measures = {
            "found": 1,
            "position": round(position, 3),
            "x": round(x0 + self.ux * position, 3),
            "y": round(y0 + self.uy * position, 3),
            "offset": round(offset, 3),
            "strength": round(float(strength), 3),
            "edges": len(edges),
        }
        return Measurement(measures["position"], measures)
