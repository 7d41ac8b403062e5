"""Generate the YAML key reference (README) from the config models, so docs cannot drift."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lens.config import tools as t
from lens.config.control import ControlConfig, ControlLog, WebhookConfig
from lens.config.models import (
    CameraConfig,
    CaptureConfig,
    ContinuousTrigger,
    CronTrigger,
    FolderSource,
    HttpSource,
    InspectionConfig,
    MachineConfig,
    ManualTrigger,
    MotionTrigger,
    RingConfig,
    RtspSource,
    SerialTrigger,
    SyntheticSource,
    UsbSource,
    VideoSource,
    ZmqOutput,
)
from lens.config.outputs import ImageLogOutput, MqttAction, MqttOutput, SerialAction, StoreOutput, UrlAction

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("machine", MachineConfig),
    ("cameras[]", CameraConfig),
    ("cameras[].source (type: synthetic)", SyntheticSource),
    ("cameras[].source (type: folder)", FolderSource),
    ("cameras[].source (type: video)", VideoSource),
    ("cameras[].source (type: usb)", UsbSource),
    ("cameras[].source (type: rtsp)", RtspSource),
    ("cameras[].source (type: http)", HttpSource),
    ("cameras[].capture", CaptureConfig),
    ("cameras[].trigger (type: continuous)", ContinuousTrigger),
    ("cameras[].trigger (type: motion)", MotionTrigger),
    ("cameras[].trigger (type: manual)", ManualTrigger),
    ("cameras[].trigger (type: cron)", CronTrigger),
    ("cameras[].trigger (type: serial)", SerialTrigger),
    ("cameras[].ring", RingConfig),
    ("inspection", InspectionConfig),
    ("inspection.tools[].roi (shape: rect, the default)", t.RectRoi),
    ("inspection.tools[].roi (shape: circle)", t.CircleRoi),
    ("inspection.tools[].roi (shape: ellipse)", t.EllipseRoi),
    ("inspection.tools[].pass_fail", t.PassFail),
    ("inspection.tools[].pass_fail.measures.<name>", t.Limits),
    ("inspection.tools[] (type: grayscale)", t.GrayscaleTool),
    ("inspection.tools[].params (grayscale)", t.GrayscaleParams),
    ("inspection.tools[] (type: blur)", t.BlurTool),
    ("inspection.tools[].params (blur)", t.BlurParams),
    ("inspection.tools[] (type: threshold)", t.ThresholdTool),
    ("inspection.tools[].params (threshold)", t.ThresholdParams),
    ("inspection.tools[] (type: morphology)", t.MorphologyTool),
    ("inspection.tools[].params (morphology)", t.MorphologyParams),
    ("inspection.tools[] (type: blob)", t.BlobTool),
    ("inspection.tools[].params (blob)", t.BlobParams),
    ("inspection.tools[] (type: edge_detection)", t.EdgeTool),
    ("inspection.tools[].params (edge_detection)", t.EdgeParams),
    ("inspection.tools[] (type: locate)", t.LocateTool),
    ("inspection.tools[].params (locate)", t.LocateParams),
    ("inspection.tools[] (type: pattern_matching)", t.PatternTool),
    ("inspection.tools[].params (pattern_matching)", t.PatternParams),
    ("inspection.tools[] (type: math)", t.MathTool),
    ("inspection.tools[] (type: custom)", t.CustomTool),
    ("inspection.tools[].params (custom)", t.CustomParams),
    ("outputs.zmq", ZmqOutput),
    ("outputs.store", StoreOutput),
    ("outputs.image_log", ImageLogOutput),
    ("outputs.mqtt", MqttOutput),
    ("outputs.actions[] (type: serial)", SerialAction),
    ("outputs.actions[] (type: mqtt)", MqttAction),
    ("outputs.actions[] (type: url)", UrlAction),
    ("control", ControlConfig),
    ("control.log", ControlLog),
    ("control.webhooks", WebhookConfig),
]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", "") for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _bounds(info: FieldInfo) -> str:
    parts = []
    for m in info.metadata:
        for attr, sym in (
            ("ge", ">="),
            ("gt", ">"),
            ("le", "<="),
            ("lt", "<"),
            ("min_length", "len >="),
            ("max_length", "len <="),
        ):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sym} {v}")
    return ", ".join(parts)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        return (
            "(see section)"
            if info.default_factory not in (list, dict)
            else ("[]" if info.default_factory is list else "{}")
        )
    v = info.default
    return "null" if v is None else f"`{v}`"


def reference_markdown() -> str:
    out = []
    for title, model in SECTIONS:
        out.append(f"**`{title}`**\n")
        out.append("| key | type | default | bounds | what |")
        out.append("|---|---|---|---|---|")
        for name, info in model.model_fields.items():
            out.append(
                f"| `{name}` | {_type_name(info.annotation)} | {_default(info)} | {_bounds(info)} | "
                f"{info.description or ''} |"
            )
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_markdown())
