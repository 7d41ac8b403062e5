"""`custom`: a Python function named by dotted path, called as `fn(roi, params) -> dict`.

`roi` is a read-only view of the current image in the ROI (gray once a filter or grayscale tool ran,
else the frame as captured; the bounding box for circle/ellipse ROIs); `params` is the tool's
`params.args`. The dict maps measure names to numbers; `value` (optional) is the primary number,
`pass` (optional, bool) the function's own verdict. An exception or a malformed return is an error
result naming the tool, never a worker crash.
"""

from __future__ import annotations

import numbers
from typing import Any

from lens.config.tools import CustomTool, resolve_callable
from lens.inspect.tools.base import Canvas, Measurement, Tool, ToolError


class Custom(Tool):
    cfg: CustomTool

    def __init__(self, cfg: CustomTool) -> None:
        super().__init__(cfg)
        self.fn = resolve_callable(cfg.params.function)

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        region = self.region(canvas)
        view = region.of(canvas.image()).view()
        view.flags.writeable = False
        try:
            out: Any = self.fn(view, dict(self.cfg.params.args))
        except Exception as e:
            raise ToolError(f"tool '{self.name}': {self.cfg.params.function} raised "
                            f"{type(e).__name__}: {e}") from None  # fmt: skip
        if not isinstance(out, dict):
            raise ToolError(f"tool '{self.name}': {self.cfg.params.function} returned {type(out).__name__}, "
                            "expected a dict of measures")  # fmt: skip
        verdict = out.pop("pass", None)
        if verdict is not None and not isinstance(verdict, bool):
            raise ToolError(f"tool '{self.name}': 'pass' must be true or false, got {verdict!r}")
        measures: dict[str, float] = {}
        for key, v in out.items():
            if not isinstance(key, str) or isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ToolError(f"tool '{self.name}': measure {key!r} must be a number, got {v!r}")
            measures[key] = float(v) if not isinstance(v, numbers.Integral) else int(v)
        value = measures.pop("value", None)
        return Measurement(value, measures, passed=verdict)
