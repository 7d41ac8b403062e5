"""Example `custom` tools: a function `fn(roi, params) -> dict of measures`, named in YAML by its
dotted path, e.g. `{type: custom, params: {function: lens.inspect.examples.contrast}}`."""

from __future__ import annotations

from typing import Any

import numpy as np


def contrast(roi: np.ndarray, params: dict[str, Any]) -> dict[str, float | bool]:
    """Michelson contrast of the ROI between its `low` and `high` percentiles (defaults 5 and 95);
    passes when at least `min_contrast` (default 0.3)."""
    lo, hi = np.percentile(roi, [params.get("low", 5), params.get("high", 95)])
    value = float((hi - lo) / (hi + lo)) if hi + lo > 0 else 0.0
    return {"value": value, "p_low": float(lo), "p_high": float(hi),
            "pass": value >= params.get("min_contrast", 0.3)}  # fmt: skip
