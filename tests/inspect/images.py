"""Test images shared by the inspection tests."""

from __future__ import annotations

import cv2
import numpy as np


def spots(h: int, w: int, n: int, seed: int, dot: bool = False) -> np.ndarray:
    """Noisy dark background with `n` bright filled ellipses (some touching the border, some merged);
    with `dot`, also a one-pixel blob at (5, 5)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 90, (h, w), dtype=np.uint8)
    for _ in range(n):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        axes = (int(rng.integers(3, 25)), int(rng.integers(3, 25)))
        cv2.ellipse(img, (cx, cy), axes, float(rng.integers(0, 180)), 0, 360, int(rng.integers(140, 256)), -1)
    if dot:
        img[5, 5] = 200
    return img
