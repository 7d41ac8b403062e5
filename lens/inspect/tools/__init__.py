"""Tool implementations, by config type."""

from __future__ import annotations

from lens.config.tools import ToolBase
from lens.inspect.tools.base import Canvas, Measurement, Tool, ToolError
from lens.inspect.tools.blob import Blob
from lens.inspect.tools.blur import Blur
from lens.inspect.tools.custom import Custom
from lens.inspect.tools.edges import EdgeDetection
from lens.inspect.tools.grayscale import Grayscale
from lens.inspect.tools.locate import Locate
from lens.inspect.tools.math import Math
from lens.inspect.tools.morphology import Morphology
from lens.inspect.tools.pattern import PatternMatching
from lens.inspect.tools.threshold import Threshold

__all__ = ["TOOLS", "Canvas", "Measurement", "Tool", "ToolError", "make_tool"]

TOOLS: dict[str, type[Tool]] = {
    "grayscale": Grayscale,
    "blur": Blur,
    "threshold": Threshold,
    "morphology": Morphology,
    "blob": Blob,
    "edge_detection": EdgeDetection,
    "locate": Locate,
    "pattern_matching": PatternMatching,
    "math": Math,
    "custom": Custom,
}


def make_tool(cfg: ToolBase) -> Tool:
    return TOOLS[cfg.type](cfg)  # type: ignore[attr-defined]
