"""The legacy (AnalyticLens Flask machine) tool JSON <-> native tools, on real images and the real chain."""

from __future__ import annotations

import math
import re
from typing import Any

import cv2
import numpy as np
import pytest

from lens.capture.sources.synthetic import SyntheticScene
from lens.config.models import InspectionConfig
from lens.control.legacy.model import LegacyToolError, Translation
from lens.control.legacy.results import legacy_results
from lens.control.legacy.toollist import ToolListError, parse_id, remove_tool, tool_ids, upsert_tool
from lens.control.legacy.tools import translate
from lens.control.legacy.view import native_to_legacy
from lens.inspect.runner import ToolChain

SEED = 31  # the synthetic scenes below come from this seed


def run(tr: Translation, frame: np.ndarray) -> dict[str, Any]:
    """The native envelope part legacy_results reads: tool results and the overall pass."""
    cfg = InspectionConfig.model_validate(tr.native)
    tools, passed = ToolChain(cfg).run(frame)
    return {"tools": tools, "pass": passed}


def native_run(tools: list[dict[str, Any]], frame: np.ndarray) -> dict[str, Any]:
    return ToolChain(InspectionConfig.model_validate({"tools": tools})).run(frame)[0]


def opencv_blob_count(gray: np.ndarray, th_min: float, area_min: float, area_max: float) -> int:
    """What the old machine counted: cv2.threshold (> th_min) + external contours, contour-area filter."""
    _, binary = cv2.threshold(gray, th_min, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return sum(area_min <= cv2.contourArea(c) <= area_max for c in contours)


def squares() -> np.ndarray:
    """200x160 gray: three bright squares (areas 100, 400, 36) on a dark background."""
    img = np.full((160, 200), 30, np.uint8)
    img[40:50, 40:50] = 220  # 10x10
    img[60:80, 100:120] = 200  # 20x20
    img[120:126, 150:156] = 250  # 6x6
    return img


# --- translation ---------------------------------------------------------------------------------

EVERY_TYPE: list[dict[str, Any]] = [
    {"id": 1, "name": "Cinza", "type": "grayscale", "ROI": {}, "method": "average"},
    {"id": 2, "name": "Suave", "type": "blur", "method": "median", "ksize": 4.0, "sigma": "0"},
    {"id": 3, "name": "Limiar", "type": "threshold", "mode": "range", "th_min": 100, "th_max": 90},
    {"id": 4, "name": "Morf", "type": "morphology", "kernel": 4, "open": 2, "close": "1", "shape": "cross"},
    {"id": 5, "name": "Nada", "type": "morphology", "open": 0, "close": 0},
    {
        "id": 6,
        "name": "Peças 1",
        "type": "blob",
        "inspec_pass_fail": True,
        "th_min": 127.5,
        "area_min": 2.2,
        "area_max": "Infinity",
        "blob_count_test": True,
        "test_blob_count_min": 1,
        "test_blob_count_max": 1e12,
        "ROI": {"shape": "circle", "circle": {"cx": 100.4, "cy": 80, "r": 60}},
    },
    {
        "id": 7,
        "name": "Razão",
        "type": "math",
        "operation": "area_ratio",
        "reference_tool_id": "6",
        "inspec_pass_fail": True,
    },
    {
        "id": 8,
        "name": "Borda",
        "type": "locate",
        "inspec_pass_fail": True,
        "ROI": {"shape": "ellipse", "ellipse": {"cx": 100, "cy": 80, "rx": 50, "ry": 20, "angle": 370}},
        "polaridade": "light_to_dark",
        "edge_select": "closest_to_mid",
        "smooth_ksize": 7,
    },
]


def test_every_legacy_type_translates_to_a_valid_native_config() -> None:
    tr = translate(EVERY_TYPE)
    cfg = InspectionConfig.model_validate(tr.native)
    assert [t.name for t in cfg.tools] == [
        "Cinza",
        "Suave",
        "Limiar",
        "Morf_open",
        "Morf_close",
        "Pecas_1",
        "Razao",
        "Borda",
    ]
    assert [(t.tool_id, t.type, t.native) for t in tr.tools] == [
        (1, "grayscale", ["Cinza"]),
        (2, "blur", ["Suave"]),
        (3, "threshold", ["Limiar"]),
        (4, "morphology", ["Morf_open", "Morf_close"]),
        (5, "morphology", []),
        (6, "blob", ["Pecas_1"]),
        (7, "math", ["Razao"]),
        (8, "locate", ["Borda"]),
    ]
    assert tr.tools[0].config is not EVERY_TYPE[0] and tr.tools[0].config == EVERY_TYPE[0]
    n = {t["name"]: t for t in tr.native["tools"]}
    # the old machine's default normalize (true) when the key is absent
    assert n["Cinza"] == {
        "name": "Cinza",
        "type": "grayscale",
        "method": "average",
        "params": {"normalize": True},
    }
    assert n["Suave"]["params"] == {"ksize": 5, "sigma": 0.0} and n["Suave"]["method"] == "median"
    # range with th_max below th_min: the old machine raised th_max to th_min
    assert (n["Limiar"]["method"], n["Limiar"]["params"]) == ("range", {"th_min": 100, "th_max": 100})
    assert n["Morf_open"]["params"] == {"ksize": 5, "shape": "cross", "iterations": 2}
    assert (n["Morf_close"]["method"], n["Morf_close"]["params"]["iterations"]) == ("close", 1)
    blob = n["Pecas_1"]
    assert blob["roi"] == {"shape": "circle", "cx": 100, "cy": 80, "r": 60}
    assert blob["params"] == {"th_min": 128, "th_max": 255, "area_min": 3, "max_blobs": 10000}
    assert blob["pass_fail"] == {"min": 1.0, "max": None}
    assert n["Razao"] == {
        "name": "Razao",
        "type": "math",
        "expr": "Pecas_1.total_area / Pecas_1.roi_area",
        "pass_fail": {"min": 0.1, "max": 0.9},
    }
    loc = n["Borda"]
    assert loc["roi"]["angle"] == 10.0
    assert loc["params"]["polarity"] == "falling" and loc["params"]["select"] == "strongest"
    assert loc["params"]["sigma"] == pytest.approx(1.4)  # OpenCV's sigma for a 7-tap kernel
    # default line: through the ROI's centre, 10 % to 90 % of its (bounding box) width
    x0, y0, x1, y1 = cfg.tools[-1].roi.bbox(0, 0)
    assert loc["params"]["p0"] == [x0 + 0.1 * (x1 - x0), (y0 + y1) / 2]
    assert loc["params"]["p1"] == [x0 + 0.9 * (x1 - x0), (y0 + y1) / 2]


@pytest.mark.parametrize(
    ("roi", "native"),
    [
        (None, None),
        ({}, None),
        (
            {"shape": "rect", "rect": {"x": 10.0, "y": 10.6, "w": "100", "h": 50.4}},
            {"x": 10, "y": 11, "w": 100, "h": 50},
        ),
        ({"x": 5, "y": 6, "w": 7, "h": 8}, {"x": 5, "y": 6, "w": 7, "h": 8}),
        ({"shape": "rect", "x": 5, "y": 6, "w": 7, "h": 8}, {"x": 5, "y": 6, "w": 7, "h": 8}),
        ({"shape": "polygon", "x": 5, "y": 6, "w": 7, "h": 8}, {"x": 5, "y": 6, "w": 7, "h": 8}),
        ({"shape": "rect", "rect": {"x": 40, "y": 30}}, {"x": 40, "y": 30}),
        ({"shape": "rect", "rect": {"x": 40, "y": 30, "h": 20}}, {"x": 40, "y": 30, "h": 20}),
        ({"shape": "rect", "rect": {"x": 0, "y": 0, "w": 0, "h": 0}}, None),  # the online editor's "no ROI"
        ({"x": 50, "y": 50, "w": -5, "h": 10}, None),
        ({"x": -10, "y": -3.2, "w": 50, "h": 20}, {"x": 0, "y": 0, "w": 50, "h": 20}),
        (
            {"shape": "circle", "circle": {"cx": 100.5, "cy": "50", "r": 20.2}},
            {"shape": "circle", "cx": 101, "cy": 50, "r": 20},
        ),
        ({"shape": "circle", "circle": {"cx": 100, "cy": 50, "r": 0}}, None),
        (
            {"shape": "ellipse", "ellipse": {"cx": 9, "cy": 8, "rx": 30, "ry": 10}},
            {"shape": "ellipse", "cx": 9, "cy": 8, "rx": 30, "ry": 10, "angle": 0.0},
        ),
        ({"shape": "ellipse", "ellipse": {"cx": 9, "cy": 8, "rx": 30, "ry": -1, "angle": 5}}, None),
    ],
)
def test_roi_forms(roi: Any, native: Any) -> None:
    tr = translate([{"name": "g", "type": "grayscale", "ROI": roi}])
    InspectionConfig.model_validate(tr.native)
    assert tr.native["tools"][0].get("roi") == native


def test_tool_ids_are_legacy_ids_or_list_indices() -> None:
    tr = translate(
        [
            {"name": "a", "type": "blob"},
            {"id": "41", "name": "b", "type": "blob"},
            {"id": 7.0, "name": "c", "type": "math", "operation": "blob_density", "reference_tool_id": 0},
            {"name": "d", "type": "math", "operation": "blob_density", "reference_tool_id": 41.0},
        ]
    )
    assert [t.tool_id for t in tr.tools] == [0, 41, 7, 3]
    assert [t["expr"] for t in tr.native["tools"][2:]] == ["a.count / a.roi_area", "b.count / b.roi_area"]


def test_native_names_are_unique_identifiers() -> None:
    tr = translate(
        [
            {"name": "Blob 1", "type": "blob"},
            {"name": "blob-1", "type": "blob"},
            {"name": "and", "type": "blob"},
            {"name": "3D", "type": "blob"},
            {"name": "", "type": "blob"},
            {"id": -2, "name": "Blob 1", "type": "blob"},
        ]
    )
    names = [t["name"] for t in tr.native["tools"]]
    assert names == ["Blob_1", "blob_1", "and_2", "t_3D", "blob_4", "Blob_1_m2"]
    assert tr.tools[4].name == "blob_4"
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names)


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ("nope", "tools: must be a list of tool objects, not str"),
        ([{"name": "x", "type": "blob"}, 3], "tools[1] (?): must be an object, not int"),
        (
            [{"name": "a", "type": "grayscale"}, {"name": "e", "type": "edge"}],
            "tools[1] (e).type: unknown tool type 'edge' (known: grayscale, blur, threshold, morphology, "
            "blob, math, locate)",
        ),
        (
            [
                {"name": "g", "type": "grayscale"},
                {"name": "b", "type": "blur"},
                {"name": "blob_1", "type": "blob", "th_min": "abc"},
            ],
            "tools[2] (blob_1).th_min: must be a number 0..255, not 'abc'",
        ),
        (
            [{"name": "b", "type": "blob", "th_min": 300}],
            "tools[0] (b).th_min: must be a number 0..255, not 300",
        ),
        (
            [{"name": "b", "type": "blob", "area_min": 50, "area_max": 10}],
            "tools[0] (b).area_min: (50) is greater than area_max (10)",
        ),
        (
            [
                {
                    "name": "b",
                    "type": "blob",
                    "blob_count_test": True,
                    "test_blob_count_min": 5,
                    "test_blob_count_max": 2,
                }
            ],
            "tools[0] (b).test_blob_count_min: (5) is greater than test_blob_count_max (2)",
        ),
        (
            [{"name": "b", "type": "blob", "total_area_test": "maybe"}],
            "tools[0] (b).total_area_test: must be true or false, not 'maybe'",
        ),
        (
            [{"name": "b", "type": "blob", "ROI": {"shape": "rect", "rect": {"x": "left"}}}],
            "tools[0] (b).ROI.rect.x: must be a number -16384..16384, not 'left'",
        ),
        (
            [{"name": "b", "type": "blob", "ROI": [0, 0, 10, 10]}],
            "tools[0] (b).ROI: must be an object, not list",
        ),
        (
            [{"name": "b", "type": "blob", "ROI": {"shape": "circle", "circle": {"cy": 3, "r": 4}}}],
            "tools[0] (b).ROI.circle.cx: required",
        ),
        (
            [{"name": "k", "type": "blur", "ksize": 101}],
            "tools[0] (k).ksize: must be at most 99 in lens, not 101",
        ),
        (
            [{"name": "a", "type": "blob"}, {"id": 0, "name": "b", "type": "blob"}],
            "tools[1] (b).id: 0 is also the id of tools[0] (a)",
        ),
        (
            [{"name": "m", "type": "math", "operation": "area_ratio"}],
            "tools[0] (m).reference_tool_id: required (the id of the tool whose result is used)",
        ),
        (
            [
                {"name": "m", "type": "math", "operation": "area_ratio", "reference_tool_id": 1},
                {"name": "b", "type": "blob"},
            ],
            "tools[0] (m).reference_tool_id: 1 names a later tool (tools run in list order); tool ids: 0, 1",
        ),
        (
            [
                {"name": "b", "type": "blob"},
                {"name": "m", "type": "math", "operation": "area_ratio", "reference_tool_id": 9},
            ],
            "tools[1] (m).reference_tool_id: 9 names no tool; tool ids: 0, 1",
        ),
        (
            [
                {"name": "g", "type": "grayscale"},
                {"name": "m", "type": "math", "operation": "area_ratio", "reference_tool_id": 0},
            ],
            "tools[1] (m).reference_tool_id: area_ratio needs a blob tool; tools[0] (g) is grayscale",
        ),
        (
            [
                {"name": "b", "type": "blob"},
                {"name": "m", "type": "math", "operation": "sum", "reference_tool_id": 0},
            ],
            "tools[1] (m).operation: must be one of area_ratio, blob_density, custom_formula, not 'sum'",
        ),
        (
            [
                {"name": "b", "type": "blob"},
                {"name": "m", "type": "math", "operation": "custom_formula", "reference_tool_id": 0},
            ],
            "tools[1] (m).formula: required for custom_formula (key formula or custom_formula)",
        ),
        (
            [
                {"name": "b", "type": "blob"},
                {
                    "name": "m",
                    "type": "math",
                    "operation": "custom_formula",
                    "reference_tool_id": 0,
                    "formula": "__import__('os').getcwd()",
                },
            ],
            "tools[1] (m).formula: unknown variable '__import__' (tools[0] (b) gives: blob_count, roi_area, "
            "tool_id, total_area)",
        ),
        (
            [
                {"name": "b", "type": "blob"},
                {
                    "name": "m",
                    "type": "math",
                    "operation": "custom_formula",
                    "reference_tool_id": 0,
                    "custom_formula": "blob_count // 2",
                },
            ],
            "tools[1] (m).custom_formula: expected a number, tool or '(' at column 10, found '/' in "
            "'b.count // 2' (the lens form of 'blob_count // 2')",
        ),
        (
            [
                {"name": "b", "type": "blob"},
                {
                    "name": "m",
                    "type": "math",
                    "operation": "custom_formula",
                    "reference_tool_id": 0,
                    "formula": "processing_time_ms < 5",
                },
            ],
            "tools[1] (m).formula: 'processing_time_ms' is not available in lens: timings are not inputs of "
            "lens formulas (they vary run to run)",
        ),
        (
            [
                {"name": "b", "type": "blob"},
                {
                    "name": "m",
                    "type": "math",
                    "operation": "custom_formula",
                    "reference_tool_id": 0,
                    "formula": "pass_fail",
                },
            ],
            "tools[1] (m).formula: 'pass_fail' is not available in lens: tools[0] (b) has no pass/fail "
            "(inspec_pass_fail false, no test)",
        ),
        (
            [{"name": "l", "type": "locate"}],
            "tools[0] (l).arrow.p0: required when the ROI is not a shape of known size",
        ),
        (
            [{"name": "l", "type": "locate", "arrow": {"p0": {"x": 5, "y": 5}, "p1": {"x": 5.0, "y": "5"}}}],
            "tools[0] (l).arrow: p0 and p1 are the same point (5, 5)",
        ),
        (
            [
                {
                    "name": "l",
                    "type": "locate",
                    "arrow": {"p0": {"x": 50, "y": 5}, "p1": {"x": 90, "y": 5}},
                    "reference": {"x": 10, "y": 5},
                }
            ],
            "tools[0] (l).reference: (10, 5) lies before the arrow's start p0 (50, 5); lens measures along "
            "the arrow from p0",
        ),
    ],
)
def test_bad_tools_name_the_tool_and_field(tools: Any, message: str) -> None:
    with pytest.raises(LegacyToolError) as e:
        translate(tools)
    assert str(e.value) == message


# --- running the translation on real images -----------------------------------------------------


def online_editor_tools(th_min: int) -> list[dict[str, Any]]:
    """Tools exactly as the orchestrator's online editor sends them: no `id`, `order_index`, every
    parameter key (null where the UI had none), the UI's defaults (area_max 1e12, normalize false),
    `threshold` copied from th_min, `custom_formula` instead of `formula`, list-index references."""
    common: dict[str, Any] = {
        "inspec_pass_fail": False,
        "method": None,
        "normalize": None,
        "ksize": None,
        "sigma": None,
        "mode": None,
        "th_min": None,
        "th_max": None,
        "threshold_mode": None,
        "threshold": None,
        "adaptive_k": None,
        "polaridade": None,
        "edge_select": None,
        "smooth_ksize": None,
        "grad_kernel": None,
        "apply_transform": None,
        "arrow": None,
        "kernel": None,
        "open": None,
        "close": None,
        "shape": None,
        "area_min": None,
        "area_max": None,
        "total_area_test": None,
        "blob_count_test": None,
        "test_total_area_min": None,
        "test_total_area_max": None,
        "test_blob_count_min": None,
        "test_blob_count_max": None,
        "contour_chain": None,
        "approx_epsilon_ratio": None,
        "polygon_max_points": None,
        "operation": None,
        "reference_tool_id": None,
        "custom_formula": None,
    }
    return [
        {
            **common,
            "order_index": 0,
            "name": "cinza",
            "type": "grayscale",
            "ROI": {"shape": "rect", "rect": {"x": 0, "y": 0, "w": 0, "h": 0}},
            "method": "luminance",
            "normalize": False,
        },
        {
            **common,
            "order_index": 1,
            "name": "pecas",
            "type": "blob",
            "ROI": {"shape": "rect", "rect": {"x": 10.4, "y": 20.0, "w": 620.0, "h": 440.6}},
            "inspec_pass_fail": True,
            "th_min": th_min,
            "th_max": 255,
            "threshold": th_min,
            "area_min": 0,
            "area_max": 1e12,
            "total_area_test": False,
            "blob_count_test": True,
            "test_total_area_min": 0,
            "test_total_area_max": 1e12,
            "test_blob_count_min": 4,
            "test_blob_count_max": 4,
            "contour_chain": "SIMPLE",
            "approx_epsilon_ratio": 0.01,
            "polygon_max_points": 0,
        },
        {
            **common,
            "order_index": 2,
            "name": "dobro",
            "type": "math",
            "ROI": {},
            "inspec_pass_fail": True,
            "operation": "custom_formula",
            "reference_tool_id": 1,
            "custom_formula": "blob_count * 2 == 8",
        },
    ]


def test_online_editor_tools_count_like_native_and_opencv() -> None:
    scene = SyntheticScene(640, 480, 3, seed=SEED, defect_rate=0.5)
    th_min = 128
    tr = translate(online_editor_tools(th_min))
    assert [t.tool_id for t in tr.tools] == [0, 1, 2]
    native_blob = {
        "name": "parts",
        "type": "blob",
        "roi": {"x": 10, "y": 20, "w": 620, "h": 441},
        "params": {"th_min": th_min + 1, "area_min": 0, "max_blobs": 10000},
    }
    seen = set()
    for v, frame in enumerate(scene.pool):
        truth = scene.defects[v] or "good"
        seen.add(truth)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[20:461, 10:630]
        want = opencv_blob_count(gray, th_min, 0, 1e12)
        results, summary = legacy_results(tr, run(tr, frame), frame_size=(640, 480))
        native = native_run([native_blob], frame)["parts"]
        blob, math_tool = results[1], results[2]
        assert blob["blob_count"] == native["value"] == want, (SEED, v, truth)
        assert blob["test_results"]["blob_count_test"] == {
            "passed": want == 4,
            "min": 4,
            "max": 4,
            "actual": want,
        }
        assert blob["pass_fail"] is (want == 4)
        assert math_tool["result"] is (want == 4) and math_tool["pass_fail"] is (want == 4)
        assert summary["overall_pass"] is (want == 4) and summary["pass_fail_tools"] == 2
        # the old machine's blobs in ROI coordinates are lens's blobs moved by the ROI origin
        assert [b["bounding_box"] for b in blob["blobs"]] == [
            [b["x"] - 10, b["y"] - 20, b["w"], b["h"]] for b in native["blobs"]
        ]
    assert seen == {"good", "missing_part", "extra_blob", "dim"}


def test_legacy_result_fields() -> None:
    img = squares()
    tools = [
        {
            "name": "b",
            "type": "blob",
            "ROI": {"x": 20, "y": 10, "w": 170, "h": 140},
            "inspec_pass_fail": True,
            "th_min": 100,
            "area_max": 1000,
            "total_area_test": True,
            "test_total_area_min": 500,
            "test_total_area_max": "inf",
            "blob_count_test": True,
            "test_blob_count_min": 2,
            "test_blob_count_max": 3,
        },
        {"name": "g", "type": "grayscale", "normalize": False},
    ]
    tr = translate(tools)
    results, summary = legacy_results(tr, run(tr, img), frame_size=(200, 160))
    blob = results[0]
    assert {
        k: blob[k] for k in ("tool_id", "tool_name", "tool_type", "status", "image_modified", "pass_fail")
    } == {
        "tool_id": 0,
        "tool_name": "b",
        "tool_type": "blob",
        "status": "success",
        "image_modified": False,
        "pass_fail": True,
    }
    assert blob["ROI"] == {"shape": "rect", "rect": {"x": 20, "y": 10, "w": 170, "h": 140}}
    assert (blob["blob_count"], blob["total_area"], blob["roi_area"]) == (3, 536.0, 170.0 * 140)
    ys, xs = np.nonzero(img[10:150, 20:190] > 100)
    assert blob["total_area"] == len(xs)
    assert blob["blobs"][0] == {
        "area": 100.0,
        "centroid": [int(xs[ys < 40].mean()), int(ys[ys < 40].mean())],  # ROI-relative: (24, 34)
        "bounding_box": [20, 30, 10, 10],
        "contour": [[20, 30], [29, 30], [29, 39], [20, 39], [20, 30]],
    }
    assert [b["centroid"] for b in blob["blobs"]] == [[24, 34], [89, 59], [132, 112]]
    assert blob["test_results"] == {
        "total_area_test": {"passed": True, "min": 500.0, "max": None, "actual": 536.0},
        "blob_count_test": {"passed": True, "min": 2, "max": 3, "actual": 3},
        "overall_pass": True,
    }
    assert blob["debug"]["roi_transform"] == {"applied": False, "offset": None}
    assert isinstance(blob["processing_time_ms"], float)
    gray = results[1]
    assert (gray["tool_type"], gray["image_modified"], gray["pass_fail"]) == ("grayscale", True, None)
    assert gray["ROI"] == {"shape": "rect", "rect": {"x": 0, "y": 0, "w": 200, "h": 160}}
    assert "roi_transform" not in gray["debug"]
    assert summary == {
        "total_tools": 2,
        "successful_tools": 2,
        "failed_tools": 0,
        "pass_fail_tools": 1,
        "passed_tests": 1,
        "overall_pass": True,
        "total_processing_time_ms": summary["tools_processing_time_ms"],
        "total_time_ms": summary["tools_processing_time_ms"],
        "tools_processing_time_ms": round(blob["processing_time_ms"] + gray["processing_time_ms"], 4),
        "overhead_time_ms": 0.0,
    }
    # without the frame size a whole-frame ROI has no ROI field; the blob's is still known
    results, _ = legacy_results(tr, run(tr, img))
    assert "ROI" not in results[1] and results[0]["ROI"] == blob["ROI"]

    # a failing test: the count test fails, the area test still passes
    tools[0].update(test_blob_count_min=4, test_blob_count_max=9)
    tr = translate(tools)
    results, summary = legacy_results(tr, run(tr, img), frame_size=(200, 160))
    assert results[0]["test_results"]["blob_count_test"] == {"passed": False, "min": 4, "max": 9, "actual": 3}
    assert results[0]["test_results"]["overall_pass"] is False and results[0]["pass_fail"] is False
    assert (summary["pass_fail_tools"], summary["passed_tests"], summary["overall_pass"]) == (1, 0, False)


def test_blob_with_pass_fail_but_no_test_only_measures() -> None:
    """The old machine crashed on it (pass_fail false, every inspection failed); lens measures."""
    tr = translate([{"name": "b", "type": "blob", "inspec_pass_fail": True, "th_min": 100}])
    assert "pass_fail" not in tr.native["tools"][0]
    env = run(tr, squares())
    results, summary = legacy_results(tr, env)
    assert (results[0]["pass_fail"], results[0]["test_results"], results[0]["blob_count"]) == (None, {}, 3)
    assert (summary["pass_fail_tools"], summary["overall_pass"], env["pass"]) == (0, True, True)


def test_math_area_ratio_and_blob_density_equal_numpy() -> None:
    img = squares()
    tr = translate(
        [
            {
                "name": "b",
                "type": "blob",
                "th_min": 100,
                "ROI": {"shape": "circle", "circle": {"cx": 90, "cy": 70, "r": 45}},
            },
            {
                "name": "ratio",
                "type": "math",
                "operation": "area_ratio",
                "reference_tool_id": 0,
                "inspec_pass_fail": True,
            },
            {"name": "density", "type": "math", "operation": "blob_density", "reference_tool_id": 0},
        ]
    )
    results, summary = legacy_results(tr, run(tr, img), frame_size=(200, 160))
    mask = cv2.circle(np.zeros_like(img), (90, 70), 45, 255, thickness=-1, lineType=cv2.LINE_8) > 0
    roi_area = int(mask.sum())
    total = int(((img > 100) & mask).sum())
    count = cv2.connectedComponents(((img > 100) & mask).astype(np.uint8), connectivity=8)[0] - 1
    assert (results[0]["roi_area"], results[0]["total_area"], results[0]["blob_count"]) == (
        roi_area,
        total,
        count,
    )
    assert results[1]["result"] == pytest.approx(total / roi_area, rel=1e-12)
    assert results[2]["result"] == pytest.approx(count / roi_area, rel=1e-12)
    assert {k: results[1][k] for k in ("reference_tool_id", "operation", "formula")} == {
        "reference_tool_id": 0,
        "operation": "area_ratio",
        "formula": "",
    }
    # area_ratio passes in [0.1, 0.9] as the old machine; density is measured only
    assert results[1]["pass_fail"] is (0.1 <= total / roi_area <= 0.9)
    assert results[2]["pass_fail"] is None and summary["pass_fail_tools"] == 1


def test_formula_and_custom_formula_keys_both_work() -> None:
    img = squares()
    for key in ("formula", "custom_formula"):
        tr = translate(
            [
                {
                    "name": "b",
                    "type": "blob",
                    "th_min": 100,
                    "blob_count_test": True,
                    "test_blob_count_min": 3,
                    "inspec_pass_fail": True,
                },
                {
                    "name": "f",
                    "type": "math",
                    "operation": "custom_formula",
                    "reference_tool_id": 0,
                    key: "total_area / blob_count + tool_id * 100 + (True and pass_fail)",
                },
                {
                    "name": "t",
                    "type": "math",
                    "operation": "custom_formula",
                    "reference_tool_id": 0,
                    key: "blob_count > 5",
                },
            ]
        )
        assert tr.native["tools"][1]["expr"] == (
            "b.total_area / b.count + (0) * 100 + (true and (b.value >= 3.0))"
        )
        assert tr.native["tools"][2]["expr"] == "+(b.count > 5)"  # a measure: not inspected
        env = run(tr, img)
        results, summary = legacy_results(tr, env)
        assert results[1]["result"] == pytest.approx(536 / 3 + 1)
        assert results[1]["formula"] == "total_area / blob_count + tool_id * 100 + (True and pass_fail)"
        assert (results[2]["result"], results[2]["pass_fail"]) == (False, None)
        assert summary["overall_pass"] is True and env["pass"] is True
    # with inspec_pass_fail a test formula decides pass_fail
    tr = translate(
        [
            {"name": "b", "type": "blob", "th_min": 100},
            {
                "name": "t",
                "type": "math",
                "operation": "custom_formula",
                "reference_tool_id": 0,
                "formula": "blob_count > 5",
                "inspec_pass_fail": True,
            },
        ]
    )
    results, summary = legacy_results(tr, run(tr, img))
    assert (results[1]["result"], results[1]["pass_fail"], summary["overall_pass"]) == (False, False, False)


@pytest.mark.parametrize(
    ("legacy", "reference"),
    [
        (
            {"mode": "binary", "th_min": 127, "th_max": 255},
            lambda g: cv2.threshold(g, 127, 255, cv2.THRESH_BINARY)[1],
        ),
        ({"th_min": 50.9}, lambda g: cv2.threshold(g, 50, 255, cv2.THRESH_BINARY)[1]),
        ({"mode": "binary", "th_min": 255}, lambda g: np.zeros_like(g)),
        ({"mode": "binary", "th_min": 10, "th_max": 0}, lambda g: np.zeros_like(g)),
        ({"mode": "range", "th_min": 60, "th_max": 200}, lambda g: cv2.inRange(g, 60, 200)),
        ({"mode": "OTSU"}, lambda g: cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]),
    ],
)
def test_threshold_modes_match_the_old_machine(legacy: dict[str, Any], reference: Any) -> None:
    rng = np.random.default_rng(SEED)
    img = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    tr = translate([{"name": "t", "type": "threshold", **legacy}, {"name": "b", "type": "blob", "th_min": 0}])
    results, _ = legacy_results(tr, run(tr, img))
    assert results[1]["total_area"] == np.count_nonzero(reference(img))


def step_image() -> np.ndarray:
    """160x120 gray: dark left half, bright from x = 70 on, and a bright square right of the edge."""
    img = np.full((120, 160), 40, np.uint8)
    img[:, 70:] = 200
    img[50:60, 120:130] = 40  # a dark hole: the blob below counts the bright part around it
    return img


def test_locate_offset_shifts_the_later_rois() -> None:
    img = step_image()
    tr = translate(
        [
            {
                "name": "edge",
                "type": "locate",
                "inspec_pass_fail": True,
                "threshold": 30,
                "arrow": {"p0": {"x": 10, "y": 60}, "p1": {"x": 150, "y": 60}},
                "polaridade": "dark_to_light",
                "reference": {"x": 60, "y": 60, "angle_deg": 90},
                "apply_transform": True,
                "rotate": True,
            },
            {
                "name": "spot",
                "type": "blob",
                "th_min": 100,
                "ROI": {"shape": "rect", "rect": {"x": 40, "y": 40, "w": 20, "h": 30}},
            },
        ]
    )
    params = tr.native["tools"][0]["params"]
    assert (params["reference"], params["shift_rois"], params["polarity"]) == (50.0, True, "rising")
    env = run(tr, img)
    native = env["tools"]["edge"]["measures"]
    results, summary = legacy_results(tr, env, frame_size=(160, 120))
    loc = results[0]
    x = native["x"]
    assert x == pytest.approx(69.5, abs=0.5)
    edge = {
        "x": x,
        "y": 60.0,
        "angle_deg": 90.0,
        "polarity": "dark_to_light",
        "strength": abs(native["strength"]),
        "t": native["position"] / 140,
    }
    assert loc["edges"] == [edge] and loc["edge_count"] == 1
    assert loc["primary_point"] == {"x": x, "y": 60.0} and loc["primary_angle_deg"] == 90.0
    assert loc["result"] == {"x": x, "y": 60.0, "angle_deg": 90.0}
    assert loc["reference"] == {"x": 60.0, "y": 60.0, "angle_deg": 90.0}
    assert loc["offset"] == {"x": x - 60, "y": 0.0, "angle_deg": 0.0}
    assert (loc["rotate"], loc["apply_transform"], loc["pass_fail"]) == (True, True, True)
    assert loc["arrow"] == {"p0": {"x": 10.0, "y": 60.0}, "p1": {"x": 150.0, "y": 60.0}}
    dx = round(x - 60)
    spot = results[1]
    assert spot["ROI"] == {"shape": "rect", "rect": {"x": 40 + dx, "y": 40, "w": 20, "h": 30}}
    assert spot["debug"]["roi_transform"] == {
        "applied": True,
        "offset": {"dx": float(dx), "dy": 0.0, "dtheta_deg": 0.0, "rotate": False},
    }
    assert spot["debug"]["roi_debug"]["roi_after"] == {
        "shape": "rect",
        "rect": {"x": 40 + dx, "y": 40, "w": 20, "h": 30},
    }
    # the shifted ROI straddles the edge at x = 70: the bright part is 30 rows x (40 + dx + 20 - 70) columns
    assert spot["total_area"] == 30 * (40 + dx + 20 - 70)
    assert summary["overall_pass"] is True


def test_locate_without_an_edge_fails_the_inspection() -> None:
    """The old machine reported pass_fail true (or null) with no edge; lens fails it either way."""
    flat = np.full((60, 80), 90, np.uint8)
    for inspec, want in ((True, False), (False, False)):
        tr = translate(
            [
                {
                    "name": "l",
                    "type": "locate",
                    "inspec_pass_fail": inspec,
                    "ROI": {"x": 0, "y": 0, "w": 80, "h": 60},
                }
            ]
        )
        results, summary = legacy_results(tr, run(tr, flat))
        assert (results[0]["edges"], results[0]["result"], results[0]["pass_fail"]) == ([], None, want)
        assert summary["overall_pass"] is False


def test_error_envelope_gives_error_results() -> None:
    tr = translate(
        [
            {"name": "g", "type": "grayscale"},
            {"name": "b", "type": "blob", "inspec_pass_fail": True, "blob_count_test": True},
            {"name": "m", "type": "morphology"},
        ]
    )
    envelope = {"pass": False, "tools": {}, "error": {"code": "LENS_OVERRUN", "message": "frame overwritten"}}
    results, summary = legacy_results(tr, envelope)
    assert results == [
        {
            "tool_id": i,
            "tool_name": n,
            "tool_type": t,
            "status": "error",
            "error": "frame overwritten",
            "pass_fail": pf,
            "processing_time_ms": 0.0,
        }
        for i, (n, t, pf) in enumerate(
            [("g", "grayscale", None), ("b", "blob", False), ("m", "morphology", None)]
        )
    ]
    assert summary == {
        "total_tools": 3,
        "successful_tools": 0,
        "failed_tools": 3,
        "pass_fail_tools": 1,
        "passed_tests": 0,
        "overall_pass": False,
        "total_processing_time_ms": 0.0,
        "total_time_ms": 0.0,
        "tools_processing_time_ms": 0.0,
        "overhead_time_ms": 0.0,
    }


# --- native -> legacy view ------------------------------------------------------------------------


NATIVE_TOOLS: list[dict[str, Any]] = [
    {"name": "brightness", "type": "grayscale", "method": "luminance", "pass_fail": {"min": 40, "max": 220}},
    {
        "name": "belt_edges",
        "type": "edge_detection",
        "roi": {"x": 0, "y": 380, "w": 640, "h": 100},
        "params": {"threshold": 150},
        "pass_fail": {"max": 50},
    },
    {
        "name": "cap_edge",
        "type": "locate",
        "params": {
            "p0": [0, 240],
            "p1": [200, 240],
            "polarity": "rising",
            "threshold": 30,
            "select": "first",
            "reference": 50,
        },
    },
    {"name": "smooth", "type": "blur", "method": "gaussian", "params": {"ksize": 5}},
    {"name": "binarize", "type": "threshold", "method": "otsu"},
    {
        "name": "clean_open",
        "type": "morphology",
        "method": "open",
        "params": {"ksize": 5, "shape": "ellipse"},
    },
    {
        "name": "clean_close",
        "type": "morphology",
        "method": "close",
        "params": {"ksize": 5, "shape": "ellipse", "iterations": 2},
    },
    {
        "name": "parts",
        "type": "blob",
        "params": {"th_min": 128, "area_min": 500},
        "pass_fail": {"min": 4, "max": 4},
    },
    {
        "name": "fill",
        "type": "math",
        "expr": "parts.total_area / parts.roi_area",
        "pass_fail": {"min": 0.1, "max": 0.9},
    },
    {"name": "ok", "type": "math", "expr": "parts.count * 2 <= 10 and fill > 0"},
]


def test_native_to_legacy_round_trips_exactly() -> None:
    cfg = InspectionConfig.model_validate({"tools": NATIVE_TOOLS})
    view = native_to_legacy(cfg.model_dump())
    assert [(v["id"], v["name"], v["type"]) for v in view] == [
        (0, "brightness", "grayscale"),
        (1, "belt_edges", "edge_detection"),
        (2, "cap_edge", "locate"),
        (3, "smooth", "blur"),
        (4, "binarize", "threshold"),
        (5, "clean", "morphology"),
        (6, "parts", "blob"),
        (7, "fill", "math"),
        (8, "ok", "math"),
    ]
    assert {k: view[5][k] for k in ("kernel", "shape", "open", "close")} == {
        "kernel": 5,
        "shape": "ellipse",
        "open": 1,
        "close": 2,
    }
    assert {k: view[6][k] for k in ("th_min", "area_min", "blob_count_test", "test_blob_count_min")} == {
        "th_min": 127,
        "area_min": 500,
        "blob_count_test": True,
        "test_blob_count_min": 4,
    }
    assert (view[7]["operation"], view[7]["reference_tool_id"], view[7]["inspec_pass_fail"]) == (
        "area_ratio",
        6,
        True,
    )
    assert view[2]["reference"] == {"x": 50.0, "y": 240.0, "angle_deg": 0.0}
    assert view[1]["ROI"] == {"shape": "rect", "rect": {"x": 0, "y": 380, "w": 640, "h": 100}}
    # sent back as is (e.g. by a config_tool/PUT of what GET showed): the same native tools
    back = translate(view)
    assert InspectionConfig.model_validate(back.native).model_dump() == cfg.model_dump()
    assert [t.tool_id for t in back.tools] == list(range(9))
    # and the results of the view are the legacy ones
    scene = SyntheticScene(640, 480, 1, seed=SEED)
    results, _ = legacy_results(back, run(back, scene.frame(0)), frame_size=(640, 480))
    assert results[6]["blob_count"] == native_run(NATIVE_TOOLS, scene.frame(0))["parts"]["value"]
    assert results[7]["operation"] == "area_ratio" and results[2]["edge_count"] in (0, 1)
    assert set(results[1]) >= {"value", "measures"} and results[1]["pass_fail"] is not None


def test_edited_legacy_keys_win_over_the_native_tools() -> None:
    cfg = InspectionConfig.model_validate({"tools": NATIVE_TOOLS})
    view = native_to_legacy(cfg.model_dump())
    view[6]["th_min"] = 200  # the blob, edited in the orchestrator's UI (native key left as it was)
    view[1]["ROI"] = {"shape": "rect", "rect": {"x": 10, "y": 300, "w": 100, "h": 50}}  # native-only tool
    back = InspectionConfig.model_validate(translate(view).native)
    by_name = {t.name: t for t in back.tools}
    assert by_name["parts"].params.th_min == 201
    assert by_name["belt_edges"].roi.model_dump() == {"shape": "rect", "x": 10, "y": 300, "w": 100, "h": 50}
    assert by_name["cap_edge"].params.sigma == 1.0  # unchanged tools keep their exact native values
    # a client that drops `native` cannot send a native-only type back
    del view[1]["native"]
    with pytest.raises(
        LegacyToolError, match=r"^tools\[1\] \(belt_edges\)\.type: unknown tool type 'edge_detection'"
    ):
        translate(view)


def test_unlimited_values() -> None:
    for unlimited in (1e12, 2e12, "Infinity", "inf", math.inf):
        tr = translate(
            [
                {
                    "name": "b",
                    "type": "blob",
                    "area_max": unlimited,
                    "inspec_pass_fail": True,
                    "total_area_test": True,
                    "test_total_area_max": unlimited,
                }
            ]
        )
        tool = tr.native["tools"][0]
        assert "area_max" not in tool["params"]
        assert tool["pass_fail"] == {"measures": {"total_area": {"min": 0.0, "max": None}}}


def test_roi_after_is_shifted_in_the_rois_own_shape() -> None:
    """debug.roi_debug.roi_after moves the keys the ROI was read from (a `rect` object without
    `shape` is a rect, as for translation)."""
    locate = {
        "name": "edge",
        "type": "locate",
        "threshold": 30,
        "arrow": {"p0": {"x": 10, "y": 60}, "p1": {"x": 150, "y": 60}},
        "reference": {"x": 60, "y": 60},
        "apply_transform": True,
    }
    rois = [
        {"rect": {"x": 40, "y": 40, "w": 20, "h": 30}},
        {"shape": "Circle", "circle": {"cx": 50, "cy": 55, "r": 10}},
    ]
    tr = translate([locate, *({"name": f"b{i}", "type": "blob", "ROI": r} for i, r in enumerate(rois))])
    env = run(tr, step_image())
    dx = round(env["tools"]["edge"]["measures"]["x"] - 60)
    assert dx > 0
    results, _ = legacy_results(tr, env, frame_size=(160, 120))
    assert results[1]["debug"]["roi_debug"]["roi_after"] == {
        "rect": {"x": 40 + dx, "y": 40, "w": 20, "h": 30}
    }
    assert results[2]["debug"]["roi_debug"]["roi_after"] == {
        "shape": "Circle",
        "circle": {"cx": 50 + dx, "cy": 55, "r": 10},
    }


def test_a_malformed_native_entry_is_the_tools_error() -> None:
    """`native` (kept from a GET) that does not validate names the tool and the field."""
    bad = {"name": "l", "type": "locate", "native": [{"name": "l", "type": "locate", "params": {}}]}
    with pytest.raises(LegacyToolError, match=r"^tools\[0\] \(l\)\.native\.params\.p0: Field required"):
        translate([bad])
    bad_roi = {"name": "g", "type": "grayscale", "native": {"name": "g", "type": "grayscale", "roi": "all"}}
    with pytest.raises(LegacyToolError, match=r"^tools\[0\] \(g\)\.native"):
        translate([bad_roi])


def test_tool_list_edits_take_the_list_index_as_the_id_of_a_tool_without_one() -> None:
    tools: list[dict[str, Any]] = [
        {"name": "a", "type": "grayscale"},
        {"name": "b", "type": "blur", "id": None},
        {"name": "c", "type": "blur", "id": "7"},
    ]
    assert tool_ids(tools) == [0, 1, 7]
    out, tool, action = upsert_tool(tools, {"id": 1, "name": "b", "type": "blur", "ksize": 5})
    assert (action, tool, out[1]) == ("updated", out[1], {"id": 1, "name": "b", "type": "blur", "ksize": 5})
    out, tool, action = upsert_tool(tools, {"id": 0, "name": "z", "type": "grayscale"})
    assert (action, tool["id"], len(out)) == ("added", 8, 4)  # 0 is a's: the next free id
    assert [t.tool_id for t in translate(out).tools] == [0, 1, 7, 8]
    out, removed = remove_tool(tools, 1)
    assert (removed["name"], [t["name"] for t in out]) == ("b", ["a", "c"])
    with pytest.raises(ToolListError, match=r"^no tool with id 3$"):
        remove_tool(tools, 3)
    with pytest.raises(ToolListError, match=r"^name is missing$"):
        upsert_tool(tools, {"id": 3})
    with pytest.raises(ToolListError, match=r"^tool id True is not an integer$"):
        parse_id(True)
