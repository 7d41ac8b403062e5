"""blob_stats against cv2.connectedComponentsWithStats (8-connectivity) on edge frames and views."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from native_tools import BlobScratch, blob_stats


def reference(
    img: np.ndarray,
    lo: int,
    hi: int,
    area_min: int = 0,
    area_max: int | None = None,
    offset: tuple[float, float] = (0, 0),
) -> np.ndarray:
    """The slow, obviously correct version: mask, OpenCV labelling, drop the background."""
    mask = ((img >= lo) & (img <= hi)).astype(np.uint8)
    _, _, st, cen = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    rows = np.column_stack(
        [
            st[1:, cv2.CC_STAT_AREA],
            st[1:, cv2.CC_STAT_LEFT],
            st[1:, cv2.CC_STAT_TOP],
            st[1:, cv2.CC_STAT_WIDTH],
            st[1:, cv2.CC_STAT_HEIGHT],
            cen[1:],
        ]
    ).astype(np.float64)
    rows[:, [1, 5]] += offset[0]
    rows[:, [2, 6]] += offset[1]
    keep = rows[:, 0] >= area_min
    if area_max is not None:
        keep &= rows[:, 0] <= area_max
    return rows[keep]


def by_position(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort((rows[:, 0], rows[:, 1], rows[:, 2]))]  # by y, then x, then area


def assert_matches(
    img: np.ndarray,
    lo: int,
    hi: int,
    msg: str = "",
    area_min: int = 0,
    area_max: int | None = None,
    offset: tuple[float, float] = (0, 0),
    scratch: BlobScratch | None = None,
) -> np.ndarray:
    got = blob_stats(img, lo, hi, area_min=area_min, area_max=area_max, offset=offset, scratch=scratch)
    want = reference(img, lo, hi, area_min, area_max, offset)
    assert got.dtype == np.float64 and got.ndim == 2 and got.shape[1] == 7, msg
    assert got.shape == want.shape, f"{msg}: {len(got)} blobs, OpenCV finds {len(want)}"
    g, w = by_position(got), by_position(want)
    np.testing.assert_array_equal(g[:, :5], w[:, :5], err_msg=msg)
    np.testing.assert_allclose(g[:, 5:], w[:, 5:], rtol=1e-9, atol=1e-9, err_msg=msg)
    return got


def blobby(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random blobs of every size (upsampled noise), crossing the kernel's 64-pixel blocks."""
    small = rng.integers(0, 256, (max(2, h // 6), max(2, w // 6)), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


@pytest.fixture
def frame() -> np.ndarray:
    return blobby(np.random.default_rng(11), 90, 150)


def test_all_zero() -> None:
    out = blob_stats(np.zeros((9, 13), np.uint8), 1, 255)
    assert out.shape == (0, 7) and out.dtype == np.float64


def test_saturated() -> None:
    img = np.full((9, 13), 255, np.uint8)
    np.testing.assert_array_equal(blob_stats(img, 200, 255), [[117, 0, 0, 13, 9, 6, 4]])
    assert blob_stats(img, 0, 254).shape == (0, 7)
    assert_matches(img, 0, 255)


def test_single_pixel_image() -> None:
    img = np.full((1, 1), 9, np.uint8)
    np.testing.assert_array_equal(blob_stats(img, 9, 9), [[1, 0, 0, 1, 1, 0, 0]])
    assert blob_stats(img, 10, 255).shape == (0, 7)


@pytest.mark.parametrize("y, x", [(0, 0), (0, 52), (36, 0), (36, 52), (17, 31)])
def test_one_foreground_pixel(y: int, x: int) -> None:
    img = np.zeros((37, 53), np.uint8)
    img[y, x] = 128
    np.testing.assert_array_equal(blob_stats(img, 100, 200), [[1, x, y, 1, 1, x, y]])


@pytest.mark.parametrize("seed", range(6))
def test_random_frames(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 200, 2))
    lo = int(rng.integers(0, 256))
    hi = int(rng.integers(lo, 256))
    assert_matches(blobby(rng, h, w), lo, hi, f"blobby seed={seed} shape={(h, w)} band={lo}..{hi}")
    noise = rng.integers(0, 256, (h, w), dtype=np.uint8)
    assert_matches(noise, lo, hi, f"noise seed={seed} shape={(h, w)} band={lo}..{hi}")


def test_odd_sizes() -> None:
    rng = np.random.default_rng(3)
    for shape in [(37, 53), (1, 129), (129, 1), (65, 63)]:
        assert_matches(blobby(rng, *shape), 128, 255, f"seed=3 shape={shape}")


@pytest.mark.parametrize(
    "rows, cols",
    [
        (slice(0, 40), slice(0, 70)),  # top-left corner
        (slice(0, 40), slice(80, 150)),  # top-right
        (slice(50, 90), slice(0, 70)),  # bottom-left
        (slice(50, 90), slice(80, 150)),  # bottom-right
        (slice(10, 80), slice(7, 133)),  # inside
        (slice(0, 90), slice(149, 150)),  # last column
    ],
)
def test_roi_views_touching_borders(frame: np.ndarray, rows: slice, cols: slice) -> None:
    view = frame[rows, cols]
    offset = (cols.start, rows.start)
    got = assert_matches(view, 128, 255, f"view {rows}, {cols}", offset=offset)
    np.testing.assert_array_equal(got, blob_stats(np.ascontiguousarray(view), 128, 255, offset=offset))


@pytest.mark.parametrize(
    "make",
    [lambda f: f[::2, ::3], lambda f: f[1::3, 2::5], lambda f: f[::-1, ::-1], lambda f: f.T],
    ids=["step-2-3", "step-3-5", "reversed", "transposed"],
)
def test_non_contiguous_views(frame: np.ndarray, make: Callable[[np.ndarray], np.ndarray]) -> None:
    view = make(frame)
    assert not view.flags.c_contiguous
    assert_matches(view, 100, 180, f"shape={view.shape} strides={view.strides}")


def test_read_only_view(frame: np.ndarray) -> None:
    view = frame[5:70, 9:140]
    view.flags.writeable = False
    assert_matches(view, 128, 255)


def test_offset_applied() -> None:
    img = np.zeros((10, 10), np.uint8)
    img[2:4, 5:8] = 255
    got = blob_stats(img, 255, 255, offset=(100, 20))
    np.testing.assert_array_equal(got, [[6, 105, 22, 3, 2, 106, 22.5]])
    assert_matches(img, 255, 255, offset=(100.5, -3))


def test_diagonals_join() -> None:
    img = np.zeros((20, 20), np.uint8)
    img[np.arange(20), np.arange(20)] = 255
    img[np.arange(15), 19 - np.arange(15)] = 255
    assert assert_matches(img, 255, 255).shape == (1, 7)
    corner = np.array([[255, 0], [0, 255]], np.uint8)
    np.testing.assert_array_equal(blob_stats(corner, 1, 255), [[2, 0, 0, 2, 2, 0.5, 0.5]])
    anti = np.array([[0, 255], [255, 0]], np.uint8)
    np.testing.assert_array_equal(blob_stats(anti, 1, 255), [[2, 0, 0, 2, 2, 0.5, 0.5]])


def test_u_shapes_need_merging() -> None:
    img = np.zeros((30, 100), np.uint8)
    img[5:25, 5:8] = img[5:25, 20:23] = img[22:25, 5:23] = 255  # U: two arms meet only at the bottom
    img[5:25, 30:33] = img[5:25, 60:63] = img[22:25, 30:63] = 255  # wide U, across a 64-pixel block
    for x in range(70, 90, 4):  # a comb: many arms merged by one diagonal-touching bar
        img[8:25, x] = 255
    img[25, 71:86] = 255
    out = assert_matches(img, 255, 255)
    assert len(out) == 3


def spiral(size: int) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top <= bottom and left <= right:
        img[top, left : right + 1] = 255
        img[top : bottom + 1, right] = 255
        if top + 2 <= bottom:
            img[bottom, left : right + 1] = 255
        if left + 2 <= right:
            img[top + 2 : bottom + 1, left] = 255
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
        if top <= bottom:
            img[top - 1, left - 1] = 255  # step inwards
    return img


@pytest.mark.parametrize("size", [9, 31, 70])
def test_spiral_is_one_blob(size: int) -> None:
    out = assert_matches(spiral(size), 255, 255)
    assert len(out) == 1


def test_checkerboard_is_one_blob() -> None:
    img = ((np.indices((37, 53)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = assert_matches(img, 255, 255)
    np.testing.assert_array_equal(out[:, :5], [[37 * 53 // 2, 0, 0, 53, 37]])


def test_many_tiny_blobs() -> None:
    img = np.zeros((37, 53), np.uint8)
    img[::2, ::2] = 255  # isolated pixels: no two touch, not even at a corner
    out = assert_matches(img, 255, 255)
    assert len(out) == 19 * 27
    np.testing.assert_array_equal(out[:, 0], 1)


@pytest.mark.parametrize("w", [10, 11, 64, 65])
def test_most_runs_an_image_can_hold(w: int) -> None:
    img = np.zeros((7, w), np.uint8)
    img[:, ::2] = 255  # every row alternates: (w + 1) // 2 runs per row, one vertical blob per column
    out = assert_matches(img, 255, 255, f"w={w}")
    assert len(out) == (w + 1) // 2


def test_area_filter_boundaries() -> None:
    img = np.zeros((5, 80), np.uint8)
    for area in range(1, 8):  # horizontal bars of area 1..7
        img[2, area * 10 : area * 10 + area] = 200
    assert_matches(img, 200, 200, area_min=3, area_max=5)
    np.testing.assert_array_equal(blob_stats(img, 200, 200, area_min=3, area_max=5)[:, 0], [3, 4, 5])
    np.testing.assert_array_equal(blob_stats(img, 200, 200, area_min=7)[:, 0], [7])
    np.testing.assert_array_equal(blob_stats(img, 200, 200, area_max=1)[:, 0], [1])
    assert blob_stats(img, 200, 200, area_min=8).shape == (0, 7)


def test_band_threshold_bounds() -> None:
    img = np.array([[0, 99, 100, 101, 255, 100, 0]], np.uint8)
    np.testing.assert_array_equal(blob_stats(img, 100, 100)[:, :3], [[1, 2, 0], [1, 5, 0]])
    np.testing.assert_array_equal(blob_stats(img, 99, 101)[:, :4], [[3, 1, 0, 3], [1, 5, 0, 1]])
    np.testing.assert_array_equal(blob_stats(img, 0, 0)[:, :2], [[1, 0], [1, 6]])
    np.testing.assert_array_equal(blob_stats(img, 255, 255)[:, :2], [[1, 4]])
    np.testing.assert_array_equal(blob_stats(img, 0, 255)[:, :4], [[7, 0, 0, 7]])


def test_rows_in_raster_order_of_first_pixel(frame: np.ndarray) -> None:
    img = np.zeros((6, 12), np.uint8)
    img[0, 10] = img[1, 9] = img[2, 8] = img[3, 0:8] = 255  # first pixel (10, 0), bbox x = 0
    img[1, 2] = 255  # first pixel (2, 1): lower, and left of the bbox above
    np.testing.assert_array_equal(blob_stats(img, 1, 255)[:, :3], [[11, 0, 0], [1, 2, 1]])
    # generally: order by first pixel, found from OpenCV's label image
    mask = (frame >= 128).astype(np.uint8)
    n, labels, _, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    flat = labels.ravel()
    first = np.array([np.flatnonzero(flat == k)[0] for k in range(1, n)])
    ys, xs = np.divmod(first, frame.shape[1])
    got = blob_stats(frame, 128, 255)
    assert len(got) == len(first) > 5
    order = np.argsort(first)
    # each blob's first pixel lies in its bbox's top row: check (row, column of first pixel) order
    np.testing.assert_array_equal(got[:, 2], ys[order])
    assert np.all((got[:, 1] <= xs[order]) & (xs[order] < got[:, 1] + got[:, 3]))


def test_scratch_reuse() -> None:
    rng = np.random.default_rng(5)
    scratch = BlobScratch()
    big, small = blobby(rng, 80, 120), blobby(rng, 30, 40)
    for img in (big, small, big[::2, ::2], small):
        assert_matches(img, 128, 255, f"seed=5 shape={img.shape}", scratch=scratch)
    starts = scratch.starts
    scratch.ensure((80, 120))
    scratch.ensure((10, 10))
    assert scratch.starts is starts  # no reallocation when the shape fits
    scratch.ensure((80, 121))
    assert scratch.starts is not starts and scratch.shape == (80, 121)


@pytest.mark.parametrize(
    "img, th, match",
    [
        (np.zeros((4, 4), np.float32), (0, 255), r"2-D uint8 image, got float32 with shape \(4, 4\)"),
        (np.zeros((4, 4, 3), np.uint8), (0, 255), r"2-D uint8 image, got uint8 with shape \(4, 4, 3\)"),
        (np.zeros(4, np.uint8), (0, 255), r"2-D uint8 image, got uint8 with shape \(4,\)"),
        (np.zeros((4, 4), np.uint8), (10, 9), r"0 <= th_min <= th_max <= 255, got th_min=10, th_max=9"),
        (np.zeros((4, 4), np.uint8), (-1, 9), r"0 <= th_min <= th_max <= 255, got th_min=-1"),
        (np.zeros((4, 4), np.uint8), (0, 256), r"0 <= th_min <= th_max <= 255, got th_min=0, th_max=256"),
    ],
)
def test_rejects_bad_input(img: np.ndarray, th: tuple[int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        blob_stats(img, *th)
