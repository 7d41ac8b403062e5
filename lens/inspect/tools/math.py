"""`math`: an expression over earlier tools' values (`parts.count * 2 <= 10`), parsed once, safely.

value = the expression's result. A test expression (comparison or and/or/not) with no pass_fail
passes when true.
"""

from __future__ import annotations

from lens.config.tools import MathTool
from lens.inspect.expr import ExprError, parse_expr
from lens.inspect.tools.base import Canvas, Measurement, Tool, ToolError


class Math(Tool):
    cfg: MathTool

    def __init__(self, cfg: MathTool) -> None:
        super().__init__(cfg)
        self.expr = parse_expr(cfg.expr)

    def measure(self, canvas: Canvas, values: dict[str, dict[str, float]]) -> Measurement:
        try:
            value = self.expr.evaluate(values)
        except ExprError as e:
            raise ToolError(f"tool '{self.name}': {e} in {self.cfg.expr!r}") from None
        return Measurement(value, {}, passed=bool(value) if self.expr.is_boolean else None)
