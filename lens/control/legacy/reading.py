"""Reading the old machine's tool JSON: numbers, flags and words with errors that name the tool
and the field, and its `ROI` as a native roi.

A JSON `null` counts as "not given" (the key's default applies); numbers may be floats or strings
("10", "10.6", "Infinity"); "no limit" is any value >= 1e12 (what the UI sends), `inf` or "Infinity".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from lens.config.tools import RectRoi, RoiConfig
from lens.control.legacy.model import UNLIMITED, LegacyToolError

COORD = 16384.0  # native ROI and line coordinates are within +-16384 px
ROI_ADAPTER = TypeAdapter(RoiConfig)
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def number(v: Any) -> float | None:
    """A JSON number or a numeric string as float (inf allowed); None if it is neither."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)  # also "inf", "Infinity", " 10.6 "
        except ValueError:
            return None
    return None


def half_up(v: float) -> int:
    return math.floor(v + 0.5)


def norm_angle(a: float) -> float:
    """An angle in degrees normalised to (-180, 180]."""
    a = math.fmod(a, 360.0)
    return a - 360.0 if a > 180.0 else (a + 360.0 if a <= -180.0 else a)


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" {lo:g}..{hi:g}"
    if lo is not None:
        return f" >= {lo:g}"
    return f" <= {hi:g}" if hi is not None else ""


class Reader:
    """One legacy tool's config, read with errors that name the tool and the field."""

    def __init__(self, index: int, name: str, cfg: Mapping[str, Any]) -> None:
        self.index, self.name, self.cfg = index, name, cfg

    def error(self, path: str, message: str) -> LegacyToolError:
        return LegacyToolError(f"tools[{self.index}] ({self.name}){'.' if path else ''}{path}: {message}")

    def number(
        self,
        key: str,
        default: float,
        lo: float | None = None,
        hi: float | None = None,
        *,
        unlimited: bool = False,
        src: Mapping[str, Any] | None = None,
        path: str | None = None,
    ) -> float:
        """`src[key]` as a float in [lo, hi]; `default` when absent or null. With `unlimited`,
        values >= 1e12 and infinity give math.inf."""
        raw = (self.cfg if src is None else src).get(key)
        if raw is None or raw == "":
            return default
        v = number(raw)
        if v is not None and unlimited and v >= UNLIMITED:
            return math.inf
        if v is None or not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(path or key, f"must be a number{_bounds(lo, hi)}, not {raw!r}")
        return v

    def integer(self, raw: Any, path: str) -> int:
        """`raw` (a value of field `path`) as an integer: 3, 3.0 or "3"."""
        v = number(raw)
        if v is None or not math.isfinite(v) or v != int(v):
            raise self.error(path, f"must be an integer, not {raw!r}")
        return int(v)

    def flag(self, key: str, default: bool) -> bool:
        raw = self.cfg.get(key)
        if raw is None or raw == "":
            return default
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return bool(raw)
        word = raw.strip().lower() if isinstance(raw, str) else None
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise self.error(key, f"must be true or false, not {raw!r}")

    def word(self, key: str, default: str, known: Mapping[str, str], fallback: str) -> str:
        """`known[value]` (case-insensitive); unknown values give `fallback`, as the old machine."""
        raw = self.cfg.get(key)
        if raw is None or raw == "":
            return default
        return known.get(str(raw).strip().lower(), fallback)


def roi_parts(roi: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(shape, the object holding its keys, that object's path) of a legacy ROI: `circle` and
    `ellipse` read `{shape, <shape>: {...}}` or bare keys; anything else is a rect, read from
    `rect: {...}` or bare `{x, y, w, h}` (an unknown shape too, as the old machine)."""
    shape = str(roi.get("shape") or "").strip().lower()
    kind = shape if shape in ("circle", "ellipse") else "rect"
    inner = roi.get(kind)
    return (kind, inner, f"ROI.{kind}.") if isinstance(inner, dict) else (kind, roi, "ROI.")


def read_roi(r: Reader) -> dict[str, Any] | None:
    """The legacy `ROI` as a native roi (None = the whole frame).

    `{shape: rect|circle|ellipse, <shape>: {...}}`, bare `{x, y, w, h}`, `shape: rect` with bare keys,
    an unknown shape read as a bare rect; missing or empty = whole frame; floats rounded half up.
    As the old machine: w or h <= 0, r/rx/ry <= 0 = whole frame; a rect's negative x/y is moved to 0
    keeping its size; a missing w/h reaches the frame edge.
    """
    roi = r.cfg.get("ROI")
    if roi is None or roi == {} or roi == "":
        return None
    if not isinstance(roi, dict):
        raise r.error("ROI", f"must be an object, not {type(roi).__name__}")
    shape, inner, path = roi_parts(roi)
    if shape in ("circle", "ellipse"):

        def num(key: str, default: float | None = None) -> float:
            if inner.get(key) is None and default is None:
                raise r.error(path + key, "required")
            return r.number(key, default or 0.0, -COORD, COORD, src=inner, path=path + key)

        cx, cy = half_up(num("cx")), half_up(num("cy"))
        if shape == "circle":
            rad = half_up(num("r", 0.0))
            return None if rad <= 0 else {"shape": "circle", "cx": cx, "cy": cy, "r": rad}
        rx, ry = half_up(num("rx", 0.0)), half_up(num("ry", 0.0))
        if rx <= 0 or ry <= 0:
            return None
        angle = math.fmod(r.number("angle", 0.0, src=inner, path=path + "angle"), 360.0)
        return {"shape": "ellipse", "cx": cx, "cy": cy, "rx": rx, "ry": ry, "angle": angle}
    x, y = (max(0, half_up(r.number(k, 0.0, -COORD, COORD, src=inner, path=path + k))) for k in "xy")
    out: dict[str, Any] = {"x": x, "y": y}
    for k in "wh":
        if inner.get(k) is not None and inner.get(k) != "":
            size = half_up(r.number(k, 0.0, -COORD, COORD, src=inner, path=path + k))
            if size <= 0:
                return None  # the old machine: an empty ROI is the whole image
            out[k] = size
    return None if out == {"x": 0, "y": 0} else out


def native_roi(roi: dict[str, Any] | None) -> tuple[Any, bool, bool]:
    """(the roi model, whether its width, whether its height reaches the frame edge) of a native
    roi (None = the whole frame)."""
    model = ROI_ADAPTER.validate_python(roi or {})
    rect = isinstance(model, RectRoi)
    return model, rect and model.w is None, rect and model.h is None


def roi_box(roi: dict[str, Any] | None) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a native roi that does not depend on the frame size; None if it does."""
    model, open_w, open_h = native_roi(roi)
    return None if open_w or open_h else model.bbox(0, 0)
