"""warmup() compiles every kernel for every array type production passes, so none compiles later."""

from __future__ import annotations

import numpy as np

from native_tools import BlobScratch, blob_stats, roi_stats, warmup
from native_tools._jit import REGISTRY


def test_warmup_names_every_kernel() -> None:
    names = warmup()
    assert names == [f"{k.py_func.__module__}.{k.py_func.__qualname__}" for k in REGISTRY]
    kernels = {"native_tools.stats._stats", "native_tools.blob._runs", "native_tools.blob._components"}
    assert kernels <= set(names)


def test_no_compile_after_warmup() -> None:
    warmup()
    before = {k.py_func.__qualname__: len(k.signatures) for k in REGISTRY}
    frame = np.random.default_rng(2).integers(0, 256, (120, 160), dtype=np.uint8)
    ring_slot = frame.view()
    ring_slot.flags.writeable = False  # lens ring slots are read-only views
    scratch = BlobScratch()
    for img in (
        frame,
        frame[10:50, 7:33],
        frame[::2, ::3],
        frame.T,
        frame[0:1, :],
        frame[:, 5:6],
        ring_slot,
        ring_slot[30:90, 40:41],
        ring_slot[::-1],
    ):
        roi_stats(img)
        blob_stats(img, 100, 200, area_min=np.int64(2), area_max=50, scratch=scratch, offset=(3, 4.5))
        blob_stats(img, np.uint8(0), 255)
    after = {k.py_func.__qualname__: len(k.signatures) for k in REGISTRY}
    assert after == before
