"""Tool implementations, by config type."""

from __future__ import annotations

from lens.config.models import ToolBase
from lens.inspect.tools.base import Canvas, Measurement, Tool, ToolError
from lens.inspect.tools.blob import Blob
from lens.inspect.tools.grayscale import Grayscale
from lens.inspect.tools.math import Math

__all__ = ["TOOLS", "Canvas", "Measurement", "Tool", "ToolError", "make_tool"]

TOOLS: dict[str, type[Tool]] = {"grayscale": Grayscale, "blob": Blob, "math": Math}


def make_tool(cfg: ToolBase) -> Tool:
    return TOOLS[cfg.type](cfg)  # type: ignore[attr-defined]
