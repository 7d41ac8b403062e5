"""Native results seen as the old machine's: a result envelope -> `tool_results` in legacy order
and `inspection_summary` (SPEC §4b "Results")."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lens.config.tools import clip
from lens.control.legacy.model import FILTERS, LegacyTool, LegacyToolError, Translation
from lens.control.legacy.reading import Reader, half_up, native_roi, norm_angle, number, read_roi, roi_parts


def _legacy_roi_shift(roi: Any, dx: int, dy: int) -> Any:
    """The legacy ROI moved by (dx, dy), in its own shape (for debug.roi_debug.roi_after)."""
    if not isinstance(roi, dict) or (dx, dy) == (0, 0):
        return roi
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in roi.items()}
    shape, inner, _ = roi_parts(out)
    keys = ("cx", "cy") if shape in ("circle", "ellipse") else ("x", "y")
    for key, d in zip(keys, (dx, dy), strict=True):
        v = number(inner.get(key))
        inner[key] = half_up((v or 0.0) + d)
    return out


def _identity(lt: LegacyTool) -> dict[str, Any]:
    return {"tool_id": lt.tool_id, "tool_name": lt.name, "tool_type": lt.type}


class _Frame:
    """Effective ROIs: native rois resolved against the frame size (if known) and the shift."""

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size
        self.shift = (0, 0)

    def box(self, roi: dict[str, Any] | None) -> tuple[int, int, int, int] | None:
        w, h = self.size or (1 << 30, 1 << 30)
        model, open_w, open_h = native_roi(roi)
        bx0, by0, bx1, by1 = model.bbox(w, h)
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
        **_identity(lt),
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
    angle = norm_angle(math.degrees(math.atan2(sign * s["uy"], sign * s["ux"])) + 90.0)
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
        d_angle = norm_angle(angle - ref["angle_deg"])
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
        **_identity(lt),
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
        return read_roi(Reader(lt.index, lt.name, lt.config))
    except LegacyToolError:
        return None
