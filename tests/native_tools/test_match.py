"""ncc_peak against cv2.matchTemplate(TM_CCOEFF_NORMED) + cv2.minMaxLoc on the same pixels (the
position exactly, the score within OpenCV's float32 rounding), and against the exact score computed
in NumPy from the definition (integer sums)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from native_tools import ncc_peak
from tests.native_tools.layouts import read_only, strided


def opencv_peak(img: np.ndarray, templ: np.ndarray) -> tuple[float, int, int]:
    scores = cv2.matchTemplate(np.ascontiguousarray(img), np.ascontiguousarray(templ), cv2.TM_CCOEFF_NORMED)
    _, score, _, (x, y) = cv2.minMaxLoc(scores)
    return score, x, y


OPENCV_ABS = 2e-5  # OpenCV correlates in float32 through the DFT: its scores are off by up to ~1e-5


def exact_score(window: np.ndarray, templ: np.ndarray) -> float:
    """TM_CCOEFF_NORMED of one window from the definition, with exact integer sums."""
    w, t = window.astype(np.int64).ravel(), templ.astype(np.int64).ravel()
    n = t.size
    num = (w * t).sum() - w.sum() * t.sum() / n
    den = np.sqrt(((w * w).sum() - w.sum() ** 2 / n) * ((t * t).sum() - t.sum() ** 2 / n))
    return float(num / den)


def scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth structure plus noise: one clear best position for a template cut from it."""
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (7, 7), 0)
    return cv2.add(img, rng.integers(0, 20, (h, w), dtype=np.uint8))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("layout", [lambda a: a, read_only, strided], ids=["c", "read-only", "strided"])
def test_peak_equals_opencv(seed: int, layout: object) -> None:
    rng = np.random.default_rng(seed)
    th, tw = int(rng.integers(8, 40)), int(rng.integers(8, 40))
    img = scene(rng, th + int(rng.integers(0, 12)), tw + int(rng.integers(0, 12)))
    ty, tx = int(rng.integers(0, img.shape[0] - th + 1)), int(rng.integers(0, img.shape[1] - tw + 1))
    templ = img[ty : ty + th, tx : tx + tw].copy()
    templ[0, 0] ^= 0x40  # not a perfect copy: the best score is below 1
    score, x, y = ncc_peak(layout(img), templ)  # type: ignore[operator]
    want, wx, wy = opencv_peak(img, templ)
    assert (x, y) == (wx, wy) == (tx, ty)
    assert score == pytest.approx(exact_score(img[ty : ty + th, tx : tx + tw], templ), abs=1e-12)
    assert score == pytest.approx(want, abs=OPENCV_ABS)
    assert 0.9 < score < 1.0


def test_every_position_scores_as_opencv() -> None:
    """The peak of each 1-position window equals OpenCV's score map at that position."""
    rng = np.random.default_rng(11)
    img = scene(rng, 40, 50)
    templ = scene(rng, 12, 16)
    scores = cv2.matchTemplate(img, templ, cv2.TM_CCOEFF_NORMED)
    for y in range(0, scores.shape[0], 3):
        for x in range(0, scores.shape[1], 4):
            score, px, py = ncc_peak(img[y : y + 12, x : x + 16], templ)
            assert (px, py) == (0, 0)
            assert score == pytest.approx(exact_score(img[y : y + 12, x : x + 16], templ), abs=1e-12)
            assert score == pytest.approx(float(scores[y, x]), abs=OPENCV_ABS)


def test_binary_images_and_a_perfect_match() -> None:
    img = np.zeros((70, 70), np.uint8)
    cv2.circle(img, (40, 30), 12, 255, -1)
    cv2.rectangle(img, (5, 50), (20, 62), 255, -1)
    templ = img[20:44, 26:54].copy()
    score, x, y = ncc_peak(img, templ)
    assert (score, x, y) == (1.0, 26, 20)
    assert opencv_peak(img, templ)[1:] == (26, 20)


def test_flat_windows_score_zero_like_opencv() -> None:
    img = np.full((20, 20), 90, np.uint8)  # every window flat: no correlation anywhere
    templ = np.arange(25, dtype=np.uint8).reshape(5, 5)
    assert ncc_peak(img, templ) == (0.0, 0, 0)
    assert opencv_peak(img, templ) == (0.0, 0, 0)


def test_ties_keep_the_first_position_in_raster_order() -> None:
    img = np.zeros((12, 20), np.uint8)
    img[3:6, 4:7] = 200
    img[3:6, 14:17] = 200  # the same pattern twice on one row
    templ = img[2:7, 3:8].copy()
    assert ncc_peak(img, templ) == (1.0, 3, 2)
    assert opencv_peak(img, templ)[1:] == (3, 2)


@pytest.mark.parametrize(
    ("img", "templ", "words"),
    [
        (np.zeros((10, 10), np.float32), np.zeros((3, 3), np.uint8), "2-D uint8 image"),
        (np.zeros((10, 10), np.uint8), np.zeros((3, 3, 3), np.uint8), "2-D uint8 template"),
        (np.zeros((10, 10), np.uint8), np.zeros((11, 3), np.uint8), "no larger than the image"),
        (np.zeros((10, 10), np.uint8), np.zeros((0, 3), np.uint8), "non-empty template"),
    ],
)
def test_bad_input_is_named(img: np.ndarray, templ: np.ndarray, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ncc_peak(img, templ)
