"""Argument checks shared by the public wrappers, so every kernel rejects bad input in the same words."""

from __future__ import annotations

import numpy as np


def describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"{obj.dtype} with shape {obj.shape}"
    return type(obj).__name__


def image(fn: str, img: object, what: str = "image") -> np.ndarray:
    """`img` as a 2-D uint8 array, else an actionable ValueError naming `fn`."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"{fn} needs a 2-D uint8 {what}, got {describe(img)}")
    return img


def mask(fn: str, mask: object, shape: tuple[int, ...]) -> np.ndarray | None:
    """`mask` (None, or 2-D uint8/bool of `shape`, nonzero = inside) as uint8; bool is viewed, not copied."""
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray) or mask.dtype not in (np.uint8, np.bool_) or mask.ndim != 2:
        raise ValueError(f"{fn} needs mask to be None or a 2-D uint8 array, got {describe(mask)}")
    if mask.shape != shape:
        raise ValueError(f"{fn} needs mask of the image's shape {shape}, got shape {mask.shape}")
    return mask.view(np.uint8) if mask.dtype == np.bool_ else mask


def f_only(a: np.ndarray) -> bool:
    """Fortran-ordered and not also C-ordered (a transpose): numba would compile an extra 'F' variant."""
    return a.flags.f_contiguous and not a.flags.c_contiguous


def no_f(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The arrays with no 'F' layout left, for elementwise kernels and transpose-invariant reductions.

    If the first array is Fortran-ordered, all are transposed together (same pixel pairs, no copy);
    any other array still Fortran-ordered is then copied to C order (rare: mixed layouts).
    """
    if f_only(arrays[0]):
        arrays = tuple(a.T for a in arrays)
    return (arrays[0], *(np.ascontiguousarray(a) if f_only(a) else a for a in arrays[1:]))


def read_only(a: np.ndarray) -> np.ndarray:
    """`a` as a read-only array: itself if it is one, else a read-only view (~1 us, no copy).

    Kernels get their inputs read-only, so numba compiles one variant per layout instead of two
    (writable and read-only arrays are distinct numba types with identical machine code): a third
    of the specializations, 3x faster cold warmup. Ring frames and ROI masks are read-only already.
    """
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v
