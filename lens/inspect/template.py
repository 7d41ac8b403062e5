"""Pattern-matching templates: read once, as gray, optionally cropped from a reference image."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from lens.config.tools import RectRoi


@lru_cache(maxsize=64)
def _read(path: str, mtime: float, region: tuple[int, int, int | None, int | None] | None) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"template file {path!r} is not a readable image")
    if region is not None:
        x, y, w, h = region
        x1 = img.shape[1] if w is None else x + w
        y1 = img.shape[0] if h is None else y + h
        if x < 0 or y < 0 or x1 > img.shape[1] or y1 > img.shape[0]:
            raise ValueError(f"region {{x: {x}, y: {y}, w: {w}, h: {h}}} is outside the "
                             f"{img.shape[1]}x{img.shape[0]} image {path!r}")  # fmt: skip
        img = img[y:y1, x:x1]
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"template {path!r} is {img.shape[1]}x{img.shape[0]}: at least 2x2 pixels needed")
    if int(img.min()) == int(img.max()):
        raise ValueError(f"template {path!r} is flat (one gray level): it cannot be correlated")
    out = np.ascontiguousarray(img)
    out.flags.writeable = False
    return out


def load_template(path: str, region: RectRoi | None = None) -> np.ndarray:
    """The template as a read-only, contiguous gray uint8 array; ValueError saying what is wrong."""
    try:
        mtime = os.path.getmtime(path)
    except OSError as e:
        raise ValueError(f"template file {path!r}: {e.strerror}") from None
    key = None if region is None else (region.x, region.y, region.w, region.h)
    return _read(path, mtime, key)
