"""Example `custom` tools: a function `fn(roi, params) -> dict of measures`, named in YAML by its
dotted path, e.g. `{type: custom, params: {function: lens.inspect.examples.contrast}}`."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def _percentiles(gray: np.ndarray, qs: tuple[float, float]) -> tuple[float, float]:
    """Gray-level percentiles from the histogram (one pass) instead of a sort."""
    hist = cv2.calcHist([np.ascontiguousarray(gray)], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist) / max(1.0, float(hist.sum()))
    lo, hi = (int(np.searchsorted(cdf, q / 100.0)) for q in qs)
    return float(lo), float(hi)


def contrast(roi: np.ndarray, params: dict[str, Any]) -> dict[str, float | bool]:
    """Michelson contrast of the ROI between its `low` and `high` percentiles (defaults 5 and 95);
    passes when at least `min_contrast` (default 0.3). A BGR ROI is measured on its luminance."""
    gray = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY) if roi.ndim == 3 else roi
    lo, hi = _percentiles(gray, (params.get("low", 5), params.get("high", 95)))
    value = (hi - lo) / (hi + lo) if hi + lo > 0 else 0.0
    return {"value": value, "p_low": lo, "p_high": hi, "pass": value >= params.get("min_contrast", 0.3)}
