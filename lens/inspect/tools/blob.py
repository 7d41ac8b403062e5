"""`blob`: band threshold [th_min, th_max] + 8-connected components, with an area filter.

value = number of blobs kept; measures count, total_area, largest_area, roi_area (the pixels inside
the ROI: its clipped rectangle, or the shape's pixels for a circle or ellipse); every blob's bbox,
area and centroid in frame coordinates (first `max_blobs`), and the same blobs as detections. With a
circle or ellipse ROI, pixels outside the shape are background.
"""

from __future__ import annotations

from lens.config.tools import BlobTool
from lens.inspect.tools.base import Canvas, Measurement, Tool
from native_tools import BlobScratch, blob_stats


class Blob(Tool):
    cfg: BlobTool

    def __init__(self, cfg: BlobTool) -> None:
        super().__init__(cfg)
        self.scratch = BlobScratch()

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        p = self.cfg.params
        region = self.region(canvas)
        stats = blob_stats(region.of(canvas.gray()), p.th_min, p.th_max, p.area_min, p.area_max,
                           scratch=self.scratch, offset=(region.x0, region.y0), mask=region.mask)  # fmt: skip
        count = int(stats.shape[0])
        areas = stats[:, 0]
        total = int(areas.sum()) if count else 0
        largest = int(areas.max()) if count else 0
        blobs = []
        detections = []
        for area, x, y, w, h, cx, cy in stats[: p.max_blobs].tolist():
            box = [int(x), int(y), int(w), int(h)]
            blobs.append({"x": box[0], "y": box[1], "w": box[2], "h": box[3], "area": int(area),
                          "cx": round(cx, 2), "cy": round(cy, 2)})  # fmt: skip
            detections.append({"class": self.name, "confidence": 1.0, "bbox": box})
        measures = {"count": count, "total_area": total, "largest_area": largest, "roi_area": region.pixels}
        return Measurement(count, measures, {"blobs": blobs, "detections": detections})
