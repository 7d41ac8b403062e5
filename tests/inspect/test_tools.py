"""Each inspection tool, run through a ToolChain, against an OpenCV/NumPy reference computed here.

Frames: seeded synthetic ones and scikit-image's bundled photos (gray `camera`, `coins`, `page`;
BGR `astronaut`). A BGR frame reaches the tools as BT.601 luminance (cv2.COLOR_BGR2GRAY), so every
reference starts from that gray image. What a filter leaves for the tools after it is read back
through the chain itself: a later full-frame `custom` tool (`digest` below) returns a checksum of
the whole image it is given, and a later `grayscale` its statistics.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data

from lens.config.models import InspectionConfig
from lens.engine import msgs
from lens.engine.envelope import LENS_INSPECTION_ERROR, Job
from lens.inspect.runner import ToolChain, inspect_frame
from lens.inspect.tools import ToolError
from tests.inspect import images

SEED = 8017  # every random frame below comes from this seed (shown in failure messages)
HERE = "tests.inspect.test_tools"  # dotted path of this module, for `custom` tools


# --- custom functions named by dotted path (tests.inspect.test_tools.<fn>) ---------------------------------


def digest(roi: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """A checksum of exactly the pixels the tool is given, with their shape."""
    a = np.ascontiguousarray(roi)
    return {
        "value": zlib.crc32(a.tobytes()),
        "sum": int(a.sum(dtype=np.int64)),
        "ndim": a.ndim,
        "h": a.shape[0],
        "w": a.shape[1],
    }


def boom(roi: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(f"boom at {roi.shape[1]}x{roi.shape[0]}")


def returns_list(roi: np.ndarray, params: dict[str, Any]) -> Any:
    return [1, 2]


def returns_text(roi: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    return {"value": 1.5, "grade": "high"}


def returns_bool_measure(roi: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    return {"value": 1.5, "ok": True}


def returns_int_pass(roi: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    return {"value": 1.5, "pass": 1}


def bright_share(roi: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """Share of pixels >= `level`, as numpy scalars (they are numbers too); fails below `least`."""
    share = np.count_nonzero(roi >= params["level"]) / roi.size
    return {
        "value": np.float64(share),
        "bright": np.int64(np.count_nonzero(roi >= params["level"])),
        "pass": bool(share >= params.get("least", 0.0)),
    }


def tries_to_write(roi: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    roi[0, 0] = 0
    return {"value": 0}


# --- helpers -----------------------------------------------------------------------------------------------


def chain(*tools: dict[str, Any], version: int = 1) -> ToolChain:
    return ToolChain(InspectionConfig.model_validate({"tools": list(tools)}), version=version)


def read_only(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a).copy()
    a.flags.writeable = False
    return a


def crc(img: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(img).tobytes())


def spots(h: int = 240, w: int = 320, n: int = 16) -> np.ndarray:
    return images.spots(h, w, n, SEED, dot=False)


def astronaut_bgr() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[..., ::-1])


FRAMES: dict[str, Callable[[], np.ndarray]] = {
    "spots": spots,
    "camera": data.camera,
    "coins": data.coins,
    "page": data.page,
    "astronaut_bgr": astronaut_bgr,
}


def gray_of(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame.copy()


def bbox(roi: dict[str, Any], h: int, w: int) -> tuple[int, int, int, int]:
    """The ROI's bounding box (x0, y0, x1, y1) clipped to a w x h frame (SPEC: shapes clip to the frame;
    an ellipse's box is that of the rotated ellipse, rounded out)."""
    shape = roi.get("shape", "rect")
    if shape == "rect":
        x0, y0 = roi.get("x", 0), roi.get("y", 0)
        x1 = x0 + roi["w"] if "w" in roi else w
        y1 = y0 + roi["h"] if "h" in roi else h
    elif shape == "circle":
        x0, y0, x1, y1 = (
            roi["cx"] - roi["r"],
            roi["cy"] - roi["r"],
            roi["cx"] + roi["r"] + 1,
            roi["cy"] + roi["r"] + 1,
        )
    else:
        t = math.radians(roi.get("angle", 0.0))
        hw = math.ceil(math.hypot(roi["rx"] * math.cos(t), roi["ry"] * math.sin(t)))
        hh = math.ceil(math.hypot(roi["rx"] * math.sin(t), roi["ry"] * math.cos(t)))
        x0, y0, x1, y1 = roi["cx"] - hw, roi["cy"] - hh, roi["cx"] + hw + 1, roi["cy"] + hh + 1
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def shape_mask(roi: dict[str, Any], h: int, w: int) -> np.ndarray:
    """Full-frame bool mask of the ROI: the shape drawn filled with OpenCV (LINE_8) on the frame."""
    full = np.zeros((h, w), np.uint8)
    shape = roi.get("shape", "rect")
    if shape == "rect":
        x0, y0, x1, y1 = bbox(roi, h, w)
        full[y0:y1, x0:x1] = 255
    elif shape == "circle":
        cv2.circle(full, (roi["cx"], roi["cy"]), roi["r"], 255, thickness=-1, lineType=cv2.LINE_8)
    else:
        cv2.ellipse(
            full,
            (roi["cx"], roi["cy"]),
            (roi["rx"], roi["ry"]),
            roi.get("angle", 0.0),
            0,
            360,
            255,
            thickness=-1,
            lineType=cv2.LINE_8,
        )
    return full > 0


class Where:
    """A ROI resolved for the reference: its clipped box, and the mask inside that box."""

    def __init__(self, roi: dict[str, Any], h: int, w: int) -> None:
        self.x0, self.y0, self.x1, self.y1 = bbox(roi, h, w)
        self.full = shape_mask(roi, h, w)
        self.mask = self.full[self.y0 : self.y1, self.x0 : self.x1]
        assert self.mask.any(), f"ROI {roi} has no pixel in a {w}x{h} frame"

    def of(self, img: np.ndarray) -> np.ndarray:
        return img[self.y0 : self.y1, self.x0 : self.x1]

    def paste(self, img: np.ndarray, box_result: np.ndarray) -> np.ndarray:
        """img with the box's pixels inside the shape replaced by those of box_result (a copy)."""
        out = img.copy()
        view = self.of(out)
        view[self.mask] = box_result[self.mask]
        return out


def stats(px: np.ndarray) -> dict[str, float]:
    return {"mean": float(px.mean()), "min": int(px.min()), "max": int(px.max()), "std": float(px.std())}


def assert_stats(got: dict[str, float], want: dict[str, float], what: str = "") -> None:
    assert set(got) == {"mean", "min", "max", "std"}, what
    assert (got["min"], got["max"]) == (want["min"], want["max"]), (what, got, want)
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-12, abs=1e-12), (what, got, want)
    assert got["std"] == pytest.approx(want["std"], rel=1e-9, abs=1e-9), (what, got, want)


def reference_blobs(binary: np.ndarray, offset: tuple[int, int]) -> list[dict[str, Any]]:
    """8-connected components of a bool image, as the blob tool lists them (frame coordinates)."""
    n, _, st, cen = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    return [
        {
            "x": int(st[i, cv2.CC_STAT_LEFT]) + offset[0],
            "y": int(st[i, cv2.CC_STAT_TOP]) + offset[1],
            "w": int(st[i, cv2.CC_STAT_WIDTH]),
            "h": int(st[i, cv2.CC_STAT_HEIGHT]),
            "area": int(st[i, cv2.CC_STAT_AREA]),
            "cx": float(cen[i, 0]) + offset[0],
            "cy": float(cen[i, 1]) + offset[1],
        }
        for i in range(1, n)
    ]


def assert_same_blobs(got: list[dict[str, Any]], want: list[dict[str, Any]], what: str = "") -> None:
    def key(b: dict[str, Any]) -> tuple[int, ...]:
        return (b["y"], b["x"], b["area"], b["w"], b["h"])

    got, want = sorted(got, key=key), sorted(want, key=key)
    assert [key(b) for b in got] == [key(b) for b in want], f"{what} (seed {SEED})"
    for g, r in zip(got, want, strict=True):
        assert g["cx"] == pytest.approx(r["cx"], abs=0.0051), what
        assert g["cy"] == pytest.approx(r["cy"], abs=0.0051), what


def without_timing(tools: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in t.items() if k != "elapsed_us"} for name, t in tools.items()}


def job(frame_id: int = 9) -> Job:
    return Job(70, 0, "cam0", "ring_x", 0, 1, frame_id, 100.0, "manual", 100.001, 1)


DIGEST = {"name": "seen", "type": "custom", "params": {"function": f"{HERE}.digest"}}
FULL_STATS = {"name": "after", "type": "grayscale"}

RECT = {"x": 100, "y": 80, "w": 201, "h": 150}
CIRCLE = {"shape": "circle", "cx": 210, "cy": 150, "r": 70}
ELLIPSE = {"shape": "ellipse", "cx": 180, "cy": 160, "rx": 95, "ry": 40, "angle": 30}
CLIPPED_CIRCLE = {"shape": "circle", "cx": 12, "cy": 220, "r": 60}  # crosses the left and bottom edges
CLIPPED_ELLIPSE = {"shape": "ellipse", "cx": 300, "cy": 15, "rx": 70, "ry": 30, "angle": -17.5}
SHAPES = {
    "rect": RECT,
    "circle": CIRCLE,
    "ellipse": ELLIPSE,
    "clipped_circle": CLIPPED_CIRCLE,
    "clipped_ellipse": CLIPPED_ELLIPSE,
}


# --- blur --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_name", ["spots", "camera", "astronaut_bgr"])
@pytest.mark.parametrize("roi_name", ["rect", "circle", "clipped_ellipse"])
@pytest.mark.parametrize(
    ("method", "ksize", "sigma"),
    [
        ("gaussian", 5, 0.0),
        ("gaussian", 9, 2.5),
        ("gaussian", 1, 0.0),
        ("median", 3, 0.0),
        ("median", 7, 0.0),
    ],
)
def test_blur_changes_only_the_roi(
    frame_name: str, roi_name: str, method: str, ksize: int, sigma: float
) -> None:
    frame = read_only(FRAMES[frame_name]())
    original = frame.copy()
    gray = gray_of(frame)
    roi = SHAPES[roi_name]
    at = Where(roi, *gray.shape)
    box = np.ascontiguousarray(at.of(gray))
    blurred = (
        cv2.GaussianBlur(box, (ksize, ksize), sigma) if method == "gaussian" else cv2.medianBlur(box, ksize)
    )
    expected = at.paste(gray, blurred)
    what = f"{frame_name} {roi_name} {method} k={ksize} sigma={sigma}"
    if ksize > 1:
        assert not np.array_equal(expected, gray), f"{what}: the blur must change something"

    c = chain(
        {
            "name": "b",
            "type": "blur",
            "method": method,
            "roi": roi,
            "params": {"ksize": ksize, "sigma": sigma},
        },
        DIGEST,
        FULL_STATS,
    )
    tools, passed = c.run(frame)

    assert passed is True
    assert tools["b"]["value"] == pytest.approx(float(blurred[at.mask].mean()), rel=1e-12), what
    assert tools["b"]["measures"] == {"mean": tools["b"]["value"]}
    seen = tools["seen"]
    assert (seen["value"], seen["measures"]) == (
        crc(expected),
        {"sum": int(expected.sum(dtype=np.int64)), "ndim": 2, "h": gray.shape[0], "w": gray.shape[1]},
    ), what
    assert_stats(tools["after"]["measures"], stats(expected), what)
    assert np.array_equal(frame, original)


# --- threshold ---------------------------------------------------------------------------------------------


def threshold_reference(
    box: np.ndarray, inside: np.ndarray, method: str, th_min: int, th_max: int, invert: bool
) -> tuple[np.ndarray, int]:
    """(foreground bool image of the box, Otsu level or -1)."""
    level = -1
    if method == "binary":
        fg = box >= th_min
    elif method == "range":
        fg = (box >= th_min) & (box <= th_max)
    else:
        px = np.ascontiguousarray(box[inside]).reshape(1, -1)
        level = int(cv2.threshold(px, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[0])
        fg = box > level
    return (~fg if invert else fg), level


@pytest.mark.parametrize("frame_name", ["coins", "camera", "astronaut_bgr", "spots"])
@pytest.mark.parametrize("roi_name", ["rect", "circle", "ellipse"])
@pytest.mark.parametrize(
    ("method", "th_min", "th_max"), [("binary", 120, 255), ("range", 60, 150), ("otsu", 128, 255)]
)
@pytest.mark.parametrize("invert", [False, True])
def test_threshold_binarises_the_roi(
    frame_name: str, roi_name: str, method: str, th_min: int, th_max: int, invert: bool
) -> None:
    frame = read_only(FRAMES[frame_name]())
    original = frame.copy()
    gray = gray_of(frame)
    roi = SHAPES[roi_name]
    at = Where(roi, *gray.shape)
    box = at.of(gray)
    fg, level = threshold_reference(box, at.mask, method, th_min, th_max, invert)
    fg_inside = fg & at.mask
    count = int(fg_inside.sum())
    expected = at.paste(gray, np.where(fg, 255, 0).astype(np.uint8))
    what = f"{frame_name} {roi_name} {method} invert={invert}"
    assert 0 < count < int(at.mask.sum()), f"{what}: a degenerate split proves nothing"

    c = chain(
        {
            "name": "t",
            "type": "threshold",
            "method": method,
            "roi": roi,
            "params": {"th_min": th_min, "th_max": th_max, "invert": invert},
        },
        DIGEST,
        {"name": "inside", "type": "grayscale", "roi": roi},
        {
            "name": "parts",
            "type": "blob",
            "roi": roi,
            "params": {"th_min": 1, "th_max": 255, "max_blobs": 10000},
        },
        {"name": "full", "type": "blob", "roi": roi, "params": {"th_min": 255, "th_max": 255}},
    )
    tools, _ = c.run(frame)

    t = tools["t"]
    assert t["value"] == count, what
    assert t["measures"] == {"count": count, "ratio": count / int(at.mask.sum()), "level": level}, what
    assert tools["seen"]["value"] == crc(expected), what
    # the tools after it see only 0 and 255 inside the ROI
    inside = tools["inside"]["measures"]
    assert (inside["min"], inside["max"]) == (0, 255), what
    assert inside["mean"] == pytest.approx(255 * count / int(at.mask.sum()), rel=1e-12), what
    want = reference_blobs(fg_inside, (at.x0, at.y0))
    assert tools["parts"]["value"] == tools["full"]["value"] == len(want), what
    assert_same_blobs(tools["parts"]["blobs"], want, what)
    assert tools["parts"]["measures"]["total_area"] == count, what
    assert np.array_equal(frame, original)


def test_otsu_level_of_a_bimodal_frame_and_of_a_flat_roi() -> None:
    rng = np.random.default_rng(SEED)
    frame = np.where(
        rng.random((100, 150)) < 0.3, rng.integers(170, 230, (100, 150)), rng.integers(20, 80, (100, 150))
    ).astype(np.uint8)
    level = int(cv2.threshold(frame, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[0])
    assert 79 <= level < 170, f"seed {SEED}"
    tools, _ = chain({"name": "t", "type": "threshold", "method": "otsu"}).run(read_only(frame))
    assert tools["t"]["measures"] == {
        "count": int((frame > level).sum()),
        "ratio": float((frame > level).mean()),
        "level": level,
    }
    flat = np.full((40, 60), 255, np.uint8)  # Otsu's level 255: nothing is above it
    ref_level = int(cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[0])
    tools, _ = chain({"name": "t", "type": "threshold", "method": "otsu"}, DIGEST).run(read_only(flat))
    assert tools["t"]["measures"]["count"] == int((flat > ref_level).sum())
    assert tools["seen"]["value"] == crc(np.where(flat > ref_level, 255, 0).astype(np.uint8))


# --- morphology ------------------------------------------------------------------------------------------

_OPS = {
    "open": cv2.MORPH_OPEN,
    "close": cv2.MORPH_CLOSE,
    "erode": cv2.MORPH_ERODE,
    "dilate": cv2.MORPH_DILATE,
}
_SHAPES = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}


@pytest.mark.parametrize("method", ["open", "close", "erode", "dilate"])
@pytest.mark.parametrize("shape", ["rect", "ellipse", "cross"])
@pytest.mark.parametrize(("ksize", "iterations"), [(3, 1), (5, 2), (7, 3)])
@pytest.mark.parametrize("roi_name", ["rect", "circle"])
def test_morphology_equals_opencv_on_the_roi(
    method: str, shape: str, ksize: int, iterations: int, roi_name: str
) -> None:
    frame = read_only(data.coins())
    roi = SHAPES[roi_name]
    at = Where(roi, *frame.shape)
    binary = np.where(at.of(frame) >= 110, 255, 0).astype(np.uint8)
    after_threshold = at.paste(frame, binary)
    box = np.ascontiguousarray(at.of(after_threshold))
    kernel = cv2.getStructuringElement(_SHAPES[shape], (ksize, ksize))
    morphed = cv2.morphologyEx(box, _OPS[method], kernel, iterations=iterations)
    expected = at.paste(after_threshold, morphed)
    count = int(np.count_nonzero(morphed[at.mask]))
    what = f"{method} {shape} k={ksize} x{iterations} {roi_name}"
    assert count != int(np.count_nonzero(box[at.mask])), f"{what}: the operation must change the count"

    tools, _ = chain(
        {"name": "t", "type": "threshold", "roi": roi, "params": {"th_min": 110}},
        {
            "name": "m",
            "type": "morphology",
            "method": method,
            "roi": roi,
            "params": {"ksize": ksize, "shape": shape, "iterations": iterations},
        },
        DIGEST,
    ).run(frame)

    assert (tools["m"]["value"], tools["m"]["measures"]) == (count, {"count": count}), what
    assert tools["seen"]["value"] == crc(expected), what


# --- blob with shaped ROIs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_name", ["coins", "spots", "astronaut_bgr"])
@pytest.mark.parametrize("roi_name", ["circle", "ellipse", "clipped_circle", "clipped_ellipse"])
@pytest.mark.parametrize(("th_min", "th_max", "area_min"), [(128, 255, 0), (90, 200, 5)])
def test_blob_in_circle_and_ellipse_rois_equals_opencv(
    frame_name: str, roi_name: str, th_min: int, th_max: int, area_min: int
) -> None:
    frame = read_only(FRAMES[frame_name]())
    gray = gray_of(frame)
    roi = SHAPES[roi_name]
    at = Where(roi, *gray.shape)
    box = at.of(gray)
    band = (box >= th_min) & (box <= th_max) & at.mask
    want = [b for b in reference_blobs(band, (at.x0, at.y0)) if b["area"] >= area_min]
    what = f"{frame_name} {roi_name} [{th_min}, {th_max}] area_min={area_min}"
    assert want, f"{what}: no blob to compare"

    tools, _ = chain(
        {
            "name": "b",
            "type": "blob",
            "roi": roi,
            "params": {"th_min": th_min, "th_max": th_max, "area_min": area_min, "max_blobs": 10000},
        }
    ).run(frame)

    b = tools["b"]
    assert b["value"] == len(want), what
    assert b["measures"] == {
        "count": len(want),
        "total_area": sum(x["area"] for x in want),
        "largest_area": max(x["area"] for x in want),
        "roi_area": int(at.full.sum()),  # the shape's pixels inside the frame
    }, what
    assert_same_blobs(b["blobs"], want, what)
    # every blob lies inside the shape, in frame coordinates
    for blob in b["blobs"]:
        assert at.full[blob["y"] : blob["y"] + blob["h"], blob["x"] : blob["x"] + blob["w"]].any(), what


# --- grayscale with shaped ROIs ----------------------------------------------------------------------------


@pytest.mark.parametrize("frame_name", ["camera", "coins", "astronaut_bgr", "spots"])
@pytest.mark.parametrize("roi_name", ["circle", "ellipse", "clipped_circle", "clipped_ellipse"])
def test_grayscale_in_circle_and_ellipse_rois_equals_numpy(frame_name: str, roi_name: str) -> None:
    frame = read_only(FRAMES[frame_name]())
    gray = gray_of(frame)
    roi = SHAPES[roi_name]
    full = shape_mask(roi, *gray.shape)
    tools, _ = chain({"name": "g", "type": "grayscale", "roi": roi}).run(frame)
    assert_stats(tools["g"]["measures"], stats(gray[full]), f"{frame_name} {roi_name}")
    assert tools["g"]["value"] == tools["g"]["measures"]["mean"]


def test_grayscale_circle_mask_is_not_its_bounding_box() -> None:
    # a bright square with a dark disc inscribed: the disc's mean differs from its box's
    frame = np.full((120, 120), 200, np.uint8)
    cv2.circle(frame, (60, 60), 30, 10, thickness=-1, lineType=cv2.LINE_8)
    tools, _ = chain(
        {"name": "g", "type": "grayscale", "roi": {"shape": "circle", "cx": 60, "cy": 60, "r": 30}},
        {"name": "box", "type": "grayscale", "roi": {"x": 30, "y": 30, "w": 61, "h": 61}},
    ).run(read_only(frame))
    assert tools["g"]["measures"] == {"mean": 10.0, "min": 10, "max": 10, "std": 0.0}
    assert tools["box"]["measures"]["max"] == 200 and tools["box"]["measures"]["mean"] > 10


@pytest.mark.parametrize("roi_name", ["circle", "ellipse"])
def test_grayscale_normalize_in_a_shape_equalises_the_shapes_histogram(roi_name: str) -> None:
    # the shape's own histogram, as threshold's otsu uses (at 1e79b1d: the bounding box's, corners included)
    frame = read_only(data.camera())
    roi = SHAPES[roi_name]
    at = Where(roi, *frame.shape)
    box = at.of(frame).copy()
    box[at.mask] = cv2.equalizeHist(np.ascontiguousarray(box[at.mask]).reshape(1, -1)).ravel()
    expected = at.paste(frame, box)
    tools, _ = chain(
        {"name": "g", "type": "grayscale", "roi": roi, "params": {"normalize": True}},
        {"name": "inside", "type": "grayscale", "roi": roi},
        DIGEST,
    ).run(frame)
    assert_stats(tools["g"]["measures"], stats(frame[at.full]))  # measured before equalising
    assert_stats(tools["inside"]["measures"], stats(expected[at.full]))
    assert tools["seen"]["value"] == crc(expected)


# --- edge_detection ----------------------------------------------------------------------------------------


def sobel_edges(box: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels of `box` (taken as a whole image: BORDER_REFLECT_101 at its edges) with |grad| > t."""
    c = np.ascontiguousarray(box)
    gx = cv2.Sobel(c, cv2.CV_32F, 1, 0, ksize=3).astype(np.float64)
    gy = cv2.Sobel(c, cv2.CV_32F, 0, 1, ksize=3).astype(np.float64)
    return gx * gx + gy * gy > threshold * threshold


@pytest.mark.parametrize("frame_name", ["camera", "page", "astronaut_bgr"])
@pytest.mark.parametrize(
    "roi",
    [{}, RECT, {"x": 0, "y": 0, "w": 3, "h": 2}, CIRCLE, CLIPPED_ELLIPSE],
    ids=["full", "rect", "tiny", "circle", "clipped_ellipse"],
)
@pytest.mark.parametrize("threshold", [50.0, 100.0, 60.5, 0.0])
def test_edge_detection_equals_opencv_sobel(frame_name: str, roi: dict[str, Any], threshold: float) -> None:
    frame = read_only(FRAMES[frame_name]())
    gray = gray_of(frame)
    at = Where(roi, *gray.shape)
    edges = sobel_edges(at.of(gray), threshold) & at.mask
    count = int(edges.sum())
    pixels = int(at.mask.sum())
    tools, _ = chain(
        {"name": "e", "type": "edge_detection", "roi": roi, "params": {"threshold": threshold}}
    ).run(frame)
    what = f"{frame_name} {roi} t={threshold}"
    assert tools["e"]["value"] == count, what
    assert tools["e"]["measures"] == {"count": count, "density": count / pixels}, what
    assert tools["e"]["method"] == "sobel"


def test_edge_detection_reflects_at_the_roi_edges_not_the_frame() -> None:
    # a vertical step just outside the ROI: seen through the frame it would be an edge at the ROI's
    # first column; with the ROI taken as a whole image (REFLECT_101) that column is flat
    frame = np.zeros((40, 60), np.uint8)
    frame[:, 20:] = 200
    roi = {"x": 20, "y": 5, "w": 30, "h": 30}
    assert int(sobel_edges(frame, 100)[5:35, 20:50].sum()) == 30  # the frame's view: one edge column
    assert int(sobel_edges(frame[5:35, 20:50], 100).sum()) == 0
    tools, _ = chain({"name": "e", "type": "edge_detection", "roi": roi}).run(read_only(frame))
    assert tools["e"]["value"] == 0


# --- locate (caliper) --------------------------------------------------------------------------------------


def step_frame(edge: float, h: int = 120, w: int = 320, dark: int = 40, bright: int = 200) -> np.ndarray:
    """A vertical step at x = `edge` (pixel centres at integers): dark left, bright right, each pixel
    column the area-weighted mix of the two, so the step lies between pixel centres at sub-pixel x."""
    x = np.arange(w, dtype=np.float64)
    cover = np.clip(x + 0.5 - edge, 0.0, 1.0)
    return np.tile(np.rint(dark + (bright - dark) * cover).astype(np.uint8), (h, 1))


def locate(params: dict[str, Any], name: str = "edge", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "locate", "params": params, **extra}


@pytest.mark.parametrize("edge", [150.0, 150.3, 150.5, 150.77, 99.5, 201.2])
def test_locate_finds_a_step_edge_within_half_a_pixel(edge: float) -> None:
    frame = read_only(step_frame(edge))
    tools, passed = chain(locate({"p0": [20, 60], "p1": [300, 60]})).run(frame)
    t = tools["edge"]
    assert passed is True and t["pass"] is True
    m = t["measures"]
    assert (m["found"], m["edges"], m["offset"]) == (1, 1, 0.0)
    assert abs(m["x"] - edge) <= 0.5 and abs(m["position"] - (edge - 20)) <= 0.5, m
    assert m["y"] == 60.0 and t["value"] == m["position"]
    assert m["strength"] > 20  # rising: dark to light from p0 to p1


def test_locate_on_a_short_ramp_finds_its_centre() -> None:
    x = np.arange(320, dtype=np.float64)
    for start, length in [(140.0, 4), (140.3, 4), (150.6, 3), (140.0, 10)]:
        row = np.clip(40 + (x - start) * (160 / length), 40, 200)
        frame = read_only(np.tile(np.rint(row).astype(np.uint8), (50, 1)))
        tools, _ = chain(locate({"p0": [20, 25], "p1": [300, 25], "threshold": 5})).run(frame)
        m = tools["edge"]["measures"]
        centre = start + length / 2
        assert m["edges"] == 1 and abs(m["x"] - centre) <= 0.5, (start, length, m)


def test_locate_on_a_long_ramp_finds_one_edge_at_its_centre() -> None:
    x = np.arange(320, dtype=np.float64)
    frame = read_only(np.tile(np.rint(np.clip(40 + (x - 140) * 8, 40, 200)).astype(np.uint8), (50, 1)))
    tools, _ = chain(locate({"p0": [20, 25], "p1": [300, 25], "threshold": 5})).run(frame)
    m = tools["edge"]["measures"]
    assert m["edges"] == 1 and abs(m["x"] - 150.0) <= 0.5, m


def test_locate_oblique_caliper() -> None:
    edge = 150.3
    frame = read_only(step_frame(edge, h=200))
    p0, p1 = (20.0, 30.0), (300.0, 130.0)
    length = math.hypot(p1[0] - p0[0], p1[1] - p0[1])
    t_cross = (edge - p0[0]) / (p1[0] - p0[0])
    tools, _ = chain(locate({"p0": list(p0), "p1": list(p1)})).run(frame)
    m = tools["edge"]["measures"]
    assert abs(m["position"] - t_cross * length) <= 0.5, m
    assert abs(m["x"] - edge) <= 0.5 and abs(m["y"] - (p0[1] + t_cross * (p1[1] - p0[1]))) <= 0.5, m


def test_locate_polarity_follows_the_line_direction() -> None:
    frame = read_only(step_frame(150.5))  # dark left, bright right
    forward = {"p0": [20, 60], "p1": [300, 60]}
    backward = {"p0": [300, 60], "p1": [20, 60]}
    found = {}
    for name, line in (("forward", forward), ("backward", backward)):
        for polarity in ("rising", "falling", "any"):
            tools, _ = chain(locate({**line, "polarity": polarity})).run(frame)
            found[name, polarity] = tools["edge"]["measures"]
    assert found["forward", "rising"]["x"] == found["forward", "any"]["x"] == 150.5
    assert found["forward", "rising"]["strength"] > 0
    assert found["backward", "falling"]["x"] == found["backward", "any"]["x"] == 150.5
    assert found["backward", "falling"]["strength"] < 0
    assert found["backward", "falling"]["position"] == 300 - 150.5
    assert found["forward", "falling"] == found["backward", "rising"] == {"found": 0, "edges": 0}


def two_edges() -> np.ndarray:
    """Rising at x = 99.5 (30 -> 220, strong), falling at x = 199.5 (220 -> 150, weak)."""
    row = np.full(320, 30, np.uint8)
    row[100:200] = 220
    row[200:] = 150
    return np.tile(row, (50, 1))


@pytest.mark.parametrize(
    ("select", "polarity", "x", "edges"),
    [
        ("first", "any", 99.5, 2),
        ("last", "any", 199.5, 2),
        ("strongest", "any", 99.5, 2),
        ("first", "falling", 199.5, 1),
        ("last", "rising", 99.5, 1),
        ("strongest", "falling", 199.5, 1),
    ],
)
def test_locate_select_and_polarity_with_two_edges(select: str, polarity: str, x: float, edges: int) -> None:
    line = {"p0": [10, 25], "p1": [310, 25], "select": select, "polarity": polarity}
    tools, _ = chain(locate(line)).run(read_only(two_edges()))
    m = tools["edge"]["measures"]
    assert (m["x"], m["position"], m["edges"]) == (x, x - 10, edges)
    assert (m["strength"] > 0) == (x == 99.5)


def test_locate_strongest_picks_the_larger_step_wherever_it_is() -> None:
    row = np.full(320, 30, np.uint8)
    row[100:200] = 90  # rising by 60
    row[200:] = 250  # rising by 160: the strongest is the last one
    line = {"p0": [10, 25], "p1": [310, 25], "threshold": 10}
    tools, _ = chain(
        locate({**line, "select": "strongest"}), locate({**line, "select": "first"}, name="first")
    ).run(read_only(np.tile(row, (50, 1))))
    assert tools["edge"]["measures"]["x"] == 199.5 and tools["first"]["measures"]["x"] == 99.5


def test_locate_without_an_edge_fails_the_result_but_is_not_an_error() -> None:
    frame = read_only(np.full((60, 200), 90, np.uint8))
    c = chain({"name": "g", "type": "grayscale"}, locate({"p0": [10, 30], "p1": [190, 30]}))
    tools, passed = c.run(frame)
    assert passed is False
    assert tools["edge"] | {"elapsed_us": 0} == {
        "type": "locate",
        "method": "caliper",
        "value": None,
        "pass": False,
        "elapsed_us": 0,
        "measures": {"found": 0, "edges": 0},
    }
    assert tools["g"]["pass"] is True
    outcome, env = inspect_frame(c, "vm_t", job(), frame)
    assert outcome == msgs.FAILED and "error" not in env and env["pass"] is False
    assert env["tools"]["edge"]["value"] is None
    # an edge weaker than the threshold is no edge either
    weak = read_only(step_frame(100.5, h=60, w=200, dark=90, bright=100))
    tools, passed = chain(locate({"p0": [10, 30], "p1": [190, 30], "threshold": 20})).run(weak)
    assert passed is False and tools["edge"]["measures"] == {"found": 0, "edges": 0}
    tools, passed = chain(locate({"p0": [10, 30], "p1": [190, 30], "threshold": 2})).run(weak)
    assert passed is True and tools["edge"]["measures"]["x"] == 100.5


def test_locate_offset_from_reference_and_pass_fail() -> None:
    frame = read_only(step_frame(150.5))
    tools, passed = chain(
        locate(
            {"p0": [20, 60], "p1": [300, 60], "reference": 120},
            pass_fail={"measures": {"offset": {"max": 5}}},
        ),
        locate(
            {"p0": [20, 60], "p1": [300, 60], "reference": 130},
            name="near",
            pass_fail={"measures": {"offset": {"min": -1, "max": 1}}},
        ),
    ).run(frame)
    assert tools["edge"]["measures"]["offset"] == 10.5 and tools["edge"]["pass"] is False
    assert tools["near"]["measures"]["offset"] == 0.5 and tools["near"]["pass"] is True
    assert passed is False


def part_scene(dx: int, dy: int, h: int = 200, w: int = 320) -> np.ndarray:
    """A bright part (x 60..179, y 40..159) with three dark holes, on a dark background, moved by (dx, dy)."""
    img = np.full((h, w), 30, np.uint8)
    img[40 + dy : 160 + dy, 60 + dx : 180 + dx] = 200
    for (cx, cy), r, v in (((90, 70), 8, 60), ((140, 110), 14, 20), ((100, 130), 5, 80)):
        cv2.circle(img, (cx + dx, cy + dy), r, v, thickness=-1)
    return img


SHIFTED_TOOLS = [
    {
        "name": "holes",
        "type": "blob",
        "roi": {"x": 70, "y": 50, "w": 100, "h": 100},
        "params": {"th_min": 0, "th_max": 100},
    },
    {"name": "hole", "type": "grayscale", "roi": {"x": 120, "y": 90, "w": 41, "h": 41}},
    {"name": "rim", "type": "edge_detection", "roi": {"x": 50, "y": 30, "w": 60, "h": 40}},
    {
        "name": "seen_roi",
        "type": "custom",
        "roi": {"x": 65, "y": 45, "w": 110, "h": 110},
        "params": {"function": f"{HERE}.digest"},
    },
]
SHAPED_TOOLS = [
    {"name": "hole", "type": "grayscale", "roi": {"shape": "circle", "cx": 140, "cy": 110, "r": 20}},
    {
        "name": "rim",
        "type": "edge_detection",
        "roi": {"shape": "ellipse", "cx": 120, "cy": 100, "rx": 65, "ry": 40},
    },
    {
        "name": "holes",
        "type": "blob",
        "roi": {"shape": "ellipse", "cx": 120, "cy": 100, "rx": 50, "ry": 50, "angle": 20},
        "params": {"th_min": 0, "th_max": 100},
    },
]
CALIPERS = [
    # left edge of the part at x = 59.5 along y = 100; top edge at y = 39.5 along x = 120
    locate({"p0": [5, 100], "p1": [150, 100], "reference": 54.5, "shift_rois": True}, name="left"),
    locate({"p0": [120, 5], "p1": [120, 100], "reference": 34.5, "shift_rois": True}, name="top"),
]
MOVES = [(10, 0), (10, -6), (-7, 9), (0, 0)]


def assert_moved_with_the_part(home: dict[str, Any], moved: dict[str, Any], dx: int, dy: int) -> None:
    """Tools after the calipers saw the same pixels: same measures, blobs moved by (dx, dy)."""
    for name, t in home.items():
        if name in ("left", "top"):
            continue
        assert moved[name]["measures"] == t["measures"], (name, dx, dy)
        assert moved[name]["value"] == t["value"], (name, dx, dy)
    shifted = [
        b | {"x": b["x"] + dx, "y": b["y"] + dy, "cx": round(b["cx"] + dx, 2), "cy": round(b["cy"] + dy, 2)}
        for b in home["holes"]["blobs"]
    ]
    assert moved["holes"]["blobs"] == shifted


@pytest.mark.parametrize(("dx", "dy"), MOVES)
def test_locate_shift_rois_moves_later_rois_with_the_part(dx: int, dy: int) -> None:
    home, _ = chain(*CALIPERS, *SHIFTED_TOOLS).run(read_only(part_scene(0, 0)))
    moved, passed = chain(*CALIPERS, *SHIFTED_TOOLS).run(read_only(part_scene(dx, dy)))
    assert passed is True
    assert moved["left"]["measures"]["offset"] == dx and moved["left"]["measures"]["x"] == 59.5 + dx
    assert moved["top"]["measures"]["offset"] == dy and moved["top"]["measures"]["y"] == 39.5 + dy
    assert home["holes"]["value"] == 3 and home["rim"]["value"] > 0
    assert_moved_with_the_part(home, moved, dx, dy)


@pytest.mark.parametrize(("dx", "dy"), MOVES)
def test_locate_shift_rois_moves_circle_and_ellipse_rois(dx: int, dy: int) -> None:
    home, _ = chain(*CALIPERS, *SHAPED_TOOLS).run(read_only(part_scene(0, 0)))
    moved, _ = chain(*CALIPERS, *SHAPED_TOOLS).run(read_only(part_scene(dx, dy)))
    assert home["holes"]["value"] == 3
    assert_moved_with_the_part(home, moved, dx, dy)


def test_locate_shift_rois_of_shaped_rois_without_a_move() -> None:
    home, _ = chain(*CALIPERS, *SHAPED_TOOLS).run(read_only(part_scene(0, 0)))
    plain, _ = chain(*SHAPED_TOOLS).run(read_only(part_scene(0, 0)))
    assert without_timing(plain) == without_timing(
        {k: v for k, v in home.items() if k not in ("left", "top")}
    )


def test_locate_without_shift_rois_leaves_later_rois_in_place() -> None:
    still = [{**c, "params": {**c["params"], "shift_rois": False}} for c in CALIPERS]
    home, _ = chain(*still, *SHIFTED_TOOLS).run(read_only(part_scene(0, 0)))
    moved, _ = chain(*still, *SHIFTED_TOOLS).run(read_only(part_scene(10, -6)))
    assert moved["left"]["measures"]["offset"] == 10 and moved["top"]["measures"]["offset"] == -6
    assert moved["seen_roi"]["value"] != home["seen_roi"]["value"]
    assert moved["hole"]["measures"] != home["hole"]["measures"]


def test_locate_shift_resets_on_the_next_frame() -> None:
    c = chain(*CALIPERS, *SHIFTED_TOOLS)
    home, _ = c.run(read_only(part_scene(0, 0)))
    c.run(read_only(part_scene(10, -6)))
    again, _ = c.run(read_only(part_scene(0, 0)))
    assert without_timing(again) == without_timing(home)


# --- pattern_matching --------------------------------------------------------------------------------------


def texture(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (3, 3), 0)


def write_png(path: Path, img: np.ndarray) -> str:
    assert cv2.imwrite(str(path), img)
    return str(path)


def pattern(template: str, name: str = "pm", **params: Any) -> dict[str, Any]:
    extra = {k: params.pop(k) for k in ("roi", "pass_fail") if k in params}
    return {"name": name, "type": "pattern_matching", "params": {"template": template, **params}, **extra}


@pytest.mark.parametrize("source", ["coins", "camera", "texture"])
def test_pattern_found_exactly_where_it_was_planted(tmp_path: Path, source: str) -> None:
    tpl = {
        "coins": data.coins()[40:100, 60:130],
        "camera": data.camera()[100:148, 200:280],
        "texture": np.random.default_rng(SEED + 1).integers(0, 256, (33, 47), dtype=np.uint8),
    }[source]
    th, tw = tpl.shape
    path = write_png(tmp_path / "t.png", tpl)
    c = chain(pattern(path))
    for x, y in [(0, 0), (400 - tw, 300 - th), (123, 57), (7, 300 - th)]:
        frame = texture(300, 400)
        frame[y : y + th, x : x + tw] = tpl
        tools, passed = c.run(read_only(frame))
        m = tools["pm"]["measures"]
        what = f"{source} at ({x}, {y}), seed {SEED}"
        assert (m["x"], m["y"]) == (x, y), what
        assert (m["cx"], m["cy"]) == (x + (tw - 1) / 2, y + (th - 1) / 2), what
        assert m["score"] >= 0.999 and tools["pm"]["value"] == m["score"], what
        assert passed is True, what


def test_pattern_roi_that_excludes_the_part_scores_lower(tmp_path: Path) -> None:
    tpl = data.coins()[40:100, 60:130]
    path = write_png(tmp_path / "t.png", tpl)
    frame = texture(300, 400)
    frame[50:110, 20:90] = tpl
    frame = read_only(frame)
    left = {"x": 0, "y": 0, "w": 200, "h": 300}
    right = {"x": 200, "y": 0, "w": 200, "h": 300}
    tools, passed = chain(
        pattern(path, "left", roi=left, min_score=0.9), pattern(path, "right", roi=right, min_score=0.9)
    ).run(frame)
    assert (tools["left"]["measures"]["x"], tools["left"]["measures"]["y"]) == (20, 50)
    assert tools["left"]["pass"] is True
    r = tools["right"]
    assert r["value"] < 0.5 and r["pass"] is False and passed is False
    assert 200 <= r["measures"]["x"] <= 400 - 70, "the best match lies inside the ROI, in frame coordinates"
    # ground truth for the right half: OpenCV over the same search region
    res = cv2.matchTemplate(np.ascontiguousarray(frame[:, 200:]), tpl, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(res)
    assert (r["measures"]["x"], r["measures"]["y"]) == (200 + bx, by)
    assert r["value"] == pytest.approx(best, abs=1e-5)  # refined on a sub-window (pyramid: auto)


def test_pattern_min_score_and_pass_fail(tmp_path: Path) -> None:
    tpl = data.camera()[100:148, 200:280]
    path = write_png(tmp_path / "t.png", tpl)
    frame = texture(200, 300)
    frame[60:108, 90:170] = np.clip(
        tpl.astype(np.int16) + np.random.default_rng(SEED).integers(-40, 41, tpl.shape), 0, 255
    ).astype(np.uint8)  # a noisy copy
    frame = read_only(frame)
    score = round(float(cv2.minMaxLoc(cv2.matchTemplate(frame, tpl, cv2.TM_CCOEFF_NORMED))[1]), 6)
    assert 0.6 < score < 0.98, f"seed {SEED}: score {score}"
    tools, passed = chain(
        pattern(path, "lenient", min_score=score),
        pattern(path, "strict", min_score=min(1.0, score + 0.01)),
        pattern(path, "limited", min_score=-1, pass_fail={"measures": {"x": {"min": 91}}}),
        pattern(
            path,
            "placed",
            min_score=0.5,
            pass_fail={"measures": {"x": {"min": 90, "max": 90}, "cy": {"min": 83.5, "max": 83.5}}},
        ),
    ).run(frame)
    # pyramid: auto refines on a sub-window: OpenCV's normalisation sums then differ in the 7th digit
    near = pytest.approx(score, abs=1e-5)
    assert {n: (t["value"], t["pass"]) for n, t in tools.items()} == {
        "lenient": (near, True),
        "strict": (near, False),
        "limited": (near, False),
        "placed": (near, True),
    }
    assert passed is False


def test_pattern_region_of_a_reference_image(tmp_path: Path) -> None:
    camera = data.camera()
    path = write_png(tmp_path / "reference.png", camera)
    for region, (x, y, w, h) in [
        ({"x": 200, "y": 150, "w": 64, "h": 48}, (200, 150, 64, 48)),
        ({"x": 400, "y": 440}, (400, 440, 112, 72)),  # w, h to the image's edges
    ]:
        tools, _ = chain(pattern(path, region=region)).run(read_only(camera))
        m = tools["pm"]["measures"]
        assert (m["x"], m["y"], m["cx"], m["cy"]) == (x, y, x + (w - 1) / 2, y + (h - 1) / 2), region
        assert m["score"] >= 0.999, region


def test_pattern_on_bgr_frame_matches_its_luminance(tmp_path: Path) -> None:
    frame = read_only(astronaut_bgr())
    tpl = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[100:160, 200:260]
    path = write_png(tmp_path / "t.png", tpl)
    tools, _ = chain(pattern(path, roi=CIRCLE | {"cx": 240, "cy": 140, "r": 90})).run(frame)
    m = tools["pm"]["measures"]
    assert (m["x"], m["y"]) == (200, 100) and m["score"] >= 0.999


def test_pattern_template_larger_than_a_clipped_roi_is_a_tool_error(tmp_path: Path) -> None:
    path = write_png(tmp_path / "t.png", data.coins()[40:100, 60:130])  # 70x60
    c = chain(pattern(path, roi={"x": 350, "y": 0, "w": 100, "h": 100}))
    with pytest.raises(
        ToolError, match=r"^tool 'pm': the 70x60 template is larger than the 50x100 search region$"
    ):
        c.run(read_only(texture(300, 400)))


# --- custom ------------------------------------------------------------------------------------------------


def test_custom_contrast_example_on_a_known_image() -> None:
    # 10% at 20, 80% at 100, 10% at 200: the 2nd, 5th, 50th, 95th and 98th percentiles are 20, 20, 100,
    # 200 and 200 whatever the interpolation, so the Michelson contrasts are known exactly
    rng = np.random.default_rng(SEED)
    levels = np.array([20] * 10 + [100] * 80 + [200] * 10, np.uint8)
    frame = np.full((60, 80), 255, np.uint8)
    frame[10:20, 20:30] = rng.permutation(levels).reshape(10, 10)
    roi = {"x": 20, "y": 10, "w": 10, "h": 10}
    contrast = "lens.inspect.examples.contrast"
    tools, passed = chain(
        {"name": "c", "type": "custom", "roi": roi, "params": {"function": contrast}},
        {
            "name": "mid",
            "type": "custom",
            "method": "michelson",
            "roi": roi,
            "params": {"function": contrast, "args": {"low": 50, "high": 98}},
        },
        {
            "name": "strict",
            "type": "custom",
            "roi": roi,
            "params": {"function": contrast, "args": {"min_contrast": 0.9}},
        },
    ).run(read_only(frame))
    assert (tools["c"]["value"], tools["c"]["measures"]) == (180 / 220, {"p_low": 20.0, "p_high": 200.0})
    assert tools["c"]["pass"] is True and "method" not in tools["c"]
    assert (tools["mid"]["value"], tools["mid"]["measures"]) == (100 / 300, {"p_low": 100.0, "p_high": 200.0})
    assert tools["mid"]["method"] == "michelson"
    assert (tools["strict"]["value"], tools["strict"]["pass"]) == (180 / 220, False)
    assert passed is False
    flat, _ = chain({"name": "c", "type": "custom", "params": {"function": contrast}}).run(
        read_only(np.zeros((10, 10), np.uint8))
    )
    assert (flat["c"]["value"], flat["c"]["pass"]) == (0.0, False)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        ("boom", f"tool 'bad': {HERE}.boom raised ValueError: boom at 40x30"),
        ("returns_list", f"tool 'bad': {HERE}.returns_list returned list, expected a dict of measures"),
        ("returns_text", "tool 'bad': measure 'grade' must be a number, got 'high'"),
        ("returns_bool_measure", "tool 'bad': measure 'ok' must be a number, got True"),
        ("returns_int_pass", "tool 'bad': 'pass' must be true or false, got 1"),
        (
            "tries_to_write",
            f"tool 'bad': {HERE}.tries_to_write raised ValueError: assignment destination is read-only",
        ),
    ],
)
def test_custom_failures_are_errors_naming_the_tool(fn: str, message: str) -> None:
    frame = read_only(spots())
    original = frame.copy()
    c = chain(
        {"name": "g", "type": "grayscale"},
        {
            "name": "bad",
            "type": "custom",
            "roi": {"x": 10, "y": 20, "w": 40, "h": 30},
            "params": {"function": f"{HERE}.{fn}"},
        },
    )
    with pytest.raises(ToolError) as info:
        c.run(frame)
    assert str(info.value) == message
    outcome, env = inspect_frame(c, "vm_t", job(), frame)
    assert outcome == msgs.ERROR
    assert env["pass"] is False and env["tools"] == {}
    assert env["error"] == {"code": LENS_INSPECTION_ERROR, "message": message}
    assert np.array_equal(frame, original)


def test_custom_verdict_and_measures_feed_math() -> None:
    frame = read_only(data.coins())
    roi = {"x": 30, "y": 20, "w": 150, "h": 120}
    box = frame[20:140, 30:180]
    bright = int(np.count_nonzero(box >= 150))
    share = bright / box.size
    tools, passed = chain(
        {
            "name": "share",
            "type": "custom",
            "roi": roi,
            "params": {"function": f"{HERE}.bright_share", "args": {"level": 150}},
        },
        {
            "name": "picky",
            "type": "custom",
            "roi": roi,
            "params": {"function": f"{HERE}.bright_share", "args": {"level": 150, "least": share + 0.01}},
        },
        {"name": "both", "type": "math", "expr": "share.bright / share + picky.bright"},
        {"name": "check", "type": "math", "expr": f"share.bright == {bright}"},
    ).run(frame)
    assert (tools["share"]["value"], tools["share"]["measures"], tools["share"]["pass"]) == (
        share,
        {"bright": bright},
        True,
    )
    assert isinstance(tools["share"]["measures"]["bright"], int) and isinstance(
        tools["share"]["value"], float
    )
    assert tools["picky"]["pass"] is False and passed is False
    assert tools["both"]["value"] == pytest.approx(bright / share + bright)
    assert (tools["check"]["value"], tools["check"]["pass"]) == (1.0, True)


def test_custom_sees_the_frame_as_captured_before_any_filter() -> None:
    frame = read_only(astronaut_bgr())
    tools, _ = chain({**DIGEST, "roi": RECT}).run(frame)
    box = frame[80:230, 100:301]
    assert tools["seen"]["value"] == crc(box)
    assert tools["seen"]["measures"] == {"sum": int(box.sum(dtype=np.int64)), "ndim": 3, "h": 150, "w": 201}
    tools, _ = chain({"name": "b", "type": "blur", "roi": {"x": 0, "y": 0, "w": 5, "h": 5}}, DIGEST).run(
        frame
    )
    assert tools["seen"]["measures"]["ndim"] == 2  # gray once a filter ran


def test_custom_after_grayscale_sees_gray_whatever_the_method() -> None:
    # SPEC: grayscale "converts the ROI to gray for the tools after it" (at 1e79b1d the luminance method
    # left a later custom tool the BGR frame)
    frame = read_only(astronaut_bgr())
    expected = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    tools, _ = chain({"name": "g", "type": "grayscale", "method": "average"}, DIGEST).run(frame)
    assert tools["seen"]["measures"]["ndim"] == 2
    tools, _ = chain({"name": "g", "type": "grayscale", "method": "luminance"}, DIGEST).run(frame)
    assert tools["seen"]["value"] == crc(expected)


# --- math over a missing value -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "ref"),
    [
        ("edge.position - 10", "edge.position"),
        ("edge + 1", "edge.value"),
        ("edge.found + edge.offset", "edge.offset"),
    ],
)
def test_math_over_a_value_locate_did_not_find_is_an_error_result(expr: str, ref: str) -> None:
    frame = read_only(np.full((60, 200), 90, np.uint8))
    c = chain(locate({"p0": [10, 30], "p1": [190, 30]}), {"name": "gap", "type": "math", "expr": expr})
    message = f"tool 'gap': '{ref}' has no value in this result in {expr!r}"
    with pytest.raises(ToolError) as info:
        c.run(frame)
    assert str(info.value) == message
    outcome, env = inspect_frame(c, "vm_t", job(4), frame)
    assert outcome == msgs.ERROR
    assert (env["pass"], env["frame_id"], env["tools"]) == (False, 4, {})
    assert env["error"] == {"code": LENS_INSPECTION_ERROR, "message": message}
    # the same chain on a frame with an edge computes the expression
    tools, _ = c.run(read_only(step_frame(100.5, h=60, w=200)))
    assert tools["gap"]["value"] is not None


# --- the frame is never written; views and copies give the same result ----------------------------------


def every_tool(roi: dict[str, Any], template: str) -> list[dict[str, Any]]:
    """Every tool type over `roi`, filters in between, ending with full-frame readers of the result."""
    return [
        {
            "name": "bright",
            "type": "grayscale",
            "method": "weighted",
            "roi": roi,
            "params": {"normalize": True},
        },
        {"name": "soft", "type": "blur", "roi": roi, "params": {"ksize": 5, "sigma": 1.2}},
        {"name": "quiet", "type": "blur", "method": "median", "roi": roi, "params": {"ksize": 3}},
        {
            "name": "pm",
            "type": "pattern_matching",
            "roi": roi,
            "params": {"template": template, "min_score": -1},
        },
        {"name": "cal", "type": "locate", "params": {"p0": [15, 40], "p1": [300, 200]}},
        {"name": "edges", "type": "edge_detection", "roi": roi, "params": {"threshold": 40}},
        {"name": "t", "type": "threshold", "method": "otsu", "roi": roi, "params": {"invert": True}},
        {"name": "m", "type": "morphology", "method": "close", "roi": roi, "params": {"shape": "ellipse"}},
        {"name": "b", "type": "blob", "roi": roi, "params": {"area_min": 3}},
        {"name": "c", "type": "custom", "roi": roi, "params": {"function": "lens.inspect.examples.contrast"}},
        {"name": "ratio", "type": "math", "expr": "b.total_area / (m.count + 1)"},
        DIGEST,
        FULL_STATS,
    ]


@pytest.mark.parametrize("roi_name", ["rect", "circle", "ellipse", "clipped_circle", "clipped_ellipse"])
@pytest.mark.parametrize("frame_name", ["astronaut_bgr", "camera"])
def test_no_tool_writes_the_frame(tmp_path: Path, roi_name: str, frame_name: str) -> None:
    frame = read_only(FRAMES[frame_name]())
    before = frame.tobytes()
    path = write_png(tmp_path / "t.png", gray_of(frame)[200:216, 200:220])
    c = chain(*every_tool(SHAPES[roi_name], path))
    first, _ = c.run(frame)
    assert frame.tobytes() == before
    assert first["seen"]["value"] != crc(gray_of(frame)), "the filters changed the working image"
    again, _ = c.run(frame)  # a second frame through the same chain starts from the frame again
    assert frame.tobytes() == before
    assert without_timing(again) == without_timing(first)


@pytest.mark.parametrize("frame_name", ["astronaut_bgr", "camera"])
@pytest.mark.parametrize("roi_name", ["rect", "circle", "clipped_ellipse"])
def test_strided_frames_give_the_same_results_as_contiguous_ones(
    tmp_path: Path, frame_name: str, roi_name: str
) -> None:
    big = read_only(FRAMES[frame_name]())
    path = write_png(tmp_path / "t.png", gray_of(big)[200:216, 200:220])
    tools = every_tool(SHAPES[roi_name], path)
    views = {
        "columns": big[::1, 10:330],
        "rows and columns": big[7:500:2, 10:330],
        "reversed channels": big[..., ::-1] if big.ndim == 3 else big[:, ::-1],
    }
    for what, view in views.items():
        assert not view.flags.c_contiguous, what
        copy = np.ascontiguousarray(view)
        got, got_pass = chain(*tools).run(view)
        want, want_pass = chain(*tools).run(copy)
        assert without_timing(got) == without_timing(want), what
        assert got_pass == want_pass, what
        assert got["seen"]["measures"]["h"] == view.shape[0] and got["seen"]["measures"]["w"] == view.shape[1]


@pytest.mark.parametrize("pyramid", ["auto", "off"])
def test_pattern_pyramid_finds_the_exhaustive_peak_on_photographs(tmp_path: Path, pyramid: str) -> None:
    """Coarse-to-fine search lands on the exhaustive search's peak, for templates cut from photos
    and planted at even and odd offsets."""
    for name, img in (("camera", data.camera()), ("coins", data.coins()), ("page", data.page())):
        tpl = np.ascontiguousarray(img[60:124, 100:164])  # 64x64
        path = write_png(tmp_path / f"{name}.png", tpl)
        for at in ((13, 7), (40, 41), (96, 90)):
            frame = texture(220, 260)
            frame[at[1] : at[1] + 64, at[0] : at[0] + 64] = tpl
            tool = {"name": "pm", "type": "pattern_matching", "roi": {"x": 0, "y": 0, "w": 260, "h": 220},
                    "params": {"template": str(path), "pyramid": pyramid}}  # fmt: skip
            tools, _ = chain(tool).run(read_only(frame))
            m = tools["pm"]["measures"]
            assert (m["x"], m["y"]) == at and m["score"] >= 0.999, (name, at, pyramid, m)


def test_pattern_large_templates_start_at_quarter_resolution(tmp_path: Path) -> None:
    """A template of 64 px or more a side is searched from quarter resolution, refined at half and
    full: a noisy copy is still found where the exhaustive search finds it, with the same score.
    With too little room for the quarter level (< 24 px of travel) the search starts at half."""
    tpl = np.ascontiguousarray(data.camera()[90:162, 180:276])  # 96x72
    path = write_png(tmp_path / "t.png", tpl)
    noise = np.random.default_rng(SEED).integers(-30, 31, tpl.shape)
    for at, roi in (
        ((57, 41), {"x": 0, "y": 0, "w": 260, "h": 220}),
        ((20, 30), {"x": 10, "y": 20, "w": 116, "h": 92}),
    ):
        frame = texture(220, 260)
        frame[at[1] : at[1] + 72, at[0] : at[0] + 96] = np.clip(tpl.astype(np.int16) + noise, 0, 255)
        c = chain(pattern(path, roi=roi))
        assert [lv.shape for lv in c.tools[0].levels] == [(72, 96), (36, 48), (18, 24)]  # type: ignore[attr-defined]
        m = c.run(read_only(frame))[0]["pm"]["measures"]
        search = frame[roi["y"] : roi["y"] + roi["h"], roi["x"] : roi["x"] + roi["w"]]
        _, best, _, (bx, by) = cv2.minMaxLoc(cv2.matchTemplate(search, tpl, cv2.TM_CCOEFF_NORMED))
        assert (m["x"], m["y"]) == (roi["x"] + bx, roi["y"] + by) == at
        assert m["score"] == pytest.approx(best, abs=2e-5) and 0.8 < m["score"] < 0.99
