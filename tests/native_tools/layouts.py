"""The array layouts production hands the kernels, for tests: read-only and strided views."""

from __future__ import annotations

import numpy as np


def read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of `a`, as the ring hands out frames and ROIs cache their masks."""
    v = a.view()
    v.flags.writeable = False
    return v


def strided(a: np.ndarray, pad: int = 3) -> np.ndarray:
    """The pixels of `a` as a ROI view of a bigger image with other content around it (non-contiguous
    when `a` has more than one row)."""
    h, w = a.shape
    big = np.full((h + 2 * pad, w + 2 * pad), 77, a.dtype)
    view = big[pad : pad + h, pad : pad + w]
    view[...] = a
    return view
