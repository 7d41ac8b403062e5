"""numba inspection kernels: numpy, numba and cv2 only, nothing of `lens`."""

from __future__ import annotations

import numpy as np

from native_tools._jit import REGISTRY
from native_tools.blob import BlobScratch, blob_stats
from native_tools.stats import roi_stats

__all__ = ["BlobScratch", "blob_stats", "roi_stats", "warmup"]


def _layouts() -> list[np.ndarray]:
    """One small image per array type production passes: numba compiles one specialization for
    each of C-contiguous / strided ('A') views, writable / read-only (ring slots are read-only)."""
    frame = np.zeros((64, 48), np.uint8)
    frame[20:30, 10:20] = 200
    frame[40, 30] = 255
    images = [frame, frame[10:50, 7:33]]
    for img in list(images):
        ro = img.view()
        ro.flags.writeable = False
        images.append(ro)
    return images


def warmup() -> list[str]:
    """Compile (or load from the on-disk cache) every kernel for every array layout it meets in
    production, so a (re)started worker never compiles on its first frame. Returns kernel names."""
    scratch = BlobScratch((64, 48))
    for img in _layouts():
        roi_stats(img)
        blob_stats(img, 100, 255, scratch=scratch)
    missing = [k.py_func.__qualname__ for k in REGISTRY if not k.signatures]
    if missing:
        raise RuntimeError(f"warmup does not exercise kernel(s) {missing}: add a call for them")
    return [f"{k.py_func.__module__}.{k.py_func.__qualname__}" for k in REGISTRY]
