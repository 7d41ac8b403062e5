"""`blob`: band threshold [th_min, th_max] + 8-connected components, with an area filter.

value = number of blobs kept; measures count, total_area, largest_area; every blob's bbox, area and
centroid in frame coordinates (first `max_blobs`), and the same blobs as detections.
"""

from __future__ import annotations

from lens.config.models import BlobTool
from lens.inspect.tools.base import Canvas, Measurement, Tool
from native_tools import BlobScratch, blob_stats


class Blob(Tool):
    cfg: BlobTool

    def __init__(self, cfg: BlobTool) -> None:
        super().__init__(cfg)
        self.scratch = BlobScratch()

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        p = self.cfg.params
        x0, y0, x1, y1 = self.roi.rect(canvas.height, canvas.width)
        stats = blob_stats(
            canvas.gray()[y0:y1, x0:x1],
            p.th_min,
            p.th_max,
            p.area_min,
            p.area_max,
            scratch=self.scratch,
            offset=(x0, y0),
        )
        count = int(stats.shape[0])
        areas = stats[:, 0]
        total = int(areas.sum()) if count else 0
        largest = int(areas.max()) if count else 0
        blobs = []
        detections = []
        for area, x, y, w, h, cx, cy in stats[: p.max_blobs].tolist():
            blobs.append(
                {
                    "x": int(x),
                    "y": int(y),
                    "w": int(w),
                    "h": int(h),
                    "area": int(area),
                    "cx": round(cx, 2),
                    "cy": round(cy, 2),
                }
            )
            detections.append(
                {"class": self.name, "confidence": 1.0, "bbox": [int(x), int(y), int(w), int(h)]}
            )
        return Measurement(
            count,
            {"count": count, "total_area": total, "largest_area": largest},
            {"blobs": blobs, "detections": detections},
        )
