"""Intensity statistics of a 2-D uint8 image or ROI view: mean, min, max, population std."""

# measured 2026-11 (Xeon, AVX-512, one core, cv2 5.0 with setNumThreads(1); medians of 300 calls,
# first call excluded; random frame, full frame / central ROI view):
#   640x480     roi_stats 26 us / 21 us    cv2.meanStdDev + cv2.minMaxLoc 27 us / 23 us
#   1920x1080   roi_stats 170 us / 105 us  cv2.meanStdDev + cv2.minMaxLoc 195 us / 115 us
# masked, same kind of run (a random frame; an ellipse ROI mask over 64% of it, read-only as
# lens/inspect/roi.py caches it; in that run unmasked was 25 us vs 24 us and 164 us vs 190 us):
#   640x480     roi_stats 66 us     cv2.meanStdDev + cv2.minMaxLoc with the mask 268 us
#   1920x1080   roi_stats 445 us    cv2.meanStdDev + cv2.minMaxLoc with the mask 1860 us
# decision: numba (on par unmasked, 4x faster masked; views are read in place, never copied).

from __future__ import annotations

import math

import numpy as np

from native_tools import _checks
from native_tools._jit import kernel

# Columns summed per uint32 accumulator: 65536 * 255**2 < 2**32, so a chunk's sum of squares cannot wrap.
_CHUNK = 65536


@kernel
def _stats(img: np.ndarray) -> tuple[int, int, int, int]:
    """(sum, sum of squares, min, max) of a 2-D uint8 array of any strides, exact.

    Row by row; each row is cut into chunks whose uint32 partial sums cannot overflow, so LLVM
    vectorizes the inner loops (also for non-contiguous 'A' views, by versioning on the stride).
    """
    h, w = img.shape
    total = np.int64(0)
    total_sq = np.int64(0)
    lo = np.uint8(255)
    hi = np.uint8(0)
    for i in range(h):
        row = img[i]
        for j0 in range(0, w, _CHUNK):
            chunk = row[j0 : j0 + _CHUNK]
            n = chunk.shape[0]
            s = np.uint32(0)
            sq = np.uint32(0)
            for j in range(n):
                v = np.uint32(chunk[j])
                s = np.uint32(s + v)
                sq = np.uint32(sq + v * v)
            total += s
            total_sq += sq
            # a separate loop: fused with the sums, min/max stop LLVM from vectorizing (10x slower)
            c_lo = np.uint8(255)
            c_hi = np.uint8(0)
            for j in range(n):
                v8 = chunk[j]
                c_lo = min(c_lo, v8)
                c_hi = max(c_hi, v8)
            lo = min(lo, c_lo)
            hi = max(hi, c_hi)
    return total, total_sq, lo, hi


@kernel
def _stats_masked(img: np.ndarray, mask: np.ndarray) -> tuple[int, int, int, int, int]:
    """(count, sum, sum of squares, min, max) of the pixels where mask != 0, exact; as `_stats`.

    Branch-free selects (outside pixels add 0, and count as 255 for min and 0 for max), so the
    loops vectorize like the unmasked ones.
    """
    h, w = img.shape
    count = np.int64(0)
    total = np.int64(0)
    total_sq = np.int64(0)
    lo = np.uint8(255)
    hi = np.uint8(0)
    for i in range(h):
        row = img[i]
        mrow = mask[i]
        for j0 in range(0, w, _CHUNK):
            chunk = row[j0 : j0 + _CHUNK]
            mchunk = mrow[j0 : j0 + _CHUNK]
            n = chunk.shape[0]
            c = np.uint32(0)
            s = np.uint32(0)
            sq = np.uint32(0)
            for j in range(n):
                inside = mchunk[j] != 0
                v = np.uint32(chunk[j]) if inside else np.uint32(0)
                c = np.uint32(c + np.uint32(inside))
                s = np.uint32(s + v)
                sq = np.uint32(sq + v * v)
            count += c
            total += s
            total_sq += sq
            c_lo = np.uint8(255)
            c_hi = np.uint8(0)
            for j in range(n):
                inside = mchunk[j] != 0
                v8 = chunk[j]
                c_lo = min(c_lo, v8 if inside else np.uint8(255))
                c_hi = max(c_hi, v8 if inside else np.uint8(0))
            lo = min(lo, c_lo)
            hi = max(hi, c_hi)
    return count, total, total_sq, lo, hi


def roi_stats(img: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int, int, float]:
    """(mean, min, max, std) of a 2-D uint8 image or view; std is the population std (ddof=0).

    Equals `img.mean(), img.min(), img.max(), img.std()` (sums are exact integers; mean and
    variance are single correctly rounded divisions). Any strides are fine: ROI views such as
    `frame[y0:y1, x0:x1]` and `frame[::2, ::3]` are read in place, never copied.

    With `mask` (2-D uint8 or bool of img's shape, nonzero = inside, e.g. a circle ROI) only the
    pixels inside count: the result equals the same on `img[mask != 0]`.
    """
    img = _checks.image("roi_stats", img)
    if img.size == 0:
        raise ValueError(f"roi_stats needs a non-empty image, got shape {img.shape}")
    m = _checks.mask("roi_stats", mask, img.shape)
    if m is None:
        if _checks.f_only(img):
            img = img.T  # same pixels, C order: no extra specialization for 'F' layout
        total, total_sq, lo, hi = _stats(_checks.read_only(img))
        n = img.size
    else:
        img, m = _checks.no_f((img, m))
        n, total, total_sq, lo, hi = _stats_masked(_checks.read_only(img), _checks.read_only(m))
        if n == 0:
            raise ValueError("mask selects no pixel")
    n, total, total_sq = int(n), int(total), int(total_sq)
    # Python ints: n * sum(v^2) - sum(v)^2 is exact at any image size; `/` rounds once.
    var = (n * total_sq - total * total) / (n * n)
    return total / n, int(lo), int(hi), math.sqrt(var)
