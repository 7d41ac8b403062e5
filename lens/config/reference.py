"""Generate the YAML key reference (README) from the config models, so docs cannot drift."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lens.config.models import (
    BlobParams,
    BlobTool,
    CameraConfig,
    CaptureConfig,
    ContinuousTrigger,
    FolderSource,
    GrayscaleParams,
    GrayscaleTool,
    InspectionConfig,
    Limits,
    MachineConfig,
    MathTool,
    PassFail,
    RectRoi,
    RingConfig,
    SyntheticSource,
    VideoSource,
    ZmqOutput,
)

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("machine", MachineConfig),
    ("cameras[]", CameraConfig),
    ("cameras[].source (type: synthetic)", SyntheticSource),
    ("cameras[].source (type: folder)", FolderSource),
    ("cameras[].source (type: video)", VideoSource),
    ("cameras[].capture", CaptureConfig),
    ("cameras[].trigger (type: continuous)", ContinuousTrigger),
    ("cameras[].ring", RingConfig),
    ("inspection", InspectionConfig),
    ("inspection.tools[] (type: grayscale)", GrayscaleTool),
    ("inspection.tools[].params (grayscale)", GrayscaleParams),
    ("inspection.tools[] (type: blob)", BlobTool),
    ("inspection.tools[].params (blob)", BlobParams),
    ("inspection.tools[] (type: math)", MathTool),
    ("inspection.tools[].roi", RectRoi),
    ("inspection.tools[].pass_fail", PassFail),
    ("inspection.tools[].pass_fail.measures.<name>", Limits),
    ("outputs.zmq", ZmqOutput),
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
