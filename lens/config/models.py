"""Pipeline configuration: one pydantic model per YAML section (SPEC §2).

Every model forbids unknown keys, every field has a default, bounds and a one-line description.
The same models validate the YAML file (`lens validate`) and, later, REST bodies.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from lens.inspect.expr import ExprError, parse_expr

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
MACHINE_ID = r"^[A-Za-z0-9_.-]+$"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values validated on assignment."""

    # strict: YAML `yes` is not 1 and "3" is not 3; no NaN/inf limits.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


# --- machine -------------------------------------------------------------------------------------


class MachineConfig(Section):
    id: Annotated[str, Field(pattern=MACHINE_ID, max_length=64, description="Machine id in every result")] = (
        "vm_001"
    )
    name: Annotated[str, Field(max_length=200, description="Human-readable machine name")] = ""


# --- sources -------------------------------------------------------------------------------------

Dim = Annotated[int, Field(ge=16, le=16384)]


class SyntheticSource(Section):
    type: Literal["synthetic"] = "synthetic"
    width: Annotated[Dim, Field(description="Frame width in pixels")] = 640
    height: Annotated[Dim, Field(description="Frame height in pixels")] = 480
    fps: Annotated[float, Field(ge=0, le=10000, description="Frame rate cap; 0 = as fast as consumed")] = 0
    seed: Annotated[int, Field(ge=0, le=2**31 - 1, description="Seed of the deterministic scene")] = 0
    defect_rate: Annotated[float, Field(ge=0, le=1, description="Share of defective parts/frames")] = 0.1
    parts: Annotated[int, Field(ge=1, le=16, description="Good parts per frame")] = 4

    @model_validator(mode="after")
    def _fits(self) -> SyntheticSource:
        if self.width < 8 * self.parts:
            raise ValueError(
                f"width: {self.width} px is too small for {self.parts} parts (at least {8 * self.parts})"
            )
        if self.height < 32:
            raise ValueError(f"height: {self.height} px is too small for the scene (at least 32)")
        return self


class FolderSource(Section):
    type: Literal["folder"] = "folder"
    path: Annotated[str, Field(min_length=1, description="Directory of images (read in sorted order)")]
    pattern: Annotated[str, Field(description="Glob of the files to read")] = "*"
    loop: Annotated[bool, Field(description="Start again after the last image")] = True
    fps: Annotated[float, Field(ge=0, le=10000, description="Frame rate cap; 0 = as fast as consumed")] = 0
    width: Annotated[Dim | None, Field(description="Resize to this width; null = first image's")] = None
    height: Annotated[Dim | None, Field(description="Resize to this height; null = first image's")] = None
    cache_mb: Annotated[
        int, Field(ge=0, le=65536, description="Decoded images kept in memory for replay (MiB)")
    ] = 256


class VideoSource(Section):
    type: Literal["video"] = "video"
    path: Annotated[str, Field(min_length=1, description="Video file readable by OpenCV/FFmpeg")]
    loop: Annotated[bool, Field(description="Rewind at the end of the file")] = True
    fps: Annotated[float, Field(ge=0, le=10000, description="Frame rate cap; 0 = as fast as consumed")] = 0
    width: Annotated[Dim | None, Field(description="Resize to this width; null = the file's")] = None
    height: Annotated[Dim | None, Field(description="Resize to this height; null = the file's")] = None


def _tag(default: str | None) -> Any:
    """Discriminator by `type`, defaulting to `default` when the key is left out."""

    def pick(v: Any) -> str | None:
        if isinstance(v, dict):
            return v.get("type", default)
        return getattr(v, "type", default)

    return Discriminator(pick)


SourceConfig = Annotated[
    Annotated[SyntheticSource, Tag("synthetic")]
    | Annotated[FolderSource, Tag("folder")]
    | Annotated[VideoSource, Tag("video")],
    _tag("synthetic"),
]


class CaptureConfig(Section):
    format: Annotated[Literal["gray", "bgr"], Field(description="Pixel format written to the ring")] = "gray"
    jpeg_quality: Annotated[int, Field(ge=1, le=100, description="JPEG quality of images sent out")] = 80


class ContinuousTrigger(Section):
    type: Literal["continuous"] = "continuous"
    interval_ms: Annotated[
        float, Field(ge=0, le=86_400_000, description="Minimum ms between inspections; 0 = every frame")
    ] = 0


TriggerConfig = Annotated[Annotated[ContinuousTrigger, Tag("continuous")], _tag("continuous")]


class RingConfig(Section):
    slots: Annotated[int, Field(ge=3, le=1024, description="Frames held in the shared-memory ring")] = 16


class CameraConfig(Section):
    id: Annotated[str, Field(pattern=IDENT, max_length=32, description="Camera id; default cam<index>")] = ""
    source: Annotated[SourceConfig, Field(description="Where frames come from")] = Field(
        default_factory=SyntheticSource
    )
    capture: Annotated[CaptureConfig, Field(description="Capture parameters")] = Field(
        default_factory=CaptureConfig
    )
    trigger: Annotated[TriggerConfig, Field(description="Which frames are inspected")] = Field(
        default_factory=ContinuousTrigger
    )
    ring: Annotated[RingConfig, Field(description="Shared-memory ring size")] = Field(
        default_factory=RingConfig
    )


# --- inspection ----------------------------------------------------------------------------------


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


class RectRoi(Section):
    shape: Literal["rect"] = "rect"
    x: Annotated[int, Field(ge=-16384, le=16384, description="Left edge (px)")] = 0
    y: Annotated[int, Field(ge=-16384, le=16384, description="Top edge (px)")] = 0
    w: Annotated[int | None, Field(ge=1, le=16384, description="Width (px); null = to the right edge")] = None
    h: Annotated[int | None, Field(ge=1, le=16384, description="Height (px); null = to the bottom edge")] = (
        None
    )


class ToolBase(Section):
    name: Annotated[str, Field(pattern=IDENT, max_length=64, description="Tool name, unique in the chain")]
    roi: Annotated[RectRoi, Field(description="Region of interest; default the whole frame")] = Field(
        default_factory=RectRoi
    )
    pass_fail: Annotated[PassFail | None, Field(description="Pass limits; null = measure only")] = None

    # measures each tool type publishes; pass_fail.measures and math expressions may name these.
    MEASURES: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _known_measures(self) -> ToolBase:
        if self.pass_fail is not None:
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
    MEASURES: ClassVar[frozenset[str]] = frozenset({"value", "count", "total_area", "largest_area"})


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


ToolConfig = Annotated[
    Annotated[GrayscaleTool, Tag("grayscale")]
    | Annotated[BlobTool, Tag("blob")]
    | Annotated[MathTool, Tag("math")],
    _tag(None),
]

TOOL_MODELS: dict[str, type[ToolBase]] = {"grayscale": GrayscaleTool, "blob": BlobTool, "math": MathTool}


class InspectionConfig(Section):
    workers: Annotated[int, Field(ge=1, le=64, description="Inspection worker processes")] = 2
    tools: Annotated[list[ToolConfig], Field(description="Tools, run in list order")] = Field(
        default_factory=list
    )

    @field_validator("tools", mode="after")
    @classmethod
    def _names_and_refs(cls, tools: list[ToolBase]) -> list[ToolBase]:
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
                    elif measure not in seen[ref].MEASURES:
                        known = ", ".join(sorted(seen[ref].MEASURES))
                        problems.append(f"[{i}].expr: '{ref}.{measure}' is not a measure ({known})")
            seen.setdefault(tool.name, tool)
        if problems:
            raise ValueError("\n".join(problems))
        return tools


# --- outputs -------------------------------------------------------------------------------------


class ZmqOutput(Section):
    bind: Annotated[str, Field(description="Results bus endpoint (ZeroMQ PUB)")] = "tcp://127.0.0.1:8711"
    hwm: Annotated[int, Field(ge=1, le=1_000_000, description="Messages queued per subscriber")] = 10000

    @field_validator("bind")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.match(r"^(tcp://[^:/]+:(\d{1,5}|\*)|ipc://.+|inproc://.+)$", v):
            raise ValueError(f"'{v}' is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)")
        return v


class OutputsConfig(Section):
    zmq: Annotated[ZmqOutput, Field(description="Results bus")] = Field(default_factory=ZmqOutput)


# --- the pipeline --------------------------------------------------------------------------------


class PipelineConfig(Section):
    machine: Annotated[MachineConfig, Field(description="Machine identity")] = Field(
        default_factory=MachineConfig
    )
    cameras: Annotated[list[CameraConfig], Field(min_length=1, max_length=16, description="Cameras")] = Field(
        default_factory=lambda: [CameraConfig()], validate_default=True
    )
    inspection: Annotated[InspectionConfig, Field(description="Tool chain and workers")] = Field(
        default_factory=InspectionConfig
    )
    outputs: Annotated[OutputsConfig, Field(description="Where results go")] = Field(
        default_factory=OutputsConfig
    )

    @field_validator("cameras", mode="after")
    @classmethod
    def _camera_ids(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        problems: list[str] = []
        seen: set[str] = set()
        for i, cam in enumerate(cameras):
            if not cam.id:
                cam.id = f"cam{i}"
            if cam.id in seen:
                problems.append(f"[{i}].id: duplicate camera id '{cam.id}'")
            seen.add(cam.id)
        if problems:
            raise ValueError("\n".join(problems))
        return cameras
