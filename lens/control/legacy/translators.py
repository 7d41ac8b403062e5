"""The old machine's tool types as native tools, one function per legacy type (SPEC §4b).

Each translator reads one legacy tool (`Reader`), fills in what results need (`LegacyTool.judged`,
`.spec`) and returns the native tools it became. Unknown keys are ignored (the online editor sends
every parameter of every type). Where lens behaves differently from the old machine, the function
says so in its docstring; the list is in the README ("Replacing an AnalyticLens Flask machine").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from lens.config.tools import TOOL_MODELS
from lens.control.legacy.model import EMPTY_AREA, MAX_BLOBS, Context, LegacyTool, limits_expr, slug
from lens.control.legacy.reading import COORD, Reader, norm_angle, read_roi, roi_box
from lens.inspect.expr import ExprError, parse_expr

Translator = Callable[[Reader, LegacyTool, Context], list[dict[str, Any]]]


def _base(
    lt: LegacyTool, ctx: Context, roi: dict[str, Any] | None, suffix: str = "", **fields: Any
) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": ctx.names.take((slug(lt.name) or lt.type) + suffix, lt.tool_id),
        **fields,
    }
    if roi is not None:
        tool["roi"] = roi
    return tool


def _grayscale(r: Reader, lt: LegacyTool, ctx: Context) -> list[dict[str, Any]]:
    """`method` luminance|average|weighted (unknown: luminance, as the old machine); `normalize`
    as sent. When `normalize` is absent the old machine's default applies: true (histogram
    equalisation) — the orchestrator's UI and Django send false explicitly. `weighted` is ITU-R
    BT.709 in lens (the old machine weighted B, G, R by 0.3, 0.5, 0.2)."""
    method = r.word("method", "luminance", {m: m for m in ("luminance", "average", "weighted")}, "luminance")
    params = {"normalize": r.flag("normalize", True)}
    return [_base(lt, ctx, read_roi(r), type="grayscale", method=method, params=params)]


def _blur(r: Reader, lt: LegacyTool, ctx: Context) -> list[dict[str, Any]]:
    """`method` gaussian|median (unknown: gaussian); `ksize` forced odd >= 3 as the old machine
    (max(3, k | 1)), at most 99; `sigma` >= 0 (negative = 0: from ksize, as OpenCV)."""
    method = "median" if str(r.cfg.get("method") or "").strip().lower() == "median" else "gaussian"
    k = max(3, int(r.number("ksize", 3)) | 1)
    if k > 99:
        raise r.error("ksize", f"must be at most 99 in lens, not {r.cfg.get('ksize')!r}")
    sigma = max(0.0, r.number("sigma", 0.0, hi=100))
    return [_base(lt, ctx, read_roi(r), type="blur", method=method, params={"ksize": k, "sigma": sigma})]


def _threshold(r: Reader, lt: LegacyTool, ctx: Context) -> list[dict[str, Any]]:
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
    return [_base(lt, ctx, read_roi(r), type="threshold", method=method, params=params)]


def _morphology(r: Reader, lt: LegacyTool, ctx: Context) -> list[dict[str, Any]]:
    """`kernel` (odd >= 3 as the old machine, at most 51), `open` and `close` iterations (at most 20
    each; <= 0 = off), `shape` ellipse|rect|cross (unknown: ellipse) -> a native `open` tool then a
    native `close` tool (named <name>_open, <name>_close when both), or no native tool at all."""
    k = max(3, int(r.number("kernel", 3)) | 1)
    if k > 51:
        raise r.error("kernel", f"must be at most 51 in lens, not {r.cfg.get('kernel')!r}")
    shape = r.word("shape", "ellipse", {s: s for s in ("ellipse", "rect", "cross")}, "ellipse")
    ops = [(op, int(r.number(op, 0, hi=20))) for op in ("open", "close")]
    ops = [(op, n) for op, n in ops if n > 0]
    roi = read_roi(r)
    params = [{"ksize": k, "shape": shape, "iterations": n} for _, n in ops]
    return [
        _base(lt, ctx, roi, f"_{op}" if len(ops) == 2 else "", type="morphology", method=op, params=p)
        for (op, _), p in zip(ops, params, strict=True)
    ]


def _limit(v: float) -> float | None:
    return None if math.isinf(v) else v


def _blob(r: Reader, lt: LegacyTool, ctx: Context) -> list[dict[str, Any]]:
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
    tool = _base(lt, ctx, read_roi(r), type="blob", params=params)
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
        lt.spec["pass_expr"] = limits_expr(tool["name"], pf)
    return [tool]


def _locate(r: Reader, lt: LegacyTool, ctx: Context) -> list[dict[str, Any]]:
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
    roi = read_roi(r)
    arrow = r.cfg.get("arrow")
    if not arrow and isinstance(r.cfg.get("ROI"), dict):
        arrow = r.cfg["ROI"].get("arrow")
    if arrow is not None and not isinstance(arrow, dict):
        raise r.error("arrow", f"must be an object {{p0: {{x, y}}, p1: {{x, y}}}}, not {arrow!r}")
    arrow = arrow or {}
    box = roi_box(roi) if roi is not None else None

    def point(key: str, fx: float) -> list[float]:
        p = arrow.get(key) or {}
        if not isinstance(p, dict):
            raise r.error(f"arrow.{key}", f"must be an object {{x, y}}, not {p!r}")
        if (p.get("x") is None or p.get("y") is None) and box is None:
            raise r.error(f"arrow.{key}", "required when the ROI is not a shape of known size")
        x0, y0, x1, y1 = box or (0, 0, 0, 0)
        xy = []
        for k, default in (("x", x0 + fx * (x1 - x0)), ("y", (y0 + y1) / 2)):
            v = r.number(k, default, -COORD, COORD, src=p, path=f"arrow.{key}.{k}")
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
        rx = r.number("x", 0, -COORD, COORD, src=ref, path="reference.x")
        ry = r.number("y", 0, -COORD, COORD, src=ref, path="reference.y")
        angle = norm_angle(r.number(angle_key, 0.0, src=ref, path=f"reference.{angle_key}"))
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
_SELECT = {"strongest": "strongest", "first": "first", "closest_to_mid": "strongest", "last": "last"}


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


def _formula(r: Reader, key: str, text: str, ref: LegacyTool) -> str:
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


def _math(r: Reader, lt: LegacyTool, ctx: Context) -> list[dict[str, Any]]:
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
    ref_id = r.integer(raw_ref, "reference_tool_id")
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


TRANSLATORS: dict[str, Translator] = {
    "grayscale": _grayscale,
    "blur": _blur,
    "threshold": _threshold,
    "morphology": _morphology,
    "blob": _blob,
    "math": _math,
    "locate": _locate,
}
