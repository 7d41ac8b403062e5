"""Inspection tool models (SPEC §2 "Inspection tools"): ROIs, pass/fail limits, one model per type.

Paths in tool params (pattern templates) resolve against the pipeline file's folder, passed as
validation context `{"base_dir": ...}`; templates are read and custom callables imported at
validation, so a bad one is a config error naming the tool, never a worker crash.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, Tag, ValidationInfo, field_validator, model_validator

from lens.config.base import IDENT, Section, tagged_by
from lens.inspect.expr import ExprError, parse_expr

Coord = Annotated[int, Field(ge=-16384, le=16384)]
Size = Annotated[int, Field(ge=1, le=16384)]


class Limits(Section):
    min: Annotated[float | None, Field(description="Lowest passing value (inclusive); null = none")] = None
    max: Annotated[float | None, Field(description="Highest passing value (inclusive); null = none")] = None

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def check(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class PassFail(Limits):
    """Limits on the tool's `value`, plus optional limits on named measures."""

    measures: Annotated[
        dict[str, Limits], Field(description="Limits on other measures, e.g. {total_area: {min: 100}}")
    ] = Field(default_factory=dict)


# --- regions of interest -------------------------------------------------------------------------


class RectRoi(Section):
    shape: Literal["rect"] = "rect"
    x: Annotated[Coord, Field(description="Left edge (px)")] = 0
    y: Annotated[Coord, Field(description="Top edge (px)")] = 0
    w: Annotated[Size | None, Field(description="Width (px); null = to the right edge")] = None
    h: Annotated[Size | None, Field(description="Height (px); null = to the bottom edge")] = None

    def bbox(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) before clipping to a width x height frame."""
        return (self.x, self.y, width if self.w is None else self.x + self.w,
                height if self.h is None else self.y + self.h)  # fmt: skip


class CircleRoi(Section):
    shape: Literal["circle"]
    cx: Annotated[Coord, Field(description="Centre x (px)")]
    cy: Annotated[Coord, Field(description="Centre y (px)")]
    r: Annotated[Size, Field(description="Radius (px)")]

    def bbox(self, width: int, height: int) -> tuple[int, int, int, int]:
        return self.cx - self.r, self.cy - self.r, self.cx + self.r + 1, self.cy + self.r + 1


class EllipseRoi(Section):
    shape: Literal["ellipse"]
    cx: Annotated[Coord, Field(description="Centre x (px)")]
    cy: Annotated[Coord, Field(description="Centre y (px)")]
    rx: Annotated[Size, Field(description="Semi-axis along the (rotated) x axis (px)")]
    ry: Annotated[Size, Field(description="Semi-axis along the (rotated) y axis (px)")]
    angle: Annotated[float, Field(ge=-360, le=360, description="Rotation in degrees, clockwise")] = 0.0

    def bbox(self, width: int, height: int) -> tuple[int, int, int, int]:
        t = math.radians(self.angle)
        hw = math.ceil(math.hypot(self.rx * math.cos(t), self.ry * math.sin(t)))
        hh = math.ceil(math.hypot(self.rx * math.sin(t), self.ry * math.cos(t)))
        return self.cx - hw, self.cy - hh, self.cx + hw + 1, self.cy + hh + 1


RoiConfig = Annotated[
    Annotated[RectRoi, Tag("rect")]
    | Annotated[CircleRoi, Tag("circle")]
    | Annotated[EllipseRoi, Tag("ellipse")],
    tagged_by("shape", "rect"),
]


def clip(bbox: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int] | None:
    x0, y0, x1, y1 = bbox
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


# --- tools ---------------------------------------------------------------------------------------


class ToolBase(Section):
    name: Annotated[str, Field(pattern=IDENT, max_length=64, description="Tool name, unique in the chain")]
    roi: Annotated[RoiConfig, Field(description="Region of interest; default the whole frame")] = Field(
        default_factory=RectRoi
    )
    pass_fail: Annotated[PassFail | None, Field(description="Pass limits; null = measure only")] = None

    # measures each tool type publishes; pass_fail.measures and math expressions may name these.
    MEASURES: ClassVar[frozenset[str]] = frozenset()
    OPEN_MEASURES: ClassVar[bool] = False  # custom tools publish whatever their function returns
    FILTER: ClassVar[bool] = False  # changes the image for the tools after it

    @model_validator(mode="after")
    def _known_measures(self) -> ToolBase:
        if self.pass_fail is not None and not self.OPEN_MEASURES:
            for key in self.pass_fail.measures:
                if key not in self.MEASURES:
                    known = ", ".join(sorted(self.MEASURES))
                    raise ValueError(f"pass_fail.measures: unknown measure '{key}' (known: {known})")
        return self


class GrayscaleParams(Section):
    normalize: Annotated[bool, Field(description="Histogram-equalise the ROI for later tools")] = False


class GrayscaleTool(ToolBase):
    type: Literal["grayscale"]
    method: Annotated[
        Literal["luminance", "average", "weighted"], Field(description="BGR to gray conversion")
    ] = "luminance"
    params: Annotated[GrayscaleParams, Field(description="Tool parameters")] = Field(
        default_factory=GrayscaleParams
    )
    MEASURES: ClassVar[frozenset[str]] = frozenset({"value", "mean", "min", "max", "std"})
    FILTER: ClassVar[bool] = True


def _odd(v: int) -> int:
    if v % 2 == 0:
        raise ValueError(f"must be odd (got {v})")
    return v


class BlurParams(Section):
    ksize: Annotated[int, Field(ge=1, le=99, description="Kernel size (odd, px)")] = 5
    sigma: Annotated[float, Field(ge=0, le=100, description="Gaussian sigma; 0 = from ksize")] = 0.0

    _ksize_odd = field_validator("ksize")(_odd)


class BlurTool(ToolBase):
    type: Literal["blur"]
    method: Annotated[Literal["gaussian", "median"], Field(description="Filter")] = "gaussian"
    params: Annotated[BlurParams, Field(description="Tool parameters")] = Field(default_factory=BlurParams)
    MEASURES: ClassVar[frozenset[str]] = frozenset({"value", "mean"})
    FILTER: ClassVar[bool] = True


class ThresholdParams(Section):
    th_min: Annotated[int, Field(ge=0, le=255, description="binary: lowest foreground; range: low end")] = 128
    th_max: Annotated[int, Field(ge=0, le=255, description="range: high end (inclusive)")] = 255
    invert: Annotated[bool, Field(description="Swap foreground and background")] = False

    @model_validator(mode="after")
    def _band(self) -> ThresholdParams:
        if self.th_min > self.th_max:
            raise ValueError(f"th_min ({self.th_min}) is greater than th_max ({self.th_max})")
        return self


class ThresholdTool(ToolBase):
    type: Literal["threshold"]
    method: Annotated[
        Literal["binary", "range", "otsu"],
        Field(description="binary: v >= th_min; range: th_min <= v <= th_max; otsu: v > Otsu's level"),
    ] = "binary"
    params: Annotated[ThresholdParams, Field(description="Tool parameters")] = Field(
        default_factory=ThresholdParams
    )
    MEASURES: ClassVar[frozenset[str]] = frozenset({"value", "count", "ratio", "level"})
    FILTER: ClassVar[bool] = True


class MorphologyParams(Section):
    ksize: Annotated[int, Field(ge=1, le=51, description="Structuring element size (odd, px)")] = 3
    shape: Annotated[Literal["rect", "ellipse", "cross"], Field(description="Structuring element")] = "rect"
    iterations: Annotated[int, Field(ge=1, le=20, description="Times the operation is applied")] = 1

    _ksize_odd = field_validator("ksize")(_odd)


class MorphologyTool(ToolBase):
    type: Literal["morphology"]
    method: Annotated[Literal["open", "close", "erode", "dilate"], Field(description="Operation")] = "open"
    params: Annotated[MorphologyParams, Field(description="Tool parameters")] = Field(
        default_factory=MorphologyParams
    )
    MEASURES: ClassVar[frozenset[str]] = frozenset({"value", "count"})
    FILTER: ClassVar[bool] = True


class BlobParams(Section):
    th_min: Annotated[int, Field(ge=0, le=255, description="Lowest foreground intensity")] = 128
    th_max: Annotated[int, Field(ge=0, le=255, description="Highest foreground intensity")] = 255
    area_min: Annotated[int, Field(ge=0, description="Smallest blob kept (px)")] = 0
    area_max: Annotated[int | None, Field(ge=0, description="Largest blob kept (px); null = no limit")] = None
    max_blobs: Annotated[int, Field(ge=0, le=10000, description="Blobs listed in the result")] = 100

    @model_validator(mode="after")
    def _bands(self) -> BlobParams:
        if self.th_min > self.th_max:
            raise ValueError(f"th_min ({self.th_min}) is greater than th_max ({self.th_max})")
        if self.area_max is not None and self.area_min > self.area_max:
            raise ValueError(f"area_min ({self.area_min}) is greater than area_max ({self.area_max})")
        return self


class BlobTool(ToolBase):
    type: Literal["blob"]
    method: Annotated[Literal["threshold"], Field(description="Segmentation method")] = "threshold"
    params: Annotated[BlobParams, Field(description="Tool parameters")] = Field(default_factory=BlobParams)
    MEASURES: ClassVar[frozenset[str]] = frozenset(
        {"value", "count", "total_area", "largest_area", "roi_area"}
    )


class EdgeParams(Section):
    threshold: Annotated[float, Field(ge=0, le=2000, description="Sobel gradient magnitude above which a "
                                                                 "pixel is an edge")] = 100.0  # fmt: skip


class EdgeTool(ToolBase):
    type: Literal["edge_detection"]
    method: Annotated[Literal["sobel"], Field(description="Gradient operator (3x3)")] = "sobel"
    params: Annotated[EdgeParams, Field(description="Tool parameters")] = Field(default_factory=EdgeParams)
    MEASURES: ClassVar[frozenset[str]] = frozenset({"value", "count", "density"})


Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class LocateParams(Section):
    p0: Annotated[Point, Field(description="Start of the caliper line [x, y] (px)")]
    p1: Annotated[Point, Field(description="End of the caliper line [x, y] (px)")]
    sigma: Annotated[float, Field(ge=0, le=20, description="Gaussian smoothing of the profile (samples)")] = (
        1.0
    )
    threshold: Annotated[float, Field(ge=0, le=255, description="Least edge strength (gray levels/px)")] = (
        20.0
    )
    polarity: Annotated[
        Literal["rising", "falling", "any"], Field(description="rising = dark to light along p0 to p1")
    ] = "any"
    select: Annotated[
        Literal["first", "last", "strongest"], Field(description="Which edge is the result")
    ] = "first"
    reference: Annotated[
        float | None,
        Field(ge=0, description="Expected edge position along the line (px); offset = found - this"),
    ] = None
    shift_rois: Annotated[bool, Field(description="Move later tools' ROIs by the offset along the line")] = (
        False
    )

    @model_validator(mode="after")
    def _line(self) -> LocateParams:
        if self.p0 == self.p1:
            raise ValueError("p0 and p1 are the same point")
        if self.shift_rois and self.reference is None:
            raise ValueError("shift_rois needs a reference position")
        return self


class LocateTool(ToolBase):
    type: Literal["locate"]
    method: Annotated[Literal["caliper"], Field(description="Edge search along a line")] = "caliper"
    params: Annotated[LocateParams, Field(description="Tool parameters")]
    MEASURES: ClassVar[frozenset[str]] = frozenset(
        {"value", "found", "position", "x", "y", "offset", "strength", "edges"}
    )


class PatternParams(Section):
    template: Annotated[str, Field(min_length=1, description="Template image file (or reference image)")]
    region: Annotated[
        RectRoi | None, Field(description="Crop of the file to use as template; null = all")
    ] = None
    min_score: Annotated[float, Field(ge=-1, le=1, description="Least normalised correlation to pass")] = 0.8
    pyramid: Annotated[
        Literal["auto", "off"],
        Field(
            description="auto: coarse-to-fine search (half or quarter resolution, refined up to full); "
            "off: exhaustive"
        ),
    ] = "auto"

    @field_validator("template")
    @classmethod
    def _readable(cls, v: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base_dir")
        path = Path(v)
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if not path.is_file():
            raise ValueError(f"template file {str(path)!r} does not exist")
        return str(path.resolve())

    @model_validator(mode="after")
    def _loads(self) -> PatternParams:
        from lens.inspect.template import load_template

        try:
            load_template(self.template, self.region)
        except ValueError as e:
            field = "region" if str(e).startswith("region") else "template"
            raise ValueError(f"{field}: {e}") from None
        return self


class PatternTool(ToolBase):
    type: Literal["pattern_matching"]
    method: Annotated[Literal["ncc"], Field(description="Normalised cross-correlation")] = "ncc"
    params: Annotated[PatternParams, Field(description="Tool parameters")]
    MEASURES: ClassVar[frozenset[str]] = frozenset({"value", "score", "x", "y", "cx", "cy"})


class CustomParams(Section):
    function: Annotated[str, Field(description="Dotted path of a callable: package.module.function")]
    args: Annotated[dict[str, Any], Field(description="Passed to the function as `params`")] = Field(
        default_factory=dict
    )

    @field_validator("function")
    @classmethod
    def _importable(cls, v: str) -> str:
        resolve_callable(v)
        return v


def resolve_callable(path: str) -> Any:
    """Import `pkg.mod.func` (or `pkg.mod:func`); ValueError saying what failed."""
    module_name, sep, attr = path.replace(":", ".").rpartition(".")
    if not sep or not module_name or not attr.isidentifier():
        raise ValueError(f"{path!r} is not a dotted path like package.module.function")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any import failure is the user's to see, with its reason
        raise ValueError(f"cannot import module {module_name!r}: {type(e).__name__}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    return fn


class CustomTool(ToolBase):
    type: Literal["custom"]
    method: Annotated[str | None, Field(description="Free label for the result")] = None
    params: Annotated[CustomParams, Field(description="Tool parameters")]
    OPEN_MEASURES: ClassVar[bool] = True


class MathTool(ToolBase):
    type: Literal["math"]
    expr: Annotated[str, Field(min_length=1, max_length=2000, description="Expression over tool values")]
    MEASURES: ClassVar[frozenset[str]] = frozenset({"value"})

    @field_validator("expr")
    @classmethod
    def _parses(cls, v: str) -> str:
        try:
            parse_expr(v)
        except ExprError as e:
            raise ValueError(str(e)) from None
        return v


TOOL_MODELS: dict[str, type[ToolBase]] = {
    "grayscale": GrayscaleTool,
    "blur": BlurTool,
    "threshold": ThresholdTool,
    "morphology": MorphologyTool,
    "blob": BlobTool,
    "edge_detection": EdgeTool,
    "locate": LocateTool,
    "pattern_matching": PatternTool,
    "math": MathTool,
    "custom": CustomTool,
}

ToolConfig = Annotated[
    Annotated[GrayscaleTool, Tag("grayscale")]
    | Annotated[BlurTool, Tag("blur")]
    | Annotated[ThresholdTool, Tag("threshold")]
    | Annotated[MorphologyTool, Tag("morphology")]
    | Annotated[BlobTool, Tag("blob")]
    | Annotated[EdgeTool, Tag("edge_detection")]
    | Annotated[LocateTool, Tag("locate")]
    | Annotated[PatternTool, Tag("pattern_matching")]
    | Annotated[MathTool, Tag("math")]
    | Annotated[CustomTool, Tag("custom")],
    tagged_by("type", None),
]


def chain_problems(tools: list[ToolBase]) -> list[str]:
    """Cross-tool checks: unique names, math references to earlier tools and their measures."""
    problems: list[str] = []
    seen: dict[str, ToolBase] = {}
    for i, tool in enumerate(tools):
        if tool.name in seen:
            problems.append(f"[{i}].name: duplicate tool name '{tool.name}'")
        if isinstance(tool, MathTool):
            for ref, measure in parse_expr(tool.expr).refs():
                if ref == tool.name:
                    problems.append(f"[{i}].expr: '{ref}' names this tool itself")
                elif ref not in seen:
                    where = "a later tool" if any(t.name == ref for t in tools) else "no tool"
                    problems.append(f"[{i}].expr: '{ref}' names {where} (tools run in list order)")
                elif measure not in seen[ref].MEASURES and not seen[ref].OPEN_MEASURES:
                    known = ", ".join(sorted(seen[ref].MEASURES))
                    problems.append(f"[{i}].expr: '{ref}.{measure}' is not a measure ({known})")
        seen.setdefault(tool.name, tool)
    return problems


def frame_problems(tools: list[ToolBase], camera: str, width: int, height: int) -> list[str]:
    """ROIs (and templates) that cannot work on a width x height frame of `camera`."""
    problems: list[str] = []
    from lens.inspect.roi import Roi, RoiOutside

    for i, tool in enumerate(tools):
        box = clip(tool.roi.bbox(width, height), width, height)
        if box is not None and not isinstance(tool.roi, RectRoi):
            try:  # a shape whose bounding box touches the frame may still have no pixel inside it
                Roi(tool.roi, tool.name).resolve(height, width)
            except RoiOutside:
                box = None
        if box is None:
            problems.append(f"inspection.tools[{i}].roi: lies outside the {width}x{height} frame of camera "
                            f"{camera}")  # fmt: skip
            continue
        if isinstance(tool, PatternTool):
            from lens.inspect.template import load_template

            th, tw = load_template(tool.params.template, tool.params.region).shape[:2]
            if tw > box[2] - box[0] or th > box[3] - box[1]:
                problems.append(
                    f"inspection.tools[{i}].params.template: the {tw}x{th} template is larger than the "
                    f"{box[2] - box[0]}x{box[3] - box[1]} search region on camera {camera}"
                )
    return problems
