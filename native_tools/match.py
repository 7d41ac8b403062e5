"""Normalised cross-correlation (TM_CCOEFF_NORMED) computed directly, for small search windows.

OpenCV's matchTemplate correlates through the DFT: the right way for a wide search, but its set-up
dominates when only a few positions are left, as in the refinement step of a coarse-to-fine
search (7x7 positions of a 64x64 template). There, direct integer sums are exact and cheaper.
"""

# measured 2026-11 (Xeon, one core, cv2 with setNumThreads(1); medians of 300 calls, first calls
# excluded; a 64x64 template of the thresholded scene over a 70x70 window, i.e. 7x7 positions):
#   ncc_peak 33 us     cv2.matchTemplate(TM_CCOEFF_NORMED) + cv2.minMaxLoc 147 us
# For a whole 160x160 ROI (97x97 positions) OpenCV's DFT wins by ~9x (636 us vs 5600 us), and a
# 32x32 template over 80x80 (49x49 positions) still ~3x (152 us vs 460-770 us in numba, dot or
# axpy forms), so wide searches stay on OpenCV.
# decision: numba for windows of a few positions, OpenCV for the rest (lens/inspect/tools/pattern.py).

from __future__ import annotations

import math

import numpy as np

from native_tools import _checks
from native_tools._jit import inline, kernel


@inline
def _box(ii: np.ndarray, y: int, x: int, h: int, w: int) -> np.int64:
    """Sum of the h x w box at (y, x) from an integral image with a zero first row and column."""
    return ii[y + h, x + w] - ii[y, x + w] - ii[y + h, x] + ii[y, x]


@kernel
def _ncc_peak(img: np.ndarray, templ: np.ndarray) -> tuple[float, int, int]:
    """(score, x, y) of the best TM_CCOEFF_NORMED score over every position, the first in raster
    order among equals (as cv2.minMaxLoc). Sums are exact integers; the normalisation follows
    OpenCV's, including its rule for flat windows (score 0) and rounding (|num| just above the norm:
    +-1)."""
    h, w = img.shape
    th, tw = templ.shape
    n = th * tw
    tsum = np.int64(0)
    tsq = np.int64(0)
    for ty in range(th):
        for tx in range(tw):
            v = np.int64(templ[ty, tx])
            tsum += v
            tsq += v * v
    tmean = tsum / n
    tnorm = math.sqrt(max(tsq - tsum * tmean, 0.0))
    ii = np.zeros((h + 1, w + 1), np.int64)  # integral images: sum and sum of squares
    sq = np.zeros((h + 1, w + 1), np.int64)
    for y in range(h):
        rs = np.int64(0)
        rq = np.int64(0)
        for x in range(w):
            v = np.int64(img[y, x])
            rs += v
            rq += v * v
            ii[y + 1, x + 1] = ii[y, x + 1] + rs
            sq[y + 1, x + 1] = sq[y, x + 1] + rq
    best = -np.inf
    bx = 0
    by = 0
    for y in range(h - th + 1):
        for x in range(w - tw + 1):
            cross = np.int64(0)
            for ty in range(th):
                row = img[y + ty, x : x + tw]
                trow = templ[ty]
                s = np.int32(0)  # a row: at most 255^2 * tw, exact for templates up to 33,000 px wide
                for k in range(tw):
                    s = np.int32(s + np.int32(row[k]) * np.int32(trow[k]))
                cross += s
            ws = _box(ii, y, x, th, tw)
            wq = _box(sq, y, x, th, tw)
            num = cross - ws * tmean
            norm = math.sqrt(max(wq - ws * (ws / n), 0.0)) * tnorm
            if abs(num) < norm:
                r = num / norm
            elif abs(num) < norm * 1.125:
                r = 1.0 if num > 0 else -1.0
            else:
                r = 0.0  # a flat window (or template): no correlation
            if r > best:
                best = r
                bx = x
                by = y
    return best, bx, by


def ncc_peak(img: np.ndarray, templ: np.ndarray) -> tuple[float, int, int]:
    """Best position of `templ` in `img` by TM_CCOEFF_NORMED: (score, x, y), x/y of the template's
    top-left corner in `img`. Equals cv2.matchTemplate(img, templ, cv2.TM_CCOEFF_NORMED) followed
    by cv2.minMaxLoc (score within OpenCV's float rounding, ~1e-6), computed directly: use it for
    windows of a few positions (cost grows with positions x template pixels)."""
    img = _checks.read_only(_checks.image("ncc_peak", img))
    templ = _checks.read_only(np.ascontiguousarray(_checks.image("ncc_peak", templ, "template")))
    h, w = img.shape
    th, tw = templ.shape
    if th == 0 or tw == 0 or th > h or tw > w:
        raise ValueError(f"ncc_peak needs a non-empty template no larger than the image, got a "
                         f"{tw}x{th} template in a {w}x{h} image")  # fmt: skip
    if th * tw * 255 * 255 >= 2**63:
        raise ValueError(f"ncc_peak: a {tw}x{th} template is too large for exact sums")
    score, x, y = _ncc_peak(img, templ)
    return float(score), int(x), int(y)
