"""The tool chain against NumPy/OpenCV references, and the worker's job logic on a real ring."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from lens.capture.sources.synthetic import SyntheticScene
from lens.config.models import InspectionConfig
from lens.engine import msgs
from lens.engine.bus import unpack
from lens.engine.envelope import LENS_INSPECTION_ERROR, LENS_OVERRUN, Job
from lens.engine.ring import Ring, RingGeometry
from lens.engine.shm import new_run_prefix
from lens.inspect.runner import ToolChain
from lens.inspect.tools import ToolError
from lens.inspect.worker import Inspector
from tests.inspect import images

SEED = 4242  # every random frame below comes from this seed (shown in failure messages)


def chain(*tools: dict[str, Any], version: int = 1) -> ToolChain:
    return ToolChain(InspectionConfig.model_validate({"tools": list(tools)}), version=version)


def read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def np_stats(img: np.ndarray) -> dict[str, float]:
    return {"mean": float(img.mean()), "min": int(img.min()), "max": int(img.max()), "std": float(img.std())}


def assert_stats(measures: dict[str, float], ref: dict[str, float], tol: float = 1e-9) -> None:
    assert set(measures) == {"mean", "min", "max", "std"}
    for key in ("mean", "std"):
        assert measures[key] == pytest.approx(ref[key], abs=tol), (key, measures, ref)
    for key in ("min", "max"):
        assert abs(measures[key] - ref[key]) <= (1 if tol >= 0.5 else 0), (key, measures, ref)


def spots(h: int = 240, w: int = 320, n: int = 14) -> np.ndarray:
    return images.spots(h, w, n, SEED, dot=True)


def reference_blobs(
    gray: np.ndarray, lo: int, hi: int, area_min: int = 0, area_max: int | None = None, offset=(0, 0)
) -> list[dict[str, float]]:
    mask = ((gray >= lo) & (gray <= hi)).astype(np.uint8)
    n, _, st, cen = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    out = []
    for i in range(1, n):
        area = int(st[i, cv2.CC_STAT_AREA])
        if area < area_min or (area_max is not None and area > area_max):
            continue
        out.append(
            {
                "x": int(st[i, cv2.CC_STAT_LEFT]) + offset[0],
                "y": int(st[i, cv2.CC_STAT_TOP]) + offset[1],
                "w": int(st[i, cv2.CC_STAT_WIDTH]),
                "h": int(st[i, cv2.CC_STAT_HEIGHT]),
                "area": area,
                "cx": float(cen[i, 0]) + offset[0],
                "cy": float(cen[i, 1]) + offset[1],
            }
        )
    return out


def assert_same_blobs(got: list[dict[str, Any]], ref: list[dict[str, Any]]) -> None:
    def key(b: dict[str, Any]) -> tuple[int, ...]:
        return (b["y"], b["x"], b["area"], b["w"], b["h"])

    got, ref = sorted(got, key=key), sorted(ref, key=key)
    assert [key(b) for b in got] == [key(b) for b in ref], f"seed {SEED}"
    for g, r in zip(got, ref, strict=True):
        assert g["cx"] == pytest.approx(r["cx"], abs=0.0051) and g["cy"] == pytest.approx(r["cy"], abs=0.0051)


# --- grayscale -----------------------------------------------------------------------------------------


def test_grayscale_measures_equal_numpy_on_gray_frame_and_roi() -> None:
    frame = read_only(spots())
    c = chain(
        {"name": "full", "type": "grayscale"},
        {"name": "part", "type": "grayscale", "roi": {"x": 37, "y": 21, "w": 150, "h": 99}},
    )
    tools, passed = c.run(frame)
    assert passed is True
    assert_stats(tools["full"]["measures"], np_stats(frame))
    assert_stats(tools["part"]["measures"], np_stats(frame[21:120, 37:187]))
    assert tools["part"]["value"] == tools["part"]["measures"]["mean"]


def colour_frame() -> np.ndarray:
    """BGR frame whose channels differ so much that the three gray methods give different means."""
    rng = np.random.default_rng(SEED)
    b = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    g = rng.integers(0, 50, (120, 160), dtype=np.uint8)
    r = rng.integers(200, 256, (120, 160), dtype=np.uint8)
    return np.dstack([b, g, r])


def test_grayscale_methods_on_bgr_frame() -> None:
    frame = read_only(colour_frame())
    original = frame.copy()
    f = frame.astype(np.float64)
    refs = {
        "luminance": cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float64),
        "average": f.mean(axis=2),
        "weighted": 0.0722 * f[..., 0] + 0.7152 * f[..., 1] + 0.2126 * f[..., 2],
    }
    means = sorted(r.mean() for r in refs.values())
    assert means[1] - means[0] > 5 and means[2] - means[1] > 5  # a wrong method cannot pass
    roi = {"x": 10, "y": 20, "w": 100, "h": 80}
    for method, ref in refs.items():
        for r in ({}, roi):
            c = chain({"name": "g", "type": "grayscale", "method": method, "roi": r})
            tools, _ = c.run(frame)
            y0, x0 = r.get("y", 0), r.get("x", 0)
            y1, x1 = (y0 + r["h"], x0 + r["w"]) if r else (120, 160)
            ref_roi = ref[y0:y1, x0:x1]
            m = tools["g"]["measures"]
            # luminance is OpenCV's own conversion: exact; the others round each pixel to uint8
            tol = 1e-9 if method == "luminance" else 0.5
            assert m["mean"] == pytest.approx(ref_roi.mean(), abs=tol), (method, r)
            assert abs(m["min"] - ref_roi.min()) <= 1 and abs(m["max"] - ref_roi.max()) <= 1, (method, r)
            assert m["std"] == pytest.approx(ref_roi.std(), abs=0.5), (method, r)
            # the gray image the next tools see carries the same conversion in the ROI
            seen = c.canvas.gray()[y0:y1, x0:x1].astype(np.float64)
            assert np.abs(seen - ref_roi).max() <= 1, (method, r)
    assert np.array_equal(frame, original)


def test_normalize_feeds_equalised_pixels_to_later_tools() -> None:
    frame = read_only(np.tile((np.arange(200) // 2).astype(np.uint8), (60, 1)))  # 0..99, all < 128
    original = frame.copy()
    roi = {"x": 0, "y": 0, "w": 100, "h": 60}
    blob = {"name": "bright", "type": "blob", "params": {"th_min": 128, "th_max": 255}}
    plain, _ = chain({"name": "g", "type": "grayscale", "roi": roi}, blob).run(frame)
    assert plain["bright"]["value"] == 0
    c = chain({"name": "g", "type": "grayscale", "roi": roi, "params": {"normalize": True}}, blob)
    tools, _ = c.run(frame)
    assert_stats(tools["g"]["measures"], np_stats(frame[:, :100]))  # measured before equalising
    expected = frame.copy()
    expected[:, :100] = cv2.equalizeHist(np.ascontiguousarray(frame[:, :100]))
    ref = reference_blobs(expected, 128, 255)
    assert len(ref) == 1 and ref[0]["area"] > 0
    assert tools["bright"]["value"] == 1
    assert_same_blobs(tools["bright"]["blobs"], ref)
    assert np.array_equal(frame, original)
    again, _ = c.run(frame)  # the scratch image does not carry anything over to the next frame
    assert again["bright"]["blobs"] == tools["bright"]["blobs"]
    assert again["g"]["measures"] == tools["g"]["measures"]


def test_normalize_on_bgr_frame_leaves_frame_untouched() -> None:
    frame = read_only(colour_frame())
    original = frame.copy()
    c = chain(
        {"name": "g", "type": "grayscale", "method": "average", "params": {"normalize": True}},
        {"name": "b", "type": "blob", "params": {"th_min": 200, "th_max": 255}},
    )
    tools, _ = c.run(frame)
    avg = np.clip(np.rint(frame.astype(np.float64).mean(axis=2)), 0, 255).astype(np.uint8)
    eq = cv2.equalizeHist(avg)
    # equalised pixels within 1 grey level of the reference: the area differs by at most the band's edge
    lo, hi = int((eq >= 199).sum()), int((eq >= 201).sum())
    assert hi <= tools["b"]["measures"]["total_area"] <= lo
    assert np.array_equal(frame, original)


# --- blob ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roi", "params"),
    [
        ({}, {"th_min": 128, "th_max": 255}),
        ({"x": 37, "y": 21, "w": 200, "h": 150}, {"th_min": 128, "th_max": 255}),
        ({"x": 100, "y": 50}, {"th_min": 150, "th_max": 230, "area_min": 20, "area_max": 900}),
    ],
)
def test_blob_equals_opencv_in_frame_coordinates(roi: dict[str, int], params: dict[str, int]) -> None:
    frame = read_only(spots())
    tools, passed = chain({"name": "spots", "type": "blob", "roi": roi, "params": params}).run(frame)
    assert passed is True
    x0, y0 = roi.get("x", 0), roi.get("y", 0)
    x1 = x0 + roi["w"] if "w" in roi else frame.shape[1]
    y1 = y0 + roi["h"] if "h" in roi else frame.shape[0]
    ref = reference_blobs(
        frame[y0:y1, x0:x1],
        params["th_min"],
        params["th_max"],
        params.get("area_min", 0),
        params.get("area_max"),
        offset=(x0, y0),
    )
    assert len(ref) >= 5, f"seed {SEED}: too few blobs for a meaningful check"
    t = tools["spots"]
    assert t["value"] == len(ref)
    assert t["measures"] == {
        "count": len(ref),
        "total_area": sum(b["area"] for b in ref),
        "largest_area": max(b["area"] for b in ref),
        "roi_area": (x1 - x0) * (y1 - y0),
    }
    assert_same_blobs(t["blobs"], ref)
    assert t["detections"] == [
        {"class": "spots", "confidence": 1.0, "bbox": [b["x"], b["y"], b["w"], b["h"]]} for b in t["blobs"]
    ]


def test_blob_max_blobs_truncates_list_not_count() -> None:
    frame = read_only(spots())
    full, _ = chain({"name": "s", "type": "blob"}).run(frame)
    cut, _ = chain({"name": "s", "type": "blob", "params": {"max_blobs": 2}}).run(frame)
    n = full["s"]["value"]
    assert n > 2
    assert cut["s"]["value"] == n and cut["s"]["measures"] == full["s"]["measures"]
    assert len(cut["s"]["blobs"]) == 2 and len(cut["s"]["detections"]) == 2
    assert all(b in full["s"]["blobs"] for b in cut["s"]["blobs"])
    none, _ = chain({"name": "s", "type": "blob", "params": {"max_blobs": 0}}).run(frame)
    assert none["s"]["value"] == n and none["s"]["blobs"] == [] and none["s"]["detections"] == []


def test_blob_on_bgr_frame_uses_luminance() -> None:
    scene = SyntheticScene(320, 240, 3, seed=2, defect_rate=0.5)
    c = chain({"name": "parts", "type": "blob", "params": {"th_min": 128, "area_min": 1}})
    for n in range(12):
        frame = read_only(scene.frame(n))
        tools, _ = c.run(frame)
        ref = reference_blobs(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 128, 255, 1)
        assert tools["parts"]["value"] == len(ref) == scene.truth(n)["blobs"], f"frame {n}"
        assert_same_blobs(tools["parts"]["blobs"], ref)


# --- ROI -----------------------------------------------------------------------------------------------


def test_roi_partly_outside_is_clipped() -> None:
    frame = read_only(spots(120, 160))
    tools, _ = chain(
        {"name": "a", "type": "grayscale", "roi": {"x": -10, "y": 50, "w": 100, "h": 1000}},
        {"name": "b", "type": "grayscale", "roi": {"x": 150, "y": 110, "w": 50, "h": 50}},
    ).run(frame)
    assert_stats(tools["a"]["measures"], np_stats(frame[50:120, 0:90]))
    assert_stats(tools["b"]["measures"], np_stats(frame[110:120, 150:160]))


def test_roi_without_size_runs_to_the_edges() -> None:
    frame = read_only(spots(120, 160))
    tools, _ = chain({"name": "a", "type": "grayscale", "roi": {"x": 30, "y": 40}}).run(frame)
    assert_stats(tools["a"]["measures"], np_stats(frame[40:, 30:]))


@pytest.mark.parametrize(
    "roi", [{"x": 160, "y": 0}, {"x": 500, "y": 10, "w": 20, "h": 20}, {"x": -100, "y": 0, "w": 50}]
)
def test_roi_wholly_outside_is_a_tool_error(roi: dict[str, int]) -> None:
    c = chain({"name": "ok", "type": "grayscale"}, {"name": "far", "type": "blob", "roi": roi})
    with pytest.raises(ToolError, match=r"tool 'far': roi .* lies outside the 160x120 frame"):
        c.run(read_only(spots(120, 160)))


# --- pass/fail -------------------------------------------------------------------------------------------


def test_pass_fail_on_value_and_measures() -> None:
    frame = read_only(spots())
    mean = float(frame.mean())
    ref = reference_blobs(frame, 128, 255)
    total = sum(b["area"] for b in ref)
    c = chain(
        {"name": "bright_ok", "type": "grayscale", "pass_fail": {"min": mean - 1, "max": mean + 1}},
        {"name": "bright_low", "type": "grayscale", "pass_fail": {"max": mean - 1}},
        {"name": "count_ok", "type": "blob", "pass_fail": {"min": len(ref), "max": len(ref)}},
        {"name": "area_ok", "type": "blob", "pass_fail": {"measures": {"total_area": {"min": total}}}},
        {"name": "area_big", "type": "blob", "pass_fail": {"measures": {"total_area": {"min": total + 1}}}},
        {
            "name": "largest",
            "type": "blob",
            "pass_fail": {"min": 0, "measures": {"largest_area": {"max": 1}}},
        },
        {"name": "measure_only", "type": "blob", "params": {"th_min": 0}},
    )
    tools, passed = c.run(frame)
    assert {name: t["pass"] for name, t in tools.items()} == {
        "bright_ok": True,
        "bright_low": False,
        "count_ok": True,
        "area_ok": True,
        "area_big": False,
        "largest": False,
        "measure_only": True,
    }
    assert passed is False
    ok_only, passed = chain(
        {"name": "bright_ok", "type": "grayscale", "pass_fail": {"min": mean - 1, "max": mean + 1}},
        {"name": "measure_only", "type": "grayscale"},
    ).run(frame)
    assert passed is True and all(t["pass"] for t in ok_only.values())


def test_pass_fail_measures_value_is_judged() -> None:
    c = chain({"name": "s", "type": "blob", "pass_fail": {"measures": {"value": {"min": 1}}}})
    tools, passed = c.run(read_only(spots()))
    assert tools["s"]["pass"] is True and passed is True


# --- math ------------------------------------------------------------------------------------------------


def test_math_uses_earlier_values() -> None:
    frame = read_only(spots())
    ref = reference_blobs(frame, 128, 255)
    tools, passed = chain(
        {"name": "brightness", "type": "grayscale"},
        {"name": "parts", "type": "blob"},
        {"name": "score", "type": "math", "expr": "parts.count * 2 + brightness.max - parts.value"},
        {"name": "mean_area", "type": "math", "expr": "parts.total_area / parts", "pass_fail": {"min": 1e9}},
    ).run(frame)
    assert tools["score"]["value"] == len(ref) * 2 + int(frame.max()) - len(ref)
    assert tools["score"]["pass"] is True
    assert tools["mean_area"]["value"] == pytest.approx(sum(b["area"] for b in ref) / len(ref))
    assert tools["mean_area"]["pass"] is False and passed is False


def test_math_boolean_expression_is_its_own_verdict() -> None:
    frame = read_only(spots())
    n = len(reference_blobs(frame, 128, 255))
    tools, passed = chain(
        {"name": "parts", "type": "blob"},
        {"name": "exact", "type": "math", "expr": f"parts.count == {n}"},
        {"name": "both", "type": "math", "expr": f"parts.count > 1 and not parts.count > {n}"},
    ).run(frame)
    assert (tools["exact"]["value"], tools["exact"]["pass"]) == (1.0, True)
    assert (tools["both"]["value"], tools["both"]["pass"]) == (1.0, True)
    assert passed is True
    tools, passed = chain(
        {"name": "parts", "type": "blob"}, {"name": "few", "type": "math", "expr": f"parts.count < {n}"}
    ).run(frame)
    assert (tools["few"]["value"], tools["few"]["pass"]) == (0.0, False)
    assert passed is False


def test_math_division_by_zero_at_run_time_names_the_tool() -> None:
    c = chain(
        {"name": "parts", "type": "blob"}, {"name": "ratio", "type": "math", "expr": "100 / parts.count"}
    )
    tools, _ = c.run(read_only(spots()))  # blobs present: fine
    assert tools["ratio"]["value"] == pytest.approx(100 / tools["parts"]["value"])
    with pytest.raises(ToolError, match=r"^tool 'ratio': division by zero in '100 / parts.count'$"):
        c.run(read_only(np.zeros((40, 60), np.uint8)))


# --- result dict shape -------------------------------------------------------------------------------------


def test_result_keys_and_elapsed() -> None:
    tools, _ = chain(
        {"name": "g", "type": "grayscale", "method": "weighted", "pass_fail": {"min": 0}},
        {"name": "b", "type": "blob"},
        {"name": "m", "type": "math", "expr": "b.count + g.mean"},
    ).run(read_only(spots()))
    assert list(tools) == ["g", "b", "m"]  # in list order
    assert set(tools["g"]) == {"type", "method", "value", "pass", "elapsed_us", "measures"}
    assert set(tools["b"]) == {
        "type",
        "method",
        "value",
        "pass",
        "elapsed_us",
        "measures",
        "blobs",
        "detections",
    }
    assert set(tools["m"]) == {"type", "value", "pass", "elapsed_us"}
    assert (tools["g"]["type"], tools["g"]["method"]) == ("grayscale", "weighted")
    assert (tools["b"]["type"], tools["b"]["method"]) == ("blob", "threshold")
    assert tools["m"]["type"] == "math"
    assert set(tools["b"]["measures"]) == {"count", "total_area", "largest_area", "roi_area"}
    for t in tools.values():
        assert isinstance(t["elapsed_us"], float) and t["elapsed_us"] >= 0
    assert set(tools["b"]["blobs"][0]) == {"x", "y", "w", "h", "area", "cx", "cy"}


# --- Inspector on a real ring ------------------------------------------------------------------------------

TOOLS = [
    {"name": "brightness", "type": "grayscale", "pass_fail": {"min": 40, "max": 220}},
    {
        "name": "parts",
        "type": "blob",
        "params": {"th_min": 128, "area_min": 50},
        "pass_fail": {"min": 4, "max": 4},
    },
    {"name": "ok_ratio", "type": "math", "expr": "parts.value / 4"},
]
SPEC_FIELDS = {
    "type",
    "machine_id",
    "camera",
    "result_id",
    "frame_id",
    "trigger",
    "mode",
    "pass",
    "captured_at",
    "finished_at",
    "inspection_version",
    "tools",
}


@pytest.fixture
def ring() -> Iterator[Ring]:
    r = Ring.create(f"{new_run_prefix()}_ring_t", RingGeometry(3, 240, 320, 1))
    try:
        yield r
    finally:
        r.close()
        r.unlink()


def put(ring: Ring, frame: np.ndarray, frame_id: int, at: float) -> tuple[int, int]:
    claimed = ring.begin_write()
    assert claimed is not None
    slot, view = claimed
    view[:] = frame
    return slot, ring.commit(slot, frame_id, at)


def job(ring: Ring, slot: int, seq: int, frame_id: int, at: float, result_id: int = 7) -> Job:
    return Job(result_id, 0, "cam0", ring.name, slot, seq, frame_id, at, "continuous", at + 0.001, 3)


def test_inspector_passes_and_fails_with_full_envelope(ring: Ring) -> None:
    scene = SyntheticScene(320, 240, 1, seed=7, defect_rate=0.5)
    good = next(n for n in range(100) if scene.truth(n)["good"])
    bad = next(n for n in range(100) if scene.truth(n)["defect"] == "missing_part")
    reference = chain(*TOOLS, version=3)
    inspector = Inspector("vm_test", chain(*TOOLS, version=3))
    try:
        for n, expect_pass in ((good, True), (bad, False)):
            slot, seq = put(ring, scene.frame(n), n, 1000.0 + n)
            outcome, payload = inspector.inspect(job(ring, slot, seq, n, 1000.0 + n, result_id=50 + n))
            assert outcome == (msgs.PASSED if expect_pass else msgs.FAILED)
            env = unpack(payload)
            assert set(env) >= SPEC_FIELDS
            assert "error" not in env
            assert {k: env[k] for k in SPEC_FIELDS - {"tools", "finished_at"}} == {
                "type": "inspection.result",
                "machine_id": "vm_test",
                "camera": "cam0",
                "result_id": 50 + n,
                "frame_id": n,
                "trigger": "continuous",
                "mode": "RUN",
                "pass": expect_pass,
                "captured_at": 1000.0 + n,
                "inspection_version": 3,
            }
            assert env["finished_at"] > env["captured_at"]
            ref_tools, ref_pass = reference.run(read_only(scene.frame(n)))
            assert ref_pass is expect_pass
            for name, t in env["tools"].items():
                t.pop("elapsed_us")
                ref_tools[name].pop("elapsed_us")
            assert env["tools"] == ref_tools
            assert env["tools"]["parts"]["value"] == scene.truth(n)["blobs"]
            assert env["tools"]["brightness"]["value"] == pytest.approx(float(scene.frame(n).mean()))
    finally:
        inspector.close()


def test_inspector_reports_overrun_for_an_overwritten_slot(ring: Ring) -> None:
    scene = SyntheticScene(320, 240, 1, seed=7, defect_rate=0.0)
    slot, seq = put(ring, scene.frame(0), 0, 10.0)
    for n in range(1, 4):  # three more frames lap the 3-slot ring: slot 0 now holds frame 3
        put(ring, scene.frame(n), n, 10.0 + n)
    assert not ring.valid(slot, seq)
    inspector = Inspector("vm_test", chain(*TOOLS, version=3))
    try:
        outcome, payload = inspector.inspect(job(ring, slot, seq, 0, 10.0))
    finally:
        inspector.close()
    assert outcome == msgs.OVERRUN
    env = unpack(payload)
    assert set(env) >= SPEC_FIELDS
    assert env["pass"] is False and env["tools"] == {} and env["frame_id"] == 0
    assert env["error"] == {
        "code": LENS_OVERRUN,
        "message": "frame 0 of cam0 was overwritten before it was inspected",
    }


def test_inspector_tool_error_is_an_error_result(ring: Ring) -> None:
    slot, seq = put(ring, np.zeros((240, 320), np.uint8), 5, 20.0)
    inspector = Inspector(
        "vm_test",
        chain(
            {"name": "fine", "type": "grayscale"},
            {"name": "far", "type": "blob", "roi": {"x": 400}},
            version=3,
        ),
    )
    try:
        outcome, payload = inspector.inspect(job(ring, slot, seq, 5, 20.0))
    finally:
        inspector.close()
    assert outcome == msgs.ERROR
    env = unpack(payload)
    assert set(env) >= SPEC_FIELDS
    assert env["pass"] is False and env["tools"] == {}
    assert env["error"]["code"] == LENS_INSPECTION_ERROR
    assert env["error"]["message"].startswith("tool 'far': roi {x: 400, y: 0, w: None, h: None} lies outside")


def test_inspector_refuses_a_job_of_a_version_it_has_not_loaded(ring: Ring) -> None:
    slot, seq = put(ring, np.zeros((240, 320), np.uint8), 5, 20.0)
    inspector = Inspector("vm_test", chain({"name": "fine", "type": "grayscale"}, version=2))
    try:
        outcome, payload = inspector.inspect(job(ring, slot, seq, 5, 20.0))  # a version-3 job
        assert outcome == msgs.ERROR
        env = unpack(payload)
        assert env["error"] == {
            "code": "LENS_INSPECTION_ERROR",
            "message": "inspection config version 3 is not loaded in this worker",
        }
        inspector.load(
            3,
            InspectionConfig.model_validate(
                {"tools": [{"name": "g", "type": "grayscale"}]}
            ).model_dump_json(),
        )
        outcome, payload = inspector.inspect(job(ring, slot, seq, 5, 20.0))
        assert outcome == msgs.PASSED and list(unpack(payload)["tools"]) == ["g"]
        assert sorted(inspector.chains) == [2, 3]
    finally:
        inspector.close()
