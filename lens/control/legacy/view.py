"""Native tools seen as the old machine's tool JSON (`GET /api/inspection_config` after the tools
changed through /api/v1), and the test `translate` uses to take such an entry back as it is."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from lens.control.legacy.model import EMPTY_AREA, UNLIMITED

_POLARIDADE = {"any": "any", "rising": "dark_to_light", "falling": "light_to_dark"}


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


def legacy_view(group: list[Mapping[str, Any]], ids: Mapping[str, int], tool_id: int) -> dict[str, Any]:
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


def unchanged(cfg: Mapping[str, Any], view: Mapping[str, Any]) -> bool:
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
        out.append({**legacy_view(group, ids, len(out)), "native": group})
        ids.update({str(t.get("name")): len(out) - 1 for t in group})
        i += len(group)
    return out
