"""`edge_detection`: Sobel (3x3) gradient magnitude above `params.threshold`, counted in one fused
numba pass with no gradient images (`edge_count`). value = edge pixels; density = value / ROI pixels."""

from __future__ import annotations

from lens.config.tools import EdgeTool
from lens.inspect.tools.base import Canvas, Measurement, Tool
from native_tools import edge_count


class EdgeDetection(Tool):
    cfg: EdgeTool

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        region = self.region(canvas)
        count = edge_count(region.of(canvas.gray()), self.cfg.params.threshold, region.mask)
        return Measurement(count, {"count": count, "density": count / region.pixels})
