"""Motion: how much of the frame changed since the previous one, on a downscaled image.

`motion_area` downscales the frame by `factor` (block means, rounded), compares each block with the
previous frame's, counts blocks that changed by more than `threshold` gray levels, and keeps the new
downscaled frame for the next call, all in one pass (no full-size difference image). Decision:
numba; OpenCV needs resize + absdiff + threshold + countNonZero + a copy (5 passes, 3 temporaries).
"""

from __future__ import annotations

import numpy as np

from native_tools import _checks
from native_tools._jit import kernel


@kernel
def _motion(img: np.ndarray, prev: np.ndarray, f: int, threshold: int) -> int:
    sh, sw = prev.shape
    n = f * f
    half = n // 2
    sums = np.zeros(sw, np.int64)
    changed = 0
    for by in range(sh):
        sums[:] = 0
        for y in range(by * f, by * f + f):
            row = img[y]
            for bx in range(sw):
                acc = 0
                for x in range(bx * f, bx * f + f):
                    acc += row[x]
                sums[bx] += acc
        p = prev[by]
        for bx in range(sw):
            v = (sums[bx] + half) // n
            d = v - np.int64(p[bx])
            if d > threshold or -d > threshold:
                changed += 1
            p[bx] = np.uint8(v)
    return changed


def motion_state(shape: tuple[int, ...], factor: int) -> np.ndarray:
    """The previous downscaled frame to pass to `motion_area` (all zero before the first frame)."""
    if factor < 1 or shape[0] < factor or shape[1] < factor:
        raise ValueError(
            f"motion needs a frame of at least factor x factor pixels, got {shape} with factor {factor}"
        )
    return np.zeros((shape[0] // factor, shape[1] // factor), np.uint8)


def motion_area(img: np.ndarray, prev: np.ndarray, factor: int, threshold: int) -> int:
    """Changed area (pixels at full resolution: changed blocks x factor^2) between `img` and the frame
    before it, whose downscaled image `prev` holds; `prev` is updated to `img`'s. Pixels beyond the
    last whole block (right and bottom edges) are not compared."""
    img = _checks.image("motion_area", img)
    if prev.dtype != np.uint8 or prev.shape != (img.shape[0] // factor, img.shape[1] // factor):
        raise ValueError(
            f"motion_area needs prev from motion_state({img.shape}, {factor}), got {_checks.describe(prev)}"
        )
    if not prev.flags.writeable or not prev.flags.c_contiguous:
        raise ValueError("motion_area needs prev writable and C-contiguous (it is updated in place)")
    return int(_motion(_checks.read_only(img), prev, int(factor), int(threshold))) * factor * factor
