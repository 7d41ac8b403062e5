"""Pipeline configuration: one pydantic model per YAML section (SPEC §2).

Every model forbids unknown keys, every field has a default, bounds and a one-line description.
The same models validate the YAML file (`lens validate`) and, later, REST bodies.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, Tag, ValidationInfo, field_validator, model_validator

from lens.config.base import IDENT, MACHINE_ID, Section, http_url, tagged_by
from lens.config.control import ControlConfig
from lens.config.outputs import ActionConfig, ImageLogOutput, MqttOutput, StoreOutput
from lens.config.paths import resolve_path
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
    decode_threads: Annotated[
        int, Field(ge=0, le=64, description="Threads decoding images ahead of use; 0 = one per core")
    ] = 0

    _path = field_validator("path")(resolve_path)


class VideoSource(Section):
    type: Literal["video"] = "video"
    path: Annotated[str, Field(min_length=1, description="Video file readable by OpenCV/FFmpeg")]
    loop: Annotated[bool, Field(description="Rewind at the end of the file")] = True
    fps: Annotated[float, Field(ge=0, le=10000, description="Frame rate cap; 0 = as fast as consumed")] = 0
    width: Annotated[Dim | None, Field(description="Resize to this width; null = the file's")] = None
    height: Annotated[Dim | None, Field(description="Resize to this height; null = the file's")] = None

    _path = field_validator("path")(resolve_path)


class UsbSource(Section):
    type: Literal["usb"]
    device: Annotated[
        int | str, Field(description="Camera index (0, 1, ...) or device path (/dev/video0)")
    ] = 0
    width: Annotated[Dim | None, Field(description="Width to request; null = the camera's")] = None
    height: Annotated[Dim | None, Field(description="Height to request; null = the camera's")] = None
    fps: Annotated[float, Field(ge=0, le=1000, description="Frame rate to request; 0 = the camera's")] = 0
    fourcc: Annotated[
        str | None, Field(min_length=4, max_length=4, description="Pixel format to request, e.g. MJPG")
    ] = None
    stall_s: Annotated[float, Field(gt=0, le=3600, description="No frame for this long = reconnect")] = 5.0
    retry_max_s: Annotated[float, Field(gt=0, le=3600, description="Longest wait between reconnects")] = 30.0


class RtspSource(Section):
    type: Literal["rtsp"]
    url: Annotated[str | None, Field(description="rtsp://... (or give vendor + host)")] = None
    vendor: Annotated[
        Literal["intelbras", "hikvision", "generic"] | None, Field(description="Build the URL by vendor")
    ] = None
    host: Annotated[str | None, Field(description="Camera host (with vendor)")] = None
    port: Annotated[int, Field(ge=1, le=65535, description="RTSP port (with vendor)")] = 554
    channel: Annotated[int, Field(ge=1, le=256, description="Channel (with vendor)")] = 1
    stream: Annotated[Literal["main", "sub"], Field(description="Main or sub stream (with vendor)")] = "main"
    path: Annotated[str | None, Field(description="URL path (vendor generic)")] = None
    user: Annotated[str | None, Field(description="User name (with vendor)")] = None
    password_env: Annotated[
        str | None, Field(description="Environment variable holding the password (never in the file)")
    ] = None
    transport: Annotated[Literal["tcp", "udp"], Field(description="RTSP transport")] = "tcp"
    width: Annotated[Dim | None, Field(description="Resize to this width; null = the stream's")] = None
    height: Annotated[Dim | None, Field(description="Resize to this height; null = the stream's")] = None
    fps: Annotated[float, Field(ge=0, le=1000, description="Frame rate cap; 0 = the stream's")] = 0
    stall_s: Annotated[float, Field(gt=0, le=3600, description="No frame for this long = reconnect")] = 5.0
    retry_max_s: Annotated[float, Field(gt=0, le=3600, description="Longest wait between reconnects")] = 30.0

    @model_validator(mode="after")
    def _url_or_vendor(self) -> RtspSource:
        if (self.url is None) == (self.vendor is None):
            raise ValueError("give either url or vendor (+ host), not both and not neither")
        if self.url is not None and not self.url.startswith(("rtsp://", "rtsps://")):
            raise ValueError(f"url: {self.url.split('@')[-1]!r} is not an rtsp:// URL")
        if self.vendor is not None and not self.host:
            raise ValueError(f"host: required with vendor {self.vendor}")
        if self.vendor == "generic" and not self.path:
            raise ValueError("path: required with vendor generic")
        url_has_user = self.url is not None and "@" in self.url.split("//", 1)[-1].split("/", 1)[0]
        if self.password_env is not None and not self.user and not url_has_user:
            raise ValueError("user: required with password_env (a password needs a user name)")
        return self


class HttpSource(Section):
    type: Literal["http"]
    url: Annotated[str, Field(description="http(s):// MJPEG stream URL")]
    width: Annotated[Dim | None, Field(description="Resize to this width; null = the stream's")] = None
    height: Annotated[Dim | None, Field(description="Resize to this height; null = the stream's")] = None
    fps: Annotated[float, Field(ge=0, le=1000, description="Frame rate cap; 0 = the stream's")] = 0
    stall_s: Annotated[float, Field(gt=0, le=3600, description="No frame for this long = reconnect")] = 5.0
    retry_max_s: Annotated[float, Field(gt=0, le=3600, description="Longest wait between reconnects")] = 30.0

    _url = field_validator("url")(http_url)


SourceConfig = Annotated[
    Annotated[SyntheticSource, Tag("synthetic")]
    | Annotated[FolderSource, Tag("folder")]
    | Annotated[VideoSource, Tag("video")]
    | Annotated[UsbSource, Tag("usb")]
    | Annotated[RtspSource, Tag("rtsp")]
    | Annotated[HttpSource, Tag("http")],
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


class EventTrigger(Section):
    """What every event trigger (manual, cron, serial) shares: one result per trigger, or an error."""

    timeout_ms: Annotated[
        float,
        Field(ge=10, le=600_000, description="No frame or no worker in this time = LENS_TIMEOUT result"),
    ] = 2000


class ManualTrigger(EventTrigger):
    type: Literal["manual"]


class CronTrigger(EventTrigger):
    type: Literal["cron"]
    expr: Annotated[str, Field(description="Cron expression; six fields = with seconds (*/5 * * * * *)")]

    @field_validator("expr")
    @classmethod
    def _cron(cls, v: str) -> str:
        from croniter import croniter

        fields = len(v.split())
        if fields not in (5, 6) or not croniter.is_valid(v, second_at_beginning=fields == 6):
            raise ValueError(f"{v!r} is not a cron expression (5 fields, or 6 with seconds first)")
        return v


class SerialTrigger(EventTrigger):
    type: Literal["serial"]
    port: Annotated[str, Field(min_length=1, description="Serial device, e.g. /dev/ttyUSB0")]
    baud: Annotated[int, Field(ge=50, le=4_000_000, description="Baud rate")] = 115200
    match: Annotated[str, Field(min_length=1, description="Regex: a received line that matches fires")] = (
        "TRIG"
    )
    ack: Annotated[str | None, Field(description="Written back (with a newline) for each trigger")] = None
    max_line: Annotated[int, Field(ge=8, le=65536, description="Longer lines are noise")] = 256

    @field_validator("match")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"{v!r} is not a regular expression: {e}") from None
        return v


class MotionTrigger(Section):
    type: Literal["motion"]
    threshold: Annotated[int, Field(ge=1, le=255, description="Least gray-level change of a pixel")] = 25
    min_area: Annotated[int, Field(ge=1, description="Least changed area (px, full resolution) to fire")] = (
        500
    )
    cooldown_ms: Annotated[float, Field(ge=0, le=3_600_000, description="Quiet time after firing")] = 0
    downscale: Annotated[int, Field(ge=1, le=16, description="Compare frames at 1/downscale per side")] = 4


TriggerConfig = Annotated[
    Annotated[ContinuousTrigger, Tag("continuous")]
    | Annotated[MotionTrigger, Tag("motion")]
    | Annotated[ManualTrigger, Tag("manual")]
    | Annotated[CronTrigger, Tag("cron")]
    | Annotated[SerialTrigger, Tag("serial")],
    tagged_by("type", "continuous"),
]


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
    command: Annotated[
        str, Field(description="Command endpoint (ZeroMQ ROUTER): manual triggers, inspection reload")
    ] = "tcp://127.0.0.1:8712"
    hwm: Annotated[int, Field(ge=1, le=1_000_000, description="Messages queued per subscriber")] = 10000

    @field_validator("bind", "command")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.match(r"^(tcp://[^:/]+:(\d{1,5}|\*)|ipc://.+|inproc://.+)$", v):
            raise ValueError(f"'{v}' is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)")
        return v


class OutputsConfig(Section):
    zmq: Annotated[ZmqOutput, Field(description="Results bus")] = Field(default_factory=ZmqOutput)
    store: Annotated[StoreOutput | None, Field(description="Result store (SQLite); null = off")] = None
    image_log: Annotated[
        ImageLogOutput | None, Field(description="JPEGs of inspections on disk; null = off")
    ] = None
    mqtt: Annotated[MqttOutput | None, Field(description="MQTT sink; null = off")] = None
    actions: Annotated[
        list[ActionConfig], Field(description="Result actions (reject gate, MQTT, URL)")
    ] = Field(default_factory=list)

    @property
    def enabled(self) -> bool:
        """True when the outputs process has work (store, image log, MQTT or an action)."""
        return bool(self.store or self.image_log or self.mqtt or self.actions)


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
    control: Annotated[
        ControlConfig, Field(description="Control service (REST API, session lock, modes)")
    ] = Field(default_factory=ControlConfig)

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
    def _output_paths(self, info: ValidationInfo) -> PipelineConfig:
        """Relative output paths (control.db and legacy_state, outputs.store.path, outputs.image_log.dir)
        are relative to the pipeline file's folder, defaults included."""
        if (info.context or {}).get("base_dir") is None:
            return self
        self.control.db = resolve_path(self.control.db, info)
        self.control.legacy_state = resolve_path(self.control.legacy_state, info)
        if self.outputs.store is not None:
            self.outputs.store.path = resolve_path(self.outputs.store.path, info)
        if self.outputs.image_log is not None:
            self.outputs.image_log.dir = resolve_path(self.outputs.image_log.dir, info)
        return self

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
