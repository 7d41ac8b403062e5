"""The old machine's tool JSON <-> lens's native tools (SPEC §4b): translation only, no I/O.

`translate` turns the `inspection_config.tools` list an AnalyticLens orchestrator sends into a native
inspection section; `legacy_results` turns a native result envelope back into the old machine's
`tool_results` and `inspection_summary`; `native_to_legacy` shows native tools (changed through
/api/v1) in the legacy shape.

Reading the legacy JSON: list order is execution order (`order_index` is ignored); `tool_id` is the
tool's `id`, or its list index when it has none; a JSON `null` counts as "not given" (the key's
default applies); numbers may be floats or strings ("10", "10.6", "Infinity"); "no limit" is any
value >= 1e12 (what the UI sends), `inf` or "Infinity". Unknown keys are ignored (the online editor
sends every parameter of every type). Where lens behaves differently from the old machine, the
function that decides says so in its docstring; the list is in the README ("Replacing an
AnalyticLens Flask machine").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lens.config.tools import TOOL_MODELS, RectRoi, RoiConfig, clip
from lens.inspect.expr import ExprError, parse_expr

__all__ = ["LegacyTool", "LegacyToolError", "Translation", "legacy_results", "native_to_legacy", "translate"]

UNLIMITED = 1e12  # the UI's and Django's "no limit" for area_max and the test maxima
EMPTY_AREA = 2**31  # a blob area_min no blob reaches (frames are at most 16384 x 16384 = 2**28 px)
MAX_BLOBS = 10000  # blobs listed per result (the old machine listed all of them)
FILTERS = ("grayscale", "blur", "threshold", "morphology")
_COORD = 16384.0  # native ROI and line coordinates are within +-16384 px
_KEYWORDS = {"and", "or", "not", "true", "false"}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_ROI = TypeAdapter(RoiConfig)


class LegacyToolError(ValueError):
    """A legacy tool lens cannot translate; the message names the tool (index and name) and the
    field: `tools[2] (blob_1).th_min: must be a number 0..255, not 'abc'`."""


@dataclass
class LegacyTool:
    """One legacy tool: its config as stored (returned unchanged by GET /api/inspection_config) and
    the native tools it became (several, e.g. morphology open + close, or none)."""

    config: dict[str, Any]
    tool_id: int
    name: str
    type: str
    inspec_pass_fail: bool
    native: list[str]
    index: int = 0  # position in the legacy list
    judged: bool = False  # reports true/false as pass_fail (else null while it passes)
    spec: dict[str, Any] = field(default_factory=dict, repr=False)  # normalised values for results


@dataclass
class Translation:
    """Legacy tools and the native inspection section `{"tools": [...]}` they became."""

    tools: list[LegacyTool]
    native: dict[str, Any]

    def owner(self, native_name: str) -> LegacyTool | None:
        """The legacy tool a native tool came from."""
        return next((t for t in self.tools if native_name in t.native), None)


# --- reading legacy values -----------------------------------------------------------------------


def _number(v: Any) -> float | None:
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


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" {lo:g}..{hi:g}"
    if lo is not None:
        return f" >= {lo:g}"
    return f" <= {hi:g}" if hi is not None else ""


def _half_up(v: float) -> int:
    return math.floor(v + 0.5)


class _Reader:
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
        v = _number(raw)
        if v is not None and unlimited and v >= UNLIMITED:
            return math.inf
        if v is None or not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(path or key, f"must be a number{_bounds(lo, hi)}, not {raw!r}")
        return v

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


def _integer(raw: Any, r: _Reader, path: str) -> int:
    v = _number(raw)
    if v is None or not math.isfinite(v) or v != int(v):
        raise r.error(path, f"must be an integer, not {raw!r}")
    return int(v)


def _slug(name: str) -> str:
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Za-z0-9_]+", "_", s).strip("_")
    s = re.sub(r"_+", "_", s)[:64]
    return f"t_{s}"[:64] if s[:1].isdigit() else s


class _Names:
    """Native tool names: valid identifiers, unique, never an expression keyword."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def free(self, name: str) -> bool:
        return name not in self.used and name not in _KEYWORDS

    def take(self, base: str, tool_id: int) -> str:
        """`base`, else `base_<tool_id>`, else `base_<tool_id>_<n>`."""
        name = base = base[:64]
        if not self.free(name):
            name = with_id = f"{base[:40]}_{tool_id}".replace("-", "m")
            n = 2
            while not self.free(name):
                name, n = f"{with_id}_{n}", n + 1
        self.used.add(name)
        return name


# --- ROI -----------------------------------------------------------------------------------------


def _roi(r: _Reader) -> dict[str, Any] | None:
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
    shape = str(roi.get("shape") or "").strip().lower()
    if shape in ("circle", "ellipse"):
        inner = roi.get(shape) if isinstance(roi.get(shape), dict) else roi
        path = f"ROI.{shape}." if inner is not roi else "ROI."

        def num(key: str, default: float | None = None) -> float:
            if inner.get(key) is None and default is None:
                raise r.error(path + key, "required")
            return r.number(key, default or 0.0, -_COORD, _COORD, src=inner, path=path + key)

        cx, cy = _half_up(num("cx")), _half_up(num("cy"))
        if shape == "circle":
            rad = _half_up(num("r", 0.0))
            return None if rad <= 0 else {"shape": "circle", "cx": cx, "cy": cy, "r": rad}
        rx, ry = _half_up(num("rx", 0.0)), _half_up(num("ry", 0.0))
        if rx <= 0 or ry <= 0:
            return None
        angle = math.fmod(r.number("angle", 0.0, src=inner, path=path + "angle"), 360.0)
        return {"shape": "ellipse", "cx": cx, "cy": cy, "rx": rx, "ry": ry, "angle": angle}
    inner = roi["rect"] if isinstance(roi.get("rect"), dict) else roi
    path = "ROI.rect." if inner is not roi else "ROI."
    x, y = (max(0, _half_up(r.number(k, 0.0, -_COORD, _COORD, src=inner, path=path + k))) for k in "xy")
    out: dict[str, Any] = {"x": x, "y": y}
    for k in "wh":
        if inner.get(k) is not None and inner.get(k) != "":
            size = _half_up(r.number(k, 0.0, -_COORD, _COORD, src=inner, path=path + k))
            if size <= 0:
                return None  # the old machine: an empty ROI is the whole image
            out[k] = size
    return None if out == {"x": 0, "y": 0} else out


def _roi_box(roi: dict[str, Any] | None) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a native roi that does not depend on the frame size; None if it does."""
    model = _ROI.validate_python(roi or {})
    if isinstance(model, RectRoi) and (model.w is None or model.h is None):
        return None
    return model.bbox(0, 0)


# --- legacy -> native, one function per legacy type -------------------------------------------


class _Context:
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids  # every tool's tool_id, in list order
        self.names = _Names()
        self.done: list[LegacyTool] = []  # tools translated so far, in order


Translator = Callable[[_Reader, LegacyTool, _Context], list[dict[str, Any]]]


def _base(
    lt: LegacyTool, ctx: _Context, roi: dict[str, Any] | None, suffix: str = "", **fields: Any
) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": ctx.names.take((_slug(lt.name) or lt.type) + suffix, lt.tool_id),
        **fields,
    }
    if roi is not None:
        tool["roi"] = roi
    return tool


def _grayscale(r: _Reader, lt: LegacyTool, ctx: _Context) -> list[dict[str, Any]]:
    """`method` luminance|average|weighted (unknown: luminance, as the old machine); `normalize`
    as sent. When `normalize` is absent the old machine's default applies: true (histogram
    equalisation) — the orchestrator's UI and Django send false explicitly. `weighted` is ITU-R
    BT.709 in lens (the old machine weighted B, G, R by 0.3, 0.5, 0.2)."""
    method = r.word("method", "luminance", {m: m for m in ("luminance", "average", "weighted")}, "luminance")
    params = {"normalize": r.flag("normalize", True)}
    return [_base(lt, ctx, _roi(r), type="grayscale", method=method, params=params)]


def _blur(r: _Reader, lt: LegacyTool, ctx: _Context) -> list[dict[str, Any]]:
    """`method` gaussian|median (unknown: gaussian); `ksize` forced odd >= 3 as the old machine
    (max(3, k | 1)), at most 99; `sigma` >= 0 (negative = 0: from ksize, as OpenCV)."""
    method = "median" if str(r.cfg.get("method") or "").strip().lower() == "median" else "gaussian"
    k = max(3, int(r.number("ksize", 3)) | 1)
    if k > 99:
        raise r.error("ksize", f"must be at most 99 in lens, not {r.cfg.get('ksize')!r}")
    sigma = max(0.0, r.number("sigma", 0.0, hi=100))
    return [_base(lt, ctx, _roi(r), type="blur", method=method, params={"ksize": k, "sigma": sigma})]


def _threshold(r: _Reader, lt: LegacyTool, ctx: _Context) -> list[dict[str, Any]]:
    """`mode` binary (pixel > th_min; unknown modes too) | range (th_min <= pixel <= th_max; th_max
    below th_min means = th_min, as the old machine) | otsu. Foreground is always 255 in lens (the
    old machine's binary mode wrote `th_max`, its OpenCV maxval; th_max = 0 gave an empty image,
    which lens reproduces)."""
    mode = r.word("mode", "binary", {"binary": "binary", "range": "range", "otsu": "otsu"}, "binary")
    th_min = int(r.number("th_min", 128, 0, 255))
    th_max = int(r.number("th_max", 255, 0, 255))
    if mode == "otsu":
        method, params = "otsu", {}
    elif mode == "range":
        method, params = "range", {"th_min": th_min, "th_max": max(th_min, th_max)}
    elif th_min >= 255 or th_max == 0:  # nothing is foreground: everything, inverted
        method, params = "binary", {"th_min": 0, "invert": True}
    else:
        method, params = "binary", {"th_min": th_min + 1}
    return [_base(lt, ctx, _roi(r), type="threshold", method=method, params=params)]


def _morphology(r: _Reader, lt: LegacyTool, ctx: _Context) -> list[dict[str, Any]]:
    """`kernel` (odd >= 3 as the old machine, at most 51), `open` and `close` iterations (at most 20
    each; <= 0 = off), `shape` ellipse|rect|cross (unknown: ellipse) -> a native `open` tool then a
    native `close` tool (named <name>_open, <name>_close when both), or no native tool at all."""
    k = max(3, int(r.number("kernel", 3)) | 1)
    if k > 51:
        raise r.error("kernel", f"must be at most 51 in lens, not {r.cfg.get('kernel')!r}")
    shape = r.word("shape", "ellipse", {s: s for s in ("ellipse", "rect", "cross")}, "ellipse")
    ops = [(op, int(r.number(op, 0, hi=20))) for op in ("open", "close")]
    ops = [(op, n) for op, n in ops if n > 0]
    roi = _roi(r)
    params = [{"ksize": k, "shape": shape, "iterations": n} for _, n in ops]
    return [
        _base(lt, ctx, roi, f"_{op}" if len(ops) == 2 else "", type="morphology", method=op, params=p)
        for (op, _), p in zip(ops, params, strict=True)
    ]


def _limit(v: float) -> float | None:
    return None if math.isinf(v) else v


def _blob(r: _Reader, lt: LegacyTool, ctx: _Context) -> list[dict[str, Any]]:
    """Foreground = pixel > `th_min` (the old machine's `th_max` is OpenCV's maxval, not a bound;
    th_min 255 or th_max 0 find nothing, as there); `area_min`/`area_max` (>= 1e12 or inf = no
    limit); `total_area_test`/`blob_count_test` with `test_total_area_min/max`,
    `test_blob_count_min/max` -> native pass_fail on the count (value) and the total_area measure.

    With `inspec_pass_fail` and no test enabled the tool only measures (pass_fail null); the old
    machine crashed on it and reported pass_fail false, failing every inspection. Blob areas are
    pixel counts (8-connected components) where the old machine used contour areas (a one-pixel
    blob had area 0), and a blob inside another blob's hole counts in lens (the old machine kept
    outer contours only).
    """
    th_min = r.number("th_min", 0, 0, 255)
    th_max = r.number("th_max", 255, 0, 255)
    area_min = r.number("area_min", 0, hi=1e12)
    area_max = r.number("area_max", math.inf, 0, unlimited=True)
    if area_min > area_max:
        raise r.error("area_min", f"({area_min:g}) is greater than area_max ({area_max:g})")
    params: dict[str, Any] = {
        "th_min": math.floor(th_min) + 1,
        "th_max": 255,
        "area_min": max(0, math.ceil(area_min)),
        "max_blobs": MAX_BLOBS,
    }
    if not math.isinf(area_max):
        params["area_max"] = math.floor(area_max)
    if th_min >= 255 or th_max < 1:  # nothing is foreground
        params.update(th_min=255, th_max=255, area_min=EMPTY_AREA)
        params.pop("area_max", None)
    tests: dict[str, tuple[float, float]] = {}
    for test, key in (("total_area_test", "total_area"), ("blob_count_test", "blob_count")):
        if r.flag(test, False):
            lo = r.number(f"test_{key}_min", 0)
            hi = r.number(f"test_{key}_max", math.inf, unlimited=True)
            if lo > hi:
                raise r.error(f"test_{key}_min", f"({lo:g}) is greater than test_{key}_max ({hi:g})")
            tests[test] = (lo, hi)
    tool = _base(lt, ctx, _roi(r), type="blob", params=params)
    lt.spec["tests"] = tests
    if lt.inspec_pass_fail and tests:
        lt.judged = True
        pf: dict[str, Any] = {}
        if "blob_count_test" in tests:
            lo, hi = tests["blob_count_test"]
            pf.update(min=lo, max=_limit(hi))
        if "total_area_test" in tests:
            lo, hi = tests["total_area_test"]
            pf["measures"] = {"total_area": {"min": lo, "max": _limit(hi)}}
        tool["pass_fail"] = pf
        lt.spec["pass_expr"] = _limits_expr(tool["name"], pf)
    return [tool]


def _locate(r: _Reader, lt: LegacyTool, ctx: _Context) -> list[dict[str, Any]]:
    """Caliper along `arrow {p0: {x, y}, p1: {x, y}}` (or `ROI.arrow`; default: the horizontal line
    through the ROI's centre from 10 % to 90 % of its width, which needs a ROI of known size).

    `threshold` (fallback `th_min`, default 20; clamped to 0..255) is the least edge strength: lens
    finds gradient peaks, where the old machine first looked for crossings of the intensity level
    `threshold`. `polaridade`/`polarity` any|dark_to_light|light_to_dark -> any|rising|falling;
    `edge_select` strongest|first, and closest_to_mid -> strongest (lens has no "closest to the
    middle"); `smooth_ksize` -> the Gaussian sigma OpenCV derives from that size; `threshold_mode`
    adaptive, `adaptive_k` and `grad_kernel` are ignored. `reference {x, y, angle_deg?}` is projected
    onto the arrow (native position from p0; it may not lie before p0); `apply_transform` shifts the
    later tools' ROIs by the offset along the arrow (the old machine shifted by the 2-D difference
    result - reference); `rotate` is reported but lens never rotates ROIs. With `inspec_pass_fail`,
    pass_fail is whether an edge was found (the old machine: always true); a locate that finds no
    edge fails the inspection in lens either way.
    """
    roi = _roi(r)
    arrow = r.cfg.get("arrow")
    if not arrow and isinstance(r.cfg.get("ROI"), dict):
        arrow = r.cfg["ROI"].get("arrow")
    if arrow is not None and not isinstance(arrow, dict):
        raise r.error("arrow", f"must be an object {{p0: {{x, y}}, p1: {{x, y}}}}, not {arrow!r}")
    arrow = arrow or {}
    box = _roi_box(roi) if roi is not None else None

    def point(key: str, fx: float) -> list[float]:
        p = arrow.get(key) or {}
        if not isinstance(p, dict):
            raise r.error(f"arrow.{key}", f"must be an object {{x, y}}, not {p!r}")
        if (p.get("x") is None or p.get("y") is None) and box is None:
            raise r.error(f"arrow.{key}", "required when the ROI is not a shape of known size")
        x0, y0, x1, y1 = box or (0, 0, 0, 0)
        xy = []
        for k, default in (("x", x0 + fx * (x1 - x0)), ("y", (y0 + y1) / 2)):
            v = r.number(k, default, -_COORD, _COORD, src=p, path=f"arrow.{key}.{k}")
            xy.append(max(0.0, v))  # the old machine clamped the points into the image
        return xy

    p0, p1 = point("p0", 0.1), point("p1", 0.9)
    length = math.hypot(p1[0] - p0[0], p1[1] - p0[1])
    if length == 0:
        raise r.error("arrow", f"p0 and p1 are the same point ({p0[0]:g}, {p0[1]:g})")
    ux, uy = (p1[0] - p0[0]) / length, (p1[1] - p0[1]) / length
    threshold = r.number("threshold", r.number("th_min", 20.0))
    polarity_key = "polaridade" if r.cfg.get("polaridade") is not None else "polarity"
    polarity = r.word(polarity_key, "any", _POLARITY, "any")
    select = r.word("edge_select", "strongest", _SELECT, "strongest")
    k = int(r.number("smooth_ksize", 5))
    k = k if k % 2 else k + 1
    sigma = min(20.0, 0.3 * ((k - 1) * 0.5 - 1) + 0.8) if k >= 3 else 0.0
    params: dict[str, Any] = {
        "p0": p0,
        "p1": p1,
        "sigma": round(sigma, 4),
        "threshold": min(255.0, max(0.0, threshold)),
        "polarity": polarity,
        "select": select,
    }
    ref = r.cfg.get("reference")
    reference = None
    if isinstance(ref, dict) and ref.get("x") is not None and ref.get("y") is not None:
        angle_key = "angle_deg" if ref.get("angle_deg") is not None else "angle"
        rx = r.number("x", 0, -_COORD, _COORD, src=ref, path="reference.x")
        ry = r.number("y", 0, -_COORD, _COORD, src=ref, path="reference.y")
        angle = _angle(r.number(angle_key, 0.0, src=ref, path=f"reference.{angle_key}"))
        along = (rx - p0[0]) * ux + (ry - p0[1]) * uy
        if along < 0:
            raise r.error(
                "reference",
                f"({rx:g}, {ry:g}) lies before the arrow's start p0 "
                f"({p0[0]:g}, {p0[1]:g}); lens measures along the arrow from p0",
            )
        params["reference"] = round(along, 4)
        reference = {"x": rx, "y": ry, "angle_deg": angle}
    apply_transform = r.flag("apply_transform", False)
    params["shift_rois"] = apply_transform and reference is not None
    tool = _base(lt, ctx, roi, type="locate", method="caliper", params=params)
    lt.judged = lt.inspec_pass_fail
    lt.spec["pass_expr"] = f"{tool['name']}.found" if lt.judged else None
    lt.spec.update(
        p0=p0,
        p1=p1,
        ux=ux,
        uy=uy,
        length=length,
        reference=reference,
        rotate=r.flag("rotate", False),
        apply_transform=apply_transform,
        shift=params["shift_rois"],
        polarity=polarity,
    )
    return [tool]


_POLARITY = {"any": "any", "dark_to_light": "rising", "light_to_dark": "falling", "rising": "rising",
             "falling": "falling"}  # fmt: skip
_POLARIDADE = {"any": "any", "rising": "dark_to_light", "falling": "light_to_dark"}
_SELECT = {"strongest": "strongest", "first": "first", "closest_to_mid": "strongest", "last": "last"}


def _angle(a: float) -> float:
    """Normalised to (-180, 180]."""
    a = math.fmod(a, 360.0)
    return a - 360.0 if a > 180.0 else (a + 360.0 if a <= -180.0 else a)


_FORMULA_TOKEN = re.compile(
    r"(?P<num>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<other>.)", re.S
)
_FORMULA_WORDS = {"and", "or", "not", "abs", "min", "max", "round", "sqrt"}


def _variables(ref: LegacyTool) -> tuple[dict[str, str], dict[str, str]]:
    """A referenced tool's result fields usable in a formula: (name -> native expression,
    name -> why lens cannot provide it)."""
    native = ref.native[0] if ref.native else ""
    found: dict[str, str] = {"tool_id": f"({ref.tool_id})"}
    missing = {"processing_time_ms": "timings are not inputs of lens formulas (they vary run to run)"}
    if ref.type == "blob":
        found.update(
            blob_count=f"{native}.count", total_area=f"{native}.total_area", roi_area=f"{native}.roi_area"
        )
    elif ref.type == "math":
        found["result"] = f"{native}.value"
    elif ref.type == "locate":
        found["edge_count"] = f"{native}.found"
    elif ref.spec.get("native_only"):
        model = TOOL_MODELS[ref.type]
        found.update({m: f"{native}.{m}" for m in model.MEASURES})
    if ref.spec.get("pass_expr") is not None:
        found["pass_fail"] = ref.spec["pass_expr"]
    else:
        missing["pass_fail"] = (
            f"tools[{ref.index}] ({ref.name}) has no pass/fail (inspec_pass_fail false, no test)"
        )
    return found, missing


def _formula(r: _Reader, key: str, text: str, ref: LegacyTool) -> str:
    """A legacy formula (Python syntax over the referenced result's fields) as a native expression."""
    found, missing = _variables(ref)
    out = []
    for m in _FORMULA_TOKEN.finditer(text):
        name = m.group("name")
        if name is None:
            out.append(m.group(0))
        elif name in found:
            out.append(found[name])
        elif name in ("True", "False", "true", "false"):
            out.append(name.lower())
        elif name in _FORMULA_WORDS:
            out.append(name)
        elif name in missing:
            raise r.error(key, f"'{name}' is not available in lens: {missing[name]}")
        else:
            known = ", ".join(sorted(found))
            raise r.error(key, f"unknown variable '{name}' (tools[{ref.index}] ({ref.name}) gives: {known})")
    expr = "".join(out)
    try:
        parse_expr(expr)
    except ExprError as e:
        where = repr(text) if expr == text else f"{expr!r} (the lens form of {text!r})"
        raise r.error(key, f"{e} in {where}") from None
    return expr


def _math(r: _Reader, lt: LegacyTool, ctx: _Context) -> list[dict[str, Any]]:
    """`reference_tool_id` (a tool id: the legacy `id`, or the list index of a tool without one;
    it must name an earlier tool that has a native result), `operation` area_ratio (total_area /
    roi_area of a blob) | blob_density (blob_count / roi_area) | custom_formula (`formula`, or
    `custom_formula` as the orchestrator names it, over the referenced result's fields).

    pass_fail with `inspec_pass_fail`: area_ratio in [0.1, 0.9], blob_density in [0.01, 0.1] (as
    the old machine); custom_formula: a test (comparison, and/or/not) decides, a number passes (the
    old machine always passed). Reference 0 is the first tool (the old machine dropped a math tool
    whose reference was 0); formulas are parsed by lens's safe expression parser (never eval), so a
    formula it rejects is refused here. `roi_area` is the pixels inside the blob's ROI (the old
    machine used the bounding box of circle/ellipse ROIs).
    """
    raw_ref = r.cfg.get("reference_tool_id")
    if raw_ref is None or raw_ref == "":
        raise r.error("reference_tool_id", "required (the id of the tool whose result is used)")
    ref_id = _integer(raw_ref, r, "reference_tool_id")
    ref = next((t for t in ctx.done if t.tool_id == ref_id), None)
    if ref is None:
        if ref_id == lt.tool_id:
            raise r.error("reference_tool_id", f"{ref_id} names this tool itself")
        where = "a later tool (tools run in list order)" if ref_id in ctx.ids else "no tool"
        known = ", ".join(str(i) for i in ctx.ids)
        raise r.error("reference_tool_id", f"{ref_id} names {where}; tool ids: {known}")
    operations = ("area_ratio", "blob_density", "custom_formula")
    operation = str(r.cfg.get("operation") or "").strip().lower()
    if operation not in operations:
        raise r.error("operation", f"must be one of {', '.join(operations)}, not {r.cfg.get('operation')!r}")
    native = ref.native[0] if ref.native else ""
    lt.spec.update(operation=operation, boolean=False, formula="")
    tpl = "1"  # pass_fail as an expression over this tool's value ({v}), for formulas that read it
    pass_fail: dict[str, Any] | None = None
    if operation in ("area_ratio", "blob_density"):
        if ref.type != "blob":
            raise r.error(
                "reference_tool_id",
                f"{operation} needs a blob tool; tools[{ref.index}] ({ref.name}) is {ref.type}",
            )
        top = "total_area" if operation == "area_ratio" else "count"
        expr = f"{native}.{top} / {native}.roi_area"
        pass_fail = {"min": 0.1, "max": 0.9} if operation == "area_ratio" else {"min": 0.01, "max": 0.1}
        tpl = f"({{v}} >= {pass_fail['min']} and {{v}} <= {pass_fail['max']})"
    else:
        key = "formula" if str(r.cfg.get("formula") or "").strip() else "custom_formula"
        text = str(r.cfg.get(key) or "").strip()
        if not text:
            raise r.error("formula", "required for custom_formula (key formula or custom_formula)")
        expr = _formula(r, key, text, ref)
        boolean = parse_expr(expr).is_boolean
        lt.spec.update(boolean=boolean, formula=text)
        tpl = "({v} != 0)" if boolean else "1"
        if boolean and not lt.inspec_pass_fail:
            expr = f"+({expr})"  # a measure, not a test: its truth must not fail the inspection
    tool = _base(lt, ctx, None, type="math", expr=expr)
    lt.judged = lt.inspec_pass_fail
    lt.spec["pass_expr"] = tpl.replace("{v}", f"{tool['name']}.value") if lt.judged else None
    if lt.judged and pass_fail is not None:
        tool["pass_fail"] = pass_fail
    return [tool]


def _passthrough(
    r: _Reader, lt: LegacyTool, ctx: _Context, group: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """The native tools a `native_to_legacy` entry carries (`native`), used as they are while its
    legacy keys are unchanged; None when they were edited (translate the legacy keys instead). A
    native-only type keeps its tool, with the edited name and ROI applied."""
    kind = str(group[0].get("type"))
    view = _view(group, {n: t.tool_id for t in ctx.done for n in t.native}, lt.tool_id)
    if not _unchanged(r.cfg, view):
        if kind in TRANSLATORS or len(group) != 1:
            return None
        tool = dict(group[0])
        if (r.cfg.get("ROI") or {}) != view["ROI"]:
            tool["roi"] = _roi(r) or {}
        if r.cfg.get("name") != view["name"]:
            tool["name"] = ctx.names.take(_slug(lt.name) or kind, lt.tool_id)
        group = [tool]
    for tool in group:
        name = tool.get("name")
        if not isinstance(name, str) or not ctx.names.free(name):
            raise r.error("native.name", f"{name!r} is not a free tool name")
        ctx.names.used.add(name)
    lt.type = kind
    model = TOOL_MODELS.get(kind)
    first, pf = group[0]["name"], group[0].get("pass_fail")
    if kind == "math":
        boolean = parse_expr(str(group[0].get("expr", ""))).is_boolean
        lt.spec.update(operation=view["operation"], formula=view["formula"], boolean=boolean)
    elif kind in TRANSLATORS:  # the legacy translation of the view gives what results need (no names)
        scratch = _Context(ctx.ids)
        scratch.done = ctx.done
        try:
            TRANSLATORS[kind](_Reader(r.index, r.name, view), lt, scratch)
        except LegacyToolError:  # a native value the legacy model cannot hold: report it natively
            lt.spec = {"native_only": True}
    if kind not in TRANSLATORS or lt.spec.get("native_only"):
        lt.spec.update(native_only=True, filter=model is not None and model.FILTER)
    lt.judged = isinstance(pf, dict) or kind == "locate" or bool(lt.spec.get("boolean"))
    if isinstance(pf, dict):
        lt.spec["pass_expr"] = _limits_expr(first, pf)
    elif kind == "locate":
        lt.spec["pass_expr"] = f"{first}.found"
    else:
        lt.spec["pass_expr"] = f"({first}.value != 0)" if lt.spec.get("boolean") else None
    return group


TRANSLATORS: dict[str, Translator] = {
    "grayscale": _grayscale,
    "blur": _blur,
    "threshold": _threshold,
    "morphology": _morphology,
    "blob": _blob,
    "math": _math,
    "locate": _locate,
}


def _limits_expr(ref: str, pass_fail: Mapping[str, Any]) -> str:
    parts = []
    for measure, lim in (("value", pass_fail), *(pass_fail.get("measures") or {}).items()):
        for key, op in (("min", ">="), ("max", "<=")):
            if lim.get(key) is not None:
                parts.append(f"{ref}.{measure} {op} {float(lim[key])!r}")
    return f"({' and '.join(parts)})" if parts else "1"


def translate(tools: list[Any]) -> Translation:
    """The legacy tool list (as the old orchestrator sends it) -> native tools.

    Unknown tool types are refused with LegacyToolError (the old machine silently skipped them,
    so a typo ran an inspection without that tool), as are values lens cannot honour. Duplicate
    `id`s are refused (the old machine kept only the last result of each id).
    """
    if not isinstance(tools, list):
        raise LegacyToolError(f"tools: must be a list of tool objects, not {type(tools).__name__}")
    readers: list[_Reader] = []
    ids: list[int] = []
    for i, cfg in enumerate(tools):
        name = str(cfg.get("name") or "") if isinstance(cfg, dict) else ""
        r = _Reader(i, name or "?", cfg if isinstance(cfg, dict) else {})
        if not isinstance(cfg, dict):
            raise r.error("", f"must be an object, not {type(cfg).__name__}")
        tool_id = _integer(cfg["id"], r, "id") if cfg.get("id") not in (None, "") else i
        if tool_id in ids:
            twin = ids.index(tool_id)
            raise r.error("id", f"{tool_id} is also the id of tools[{twin}] ({readers[twin].name})")
        readers.append(r)
        ids.append(tool_id)
    ctx = _Context(ids)
    natives: list[dict[str, Any]] = []
    for r, tool_id in zip(readers, ids, strict=True):
        cfg = r.cfg
        kind = str(cfg.get("type") or "").strip().lower()
        group = cfg.get("native")
        group = [group] if isinstance(group, dict) else group
        if not (isinstance(group, list) and group and all(isinstance(t, dict) for t in group)):
            group = None
        name = r.name if r.name != "?" else f"{kind}_{tool_id}"
        lt = LegacyTool(dict(cfg), tool_id, name, kind, r.flag("inspec_pass_fail", False), [], r.index)
        produced = _passthrough(r, lt, ctx, group) if group is not None else None
        if produced is None:
            if kind not in TRANSLATORS:
                raise r.error(
                    "type", f"unknown tool type {cfg.get('type')!r} (known: {', '.join(TRANSLATORS)})"
                )
            produced = TRANSLATORS[kind](r, lt, ctx)
        for tool in produced:
            _check_native(r, tool)
        lt.native = [t["name"] for t in produced]
        ctx.done.append(lt)
        natives.extend(produced)
    return Translation(ctx.done, {"tools": natives})


def _check_native(r: _Reader, tool: Mapping[str, Any]) -> None:
    """Validate one produced native tool, so a bad value is the legacy tool's error, not a reload's."""
    model = TOOL_MODELS.get(str(tool.get("type")))
    if model is None:
        raise r.error("native.type", f"unknown native tool type {tool.get('type')!r}")
    try:
        model.model_validate(tool)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise r.error("native" + (f".{where}" if where else ""), first["msg"]) from None


# --- native results -> legacy results ------------------------------------------------------------


def _legacy_roi_shift(roi: Any, dx: int, dy: int) -> Any:
    """The legacy ROI moved by (dx, dy), in its own shape (for debug.roi_debug.roi_after)."""
    if not isinstance(roi, dict) or (dx, dy) == (0, 0):
        return roi
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in roi.items()}
    shape = str(out.get("shape") or "")
    inner = (
        out.get(shape) if shape in ("rect", "circle", "ellipse") and isinstance(out.get(shape), dict) else out
    )
    keys = ("cx", "cy") if shape in ("circle", "ellipse") else ("x", "y")
    for key, d in zip(keys, (dx, dy), strict=True):
        v = _number(inner.get(key))
        inner[key] = _half_up((v or 0.0) + d)
    return out


class _Frame:
    """Effective ROIs: native rois resolved against the frame size (if known) and the shift."""

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size
        self.shift = (0, 0)

    def box(self, roi: dict[str, Any] | None) -> tuple[int, int, int, int] | None:
        w, h = self.size or (1 << 30, 1 << 30)
        model = _ROI.validate_python(roi or {})
        bx0, by0, bx1, by1 = model.bbox(w, h)
        open_w = isinstance(model, RectRoi) and model.w is None
        open_h = isinstance(model, RectRoi) and model.h is None
        dx, dy = self.shift
        box = clip((bx0 + dx, by0 + dy, bx1 + (0 if open_w else dx), by1 + (0 if open_h else dy)), w, h)
        if box is None or (self.size is None and (open_w or open_h)):
            return None if box is None else (box[0], box[1], -1, -1)
        return box


def _common(
    lt: LegacyTool, tools: Mapping[str, Any], frame: _Frame, roi: dict[str, Any] | None
) -> dict[str, Any]:
    results = [tools[n] for n in lt.native]
    passed = all(bool(t.get("pass")) for t in results)
    out: dict[str, Any] = {
        "tool_id": lt.tool_id,
        "tool_name": lt.name,
        "tool_type": lt.type,
        "status": "success",
        "image_modified": bool(lt.spec["filter"]) if "filter" in lt.spec else lt.type in FILTERS,
        "pass_fail": passed if lt.judged else (None if passed else False),
        "processing_time_ms": round(sum(float(t.get("elapsed_us", 0.0)) for t in results) / 1000.0, 4),
    }
    box = frame.box(roi)
    if box is not None and box[2] > box[0] and box[3] > box[1]:
        out["ROI"] = {
            "shape": "rect",
            "rect": {"x": box[0], "y": box[1], "w": box[2] - box[0], "h": box[3] - box[1]},
        }
    dx, dy = frame.shift
    offset = (
        {"dx": float(dx), "dy": float(dy), "dtheta_deg": 0.0, "rotate": False} if (dx, dy) != (0, 0) else None
    )
    roi_before = lt.config.get("ROI") or {}
    debug: dict[str, Any] = {
        "roi_debug": {
            "transform_present": offset is not None,
            "roi_before": roi_before,
            "roi_after": _legacy_roi_shift(roi_before, dx, dy),
            "applied_offset": offset,
        }
    }
    if not out["image_modified"]:
        debug["roi_transform"] = {"applied": offset is not None, "offset": offset}
    out["debug"] = debug
    return out


def _blob_fields(
    lt: LegacyTool, t: Mapping[str, Any], box: tuple[int, int, int, int] | None
) -> dict[str, Any]:
    m = t.get("measures") or {}
    x0, y0 = (box[0], box[1]) if box is not None else (0, 0)
    blobs = []
    for b in t.get("blobs") or []:
        bx, by, bw, bh = int(b["x"]) - x0, int(b["y"]) - y0, int(b["w"]), int(b["h"])
        corners = [[bx, by], [bx + bw - 1, by], [bx + bw - 1, by + bh - 1], [bx, by + bh - 1], [bx, by]]
        blobs.append(
            {
                "area": float(b["area"]),
                "centroid": [int(b["cx"] - x0), int(b["cy"] - y0)],
                "bounding_box": [bx, by, bw, bh],
                "contour": corners,
            }
        )
    count, total = int(m.get("count", t.get("value") or 0)), float(m.get("total_area", 0))
    tests: dict[str, Any] = {}
    for test, actual, as_type in (("total_area_test", total, float), ("blob_count_test", count, int)):
        if test in lt.spec.get("tests", {}):
            lo, hi = lt.spec["tests"][test]
            tests[test] = {
                "passed": lo <= actual <= hi,
                "min": as_type(lo),
                "max": None if math.isinf(hi) else as_type(hi),
                "actual": as_type(actual),
            }
    if tests:
        tests["overall_pass"] = all(v["passed"] for v in tests.values())
    return {
        "blobs": blobs,
        "blob_count": count,
        "total_area": total,
        "roi_area": float(m.get("roi_area", 0)),
        "test_results": tests,
    }


def _locate_fields(lt: LegacyTool, t: Mapping[str, Any], frame: _Frame) -> dict[str, Any]:
    s, m = lt.spec, t.get("measures") or {}
    dx, dy = frame.shift
    p0, p1 = (s["p0"][0] + dx, s["p0"][1] + dy), (s["p1"][0] + dx, s["p1"][1] + dy)
    out: dict[str, Any] = {
        "edges": [],
        "edge_count": 0,
        "primary_point": None,
        "primary_angle_deg": None,
        "reference": None,
        "result": None,
        "offset": None,
        "rotate": s["rotate"],
        "apply_transform": s["apply_transform"],
        "arrow": {"p0": {"x": p0[0], "y": p0[1]}, "p1": {"x": p1[0], "y": p1[1]}},
    }
    if not m.get("found"):
        return out
    x, y, strength = float(m["x"]), float(m["y"]), float(m["strength"])
    sign = 1.0 if strength >= 0 else -1.0  # the gradient points along the arrow on a rising edge
    angle = _angle(math.degrees(math.atan2(sign * s["uy"], sign * s["ux"])) + 90.0)
    polarity = "dark_to_light" if strength >= 0 else "light_to_dark"
    out["edges"] = [
        {
            "x": x,
            "y": y,
            "angle_deg": angle,
            "polarity": polarity,
            "strength": abs(strength),
            "t": float(m["position"]) / s["length"],
        }
    ]
    out.update(
        edge_count=1,
        primary_point={"x": x, "y": y},
        primary_angle_deg=angle,
        result={"x": x, "y": y, "angle_deg": angle},
    )
    ref = s["reference"]
    if ref is not None:
        out["reference"] = dict(ref)
        d_angle = _angle(angle - ref["angle_deg"])
        out["offset"] = {
            "x": x - ref["x"],
            "y": y - ref["y"],
            "angle_deg": d_angle if s["rotate"] else ref["angle_deg"],
        }
    if s["shift"]:
        off = float(m.get("offset", 0.0))
        frame.shift = (dx + round(off * s["ux"]), dy + round(off * s["uy"]))
    return out


def _math_fields(lt: LegacyTool, t: Mapping[str, Any]) -> dict[str, Any]:
    value = t.get("value")
    result: Any = float(value) if value is not None else None
    if lt.spec["boolean"] and result is not None:
        result = bool(result)
    return {
        "reference_tool_id": lt.config.get("reference_tool_id"),
        "operation": lt.spec["operation"],
        "formula": lt.spec["formula"],
        "result": result,
    }


def _error_result(lt: LegacyTool, message: str) -> dict[str, Any]:
    return {
        "tool_id": lt.tool_id,
        "tool_name": lt.name,
        "tool_type": lt.type,
        "status": "error",
        "error": message,
        "pass_fail": False if lt.judged else None,
        "processing_time_ms": 0.0,
    }


def legacy_results(
    translation: Translation, envelope: Mapping[str, Any], *, frame_size: tuple[int, int] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A native result envelope -> (`tool_results` in legacy order, `inspection_summary`).

    `frame_size` (width, height) makes the effective `ROI` of whole-frame tools exact; without it
    they have no `ROI` field (the old machine left it out when it had no size). Blob contours are
    the blob's bounding-box corners (lens finds components, not contours), closed. Times: each
    tool's `processing_time_ms` is its native elapsed time; `total_processing_time_ms` (and
    `total_time_ms`, the same value) is the sum over the tools, `overhead_time_ms` 0. An error
    envelope (no tool results) gives every tool status "error" and overall_pass false.
    """
    tools = envelope.get("tools") or {}
    error = envelope.get("error")
    frame = _Frame(frame_size)
    results: list[dict[str, Any]] = []
    configs = {t["name"]: t for t in translation.native["tools"]}
    for lt in translation.tools:
        missing = [n for n in lt.native if n not in tools]
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else None
            results.append(_error_result(lt, str(message or error)))
            continue
        if missing:
            results.append(_error_result(lt, f"no result for native tool(s) {', '.join(missing)}"))
            continue
        roi = configs[lt.native[0]].get("roi") if lt.native else _roi_or_none(lt)
        out = _common(lt, tools, frame, roi)
        first = tools[lt.native[0]] if lt.native else {}
        if lt.spec.get("native_only"):
            out.update(value=first.get("value"), measures=first.get("measures", {}))
        elif lt.type == "blob":
            out.update(_blob_fields(lt, first, frame.box(roi)))
        elif lt.type == "math":
            out.update(_math_fields(lt, first))
        elif lt.type == "locate":
            out.update(_locate_fields(lt, first, frame))
        results.append(out)
    judged = [r["pass_fail"] for r in results if r.get("pass_fail") is not None]
    tools_ms = round(sum(r["processing_time_ms"] for r in results), 4)
    ok = error is None and all(judged) and bool(envelope.get("pass", True))
    summary = {
        "total_tools": len(results),
        "successful_tools": sum(r["status"] == "success" for r in results),
        "failed_tools": sum(r["status"] == "error" for r in results),
        "pass_fail_tools": len(judged),
        "passed_tests": sum(bool(p) for p in judged),
        "overall_pass": ok,
        "total_processing_time_ms": tools_ms,
        "total_time_ms": tools_ms,
        "tools_processing_time_ms": tools_ms,
        "overhead_time_ms": 0.0,
    }
    return results, summary


def _roi_or_none(lt: LegacyTool) -> dict[str, Any] | None:
    """The native roi of a legacy tool that has no native tool (a morphology with nothing to do)."""
    try:
        return _roi(_Reader(lt.index, lt.name, lt.config))
    except LegacyToolError:
        return None


# --- native config -> legacy view ----------------------------------------------------------------


def _legacy_roi(roi: Mapping[str, Any] | None) -> dict[str, Any]:
    if not roi:
        return {}
    shape = roi.get("shape", "rect")
    if shape == "circle":
        return {"shape": "circle", "circle": {k: roi[k] for k in ("cx", "cy", "r")}}
    if shape == "ellipse":
        return {
            "shape": "ellipse",
            "ellipse": {
                "cx": roi["cx"],
                "cy": roi["cy"],
                "rx": roi["rx"],
                "ry": roi["ry"],
                "angle": roi.get("angle", 0.0),
            },
        }
    rect = {k: roi[k] for k in ("x", "y", "w", "h") if roi.get(k) is not None}
    rect.setdefault("x", 0)
    rect.setdefault("y", 0)
    return {} if rect == {"x": 0, "y": 0} else {"shape": "rect", "rect": rect}


def _to_legacy(tool: Mapping[str, Any], ids: Mapping[str, int]) -> dict[str, Any] | None:
    """The legacy parameters of one native tool, or None when its type (or method) has none. Lossy
    where the legacy model is coarser (blob max_blobs, locate sigma as smooth_ksize, limits that
    only a native tool has), which is why `native_to_legacy` also keeps the native tool."""
    kind, p = tool.get("type"), dict(tool.get("params") or {})
    pf = tool.get("pass_fail") or {}
    method = tool.get("method")
    if kind == "grayscale":
        return {"method": method or "luminance", "normalize": bool(p.get("normalize", False))}
    if kind == "blur":
        return {"method": method or "gaussian", "ksize": p.get("ksize", 5), "sigma": p.get("sigma", 0.0)}
    if kind == "threshold":
        lo, hi = p.get("th_min", 128), p.get("th_max", 255)
        if method == "otsu":
            return {"mode": "otsu"}
        if method == "range":
            return {"mode": "range", "th_min": lo, "th_max": hi}
        empty = p.get("invert") and lo == 0
        return {"mode": "binary", "th_min": 255 if empty else max(0, lo - 1), "th_max": 255}
    if kind == "morphology" and (method or "open") in ("open", "close"):
        its = p.get("iterations", 1)
        opens = (method or "open") == "open"
        return {"kernel": p.get("ksize", 3), "shape": p.get("shape", "rect"), "open": its if opens else 0,
                "close": 0 if opens else its}  # fmt: skip
    if kind == "blob":
        empty = p.get("area_min", 0) >= EMPTY_AREA
        out: dict[str, Any] = {
            "th_min": 255 if empty else max(0, p.get("th_min", 128) - 1),
            "th_max": 255,
            "area_min": 0 if empty else p.get("area_min", 0),
            "area_max": UNLIMITED if p.get("area_max") is None else p["area_max"],
            "total_area_test": False,
            "blob_count_test": False,
        }
        if pf.get("min") is not None or pf.get("max") is not None:
            out.update(blob_count_test=True, test_blob_count_min=pf.get("min") or 0,
                       test_blob_count_max=UNLIMITED if pf.get("max") is None else pf["max"])  # fmt: skip
        area = (pf.get("measures") or {}).get("total_area")
        if area is not None:
            out.update(total_area_test=True, test_total_area_min=area.get("min") or 0,
                       test_total_area_max=UNLIMITED if area.get("max") is None else area["max"])  # fmt: skip
        return out
    if kind == "math":
        expr = str(tool.get("expr", ""))
        for op, top in (("area_ratio", "total_area"), ("blob_density", "count")):
            m = re.fullmatch(rf"(\w+)\.{top} / (\w+)\.roi_area", expr)
            if m and m.group(1) == m.group(2) and m.group(1) in ids:
                return {"operation": op, "reference_tool_id": ids[m.group(1)], "formula": ""}
        return {"operation": "custom_formula", "formula": expr, "custom_formula": expr}
    if kind == "locate":
        p0, p1 = p["p0"], p["p1"]
        length = math.hypot(p1[0] - p0[0], p1[1] - p0[1])
        sigma = float(p.get("sigma", 1.0))
        out = {
            "arrow": {"p0": {"x": p0[0], "y": p0[1]}, "p1": {"x": p1[0], "y": p1[1]}},
            "threshold": p.get("threshold", 20.0),
            "polaridade": _POLARIDADE.get(p.get("polarity", "any"), "any"),
            "edge_select": p.get("select", "first"),
            "smooth_ksize": 1 if sigma <= 0 else max(3, 2 * round((sigma - 0.8) / 0.3 + 1) + 1),
            "apply_transform": bool(p.get("shift_rois")),
            "rotate": False,
            "reference": None,
        }  # fmt: skip
        if p.get("reference") is not None and length > 0:
            t = float(p["reference"]) / length
            out["reference"] = {"x": p0[0] + t * (p1[0] - p0[0]), "y": p0[1] + t * (p1[1] - p0[1]),
                                "angle_deg": 0.0}  # fmt: skip
        return out
    return None


def _morph_pair(a: Mapping[str, Any], b: Mapping[str, Any] | None) -> bool:
    """A native open followed by a close that one legacy morphology tool makes (<x>_open, <x>_close)."""
    if b is None or (a.get("type"), b.get("type")) != ("morphology", "morphology"):
        return False
    name = str(a.get("name"))
    return (
        (a.get("method", "open"), b.get("method")) == ("open", "close")
        and name.endswith("_open")
        and b.get("name") == name[:-5] + "_close"
        and a.get("roi") == b.get("roi")
        and a.get("pass_fail") is None is b.get("pass_fail")
        and {k: v for k, v in (a.get("params") or {}).items() if k != "iterations"}
        == {k: v for k, v in (b.get("params") or {}).items() if k != "iterations"}
    )


def _view(group: list[Mapping[str, Any]], ids: Mapping[str, int], tool_id: int) -> dict[str, Any]:
    """The legacy view of one legacy tool's native tools (one, or a morphology open + close)."""
    tool = group[0]
    name = str(tool.get("name"))
    entry: dict[str, Any] = {
        "id": tool_id,
        "name": name[:-5] if len(group) == 2 else name,
        "type": tool.get("type"),
        "ROI": _legacy_roi(tool.get("roi")),
        "inspec_pass_fail": tool.get("pass_fail") is not None or tool.get("type") == "locate",
    }
    entry.update(_to_legacy(tool, ids) or {})
    if len(group) == 2:
        entry["close"] = (_to_legacy(group[1], ids) or {}).get("close", 0)
    return entry


def _unchanged(cfg: Mapping[str, Any], view: Mapping[str, Any]) -> bool:
    """Whether a legacy tool still says what `native_to_legacy` showed (id aside)."""
    for key, shown in view.items():
        sent = cfg.get(key)
        if key == "id" or (key == "ROI" and (sent or {}) == shown):
            continue
        if sent != shown:
            return False
    return True


def native_to_legacy(native_inspection: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A legacy view of a native inspection section (e.g. after tools changed through /api/v1).

    Each entry has the legacy keys of its type (best effort: lossy where the legacy model is
    coarser) and `native`: the native tool(s) it shows (a native open followed by a close named
    <x>_open, <x>_close are one morphology <x>); `translate` uses `native` as is while the legacy
    keys are unchanged, and translates the legacy keys once someone edits them, so a GET-PUT round
    trip is exact and an edit is honoured. Native-only types (edge_detection, pattern_matching,
    custom) have only the common keys; a client that drops `native` cannot send them back. Ids are
    list indices.
    """
    natives = [dict(t) for t in native_inspection.get("tools") or []]
    out: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    i = 0
    while i < len(natives):
        nxt = natives[i + 1] if i + 1 < len(natives) else None
        group = natives[i : i + (2 if _morph_pair(natives[i], nxt) else 1)]
        out.append({**_view(group, ids, len(out)), "native": group})
        ids.update({str(t.get("name")): len(out) - 1 for t in group})
        i += len(group)
    return out
