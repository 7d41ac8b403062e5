"""Pipeline configuration: one pydantic model per YAML section (SPEC §2).

Every model forbids unknown keys, every field has a default, bounds and a one-line description.
The same models validate the YAML file (`lens validate`) and, later, REST bodies.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, Tag, ValidationInfo, field_validator, model_validator

from lens.config.base import IDENT, MACHINE_ID, Section, tagged_by
from lens.config.tools import ToolBase, ToolConfig, chain_problems, frame_problems

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


def _resolve(v: str, info: ValidationInfo) -> str:
    """A relative path is relative to the pipeline file's folder (validation context `base_dir`)."""
    base = (info.context or {}).get("base_dir")
    return str((Path(base) / v).resolve()) if base is not None and not Path(v).is_absolute() else v


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

    _path = field_validator("path")(_resolve)


class VideoSource(Section):
    type: Literal["video"] = "video"
    path: Annotated[str, Field(min_length=1, description="Video file readable by OpenCV/FFmpeg")]
    loop: Annotated[bool, Field(description="Rewind at the end of the file")] = True
    fps: Annotated[float, Field(ge=0, le=10000, description="Frame rate cap; 0 = as fast as consumed")] = 0
    width: Annotated[Dim | None, Field(description="Resize to this width; null = the file's")] = None
    height: Annotated[Dim | None, Field(description="Resize to this height; null = the file's")] = None

    _path = field_validator("path")(_resolve)


SourceConfig = Annotated[
    Annotated[SyntheticSource, Tag("synthetic")]
    | Annotated[FolderSource, Tag("folder")]
    | Annotated[VideoSource, Tag("video")],
    tagged_by("type", "synthetic"),
]


class CaptureConfig(Section):
    format: Annotated[Literal["gray", "bgr"], Field(description="Pixel format written to the ring")] = "gray"
    jpeg_quality: Annotated[int, Field(ge=1, le=100, description="JPEG quality of images sent out")] = 80


class ContinuousTrigger(Section):
    type: Literal["continuous"] = "continuous"
    interval_ms: Annotated[
        float, Field(ge=0, le=86_400_000, description="Minimum ms between inspections; 0 = every frame")
    ] = 0


TriggerConfig = Annotated[Annotated[ContinuousTrigger, Tag("continuous")], tagged_by("type", "continuous")]


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


# --- inspection (tool models in lens.config.tools) ------------------------------------------------


class InspectionConfig(Section):
    workers: Annotated[int, Field(ge=1, le=64, description="Inspection worker processes")] = 2
    tools: Annotated[list[ToolConfig], Field(description="Tools, run in list order")] = Field(
        default_factory=list
    )

    @field_validator("tools", mode="after")
    @classmethod
    def _names_and_refs(cls, tools: list[ToolBase]) -> list[ToolBase]:
        problems = chain_problems(tools)
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

    @model_validator(mode="after")
    def _rois_fit_frames(self) -> PipelineConfig:
        """ROIs and templates checked against every camera whose frame size is known from config."""
        problems: list[str] = []
        for cam in self.cameras:
            w, h = getattr(cam.source, "width", None), getattr(cam.source, "height", None)
            if w is not None and h is not None:
                problems += frame_problems(self.inspection.tools, cam.id, w, h)
        if problems:
            raise ValueError("\n".join(dict.fromkeys(problems)))
        return self
