"""edge_count against cv2.Sobel gradients, with the threshold compared exactly, on edge frames."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import cv2
import numpy as np
import pytest

from native_tools import edge_count
from tests.native_tools.layouts import read_only, strided


def magnitude2(img: np.ndarray) -> np.ndarray:
    """gx^2 + gy^2 from OpenCV's Sobel (exact: the float32 gradients are small integers)."""
    img = np.ascontiguousarray(img)  # the view is the whole image: its own border, reflected
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3).astype(np.int64)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3).astype(np.int64)
    return gx * gx + gy * gy


def reference(img: np.ndarray, threshold: float, mask: np.ndarray | None = None) -> int:
    """Count of sqrt(g2) > threshold, decided in exact rationals per distinct g2 value."""
    g2 = magnitude2(img)
    values, counts = np.unique(g2[mask != 0] if mask is not None else g2, return_counts=True)
    if math.isinf(threshold):
        return 0 if threshold > 0 else int(counts.sum())
    t = Fraction(threshold)
    return int(sum(c for v, c in zip(values, counts, strict=True) if t < 0 or Fraction(int(v)) > t * t))


def assert_matches(img: np.ndarray, threshold: float, mask: np.ndarray | None = None, msg: str = "") -> int:
    got = edge_count(img, threshold, mask)
    want = reference(img, threshold, mask)
    assert type(got) is int
    assert got == want, f"{msg} threshold={threshold}: {got} edge pixels, OpenCV {want}"
    return got


THRESHOLDS = [-1.0, 0, 0.5, 1, 4, 10, 37.25, 100.1, 400, 1442.5, math.inf]


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (1, 9), (9, 1), (2, 7), (37, 53)])
@pytest.mark.parametrize("value", [0, 255])
def test_flat_frames_have_no_edges(shape: tuple[int, int], value: int) -> None:
    img = np.full(shape, value, np.uint8)
    assert edge_count(img, 0) == 0
    assert edge_count(img, -0.5) == img.size  # magnitude 0 > -0.5
    assert_matches(img, 0)


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (1, 9), (9, 1), (2, 7), (4, 3), (37, 53)]
)
def test_tiny_and_odd_sizes(shape: tuple[int, int]) -> None:
    seed = sum(shape)
    img = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    for t in THRESHOLDS:
        assert_matches(img, t, msg=f"seed={seed} shape={shape}")


def test_bright_square() -> None:
    img = np.zeros((30, 40), np.uint8)
    img[10:20, 12:22] = 255
    for t in THRESHOLDS:
        assert_matches(img, t)
    # the 12 x 12 block whose 3x3 neighbourhoods reach the square, minus its flat 8 x 8 inside
    assert edge_count(img, 0) == 12 * 12 - 8 * 8


def test_square_touching_the_border() -> None:
    img = np.zeros((20, 20), np.uint8)
    img[:8, :8] = 200  # reflected at the top-left: no gradient along the image edge
    for t in THRESHOLDS:
        assert_matches(img, t)


def test_threshold_boundary_is_exact() -> None:
    img = np.zeros((6, 10), np.uint8)
    img[:, 5:] = 100  # a vertical step: gx = 4 * 100 = 400 at columns 4 and 5, gy = 0
    assert edge_count(img, 400) == 0  # 400 > 400 is false
    assert edge_count(img, np.nextafter(400.0, 0.0)) == 12
    assert edge_count(img, 399) == 12
    assert edge_count(img, np.float32(399.99)) == 12
    img[2, 5:] = 103  # gradients with gy != 0 around row 2: magnitudes that are not integers
    g2 = magnitude2(img)
    v = max(int(x) for x in np.unique(g2) if math.isqrt(int(x)) ** 2 != x)
    g = math.sqrt(v)  # within an ulp of the irrational sqrt(v): only pixels with g2 == v lie between
    n_v = int((g2 == v).sum())
    assert n_v > 0
    assert edge_count(img, np.nextafter(g, 0.0)) - edge_count(img, np.nextafter(g, math.inf)) == n_v
    for t in [g, np.nextafter(g, 0.0), np.nextafter(g, math.inf), 406, 406.0442, 406.0443, 400.0, 400.01]:
        assert_matches(img, t)


@pytest.mark.parametrize("seed", range(8))
def test_random_frames(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 120, 2))
    noise = rng.integers(0, 256, (h, w), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    t = float(rng.uniform(0, 600))
    for img in (noise, smooth):
        for thr in (t, round(t), 0.0):
            assert_matches(img, thr, msg=f"seed={seed} shape={(h, w)}")


@pytest.mark.parametrize(
    "make",
    [
        lambda f: f[::2, ::3],
        lambda f: f[1::3, 2::5],
        lambda f: f[::-1, ::-1],
        lambda f: f.T,
        lambda f: f[5:40, 3:60].T,
        lambda f: f[10:11, :],
        lambda f: f[:, 7:8],
        lambda f: f[0:2, 0:2],
    ],
    ids=["step-2-3", "step-3-5", "reversed", "transposed", "transposed-roi", "one-row", "one-column", "2x2"],
)
def test_views(make: Callable[[np.ndarray], np.ndarray]) -> None:
    frame = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (48, 64), dtype=np.uint8), (0, 0), 1.0)
    view = make(frame)
    for t in (0, 12.5, 40):
        assert_matches(view, t, msg=f"seed=3 shape={view.shape} strides={view.strides}")
        assert_matches(read_only(view), t, msg="read-only")


def test_roi_view_is_its_own_image() -> None:
    frame = np.zeros((20, 20), np.uint8)
    frame[:, :10] = 255  # the ROI's left neighbours are bright: a border only inside the ROI counts
    roi = frame[5:15, 10:20]
    assert edge_count(roi, 0) == 0
    assert edge_count(np.ascontiguousarray(roi), 0) == 0
    # one bright column at the ROI's left edge: reflected, it has no gx itself; its neighbour has
    assert assert_matches(frame[5:15, 9:20], 0) == 10


def test_masks() -> None:
    rng = np.random.default_rng(9)
    img = cv2.GaussianBlur(rng.integers(0, 256, (45, 70), dtype=np.uint8), (0, 0), 1.5)
    disk = np.zeros(img.shape, np.uint8)
    cv2.circle(disk, (35, 22), 18, 255, thickness=-1)
    noise = (rng.random(img.shape) < 0.5).astype(np.uint8)
    for name, m in [("disk", disk), ("noise", noise), ("none", np.zeros_like(disk))]:
        for t in (0, 8, 20.5):
            msg = f"seed=9 mask={name}"
            n = assert_matches(img, t, m, msg)
            assert n == assert_matches(strided(img), t, read_only(m), msg + " strided, read-only")
            assert n == assert_matches(read_only(img).T, t, np.ascontiguousarray(m.T), msg + " transposed")
            assert n == edge_count(img, t, m.astype(bool))
    full = np.ones(img.shape, np.uint8)
    assert edge_count(img, 10, full) == edge_count(img, 10)


def test_mask_keeps_neighbours_outside_it() -> None:
    img = np.zeros((5, 5), np.uint8)
    img[:, 3:] = 255
    m = np.zeros(img.shape, np.uint8)
    m[:, 2] = 1  # inside: one column next to the step, whose right neighbours are outside the mask
    assert edge_count(img, 0, m) == 5


@pytest.mark.parametrize(
    "args, match",
    [
        (
            (np.zeros((4, 4), np.float32), 1),
            r"edge_count needs a 2-D uint8 image, got float32 with shape \(4, 4\)",
        ),
        (
            (np.zeros((4, 4, 3), np.uint8), 1),
            r"edge_count needs a 2-D uint8 image, got uint8 with shape \(4, 4, 3\)",
        ),
        ((np.zeros(4, np.uint8), 1), r"edge_count needs a 2-D uint8 image, got uint8 with shape \(4,\)"),
        ((np.zeros((4, 4), np.uint8), math.nan), r"edge_count needs a threshold that is a number, got nan"),
        (
            (np.zeros((4, 4), np.uint8), 1, np.zeros((4, 3), np.uint8)),
            r"edge_count needs mask of the image's shape \(4, 4\), got shape \(4, 3\)",
        ),
        (
            (np.zeros((4, 4), np.uint8), 1, np.zeros((4, 4), np.uint16)),
            r"edge_count needs mask to be None or a 2-D uint8 array, got uint16 with shape \(4, 4\)",
        ),
    ],
)
def test_rejects_bad_input(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        edge_count(*args)  # type: ignore[arg-type]
