"""Inspection tools: the lens way (numba kernels, the ToolChain) vs the plain OpenCV/NumPy way.

For every tool, at 640x480 and 1920x1080 (synthetic gray frames, BGR for the conversion row), both
sides compute the SAME result: each case checks once per size, before timing, that they agree
(counts, images and blob tables equal; floats to 1e-9), and raises `NotSame` otherwise.

Timing: OpenCV runs on one thread (`cv2.setNumThreads(1)`, restored after; the kernels are
single-threaded), the first calls (JIT, cache loads, first allocations) are excluded, lens and
OpenCV alternate (ABBA) so drift on a shared machine falls on both alike, and each side reports
the median of `repeats` samples (a sample is `inner` back-to-back calls, so that it lasts >= ~20 us).
gc is off while timing. Where OpenCV offers several ways to the same result (the connected-
components algorithm; Sobel in float32 vs spatialGradient in int16), each is timed briefly first
and the fastest one is the contender (reported as `opencv_variant`). Both sides write into
preallocated buffers where the API allows.

Kernel tools are timed as kernel calls; blur, morphology and pattern matching (OpenCV in lens too)
as a one-tool `ToolChain.run`, i.e. with the canvas copy and the result dict, against the bare
OpenCV calls; so is the threshold tool (its kernel runs in place on the canvas there). The 5-tool
chain (grayscale, threshold, blob, edge_detection, pattern_matching) runs end to end at 640x480
against the same five computations written with OpenCV. Last, numba compile (cold, empty
NUMBA_CACHE_DIR) and cache load (warm) times, in fresh subprocesses.

    python -m bench.tools [--quick] [--json bench/out/tools.json]
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numba
import numpy as np
import psutil

from bench.runner import cpu_model
from lens.capture.sources.synthetic import SyntheticScene
from lens.config.models import InspectionConfig
from lens.inspect.runner import ToolChain
from native_tools import (
    BlobScratch,
    band_threshold,
    blob_stats,
    edge_count,
    find_edges,
    otsu_level,
    profile,
    profile_length,
    roi_stats,
)

ROOT = Path(__file__).resolve().parents[1]
SIZES: tuple[tuple[str, tuple[int, int]], ...] = (("640x480", (640, 480)), ("1920x1080", (1920, 1080)))
REPEATS = {"640x480": 200, "1920x1080": 50}
QUICK_REPEATS = 10
#: (tool, case) of every row, at every size.
CASES: tuple[tuple[str, str], ...] = (
    ("grayscale", "stats"),
    ("grayscale", "bgr->gray+stats"),
    ("threshold", "band 128..255"),
    ("threshold", "otsu binary"),
    ("threshold", "otsu level"),
    ("threshold", "band, ToolChain"),
    ("blob", "scene"),
    ("blob", "noise 50%"),
    ("edge_detection", "sobel > 100"),
    ("locate", "400 px line"),
    ("blur", "gaussian 5x5"),
    ("blur", "median 5"),
    ("morphology", "open 3x3 rect"),
    ("pattern_matching", "64x64 in 160x160"),
)
KERNELS = ("roi_stats", "band_threshold", "otsu_level", "blob_stats", "edge_count", "profile", "find_edges")
BAND = (128, 255)
EDGE_T = 100.0
TEMPLATE, SEARCH = 64, 160
CCL = ("CCL_DEFAULT", "CCL_WU", "CCL_SAUF", "CCL_BBDT", "CCL_GRANA", "CCL_BOLELLI", "CCL_SPAGHETTI")
CHAIN_TARGET_US = 1000.0
SCORE_ABS = 2e-5  # lens vs OpenCV match scores: OpenCV sums in float32 through the DFT
JIT_TIMEOUT_S = 600.0


class NotSame(RuntimeError):
    """The lens and OpenCV sides of a case computed different results: the timing would be worthless."""


def _same(ok: bool, what: str) -> None:
    if not ok:
        raise NotSame(what)


@dataclass
class Case:
    tool: str
    case: str
    lens: Callable[[], object]
    opencv: Callable[[], object]
    check: Callable[[], str]  # raises NotSame unless both sides agree; returns the shared result, briefly
    note: str
    variant: str = ""  # which OpenCV way was fastest (where there are several)


# -- timing ---------------------------------------------------------------------------------------


def _once_ns(fn: Callable[[], object]) -> int:
    t = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t


def _timed(fns: list[Callable[[], object]], reps: int, inner: int = 0) -> list[float]:
    """Median µs per call of each of `fns`, interleaved (the order alternates every round)."""
    for fn in fns:  # first calls excluded: JIT compile or cache load, first-touch allocations
        fn()
        fn()
    if inner == 0:
        fastest = min(min(_once_ns(fn) for _ in range(3)) for fn in fns)
        inner = max(1, min(50, math.ceil(20_000 / max(fastest, 1))))
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for _ in range(reps):
            for k in order:
                fn = fns[k]
                t = time.perf_counter_ns()
                for _ in range(inner):
                    fn()
                samples[k].append((time.perf_counter_ns() - t) / inner / 1e3)
            order.reverse()
    finally:
        if gc_was_on:
            gc.enable()
    return [statistics.median(s) for s in samples]


def _bind(fn: Callable[[Any], object], arg: Any) -> Callable[[], object]:
    return lambda: fn(arg)


def _fastest(variants: dict[str, Callable[[], object]], reps: int) -> str:
    times = _timed(list(variants.values()), reps, inner=1)
    return min(zip(times, variants, strict=True))[1]


# -- frames ---------------------------------------------------------------------------------------


@dataclass
class Frames:
    w: int
    h: int
    gray: np.ndarray  # synthetic scene: dark textured belt, four bright caps
    bgr: np.ndarray
    noise: np.ndarray  # uniform noise: half the pixels in the band, the blob worst case
    binary: np.ndarray  # gray thresholded at 128

    @property
    def part(self) -> tuple[int, int]:
        """Top-left of a TEMPLATE-sized crop on the first cap's upper-left rim."""
        x, y = blob_stats(self.gray, *BAND)[0, 1:3]
        return int(x) - 8, int(y) - 8


def _frames(w: int, h: int) -> Frames:
    gray = SyntheticScene(w, h, 1, seed=7).frame(0)
    bgr = SyntheticScene(w, h, 3, seed=7).frame(0)
    noise = np.random.default_rng(7).integers(0, 256, (h, w), dtype=np.uint8)
    binary = cv2.inRange(gray, *BAND)
    for a in (gray, bgr, noise, binary):
        a.flags.writeable = False  # as ring slots: lens never writes the frame
    return Frames(w, h, gray, bgr, noise, binary)


def _buf(f: Frames, dtype: type = np.uint8) -> np.ndarray:
    return np.empty((f.h, f.w), dtype)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# -- cases ----------------------------------------------------------------------------------------


def _cv_stats(img: np.ndarray) -> tuple[float, int, int, float]:
    mean, std = cv2.meanStdDev(img)
    lo, hi, _, _ = cv2.minMaxLoc(img)
    return float(mean[0, 0]), int(lo), int(hi), float(std[0, 0])


def _check_stats(a: tuple[float, int, int, float], b: tuple[float, int, int, float]) -> str:
    _same(a[1:3] == b[1:3] and _close(a[0], b[0]) and _close(a[3], b[3]), f"stats {a} != {b}")
    return f"mean {a[0]:.2f}"


def _grayscale(f: Frames) -> list[Case]:
    lens_buf, cv_buf = _buf(f), _buf(f)

    def lens_bgr() -> tuple[float, int, int, float]:
        return roi_stats(cv2.cvtColor(f.bgr, cv2.COLOR_BGR2GRAY, dst=lens_buf))

    def cv_bgr() -> tuple[float, int, int, float]:
        return _cv_stats(cv2.cvtColor(f.bgr, cv2.COLOR_BGR2GRAY, dst=cv_buf))

    return [
        Case("grayscale", "stats", lambda: roi_stats(f.gray), lambda: _cv_stats(f.gray),
             lambda: _check_stats(roi_stats(f.gray), _cv_stats(f.gray)),
             "roi_stats (mean, min, max, std) vs cv2.meanStdDev + cv2.minMaxLoc"),
        Case("grayscale", "bgr->gray+stats", lens_bgr, cv_bgr, lambda: _check_stats(lens_bgr(), cv_bgr()),
             "cvtColor(BGR2GRAY, dst) + roi_stats vs cvtColor(BGR2GRAY, dst) + meanStdDev + minMaxLoc"),
    ]  # fmt: skip


def _threshold(f: Frames) -> list[Case]:
    lo, hi = BAND
    lens_dst, cv_dst = _buf(f), _buf(f)
    otsu = cv2.THRESH_BINARY | cv2.THRESH_OTSU

    def lens_band() -> int:
        return band_threshold(f.gray, lo, hi, lens_dst)

    def cv_band() -> int:
        return cv2.countNonZero(cv2.inRange(f.gray, lo, hi, dst=cv_dst))

    def lens_otsu() -> tuple[int, int]:
        level = otsu_level(f.gray)
        return level, band_threshold(f.gray, level + 1, 255, lens_dst) if level < 255 else 0

    def cv_otsu() -> tuple[int, int]:
        level, _ = cv2.threshold(f.gray, 0, 255, otsu, dst=cv_dst)
        return int(level), cv2.countNonZero(cv_dst)

    def check_images(a: object, b: object) -> str:
        _same(a == b and np.array_equal(lens_dst, cv_dst), f"{a} != {b}, or the binary images differ")
        return f"level {a[0]}, {a[1]} px" if isinstance(a, tuple) else f"{a} px"

    def check_level() -> str:
        a, b = otsu_level(f.gray), int(cv2.threshold(f.gray, 0, 255, otsu, dst=cv_dst)[0])
        _same(a == b, f"Otsu level {a} != {b}")
        return f"level {a}"

    return [
        Case("threshold", "band 128..255", lens_band, cv_band, lambda: check_images(lens_band(), cv_band()),
             "band_threshold (binary image + count, one pass) vs cv2.inRange + cv2.countNonZero"),
        Case("threshold", "otsu binary", lens_otsu, cv_otsu, lambda: check_images(lens_otsu(), cv_otsu()),
             "otsu_level + band_threshold(level+1..255) vs cv2.threshold(BINARY|OTSU) + countNonZero: "
             "(level, binary image, count)"),
        Case("threshold", "otsu level", lambda: otsu_level(f.gray),
             lambda: cv2.threshold(f.gray, 0, 255, otsu, dst=cv_dst), check_level,
             "otsu_level vs cv2.threshold(BINARY|OTSU); NOT the same work: OpenCV has no level-only "
             "call, so its time includes writing the binary image (see 'otsu binary')"),
    ]  # fmt: skip


def _cv_blob_rows(stats: np.ndarray, centroids: np.ndarray, area_min: int = 0) -> np.ndarray:
    """OpenCV's components (background dropped) as blob_stats rows [area, x, y, w, h, cx, cy]."""
    st = stats[1:]
    rows = np.column_stack([st[:, cv2.CC_STAT_AREA], st[:, cv2.CC_STAT_LEFT], st[:, cv2.CC_STAT_TOP],
                            st[:, cv2.CC_STAT_WIDTH], st[:, cv2.CC_STAT_HEIGHT],
                            centroids[1:]]).astype(np.float64)  # fmt: skip
    return rows[rows[:, 0] >= area_min]


def _same_blobs(a: np.ndarray, b: np.ndarray) -> str:
    """Equal blob tables up to row order (OpenCV's block-based algorithms number blobs differently)."""
    _same(a.shape == b.shape, f"{len(a)} blobs, OpenCV finds {len(b)}")
    a, b = (r[np.lexsort((r[:, 0], r[:, 1], r[:, 2]))] for r in (a, b))
    _same(np.array_equal(a[:, :5], b[:, :5]) and np.allclose(a[:, 5:], b[:, 5:], rtol=0, atol=1e-9),
          "blob boxes, areas or centroids differ")  # fmt: skip
    return f"{len(a)} blobs"


def _blob(f: Frames, probe: int) -> list[Case]:
    out = []
    for name, img in (("scene", f.gray), ("noise 50%", f.noise)):
        scratch, mask, labels = BlobScratch((f.h, f.w)), _buf(f), _buf(f, np.int32)

        def lens(img: np.ndarray = img, scratch: BlobScratch = scratch) -> np.ndarray:
            return blob_stats(img, *BAND, scratch=scratch)

        def cv(algo: int, img: np.ndarray = img, mask: np.ndarray = mask, labels: np.ndarray = labels) -> Any:
            cv2.inRange(img, *BAND, dst=mask)
            return cv2.connectedComponentsWithStatsWithAlgorithm(mask, 8, cv2.CV_32S, algo, labels=labels)

        variants = {a: _bind(cv, getattr(cv2, a)) for a in CCL}
        best = _fastest(variants, probe)
        best_fn = variants[best]

        def check(lens: Callable[[], np.ndarray] = lens, best_fn: Callable[[], Any] = best_fn) -> str:
            _, _, stats, centroids = best_fn()
            return _same_blobs(lens(), _cv_blob_rows(stats, centroids))

        out.append(Case("blob", name, lens, best_fn, check,
                        "blob_stats (band + 8-connected runs + stats) vs cv2.inRange + "
                        "connectedComponentsWithStatsWithAlgorithm(8, CV_32S), fastest CCL algorithm",
                        best))  # fmt: skip
    return out


def _edge_ways(f: Frames) -> dict[str, Callable[[np.ndarray], int]]:
    """The OpenCV ways to count pixels with Sobel 3x3 magnitude > EDGE_T, into preallocated buffers.

    float32 is exact here: gx^2 + gy^2 <= 2 * 1020^2 < 2^24, and sqrt is correctly rounded.
    """
    gx, gy, mag = _buf(f, np.float32), _buf(f, np.float32), _buf(f, np.float32)
    dx, dy, hit = _buf(f, np.int16), _buf(f, np.int16), _buf(f)

    def sobel_32f(img: np.ndarray) -> int:
        cv2.Sobel(img, cv2.CV_32F, 1, 0, dst=gx, ksize=3)
        cv2.Sobel(img, cv2.CV_32F, 0, 1, dst=gy, ksize=3)
        cv2.magnitude(gx, gy, magnitude=mag)
        return cv2.countNonZero(cv2.compare(mag, EDGE_T, cv2.CMP_GT, dst=hit))

    def gradient_16s(img: np.ndarray) -> int:
        cv2.spatialGradient(img, dx=dx, dy=dy)  # Sobel 3x3 x and y in one pass, BORDER_REFLECT_101
        np.copyto(gx, dx)
        np.copyto(gy, dy)
        cv2.magnitude(gx, gy, magnitude=mag)
        return cv2.countNonZero(cv2.compare(mag, EDGE_T, cv2.CMP_GT, dst=hit))

    return {"Sobel 32F x2": sobel_32f, "spatialGradient 16S": gradient_16s}


def _edges(f: Frames, probe: int) -> Case:
    ways = _edge_ways(f)
    variants = {k: _bind(fn, f.gray) for k, fn in ways.items()}
    best = _fastest(variants, probe)

    def check() -> str:
        counts = {k: fn() for k, fn in variants.items()}
        a = edge_count(f.gray, EDGE_T)
        _same(all(c == a for c in counts.values()), f"edge_count {a} != OpenCV {counts}")
        return f"{a} px"

    return Case("edge_detection", "sobel > 100", lambda: edge_count(f.gray, EDGE_T), variants[best], check,
                "edge_count (fused Sobel + |g|^2 > t^2, no gradient images) vs Sobel 32F x2 | "
                "spatialGradient 16S (+ cast to 32F) then magnitude + compare + countNonZero, fastest",
                best)  # fmt: skip


def _gauss_taps(sigma: float) -> list[float]:
    """find_edges' smoothing taps, the same way (math.exp, summed in order): done once, as per config."""
    r = math.ceil(3.0 * sigma)
    g = [math.exp(-0.5 * ((k - r) / sigma) ** 2) for k in range(2 * r + 1)]
    norm = 0.0
    for v in g:
        norm += v
    return [v / norm for v in g]


def _np_edges(prof: np.ndarray, taps: list[float], threshold: float) -> np.ndarray:
    """find_edges(polarity "any") in NumPy: smooth (replicated border), np.gradient, then the local
    extrema of the derivative (runs of equal values count once) with |d| >= threshold."""
    n, r = prof.size, len(taps) // 2
    padded = np.pad(prof.astype(np.float64), r, mode="edge")
    s = np.zeros(n)
    for k, g in enumerate(taps):  # tap by tap, as the kernel sums: the same roundings
        s += g * padded[k : k + n]
    d = np.gradient(s)
    u = d[1 : n - 1]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    i = starts + 1
    j = np.r_[starts[1:] - 1, u.size - 1] + 1
    v, left, right = d[i], d[i - 1], d[j + 1]
    peak = ((v > 0) & (v > left) & (v > right)) | ((v < 0) & (v < left) & (v < right))
    keep = peak & (np.abs(v) >= threshold)
    i, j, v, left, right = i[keep], j[keep], v[keep], left[keep], right[keep]
    off = np.clip(0.5 * (left - right) / (left - 2.0 * v + right), -0.5, 0.5)
    return np.column_stack([np.where(i == j, i + off, 0.5 * (i + j)), v])


def _locate(f: Frames, probe: int) -> Case:
    # 400 px, on a 1/32 px grid (steps 31/32, 8/32): remap's fixed-point coordinates are then exact
    x0, y0 = (250.0, 180.0) if f.w == 640 else (500.0, 440.0)
    line = (x0, y0, x0 + 387.5, y0 + 100.0)
    sigma, threshold = 1.0, 20.0
    n = profile_length(*line)
    k = np.arange(n)
    xs, ys = line[0] + k * ((line[2] - line[0]) / (n - 1)), line[1] + k * ((line[3] - line[1]) / (n - 1))
    xa, ya = math.floor(xs.min()), math.floor(ys.min())
    xb, yb = min(f.w, math.ceil(xs.max()) + 2), min(f.h, math.ceil(ys.max()) + 2)
    crop = np.empty((yb - ya, xb - xa), np.float32)
    mapx, mapy = (xs - xa).astype(np.float32)[None], (ys - ya).astype(np.float32)[None]
    sampled = np.empty((1, n), np.float32)
    xi, yi = xs.astype(np.intp), ys.astype(np.intp)  # the line lies inside: no clamping needed
    fx, fy = xs - xi, ys - yi
    taps = _gauss_taps(sigma)

    def lens() -> np.ndarray:
        return find_edges(profile(f.gray, *line), sigma, threshold, "any")

    def cv_remap() -> np.ndarray:
        np.copyto(crop, f.gray[ya:yb, xa:xb])  # remap of uint8 rounds to uint8: sample a float32 crop
        cv2.remap(crop, mapx, mapy, cv2.INTER_LINEAR, dst=sampled, borderMode=cv2.BORDER_REPLICATE)
        return _np_edges(sampled[0], taps, threshold)

    def np_gather() -> np.ndarray:
        img = f.gray
        p00, p01 = img[yi, xi].astype(np.float64), img[yi, xi + 1].astype(np.float64)
        p10, p11 = img[yi + 1, xi].astype(np.float64), img[yi + 1, xi + 1].astype(np.float64)
        top, bottom = p00 + fx * (p01 - p00), p10 + fx * (p11 - p10)
        return _np_edges((top + fy * (bottom - top)).astype(np.float32), taps, threshold)

    variants = {"remap + numpy": cv_remap, "numpy gather": np_gather}
    best = _fastest(variants, probe)

    def check() -> str:
        a = lens()
        _same(len(a) > 0, "the caliper line crosses no edge: nothing to compare")
        cv_remap()
        _same(np.array_equal(profile(f.gray, *line), sampled[0]), "remap's profile differs from profile()")
        for name, fn in variants.items():
            b = fn()
            _same(a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-9), f"{name}: edges {b} != {a}")
        return f"{len(a)} edges"

    return Case("locate", "400 px line", lens, variants[best], check,
                "profile + find_edges (sigma 1, any polarity) vs bilinear sampling (cv2.remap of a float32 "
                "crop | NumPy gather) + NumPy smoothing, np.gradient, extrema; fastest", best)  # fmt: skip


def _one_tool(tool: dict[str, Any]) -> ToolChain:
    return ToolChain(InspectionConfig.model_validate({"tools": [tool]}))


def _filters(f: Frames) -> list[Case]:
    cases = []
    band_buf, gauss_buf, median_buf, morph_buf = _buf(f), _buf(f), _buf(f), _buf(f)
    rect3 = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
    for case, tool, frame, cv, out, how in (
        ("band, ToolChain", {"name": "t", "type": "threshold", "method": "range",
                             "params": {"th_min": BAND[0], "th_max": BAND[1]}}, f.gray,
         lambda: cv2.countNonZero(cv2.inRange(f.gray, *BAND, dst=band_buf)), band_buf,
         "band_threshold in place on the canvas, value = count; vs inRange + countNonZero"),
        ("gaussian 5x5", {"name": "t", "type": "blur", "method": "gaussian", "params": {"ksize": 5}}, f.gray,
         lambda: cv2.mean(cv2.GaussianBlur(f.gray, (5, 5), 0, dst=gauss_buf))[0], gauss_buf,
         "value = mean: roi_stats vs cv2.mean"),
        ("median 5", {"name": "t", "type": "blur", "method": "median", "params": {"ksize": 5}}, f.gray,
         lambda: cv2.mean(cv2.medianBlur(f.gray, 5, dst=median_buf))[0], median_buf,
         "value = mean: roi_stats vs cv2.mean"),
        ("open 3x3 rect", {"name": "t", "type": "morphology", "method": "open", "params": {"ksize": 3}},
         f.binary,
         lambda: cv2.countNonZero(cv2.morphologyEx(f.binary, cv2.MORPH_OPEN, rect3, dst=morph_buf)),
         morph_buf, "on the thresholded scene; value = countNonZero"),
    ):  # fmt: skip
        chain = _one_tool(tool)

        def check(chain: ToolChain = chain, frame: np.ndarray = frame, cv: Callable[[], float] = cv,
                  out: np.ndarray = out) -> str:  # fmt: skip
            a, b = chain.run(frame)[0]["t"]["value"], cv()
            _same(_close(a, b) and np.array_equal(chain.canvas.gray(), out), f"value {a} != {b}, or images")
            return f"value {a:.6g}"

        cases.append(Case(tool["type"], case, lambda chain=chain, frame=frame: chain.run(frame), cv, check,
                          f"one-tool ToolChain.run (canvas copy, in-place filter, result dict) vs the bare "
                          f"OpenCV calls into a preallocated dst ({how})"))  # fmt: skip
    return cases


def _template(img: np.ndarray, at: tuple[int, int], folder: Path, name: str) -> tuple[Path, dict[str, int]]:
    """A TEMPLATE-sized crop of `img` at `at` written as PNG, and a SEARCH-sized ROI around it."""
    tx, ty = at
    path = folder / f"{name}.png"
    if not cv2.imwrite(str(path), np.ascontiguousarray(img[ty : ty + TEMPLATE, tx : tx + TEMPLATE])):
        raise RuntimeError(f"cannot write the template {path}")
    half = (SEARCH - TEMPLATE) // 2
    return path, {"x": max(0, tx - half), "y": max(0, ty - half), "w": SEARCH, "h": SEARCH}


def _cv_match(search: np.ndarray, templ: np.ndarray, result: np.ndarray) -> tuple[float, tuple[int, int]]:
    cv2.matchTemplate(search, templ, cv2.TM_CCOEFF_NORMED, result=result)
    _, score, _, loc = cv2.minMaxLoc(result)
    return score, loc


def _pattern(f: Frames, folder: Path) -> Case:
    path, roi = _template(f.gray, f.part, folder, f"gray_{f.w}")
    chain = _one_tool({"name": "t", "type": "pattern_matching", "roi": roi,
                       "params": {"template": str(path), "min_score": 0.8}})  # fmt: skip
    templ = chain.tools[0].template  # type: ignore[attr-defined]
    search = f.gray[roi["y"] : roi["y"] + SEARCH, roi["x"] : roi["x"] + SEARCH]
    result = np.empty((SEARCH - TEMPLATE + 1,) * 2, np.float32)

    def check() -> str:
        m = chain.run(f.gray)[0]["t"]["measures"]
        score, (lx, ly) = _cv_match(search, templ, result)
        # pyramid: auto refines with exact integer sums; OpenCV correlates in float32 (DFT): ~1e-5 apart
        at = (m["x"], m["y"]) == (roi["x"] + lx, roi["y"] + ly) == f.part
        _same(abs(m["score"] - score) <= SCORE_ABS and at,
              f"lens {m} != OpenCV score {score} at {(lx, ly)} (template cut at {f.part})")  # fmt: skip
        return f"score {m['score']:.3f}"

    return Case(
        "pattern_matching",
        "64x64 in 160x160",
        lambda: chain.run(f.gray),
        lambda: _cv_match(search, templ, result),
        check,
        "one-tool ToolChain.run (pyramid: auto, coarse-to-fine) vs bare exhaustive "
        "cv2.matchTemplate(TM_CCOEFF_NORMED, result=) + minMaxLoc; same position, score within 2e-5 "
        "(OpenCV sums in float32 through the DFT; lens refines with exact sums)",
    )


# -- the 5-tool chain -----------------------------------------------------------------------------


def _chain(f: Frames, folder: Path, edge_way: str, ccl: str, reps: int) -> dict[str, Any]:
    """grayscale, threshold, blob, edge_detection, pattern_matching through ToolChain.run, vs the same
    five computations with OpenCV. After the threshold, the tools see its binary image."""
    area_min = 50
    path, roi = _template(f.binary, f.part, folder, f"binary_{f.w}")  # what the tool sees then
    chain = ToolChain(InspectionConfig.model_validate({"tools": [
        {"name": "brightness", "type": "grayscale"},
        {"name": "binarize", "type": "threshold", "method": "binary", "params": {"th_min": BAND[0]}},
        {"name": "parts", "type": "blob", "params": {"th_min": BAND[0], "area_min": area_min}},
        {"name": "edges", "type": "edge_detection", "params": {"threshold": EDGE_T}},
        {"name": "cap", "type": "pattern_matching", "roi": roi, "params": {"template": str(path)}},
    ]}))  # fmt: skip
    templ = chain.tools[-1].template  # type: ignore[attr-defined]
    binary, labels = _buf(f), _buf(f, np.int32)
    edges = _edge_ways(f)[edge_way]
    algo = getattr(cv2, ccl)
    result = np.empty((SEARCH - TEMPLATE + 1,) * 2, np.float32)
    search = binary[roi["y"] : roi["y"] + SEARCH, roi["x"] : roi["x"] + SEARCH]

    def opencv(frame: np.ndarray) -> dict[str, Any]:
        stats = _cv_stats(frame)
        count = cv2.countNonZero(cv2.inRange(frame, BAND[0], 255, dst=binary))
        _, _, st, cen = cv2.connectedComponentsWithStatsWithAlgorithm(binary, 8, cv2.CV_32S, algo,
                                                                       labels=labels)  # fmt: skip
        return {"stats": stats, "count": count, "blobs": _cv_blob_rows(st, cen, area_min),
                "edges": edges(binary), "match": _cv_match(search, templ, result)}  # fmt: skip

    got, _ = chain.run(f.gray)
    want = opencv(f.gray)
    m = got["brightness"]["measures"]
    _check_stats((m["mean"], m["min"], m["max"], m["std"]), want["stats"])
    keys = ("area", "x", "y", "w", "h", "cx", "cy")
    blobs = np.array([[b[k] for k in keys] for b in got["parts"]["blobs"]], np.float64).reshape(-1, 7)
    ref = want["blobs"]
    ref[:, 5:] = [[round(v, 2) for v in c] for c in ref[:, 5:].tolist()]  # the tool's rounding, to 2 decimals
    blob_result = _same_blobs(blobs, ref)
    score, (lx, ly) = want["match"]
    cap = got["cap"]["measures"]
    for what, a, b in (
        ("threshold count", got["binarize"]["value"], want["count"]),
        ("edge count", got["edges"]["value"], want["edges"]),
        ("match position", (cap["x"], cap["y"]), (roi["x"] + lx, roi["y"] + ly)),
    ):
        _same(a == b, f"chain: {what} {a} != OpenCV {b}")  # fmt: skip
    _same(abs(cap["score"] - score) <= SCORE_ABS, f"chain: match score {cap['score']} != OpenCV {score}")

    lens_us, cv_us = _timed([lambda: chain.run(f.gray), lambda: opencv(f.gray)], reps)
    per_tool: dict[str, list[float]] = {t.name: [] for t in chain.tools}
    for _ in range(reps):  # the chain's own per-tool timings, in a separate pass
        for name, r in chain.run(f.gray)[0].items():
            per_tool[name].append(r["elapsed_us"])
    return {"size": f"{f.w}x{f.h}", "tools": [t.type for t in chain.tools], "lens_us": lens_us,
            "opencv_us": cv_us, "ratio": lens_us / cv_us, "target_us": CHAIN_TARGET_US,
            "target_met": lens_us < CHAIN_TARGET_US,
            "per_tool_us": {k: statistics.median(v) for k, v in per_tool.items()},
            "opencv_variant": f"{ccl}, {edge_way}", "same": True,
            "result": f"{blob_result}, {got['edges']['value']} edge px, score {got['cap']['value']:.3f}",
            "note": "ToolChain.run end to end (canvas, 5 tools, result dicts) vs a function making the same "
                    "5 computations with OpenCV (meanStdDev+minMaxLoc, inRange+countNonZero, CCL, edges, "
                    "matchTemplate+minMaxLoc) into preallocated buffers"}  # fmt: skip


# -- numba compile and load -----------------------------------------------------------------------

_PRELUDE = """
import json, time
t = time.perf_counter()
import numpy as np, numba
import native_tools as nt
out = {"import_s": time.perf_counter() - t}
t = time.perf_counter()
numba.njit(lambda x: x + 1)(1)  # numba/LLVM's one-time start-up, so it is not billed to a kernel
out["numba_init_s"] = time.perf_counter() - t
"""
_WARMUP = (
    _PRELUDE
    + """
t = time.perf_counter()
out["kernels"] = len(nt.warmup())
out["warmup_s"] = time.perf_counter() - t
print(json.dumps(out))
"""
)
_FIRST_CALLS = (
    _PRELUDE
    + """
img = np.zeros((40, 48), np.uint8)
img[10:20, 10:20] = 200
calls = {
    "roi_stats": lambda: nt.roi_stats(img),
    "band_threshold": lambda: nt.band_threshold(img, 100, 255, np.zeros_like(img)),
    "otsu_level": lambda: nt.otsu_level(img),
    "blob_stats": lambda: nt.blob_stats(img, 100, 255),
    "edge_count": lambda: nt.edge_count(img, 50.0),
    "profile": lambda: nt.profile(img, 2, 3, 40.5, 30),
    "find_edges": lambda: nt.find_edges(np.arange(20, dtype=np.float32), 1.0, 1.0, "any"),
}
out["first_call_s"] = {}
for name, call in calls.items():
    t = time.perf_counter()
    call()
    out["first_call_s"][name] = time.perf_counter() - t
print(json.dumps(out))
"""
)


def _python(script: str, cache_dir: str) -> dict[str, Any]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    p = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=JIT_TIMEOUT_S, check=False)  # fmt: skip
    if p.returncode != 0:
        raise RuntimeError(f"jit subprocess exited with {p.returncode}:\n{p.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return result


def _jit(quick: bool) -> dict[str, Any]:
    """Cold (empty cache) vs warm (that cache, now filled) in fresh processes: each public kernel's
    first call (its C-contiguous, unmasked variant), and the whole `native_tools.warmup()` (every
    layout; skipped when quick: ~40 s cold)."""
    out: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="bench_tools_numba_"))
    try:
        cold = _python(_FIRST_CALLS, str(folder / "calls"))
        warm = _python(_FIRST_CALLS, str(folder / "calls"))
        cold_s, warm_s = cold["first_call_s"], warm["first_call_s"]
        out["first_calls"] = [{"kernel": k, "cold_s": cold_s[k], "warm_s": warm_s[k]} for k in KERNELS]
        out["import_s"] = {"cold": cold["import_s"], "warm": warm["import_s"]}
        out["numba_init_s"] = {"cold": cold["numba_init_s"], "warm": warm["numba_init_s"]}
        if quick:
            out["warmup"] = {"skipped": "quick run (a cold warmup compiles every layout)"}
        else:
            cold = _python(_WARMUP, str(folder / "warmup"))
            warm = _python(_WARMUP, str(folder / "warmup"))
            out["warmup"] = {"cold_s": cold["warmup_s"], "warm_s": warm["warmup_s"],
                             "kernels": cold["kernels"]}  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


# -- run ------------------------------------------------------------------------------------------


def _machine(threads_before: int) -> dict[str, Any]:
    cpu = cpu_model()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "opencv": cv2.__version__, "opencv_threads": 1,
            "opencv_threads_default": threads_before}  # fmt: skip


def _measure(quick: bool, folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    chain: list[dict[str, Any]] = []
    for size, (w, h) in SIZES:
        reps = QUICK_REPEATS if quick else REPEATS[size]
        probe = 3 if quick else 7
        f = _frames(w, h)
        cases = [*_grayscale(f), *_threshold(f), *_blob(f, probe), _edges(f, probe), _locate(f, probe),
                 *_filters(f), _pattern(f, folder)]  # fmt: skip
        cases.sort(key=lambda c: CASES.index((c.tool, c.case)))
        for case in cases:
            result = case.check()  # raises NotSame: never time two different computations
            lens_us, cv_us = _timed([case.lens, case.opencv], reps)
            rows.append({"tool": case.tool, "case": case.case, "size": size, "lens_us": lens_us,
                         "opencv_us": cv_us, "ratio": lens_us / cv_us, "note": case.note,
                         "opencv_variant": case.variant, "result": result, "same": True,
                         "repeats": reps})  # fmt: skip
        if size == "640x480":
            variant = {c.case: c.variant for c in cases}
            chain.append(_chain(f, folder, variant["sobel > 100"], variant["scene"], reps))
    return rows, chain


def run(quick: bool = False) -> dict[str, Any]:
    """Every case at every size (medians, OpenCV on one thread), the 5-tool chain, numba compile times."""
    me = psutil.Process()
    threads_before = cv2.getNumThreads()
    native_before = me.num_threads()
    cv2.setNumThreads(1)
    pool_stopped = me.num_threads() < native_before  # setNumThreads(1) stopped OpenCV's worker threads
    folder = Path(tempfile.mkdtemp(prefix="bench_tools_"))  # pattern templates
    try:
        rows, chain = _measure(quick, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        cv2.setNumThreads(threads_before)
        if pool_stopped:  # start them again: leave the process as found
            cv2.connectedComponentsWithStats(np.ones((256, 256), np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return {"suite": "tools", "machine": _machine(threads_before), "quick": quick, "rows": rows,
            "chain": chain, "jit": _jit(quick)}  # fmt: skip


def table(result: dict[str, Any]) -> str:
    """Aligned plain-text rendering of `run()`'s result."""
    m = result["machine"]
    lines = [f"tools: {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy {m['numpy']}, numba "
             f"{m['numba']}, OpenCV {m['opencv']} on 1 thread; median us per frame, first calls excluded",
             f"{'tool':<17}{'case':<18}{'size':<11}{'lens us':>9}{'opencv us':>11}{'lens/cv':>9}  "
             f"{'result (equal)':<19}opencv variant"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"{r['tool']:<17}{r['case']:<18}{r['size']:<11}{r['lens_us']:>9.1f}{r['opencv_us']:>11.1f}"
                     f"{r['ratio']:>9.2f}  {r['result']:<19}{r['opencv_variant']}")  # fmt: skip
    lines.append("lens/cv < 1: lens is faster. What each row compares:")
    seen: dict[tuple[str, str], str] = {}
    for r in result["rows"]:
        seen.setdefault((r["tool"], r["case"]), r["note"])
    lines += [f"  {tool} / {case}: {note}" for (tool, case), note in seen.items()]
    for c in result["chain"]:
        met = "met" if c["target_met"] else "NOT met"
        lines += ["", f"chain {c['size']} ({', '.join(c['tools'])}): ToolChain.run {c['lens_us']:.0f} us "
                      f"(target < {c['target_us']:.0f} us: {met}), OpenCV way {c['opencv_us']:.0f} us, "
                      f"lens/cv {c['ratio']:.2f}  [{c['opencv_variant']}; {c['result']}]",
                  "  per tool (the chain's elapsed_us): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in c["per_tool_us"].items())]  # fmt: skip
    j = result["jit"]
    lines += ["", "numba, fresh processes: cold = empty NUMBA_CACHE_DIR (compile), warm = that cache (load)",
              f"  import native_tools {j['import_s']['cold']:.2f} / {j['import_s']['warm']:.2f} s; "
              f"numba start-up {j['numba_init_s']['cold']:.2f} / {j['numba_init_s']['warm']:.2f} s "
              "(cold / warm)"]  # fmt: skip
    w = j["warmup"]
    if "skipped" in w:
        lines.append(f"  warmup(): skipped, {w['skipped']}")
    else:
        lines.append(f"  warmup() ({w['kernels']} kernels, every layout): cold {w['cold_s']:.1f} s, "
                     f"warm {w['warm_s']:.2f} s")  # fmt: skip
    lines.append(f"  {'first call (C layout, no mask)':<34}{'cold s':>8}{'warm s':>8}")
    lines += [f"  {k['kernel']:<34}{k['cold_s']:>8.2f}{k['warm_s']:>8.3f}" for k in j["first_calls"]]
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.runner import suite_main

    suite_main("tools", __doc__ or "tools", run, table)
