"""roi_stats against the NumPy reference on edge frames and views."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from native_tools import roi_stats


def reference(img: np.ndarray) -> tuple[float, int, int, float]:
    return float(img.mean()), int(img.min()), int(img.max()), float(img.std())


def assert_matches(img: np.ndarray, msg: str = "") -> None:
    got = roi_stats(img)
    want = reference(img)
    assert type(got[0]) is float and type(got[1]) is int and type(got[2]) is int and type(got[3]) is float
    assert got[1:3] == want[1:3], msg
    assert got[0] == pytest.approx(want[0], rel=1e-9, abs=0), msg
    assert got[3] == pytest.approx(want[3], rel=1e-9, abs=1e-12), msg


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (48, 64), dtype=np.uint8)


def test_all_zero() -> None:
    assert roi_stats(np.zeros((6, 9), np.uint8)) == (0.0, 0, 0, 0.0)


def test_saturated() -> None:
    assert roi_stats(np.full((6, 9), 255, np.uint8)) == (255.0, 255, 255, 0.0)


def test_single_pixel_image() -> None:
    assert roi_stats(np.full((1, 1), 37, np.uint8)) == (37.0, 37, 37, 0.0)


def test_one_bright_pixel() -> None:
    img = np.zeros((3, 4), np.uint8)
    img[2, 3] = 240
    mean, lo, hi, std = roi_stats(img)
    assert (mean, lo, hi) == (20.0, 0, 240)
    assert std == pytest.approx(np.sqrt(240.0**2 / 12 - 20.0**2), rel=1e-12)
    assert_matches(img)


def test_odd_size() -> None:
    assert_matches(np.random.default_rng(1).integers(0, 256, (37, 53), dtype=np.uint8))


@pytest.mark.parametrize("seed", range(8))
def test_random_frames(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 90, 2))
    lo, hi = sorted(int(v) for v in rng.integers(0, 256, 2))
    img = rng.integers(lo, hi + 1, (h, w), dtype=np.uint8)
    assert_matches(img, f"seed={seed} shape={img.shape}")


@pytest.mark.parametrize(
    "rows, cols",
    [
        (slice(0, 20), slice(0, 30)),  # top-left corner
        (slice(0, 20), slice(34, 64)),  # top-right
        (slice(28, 48), slice(0, 30)),  # bottom-left
        (slice(28, 48), slice(34, 64)),  # bottom-right
        (slice(10, 38), slice(7, 33)),  # inside
        (slice(0, 48), slice(0, 1)),  # one column, full height
        (slice(47, 48), slice(0, 64)),  # last row
    ],
)
def test_roi_views_touching_borders(frame: np.ndarray, rows: slice, cols: slice) -> None:
    view = frame[rows, cols]
    assert_matches(view, f"view {rows}, {cols}")
    assert roi_stats(view) == roi_stats(np.ascontiguousarray(view))


@pytest.mark.parametrize(
    "make",
    [
        lambda f: f[::2, ::3],
        lambda f: f[1::5, 2::7],
        lambda f: f[::-1, ::-1],
        lambda f: f.T,  # Fortran order
        lambda f: f[5:40, 3:60].T,
    ],
    ids=["step-2-3", "step-5-7", "reversed", "transposed", "transposed-roi"],
)
def test_non_contiguous_views(frame: np.ndarray, make: Callable[[np.ndarray], np.ndarray]) -> None:
    view = make(frame)
    assert not view.flags.c_contiguous
    assert_matches(view)


def test_read_only_view(frame: np.ndarray) -> None:
    view = frame[3:40, 5:50]
    view.flags.writeable = False
    assert_matches(view)


def test_rows_wider_than_one_accumulator_chunk() -> None:
    # 70000 * 255**2 overflows a uint32: the kernel must flush partial sums per 65536-pixel chunk
    img = np.full((2, 70_000), 255, np.uint8)
    img[1, -1] = 0
    assert_matches(img)
    assert roi_stats(img)[1:3] == (0, 255)


@pytest.mark.parametrize(
    "img, match",
    [
        (np.zeros((4, 4, 3), np.float32), r"2-D uint8 image, got float32 with shape \(4, 4, 3\)"),
        (np.zeros((4, 4, 3), np.uint8), r"2-D uint8 image, got uint8 with shape \(4, 4, 3\)"),
        (np.zeros(16, np.uint8), r"2-D uint8 image, got uint8 with shape \(16,\)"),
        (np.zeros((4, 4), np.uint16), r"2-D uint8 image, got uint16 with shape \(4, 4\)"),
        ([[1, 2], [3, 4]], r"2-D uint8 image, got list"),
        (np.zeros((0, 5), np.uint8), r"non-empty image, got shape \(0, 5\)"),
    ],
)
def test_rejects_bad_input(img: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        roi_stats(img)  # type: ignore[arg-type]
