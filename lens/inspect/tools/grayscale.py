"""`grayscale`: converts the ROI to gray for the tools after it and measures it (seed 001's
luminance check): value = mean, plus min, max, std.

Methods (for BGR frames; a gray frame is already gray): `luminance` = ITU-R BT.601 (OpenCV's
BGR2GRAY), `weighted` = ITU-R BT.709, `average` = (B + G + R) / 3. `params.normalize` equalises
the ROI's histogram for later tools (the measures are taken before it).
"""

from __future__ import annotations

import cv2
import numpy as np

from lens.config.tools import GrayscaleTool
from lens.inspect.tools.base import Canvas, Measurement, Tool
from native_tools import roi_stats

_BT709 = np.array([[0.0722, 0.7152, 0.2126]], np.float32)  # B, G, R
_AVERAGE = np.array([[1 / 3, 1 / 3, 1 / 3]], np.float32)


def equalize_lut(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The lookup table of cv2.equalizeHist, built from the histogram of the masked pixels only."""
    hist = cv2.calcHist([np.ascontiguousarray(gray)], [0], mask, [256], [0, 256]).ravel().astype(np.int64)
    lut = np.zeros(256, np.uint8)
    nonzero = np.flatnonzero(hist)
    first = int(nonzero[0])
    total = int(hist.sum())
    if hist[first] == total:  # one gray level: OpenCV maps every pixel to it
        lut[:] = first
        return lut
    scale = 255.0 / (total - int(hist[first]))
    sums = np.cumsum(hist[first + 1 :])
    # single precision, as OpenCV computes it (sum * scale in float), then round half to even
    lut[first + 1 :] = np.clip(np.rint(sums.astype(np.float32) * np.float32(scale)), 0, 255).astype(np.uint8)
    return lut


class Grayscale(Tool):
    cfg: GrayscaleTool

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        region = self.region(canvas)
        if canvas.frame.ndim == 3 and self.cfg.method != "luminance":
            weights = _BT709 if self.cfg.method == "weighted" else _AVERAGE
            bgr = region.of(canvas.frame)

            def convert(src: np.ndarray, dst: np.ndarray) -> None:
                mixed = cv2.transform(bgr, weights)  # 1 output channel: (h, w), or (h, w, 1)
                dst[...] = mixed.reshape(dst.shape)

            canvas.filter_roi(region, convert)
        view = region.of(canvas.gray())
        canvas.filtered = True  # the tools after it see the gray image, whatever the frame's format
        mean, lo, hi, std = roi_stats(view, region.mask)
        if self.cfg.params.normalize:
            if region.mask is None:
                canvas.filter_roi(region, lambda src, dst: cv2.equalizeHist(src, dst=dst))
            else:
                mask = region.mask
                canvas.filter_roi(region, lambda src, dst: cv2.LUT(src, equalize_lut(src, mask), dst=dst))
        return Measurement(mean, {"mean": mean, "min": lo, "max": hi, "std": std})
