"""numba inspection kernels: numpy, numba and cv2 only, nothing of `lens`."""

from __future__ import annotations

import numpy as np

from native_tools._jit import REGISTRY
from native_tools.blob import BlobScratch, blob_stats
from native_tools.caliper import find_edges, profile, profile_length
from native_tools.edges import edge_count
from native_tools.match import ncc_peak
from native_tools.motion import motion_area, motion_state
from native_tools.stats import roi_stats
from native_tools.threshold import band_threshold, otsu_level

__all__ = [
    "BlobScratch",
    "band_threshold",
    "blob_stats",
    "edge_count",
    "find_edges",
    "motion_area",
    "motion_state",
    "ncc_peak",
    "otsu_level",
    "profile",
    "profile_length",
    "roi_stats",
    "warmup",
]


def _layouts(a: np.ndarray) -> list[np.ndarray]:
    """`a` as each array type production passes, which numba compiles separately: C-contiguous and
    strided ('A', a ROI view), each writable and read-only (ring slots and cached ROI masks are)."""
    h, w = a.shape
    strided = np.zeros((h + 2, w + 3), a.dtype)[1 : h + 1, 2 : w + 2]
    strided[...] = a
    arrays = [a.copy(), strided]
    for x in list(arrays):
        ro = x.view()
        ro.flags.writeable = False
        arrays.append(ro)
    return arrays


def warmup() -> list[str]:
    """Compile (or load from the on-disk cache) every kernel for every array layout it meets in
    production, so a (re)started worker never compiles on its first frame. Returns kernel names.

    Every image layout, without a mask and with a mask of every layout; band_threshold into a
    C-contiguous and a strided dst. Scalars reach the kernels as int64/float64 whatever the caller
    passes (the wrappers convert them), so one type of each suffices. Input arrays reach them
    read-only (`_checks.read_only`), so writable and read-only callers share one compiled variant
    (43 in all; ~25 s cold, ~1 s from the cache); both are still exercised here.
    """
    frame = np.zeros((40, 48), np.uint8)
    frame[10:20, 10:20] = 200
    frame[30, 30] = 255
    yy, xx = np.mgrid[:40, :48]
    disk = (((yy - 20) ** 2 + (xx - 24) ** 2 <= 15**2) * 255).astype(np.uint8)  # a circle ROI's mask
    scratch = BlobScratch(frame.shape)
    dsts = _layouts(np.zeros_like(frame))[:2]  # writable: C and strided
    masks = _layouts(disk)
    prof = np.empty(0, np.float32)
    for img in _layouts(frame):
        for mask in [None, *masks]:
            roi_stats(img, mask)
            blob_stats(img, 100, 255, scratch=scratch, mask=mask)
            edge_count(img, 50.5, mask)
            otsu_level(img, mask)
            for dst in dsts:
                band_threshold(img, 100, 255, dst, mask)
        prof = profile(img, 2, 3, 40.5, 30)
        profile(img, 2, 3, 40.5, 30, out=np.empty_like(prof))
    find_edges(prof, 1.0, 10.0, "any")
    for img in _layouts(frame):
        motion_area(img, motion_state(img.shape, 4), 4, 25)
        ncc_peak(img, frame[8:24, 8:24])  # the wrapper makes every template C-contiguous
    missing = [k.py_func.__qualname__ for k in REGISTRY if not k.signatures]
    if missing:
        raise RuntimeError(f"warmup does not exercise kernel(s) {missing}: add a call for them")
    return [f"{k.py_func.__module__}.{k.py_func.__qualname__}" for k in REGISTRY]
